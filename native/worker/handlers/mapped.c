/* Host memory the GPU sees (docs/host-memory.md): the worker's side of
 * mapped (zero-copy) and managed ranges. Each range lives at one address in
 * both processes: the worker holds the copy the GPU reads and writes, the
 * client a mirror it keeps coherent at CUDA calls. Here: making a range
 * (MAPPED_MAP), freeing it (MAPPED_UNMAP), the client's write-back of its
 * dirty pages (MAPPED_WRITE, applied by the reader as it reads the frame) and
 * its fetch of pages the device may have written (MAPPED_READ).
 *
 * Every address from the client is checked against this session's own ranges
 * before the worker touches a byte: a write or read outside them ends the
 * session. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "handlers.h"

enum { KIND_HOST_ALLOC = 1, KIND_REGISTER = 2, KIND_MANAGED = 3 };

typedef struct range {
    uint64_t base, size;
    uint32_t kind;
} range;

static range ranges[GW_MAPPED_RANGES_MAX];
static unsigned nranges;
static uint64_t total_bytes;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* The session's total at most: GPUWIRE_MAPPED_LIMIT bytes in the server's
 * environment (default 16 GiB), as page-locked host memory is the server's to
 * lose (docs/security.md). */
static uint64_t limit_bytes(void)
{
    static uint64_t v;
    if (!v) {
        const char *e = getenv("GPUWIRE_MAPPED_LIMIT");
        char *end = NULL;
        unsigned long long x = e ? strtoull(e, &end, 10) : 0;
        v = e && *e && end && !*end && x ? (uint64_t)x : (uint64_t)16 << 30;
    }
    return v;
}

/* The range holding [addr, addr+n), or NULL. Lock held. */
static const range *find(uint64_t addr, uint64_t n)
{
    for (unsigned i = 0; i < nranges; i++)
        if (addr >= ranges[i].base && addr - ranges[i].base < ranges[i].size &&
            n <= ranges[i].size - (addr - ranges[i].base))
            return &ranges[i];
    return NULL;
}

typedef CUresult (*host_alloc_fn)(void **, size_t, unsigned);
typedef CUresult (*host_register_fn)(void *, size_t, unsigned);
typedef CUresult (*host_ptr_fn)(void *);
typedef CUresult (*devptr_fn)(CUdeviceptr *, void *, unsigned);
typedef CUresult (*managed_fn)(CUdeviceptr *, size_t, unsigned);
typedef CUresult (*free_fn)(CUdeviceptr);

/* The device must reach a mapped range at its host address (UVA), else the
 * one-address model fails: the caller undoes the range. */
static CUresult same_address(void *p)
{
    devptr_fn get = (devptr_fn)gw_driver_sym(GW_OP_cuMemHostGetDevicePointer_v2);
    CUdeviceptr d = 0;
    CUresult r = get ? get(&d, p, 0) : CUDA_ERROR_NOT_SUPPORTED;
    if (r == CUDA_SUCCESS && d != (CUdeviceptr)(uintptr_t)p) {
        gw_wlog("mapped memory: the device sees %p at %#llx, not at the same address: not supported", p,
                (unsigned long long)d);
        r = CUDA_ERROR_NOT_SUPPORTED;
    }
    return r;
}

static CUresult make_host_alloc(uint64_t size, uint32_t flags, uint64_t *addr)
{
    host_alloc_fn alloc = (host_alloc_fn)gw_driver_sym(GW_OP_cuMemHostAlloc);
    host_ptr_fn release = (host_ptr_fn)gw_driver_sym(GW_OP_cuMemFreeHost);
    if (!alloc || !release)
        return CUDA_ERROR_NOT_SUPPORTED;
    void *p = NULL;
    CUresult r = alloc(&p, (size_t)size, flags | CU_MEMHOSTALLOC_DEVICEMAP);
    if (r == CUDA_SUCCESS && (r = same_address(p)) != CUDA_SUCCESS)
        release(p);
    if (r == CUDA_SUCCESS)
        *addr = (uint64_t)(uintptr_t)p;
    return r;
}

/* The client's own range: memory mapped at that very address here, then
 * registered; an address already in use here is refused, never moved. */
