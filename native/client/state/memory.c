/* Client-side memory: which addresses are device memory (so unified copies can
 * be routed), pinned host memory (kept in the client: the GPU is elsewhere),
 * and the allocation entry points that must keep that bookkeeping current. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../diag/env.h"
#include "state.h"

/* A page-locked range the device does not see yet may become a mapped range
 * in place; once it is (or proved it cannot be), a kernel's arguments
 * pointing into it need nothing more: it leaves the span below. */
enum { DEVICE_NOT_YET = 0, DEVICE_SEES = 1, DEVICE_CANNOT = 2 };

typedef struct range {
    uint64_t base, size;
    gw_mem_kind kind;
    unsigned flags;
    unsigned device; /* page-locked ranges: DEVICE_* */
} range;

static uint64_t page_round(uint64_t n) { return (n + 4095) / 4096 * 4096; }

/* Memory that may become a mapped range in place: pages that hold nothing
 * else of the program's (its allocator's bookkeeping above all, which a
 * stale page would make fault inside the allocator). gpuwire's own
 * page-locked allocations are; a registration must cover whole pages. */
static int pages_of_its_own(const range *r)
{
    return (r->flags & 0x80000000u) || (r->base % 4096 == 0 && r->size % 4096 == 0);
}

/* Sorted by base; allocations are few enough that a sorted array is right. */
static range *ranges;
static size_t nranges, capranges;
static pthread_mutex_t ranges_lock = PTHREAD_MUTEX_INITIALIZER;

/* The page-locked ranges still DEVICE_NOT_YET, for the scan of each
 * launch's arguments (arg_pointers.c), read without a lock: the [lo, hi)
 * span around them all (lo == hi: none), and up to PENDING_LISTED of them,
 * sorted (device pointers often fall inside the span: the server's
 * addresses are spread like the client's). A seqlock, written under
 * ranges_lock. */
#define PENDING_LISTED 128
static atomic_ulong span_seq;
static _Atomic uint64_t span_lo, span_hi;
static _Atomic uint64_t pending_base[PENDING_LISTED], pending_end[PENDING_LISTED];
static atomic_uint npending; /* > PENDING_LISTED: not all listed, ask under the lock */

