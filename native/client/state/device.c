/* Device attributes (cached: they never change) and the few that must describe
 * what a remote GPU can do rather than what the card can do locally; and the
 * device queries every program's start-up makes (count, handle, name, total
 * memory, UUIDs, PCI bus id, attributes, the module loading mode), answered
 * from the table HELLO_OK carried
 * (OK_DEVICES, wire/handshake.c) without a round trip (issue #20). Only the
 * plain case is answered here (cuInit done, pointers given, a buffer the
 * answer fits, a device in the table): anything else still goes to the
 * driver, so its error is the driver's own. */
#include <pthread.h>
#include <string.h>

#include "state.h"

#define MAX_DEVS 64

static int cache[MAX_DEVS][CU_DEVICE_ATTRIBUTE_MAX];
static CUresult status[MAX_DEVS][CU_DEVICE_ATTRIBUTE_MAX];
static unsigned char cached[MAX_DEVS][CU_DEVICE_ATTRIBUTE_MAX];
static unsigned char fetched[MAX_DEVS];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

/* Features that need the GPU to reach client memory or another process.
 * Mapped and managed memory are served (state/mapped.c), their attributes
 * the driver's; but the host and the device never touch one page at the
 * same time (docs/host-memory.md), which these zeros say. Legacy IPC handles
 * (memory and events) are served between a client's processes
 * (worker/handlers/ipc.c), and so are POSIX file-descriptor handles of
 * allocations and pools (api/shareable.c): the driver's answer; fabric
 * handles are not. */
static int remote_override(CUdevice_attribute a, int *v)
{
    switch (a) {
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS:
    case CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS:
    case CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES:
    case CU_DEVICE_ATTRIBUTE_DIRECT_MANAGED_MEM_ACCESS_FROM_HOST:
    case CU_DEVICE_ATTRIBUTE_HOST_NATIVE_ATOMIC_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_FABRIC_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED:
        *v = 0;
        return 1;
    case CU_DEVICE_ATTRIBUTE_MEMPOOL_SUPPORTED_HANDLE_TYPES: /* of the driver's, only POSIX fds are brokered */
        *v &= CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
        return 1;
    case CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED: /* registration is kept in the client */
        *v = 1;
        return 1;
    default:
        return 0;
    }
}

/* Every attribute of a device in one round trip, the first time any is asked:
 * cudart alone asks for about a hundred at start-up. */
static void fetch_all(CUdevice dev)
{
    gw_req *q = gw_req_begin_quiet(GW_OP_DEVICE_ATTRS);
    gw_put_fields(q, gw_device_attrs_req, {.device = (uint32_t)gw_req_on_device(q, dev)}); /* several servers: there */
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        gw_device_attrs_rep rep = {0};
        gw_get_fields(r, gw_device_attrs_rep, &rep); /* short: n stays 0 */
        uint32_t n = rep.n;
        pthread_mutex_lock(&cache_lock);
        for (uint32_t a = 1; a <= n && a < CU_DEVICE_ATTRIBUTE_MAX; a++) {
            /* the list's items (i32 status, i32 value): no generated codec for them */
            int32_t st = (int32_t)gw_get_u32(r), v = (int32_t)gw_get_u32(r);
            if (gw_rep_status(r, CUDA_SUCCESS) != CUDA_SUCCESS)
                break;
            remote_override((CUdevice_attribute)a, &v);
            cache[dev][a] = v;
            status[dev][a] = (CUresult)st;
            cached[dev][a] = 1;
        }
        fetched[dev] = 1;
        pthread_mutex_unlock(&cache_lock);
    }
    gw_rep_end(r);
}

/* The attributes HELLO_OK carried for dev (the table's device with that
 * handle), taken as fetch_all would take DEVICE_ATTRS' answer; 0 if none. */
static int fill_from_table(CUdevice dev)
{
    int n = gw_handshake_device_count();
    for (int i = 0; i < n; i++) {
        const gw_device_info *d = gw_handshake_device(i);
        const int32_t *a = gw_handshake_device_attrs(i);
        if (!d || !a || d->status != CUDA_SUCCESS || d->handle != (int32_t)dev)
            continue;
        pthread_mutex_lock(&cache_lock);
        for (uint32_t k = 1; k <= d->attr_count && k < CU_DEVICE_ATTRIBUTE_MAX; k++) {
            int v = a[2 * (k - 1) + 1];
            remote_override((CUdevice_attribute)k, &v);
            cache[dev][k] = v;
            status[dev][k] = (CUresult)a[2 * (k - 1)];
            cached[dev][k] = 1;
        }
        fetched[dev] = 1;
        pthread_mutex_unlock(&cache_lock);
        return 1;
    }
    return 0;
}

CUresult CUDAAPI cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
    if (pi && dev >= 0 && dev < MAX_DEVS && attrib > 0 && attrib < CU_DEVICE_ATTRIBUTE_MAX && gw_initialized()) {
        pthread_mutex_lock(&cache_lock);
        int need = !fetched[dev];
        pthread_mutex_unlock(&cache_lock);
        if (need && !fill_from_table(dev))
            fetch_all(dev);
        pthread_mutex_lock(&cache_lock);
        int hit = cached[dev][attrib];
        int v = cache[dev][attrib];
        CUresult st = status[dev][attrib];
        pthread_mutex_unlock(&cache_lock);
        if (hit) {
            gw_stat_call(GW_OP_cuDeviceGetAttribute);
            if (st == CUDA_SUCCESS)
                *pi = v;
            return st;
        }
    }
    CUresult rc = gwf_cuDeviceGetAttribute(pi, attrib, dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    remote_override(attrib, pi);
    if (dev >= 0 && dev < MAX_DEVS && attrib >= 0 && attrib < CU_DEVICE_ATTRIBUTE_MAX) {
        pthread_mutex_lock(&cache_lock);
        cache[dev][attrib] = *pi;
        status[dev][attrib] = CUDA_SUCCESS;
        cached[dev][attrib] = 1;
        pthread_mutex_unlock(&cache_lock);
    }
    return rc;
}

