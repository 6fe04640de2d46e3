/* TEST DOUBLE: gpuwire CPU stand-in driver. Memory pools and stream-ordered allocation: the
 * device's default pool, created pools, the current pool of the device, the attributes (the
 * reuse flags and release threshold are kept; reserved and used figures count what the pool's
 * allocations map, nothing is kept back after a free), access (the owning device always reads
 * and writes), cuMemAllocAsync / cuMemAllocFromPoolAsync / cuMemFreeAsync (streams run work at
 * once, so these allocate and free at once).
 *
 * A pool created with POSIX_FILE_DESCRIPTOR handles keeps its bytes in one memfd (sparse, the
 * device's size, named for its physical device) and each allocation maps its piece of it: the
 * pool exports as a duplicate of the memfd, an allocation as its offset
 * (cuMemPoolExportPointer), and another process's stand-in maps the same piece
 * (cuMemPoolImportFromShareableHandle, cuMemPoolImportPointer), as processes share a pool on a
 * GPU. Fabric and Win32 handles are not offered (CUDA_ERROR_NOT_SUPPORTED). */
#define _GNU_SOURCE
#include "standin.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define POOL_MEMFD_PREFIX "gpuwire-standin-pool-p"
#define POOL_PTR_MAGIC 0x6c6f6f70647367ull /* "gsdpool" */

typedef struct sd_pool {
    sd_obj h;
    CUdevice dev;
    int reuse[3];               /* CU_MEMPOOL_ATTR_REUSE_* (1..3) */
    cuuint64_t threshold;
    int fd;                     /* exportable pools: the memfd holding their bytes; else -1 */
    int imported;               /* made by cuMemPoolImportFromShareableHandle: maps, never allocates */
    int destroyed;              /* cuMemPoolDestroy with allocations left: freed with the last */
    uint64_t next_off;          /* exportable pools: where the next allocation's piece starts */
    size_t used, used_high;     /* bytes its live allocations map */
    size_t allocs;              /* live allocations */
} sd_pool;

/* What cuMemPoolExportPointer writes into CUmemPoolPtrExportData's 64 bytes. */
typedef struct pool_ptr {
    uint64_t magic, off, size, mapped;
} pool_ptr;
_Static_assert(sizeof(pool_ptr) <= sizeof(CUmemPoolPtrExportData), "fits the driver's 64 bytes");

static sd_pool *g_default;      /* device 0's default pool, made on first use */
static sd_pool *g_current;      /* device 0's current pool; NULL: the default */

static sd_pool *default_pool(void)
{
    if (!g_default) {
        sd_pool *p = calloc(1, sizeof *p);
        if (!p)
            return NULL;
        p->h.kind = SD_POOL;
        p->fd = -1;
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
    unsigned types = (unsigned)props->handleTypes;
    if (types & (CU_MEM_HANDLE_TYPE_FABRIC | CU_MEM_HANDLE_TYPE_WIN32 | CU_MEM_HANDLE_TYPE_WIN32_KMT))
        return CUDA_ERROR_NOT_SUPPORTED;
    if (types & ~(unsigned)CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
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
        p->fd = -1;
        if (types) { /* exportable: one sparse memfd of the device's size holds every allocation */
            char name[64];
            snprintf(name, sizeof name, POOL_MEMFD_PREFIX "%d", sd_dev_phys(p->dev));
            p->fd = memfd_create(name, MFD_CLOEXEC);
            if (p->fd < 0 || ftruncate(p->fd, (off_t)sd_dev_total_mem(p->dev)) != 0) {
                if (p->fd >= 0)
                    close(p->fd);
                sd_obj_del(p);
                free(p);
                p = NULL;
                r = CUDA_ERROR_OUT_OF_MEMORY;
            }
        }
    }
    if (p)
        *out = (CUmemoryPool)p;
    sd_unlock();
    return r;
}

static void pool_free(sd_pool *p)
{
    if (p->fd >= 0)
        close(p->fd);
    free(p);
}

SD_API CUresult cuMemPoolDestroy(CUmemoryPool pool)
{
    sd_lock();
    sd_pool *p = (sd_pool *)pool;
    int ok = sd_obj_live(pool, SD_POOL) && p != g_default;
    if (ok) {
        sd_obj_del(pool);
        if (g_current == p)
            g_current = NULL; /* the device falls back to its default pool */
        if (p->allocs)
            p->destroyed = 1; /* its memory goes once the last allocation is freed, as the driver's */
        else
            pool_free(p);
    }
    sd_unlock();
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

void sd_pool_freed(void *pool, size_t mapped, uint64_t off, int imported)
{
    sd_pool *p = pool;
    if (imported) { /* the exporting process's pool holds the bytes */
        p->allocs--;
    } else {
        p->used -= mapped < p->used ? mapped : p->used;
        p->allocs--;
        if (p->fd >= 0) /* the piece's pages go back; its offset is not reused */
            fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)mapped);
    }
    if (p->destroyed && !p->allocs)
        pool_free(p);
}