static void refresh_pinned_span_locked(void)
{
    unsigned long seq = atomic_load_explicit(&span_seq, memory_order_relaxed);
    atomic_store_explicit(&span_seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    uint64_t lo = UINT64_MAX, hi = 0;
    unsigned n = 0;
    for (size_t i = 0; i < nranges; i++) { /* sorted by base: so is the list */
        const range *r = &ranges[i];
        if (r->kind != GW_MEM_HOST_PINNED || r->device != DEVICE_NOT_YET)
            continue;
        if (r->base < lo)
            lo = r->base;
        if (r->base + r->size > hi)
            hi = r->base + r->size;
        if (n < PENDING_LISTED) {
            atomic_store_explicit(&pending_base[n], r->base, memory_order_relaxed);
            atomic_store_explicit(&pending_end[n], r->base + r->size, memory_order_relaxed);
        }
        n++;
    }
    if (lo >= hi)
        lo = hi = 0;
    atomic_store_explicit(&span_lo, lo, memory_order_relaxed);
    atomic_store_explicit(&span_hi, hi, memory_order_relaxed);
    atomic_store_explicit(&npending, n, memory_order_relaxed);
    atomic_store_explicit(&span_seq, seq + 2, memory_order_release);
}

void gw_mem_pinned_span(uint64_t *lo, uint64_t *hi)
{
    for (;;) {
        unsigned long s1 = atomic_load_explicit(&span_seq, memory_order_acquire);
        uint64_t l = atomic_load_explicit(&span_lo, memory_order_relaxed);
        uint64_t h = atomic_load_explicit(&span_hi, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (!(s1 & 1) && atomic_load_explicit(&span_seq, memory_order_relaxed) == s1) {
            *lo = l;
            *hi = h;
            return;
        }
        sched_yield();
    }
}

int gw_mem_maybe_pinned(uint64_t addr)
{
    for (;;) {
        unsigned long s1 = atomic_load_explicit(&span_seq, memory_order_acquire);
        unsigned n = atomic_load_explicit(&npending, memory_order_relaxed);
        int hit = 1; /* more than the list holds: the caller asks under the lock */
        if (n <= PENDING_LISTED) {
            unsigned a = 0, b = n; /* the first listed range with base > addr */
            while (a < b) {
                unsigned mid = (a + b) / 2;
                if (atomic_load_explicit(&pending_base[mid], memory_order_relaxed) <= addr)
                    a = mid + 1;
                else
                    b = mid;
            }
            hit = a > 0 && addr < atomic_load_explicit(&pending_end[a - 1], memory_order_relaxed);
        }
        atomic_thread_fence(memory_order_acquire);
        if (!(s1 & 1) && atomic_load_explicit(&span_seq, memory_order_relaxed) == s1)
            return hit;
        sched_yield();
    }
}

static size_t lower_bound(uint64_t addr)
{
    size_t lo = 0, hi = nranges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ranges[mid].base < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void track(uint64_t base, uint64_t size, gw_mem_kind kind, unsigned flags)
{
    if (!base)
        return;
    pthread_mutex_lock(&ranges_lock);
    size_t i = lower_bound(base);
    if (i < nranges && ranges[i].base == base) {
        int was_pinned = ranges[i].kind == GW_MEM_HOST_PINNED;
        ranges[i] = (range){base, size ? size : 1, kind, flags, DEVICE_NOT_YET};
        if (was_pinned || kind == GW_MEM_HOST_PINNED)
            refresh_pinned_span_locked();
    } else {
        if (nranges == capranges) {
            size_t cap = capranges ? capranges * 2 : 256;
            range *r = realloc(ranges, cap * sizeof *r);
            if (!r) {
                pthread_mutex_unlock(&ranges_lock);
                return;
            }
            ranges = r;
            capranges = cap;
        }
        memmove(&ranges[i + 1], &ranges[i], (nranges - i) * sizeof *ranges);
        ranges[i] = (range){base, size ? size : 1, kind, flags, DEVICE_NOT_YET};
        nranges++;
        if (kind == GW_MEM_HOST_PINNED)
            refresh_pinned_span_locked();
    }
    pthread_mutex_unlock(&ranges_lock);
}

static int untrack(uint64_t base, gw_mem_kind kind)
{
    int found = 0;
    pthread_mutex_lock(&ranges_lock);
    size_t i = lower_bound(base);
    if (i < nranges && ranges[i].base == base && ranges[i].kind == kind) {
        memmove(&ranges[i], &ranges[i + 1], (nranges - i - 1) * sizeof *ranges);
        nranges--;
        found = 1;
        if (kind == GW_MEM_HOST_PINNED)
            refresh_pinned_span_locked();
    }
    pthread_mutex_unlock(&ranges_lock);
    return found;
}

static const range *find_locked(uint64_t addr)
{
    size_t i = lower_bound(addr + 1);
    if (i == 0)
        return NULL;
    const range *r = &ranges[i - 1];
    return addr - r->base < r->size ? r : NULL;
}

/* The size of the tracked range that starts at p (0 if none). */
static uint64_t r_size_of(const void *p)
{
    pthread_mutex_lock(&ranges_lock);
    const range *r = find_locked((uint64_t)(uintptr_t)p);
    uint64_t n = r ? r->size : 0;
    pthread_mutex_unlock(&ranges_lock);
    return n;
}

void gw_mem_track_device(CUdeviceptr p, size_t size)
{
    track(p, size, GW_MEM_DEVICE, 0);
    gw_server_memory_add(p, size, gw_route_now()); /* several servers: whose it is (server_memory.c) */
}

void gw_mem_untrack_device(CUdeviceptr p)
{
    untrack(p, GW_MEM_DEVICE);
    gw_server_memory_remove(p);
}

int gw_mem_is_device_range(uint64_t addr, uint64_t n)
{
    pthread_mutex_lock(&ranges_lock);
    const range *r = find_locked(addr);
    int ok = r && r->kind == GW_MEM_DEVICE && n <= r->size - (addr - r->base);
    pthread_mutex_unlock(&ranges_lock);
    return ok;
}

int gw_mem_is_pinned_range(uint64_t addr, uint64_t n)
{
    pthread_mutex_lock(&ranges_lock);
    const range *r = find_locked(addr);
    int ok = r && r->kind == GW_MEM_HOST_PINNED && n <= r->size - (addr - r->base);
    pthread_mutex_unlock(&ranges_lock);
    return ok;
}

/* The page-locked range starting at base: the device sees it now, or never can. */
static void mark_device(uint64_t base, unsigned how)
{
    pthread_mutex_lock(&ranges_lock);
    size_t i = lower_bound(base);
    if (i < nranges && ranges[i].base == base && ranges[i].kind == GW_MEM_HOST_PINNED) {
        ranges[i].device = how;
        refresh_pinned_span_locked();
    }
    pthread_mutex_unlock(&ranges_lock);
}

/* The page-locked allocation holding [addr, addr+n) made a mapped range in
 * place; `why` ends the debug line. *cannot: the allocation shares its pages
 * with other data, or the worker refused it. */
static int map_in_place(uint64_t addr, uint64_t n, const char *why, int *cannot)
{
    *cannot = 0;
    pthread_mutex_lock(&ranges_lock);
    const range *r = find_locked(addr);
    range whole = r && r->kind == GW_MEM_HOST_PINNED && n <= r->size - (addr - r->base) ? *r : (range){0};
    pthread_mutex_unlock(&ranges_lock);
    if (!whole.base)
        return 0;
    if (!pages_of_its_own(&whole)) {
        *cannot = 1;
        return 0;
    }
    if (gw_wire_tls_push()) /* the caller's request may be half built: set aside while this one goes */
        return 0;
    /* a copy still to be delivered into it would land in the mirror after
     * device work the mirror's pages then hold back: it lands first (not
     * while a stream captures: the synchronize would end the capture) */
    CUresult settled = gw_captures_active() ? CUDA_SUCCESS : gw_deliveries_settle(whole.base, whole.size);
    CUresult rc = settled;
    uint64_t base = 0;
    if (settled == CUDA_SUCCESS)
        rc = gw_mapped_register((void *)(uintptr_t)whole.base, whole.size, whole.flags & 0x7fffffffu, &base);
    gw_wire_tls_pop();
    if (rc != CUDA_SUCCESS && gw_mapped_lookup(whole.base, 1, NULL, NULL, NULL)) {
        mark_device(whole.base, DEVICE_SEES); /* another thread mapped it meanwhile */
        return 1;
    }
    if (rc != CUDA_SUCCESS) {
        *cannot = settled == CUDA_SUCCESS; /* refused; a failed settle (a sticky error) says nothing of it */
        return 0;
    }
    mark_device(whole.base, DEVICE_SEES);
    if (gw_debug())
        gw_log("page-locked memory at %#llx (%llu bytes) is now mapped: %s", (unsigned long long)whole.base,
               (unsigned long long)whole.size, why);
    return 1;
}

int gw_mem_device_use(uint64_t addr, uint64_t n)
{
    if (gw_mem_is_device_range(addr, n) || gw_mapped_lookup(addr, n, NULL, NULL, NULL))
        return 1;
    int cannot;
    return map_in_place(addr, n, "a call uses it as device memory", &cannot);
}

int gw_mem_kernel_arg_use(uint64_t addr)
{
    pthread_mutex_lock(&ranges_lock);
    const range *r = find_locked(addr);
    int candidate = r && r->kind == GW_MEM_HOST_PINNED && r->device == DEVICE_NOT_YET;
    uint64_t base = candidate ? r->base : 0, size = candidate ? r->size : 0;
    pthread_mutex_unlock(&ranges_lock);
    if (!candidate)
        return 0;
    if (gw_mapped_lookup(addr, 1, NULL, NULL, NULL)) { /* mapped by a path that did not say so here */
        mark_device(base, DEVICE_SEES);
        return 1;
    }
    int cannot;
    if (map_in_place(addr, 1, "a kernel's arguments point into it", &cannot))
        return 1;
    if (cannot) { /* said once: the kernel will likely fault on it (CUDA_ERROR_ILLEGAL_ADDRESS) */
        mark_device(base, DEVICE_CANNOT);
        gw_log("page-locked memory at %#llx (%llu bytes) is handed to a kernel in its arguments, but gpuwire cannot "
               "map it for the device in place (a registration that does not cover whole pages, or the server "
               "refused it): allocate it with cuMemHostAlloc, or register whole pages",
               (unsigned long long)base, (unsigned long long)size);
    }
    return 0;
}

gw_mem_kind gw_mem_classify(uint64_t addr)
{
    if (gw_mapped_lookup(addr, 1, NULL, NULL, NULL))
        return GW_MEM_MAPPED;
    pthread_mutex_lock(&ranges_lock);
    const range *r = find_locked(addr);
    gw_mem_kind k = r ? r->kind : GW_MEM_NONE;
    pthread_mutex_unlock(&ranges_lock);
    return k;
}

/* ---- device allocations: forwarded, then recorded ---- */

CUresult CUDAAPI cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    CUresult rc = gwf_cuMemAlloc_v2(dptr, bytesize);
    if (rc == CUDA_SUCCESS && gw_server_memory_clashes(*dptr, bytesize, gw_route_now())) {
        /* several servers: this address is another server's too; one address must name one buffer */
        gw_log("cuMemAlloc: server %d gave an address that overlaps memory of another gpuwire server; "
               "refused with CUDA_ERROR_OUT_OF_MEMORY (docs/multi-gpu.md)", gw_route_now() + 1);
        gwf_cuMemFree_v2(*dptr);
        *dptr = 0;
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (rc == CUDA_SUCCESS)
        gw_mem_track_device(*dptr, bytesize);
    return rc;
}

CUresult CUDAAPI cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes, size_t Height,
                                    unsigned int ElementSizeBytes)
{
    CUresult rc = gwf_cuMemAllocPitch_v2(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);
    if (rc == CUDA_SUCCESS)
        gw_mem_track_device(*dptr, *pPitch * Height);
    return rc;
}

CUresult CUDAAPI cuMemFree_v2(CUdeviceptr dptr)
{
    unsigned kind = 0;
    uint64_t base = 0;
    if (gw_mapped_lookup(dptr, 1, &base, &kind, NULL) && kind == GW_MAPPED_MANAGED && base == dptr)
        return gw_mapped_release(dptr, GW_MAPPED_MANAGED);
    CUcontext pushed;
    int route = gw_memory_server_enter(dptr, &pushed); /* several servers: where it is */
    CUresult rc = gwf_cuMemFree_v2(dptr);
    gw_memory_server_leave(route, pushed);
    if (rc == CUDA_SUCCESS)
        gw_mem_untrack_device(dptr);
    return rc;
}

CUresult CUDAAPI cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    CUresult rc = gwf_cuMemAllocAsync(dptr, bytesize, hStream);
    if (rc == CUDA_SUCCESS)
        gw_mem_track_device(*dptr, bytesize);
    return rc;
}

CUresult CUDAAPI cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    CUresult rc = gwf_cuMemAllocAsync_ptsz(dptr, bytesize, hStream);
    if (rc == CUDA_SUCCESS)
        gw_mem_track_device(*dptr, bytesize);
    return rc;
}

