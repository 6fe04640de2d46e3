/* A session's device-memory cap (the lease's, from `--mem-cap BYTES`): the
 * worker puts these wrappers in place of the driver's allocation entry points,
 * so an allocation past the cap fails with CUDA_ERROR_OUT_OF_MEMORY and the
 * memory queries report the capped view, whichever path the client used. */
#include <pthread.h>
#include <stdlib.h>

#include "../../common/idmap.h"
#include "core.h"

/* An allocation is charged what the driver maps for it, not what was asked
 * (else a million 1-byte allocations pass any cap). Measured with
 * tests/programs/memcap_small on an H100, driver 580.159 (free memory from
 * cuMemGetInfo, over hundreds of allocations each):
 * - cuMemAlloc, cuMemAllocPitch: a block is rounded up to GW_MEMCAP_ALIGN;
 *   blocks up to half a page share GW_MEMCAP_PAGE pages, as many whole blocks
 *   as fit in one (4096 of 1 byte, three of 512 KiB + 1); bigger ones take whole
 *   pages (1 MiB + 1 byte costs 2 MiB).
 * - stream-ordered (pool) allocations: rounded up to GW_MEMCAP_ALIGN and packed
 *   into the pool's 32 MiB chunks; a chunk's unused rest is not charged.
 * - cuMemCreate: its size, a multiple of the 2 MiB granularity it enforces. */
#define GW_MEMCAP_ALIGN 512ull
#define GW_MEMCAP_PAGE (2ull << 20)

static uint64_t cap, used;
static gw_idmap sizes; /* device address or VMM handle -> bytes charged (+1, so 0 is never stored) */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *real[GW_OP_COUNT];

#define REAL(name, type) ((type)real[GW_OP_##name - 256])

static uint64_t round_up(uint64_t n, uint64_t unit)
{
    return n > UINT64_MAX - unit ? UINT64_MAX : (n + unit - 1) / unit * unit; /* UINT64_MAX never fits */
}

static uint64_t charge_alloc(uint64_t n)
{
    if (n == 0)
        return 0; /* the driver refuses it */
    if (n > GW_MEMCAP_PAGE / 2)
        return round_up(n, GW_MEMCAP_PAGE);
    uint64_t block = round_up(n, GW_MEMCAP_ALIGN);
    return GW_MEMCAP_PAGE / (GW_MEMCAP_PAGE / block); /* its share of a page */
}

static uint64_t charge_pool(uint64_t n) { return round_up(n, GW_MEMCAP_ALIGN); }

static int reserve(uint64_t n)
{
    pthread_mutex_lock(&lock);
    int ok = n <= cap && used <= cap - n;
    if (ok)
        used += n;
    pthread_mutex_unlock(&lock);
    return ok;
}

static void settle(uint64_t key, uint64_t n, int ok)
{
    pthread_mutex_lock(&lock);
    if (ok && key)
        gw_idmap_put(&sizes, key, (void *)(uintptr_t)(n + 1));
    else
        used -= n;
    pthread_mutex_unlock(&lock);
}

static void release(uint64_t key)
{
    pthread_mutex_lock(&lock);
    uintptr_t n = (uintptr_t)gw_idmap_del(&sizes, key);
    if (n)
        used -= n - 1;
    pthread_mutex_unlock(&lock);
}

static CUresult alloc_v2(CUdeviceptr *p, size_t n)
{
    uint64_t c = charge_alloc(n);
    if (!reserve(c))
        return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult r = REAL(cuMemAlloc_v2, CUresult(*)(CUdeviceptr *, size_t))(p, n);
    settle(r == CUDA_SUCCESS ? *p : 0, c, r == CUDA_SUCCESS);
    return r;
}