/* What every launch is checked against (api/launch.c), read once per device: a
 * launch would otherwise ask eight attributes, each behind the cache lock.
 * Order: max grid x, y, z, max block x, y, z, max threads per block, max
 * opt-in shared memory per block; -1 where the driver gave no answer. */
static int limits[MAX_DEVS][GW_LAUNCH_LIMITS];
static int limits_known[MAX_DEVS];

const int *gw_device_launch_limits(int dev)
{
    if (dev < 0 || dev >= MAX_DEVS)
        return NULL;
    if (!__atomic_load_n(&limits_known[dev], __ATOMIC_ACQUIRE)) {
        static const CUdevice_attribute which[GW_LAUNCH_LIMITS] = {
            CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X,  CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y,
            CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z,  CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X,
            CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y, CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z,
            CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN};
        int got[GW_LAUNCH_LIMITS];
        for (int i = 0; i < GW_LAUNCH_LIMITS; i++)
            if (cuDeviceGetAttribute(&got[i], which[i], dev) != CUDA_SUCCESS)
                got[i] = -1;
        pthread_mutex_lock(&cache_lock);
        memcpy(limits[dev], got, sizeof got);
        __atomic_store_n(&limits_known[dev], 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&cache_lock);
    }
    return limits[dev];
}

/* ---- start-up queries from HELLO_OK's device table ---- */

static const gw_device_info *table_device(CUdevice dev)
{
    if (!gw_initialized())
        return NULL;
    int n = gw_handshake_device_count();
    for (int i = 0; i < n; i++) {
        const gw_device_info *d = gw_handshake_device(i);
        if (d && d->status == CUDA_SUCCESS && d->handle == (int32_t)dev)
            return d;
    }
    return NULL;
}

CUresult CUDAAPI cuDeviceGetCount(int *count)
{
    int n = gw_initialized() ? gw_handshake_device_count() : -1;
    if (!count || n < 0)
        return gwf_cuDeviceGetCount(count);
    gw_stat_call(GW_OP_cuDeviceGetCount);
    *count = n;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGet(CUdevice *device, int ordinal)
{
    int n = gw_initialized() ? gw_handshake_device_count() : -1;
    if (device && n >= 0 && (ordinal < 0 || ordinal >= n)) {
        gw_stat_call(GW_OP_cuDeviceGet);
        return CUDA_ERROR_INVALID_DEVICE; /* the driver's answer to an ordinal past its devices */
    }
    const gw_device_info *d = n >= 0 ? gw_handshake_device(ordinal) : NULL;
    if (!device || !d || d->status != CUDA_SUCCESS)
        return gwf_cuDeviceGet(device, ordinal);
    gw_stat_call(GW_OP_cuDeviceGet);
    *device = (CUdevice)d->handle;
    return CUDA_SUCCESS;
}

/* A text answer from the device table (NUL-terminated at the handshake) into
 * the caller's buffer: 1 if it fits, else 0 and the driver is asked (it
 * decides what a short buffer gets). */
static int table_text(const char *text, char *out, int len)
{
    size_t n = strlen(text);
    if (!out || len <= 0 || (size_t)len <= n)
        return 0;
    memcpy(out, text, n + 1);
    return 1;
}

CUresult CUDAAPI cuDeviceGetName(char *name, int len, CUdevice dev)
{
    const gw_device_info *d = table_device(dev);
    if (!d || !table_text(d->name, name, len))
        return gwf_cuDeviceGetName(name, len, dev);
    gw_stat_call(GW_OP_cuDeviceGetName);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev)
{
    const gw_device_info *d = table_device(dev);
    if (!d || !table_text(d->pci_bus_id, pciBusId, len))
        return gwf_cuDeviceGetPCIBusId(pciBusId, len, dev);
    gw_stat_call(GW_OP_cuDeviceGetPCIBusId);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
    const gw_device_info *d = table_device(dev);
    if (!bytes || !d)
        return gwf_cuDeviceTotalMem_v2(bytes, dev);
    gw_stat_call(GW_OP_cuDeviceTotalMem_v2);
    *bytes = (size_t)d->total_mem;
    return CUDA_SUCCESS;
}

#undef cuDeviceGetUuid
CUresult CUDAAPI cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
    const gw_device_info *d = table_device(dev);
    if (!uuid || !d)
        return gwf_cuDeviceGetUuid(uuid, dev);
    gw_stat_call(GW_OP_cuDeviceGetUuid);
    memcpy(uuid, d->uuid, sizeof d->uuid);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev)
{
    const gw_device_info *d = table_device(dev);
    if (!uuid || !d)
        return gwf_cuDeviceGetUuid_v2(uuid, dev);
    gw_stat_call(GW_OP_cuDeviceGetUuid_v2);
    memcpy(uuid, d->uuid_v2, sizeof d->uuid_v2);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuModuleGetLoadingMode(CUmoduleLoadingMode *mode)
{
    const gw_device_info *d = gw_initialized() ? gw_handshake_device(0) : NULL;
    if (!mode || !d || !d->loading_mode)
        return gwf_cuModuleGetLoadingMode(mode);
    gw_stat_call(GW_OP_cuModuleGetLoadingMode);
    *mode = (CUmoduleLoadingMode)d->loading_mode;
    return CUDA_SUCCESS;
}
