/* TEST DOUBLE: gpuwire CPU stand-in driver. Memory pools as bookkeeping only: the device's
 * default pool, created pools, the current pool of the device, the attributes (the reuse
 * flags and release threshold are kept; the stand-in's pools never hold memory, so the
 * reserved and used figures are 0) and access (the owning device always reads and writes). */
#include "standin.h"

#include <stdlib.h>
#include <string.h>

typedef struct sd_pool {
    sd_obj h;
    CUdevice dev;
    int reuse[3];               /* CU_MEMPOOL_ATTR_REUSE_* (1..3) */
    cuuint64_t threshold;
} sd_pool;

static sd_pool *g_default;      /* device 0's default pool, made on first use */
static sd_pool *g_current;      /* device 0's current pool; NULL: the default */

static sd_pool *default_pool(void)
{
    if (!g_default) {
        sd_pool *p = calloc(1, sizeof *p);
        if (!p)
            return NULL;
        p->h.kind = SD_POOL;
        p->reuse[0] = p->reuse[1] = p->reuse[2] = 1;
        if (sd_obj_add(p)) {
            free(p);
            return NULL;
        }
        g_default = p;
    }
    return g_default;
}

/* A device location of the one device and the pinned allocation type. Lock held. */
static CUresult check_location(const CUmemLocation *loc, CUmemAllocationType type)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!loc || loc->type != CU_MEM_LOCATION_TYPE_DEVICE || type != CU_MEM_ALLOCATION_TYPE_PINNED)
        return CUDA_ERROR_INVALID_VALUE;
    return sd_check_dev(loc->id) == CUDA_SUCCESS ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

static CUresult get_pool(CUmemoryPool *out, int current)
{
    sd_pool *p = current && g_current ? g_current : default_pool();
    if (!p)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *out = (CUmemoryPool)p;
    return CUDA_SUCCESS;
}

SD_API CUresult cuMemGetDefaultMemPool(CUmemoryPool *out, CUmemLocation *loc, CUmemAllocationType type)
{
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = check_location(loc, type);
    if (r == CUDA_SUCCESS)
        r = get_pool(out, 0);
    sd_unlock();
    return r;
}

SD_API CUresult cuMemGetMemPool(CUmemoryPool *out, CUmemLocation *loc, CUmemAllocationType type)
{
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = check_location(loc, type);
    if (r == CUDA_SUCCESS)
        r = get_pool(out, 1);
    sd_unlock();
    return r;
}

SD_API CUresult cuMemSetMemPool(CUmemLocation *loc, CUmemAllocationType type, CUmemoryPool pool)
{
    sd_lock();
    CUresult r = check_location(loc, type);
    if (r == CUDA_SUCCESS && !sd_obj_live(pool, SD_POOL))
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        g_current = (sd_pool *)pool;
    sd_unlock();
    return r;
}

/* the device's default pool, or (current) the one cuMemSetMemPool made current */
static CUresult device_pool(CUmemoryPool *out, CUdevice dev, int current)
{
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = !sd_initialized() ? CUDA_ERROR_NOT_INITIALIZED : sd_check_dev(dev);
    if (r == CUDA_SUCCESS)
        r = get_pool(out, current);
    sd_unlock();
    return r;
}

SD_API CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *out, CUdevice dev) { return device_pool(out, dev, 0); }

SD_API CUresult cuDeviceGetMemPool(CUmemoryPool *out, CUdevice dev) { return device_pool(out, dev, 1); }

SD_API CUresult cuMemPoolCreate(CUmemoryPool *out, const CUmemPoolProps *props)
{
    if (!out || !props)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = check_location(&props->location, props->allocType);
    sd_pool *p = NULL;
    if (r == CUDA_SUCCESS && (!(p = calloc(1, sizeof *p)) || (p->h.kind = SD_POOL, sd_obj_add(p)))) {
        free(p);
        p = NULL;
        r = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (p) {
        p->dev = props->location.id;
        *out = (CUmemoryPool)p;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemPoolDestroy(CUmemoryPool pool)
{
    sd_lock();
    int ok = sd_obj_live(pool, SD_POOL) && (sd_pool *)pool != g_default;
    if (ok) {
        sd_obj_del(pool);
        if (g_current == (sd_pool *)pool)
            g_current = NULL; /* the device falls back to its default pool */
    }
    sd_unlock();
    if (!ok)
        return CUDA_ERROR_INVALID_VALUE;
    free(pool);
    return CUDA_SUCCESS;
}

SD_API CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
    if (!value)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(pool, SD_POOL) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    sd_pool *p = (sd_pool *)pool;
    cuuint64_t u;
    if (r == CUDA_SUCCESS) {
        switch (attr) {
        case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
            memcpy(&p->reuse[attr - 1], value, sizeof(int));
            break;
        case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
            memcpy(&p->threshold, value, sizeof p->threshold);
            break;
        case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
        case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
            memcpy(&u, value, sizeof u);
            if (u != 0)
                r = CUDA_ERROR_INVALID_VALUE; /* only a reset to 0 is allowed */
            break;
        default:
            r = CUDA_ERROR_INVALID_VALUE;
        }
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
    if (!value)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(pool, SD_POOL) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    sd_pool *p = (sd_pool *)pool;
    cuuint64_t zero = 0;
    if (r == CUDA_SUCCESS) {
        switch (attr) {
        case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
            memcpy(value, &p->reuse[attr - 1], sizeof(int));
            break;
        case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
            memcpy(value, &p->threshold, sizeof p->threshold);
            break;
        case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT:
        case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
        case CU_MEMPOOL_ATTR_USED_MEM_CURRENT:
        case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
            memcpy(value, &zero, sizeof zero);
            break;
        default:
            r = CUDA_ERROR_INVALID_VALUE;
        }
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemPoolSetAccess(CUmemoryPool pool, const CUmemAccessDesc *map, size_t count)
{
    if (count && !map)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(pool, SD_POOL) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; r == CUDA_SUCCESS && i < count; i++) {
        if (map[i].location.type != CU_MEM_LOCATION_TYPE_DEVICE || sd_check_dev(map[i].location.id) != CUDA_SUCCESS)
            r = CUDA_ERROR_INVALID_DEVICE;
        else if (map[i].flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
            r = CUDA_ERROR_INVALID_VALUE; /* the owning (and only) device keeps read-write access */
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemPoolGetAccess(CUmemAccess_flags *flags, CUmemoryPool pool, CUmemLocation *loc)
{
    if (!flags || !loc)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(pool, SD_POOL) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS && (loc->type != CU_MEM_LOCATION_TYPE_DEVICE || sd_check_dev(loc->id) != CUDA_SUCCESS))
        r = CUDA_ERROR_INVALID_DEVICE;
    if (r == CUDA_SUCCESS)
        *flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    sd_unlock();
    return r;
}
