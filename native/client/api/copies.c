/* Memory copies between the application's host memory and the remote GPU.
 * Host-to-device bytes travel in GW_COPY_CHUNK pieces posted without waiting;
 * the last piece collects any failure. Device-to-host pieces each come back
 * in a reply. Large copies take the lanes, extra connections (wire/lanes.c). 2D/3D copies are cut into bands of rows packed tightly on the
 * wire; the worker unpacks them with the real pitches. */
#include <pthread.h>
#include <string.h>

#include "../wire/cas.h"
#include "api.h"
#include "../diag/progress.h"

/* ---- 1D ----
 * Host-to-device copies are posted: they return once their bytes are in the
 * request (native semantics for pageable memory); a failure surfaces at the
 * next synchronization point. Device-to-host copies wait for their bytes and
 * are synchronization points. */

/* Pieces this big skip the send batch (and its copy); smaller ones join it. */
#define DIRECT_BYTES (256u << 10)

static CUresult htod_bytes(unsigned op, CUdeviceptr dst, const void *src, size_t n, int async, CUstream s);

/* A copy with a side in mapped host memory (state/mapped.c): those bytes are
 * on the server too, so the copy runs there as device-to-device, and never
 * crosses the wire; a synchronous one also waits, as the native copy would. */
static int ptds_op(unsigned op)
{
    return op == GW_OP_cuMemcpyHtoD_v2_ptds || op == GW_OP_cuMemcpyHtoDAsync_v2_ptsz ||
           op == GW_OP_cuMemcpyDtoH_v2_ptds || op == GW_OP_cuMemcpyDtoHAsync_v2_ptsz;
}

static CUresult on_server(unsigned op, CUdeviceptr dst, CUdeviceptr src, size_t n, int async, CUstream s)
{
    int pt = ptds_op(op);
    if (async)
        return pt ? cuMemcpyDtoDAsync_v2_ptsz(dst, src, n, s) : cuMemcpyDtoDAsync_v2(dst, src, n, s);
    CUresult rc = pt ? cuMemcpyDtoD_v2_ptds(dst, src, n) : cuMemcpyDtoD_v2(dst, src, n);
    return rc == CUDA_SUCCESS ? cuCtxSynchronize() : rc;
}

static CUresult htod_here(unsigned op, CUdeviceptr dst, const void *src, size_t n, int async, CUstream s);

/* Several servers: a copy goes to the server its device memory is on. */
static CUresult htod(unsigned op, CUdeviceptr dst, const void *src, size_t n, int async, CUstream s)
{
    int k = gw_server_of_address(dst);
    if (async && !gw_handle_fits((uint64_t)(uintptr_t)s, k)) /* several servers: memory of one, stream of another */
        return gw_route_mixed(op);
    CUcontext pushed;
    int route = gw_memory_server_enter(dst, &pushed);
    CUresult rc = htod_here(op, dst, src, n, async, s);
    gw_memory_server_leave(route, pushed);
    return rc;
}

static CUresult htod_here(unsigned op, CUdeviceptr dst, const void *src, size_t n, int async, CUstream s)
{
    if (!n)
        return CUDA_SUCCESS;
    if (!src)
        return CUDA_ERROR_INVALID_VALUE;
    gw_mapped_flush();
    if (gw_mapped_lookup((uint64_t)(uintptr_t)src, n, NULL, NULL, NULL))
        return on_server(op, dst, (CUdeviceptr)(uintptr_t)src, n, async, s);
    CUresult captured; /* a stream capture: a node that reads src at each launch (graph_sources.c) */
    if (async && gw_graph_source_captured(ptds_op(op), dst, src, n, s, &captured))
        return captured;
    gw_mapped_prepare((uint64_t)(uintptr_t)src, n, 0); /* gpuwire reads them: no fault inside */
    gw_progress_begin(n); /* the status line of a long transfer (diag/progress.c) */
    CUresult rc = htod_bytes(op, dst, src, n, async, s);
    gw_progress_end();
    gw_mapped_written_remotely(dst, n); /* mapped memory as the destination: fetched after */
    return rc;
}

/* Destinations whose last copy by content address found none of its bytes in
 * the cache: a buffer refilled with new bytes every step (llama.cpp's input
 * embeddings, 3 MB a batch) gains nothing from hashing them on both sides and
 * storing them, so its next copies take the plain path; every RETRY-th tries
 * the cache again, in case the bytes became ones it has. Model weights go to a
 * new destination each and are never asked about twice. */
#define FRESH_SLOTS 64
#define RETRY 16
static struct {
    CUdeviceptr dst;
    size_t n;
    unsigned skipped;
} fresh[FRESH_SLOTS];
static unsigned fresh_next;
static pthread_mutex_t fresh_lock = PTHREAD_MUTEX_INITIALIZER;

/* 1: this copy skips the cache (and counts towards the next retry) */
static int skip_cache(CUdeviceptr dst, size_t n)
{
    int skip = 0;
    pthread_mutex_lock(&fresh_lock);
    for (unsigned i = 0; i < FRESH_SLOTS; i++)
        if (fresh[i].n && fresh[i].dst == dst && fresh[i].n == n) {
            skip = ++fresh[i].skipped % RETRY != 0;
            break;
        }
    pthread_mutex_unlock(&fresh_lock);
    return skip;
}

