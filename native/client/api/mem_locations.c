/* Device locations inside the structures of the virtual memory and memory
 * pool calls (several servers, docs/multi-gpu.md). A CUmemLocation of type
 * DEVICE holds the client's device ordinal; its device is on one server,
 * whose worker knows it by its own ordinal. So the call goes to that server
 * with the server's ordinal in place of the client's (a copy: the caller's
 * structure is left as it was), and an answer that names a device names the
 * client's again. Locations of two servers in one call (an access list
 * spanning them) are refused, as other calls mixing servers are. With one
 * server each wrapper is the generated forwarder after one comparison. */
#include <stdlib.h>
#include <string.h>

#include "api.h"

/* loc made the server's (a DEVICE location); *server joins its server.
 * CUDA_ERROR_INVALID_DEVICE for an ordinal the client does not have,
 * CUDA_ERROR_INVALID_HANDLE (with its line) for a second server. */
CUresult gw_mem_location_to_server(unsigned op, CUmemLocation *loc, int *server)
{
    if (loc->type != CU_MEM_LOCATION_TYPE_DEVICE)
        return CUDA_SUCCESS; /* the host, a NUMA node: no device ordinal */
    int local;
    int k = gw_device_server(loc->id, &local);
    if (k < 0)
        return CUDA_ERROR_INVALID_DEVICE;
    if (*server >= 0 && *server != k)
        return gw_route_mixed(op);
    *server = k;
    loc->id = local;
    return CUDA_SUCCESS;
}

/* An answer's location of server k made the client's. */
void gw_mem_location_to_client(CUmemLocation *loc, int k)
{
    if (loc->type != CU_MEM_LOCATION_TYPE_DEVICE || k < 0)
        return;
    int dev = gw_device_of_server(k, loc->id);
    if (dev >= 0)
        loc->id = dev;
}

/* *out: *in made its server's, and the calling thread's requests routed
 * there until gw_route_leave(*prev). */
static CUresult enter_location(unsigned op, const CUmemLocation *in, CUmemLocation *out, int *prev)
{
    *out = *in;
    int k = -1;
    CUresult rc = gw_mem_location_to_server(op, out, &k);
    if (rc == CUDA_SUCCESS)
        *prev = gw_route_enter(k);
    return rc;
}

CUresult CUDAAPI cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                             unsigned long long flags)
{
    if (gw_servers_n <= 1 || !prop)
        return gwf_cuMemCreate(handle, size, prop, flags);
    CUmemAllocationProp p = *prop;
    int prev;
    CUresult rc = enter_location(GW_OP_cuMemCreate, &prop->location, &p.location, &prev);
    if (rc != CUDA_SUCCESS)
        return rc;
    rc = gwf_cuMemCreate(handle, size, &p, flags);
    gw_route_leave(prev);
    return rc;
}

CUresult CUDAAPI cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
                                               CUmemAllocationGranularity_flags option)
{
    if (gw_servers_n <= 1 || !prop)
        return gwf_cuMemGetAllocationGranularity(granularity, prop, option);
    CUmemAllocationProp p = *prop;
    int prev;
    CUresult rc = enter_location(GW_OP_cuMemGetAllocationGranularity, &prop->location, &p.location, &prev);
    if (rc != CUDA_SUCCESS)
        return rc;
    rc = gwf_cuMemGetAllocationGranularity(granularity, &p, option);
    gw_route_leave(prev);
    return rc;
}

CUresult CUDAAPI cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop, CUmemGenericAllocationHandle handle)
{
    /* the request went to the handle's server (noted when the handle came),
     * else to the current context's */
    CUresult rc = gwf_cuMemGetAllocationPropertiesFromHandle(prop, handle);
    if (rc == CUDA_SUCCESS && prop && gw_servers_n > 1) {
        int k = gw_allocation_handle_server((uint64_t)handle);
        gw_mem_location_to_client(&prop->location, k >= 0 ? k : gw_route_now());
    }
    return rc;
}

/* An access list's locations made one server's; the copy in *out (freed by the caller). */
static CUresult access_list(unsigned op, const CUmemAccessDesc *desc, size_t count, CUmemAccessDesc **out, int *k)
{
    *out = NULL;
    if (!desc || !count || count > GW_MAX_PAYLOAD / sizeof *desc)
        return CUDA_SUCCESS; /* the forwarder gives the driver's answer to these */
    CUmemAccessDesc *d = malloc(count * sizeof *d);
    if (!d)
        return CUDA_ERROR_OUT_OF_MEMORY;
    memcpy(d, desc, count * sizeof *d);
    for (size_t i = 0; i < count; i++) {
        CUresult rc = gw_mem_location_to_server(op, &d[i].location, k);
        if (rc != CUDA_SUCCESS) {
            free(d);
            return rc;
        }
    }
    *out = d;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
    if (gw_servers_n <= 1)
        return gwf_cuMemSetAccess(ptr, size, desc, count);
    CUmemAccessDesc *d;
    int k = -1;
    CUresult rc = access_list(GW_OP_cuMemSetAccess, desc, count, &d, &k);
    if (rc != CUDA_SUCCESS)
        return rc;
    int prev = gw_route_enter(k);
    rc = gwf_cuMemSetAccess(ptr, size, d ? d : desc, count);
    gw_route_leave(prev);
    free(d);
    return rc;
}