CUresult CUDAAPI cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream)
{
    CUresult rc = gwf_cuMemAllocFromPoolAsync(dptr, bytesize, pool, hStream);
    if (rc == CUDA_SUCCESS)
        gw_mem_track_device(*dptr, bytesize);
    return rc;
}

CUresult CUDAAPI cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
                                              CUstream hStream)
{
    CUresult rc = gwf_cuMemAllocFromPoolAsync_ptsz(dptr, bytesize, pool, hStream);
    if (rc == CUDA_SUCCESS)
        gw_mem_track_device(*dptr, bytesize);
    return rc;
}

CUresult CUDAAPI cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream)
{
    CUresult rc = gwf_cuMemFreeAsync(dptr, hStream);
    if (rc == CUDA_SUCCESS)
        gw_mem_untrack_device(dptr);
    return rc;
}

CUresult CUDAAPI cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream)
{
    CUresult rc = gwf_cuMemFreeAsync_ptsz(dptr, hStream);
    if (rc == CUDA_SUCCESS)
        gw_mem_untrack_device(dptr);
    return rc;
}

CUresult CUDAAPI cuModuleGetGlobal_v2(CUdeviceptr *dptr, size_t *bytes, CUmodule hmod, const char *name)
{
    size_t sz = 0;
    CUresult rc = gwf_cuModuleGetGlobal_v2(dptr, &sz, hmod, name);
    if (rc == CUDA_SUCCESS) {
        if (dptr)
            gw_mem_track_device(*dptr, sz);
        if (bytes)
            *bytes = sz;
    }
    return rc;
}