static void note_cache_outcome(CUdeviceptr dst, size_t n, int all_missed)
{
    pthread_mutex_lock(&fresh_lock);
    unsigned at = FRESH_SLOTS;
    for (unsigned i = 0; i < FRESH_SLOTS && at == FRESH_SLOTS; i++)
        if (fresh[i].n && fresh[i].dst == dst && fresh[i].n == n)
            at = i;
    if (!all_missed && at < FRESH_SLOTS)
        fresh[at].n = 0; /* the cache had some: ask it again next time */
    else if (all_missed && at == FRESH_SLOTS) {
        at = fresh_next++ % FRESH_SLOTS;
        fresh[at].dst = dst, fresh[at].n = n, fresh[at].skipped = 0;
    }
    pthread_mutex_unlock(&fresh_lock);
}

/* A run of copies none of whose bytes the cache had (a model loaded for the
 * first time: every tensor to a new destination) pays, per copy, a hash and
 * a round trip before its bytes go, one copy at a time (llama.cpp's cold
 * load: a copy per tensor, 344 reference round trips with the module
 * images for a 3.15 GB model, about 1 GB/s on the H100). After COLD_RUN such copies in a row the next
 * ones of at most COLD_MAX bytes go plain, posted without a wait, with STORE
 * so the worker stores their chunks for next time; every COLD_PROBE-th asks
 * the cache again, and one that finds anything ends the run. */
#define COLD_RUN 8
#define COLD_PROBE 32
#define COLD_MAX ((size_t)16 << 20)
static unsigned cold_run, cold_plain_since_probe; /* under fresh_lock */

/* 1: this copy goes plain and stored */
static int cold_plain(size_t n)
{
    pthread_mutex_lock(&fresh_lock);
    int plain = n <= COLD_MAX && cold_run >= COLD_RUN && ++cold_plain_since_probe % COLD_PROBE != 0;
    pthread_mutex_unlock(&fresh_lock);
    return plain;
}

static void note_cold(int all_missed)
{
    pthread_mutex_lock(&fresh_lock);
    cold_run = all_missed ? cold_run + 1 : 0;
    if (!all_missed)
        cold_plain_since_probe = 0;
    pthread_mutex_unlock(&fresh_lock);
}

static CUresult htod_bytes(unsigned op, CUdeviceptr dst, const void *src, size_t n, int async, CUstream s)
{
    const uint8_t *p = src;
    CUresult settled_rc = gw_deliveries_settle((uint64_t)(uintptr_t)src, n);
    if (settled_rc != CUDA_SUCCESS)
        return settled_rc;
    int known = gw_mem_is_device_range(dst, n);
    /* large copies to known device memory travel by content address (wire/cas_upload.c),
     * except asynchronous ones from page-locked memory: staging an application refills
     * (a data loader's batches, simpleMultiCopy's buffers) holds bytes the cache never
     * had, and hashing them costs more than sending them on a fast link */
    int store = 0; /* plain, and the worker stores the chunks */
    if (known && n >= gw_cas_min_copy() && gw_cas_on() && !skip_cache(dst, n) &&
        !(async && gw_mem_is_pinned_range((uint64_t)(uintptr_t)src, n) && !gw_cas_pinned_sources())) {
        store = cold_plain(n);
        if (store)
            note_cache_outcome(dst, n, 1); /* copied to again, it is a refill: plain, not stored, on the lanes */
        if (!store) {
            int all_missed = 0;
            CUresult rc = gw_cas_htod(op, dst, src, n, async ? (uint64_t)(uintptr_t)s : 0, &all_missed);
            if (rc == CUDA_SUCCESS) {
                note_cache_outcome(dst, n, all_missed);
                note_cold(all_missed);
            }
            return rc;
        }
        __atomic_fetch_add(&gw_cas_stats()->cold_plain_bytes, (unsigned long long)n, __ATOMIC_RELAXED);
    }
    /* large copies to known device memory: their bytes over the lanes (wire/lanes.c),
     * in pieces of one cache chunk each, as the cache names them, so a stored copy
     * (a cold run's) takes them too */
    if (known && gw_lanes_for(n))
        return gw_lanes_htod(op, dst, src, n, async ? (uint64_t)(uintptr_t)s : 0, store);
    for (size_t off = 0; off < n; off += GW_COPY_CHUNK) {
        size_t len = n - off < GW_COPY_CHUNK ? n - off : GW_COPY_CHUNK;
        int last = off + len == n;
        gw_req *q = gw_req_begin_quiet(op);
        if (store)
            gw_req_set_flags(q, GW_F_STORE);
        gw_put_fields(q, gw_htod_req, {.dst = dst + off, .stream = async ? (uint64_t)(uintptr_t)s : 0});
        if ((!last || known) && len >= DIRECT_BYTES) {
            /* big: straight from the application's buffer into the socket */
            CUresult rc = gw_req_post_tail(q, p + off, len);
            if (rc != CUDA_SUCCESS)
                return rc;
            gw_progress_sent(len);
            continue;
        }
        gw_put_raw(q, p + off, len); /* the bytes leave the application's buffer here */
        if (!last || known) {
            CUresult rc = gw_req_post(q);
            if (rc != CUDA_SUCCESS)
                return rc;
            gw_progress_sent(len);
            continue;
        }
        /* a destination the client does not know as device memory: wait for
         * the server's verdict, as the driver answers a bad pointer at once */
        gw_req_set_flags(q, GW_F_COLLECT);
        gw_rep *r;
        CUresult rc = gw_req_call(q, &r);
        gw_rep_end(r);
        return rc;
    }
    return CUDA_SUCCESS;
}

