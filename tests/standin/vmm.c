/* TEST DOUBLE: gpuwire CPU stand-in driver. The virtual memory management API
 * (cuMemAddressReserve, cuMemCreate, cuMemMap, cuMemSetAccess, ...) and its
 * POSIX file-descriptor handles (cuMemExportToShareableHandle /
 * cuMemImportFromShareableHandle).
 *
 * Model: a reservation is an inaccessible anonymous mapping; the physical
 * memory of cuMemCreate is a memfd (named for its physical device), so an
 * exported handle is simply a duplicate of that memfd and another process
 * that imports it maps the same pages: two processes' stand-ins share the
 * bytes as two processes share a GPU allocation. cuMemMap maps the memfd over
 * the reservation; kernels and copies reach a mapped range only once
 * cuMemSetAccess gave its device access (sd_vmm_range).
 *
 * Errors as the real driver gives them: sizes, addresses and offsets that are
 * not multiples of the granularity, unknown flags, handle types and locations
 * are CUDA_ERROR_INVALID_VALUE, a device ordinal out of range
 * CUDA_ERROR_INVALID_DEVICE, an fd that is not an exported allocation
 * CUDA_ERROR_UNKNOWN (the real driver's answer, 2026-12-07). Fabric handles are not offered
 * (CUDA_ERROR_NOT_SUPPORTED), nor Win32 ones (not a Windows driver). */
#define _GNU_SOURCE
#include "standin.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GRANULE ((size_t)2 << 20) /* an H100's minimum and recommended granularity */
#define MEMFD_PREFIX "gpuwire-standin-vmm-p"
#define MAX_RANGES 4096

typedef struct sd_vmem {
    sd_obj h;                 /* SD_VMEM: the CUmemGenericAllocationHandle points here */
    int fd;                   /* the memfd holding the bytes */
    size_t size;
    CUdevice dev;             /* visible ordinal */
    unsigned handle_types;    /* CUmemAllocationHandleType bits it may be exported as */
    int handle_refs;          /* cuMemCreate / import / retain, less cuMemRelease */
    int maps;                 /* live mappings of it */
} sd_vmem;

typedef struct reservation {
    uintptr_t base;
    size_t size;
} reservation;

typedef struct mapping {
    uintptr_t base;
    size_t size;
    sd_vmem *mem;
    unsigned char access[SD_MAX_DEVICES]; /* CUmemAccess_flags per visible device */
} mapping;

static reservation g_res[MAX_RANGES];
static size_t g_nres;
static mapping g_map[MAX_RANGES];
static size_t g_nmap;

static int aligned(uint64_t v) { return v % GRANULE == 0; }

static reservation *reservation_holding(uintptr_t a, size_t len)
{
    for (size_t i = 0; i < g_nres; i++)
        if (a >= g_res[i].base && a - g_res[i].base <= g_res[i].size && len <= g_res[i].size - (a - g_res[i].base))
            return &g_res[i];
    return NULL;
}

static mapping *mapping_at(uintptr_t a)
{
    for (size_t i = 0; i < g_nmap; i++)
        if (a >= g_map[i].base && a - g_map[i].base < g_map[i].size)
            return &g_map[i];
    return NULL;
}

/* A live handle (not yet released by every holder), or NULL. */
static sd_vmem *live_handle(CUmemGenericAllocationHandle h)
{
    sd_vmem *m = (sd_vmem *)(uintptr_t)h;
    return h && sd_obj_live(m, SD_VMEM) && m->handle_refs > 0 ? m : NULL;
}

static void drop_if_unused(sd_vmem *m)
{
    if (m->handle_refs > 0 || m->maps > 0)
        return;
    sd_mem_uncharge(m->dev, m->size);
    close(m->fd);
    sd_obj_del(m);
    free(m);
}

/* The device a location names: DEVICE type and a visible ordinal. */
static CUresult location_device(const CUmemLocation *loc, CUdevice *dev)
{
    if (loc->type != CU_MEM_LOCATION_TYPE_DEVICE)
        return CUDA_ERROR_INVALID_VALUE; /* host and NUMA locations: not offered by the stand-in */
    CUresult r = sd_check_dev(loc->id);
    if (r == CUDA_SUCCESS)
        *dev = loc->id;
    return r;
}

