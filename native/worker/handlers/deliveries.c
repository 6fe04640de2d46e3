/* Deliveries: asynchronous device-to-host copies into the client's pinned
 * memory, without a wait (GW_OP_DELIVER). The worker copies into pinned
 * staging of its own on the application's stream and queues a host function
 * behind the copy; when the stream reaches it, the staging joins an outbox
 * (no copy: it returns to the pool once sent; a graph's delivery is copied,
 * since the next launch writes its staging again).
 * Every reply the worker sends is preceded by what the outbox holds
 * (GW_OP_DELIVERED frames), so the bytes are in the client's buffer before
 * any synchronize, query or later copy that can see the copy done returns
 * there. Inside a stream capture both calls are
 * captured: each replay of the graph delivers the bytes again.
 *
 * By default an uncaptured copy records an event instead of queueing a host
 * function (issue 20: a host function's wake-up is paid by every delivered
 * copy, and the stream's synchronize waits for it; llama.cpp's logits are one
 * a token: +3 to +10% tokens/s in six A/B rounds on an H100), and the bytes
 * leave staging when a reply is about to be sent and the event says the copy
 * is done: no reply that can see the copy done goes before them.
 * GPUWIRE_DELIVERIES=hostfn in the server's environment keeps host functions.
 * A copy of 1 MiB or more is staged in the lanes' page-locked piece buffers
 * where free; one of more than a piece, for a client whose lanes read
 * deliveries, goes back on the lanes (send_on_lanes).
 * A host function the client runs in stream order may read them, and it runs
 * where CUDA cannot be called (no event can be asked there): the first host
 * call of a session waits for the copies pending so and goes back to host
 * functions for good. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"

#define DELIVERY_MAX ((uint64_t)1 << 32) /* one copy, at most */
#define POOL_BYTES ((size_t)256 << 20) /* staging kept for reuse */
#define POOL_SLOTS 32

typedef struct delivery {
    uint64_t id;
    void *staging;
    size_t n;
    int persistent; /* captured into a graph: delivered at every replay, staging kept */
} delivery;

/* A copy of this size or more is staged in the lanes' page-locked piece
 * buffers (core/pinned.c), one copy per buffer, as far as free ones go: they
 * are made before the session's first large copies, where a staging buffer
 * of the copy's size was allocated inside the application's copy, between
 * the events it times (simpleMultiCopy's 16 MiB read back at 2 GB/s). */
#define CHUNKED_MIN ((size_t)1 << 20)
#define CHUNKS_MAX 16

/* a copy completed by an event (the default), sent from staging */
typedef struct pending {
    struct pending *next;
    uint64_t id;
    void *staging; /* the bytes past the chunks, or NULL */
    size_t n;
    CUevent ev;
    unsigned nchunks;
    void *chunk[CHUNKS_MAX]; /* piece buffers holding the copy's first GW_COPY_CHUNK-sized parts */
    int lanes_ok;            /* the client reads deliveries on its lanes (DELIVER flags 2) */
} pending;

/* A delivery's pieces on the lanes: its buffers go back once the last is written. */
typedef struct sendout {
    atomic_int left;
    void *staging;
    size_t staging_n;
    unsigned nchunks;
    void *chunk[CHUNKS_MAX];
} sendout;

/* Bytes waiting to be sent: a copy of their own (a graph's delivery: its
 * staging is written again at the next launch), or the staging itself, which
 * goes back to the pool once sent (no copy on the stream's host function:
 * llama-server's logits are 2 MB a step). */
typedef struct parcel {
    struct parcel *next;
    uint64_t id;
    size_t n;
    const uint8_t *bytes;
    void *staging; /* to give back after sending, or NULL */
    uint8_t own[];
} parcel;

/* Server memory a session's deliveries may hold (staging in flight plus bytes
 * waiting in the outbox): a client that posts copies without ever
 * synchronizing cannot fill the host (gpuwire's client synchronizes first at
 * half of this, so only a hostile one meets it). */