CUresult CUDAAPI cuMemPoolSetAccess(CUmemoryPool pool, const CUmemAccessDesc *map, size_t count)
{
    if (gw_servers_n <= 1)
        return gwf_cuMemPoolSetAccess(pool, map, count);
    CUmemAccessDesc *d;
    int k = -1;
    CUresult rc = access_list(GW_OP_cuMemPoolSetAccess, map, count, &d, &k);
    if (rc == CUDA_SUCCESS && k >= 0 && !gw_handle_fits((uint64_t)(uintptr_t)pool, k))
        rc = gw_route_mixed(GW_OP_cuMemPoolSetAccess); /* the pool of one server, devices of another */
    if (rc == CUDA_SUCCESS)
        rc = gwf_cuMemPoolSetAccess(pool, d ? d : map, count);
    free(d);
    return rc;
}

CUresult CUDAAPI cuMemGetAccess(unsigned long long *flags, const CUmemLocation *location, CUdeviceptr ptr)
{
    if (gw_servers_n <= 1 || !location)
        return gwf_cuMemGetAccess(flags, location, ptr);
    CUmemLocation loc;
    int prev;
    CUresult rc = enter_location(GW_OP_cuMemGetAccess, location, &loc, &prev);
    if (rc != CUDA_SUCCESS)
        return rc;
    rc = gwf_cuMemGetAccess(flags, &loc, ptr);
    gw_route_leave(prev);
    return rc;
}

CUresult CUDAAPI cuMemPoolGetAccess(CUmemAccess_flags *flags, CUmemoryPool memPool, CUmemLocation *location)
{
    if (gw_servers_n <= 1 || !location)
        return gwf_cuMemPoolGetAccess(flags, memPool, location);
    CUmemLocation loc = *location;
    int k = -1;
    CUresult rc = gw_mem_location_to_server(GW_OP_cuMemPoolGetAccess, &loc, &k);
    if (rc == CUDA_SUCCESS && k >= 0 && !gw_handle_fits((uint64_t)(uintptr_t)memPool, k))
        rc = gw_route_mixed(GW_OP_cuMemPoolGetAccess);
    return rc == CUDA_SUCCESS ? gwf_cuMemPoolGetAccess(flags, memPool, &loc) : rc;
}

CUresult CUDAAPI cuMemPoolCreate(CUmemoryPool *pool, const CUmemPoolProps *poolProps)
{
    if (gw_servers_n <= 1 || !poolProps)
        return gwf_cuMemPoolCreate(pool, poolProps);
    CUmemPoolProps p = *poolProps;
    int prev;
    CUresult rc = enter_location(GW_OP_cuMemPoolCreate, &poolProps->location, &p.location, &prev);
    if (rc != CUDA_SUCCESS)
        return rc;
    rc = gwf_cuMemPoolCreate(pool, &p);
    gw_route_leave(prev);
    return rc;
}

/* CUDA 13's pools by location: the location is an input the driver may read only. */
CUresult CUDAAPI cuMemGetDefaultMemPool(CUmemoryPool *pool_out, CUmemLocation *location, CUmemAllocationType type)
{
    if (gw_servers_n <= 1 || !location)
        return gwf_cuMemGetDefaultMemPool(pool_out, location, type);
    CUmemLocation loc;
    int prev;
    CUresult rc = enter_location(GW_OP_cuMemGetDefaultMemPool, location, &loc, &prev);
    if (rc != CUDA_SUCCESS)
        return rc;
    rc = gwf_cuMemGetDefaultMemPool(pool_out, &loc, type);
    gw_route_leave(prev);
    return rc;
}

CUresult CUDAAPI cuMemGetMemPool(CUmemoryPool *pool, CUmemLocation *location, CUmemAllocationType type)
{
    if (gw_servers_n <= 1 || !location)
        return gwf_cuMemGetMemPool(pool, location, type);
    CUmemLocation loc;
    int prev;
    CUresult rc = enter_location(GW_OP_cuMemGetMemPool, location, &loc, &prev);
    if (rc != CUDA_SUCCESS)
        return rc;
    rc = gwf_cuMemGetMemPool(pool, &loc, type);
    gw_route_leave(prev);
    return rc;
}

CUresult CUDAAPI cuMemSetMemPool(CUmemLocation *location, CUmemAllocationType type, CUmemoryPool pool)
{
    if (gw_servers_n <= 1 || !location)
        return gwf_cuMemSetMemPool(location, type, pool);
    CUmemLocation loc = *location;
    int k = -1;
    CUresult rc = gw_mem_location_to_server(GW_OP_cuMemSetMemPool, &loc, &k);
    if (rc == CUDA_SUCCESS && k >= 0 && !gw_handle_fits((uint64_t)(uintptr_t)pool, k))
        rc = gw_route_mixed(GW_OP_cuMemSetMemPool);
    return rc == CUDA_SUCCESS ? gwf_cuMemSetMemPool(&loc, type, pool) : rc;
}