void *sd_vmm_range(uintptr_t a, size_t len, const sd_ctx *ctx)
{
    mapping *m = mapping_at(a);
    if (!m || len > m->size - (a - m->base))
        return NULL;
    if (ctx)
        return ctx->dev >= 0 && ctx->dev < SD_MAX_DEVICES && m->access[ctx->dev] ? (void *)a : NULL;
    for (int d = 0; d < SD_MAX_DEVICES; d++) /* a copy: any device that may access it */
        if (m->access[d])
            return (void *)a;
    return NULL;
}

SD_API CUresult cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
                                              CUmemAllocationGranularity_flags option)
{
    if (!granularity || !prop || (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM &&
                                  option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED))
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUdevice dev;
    CUresult r = location_device(&prop->location, &dev);
    if (r == CUDA_SUCCESS)
        *granularity = GRANULE;
    sd_unlock();
    return r;
}

SD_API CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr addr,
                                    unsigned long long flags)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!ptr || !size || flags || (alignment & (alignment - 1)) || size % 4096 || addr % 4096 ||
        size > ((size_t)1 << 46))
        return CUDA_ERROR_INVALID_VALUE;
    size_t align = alignment > GRANULE ? alignment : GRANULE;
    sd_lock();
    CUresult r = g_nres < MAX_RANGES ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
    uintptr_t base = 0;
    if (r == CUDA_SUCCESS) {
        /* addr is a hint: taken when free and aligned, else the address is ours to choose */
        size_t span = size + align;
        void *p = mmap(addr && addr % align == 0 ? (void *)(uintptr_t)addr : NULL, span, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            r = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            base = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
            if (base > (uintptr_t)p)
                munmap(p, base - (uintptr_t)p);
            size_t tail = (uintptr_t)p + span - (base + size);
            if (tail)
                munmap((void *)(base + size), tail);
            g_res[g_nres++] = (reservation){base, size};
            *ptr = (CUdeviceptr)base;
        }
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    sd_lock();
    CUresult r = CUDA_ERROR_INVALID_VALUE; /* not a reservation's exact start and size */
    for (size_t i = 0; i < g_nres; i++) {
        if (g_res[i].base != ptr || g_res[i].size != size)
            continue;
        for (size_t k = 0; k < g_nmap; k++)
            if (g_map[k].base >= g_res[i].base && g_map[k].base - g_res[i].base < size)
                goto out; /* still mapped: unmap first */
        munmap((void *)g_res[i].base, size);
        g_res[i] = g_res[--g_nres];
        r = CUDA_SUCCESS;
        break;
    }
out:
    sd_unlock();
    return r;
}

static CUresult new_vmem(int fd, size_t size, CUdevice dev, unsigned types, CUmemGenericAllocationHandle *out)
{
    if (!sd_mem_charge(dev, size))
        return CUDA_ERROR_OUT_OF_MEMORY;
    sd_vmem *m = calloc(1, sizeof *m);
    if (!m || sd_obj_add(m) != 0) {
        free(m);
        sd_mem_uncharge(dev, size);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    m->h.kind = SD_VMEM;
    m->fd = fd;
    m->size = size;
    m->dev = dev;
    m->handle_types = types;
    m->handle_refs = 1;
    *out = (CUmemGenericAllocationHandle)(uintptr_t)m;
    return CUDA_SUCCESS;
}

SD_API CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                            unsigned long long flags)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!handle || !prop || flags || !size || !aligned(size) || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
        prop->win32HandleMetaData)
        return CUDA_ERROR_INVALID_VALUE;
    unsigned types = (unsigned)prop->requestedHandleTypes;
    if (types & (CU_MEM_HANDLE_TYPE_FABRIC | CU_MEM_HANDLE_TYPE_WIN32 | CU_MEM_HANDLE_TYPE_WIN32_KMT))
        return CUDA_ERROR_NOT_SUPPORTED;
    if (types & ~(unsigned)CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUdevice dev = 0;
    CUresult r = location_device(&prop->location, &dev);
    if (r == CUDA_SUCCESS && size > sd_dev_total_mem(dev))
        r = CUDA_ERROR_OUT_OF_MEMORY;
    int fd = -1;
    if (r == CUDA_SUCCESS) {
        char name[64];
        snprintf(name, sizeof name, MEMFD_PREFIX "%d", sd_dev_phys(dev));
        fd = memfd_create(name, MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)size) != 0)
            r = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (r == CUDA_SUCCESS)
        r = new_vmem(fd, size, dev, types, handle);
    if (r != CUDA_SUCCESS && fd >= 0)
        close(fd);
    sd_unlock();
    return r;
}