#define DELIVERY_BUDGET ((uint64_t)8 << 30)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pending *pendings; /* under lock */
static unsigned long long chunked_count; /* copies staged in piece buffers, under lock */
static unsigned long long lanes_sent;    /* copies whose bytes went on the lanes, under lock */
static int events_mode = -1; /* on unless GPUWIRE_DELIVERIES=hostfn, until the session's first host call */

typedef CUresult (*event_create_fn)(CUevent *, unsigned);
typedef CUresult (*event_fn)(CUevent);
typedef CUresult (*event_record_fn)(CUevent, CUstream);

static int use_events(void)
{
    if (events_mode < 0) {
        const char *v = getenv("GPUWIRE_DELIVERIES");
        events_mode = !(v && !strcmp(v, "hostfn"));
    }
    return events_mode;
}
static parcel *outbox, **outbox_end = &outbox; /* under lock */
static uint64_t held;                           /* staging in flight + outbox bytes, under lock */
static struct { void *p; size_t n; } pool[POOL_SLOTS], doomed[POOL_SLOTS]; /* under lock */
static size_t pool_bytes;

typedef CUresult (*alloc_fn)(void **, size_t, unsigned);
typedef CUresult (*free_fn)(void *);
typedef CUresult (*copy_fn)(void *, CUdeviceptr, size_t, CUstream);
typedef CUresult (*hostfn_fn)(CUstream, CUhostFn, void *);
typedef CUresult (*capturing_fn)(CUstream, CUstreamCaptureStatus *);
typedef CUresult (*mode_fn)(CUstreamCaptureMode *);

/* Staging of at least n bytes: from the pool, else new (the calling thread may be capturing). */
static void *staging_take(size_t n)
{
    pthread_mutex_lock(&lock);
    int best = -1;
    for (int i = 0; i < POOL_SLOTS; i++)
        if (pool[i].p && pool[i].n >= n && (best < 0 || pool[i].n < pool[best].n))
            best = i;
    void *p = NULL;
    if (best >= 0) {
        p = pool[best].p;
        pool_bytes -= pool[best].n;
        pool[best].p = NULL;
    }
    /* buffers the pool could not keep are freed here, where CUDA may be called */
    void *drop[POOL_SLOTS];
    int ndrop = 0;
    for (int i = 0; i < POOL_SLOTS; i++)
        if (doomed[i].p) {
            drop[ndrop++] = doomed[i].p;
            doomed[i].p = NULL;
        }
    pthread_mutex_unlock(&lock);
    if (p && !ndrop)
        return p;
    /* host allocations are no stream work: this thread may be capturing (in the
     * global mode they would end the capture), so it asks in the relaxed mode */
    mode_fn mode = (mode_fn)gw_driver_sym(GW_OP_cuThreadExchangeStreamCaptureMode);
    CUstreamCaptureMode m = CU_STREAM_CAPTURE_MODE_RELAXED;
    if (mode)
        mode(&m);
    free_fn fr = (free_fn)gw_driver_sym(GW_OP_cuMemFreeHost);
    for (int i = 0; i < ndrop && fr; i++)
        fr(drop[i]);
    alloc_fn al = (alloc_fn)gw_driver_sym(GW_OP_cuMemHostAlloc);
    if (!p && (!al || al(&p, n, 0) != CUDA_SUCCESS))
        p = NULL;
    if (mode)
        mode(&m);
    return p;
}

/* Back to the pool, or to be freed later: called from a host function, where CUDA must not be called. */
static void staging_give(void *p, size_t n)
{
    pthread_mutex_lock(&lock);
    int done = 0;
    for (int i = 0; i < POOL_SLOTS && !done && pool_bytes + n <= POOL_BYTES; i++)
        if (!pool[i].p) {
            pool[i].p = p;
            pool[i].n = n;
            pool_bytes += n;
            done = 1;
        }
    for (int i = 0; i < POOL_SLOTS && !done; i++)
        if (!doomed[i].p) {
            doomed[i].p = p;
            doomed[i].n = n;
            done = 1;
        }
    pthread_mutex_unlock(&lock);
    (void)done; /* no slot at all: the buffer is kept until the process ends */
}