/* A synchronize of a stream that holds no work able to fail later is posted,
 * not waited for (state/stream_fences.c says when); one that waited and
 * succeeded tells the fences the stream was idle. */
static CUresult stream_sync(unsigned op, CUstream s)
{
    int ptsz = op == GW_OP_cuStreamSynchronize_ptsz;
    if (gw_initialized() && gw_fence_sync_may_post(op, (uint64_t)(uintptr_t)s)) {
        gw_req *q = gw_req_begin(op);
        gw_put_handle(q, (uint64_t)(uintptr_t)s); /* several servers: the stream's */
        return gw_req_post(q);
    }
    uint64_t mark = gw_fence_mark();
    CUresult rc = ptsz ? gwf_cuStreamSynchronize_ptsz(s) : gwf_cuStreamSynchronize(s);
    gw_fence_collected_on(gw_fence_server_of((uint64_t)(uintptr_t)s)); /* its reply carried any posted failure */
    if (rc == CUDA_SUCCESS)
        gw_fence_confirmed(op, (uint64_t)(uintptr_t)s, mark);
    return rc;
}

/* A waited context synchronize that succeeded: every stream was idle. */
static CUresult ctx_sync(int v2, CUcontext ctx)
{
    uint64_t mark = gw_fence_mark();
    CUresult rc = v2 ? gwf_cuCtxSynchronize_v2(ctx) : gwf_cuCtxSynchronize();
    gw_fence_collected_on(gw_fence_server_of((uint64_t)(uintptr_t)ctx)); /* the named context's server, else the thread's */
    /* another context's streams are not told apart here: none confirmed; with
     * several servers, the current context's server's streams only */
    if (rc == CUDA_SUCCESS && !ctx)
        gw_fence_confirmed_all(mark);
    return rc;
}

CUresult CUDAAPI cuCtxSynchronize(void) { return ctx_sync(0, NULL); }
CUresult CUDAAPI cuCtxSynchronize_v2(CUcontext ctx) { return ctx_sync(1, ctx); }

CUresult CUDAAPI cuStreamSynchronize(CUstream s) { return stream_sync(GW_OP_cuStreamSynchronize, s); }
CUresult CUDAAPI cuStreamSynchronize_ptsz(CUstream s) { return stream_sync(GW_OP_cuStreamSynchronize_ptsz, s); }

static CUresult dtoh_here(unsigned op, void *dst, CUdeviceptr src, size_t n, int async, CUstream s);

static CUresult dtoh(unsigned op, void *dst, CUdeviceptr src, size_t n, int async, CUstream s)
{
    int k = gw_server_of_address(src); /* several servers: where the memory is */
    if (async && !gw_handle_fits((uint64_t)(uintptr_t)s, k))
        return gw_route_mixed(op);
    CUcontext pushed;
    int route = gw_memory_server_enter(src, &pushed);
    CUresult rc = dtoh_here(op, dst, src, n, async, s);
    gw_memory_server_leave(route, pushed);
    return rc;
}