SD_API CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    sd_lock();
    sd_vmem *m = live_handle(handle);
    if (m) {
        m->handle_refs--;
        drop_if_unused(m);
    }
    sd_unlock();
    return m ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

SD_API CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                         unsigned long long flags)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (flags || !size || !aligned(ptr) || !aligned(size) || !aligned(offset) || ptr > UINTPTR_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_vmem *m = live_handle(handle);
    CUresult r = CUDA_SUCCESS;
    if (!m || offset > m->size || size > m->size - offset || !reservation_holding((uintptr_t)ptr, size) ||
        g_nmap == MAX_RANGES)
        r = CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; r == CUDA_SUCCESS && i < g_nmap; i++) /* only ranges not mapped yet */
        if (g_map[i].base < ptr + size && ptr < g_map[i].base + g_map[i].size)
            r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        void *p = mmap((void *)(uintptr_t)ptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, m->fd,
                       (off_t)offset);
        if (p == MAP_FAILED) {
            r = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            mapping *mp = &g_map[g_nmap++];
            *mp = (mapping){.base = (uintptr_t)ptr, .size = size, .mem = m};
            m->maps++;
        }
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!size || !aligned(ptr) || !aligned(size) || ptr > UINTPTR_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = reservation_holding((uintptr_t)ptr, size) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    size_t covered = 0;
    for (size_t i = 0; r == CUDA_SUCCESS && i < g_nmap; i++) {
        const mapping *mp = &g_map[i];
        if (mp->base >= ptr + size || ptr >= mp->base + mp->size)
            continue;
        if (mp->base < ptr || mp->base + mp->size > ptr + size)
            r = CUDA_ERROR_INVALID_VALUE; /* a mapping only partly inside the range */
        covered += mp->size;
    }
    if (r == CUDA_SUCCESS && covered != size)
        r = CUDA_ERROR_INVALID_VALUE; /* holes: the whole range must be mapped */
    if (r == CUDA_SUCCESS) {
        for (size_t i = g_nmap; i-- > 0;) {
            mapping *mp = &g_map[i];
            if (mp->base < ptr || mp->base >= ptr + size)
                continue;
            sd_vmem *m = mp->mem;
            *mp = g_map[--g_nmap];
            m->maps--;
            drop_if_unused(m);
        }
        /* the range goes back to being reserved and inaccessible */
        mmap((void *)(uintptr_t)ptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!desc || !count || count > SD_MAX_DEVICES * 4 || !size || ptr > UINTPTR_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = CUDA_SUCCESS;
    for (size_t k = 0; r == CUDA_SUCCESS && k < count; k++) {
        CUdevice dev;
        r = location_device(&desc[k].location, &dev);
        unsigned f = (unsigned)desc[k].flags;
        if (r == CUDA_SUCCESS && f != CU_MEM_ACCESS_FLAGS_PROT_NONE && f != CU_MEM_ACCESS_FLAGS_PROT_READ &&
            f != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
            r = CUDA_ERROR_INVALID_VALUE;
    }
    /* every byte of the range mapped, by mappings wholly inside it */
    size_t covered = 0;
    for (size_t i = 0; r == CUDA_SUCCESS && i < g_nmap; i++) {
        const mapping *mp = &g_map[i];
        if (mp->base >= ptr + size || ptr >= mp->base + mp->size)
            continue;
        if (mp->base < ptr || mp->base + mp->size > ptr + size)
            r = CUDA_ERROR_INVALID_VALUE;
        covered += mp->size;
    }
    if (r == CUDA_SUCCESS && covered != size)
        r = CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; r == CUDA_SUCCESS && i < g_nmap; i++) {
        mapping *mp = &g_map[i];
        if (mp->base < ptr || mp->base >= ptr + size)
            continue;
        for (size_t k = 0; k < count; k++)
            mp->access[desc[k].location.id] = (unsigned char)desc[k].flags;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemGetAccess(unsigned long long *flags, const CUmemLocation *location, CUdeviceptr ptr)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!flags || !location || ptr > UINTPTR_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUdevice dev;
    CUresult r = location_device(location, &dev);
    const mapping *mp = r == CUDA_SUCCESS ? mapping_at((uintptr_t)ptr) : NULL;
    if (r == CUDA_SUCCESS && !mp)
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        *flags = mp->access[dev];
    sd_unlock();
    return r;
}

SD_API CUresult cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop, CUmemGenericAllocationHandle handle)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!prop)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_vmem *m = live_handle(handle);
    if (m) {
        memset(prop, 0, sizeof *prop);
        prop->type = CU_MEM_ALLOCATION_TYPE_PINNED;
        prop->requestedHandleTypes = (CUmemAllocationHandleType)m->handle_types;
        prop->location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        prop->location.id = m->dev;
    }
    sd_unlock();
    return m ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