/* The host function behind the copy: the stream has reached it, the bytes are in staging. */
static void CUDA_CB arrived(void *arg)
{
    delivery *l = arg;
    GW_TL('H', 0, (uint32_t)l->id, 0);
    parcel *pc = malloc(sizeof *pc + (l->persistent ? l->n : 0));
    if (pc) {
        pc->next = NULL;
        pc->id = l->id;
        pc->n = l->n;
        if (l->persistent) {
            memcpy(pc->own, l->staging, l->n);
            pc->bytes = pc->own;
            pc->staging = NULL;
        } else { /* the staging is the parcel's now: held until sent */
            pc->bytes = l->staging;
            pc->staging = l->staging;
        }
        pthread_mutex_lock(&lock);
        *outbox_end = pc;
        outbox_end = &pc->next;
        if (l->persistent)
            held += l->n;
        pthread_mutex_unlock(&lock);
    } else {
        gw_wlog("out of memory for %zu landed bytes: the client's copy %llu stays unfilled", l->n,
                (unsigned long long)l->id);
        if (!l->persistent) {
            staging_give(l->staging, l->n);
            pthread_mutex_lock(&lock);
            held -= l->n;
            pthread_mutex_unlock(&lock);
        }
    }
    if (!l->persistent)
        free(l);
}

/* Whether n more bytes fit the budget (the client keeps well inside it by
 * synchronizing first; one that does not gets CUDA_ERROR_OUT_OF_MEMORY). */
static int fits(size_t n)
{
    pthread_mutex_lock(&lock);
    int ok = held + n <= DELIVERY_BUDGET;
    pthread_mutex_unlock(&lock);
    return ok;
}

static void pending_add(pending *pd)
{
    pthread_mutex_lock(&lock);
    pd->next = pendings;
    pendings = pd;
    pthread_mutex_unlock(&lock);
}

/* An uncaptured copy of CHUNKED_MIN or more, completed by an event: its first
 * parts go into free piece buffers, the rest into staging. 0 if no piece
 * buffer is free (or no event can be made): the caller stages it whole;
 * else the call is answered. */