/* A stream-ordered allocation of size bytes from pool p for work of context c. Lock held. */
static CUresult pool_alloc(sd_pool *p, sd_ctx *c, size_t size, uintptr_t *out)
{
    if (!size)
        return CUDA_ERROR_INVALID_VALUE;
    if (p->imported)
        return CUDA_ERROR_INVALID_VALUE; /* an imported pool only maps the exporter's allocations */
    size_t mapped = (size + 4095) & ~(size_t)4095;
    if (size > sd_dev_total_mem(c->dev) || mapped < size)
        return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult r;
    if (p->fd < 0) {
        r = sd_mem_alloc(c, size, p, out);
    } else {
        uint64_t total = sd_dev_total_mem(p->dev);
        if (p->next_off > total || mapped > total - p->next_off)
            return CUDA_ERROR_OUT_OF_MEMORY;
        void *m = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, (off_t)p->next_off);
        if (m == MAP_FAILED)
            return CUDA_ERROR_OUT_OF_MEMORY;
        r = sd_mem_adopt(c, (uintptr_t)m, size, mapped, p, p->next_off, 0);
        if (r != CUDA_SUCCESS) {
            munmap(m, mapped);
            return r;
        }
        p->next_off += mapped;
        *out = (uintptr_t)m;
    }
    if (r == CUDA_SUCCESS) {
        p->allocs++;
        p->used += mapped;
        if (p->used > p->used_high)
            p->used_high = p->used;
    }
    return r;
}

static CUresult alloc_async(CUdeviceptr *dptr, size_t size, CUmemoryPool pool, int current, CUstream s)
{
    if (!dptr)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_stream_check(s, &c);
    CUmemoryPool h = pool;
    if (r == CUDA_SUCCESS && current)
        r = get_pool(&h, 1);
    if (r == CUDA_SUCCESS && !sd_obj_live(h, SD_POOL))
        r = CUDA_ERROR_INVALID_VALUE;
    uintptr_t p = 0;
    if (r == CUDA_SUCCESS)
        r = pool_alloc((sd_pool *)h, c, size, &p);
    if (r == CUDA_SUCCESS)
        *dptr = (CUdeviceptr)p;
    sd_unlock();
    return r;
}

SD_API CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t size, CUstream s) { return alloc_async(dptr, size, NULL, 1, s); }
SD_API CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t size, CUstream s) { return alloc_async(dptr, size, NULL, 1, s); }
SD_API CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t size, CUmemoryPool pool, CUstream s)
{
    return alloc_async(dptr, size, pool, 0, s);
}
SD_API CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t size, CUmemoryPool pool, CUstream s)
{
    return alloc_async(dptr, size, pool, 0, s);
}

SD_API CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream s)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_stream_check(s, &c);
    if (r == CUDA_SUCCESS)
        r = sd_mem_free(dptr);
    sd_unlock();
    return r;
}
SD_API CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream s) { return cuMemFreeAsync(dptr, s); }

