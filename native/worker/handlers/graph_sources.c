/* Graph host sources: memcpy nodes whose source is the client's host memory
 * (docs/protocol.md "Graph host sources"). The node the driver holds copies
 * device to device from staging of the worker's own, device memory made when
 * the node is added (graph_copies.c) under an id the client chose; before each
 * launch the client sends the source's current bytes (STAGING_FILL), copied
 * into the staging on the launch's stream, so in stream order before the
 * node runs. Device staging (not page-locked host memory) is what keeps that
 * order: the fill is an ordinary asynchronous host-to-device copy. The client
 * frees a staging once no graph or executable graph uses it (STAGING_FREE);
 * what is left goes with the session's context.
 *
 * Ids, offsets and lengths come from the network: an unknown or reused id,
 * or bytes past a staging's end, end the session. */
#include <pthread.h>
#include <string.h>

#include "handlers.h"

#define STAGINGS_MAX 4096 /* stagings alive at once in a session */
#define STAGING_MAX ((uint64_t)1 << 32) /* bytes of one staging at most */

typedef struct staging {
    uint64_t id; /* 0: a free slot */
    CUdeviceptr dptr;
    uint64_t n;
    int busy;   /* fills queuing a copy into it now */
    int doomed; /* freed while busy: the last fill frees it */
} staging;

static staging table[STAGINGS_MAX]; /* under lock */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

typedef CUresult (*alloc_fn)(CUdeviceptr *, size_t);
typedef CUresult (*free_fn)(CUdeviceptr);
typedef CUresult (*fill_fn)(CUdeviceptr, const void *, size_t, CUstream);
typedef CUresult (*ctx_push_fn)(CUcontext);
typedef CUresult (*ctx_pop_fn)(CUcontext *);
typedef CUresult (*mode_fn)(CUstreamCaptureMode *);

/* Device memory freed; in the relaxed capture mode: this thread may be capturing. */
static CUresult staging_free(CUdeviceptr d)
{
    free_fn fr = (free_fn)gw_driver_sym(GW_OP_cuMemFree_v2);
    mode_fn mode = (mode_fn)gw_driver_sym(GW_OP_cuThreadExchangeStreamCaptureMode);
    CUstreamCaptureMode m = CU_STREAM_CAPTURE_MODE_RELAXED;
    if (mode)
        mode(&m);
    CUresult r = fr ? fr(d) : CUDA_ERROR_NOT_SUPPORTED;
    if (mode)
        mode(&m);
    return r;
}

static staging *find(uint64_t id) /* under lock; a doomed one is gone already */
{
    for (int i = 0; id && i < STAGINGS_MAX; i++)
        if (table[i].id == id)
            return table[i].doomed ? NULL : &table[i];
    return NULL;
}

static int id_taken(uint64_t id) /* under lock */
{
    for (int i = 0; i < STAGINGS_MAX; i++)
        if (table[i].id == id)
            return 1;
    return 0;
}