static int deliver_chunked(gw_call *c, uint64_t id, uint64_t src, uint64_t n, CUstream s, int ptsz, int lanes_ok)
{
    gw_pinned_prepare(); /* a session's first: the buffers are made for the next ones */
    copy_fn copy = (copy_fn)gw_driver_sym(ptsz ? GW_OP_cuMemcpyDtoHAsync_v2_ptsz : GW_OP_cuMemcpyDtoHAsync_v2);
    event_create_fn create = (event_create_fn)gw_driver_sym(GW_OP_cuEventCreate);
    event_record_fn record = (event_record_fn)gw_driver_sym(ptsz ? GW_OP_cuEventRecord_ptsz : GW_OP_cuEventRecord);
    event_fn destroy = (event_fn)gw_driver_sym(GW_OP_cuEventDestroy_v2);
    typedef CUresult (*sync_fn)(CUstream);
    sync_fn sync = (sync_fn)gw_driver_sym(ptsz ? GW_OP_cuStreamSynchronize_ptsz : GW_OP_cuStreamSynchronize);
    pending *pd = calloc(1, sizeof *pd);
    if (!pd || !copy || !create || !record || !destroy || !sync) {
        free(pd);
        return 0;
    }
    while (pd->nchunks < CHUNKS_MAX && (uint64_t)pd->nchunks * GW_COPY_CHUNK < n &&
           (pd->chunk[pd->nchunks] = gw_pinned_take_locked_chunk(ptsz && !s ? CU_STREAM_PER_THREAD : s)))
        pd->nchunks++;
    uint64_t head = (uint64_t)pd->nchunks * GW_COPY_CHUNK < n ? (uint64_t)pd->nchunks * GW_COPY_CHUNK : n;
    if (n > head && pd->nchunks)
        pd->staging = staging_take((size_t)(n - head));
    if (!pd->nchunks || (n > head && !pd->staging) || create(&pd->ev, CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS) {
        for (unsigned i = 0; i < pd->nchunks; i++)
            gw_pinned_give(pd->chunk[i]);
        if (pd->staging)
            staging_give(pd->staging, (size_t)(n - head));
        free(pd);
        return 0; /* staged whole, as without piece buffers */
    }
    CUresult r = CUDA_SUCCESS;
    {
        for (unsigned i = 0; r == CUDA_SUCCESS && i < pd->nchunks; i++) {
            uint64_t off = (uint64_t)i * GW_COPY_CHUNK;
            r = copy(pd->chunk[i], (CUdeviceptr)(src + off), (size_t)(n - off < GW_COPY_CHUNK ? n - off : GW_COPY_CHUNK), s);
        }
        if (r == CUDA_SUCCESS && pd->staging)
            r = copy(pd->staging, (CUdeviceptr)(src + head), (size_t)(n - head), s);
        if (r == CUDA_SUCCESS)
            r = record(pd->ev, s);
        if (r != CUDA_SUCCESS) {
            sync(s); /* parts queued before the failure write their buffers: they finish first */
            destroy(pd->ev);
        }
    }
    if (r != CUDA_SUCCESS) {
        for (unsigned i = 0; i < pd->nchunks; i++)
            gw_pinned_give(pd->chunk[i]);
        if (pd->staging)
            staging_give(pd->staging, (size_t)(n - head));
        free(pd);
        gw_reply_result(c, r);
        return 1;
    }
    pd->id = id;
    pd->n = (size_t)n;
    pd->lanes_ok = lanes_ok;
    pthread_mutex_lock(&lock);
    held += n;
    chunked_count++;
    pthread_mutex_unlock(&lock);
    pending_add(pd);
    gw_reply_result(c, CUDA_SUCCESS);
    return 1;
}

void gw_op_deliver(gw_call *c)
{
    gw_deliver_req q = {0};
    CUstream s = NULL;
    if (gw_in_fields(c, GW_DELIVER_REQ_SIZE, gw_deliver_req_get(gw_in_next(c), gw_in_left(c), &q)))
        s = (CUstream)gw_handle_lookup(c, GW_HT_CUstream, q.stream);
    uint64_t id = q.delivery, src = q.src, n = q.n;
    uint32_t flags = q.flags;
    if (!c->bad && (n == 0 || n > DELIVERY_MAX || (flags & ~3u)))
        gw_call_fail(c, "LAND: %llu bytes (1 to %llu allowed), flags %#x", (unsigned long long)n,
                     (unsigned long long)DELIVERY_MAX, flags);
    if (!gw_args_ok(c))
        return;
    int ptsz = flags & 1, lanes_ok = (flags & 2) != 0;
    copy_fn copy = (copy_fn)gw_driver_sym(ptsz ? GW_OP_cuMemcpyDtoHAsync_v2_ptsz : GW_OP_cuMemcpyDtoHAsync_v2);
    hostfn_fn hostfn = (hostfn_fn)gw_driver_sym(ptsz ? GW_OP_cuLaunchHostFunc_ptsz : GW_OP_cuLaunchHostFunc);
    capturing_fn capturing =
        (capturing_fn)gw_driver_sym(ptsz ? GW_OP_cuStreamIsCapturing_ptsz : GW_OP_cuStreamIsCapturing);
    if (!copy || !hostfn) {
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
        return;
    }
    CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
    if (capturing)
        capturing(s, &st);
    if (!fits((size_t)n)) {
        gw_wlog("LAND: copy %llu of %llu bytes would pass the %llu bytes landings may hold", (unsigned long long)id,
                (unsigned long long)n, (unsigned long long)DELIVERY_BUDGET);
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
        return;
    }
    if (st != CU_STREAM_CAPTURE_STATUS_ACTIVE && n >= CHUNKED_MIN && use_events() && deliver_chunked(c, id, src, n, s, ptsz, lanes_ok))
        return;
    delivery *l = malloc(sizeof *l);
    void *staging = l ? staging_take((size_t)n) : NULL;
    if (!staging) {
        free(l);
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
        return;
    }
    CUresult r = copy(staging, (CUdeviceptr)src, (size_t)n, s);
    if (r != CUDA_SUCCESS) {
        staging_give(staging, (size_t)n);
        free(l);
        gw_reply_result(c, r);
        return;
    }
    *l = (delivery){id, staging, (size_t)n, st == CU_STREAM_CAPTURE_STATUS_ACTIVE};
    if (!l->persistent) {
        pthread_mutex_lock(&lock);
        held += n;
        pthread_mutex_unlock(&lock);
    }
    if (!l->persistent && use_events()) {
        event_create_fn create = (event_create_fn)gw_driver_sym(GW_OP_cuEventCreate);
        event_record_fn record = (event_record_fn)gw_driver_sym(ptsz ? GW_OP_cuEventRecord_ptsz : GW_OP_cuEventRecord);
        event_fn destroy = (event_fn)gw_driver_sym(GW_OP_cuEventDestroy_v2);
        pending *pd = malloc(sizeof *pd);
        CUevent ev = NULL;
        if (pd && create && record && destroy && create(&ev, CU_EVENT_DISABLE_TIMING) == CUDA_SUCCESS) {
            if (record(ev, s) == CUDA_SUCCESS) {
                *pd = (pending){NULL, id, staging, (size_t)n, ev, 0, {0}, lanes_ok};
                pending_add(pd);
                free(l);
                gw_reply_result(c, CUDA_SUCCESS);
                return;
            }
            destroy(ev);
        }
        free(pd); /* no event: a host function, as without the setting */
    }
    r = hostfn(s, arrived, l);
    if (r != CUDA_SUCCESS) {
        /* the copy may still write the staging: it is not reused (kept until the process ends) */
        gw_wlog("LAND: cannot queue the host function behind copy %llu (%d): it will not land",
                (unsigned long long)id, r);
        free(l);
    }
    gw_reply_result(c, r);
}

/* A graph's device-to-host memcpy node into the client's memory
 * (graph_copies.c): the node copies into staging kept for the graph's life,
 * and a host node after it delivers the bytes as delivery `id` at every launch,
 * as a captured delivery does. *staging_out: where the memcpy node must copy
 * to (NULL if out of memory); then gw_delivery_node adds the host node. */
void *gw_delivery_staging(size_t n)
{
    if (!n || n > DELIVERY_MAX || !fits(n))
        return NULL;
    return staging_take(n);
}

/* Staging of gw_delivery_staging whose memcpy node was never made: back to the pool. */
void gw_delivery_staging_unused(void *staging, size_t n) { staging_give(staging, n); }

CUresult gw_delivery_node(CUgraph g, CUgraphNode copy_node, uint64_t id, void *staging, size_t n)
{
    typedef CUresult (*add_host_fn)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t, const CUDA_HOST_NODE_PARAMS *);
    add_host_fn add = (add_host_fn)gw_driver_sym(GW_OP_cuGraphAddHostNode);
    delivery *l = malloc(sizeof *l);
    if (!add || !l) {
        free(l);
        return add ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_ERROR_NOT_SUPPORTED;
    }
    *l = (delivery){id, staging, n, 1};
    CUDA_HOST_NODE_PARAMS hp = {arrived, l};
    CUgraphNode host = NULL;
    CUresult r = add(&host, g, &copy_node, 1, &hp);
    if (r != CUDA_SUCCESS)
        free(l); /* the staging stays: the memcpy node may still copy into it */
    return r;
}