static CUresult dtoh_here(unsigned op, void *dst, CUdeviceptr src, size_t n, int async, CUstream s)
{
    uint8_t *p = dst;
    if (!n)
        return CUDA_SUCCESS;
    if (!dst)
        return CUDA_ERROR_INVALID_VALUE;
    gw_mapped_flush(); /* the source may be mapped memory the host wrote */
    if (gw_mapped_lookup((uint64_t)(uintptr_t)dst, n, NULL, NULL, NULL)) {
        CUresult rc = on_server(op, (CUdeviceptr)(uintptr_t)dst, src, n, async, s);
        gw_mapped_written_remotely((uint64_t)(uintptr_t)dst, n);
        return rc;
    }
    gw_mapped_prepare((uint64_t)(uintptr_t)dst, n, 1);
    /* into pinned memory, from known device memory: posted, the bytes are delivered before
     * anything that can see the copy done returns (state/deliveries.c) */
    if (async && gw_deliveries_on() && gw_may_post() && gw_mem_is_pinned_range((uint64_t)(uintptr_t)dst, n) &&
        gw_mem_is_device_range(src, n)) {
        uint64_t on = op == GW_OP_cuMemcpyDtoHAsync_v2_ptsz && !s ? (uint64_t)(uintptr_t)CU_STREAM_PER_THREAD
                                                                    : (uint64_t)(uintptr_t)s;
        gw_fence_unsafe(GW_OP_DELIVER, on); /* its bytes land later (state/stream_fences.c) */
        return gw_deliver(op == GW_OP_cuMemcpyDtoHAsync_v2_ptsz, dst, src, n, s);
    }
    CUresult captured; /* a stream capture: a node that writes dst at each launch (graph_sources.c) */
    if (async && gw_graph_dest_captured(ptds_op(op), dst, src, n, s, &captured))
        return captured;
    uint64_t mark = gw_fence_mark(); /* a copy that waited: its stream was idle before it */
    /* large copies from known device memory: their bytes over the lanes (wire/lanes.c) */
    if (gw_mem_is_device_range(src, n) && gw_lanes_for(n)) {
        CUresult rc = gw_lanes_dtoh(op, dst, src, n, async ? (uint64_t)(uintptr_t)s : 0);
        if (rc == CUDA_SUCCESS)
            gw_fence_confirmed(op, async ? (uint64_t)(uintptr_t)s : 0, mark);
        return rc;
    }
    /* every piece is asked for at once; the replies stream back in order */
    size_t pieces = (n + GW_COPY_CHUNK - 1) / GW_COPY_CHUNK;
    CUresult rc = gw_burst_begin(op);
    if (rc != CUDA_SUCCESS)
        return rc;
    uint32_t first = 0;
    for (size_t k = 0; k < pieces && rc == CUDA_SUCCESS; k++) {
        size_t off = k * GW_COPY_CHUNK, len = n - off < GW_COPY_CHUNK ? n - off : GW_COPY_CHUNK;
        gw_req *q = gw_req_begin_quiet(op);
        gw_put_fields(q, gw_dtoh_req, {.src = src + off, .n = len, .stream = async ? (uint64_t)(uintptr_t)s : 0});
        gw_req_set_flags(q, GW_F_COLLECT);
        uint32_t seq;
        rc = gw_burst_queue(q, &seq);
        if (k == 0)
            first = seq;
    }
    for (size_t k = 0; k < pieces && rc == CUDA_SUCCESS; k++) {
        size_t off = k * GW_COPY_CHUNK, len = n - off < GW_COPY_CHUNK ? n - off : GW_COPY_CHUNK;
        gw_rep *r;
        int placed;
        rc = gw_burst_reply_into(first + (uint32_t)k, &r, p + off, len, &placed);
        if (rc == CUDA_SUCCESS && !placed)
            rc = gw_rep_status(r, gw_get_bytes(r, p + off, len) ? CUDA_ERROR_UNKNOWN : rc);
        gw_rep_end(r);
        /* after a failed piece the later replies still arrive: read them off */
        for (size_t j = k + 1; rc != CUDA_SUCCESS && rc != CUDA_ERROR_DEVICE_UNAVAILABLE && j < pieces; j++) {
            gw_rep *rest;
            if (gw_burst_reply(first + (uint32_t)j, &rest) == CUDA_ERROR_DEVICE_UNAVAILABLE)
                break;
        }
    }
    gw_burst_end();
    gw_fence_collected(); /* the pieces' replies carried any posted failure */
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_fence_confirmed(op, async ? (uint64_t)(uintptr_t)s : 0, mark);
    return CUDA_SUCCESS;
}

#define COUNTED(op) (gw_stat_call(op), op)

CUresult CUDAAPI cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n)
{ return htod(COUNTED(GW_OP_cuMemcpyHtoD_v2), dst, src, n, 0, NULL); }
CUresult CUDAAPI cuMemcpyHtoD_v2_ptds(CUdeviceptr dst, const void *src, size_t n)
{ return htod(COUNTED(GW_OP_cuMemcpyHtoD_v2_ptds), dst, src, n, 0, NULL); }
CUresult CUDAAPI cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{ return htod(COUNTED(GW_OP_cuMemcpyHtoDAsync_v2), dst, src, n, 1, s); }
CUresult CUDAAPI cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{ return htod(COUNTED(GW_OP_cuMemcpyHtoDAsync_v2_ptsz), dst, src, n, 1, s); }
CUresult CUDAAPI cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{ return dtoh(COUNTED(GW_OP_cuMemcpyDtoH_v2), dst, src, n, 0, NULL); }
CUresult CUDAAPI cuMemcpyDtoH_v2_ptds(void *dst, CUdeviceptr src, size_t n)
{ return dtoh(COUNTED(GW_OP_cuMemcpyDtoH_v2_ptds), dst, src, n, 0, NULL); }
CUresult CUDAAPI cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, CUstream s)
{ return dtoh(COUNTED(GW_OP_cuMemcpyDtoHAsync_v2), dst, src, n, 1, s); }
CUresult CUDAAPI cuMemcpyDtoHAsync_v2_ptsz(void *dst, CUdeviceptr src, size_t n, CUstream s)
{ return dtoh(COUNTED(GW_OP_cuMemcpyDtoHAsync_v2_ptsz), dst, src, n, 1, s); }