CUresult CUDAAPI cuLibraryGetGlobal(CUdeviceptr *dptr, size_t *bytes, CUlibrary library, const char *name)
{
    size_t sz = 0;
    CUresult rc = gwf_cuLibraryGetGlobal(dptr, &sz, library, name);
    if (rc == CUDA_SUCCESS) {
        if (dptr)
            gw_mem_track_device(*dptr, sz);
        if (bytes)
            *bytes = sz;
    }
    return rc;
}

/* ---- page-locked host memory ----
 * The GPU is on another machine, so "pinned" memory is ordinary client memory
 * that copies treat as host memory, unless the device must see it: memory
 * allocated or registered with DEVICEMAP, or whose device pointer is asked
 * for, becomes a mapped range (mapped.c), one address on both machines. As
 * on a UVA system, every page-locked range reports DEVICEMAP. */

/* Page-locked allocations up to this size are mapped ranges from the start
 * (GPUWIRE_MAP_PINNED_MAX, default 0: none). On a UVA system every
 * page-locked pointer is a device pointer; gpuwire maps one when the program
 * shows it uses it so (its device pointer asked for, an asynchronous call's
 * device operand: gw_mem_device_use; a kernel's own arguments:
 * gw_mem_kernel_arg_use), but a pointer the kernel finds in memory it cannot
 * see: this setting serves such programs, at the cost of a fetch round trip
 * after copies into such memory instead of their delivery (docs/host-memory.md). */