static void sendout_piece_written(void *arg)
{
    sendout *so = arg;
    if (atomic_fetch_sub(&so->left, 1) != 1)
        return;
    for (unsigned i = 0; i < so->nchunks; i++)
        gw_pinned_give(so->chunk[i]);
    if (so->staging)
        staging_give(so->staging, so->staging_n);
    free(so);
}

/* A done copy, for a client that reads deliveries on its lanes (it asks for
 * copies of more than a piece), with two lanes or more usable: its pieces go on the lanes (each
 * a DELIVERED frame, one lane after another), written by the lanes' threads
 * while this one goes on; then a DELIVERED frame with no bytes at offset
 * 2^64-1 on the session's connection tells the client to wait for them all
 * before it reads on (so before the reply that follows). The buffers go back
 * once the last piece is written. 0: not sent so (the caller sends it here). */
static int send_on_lanes(pending *pd, size_t head)
{
    unsigned usable = pd->lanes_ok ? gw_lanes_usable() : 0;
    if (usable < 2)
        return 0;
    /* a copy in one buffer (one piece or less: a client's GPUWIRE_LANE_DELIVERY_MIN)
     * is split evenly among the lanes; a longer one goes a piece buffer at a time */
    size_t step = GW_COPY_CHUNK;
    if (pd->n <= GW_COPY_CHUNK)
        step = ((pd->n + usable - 1) / usable + 4095) & ~(size_t)4095;
    sendout *so = malloc(sizeof *so);
    if (!so)
        return 0;
    size_t pieces = (pd->n + step - 1) / step;
    *so = (sendout){.staging = pd->staging, .staging_n = pd->n - head, .nchunks = pd->nchunks};
    memcpy(so->chunk, pd->chunk, sizeof so->chunk);
    atomic_init(&so->left, (int)pieces + 1); /* + this thread's hold while it queues them */
    for (size_t off = 0; off < pd->n; off += step) {
        const uint8_t *at = off < head ? (const uint8_t *)pd->chunk[off / GW_COPY_CHUNK] + off % GW_COPY_CHUNK
                                       : (const uint8_t *)pd->staging + (off - head);
        size_t k = pd->n - off < step ? pd->n - off : step;
        if (gw_lane_put_delivery(pd->id, off, at, (uint32_t)k, sendout_piece_written, so)) {
            /* no lane took it (a broken one ends the session on the client's side anyway):
             * on the session's connection, ahead of the marker, where it lands as well */
            uint8_t ph[GW_DELIVERED_REQ_SIZE];
            size_t pl = gw_delivered_req_put(ph, &(gw_delivered_req){.delivery = pd->id, .offset = off});
            gw_push_parts(GW_OP_DELIVERED, ph, pl, at, k);
        }
    }
    uint8_t hd[GW_DELIVERED_REQ_SIZE];
    size_t hl = gw_delivered_req_put(hd, &(gw_delivered_req){.delivery = pd->id, .offset = UINT64_MAX});
    gw_push_parts(GW_OP_DELIVERED, hd, hl, NULL, 0);
    GW_TL('P', 0, (uint32_t)pd->id, 1);
    pthread_mutex_lock(&lock);
    held -= pd->n;
    lanes_sent++;
    pthread_mutex_unlock(&lock);
    sendout_piece_written(so);
    return 1;
}