/* Unified copies: the client knows which addresses are device memory. */
static CUresult unified(int ptds, CUdeviceptr dst, CUdeviceptr src, size_t n, int async, CUstream s)
{
    gw_mem_kind dk = gw_mem_classify(dst), sk = gw_mem_classify(src);
    int dd = dk == GW_MEM_DEVICE || dk == GW_MEM_MAPPED, sd = sk == GW_MEM_DEVICE || sk == GW_MEM_MAPPED;
    if (dd && sd && gw_servers_n > 1) { /* several servers: the two ends' */
        int ks = gw_server_of_address(src), kd = gw_server_of_address(dst);
        if (ks >= 0 && kd >= 0 && ks != kd)
            return gw_cross_server_copy(dst, NULL, src, NULL, n, async, s);
        if (async && !gw_handle_fits((uint64_t)(uintptr_t)s, kd))
            return gw_route_mixed(ptds ? GW_OP_cuMemcpyAsync_ptsz : GW_OP_cuMemcpyAsync);
        CUcontext pushed;
        int route = gw_memory_server_enter(dst, &pushed);
        CUresult rc = async ? (ptds ? cuMemcpyDtoDAsync_v2_ptsz(dst, src, n, s) : cuMemcpyDtoDAsync_v2(dst, src, n, s))
                            : (ptds ? cuMemcpyDtoD_v2_ptds(dst, src, n) : cuMemcpyDtoD_v2(dst, src, n));
        gw_memory_server_leave(route, pushed);
        return rc;
    }
    if (dd && sd) {
        if (async)
            return ptds ? cuMemcpyDtoDAsync_v2_ptsz(dst, src, n, s) : cuMemcpyDtoDAsync_v2(dst, src, n, s);
        return ptds ? cuMemcpyDtoD_v2_ptds(dst, src, n) : cuMemcpyDtoD_v2(dst, src, n);
    }
    if (dd)
        return htod(async ? (ptds ? GW_OP_cuMemcpyHtoDAsync_v2_ptsz : GW_OP_cuMemcpyHtoDAsync_v2)
                          : (ptds ? GW_OP_cuMemcpyHtoD_v2_ptds : GW_OP_cuMemcpyHtoD_v2),
                    dst, (const void *)(uintptr_t)src, n, async, s);
    if (sd)
        return dtoh(async ? (ptds ? GW_OP_cuMemcpyDtoHAsync_v2_ptsz : GW_OP_cuMemcpyDtoHAsync_v2)
                          : (ptds ? GW_OP_cuMemcpyDtoH_v2_ptds : GW_OP_cuMemcpyDtoH_v2),
                    (void *)(uintptr_t)dst, src, n, async, s);
    /* host to host: ordered after the stream's earlier work, as on a GPU */
    CUresult rc = async ? (ptds ? cuStreamSynchronize_ptsz(s) : cuStreamSynchronize(s))
                        : (ptds ? cuCtxSynchronize() : cuCtxSynchronize());
    if (rc == CUDA_SUCCESS && n)
        memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
    return rc;
}

CUresult CUDAAPI cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n)
{ gw_stat_call(GW_OP_cuMemcpy); return unified(0, dst, src, n, 0, NULL); }
CUresult CUDAAPI cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t n)
{ gw_stat_call(GW_OP_cuMemcpy_ptds); return unified(1, dst, src, n, 0, NULL); }
CUresult CUDAAPI cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{ gw_stat_call(GW_OP_cuMemcpyAsync); return unified(0, dst, src, n, 1, s); }
CUresult CUDAAPI cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{ gw_stat_call(GW_OP_cuMemcpyAsync_ptsz); return unified(1, dst, src, n, 1, s); }

/* ---- 2D and 3D ---- */

typedef struct side {
    CUmemorytype type; /* HOST, DEVICE or ARRAY after resolving UNIFIED */
    uint64_t base;     /* address of (x, y) = (0, 0) of the region; an array: x in bytes */
    size_t pitch;
    CUarray arr;       /* an array side: the array, its row y and slice z */
    size_t y, z;
} side;

/* An array side, checked against the array's descriptor: the worker's driver
 * would refuse a box outside it too, but only after the bytes had travelled. */
static CUresult resolve_array(CUarray arr, size_t x, size_t y, size_t z, size_t w, size_t h, size_t d, side *out)
{
    CUDA_ARRAY3D_DESCRIPTOR ad;
    if (!gw_array_desc(arr, &ad))
        return CUDA_ERROR_INVALID_VALUE;
    size_t row = ad.Width * gw_array_elem_size(ad.Format, ad.NumChannels);
    size_t rows = ad.Height ? ad.Height : 1, slices = ad.Depth ? ad.Depth : 1;
    if (x > row || w > row - x || y > rows || h > rows - y || z > slices || d > slices - z)
        return CUDA_ERROR_INVALID_VALUE;
    *out = (side){CU_MEMORYTYPE_ARRAY, x, row, arr, y, z};
    return CUDA_SUCCESS;
}