static uint64_t map_pinned_max(void)
{
    static uint64_t v = UINT64_MAX;
    if (v == UINT64_MAX) {
        uint64_t x = 0;
        gw_env_size("GPUWIRE_MAP_PINNED_MAX", 0, UINT64_MAX - 1, "using the default, 0 (none)", &x);
        v = x;
    }
    return v;
}

static CUresult host_alloc(void **pp, size_t size, unsigned flags)
{
    if (!pp)
        return CUDA_ERROR_INVALID_VALUE;
    if (!gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (size <= map_pinned_max()) {
        uint64_t a = 0;
        if (gw_mapped_alloc(GW_MAPPED_HOST_ALLOC, flags, size ? size : 1, &a) == CUDA_SUCCESS) {
            *pp = (void *)(uintptr_t)a;
            return CUDA_SUCCESS;
        } /* else page-locked in the client, as larger ones (mapped if its device pointer is asked for) */
    }
    /* whole pages of their own, shared with nothing else of the program's, so
     * they can become a mapped range in place later; populated now, as the
     * driver's pinning does: otherwise the first copy from or into them takes
     * a page fault per page inside the program's timed region (simpleMultiCopy
     * times its first 16 MiB copies with events) */
    void *p = mmap(NULL, page_round(size ? size : 1), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    if (p == MAP_FAILED)
        return CUDA_ERROR_OUT_OF_MEMORY;
    track((uint64_t)(uintptr_t)p, size, GW_MEM_HOST_PINNED, flags | 0x80000000u);
    gw_lanes_prepare(size);
    *pp = p;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemAllocHost_v2(void **pp, size_t bytesize)
{
    gw_stat_call(GW_OP_cuMemAllocHost_v2);
    return host_alloc(pp, bytesize, 0);
}

CUresult CUDAAPI cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags)
{
    gw_stat_call(GW_OP_cuMemHostAlloc);
    if (Flags & ~(unsigned)(CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED))
        return CUDA_ERROR_INVALID_VALUE;
    if (gw_debug())
        gw_log("cuMemHostAlloc: %zu bytes, flags 0x%x", bytesize, Flags);
    if (Flags & CU_MEMHOSTALLOC_DEVICEMAP) {
        if (!pp)
            return CUDA_ERROR_INVALID_VALUE;
        uint64_t a = 0;
        CUresult rc = gw_mapped_alloc(GW_MAPPED_HOST_ALLOC, Flags, bytesize ? bytesize : 1, &a);
        if (rc == CUDA_SUCCESS)
            *pp = (void *)(uintptr_t)a;
        return rc;
    }
    return host_alloc(pp, bytesize, Flags);
}

CUresult CUDAAPI cuMemFreeHost(void *p)
{
    gw_stat_call(GW_OP_cuMemFreeHost);
    unsigned kind = 0;
    uint64_t base = 0;
    if (gw_mapped_lookup((uint64_t)(uintptr_t)p, 1, &base, &kind, NULL) && base == (uint64_t)(uintptr_t)p &&
        kind == GW_MAPPED_HOST_ALLOC)
        return gw_mapped_release(base, GW_MAPPED_HOST_ALLOC);
    pthread_mutex_lock(&ranges_lock);
    const range *r = find_locked((uint64_t)(uintptr_t)p);
    int ours = r && r->base == (uint64_t)(uintptr_t)p && r->kind == GW_MEM_HOST_PINNED && (r->flags & 0x80000000u);
    pthread_mutex_unlock(&ranges_lock);
    if (!ours)
        return CUDA_ERROR_INVALID_VALUE;
    if (gw_mapped_lookup((uint64_t)(uintptr_t)p, 1, &base, &kind, NULL) && kind == GW_MAPPED_REGISTER)
        gw_mapped_release(base, GW_MAPPED_REGISTER); /* mapped when its device pointer was asked for */
    uint64_t size = r_size_of(p);
    gw_deliveries_forget((uint64_t)(uintptr_t)p, size);
    untrack((uint64_t)(uintptr_t)p, GW_MEM_HOST_PINNED);
    munmap(p, page_round(size));
    return CUDA_SUCCESS;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif

/* The driver's registration pins the pages, faulting in those never touched;
 * here nothing would until the first copy, inside the program's timed region.
 * Best effort (kernels before 5.14 lack the advice: the copy faults then). */
static void populate(void *p, size_t n, int read_only)
{
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)4095;
    size_t len = (uintptr_t)p + n - a;
    int saved = errno;
    madvise((void *)a, len, read_only ? MADV_POPULATE_READ : MADV_POPULATE_WRITE);
    errno = saved;
}

CUresult CUDAAPI cuMemHostRegister_v2(void *p, size_t bytesize, unsigned int Flags)
{
    gw_stat_call(GW_OP_cuMemHostRegister_v2);
    if (!gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!p || !bytesize)
        return CUDA_ERROR_INVALID_VALUE;
    if (gw_mem_classify((uint64_t)(uintptr_t)p) == GW_MEM_HOST_PINNED)
        return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    if (Flags & CU_MEMHOSTREGISTER_IOMEMORY)
        return CUDA_ERROR_NOT_SUPPORTED;
    if (gw_mapped_overlaps((uint64_t)(uintptr_t)p, bytesize))
        return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    /* made a mapped range in place, page by page: pages it shares with
     * other data of the program's (or of gpuwire's own, from malloc) would
     * fault, or fail system calls, while stale; such a range is registered
     * for copies only, as without DEVICEMAP (numba pins NumPy arrays so) */
    range whole = {(uint64_t)(uintptr_t)p, bytesize, GW_MEM_HOST_PINNED, Flags, DEVICE_NOT_YET};
    int in_place = (Flags & CU_MEMHOSTREGISTER_DEVICEMAP) && pages_of_its_own(&whole);
    if ((Flags & CU_MEMHOSTREGISTER_DEVICEMAP) && !in_place)
        gw_log("cuMemHostRegister: %p (%zu bytes) with DEVICEMAP does not cover whole pages: registered for copies, "
               "but gpuwire maps memory for the device page by page and cannot share a page with other data, so a "
               "kernel that reaches it faults (allocate it with cuMemHostAlloc(DEVICEMAP), or register whole pages)",
               p, bytesize);
    if (in_place) {
        uint64_t base = 0;
        CUresult rc = gw_mapped_register(p, bytesize, Flags, &base);
        if (rc != CUDA_SUCCESS)
            return rc;
    }
    track((uint64_t)(uintptr_t)p, bytesize, GW_MEM_HOST_PINNED, Flags);
    if (in_place)
        mark_device((uint64_t)(uintptr_t)p, DEVICE_SEES); /* a mapped range already */
    else
        populate(p, bytesize, Flags & CU_MEMHOSTREGISTER_READ_ONLY);
    gw_lanes_prepare(bytesize);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemHostUnregister(void *p)
{
    gw_stat_call(GW_OP_cuMemHostUnregister);
    pthread_mutex_lock(&ranges_lock);
    const range *r = find_locked((uint64_t)(uintptr_t)p);
    int registered = r && r->base == (uint64_t)(uintptr_t)p && r->kind == GW_MEM_HOST_PINNED &&
                     !(r->flags & 0x80000000u);
    pthread_mutex_unlock(&ranges_lock);
    if (!registered)
        return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
    unsigned kind = 0;
    uint64_t base = 0;
    if (gw_mapped_lookup((uint64_t)(uintptr_t)p, 1, &base, &kind, NULL) && kind == GW_MAPPED_REGISTER)
        gw_mapped_release(base, GW_MAPPED_REGISTER);
    gw_deliveries_forget((uint64_t)(uintptr_t)p, r_size_of(p));
    untrack((uint64_t)(uintptr_t)p, GW_MEM_HOST_PINNED);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemHostGetFlags(unsigned int *pFlags, void *p)
{
    gw_stat_call(GW_OP_cuMemHostGetFlags);
    if (!pFlags)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&ranges_lock);
    const range *r = find_locked((uint64_t)(uintptr_t)p);
    int ok = r && r->kind == GW_MEM_HOST_PINNED;
    if (ok) /* as on a UVA system: every page-locked range is device-mapped */
        *pFlags = (r->flags & 0x7fffffffu) | CU_MEMHOSTALLOC_DEVICEMAP;
    pthread_mutex_unlock(&ranges_lock);
    unsigned mflags = 0, kind = 0;
    if (!ok && gw_mapped_lookup((uint64_t)(uintptr_t)p, 1, NULL, &kind, &mflags) && kind == GW_MAPPED_HOST_ALLOC) {
        *pFlags = mflags | CU_MEMHOSTALLOC_DEVICEMAP;
        ok = 1;
    }
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* The device pointer of page-locked memory is its own address (UVA). Memory
 * the device cannot see yet (page-locked without DEVICEMAP) becomes a mapped
 * range now, in place. */
CUresult CUDAAPI cuMemHostGetDevicePointer_v2(CUdeviceptr *pdptr, void *p, unsigned int Flags)
{
    gw_stat_call(GW_OP_cuMemHostGetDevicePointer_v2);
    if (!gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!pdptr || Flags)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t a = (uint64_t)(uintptr_t)p;
    unsigned kind = 0;
    if (gw_mapped_lookup(a, 1, NULL, &kind, NULL) && kind != GW_MAPPED_MANAGED) {
        *pdptr = (CUdeviceptr)a;
        return CUDA_SUCCESS;
    }
    pthread_mutex_lock(&ranges_lock);
    const range *r = find_locked(a);
    range whole = r && r->kind == GW_MEM_HOST_PINNED ? *r : (range){0};
    pthread_mutex_unlock(&ranges_lock);
    if (!whole.base)
        return CUDA_ERROR_INVALID_VALUE;
    if (!pages_of_its_own(&whole)) {
        /* its address, as on a UVA system; a kernel reaching it faults, logged
         * at that launch (memory.c's gw_mem_kernel_arg_use) */
        if (gw_debug())
            gw_log("cuMemHostGetDevicePointer: %#llx (%llu bytes) does not cover whole pages: gpuwire cannot map it "
                   "for the device in place; copies through it work, a kernel reaching it faults",
                   (unsigned long long)whole.base, (unsigned long long)whole.size);
        *pdptr = (CUdeviceptr)a;
        return CUDA_SUCCESS;
    }
    uint64_t base = 0;
    CUresult rc = gw_mapped_register((void *)(uintptr_t)whole.base, whole.size, whole.flags & 0x7fffffffu, &base);
    if (rc != CUDA_SUCCESS)
        return rc;
    mark_device(whole.base, DEVICE_SEES);
    if (gw_debug())
        gw_log("page-locked memory at %#llx (%llu bytes) is now mapped: the device asked for it",
               (unsigned long long)whole.base, (unsigned long long)whole.size);
    *pdptr = (CUdeviceptr)a;
    return CUDA_SUCCESS;
}

/* Managed memory: a mapped range the worker allocates with cuMemAllocManaged. */
CUresult CUDAAPI cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
    gw_stat_call(GW_OP_cuMemAllocManaged);
    if (!dptr || !bytesize || (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST))
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t a = 0;
    CUresult rc = gw_mapped_alloc(GW_MAPPED_MANAGED, flags, bytesize, &a);
    if (rc == CUDA_SUCCESS)
        *dptr = (CUdeviceptr)a;
    return rc;
}

/* Mapped virtual-memory ranges are device memory for unified copies (several
 * servers: the memory of the handle's server, where the request went). */
CUresult CUDAAPI cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                          unsigned long long flags)
{
    int prev = gw_route_enter(gw_allocation_handle_server((uint64_t)handle));
    CUresult rc = gwf_cuMemMap(ptr, size, offset, handle, flags);
    if (rc == CUDA_SUCCESS)
        gw_mem_track_device(ptr, size);
    gw_route_leave(prev);
    return rc;
}

CUresult CUDAAPI cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    CUresult rc = gwf_cuMemUnmap(ptr, size);
    if (rc == CUDA_SUCCESS)
        gw_mem_untrack_device(ptr);
    return rc;
}