SD_API CUresult cuMemPoolExportToShareableHandle(void *handle_out, CUmemoryPool pool, CUmemAllocationHandleType type,
                                                 unsigned long long flags)
{
    if (!handle_out || flags)
        return CUDA_ERROR_INVALID_VALUE;
    if (type == CU_MEM_HANDLE_TYPE_FABRIC || type == CU_MEM_HANDLE_TYPE_WIN32 || type == CU_MEM_HANDLE_TYPE_WIN32_KMT)
        return CUDA_ERROR_NOT_SUPPORTED;
    if (type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_pool *p = (sd_pool *)pool;
    CUresult r = sd_obj_live(pool, SD_POOL) && p->fd >= 0 && !p->imported ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        int fd = dup(p->fd);
        if (fd < 0)
            r = CUDA_ERROR_OUT_OF_MEMORY;
        else
            memcpy(handle_out, &fd, sizeof fd);
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemPoolImportFromShareableHandle(CUmemoryPool *pool_out, void *handle, CUmemAllocationHandleType type,
                                                   unsigned long long flags)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!pool_out || flags)
        return CUDA_ERROR_INVALID_VALUE;
    if (type == CU_MEM_HANDLE_TYPE_FABRIC || type == CU_MEM_HANDLE_TYPE_WIN32 || type == CU_MEM_HANDLE_TYPE_WIN32_KMT)
        return CUDA_ERROR_NOT_SUPPORTED;
    if (type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return CUDA_ERROR_INVALID_VALUE;
    intptr_t v = (intptr_t)handle; /* the fd travels as the pointer's value */
    int phys = v >= 0 && v <= INT32_MAX ? sd_memfd_device((int)v, POOL_MEMFD_PREFIX) : -1;
    if (phys < 0)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = CUDA_ERROR_INVALID_DEVICE; /* that device is not visible here */
    CUdevice dev = 0;
    for (int d = 0; d < sd_dev_count(); d++)
        if (sd_dev_phys(d) == phys) {
            dev = d;
            r = CUDA_SUCCESS;
            break;
        }
    sd_pool *p = NULL;
    if (r == CUDA_SUCCESS && (!(p = calloc(1, sizeof *p)) || (p->h.kind = SD_POOL, sd_obj_add(p)))) {
        free(p);
        p = NULL;
        r = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (p) {
        p->dev = dev;
        p->imported = 1;
        p->reuse[0] = p->reuse[1] = p->reuse[2] = 1;
        p->fd = fcntl((int)v, F_DUPFD_CLOEXEC, 0); /* the caller may close its fd */
        if (p->fd < 0) {
            sd_obj_del(p);
            free(p);
            r = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            *pool_out = (CUmemoryPool)p;
        }
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemPoolExportPointer(CUmemPoolPtrExportData *out, CUdeviceptr ptr)
{
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    const sd_alloc *a = ptr <= UINTPTR_MAX ? sd_find((uintptr_t)ptr, 0) : NULL;
    /* the start of an allocation of an exportable pool of this process */
    CUresult r = a && a->base == ptr && a->pool && a->ipc == 0 && ((sd_pool *)a->pool)->fd >= 0
                     ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        pool_ptr e = {POOL_PTR_MAGIC, a->pool_off, a->size, a->mapped};
        memset(out, 0, sizeof *out);
        memcpy(out, &e, sizeof e);
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemPoolImportPointer(CUdeviceptr *ptr_out, CUmemoryPool pool, CUmemPoolPtrExportData *shareData)
{
    if (!ptr_out || !shareData)
        return CUDA_ERROR_INVALID_VALUE;
    pool_ptr e;
    memcpy(&e, shareData, sizeof e);
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    sd_pool *p = (sd_pool *)pool;
    struct stat st;
    if (r == CUDA_SUCCESS && (!sd_obj_live(pool, SD_POOL) || !p->imported || e.magic != POOL_PTR_MAGIC ||
                              !e.size || e.size > e.mapped || e.mapped % 4096 || e.off % 4096 ||
                              fstat(p->fd, &st) != 0 || e.off > (uint64_t)st.st_size ||
                              e.mapped > (uint64_t)st.st_size - e.off))
        r = CUDA_ERROR_INVALID_VALUE; /* not an imported pool, or not data one of its allocations gave */
    void *m = MAP_FAILED;
    if (r == CUDA_SUCCESS) {
        m = mmap(NULL, e.mapped, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, (off_t)e.off);
        if (m == MAP_FAILED)
            r = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (r == CUDA_SUCCESS) {
        r = sd_mem_adopt(c, (uintptr_t)m, e.size, e.mapped, p, e.off, 3);
        if (r != CUDA_SUCCESS) {
            munmap(m, e.mapped);
        } else {
            p->allocs++;
            *ptr_out = (CUdeviceptr)(uintptr_t)m;
        }
    }
    sd_unlock();
    return r;
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
            else
                p->used_high = p->used; /* the high-water mark starts again from now */
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
    cuuint64_t figure;
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
        case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT: /* nothing is kept back: reserved is what is used */
        case CU_MEMPOOL_ATTR_USED_MEM_CURRENT:
            figure = p->used;
            memcpy(value, &figure, sizeof figure);
            break;
        case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
        case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
            figure = p->used_high;
            memcpy(value, &figure, sizeof figure);
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