/* Copies completed by their events, sent now from staging; wait: block until
 * every one is done (the first host call), else only those done already. */
static void send_pending(int wait)
{
    pthread_mutex_lock(&lock);
    pending *list = pendings;
    pendings = NULL;
    pthread_mutex_unlock(&lock);
    if (!list)
        return;
    event_fn query = (event_fn)gw_driver_sym(GW_OP_cuEventQuery);
    event_fn sync = (event_fn)gw_driver_sym(GW_OP_cuEventSynchronize);
    event_fn destroy = (event_fn)gw_driver_sym(GW_OP_cuEventDestroy_v2);
    pending *keep = NULL;
    const size_t piece = GW_MAX_PAYLOAD - GW_DELIVERED_REQ_SIZE;
    while (list) {
        pending *pd = list;
        list = pd->next;
        CUresult r = wait ? sync(pd->ev) : query(pd->ev);
        if (r == CUDA_ERROR_NOT_READY) {
            pd->next = keep;
            keep = pd;
            continue;
        }
        size_t head = pd->nchunks * (size_t)GW_COPY_CHUNK < pd->n ? pd->nchunks * (size_t)GW_COPY_CHUNK : pd->n;
        if (r == CUDA_SUCCESS && send_on_lanes(pd, head)) {
            destroy(pd->ev);
            free(pd);
            continue;
        }
        if (r == CUDA_SUCCESS) {
            for (size_t off = 0; off < pd->n;) {
                /* a piece lies within one chunk, or within the staging */
                const uint8_t *at = off < head ? (const uint8_t *)pd->chunk[off / GW_COPY_CHUNK] + off % GW_COPY_CHUNK
                                               : (const uint8_t *)pd->staging + (off - head);
                size_t end = off < head ? (off / GW_COPY_CHUNK + 1) * (size_t)GW_COPY_CHUNK : pd->n;
                size_t k = (end < pd->n ? end : pd->n) - off;
                k = k < piece ? k : piece;
                uint8_t hd[GW_DELIVERED_REQ_SIZE];
                size_t hl = gw_delivered_req_put(hd, &(gw_delivered_req){.delivery = pd->id, .offset = off});
                gw_push_parts(GW_OP_DELIVERED, hd, hl, at, k);
                off += k;
            }
            GW_TL('P', 0, (uint32_t)pd->id, 0);
        } else /* the context failed: the client's synchronize reports it; the bytes never come */
            gw_wlog("delivery %llu: its copy's event says %d: not delivered", (unsigned long long)pd->id, r);
        destroy(pd->ev);
        if (r == CUDA_SUCCESS) { /* else the copies may still write them: kept */
            for (unsigned i = 0; i < pd->nchunks; i++)
                gw_pinned_give(pd->chunk[i]);
            if (pd->staging)
                staging_give(pd->staging, pd->n - head);
        }
        pthread_mutex_lock(&lock);
        held -= pd->n;
        pthread_mutex_unlock(&lock);
        free(pd);
    }
    if (keep) {
        pthread_mutex_lock(&lock);
        pending **end = &keep;
        while (*end)
            end = &(*end)->next;
        *end = pendings;
        pendings = keep;
        pthread_mutex_unlock(&lock);
    }
}