static CUresult resolve(CUmemorytype t, const void *host, CUdeviceptr dev, size_t x, size_t y,
                        size_t pitch, side *out)
{
    uint64_t base;
    if (t == CU_MEMORYTYPE_UNIFIED) { /* the address is in the device field either way */
        base = dev;
        t = gw_mem_classify(dev) == GW_MEM_DEVICE ? CU_MEMORYTYPE_DEVICE : CU_MEMORYTYPE_HOST;
    } else if (t == CU_MEMORYTYPE_HOST) {
        base = (uint64_t)(uintptr_t)host;
    } else if (t == CU_MEMORYTYPE_DEVICE) {
        base = dev;
    } else {
        return CUDA_ERROR_INVALID_VALUE;
    }
    *out = (side){t, base + y * pitch + x, pitch, NULL, 0, 0};
    return CUDA_SUCCESS;
}

/* Moves a side's origin by dx bytes and dy rows. */
static void advance(side *s, size_t dx, size_t dy)
{
    if (s->type == CU_MEMORYTYPE_ARRAY) {
        s->base += dx;
        s->y += dy;
    } else {
        s->base += dy * s->pitch + dx;
    }
}

/* MEMCPY_BAND_SIDE (codegen/protocol.txt): an array at x bytes (its pitch 0), or linear memory */
static void put_side(gw_req *q, const side *s)
{
    gw_put_fields(q, gw_memcpy_band_side_req, {.memory_type = (uint32_t)s->type});
    if (s->type == GW_MEMORYTYPE_ARRAY)
        gw_put_fields(q, gw_memcpy_band_side_req_array,
                      {.array = (uint64_t)(uintptr_t)s->arr, .pitch = 0, .x = s->base, .y = s->y, .z = s->z});
    else
        gw_put_fields(q, gw_memcpy_band_side_req_linear,
                      {.address = s->type == CU_MEMORYTYPE_DEVICE ? s->base : 0, .pitch = s->pitch});
}

/* One band of rows: at most GW_COPY_CHUNK bytes of packed data. */
static CUresult band(unsigned op, const side *s, const side *d, size_t width, size_t rows, int async, CUstream st)
{
    if (s->type == CU_MEMORYTYPE_HOST) { /* before the request: a synchronize would reuse its buffer */
        CUresult rc = gw_deliveries_settle(s->base, rows ? (rows - 1) * s->pitch + width : 0);
        if (rc != CUDA_SUCCESS)
            return rc;
    }
    gw_req *q = gw_req_begin_quiet(op); /* MEMCPY2D_BAND */
    gw_put_fields(q, gw_memcpy2d_band_req, {.stream = async ? (uint64_t)(uintptr_t)st : 0});
    put_side(q, s);
    put_side(q, d);
    gw_put_fields(q, gw_memcpy2d_band_req_after_dst, {.width = width, .rows = rows});
    if (s->type == CU_MEMORYTYPE_HOST)
        for (size_t y = 0; y < rows; y++)
            gw_put_raw(q, (const void *)(uintptr_t)(s->base + y * s->pitch), width);
    if (d->type != CU_MEMORYTYPE_HOST)
        return gw_req_post(q); /* nothing comes back: posted like a 1D host-to-device copy */
    gw_req_set_flags(q, GW_F_COLLECT);
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS && d->type == CU_MEMORYTYPE_HOST)
        for (size_t y = 0; y < rows && rc == CUDA_SUCCESS; y++)
            if (gw_get_bytes(r, (void *)(uintptr_t)(d->base + y * d->pitch), width))
                rc = gw_rep_status(r, CUDA_ERROR_UNKNOWN);
    gw_rep_end(r);
    return rc;
}

/* A host side in mapped memory made current before gpuwire reads or writes it. */
static void prepare_host_side(const side *x, size_t width, size_t height, int for_write)
{
    if (x->type == CU_MEMORYTYPE_HOST)
        gw_mapped_prepare(x->base, (height - 1) * x->pitch + width, for_write);
}

static CUresult copy2d(unsigned op, side s, side d, size_t width, size_t height, int async, CUstream st)
{
    if (!width || !height)
        return CUDA_SUCCESS;
    gw_mapped_flush();
    prepare_host_side(&s, width, height, 0);
    prepare_host_side(&d, width, height, 1);
    if ((s.type == CU_MEMORYTYPE_HOST && d.type == CU_MEMORYTYPE_HOST)) {
        CUresult rc = async ? cuStreamSynchronize(st) : cuCtxSynchronize();
        for (size_t y = 0; rc == CUDA_SUCCESS && y < height; y++)
            memmove((void *)(uintptr_t)(d.base + y * d.pitch), (const void *)(uintptr_t)(s.base + y * s.pitch), width);
        return rc;
    }
    if (width > GW_COPY_CHUNK) { /* very wide rows: one 1D copy per row */
        for (size_t y = 0; y < height; y++) {
            side sr = s, dr = d;
            advance(&sr, 0, y);
            advance(&dr, 0, y);
            if (sr.type != CU_MEMORYTYPE_ARRAY)
                sr.pitch = width;
            if (dr.type != CU_MEMORYTYPE_ARRAY)
                dr.pitch = width;
            for (size_t x = 0; x < width; x += GW_COPY_CHUNK) {
                size_t w = width - x < GW_COPY_CHUNK ? width - x : GW_COPY_CHUNK;
                side sx = sr, dx = dr;
                advance(&sx, x, 0);
                advance(&dx, x, 0);
                CUresult rc = band(op, &sx, &dx, w, 1, async, st);
                if (rc != CUDA_SUCCESS)
                    return rc;
            }
        }
        return CUDA_SUCCESS;
    }
    size_t per = GW_COPY_CHUNK / width;
    for (size_t y = 0; y < height; y += per) {
        size_t rows = height - y < per ? height - y : per;
        side sb = s, db = d;
        advance(&sb, 0, y);
        advance(&db, 0, y);
        CUresult rc = band(op, &sb, &db, width, rows, async, st);
        if (rc != CUDA_SUCCESS)
            return rc;
    }
    return CUDA_SUCCESS;
}