static CUresult make_registration(uint64_t addr, uint64_t size, uint32_t flags)
{
    host_register_fn reg = (host_register_fn)gw_driver_sym(GW_OP_cuMemHostRegister_v2);
    host_ptr_fn unreg = (host_ptr_fn)gw_driver_sym(GW_OP_cuMemHostUnregister);
    long page = sysconf(_SC_PAGESIZE);
    if (!reg || !unreg)
        return CUDA_ERROR_NOT_SUPPORTED;
    if (addr % (uint64_t)page || size % (uint64_t)page)
        return CUDA_ERROR_INVALID_VALUE;
    void *want = (void *)(uintptr_t)addr;
    void *p = mmap(want, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED || p != want) {
        if (p != MAP_FAILED)
            munmap(p, (size_t)size);
        gw_wlog("mapped memory: %#llx (%llu bytes) is taken in the worker: the registration cannot keep its address",
                (unsigned long long)addr, (unsigned long long)size);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    CUresult r = reg(p, (size_t)size, flags | CU_MEMHOSTREGISTER_DEVICEMAP | CU_MEMHOSTREGISTER_PORTABLE);
    if (r == CUDA_SUCCESS && (r = same_address(p)) != CUDA_SUCCESS)
        unreg(p);
    if (r != CUDA_SUCCESS)
        munmap(p, (size_t)size);
    return r;
}

static CUresult make_managed(uint64_t size, uint32_t flags, uint64_t *addr)
{
    managed_fn alloc = (managed_fn)gw_driver_sym(GW_OP_cuMemAllocManaged);
    if (!alloc)
        return CUDA_ERROR_NOT_SUPPORTED;
    CUdeviceptr d = 0;
    CUresult r = alloc(&d, (size_t)size, flags);
    if (r == CUDA_SUCCESS)
        *addr = (uint64_t)d;
    return r;
}

static void undo(const range *g)
{
    void *p = (void *)(uintptr_t)g->base;
    if (g->kind == KIND_HOST_ALLOC) {
        host_ptr_fn release = (host_ptr_fn)gw_driver_sym(GW_OP_cuMemFreeHost);
        if (release)
            release(p);
    } else if (g->kind == KIND_REGISTER) {
        host_ptr_fn unreg = (host_ptr_fn)gw_driver_sym(GW_OP_cuMemHostUnregister);
        if (unreg)
            unreg(p);
        munmap(p, (size_t)g->size);
    } else {
        free_fn release = (free_fn)gw_driver_sym(GW_OP_cuMemFree_v2);
        if (release)
            release((CUdeviceptr)g->base);
    }
}

void gw_op_mapped_map(gw_call *c)
{
    gw_mapped_map_req q = {0};
    gw_in_fields(c, GW_MAPPED_MAP_REQ_SIZE, gw_mapped_map_req_get(gw_in_next(c), gw_in_left(c), &q));
    if (!c->bad && (q.kind < KIND_HOST_ALLOC || q.kind > KIND_MANAGED || q.size == 0 ||
                    q.size > GW_MAPPED_MAX_BYTES || (q.kind != KIND_REGISTER && q.addr)))
        gw_call_fail(c, "MAPPED_MAP: kind %u, %llu bytes at %#llx", q.kind, (unsigned long long)q.size,
                     (unsigned long long)q.addr);
    if (!gw_args_ok(c))
        return;
    pthread_mutex_lock(&lock);
    int full = nranges == GW_MAPPED_RANGES_MAX || q.size > limit_bytes() - total_bytes;
    int overlaps = q.kind == KIND_REGISTER && (find(q.addr, 1) || find(q.addr + q.size - 1, 1));
    pthread_mutex_unlock(&lock);
    if (full || overlaps) {
        if (full)
            gw_wlog("mapped memory: %llu more bytes would pass the session's %u ranges or %llu bytes "
                    "(GPUWIRE_MAPPED_LIMIT)",
                    (unsigned long long)q.size, GW_MAPPED_RANGES_MAX, (unsigned long long)limit_bytes());
        gw_reply_result(c, overlaps ? CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED : CUDA_ERROR_OUT_OF_MEMORY);
        return;
    }
    uint64_t addr = q.addr;
    CUresult r = q.kind == KIND_HOST_ALLOC ? make_host_alloc(q.size, q.flags, &addr)
                 : q.kind == KIND_REGISTER ? make_registration(q.addr, q.size, q.flags)
                                           : make_managed(q.size, q.flags, &addr);
    if (r == CUDA_SUCCESS) {
        pthread_mutex_lock(&lock);
        ranges[nranges++] = (range){addr, q.size, q.kind};
        total_bytes += q.size;
        pthread_mutex_unlock(&lock);
    }
    uint8_t *out = gw_reply_start(c, GW_MAPPED_MAP_REP_SIZE);
    if (out)
        gw_mapped_map_rep_put(out, &(gw_mapped_map_rep){.result = (int32_t)r, .addr = r == CUDA_SUCCESS ? addr : 0});
}

void gw_op_mapped_unmap(gw_call *c)
{
    gw_mapped_unmap_req q = {0};
    gw_in_fields(c, GW_MAPPED_UNMAP_REQ_SIZE, gw_mapped_unmap_req_get(gw_in_next(c), gw_in_left(c), &q));
    if (!gw_args_ok(c))
        return;
    range g = {0};
    pthread_mutex_lock(&lock);
    for (unsigned i = 0; i < nranges; i++)
        if (ranges[i].base == q.addr) {
            g = ranges[i];
            ranges[i] = ranges[--nranges];
            total_bytes -= g.size;
            break;
        }
    pthread_mutex_unlock(&lock);
    if (!g.size) {
        gw_reply_result(c, CUDA_ERROR_INVALID_VALUE);
        return;
    }
    undo(&g);
    gw_reply_result(c, CUDA_SUCCESS);
}

/* The reader's: a MAPPED_WRITE payload applied at once. 0, or -1 and why. */
int gw_mapped_write(const uint8_t *payload, uint32_t len, char *why, size_t whycap)
{
    gw_mapped_write_req q = {0};
    size_t at = gw_mapped_write_req_get(payload, len, &q);
    if (at != GW_MAPPED_WRITE_REQ_SIZE) {
        snprintf(why, whycap, "MAPPED_WRITE: a %u-byte frame is too short", len);
        return -1;
    }
    uint64_t n = len - at;
    pthread_mutex_lock(&lock);
    const range *g = n ? find(q.addr, n) : NULL;
    if (g)
        memcpy((void *)(uintptr_t)q.addr, payload + at, (size_t)n);
    pthread_mutex_unlock(&lock);
    if (!g) {
        snprintf(why, whycap, "MAPPED_WRITE: %llu bytes at %#llx are not inside a mapped range of this session",
                 (unsigned long long)n, (unsigned long long)q.addr);
        return -1;
    }
    return 0;
}

void gw_op_mapped_read(gw_call *c)
{
    gw_mapped_read_req q = {0};
    gw_in_fields(c, GW_MAPPED_READ_REQ_SIZE, gw_mapped_read_req_get(gw_in_next(c), gw_in_left(c), &q));
    pthread_mutex_lock(&lock);
    int inside = q.n && q.n <= GW_COPY_CHUNK && find(q.addr, q.n);
    pthread_mutex_unlock(&lock);
    if (!c->bad && !inside)
        gw_call_fail(c, "MAPPED_READ: %llu bytes at %#llx are not inside a mapped range of this session",
                     (unsigned long long)q.n, (unsigned long long)q.addr);
    if (!gw_args_ok(c))
        return;
    uint8_t *out = gw_reply_start(c, GW_MAPPED_READ_REP_SIZE);
    if (!out)
        return;
    gw_mapped_read_rep_put(out, &(gw_mapped_read_rep){.result = CUDA_SUCCESS});
    pthread_mutex_lock(&lock); /* an unmap from another thread waits: the bytes stay there */
    if (find(q.addr, q.n))
        gw_reply_bytes(c, (const void *)(uintptr_t)q.addr, (size_t)q.n);
    else
        gw_mapped_read_rep_put(out, &(gw_mapped_read_rep){.result = CUDA_ERROR_INVALID_VALUE});
    pthread_mutex_unlock(&lock);
}
