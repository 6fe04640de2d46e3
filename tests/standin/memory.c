/* TEST DOUBLE: gpuwire CPU stand-in driver. Device memory: host mappings recorded in a
 * sorted allocation table, which every device address arriving from the network is checked
 * against before it is touched. */
#define _GNU_SOURCE
#include "standin.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static sd_alloc *g_tab; /* sorted by base */
static size_t g_n, g_cap;
static size_t g_used[SD_MAX_DEVICES]; /* bytes mapped on each device, counted against its total */

/* Index of the last allocation with base <= addr, or -1. */
static long floor_index(uintptr_t addr)
{
    long lo = 0, hi = (long)g_n - 1, best = -1;
    while (lo <= hi) {
        long mid = lo + (hi - lo) / 2;
        if (g_tab[mid].base <= addr) {
            best = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return best;
}

const sd_alloc *sd_find(uintptr_t addr, size_t len)
{
    long i = floor_index(addr);
    if (i < 0)
        return NULL;
    const sd_alloc *a = &g_tab[i];
    size_t off = addr - a->base;
    if (off >= a->size)
        return NULL;
    if (len > a->size - off) /* no overflow: off < size */
        return NULL;
    return a;
}

void *sd_dev_range(CUdeviceptr addr, size_t len)
{
    if (addr > UINTPTR_MAX)
        return NULL;
    if (sd_find((uintptr_t)addr, len))
        return (void *)(uintptr_t)addr;
    if (sd_vmm_range((uintptr_t)addr, len, NULL)) /* mapped with cuMemMap, access set (vmm.c) */
        return (void *)(uintptr_t)addr;
    return sd_host_mapped_range((uintptr_t)addr, len); /* page-locked memory mapped for the device (hostmem.c) */
}

size_t sd_mem_used(CUdevice dev) { return dev >= 0 && dev < SD_MAX_DEVICES ? g_used[dev] : 0; }

int sd_mem_charge(CUdevice dev, size_t n)
{
    if (dev < 0 || dev >= SD_MAX_DEVICES || n > sd_dev_total_mem(dev) - g_used[dev])
        return 0;
    g_used[dev] += n;
    return 1;
}

void sd_mem_uncharge(CUdevice dev, size_t n)
{
    if (dev >= 0 && dev < SD_MAX_DEVICES)
        g_used[dev] -= n < g_used[dev] ? n : g_used[dev];
}

static CUresult insert(uintptr_t base, size_t size, size_t mapped, sd_ctx *ctx)
{
    if (g_n == g_cap) {
        size_t ncap = g_cap ? g_cap * 2 : 64;
        sd_alloc *n = realloc(g_tab, ncap * sizeof *n);
        if (!n)
            return CUDA_ERROR_OUT_OF_MEMORY;
        g_tab = n;
        g_cap = ncap;
    }
    long i = floor_index(base) + 1;
    memmove(&g_tab[i + 1], &g_tab[i], (g_n - (size_t)i) * sizeof *g_tab);
    g_tab[i] = (sd_alloc){.base = base, .size = size, .mapped = mapped, .ctx = ctx, .id = sd_next_id()};
    g_n++;
    return CUDA_SUCCESS;
}

static void ipc_name(char *out, size_t cap, int pid, unsigned long long id)
{
    snprintf(out, cap, "/gpuwire-standin-%d-%llu", pid, id);
}

static void remove_at(long i)
{
    if (g_tab[i].ipc == 1) { /* processes that opened it keep their mapping, as natively */
        char name[64];
        ipc_name(name, sizeof name, (int)getpid(), g_tab[i].id);
        shm_unlink(name);
    }
    if (g_tab[i].pool)
        sd_pool_freed(g_tab[i].pool, g_tab[i].mapped, g_tab[i].pool_off, g_tab[i].ipc == 3);
    munmap((void *)g_tab[i].base, g_tab[i].mapped);
    g_used[g_tab[i].ctx->dev] -= g_tab[i].mapped;
    memmove(&g_tab[i], &g_tab[i + 1], (g_n - (size_t)i - 1) * sizeof *g_tab);
    g_n--;
}

/* Fresh anonymous mappings: page aligned (beyond the 512 bytes promised), zeroed lazily;
 * counted against the device of the context they belong to. */
static CUresult alloc_bytes(sd_ctx *c, size_t size, uintptr_t *out)
{
    size_t total = sd_dev_total_mem(c->dev);
    if (size == 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (size > total)
        return CUDA_ERROR_OUT_OF_MEMORY;
    size_t mapped = (size + 4095) & ~(size_t)4095;
    if (mapped > total - g_used[c->dev])
        return CUDA_ERROR_OUT_OF_MEMORY;
    void *p = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult r = insert((uintptr_t)p, size, mapped, c);
    if (r != CUDA_SUCCESS) {
        munmap(p, mapped);
        return r;
    }
    g_used[c->dev] += mapped;
    *out = (uintptr_t)p;
    return CUDA_SUCCESS;
}

CUresult sd_mem_alloc(sd_ctx *c, size_t size, void *pool, uintptr_t *out)
{
    CUresult r = alloc_bytes(c, size, out);
    if (r == CUDA_SUCCESS)
        g_tab[floor_index(*out)].pool = pool;
    return r;
}

CUresult sd_mem_adopt(sd_ctx *c, uintptr_t p, size_t size, size_t mapped, void *pool, uint64_t off, int ipc)
{
    if (mapped > sd_dev_total_mem(c->dev) - g_used[c->dev])
        return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult r = insert(p, size, mapped, c);
    if (r != CUDA_SUCCESS)
        return r;
    sd_alloc *a = &g_tab[floor_index(p)];
    a->pool = pool;
    a->pool_off = off;
    a->ipc = (unsigned char)ipc;
    g_used[c->dev] += mapped;
    return CUDA_SUCCESS;
}

CUresult sd_mem_free(CUdeviceptr dptr)
{
    long i = dptr <= UINTPTR_MAX ? floor_index((uintptr_t)dptr) : -1;
    if (i < 0 || g_tab[i].base != dptr || g_tab[i].ipc == 2)
        return CUDA_ERROR_INVALID_VALUE; /* unknown, not the start of an allocation, or another process's */
    remove_at(i);
    return CUDA_SUCCESS;
}

void sd_free_ctx_allocs(sd_ctx *c)
{
    for (long i = (long)g_n - 1; i >= 0; i--)
        if (g_tab[i].ctx == c)
            remove_at(i);
}

SD_API CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    if (!dptr)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    uintptr_t p = 0;
    if (r == CUDA_SUCCESS)
        r = alloc_bytes(c, bytesize, &p);
    if (r == CUDA_SUCCESS)
        *dptr = (CUdeviceptr)p;
    sd_unlock();
    return r;
}

SD_API CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pitch, size_t width, size_t height, unsigned int elem)
{
    if (!dptr || !pitch || width == 0 || height == 0 || (elem != 4 && elem != 8 && elem != 16))
        return CUDA_ERROR_INVALID_VALUE;
    if (width > SD_TOTAL_MEM || height > SD_TOTAL_MEM)
        return CUDA_ERROR_OUT_OF_MEMORY;
    size_t p = (width + SD_PITCH_ALIGN - 1) / SD_PITCH_ALIGN * SD_PITCH_ALIGN;
    if (height > SD_TOTAL_MEM / p)
        return CUDA_ERROR_OUT_OF_MEMORY;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    uintptr_t base = 0;
    if (r == CUDA_SUCCESS)
        r = alloc_bytes(c, p * height, &base);
    if (r == CUDA_SUCCESS) {
        *dptr = (CUdeviceptr)base;
        *pitch = p;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemFree_v2(CUdeviceptr dptr)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && dptr != 0)
        r = sd_mem_free(dptr);
    sd_unlock();
    return r;
}

SD_API CUresult cuMemGetInfo_v2(size_t *free_b, size_t *total_b)
{
    if (!free_b || !total_b)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS) {
        *total_b = sd_dev_total_mem(c->dev); /* the current context's device */
        *free_b = *total_b - g_used[c->dev];
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    const sd_alloc *a = NULL;
    if (r == CUDA_SUCCESS) {
        a = dptr <= UINTPTR_MAX ? sd_find((uintptr_t)dptr, 0) : NULL;
        if (!a)
            r = CUDA_ERROR_NOT_FOUND;
    }
    if (r == CUDA_SUCCESS) {
        if (pbase)
            *pbase = a->base;
        if (psize)
            *psize = a->size;
    }
    sd_unlock();
    return r;
}

/* One pointer attribute. Sizes written (the worker must use the same): CONTEXT 8 (CUcontext),
 * MEMORY_TYPE 4, DEVICE_POINTER 8, HOST_POINTER 8, SYNC_MEMOPS 4, BUFFER_ID 8, IS_MANAGED 4,
 * DEVICE_ORDINAL 4, IS_LEGACY_CUDA_IPC_CAPABLE 4, RANGE_START_ADDR 8, RANGE_SIZE 8, MAPPED 4,
 * ALLOWED_HANDLE_TYPES 8, IS_GPU_DIRECT_RDMA_CAPABLE 4, ACCESS_FLAGS 4, MEMPOOL_HANDLE 8,
 * MAPPING_SIZE 8, MAPPING_BASE_ADDR 8, MEMORY_BLOCK_ID 8, IS_HW_DECOMPRESS_CAPABLE 4.
 * a == NULL: the pointer is not device memory (cuPointerGetAttributes then writes zeros). */
static CUresult one_attr(CUpointer_attribute attr, void *data, const sd_alloc *a, CUdeviceptr ptr)
{
    unsigned int u = 0;
    unsigned long long q = 0;
    int is_q = 0;
    switch (attr) {
    case CU_POINTER_ATTRIBUTE_CONTEXT: q = a ? (uintptr_t)a->ctx : 0; is_q = 1; break;
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE: u = a ? CU_MEMORYTYPE_DEVICE : 0; break;
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER: q = a ? ptr : 0; is_q = 1; break;
    case CU_POINTER_ATTRIBUTE_HOST_POINTER:
        if (a)
            return CUDA_ERROR_INVALID_VALUE; /* device memory has no host address */
        is_q = 1;
        break;
    case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS: u = a ? 1 : 0; break;
    case CU_POINTER_ATTRIBUTE_BUFFER_ID: q = a ? a->id : 0; is_q = 1; break;
    case CU_POINTER_ATTRIBUTE_IS_MANAGED: u = 0; break;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: u = a ? (unsigned)a->ctx->dev : (unsigned)-2; break;
    case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE: u = 0; break;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR: q = a ? a->base : 0; is_q = 1; break;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE: q = a ? a->size : 0; is_q = 1; break;
    case CU_POINTER_ATTRIBUTE_MAPPED: u = a ? 1 : 0; break;
    case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES: is_q = 1; break;
    case CU_POINTER_ATTRIBUTE_IS_GPU_DIRECT_RDMA_CAPABLE: u = 0; break;
    case CU_POINTER_ATTRIBUTE_ACCESS_FLAGS: u = a ? CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READWRITE : 0; break;
    case CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE: q = a ? (uintptr_t)a->pool : 0; is_q = 1; break;
    case CU_POINTER_ATTRIBUTE_MAPPING_SIZE: q = a ? a->mapped : 0; is_q = 1; break;
    case CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR: q = a ? a->base : 0; is_q = 1; break;
    case CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID: q = a ? a->id : 0; is_q = 1; break;
    case CU_POINTER_ATTRIBUTE_IS_HW_DECOMPRESS_CAPABLE: u = 0; break;
    default: return CUDA_ERROR_INVALID_VALUE; /* P2P tokens and unknown attributes */
    }
    if (is_q)
        memcpy(data, &q, sizeof q);
    else
        memcpy(data, &u, sizeof u);
    return CUDA_SUCCESS;
}

SD_API CUresult cuPointerGetAttribute(void *data, CUpointer_attribute attr, CUdeviceptr ptr)
{
    if (!data)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    const sd_alloc *a = NULL;
    if (r == CUDA_SUCCESS) {
        a = ptr <= UINTPTR_MAX ? sd_find((uintptr_t)ptr, 0) : NULL;
        if (!a)
            r = CUDA_ERROR_INVALID_VALUE; /* not a pointer the driver knows */
    }
    if (r == CUDA_SUCCESS)
        r = one_attr(attr, data, a, ptr);
    sd_unlock();
    return r;
}

SD_API CUresult cuPointerGetAttributes(unsigned int n, CUpointer_attribute *attrs, void **data, CUdeviceptr ptr)
{
    if (n == 0 || !attrs || !data)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    const sd_alloc *a = NULL;
    if (r == CUDA_SUCCESS)
        a = ptr <= UINTPTR_MAX ? sd_find((uintptr_t)ptr, 0) : NULL;
    for (unsigned int i = 0; r == CUDA_SUCCESS && i < n; i++) {
        if (!data[i])
            continue; /* the caller skips this attribute */
        r = one_attr(attrs[i], data[i], a, ptr);
        if (r != CUDA_SUCCESS && a && attrs[i] == CU_POINTER_ATTRIBUTE_HOST_POINTER) {
            memset(data[i], 0, sizeof(void *)); /* no host address: NULL, not an error */
            r = CUDA_SUCCESS;
        }
    }
    sd_unlock();
    return r;
}

/* ---- CUDA IPC between processes: an allocation is moved onto POSIX shared
 * memory of its own when first exported (same address, same bytes); the
 * handle names it (creator's pid and the allocation's id) and another process
 * maps it. Event handles are not offered. */
#define SD_IPC_MAGIC 0x69736467u /* "gdsi" */

typedef struct sd_ipc_handle {
    uint32_t magic;
    int32_t pid;
    unsigned long long id;
    uint64_t size, mapped;
} sd_ipc_handle;
_Static_assert(sizeof(sd_ipc_handle) <= sizeof(CUipcMemHandle), "the handle fits CUDA's 64 bytes");

static CUresult ipc_export(sd_alloc *a)
{
    char name[64];
    ipc_name(name, sizeof name, (int)getpid(), a->id);
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0)
        return CUDA_ERROR_OUT_OF_MEMORY;
    void *tmp = MAP_FAILED;
    if (ftruncate(fd, (off_t)a->mapped) == 0)
        tmp = mmap(NULL, a->mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (tmp == MAP_FAILED) {
        close(fd);
        shm_unlink(name);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    memcpy(tmp, (void *)a->base, a->mapped);
    munmap(tmp, a->mapped);
    void *p = mmap((void *)a->base, a->mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) { /* the old mapping is still there only if MAP_FIXED failed before replacing it */
        shm_unlink(name);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    a->ipc = 1;
    return CUDA_SUCCESS;
}

SD_API CUresult cuIpcGetMemHandle(CUipcMemHandle *handle, CUdeviceptr dptr)
{
    if (!handle)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    long i = r == CUDA_SUCCESS && dptr <= UINTPTR_MAX ? floor_index((uintptr_t)dptr) : -1;
    if (r == CUDA_SUCCESS && (i < 0 || g_tab[i].base != dptr || g_tab[i].ipc == 2 || g_tab[i].pool))
        r = CUDA_ERROR_INVALID_VALUE; /* pools' memory is shared through the pool's own handles */
    if (r == CUDA_SUCCESS && !g_tab[i].ipc)
        r = ipc_export(&g_tab[i]);
    if (r == CUDA_SUCCESS) {
        sd_ipc_handle h = {SD_IPC_MAGIC, (int32_t)getpid(), g_tab[i].id, g_tab[i].size, g_tab[i].mapped};
        memset(handle, 0, sizeof *handle);
        memcpy(handle, &h, sizeof h);
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuIpcOpenMemHandle_v2(CUdeviceptr *pdptr, CUipcMemHandle handle, unsigned int flags)
{
    sd_ipc_handle h;
    memcpy(&h, &handle, sizeof h);
    if (!pdptr || (flags & ~1u) || h.magic != SD_IPC_MAGIC || !h.size || h.size > h.mapped)
        return CUDA_ERROR_INVALID_VALUE;
    if (h.pid == (int32_t)getpid())
        return CUDA_ERROR_INVALID_CONTEXT; /* a process cannot open its own handle */
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && h.mapped > sd_dev_total_mem(c->dev) - g_used[c->dev])
        r = CUDA_ERROR_OUT_OF_MEMORY;
    void *p = MAP_FAILED;
    if (r == CUDA_SUCCESS) {
        char name[64];
        ipc_name(name, sizeof name, h.pid, h.id);
        int fd = shm_open(name, O_RDWR, 0);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size == h.mapped)
            p = mmap(NULL, h.mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (fd >= 0)
            close(fd);
        if (p == MAP_FAILED)
            r = CUDA_ERROR_INVALID_VALUE; /* freed by its owner, or not a handle of ours */
    }
    if (r == CUDA_SUCCESS) {
        r = insert((uintptr_t)p, h.size, h.mapped, c);
        if (r != CUDA_SUCCESS) {
            munmap(p, h.mapped);
        } else {
            g_tab[floor_index((uintptr_t)p)].ipc = 2;
            g_used[c->dev] += h.mapped;
            *pdptr = (CUdeviceptr)(uintptr_t)p;
        }
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuIpcCloseMemHandle(CUdeviceptr dptr)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    long i = r == CUDA_SUCCESS && dptr <= UINTPTR_MAX ? floor_index((uintptr_t)dptr) : -1;
    if (r == CUDA_SUCCESS && (i < 0 || g_tab[i].base != dptr || g_tab[i].ipc != 2))
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        remove_at(i);
    sd_unlock();
    return r;
}