static CUresult memcpy2d(unsigned op, const CUDA_MEMCPY2D *c, int async, CUstream st)
{
    gw_stat_call(op);
    if (!c)
        return CUDA_ERROR_INVALID_VALUE;
    if (c->srcPitch && c->WidthInBytes > c->srcPitch && c->Height > 1)
        return CUDA_ERROR_INVALID_VALUE;
    if (c->dstPitch && c->WidthInBytes > c->dstPitch && c->Height > 1)
        return CUDA_ERROR_INVALID_VALUE;
    side s, d;
    CUresult rc = c->srcMemoryType == CU_MEMORYTYPE_ARRAY
                      ? resolve_array(c->srcArray, c->srcXInBytes, c->srcY, 0, c->WidthInBytes, c->Height, 1, &s)
                      : resolve(c->srcMemoryType, c->srcHost, c->srcDevice, c->srcXInBytes, c->srcY, c->srcPitch, &s);
    if (rc == CUDA_SUCCESS)
        rc = c->dstMemoryType == CU_MEMORYTYPE_ARRAY
                 ? resolve_array(c->dstArray, c->dstXInBytes, c->dstY, 0, c->WidthInBytes, c->Height, 1, &d)
                 : resolve(c->dstMemoryType, c->dstHost, c->dstDevice, c->dstXInBytes, c->dstY, c->dstPitch, &d);
    if (rc != CUDA_SUCCESS)
        return rc;
    return copy2d(op, s, d, c->WidthInBytes, c->Height, async, st);
}

CUresult CUDAAPI cuMemcpy2D_v2(const CUDA_MEMCPY2D *c) { return memcpy2d(GW_OP_cuMemcpy2D_v2, c, 0, NULL); }
CUresult CUDAAPI cuMemcpy2D_v2_ptds(const CUDA_MEMCPY2D *c) { return memcpy2d(GW_OP_cuMemcpy2D_v2_ptds, c, 0, NULL); }
CUresult CUDAAPI cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D *c)
{ return memcpy2d(GW_OP_cuMemcpy2DUnaligned_v2, c, 0, NULL); }
CUresult CUDAAPI cuMemcpy2DUnaligned_v2_ptds(const CUDA_MEMCPY2D *c)
{ return memcpy2d(GW_OP_cuMemcpy2DUnaligned_v2_ptds, c, 0, NULL); }
CUresult CUDAAPI cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D *c, CUstream s)
{ return memcpy2d(GW_OP_cuMemcpy2DAsync_v2, c, 1, s); }
CUresult CUDAAPI cuMemcpy2DAsync_v2_ptsz(const CUDA_MEMCPY2D *c, CUstream s)
{ return memcpy2d(GW_OP_cuMemcpy2DAsync_v2_ptsz, c, 1, s); }

/* 3D: each z-slice is a 2D copy whose first row is y + (z0 + z) * height,
 * or, in an array, slice z0 + z. */