void gw_deliveries_before_host_call(void)
{
    /* host functions from now on: they may read what was delivered (decided
     * here even before the first delivery, so none after this uses an event) */
    int was = use_events();
    events_mode = 0;
    if (was)
        send_pending(1);
}

int gw_delivery_is_node(CUgraphNode n)
{
    typedef CUresult (*type_fn)(CUgraphNode, CUgraphNodeType *);
    typedef CUresult (*params_fn)(CUgraphNode, CUDA_HOST_NODE_PARAMS *);
    type_fn type = (type_fn)gw_driver_sym(GW_OP_cuGraphNodeGetType);
    params_fn params = (params_fn)gw_driver_sym(GW_OP_cuGraphHostNodeGetParams);
    CUgraphNodeType t;
    CUDA_HOST_NODE_PARAMS p;
    return type && params && type(n, &t) == CUDA_SUCCESS && t == CU_GRAPH_NODE_TYPE_HOST &&
           params(n, &p) == CUDA_SUCCESS && p.fn == arrived;
}

void gw_deliveries_flush(void)
{
    send_pending(0);
    gw_deliveries_flush_outbox();
}

void gw_deliveries_flush_outbox(void)
{
    pthread_mutex_lock(&lock);
    parcel *list = outbox;
    outbox = NULL;
    outbox_end = &outbox;
    pthread_mutex_unlock(&lock);
    const size_t piece = GW_MAX_PAYLOAD - GW_DELIVERED_REQ_SIZE;
    while (list) {
        parcel *pc = list;
        list = pc->next;
        for (size_t off = 0; off < pc->n; off += piece) {
            size_t k = pc->n - off < piece ? pc->n - off : piece;
            uint8_t head[GW_DELIVERED_REQ_SIZE];
            size_t hl = gw_delivered_req_put(head, &(gw_delivered_req){.delivery = pc->id, .offset = off});
            gw_push_parts(GW_OP_DELIVERED, head, hl, pc->bytes + off, k);
        }
        GW_TL('D', 0, (uint32_t)pc->id, 0);
        if (pc->staging)
            staging_give(pc->staging, pc->n);
        pthread_mutex_lock(&lock);
        held -= pc->n;
        pthread_mutex_unlock(&lock);
        free(pc);
    }
}

void gw_deliveries_counts(unsigned long long *chunked, unsigned long long *on_lanes)
{
    pthread_mutex_lock(&lock);
    *chunked = chunked_count;
    *on_lanes = lanes_sent;
    pthread_mutex_unlock(&lock);
}