CUresult gw_graph_source_staging(gw_call *c, uint64_t id, uint64_t n, CUcontext ctx, CUdeviceptr *dptr)
{
    if (!id || !n || n > STAGING_MAX) {
        gw_call_fail(c, "%s: a host source's staging id %llu of %llu bytes (1 to %llu allowed)", gw_op_name(c->h.op),
                     (unsigned long long)id, (unsigned long long)n, (unsigned long long)STAGING_MAX);
        return CUDA_ERROR_INVALID_VALUE;
    }
    pthread_mutex_lock(&lock);
    int reused = id_taken(id);
    staging *slot = NULL;
    for (int i = 0; !reused && !slot && i < STAGINGS_MAX; i++)
        if (!table[i].id)
            slot = &table[i];
    if (slot)
        slot->id = id; /* claimed: the allocation below fills it in */
    pthread_mutex_unlock(&lock);
    if (reused) {
        gw_call_fail(c, "%s: staging id %llu is in use", gw_op_name(c->h.op), (unsigned long long)id);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (!slot) {
        gw_wlog("%s: more than %d graph host sources at once", gw_op_name(c->h.op), STAGINGS_MAX);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    alloc_fn alloc = (alloc_fn)gw_driver_sym(GW_OP_cuMemAlloc_v2); /* the session's memory cap counts it */
    ctx_push_fn push = (ctx_push_fn)gw_driver_sym(GW_OP_cuCtxPushCurrent_v2);
    ctx_pop_fn pop = (ctx_pop_fn)gw_driver_sym(GW_OP_cuCtxPopCurrent_v2);
    mode_fn mode = (mode_fn)gw_driver_sym(GW_OP_cuThreadExchangeStreamCaptureMode);
    int pushed = ctx && push && pop && push(ctx) == CUDA_SUCCESS; /* in the node's context */
    /* the node may go into a graph being captured on this thread (cuStreamGetCaptureInfo's):
     * an allocation is allowed there only in the relaxed mode */
    CUstreamCaptureMode m = CU_STREAM_CAPTURE_MODE_RELAXED;
    if (mode)
        mode(&m);
    CUdeviceptr d = 0;
    CUresult r = alloc ? alloc(&d, (size_t)n) : CUDA_ERROR_NOT_SUPPORTED;
    if (mode)
        mode(&m);
    if (pushed) {
        CUcontext was;
        pop(&was);
    }
    pthread_mutex_lock(&lock);
    if (r == CUDA_SUCCESS) {
        slot->dptr = d;
        slot->n = n;
    } else {
        slot->id = 0;
    }
    pthread_mutex_unlock(&lock);
    *dptr = d;
    return r;
}

/* The staging of an id whose node was never made (the driver refused it). */
void gw_graph_source_unused(uint64_t id)
{
    pthread_mutex_lock(&lock);
    staging *s = find(id);
    CUdeviceptr d = s ? s->dptr : 0;
    if (s)
        *s = (staging){0};
    pthread_mutex_unlock(&lock);
    if (d)
        staging_free(d);
}

/* STAGING_FILL (codegen/protocol.txt) */
void gw_op_staging_fill(gw_call *c)
{
    gw_staging_fill_req q = {0};
    CUstream s = NULL;
    if (gw_in_fields(c, GW_STAGING_FILL_REQ_SIZE, gw_staging_fill_req_get(gw_in_next(c), gw_in_left(c), &q)))
        s = (CUstream)gw_handle_lookup(c, GW_HT_CUstream, q.stream);
    size_t n = gw_in_left(c);
    const void *bytes = gw_in_view(c, n);
    if (!c->bad && (q.flags & ~1u))
        gw_call_fail(c, "STAGING_FILL: flags %#x", q.flags);
    if (!c->bad && !n)
        gw_call_fail(c, "STAGING_FILL: no bytes");
    if (!gw_args_ok(c))
        return;
    fill_fn fill = (fill_fn)gw_driver_sym(q.flags & 1 ? GW_OP_cuMemcpyHtoDAsync_v2_ptsz : GW_OP_cuMemcpyHtoDAsync_v2);
    pthread_mutex_lock(&lock);
    staging *st = find(q.staging);
    uint64_t have = st ? st->n : 0;
    int inside = st && st->dptr && q.offset <= st->n && n <= st->n - q.offset;
    CUdeviceptr to = inside ? st->dptr + q.offset : 0;
    if (inside)
        st->busy++; /* a free meanwhile waits for this copy to be queued */
    pthread_mutex_unlock(&lock);
    if (!st || !have) {
        gw_call_fail(c, "STAGING_FILL: unknown staging %llu", (unsigned long long)q.staging);
        return;
    }
    if (!inside) {
        gw_call_fail(c, "STAGING_FILL: %zu bytes at %llu pass the end of staging %llu (%llu bytes)", n,
                     (unsigned long long)q.offset, (unsigned long long)q.staging, (unsigned long long)have);
        return;
    }
    /* from pageable memory the driver may wait here for the stream: no lock held */
    CUresult r = fill ? fill(to, bytes, n, s) : CUDA_ERROR_NOT_SUPPORTED;
    pthread_mutex_lock(&lock);
    st->busy--;
    CUdeviceptr gone = st->doomed && !st->busy ? st->dptr : 0;
    if (gone)
        *st = (staging){0};
    pthread_mutex_unlock(&lock);
    if (gone)
        staging_free(gone); /* the driver's free waits for the copy */
    gw_reply_result(c, r);
}

/* STAGING_FREE */
void gw_op_staging_free(gw_call *c)
{
    gw_staging_free_req q = {0};
    gw_in_fields(c, GW_STAGING_FREE_REQ_SIZE, gw_staging_free_req_get(gw_in_next(c), gw_in_left(c), &q));
    if (!gw_args_ok(c))
        return;
    pthread_mutex_lock(&lock);
    staging *st = find(q.staging);
    CUdeviceptr d = st ? st->dptr : 0;
    int later = st && d && st->busy; /* a fill is queuing its copy: it frees the staging after */
    if (later)
        st->doomed = 1;
    else if (st && d)
        *st = (staging){0};
    pthread_mutex_unlock(&lock);
    if (!d) {
        gw_call_fail(c, "STAGING_FREE: unknown staging %llu", (unsigned long long)q.staging);
        return;
    }
    gw_reply_result(c, later ? CUDA_SUCCESS : staging_free(d));
}