static CUresult memcpy3d(unsigned op, unsigned op2d, const CUDA_MEMCPY3D *c, int async, CUstream st)
{
    gw_stat_call(op);
    if (!c)
        return CUDA_ERROR_INVALID_VALUE;
    if (c->srcLOD || c->dstLOD)
        return CUDA_ERROR_INVALID_VALUE;
    for (size_t z = 0; z < c->Depth; z++) {
        side s, d;
        CUresult rc = c->srcMemoryType == CU_MEMORYTYPE_ARRAY
                          ? resolve_array(c->srcArray, c->srcXInBytes, c->srcY, c->srcZ + z, c->WidthInBytes,
                                          c->Height, 1, &s)
                          : resolve(c->srcMemoryType, c->srcHost, c->srcDevice, c->srcXInBytes,
                                    c->srcY + (c->srcZ + z) * c->srcHeight, c->srcPitch, &s);
        if (rc == CUDA_SUCCESS)
            rc = c->dstMemoryType == CU_MEMORYTYPE_ARRAY
                     ? resolve_array(c->dstArray, c->dstXInBytes, c->dstY, c->dstZ + z, c->WidthInBytes, c->Height,
                                     1, &d)
                     : resolve(c->dstMemoryType, c->dstHost, c->dstDevice, c->dstXInBytes,
                               c->dstY + (c->dstZ + z) * c->dstHeight, c->dstPitch, &d);
        if (rc == CUDA_SUCCESS)
            rc = copy2d(op2d, s, d, c->WidthInBytes, c->Height, async, st);
        if (rc != CUDA_SUCCESS)
            return rc;
    }
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemcpy3D_v2(const CUDA_MEMCPY3D *c)
{ return memcpy3d(GW_OP_cuMemcpy3D_v2, GW_OP_cuMemcpy2D_v2, c, 0, NULL); }
CUresult CUDAAPI cuMemcpy3D_v2_ptds(const CUDA_MEMCPY3D *c)
{ return memcpy3d(GW_OP_cuMemcpy3D_v2_ptds, GW_OP_cuMemcpy2D_v2_ptds, c, 0, NULL); }
CUresult CUDAAPI cuMemcpy3DAsync_v2(const CUDA_MEMCPY3D *c, CUstream s)
{ return memcpy3d(GW_OP_cuMemcpy3DAsync_v2, GW_OP_cuMemcpy2DAsync_v2, c, 1, s); }
CUresult CUDAAPI cuMemcpy3DAsync_v2_ptsz(const CUDA_MEMCPY3D *c, CUstream s)
{ return memcpy3d(GW_OP_cuMemcpy3DAsync_v2_ptsz, GW_OP_cuMemcpy2DAsync_v2_ptsz, c, 1, s); }

/* Host <-> array by byte offset: a one-row copy of the array's first row
 * (the offset and count must lie in it, as in a 1D array). */
static CUresult host_array(unsigned op, unsigned op2d, int to_array, CUarray a, size_t off, void *host, size_t n,
                           int async, CUstream st)
{
    gw_stat_call(op);
    if (!n)
        return CUDA_SUCCESS;
    if (!host)
        return CUDA_ERROR_INVALID_VALUE;
    side h = {CU_MEMORYTYPE_HOST, (uint64_t)(uintptr_t)host, n, NULL, 0, 0}, arr;
    CUresult rc = resolve_array(a, off, 0, 0, n, 1, 1, &arr);
    if (rc != CUDA_SUCCESS)
        return rc;
    return to_array ? copy2d(op2d, h, arr, n, 1, async, st) : copy2d(op2d, arr, h, n, 1, async, st);
}

CUresult CUDAAPI cuMemcpyHtoA_v2(CUarray a, size_t off, const void *src, size_t n)
{ return host_array(GW_OP_cuMemcpyHtoA_v2, GW_OP_cuMemcpy2D_v2, 1, a, off, (void *)src, n, 0, NULL); }
CUresult CUDAAPI cuMemcpyHtoA_v2_ptds(CUarray a, size_t off, const void *src, size_t n)
{ return host_array(GW_OP_cuMemcpyHtoA_v2_ptds, GW_OP_cuMemcpy2D_v2_ptds, 1, a, off, (void *)src, n, 0, NULL); }
CUresult CUDAAPI cuMemcpyHtoAAsync_v2(CUarray a, size_t off, const void *src, size_t n, CUstream s)
{ return host_array(GW_OP_cuMemcpyHtoAAsync_v2, GW_OP_cuMemcpy2DAsync_v2, 1, a, off, (void *)src, n, 1, s); }
CUresult CUDAAPI cuMemcpyHtoAAsync_v2_ptsz(CUarray a, size_t off, const void *src, size_t n, CUstream s)
{ return host_array(GW_OP_cuMemcpyHtoAAsync_v2_ptsz, GW_OP_cuMemcpy2DAsync_v2_ptsz, 1, a, off, (void *)src, n, 1, s); }
CUresult CUDAAPI cuMemcpyAtoH_v2(void *dst, CUarray a, size_t off, size_t n)
{ return host_array(GW_OP_cuMemcpyAtoH_v2, GW_OP_cuMemcpy2D_v2, 0, a, off, dst, n, 0, NULL); }
CUresult CUDAAPI cuMemcpyAtoH_v2_ptds(void *dst, CUarray a, size_t off, size_t n)
{ return host_array(GW_OP_cuMemcpyAtoH_v2_ptds, GW_OP_cuMemcpy2D_v2_ptds, 0, a, off, dst, n, 0, NULL); }
CUresult CUDAAPI cuMemcpyAtoHAsync_v2(void *dst, CUarray a, size_t off, size_t n, CUstream s)
{ return host_array(GW_OP_cuMemcpyAtoHAsync_v2, GW_OP_cuMemcpy2DAsync_v2, 0, a, off, dst, n, 1, s); }
CUresult CUDAAPI cuMemcpyAtoHAsync_v2_ptsz(void *dst, CUarray a, size_t off, size_t n, CUstream s)
{ return host_array(GW_OP_cuMemcpyAtoHAsync_v2_ptsz, GW_OP_cuMemcpy2DAsync_v2_ptsz, 0, a, off, dst, n, 1, s); }