static CUresult alloc_pitch(CUdeviceptr *p, size_t *pitch, size_t w, size_t h, unsigned e)
{
    CUresult r = REAL(cuMemAllocPitch_v2, CUresult(*)(CUdeviceptr *, size_t *, size_t, size_t, unsigned))(p, pitch, w,
                                                                                                       h, e);
    if (r != CUDA_SUCCESS)
        return r;
    uint64_t c = charge_alloc((uint64_t)*pitch * h);
    if (!reserve(c)) {
        REAL(cuMemFree_v2, CUresult(*)(CUdeviceptr))(*p);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    settle(*p, c, 1);
    return r;
}

#define ASYNC_ALLOC(fn, name)                                                                            \
    static CUresult fn(CUdeviceptr *p, size_t n, CUstream s)                                             \
    {                                                                                                    \
        uint64_t c = charge_pool(n);                                                                     \
        if (!reserve(c))                                                                                 \
            return CUDA_ERROR_OUT_OF_MEMORY;                                                             \
        CUresult r = REAL(name, CUresult(*)(CUdeviceptr *, size_t, CUstream))(p, n, s);                  \
        settle(r == CUDA_SUCCESS ? *p : 0, c, r == CUDA_SUCCESS);                                        \
        return r;                                                                                        \
    }
ASYNC_ALLOC(alloc_async, cuMemAllocAsync)
ASYNC_ALLOC(alloc_async_ptsz, cuMemAllocAsync_ptsz)

#define POOL_ALLOC(fn, name)                                                                             \
    static CUresult fn(CUdeviceptr *p, size_t n, CUmemoryPool pool, CUstream s)                          \
    {                                                                                                    \
        uint64_t c = charge_pool(n);                                                                     \
        if (!reserve(c))                                                                                 \
            return CUDA_ERROR_OUT_OF_MEMORY;                                                             \
        CUresult r = REAL(name, CUresult(*)(CUdeviceptr *, size_t, CUmemoryPool, CUstream))(p, n, pool, s); \
        settle(r == CUDA_SUCCESS ? *p : 0, c, r == CUDA_SUCCESS);                                        \
        return r;                                                                                        \
    }
POOL_ALLOC(alloc_pool, cuMemAllocFromPoolAsync)
POOL_ALLOC(alloc_pool_ptsz, cuMemAllocFromPoolAsync_ptsz)

static CUresult free_v2(CUdeviceptr p)
{
    CUresult r = REAL(cuMemFree_v2, CUresult(*)(CUdeviceptr))(p);
    if (r == CUDA_SUCCESS)
        release(p);
    return r;
}

#define ASYNC_FREE(fn, name)                                                                             \
    static CUresult fn(CUdeviceptr p, CUstream s)                                                        \
    {                                                                                                    \
        CUresult r = REAL(name, CUresult(*)(CUdeviceptr, CUstream))(p, s);                               \
        if (r == CUDA_SUCCESS)                                                                           \
            release(p);                                                                                  \
        return r;                                                                                        \
    }
ASYNC_FREE(free_async, cuMemFreeAsync)
ASYNC_FREE(free_async_ptsz, cuMemFreeAsync_ptsz)

/* Physical memory of the virtual-memory API counts when it is created, at its
 * size: the driver refuses a size that is not a multiple of its granularity. */
static CUresult mem_create(CUmemGenericAllocationHandle *h, size_t n, const CUmemAllocationProp *prop,
                           unsigned long long flags)
{
    if (!reserve(n))
        return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult r = REAL(cuMemCreate, CUresult(*)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
                                                 unsigned long long))(h, n, prop, flags);
    settle(r == CUDA_SUCCESS ? (uint64_t)*h : 0, n, r == CUDA_SUCCESS);
    return r;
}

static CUresult mem_release(CUmemGenericAllocationHandle h)
{
    CUresult r = REAL(cuMemRelease, CUresult(*)(CUmemGenericAllocationHandle))(h);
    if (r == CUDA_SUCCESS)
        release((uint64_t)h);
    return r;
}

/* What the client sees: a device of `cap` bytes, `used` of them taken. */
static CUresult mem_info(size_t *free, size_t *total)
{
    CUresult r = REAL(cuMemGetInfo_v2, CUresult(*)(size_t *, size_t *))(free, total);
    if (r != CUDA_SUCCESS)
        return r;
    pthread_mutex_lock(&lock);
    uint64_t left = cap - used;
    pthread_mutex_unlock(&lock);
    if (free && *free > left)
        *free = left;
    if (total && *total > cap)
        *total = cap;
    return r;
}

static CUresult total_mem(size_t *bytes, CUdevice dev)
{
    CUresult r = REAL(cuDeviceTotalMem_v2, CUresult(*)(size_t *, CUdevice))(bytes, dev);
    if (r == CUDA_SUCCESS && bytes && *bytes > cap)
        *bytes = cap;
    return r;
}

void gw_memcap_install(void **syms, uint64_t bytes)
{
    cap = bytes;
    struct { unsigned op; void *fn; } w[] = {
        {GW_OP_cuMemAlloc_v2, (void *)alloc_v2},
        {GW_OP_cuMemAllocPitch_v2, (void *)alloc_pitch},
        {GW_OP_cuMemAllocAsync, (void *)alloc_async},
        {GW_OP_cuMemAllocAsync_ptsz, (void *)alloc_async_ptsz},
        {GW_OP_cuMemAllocFromPoolAsync, (void *)alloc_pool},
        {GW_OP_cuMemAllocFromPoolAsync_ptsz, (void *)alloc_pool_ptsz},
        {GW_OP_cuMemFree_v2, (void *)free_v2},
        {GW_OP_cuMemFreeAsync, (void *)free_async},
        {GW_OP_cuMemFreeAsync_ptsz, (void *)free_async_ptsz},
        {GW_OP_cuMemCreate, (void *)mem_create},
        {GW_OP_cuMemRelease, (void *)mem_release},
        {GW_OP_cuMemGetInfo_v2, (void *)mem_info},
        {GW_OP_cuDeviceTotalMem_v2, (void *)total_mem},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        unsigned k = w[i].op - 256;
        real[k] = syms[k];
        if (syms[k]) /* a driver without the entry point keeps answering NOT_SUPPORTED */
            syms[k] = w[i].fn;
    }
}