SD_API CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!handle)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    mapping *mp = mapping_at((uintptr_t)addr);
    if (mp) { /* the allocation mapped there, even once every earlier handle was released */
        mp->mem->handle_refs++;
        *handle = (CUmemGenericAllocationHandle)(uintptr_t)mp->mem;
    }
    sd_unlock();
    return mp ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

SD_API CUresult cuMemExportToShareableHandle(void *shareableHandle, CUmemGenericAllocationHandle handle,
                                             CUmemAllocationHandleType handleType, unsigned long long flags)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!shareableHandle || flags)
        return CUDA_ERROR_INVALID_VALUE;
    if (handleType == CU_MEM_HANDLE_TYPE_FABRIC || handleType == CU_MEM_HANDLE_TYPE_WIN32 ||
        handleType == CU_MEM_HANDLE_TYPE_WIN32_KMT)
        return CUDA_ERROR_NOT_SUPPORTED;
    if (handleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_vmem *m = live_handle(handle);
    CUresult r = CUDA_SUCCESS;
    if (!m || !(m->handle_types & CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR))
        r = CUDA_ERROR_INVALID_VALUE; /* unknown, or not created exportable as an fd */
    if (r == CUDA_SUCCESS) {
        int fd = dup(m->fd); /* the application's to pass on, or to inherit across exec */
        if (fd < 0)
            r = CUDA_ERROR_OUT_OF_MEMORY;
        else
            memcpy(shareableHandle, &fd, sizeof fd);
    }
    sd_unlock();
    return r;
}

/* The physical device of an fd a stand-in exported, named by its memfd as
 * PREFIX then the device (vmm.c, mempool.c), or -1 if it is not one. */
int sd_memfd_device(int fd, const char *prefix)
{
    char link[64], target[256], want[128];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return -1;
    target[n] = '\0';
    int w = snprintf(want, sizeof want, "/memfd:%s", prefix);
    if (w <= 0 || (size_t)w >= sizeof want || strncmp(target, want, (size_t)w) != 0)
        return -1;
    char *end;
    long p = strtol(target + w, &end, 10);
    return end != target + w && (*end == ' ' || *end == '\0') && p >= 0 && p < SD_MAX_DEVICES ? (int)p : -1;
}

SD_API CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle, void *osHandle,
                                               CUmemAllocationHandleType shHandleType)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!handle)
        return CUDA_ERROR_INVALID_VALUE;
    if (shHandleType == CU_MEM_HANDLE_TYPE_FABRIC || shHandleType == CU_MEM_HANDLE_TYPE_WIN32 ||
        shHandleType == CU_MEM_HANDLE_TYPE_WIN32_KMT)
        return CUDA_ERROR_NOT_SUPPORTED;
    if (shHandleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return CUDA_ERROR_INVALID_VALUE;
    intptr_t v = (intptr_t)osHandle; /* the fd travels as the pointer's value */
    if (v < 0 || v > INT32_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    int fd = (int)v, phys = sd_memfd_device(fd, MEMFD_PREFIX);
    struct stat st;
    if (phys < 0 || fstat(fd, &st) != 0 || st.st_size <= 0 || !aligned((uint64_t)st.st_size))
        return CUDA_ERROR_UNKNOWN; /* an fd no export made: what the H100's driver answers (a memfd, a pipe) */
    sd_lock();
    CUresult r = CUDA_ERROR_INVALID_DEVICE; /* that device is not visible to this process */
    CUdevice dev = 0;
    for (int d = 0; d < sd_dev_count(); d++)
        if (sd_dev_phys(d) == phys) {
            dev = d;
            r = CUDA_SUCCESS;
            break;
        }
    int own = -1;
    if (r == CUDA_SUCCESS) {
        own = fcntl(fd, F_DUPFD_CLOEXEC, 0); /* the caller may close its fd once imported */
        if (own < 0)
            r = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (r == CUDA_SUCCESS)
        r = new_vmem(own, (size_t)st.st_size, dev, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, handle);
    if (r != CUDA_SUCCESS && own >= 0)
        close(own);
    sd_unlock();
    return r;
}
