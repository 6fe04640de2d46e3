/* Deliveries: asynchronous device-to-host copies into pinned memory, without
 * a wait. The copy is posted (GW_OP_DELIVER) and its bytes arrive later as
 * GW_OP_DELIVERED frames, which the worker sends before the reply of any call
 * that could see the copy done (docs/protocol.md). The reply reader hands
 * them here (a pushed frame) and they go straight into the application's
 * buffer. A copy made during a stream capture is delivered again at every
 * replay of its graph, so its record stays until its memory is freed. A
 * large copy's pieces may come on the lanes instead (wire/lanes.c hands them
 * here); a marker on the session's connection then holds its reader until
 * they have all landed.
 * (GPUWIRE_LANDINGS and the "landings" figures of GPUWIRE_STATS keep their
 * earlier name.) */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../diag/env.h"
#include "state.h"

typedef struct delivery {
    struct delivery *next;
    uint64_t id;
    uint8_t *dst;
    uint64_t n, got;
    int persistent;
    int server;      /* several servers: whose worker delivers it (only that one may) */
    uint64_t stream; /* the copy's stream, synchronized to settle it on a later server */
    int lanes;       /* its bytes may come on the lanes (DELIVER flags 2) */
} delivery;

static delivery *deliveries; /* under lock */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ullong next_id = 1;

int gw_deliveries_on(void)
{
    static int on = -1;
    if (on < 0) {
        int v = 1;
        gw_env_bool("GPUWIRE_LANDINGS", "using the default, on", &v);
        on = v;
    }
    return on; /* several servers: each server's own, over its session or link (wire/servers.c) */
}

/* Bytes of copies posted and not delivered yet: past this the next copy first
 * synchronizes (reading what was delivered), so the server never holds more than the
 * half of its budget a well-behaved client may use (worker/deliveries.c). */
#define PENDING_MAX ((uint64_t)4 << 30)

static uint64_t pending_bytes; /* under lock: what non-persistent deliveries still await */

/* The smallest copy whose bytes may come on the lanes: more than one piece
 * by default; GPUWIRE_LANE_DELIVERY_MIN (bytes) lower for an A/B (a copy of
 * one piece or less is then split among the lanes by the worker). */
static uint64_t lane_delivery_min(void)
{
    static unsigned long long min;
    if (!min) {
        unsigned long long v = (unsigned long long)GW_COPY_CHUNK + 1;
        gw_env_int("GPUWIRE_LANE_DELIVERY_MIN", 4096, (unsigned long long)1 << 32, "using the default, 4 MiB + 1", &v);
        min = v;
    }
    return min;
}

CUresult gw_deliver(int ptsz, void *dst, CUdeviceptr src, size_t n, CUstream s)
{
    pthread_mutex_lock(&lock);
    int over = pending_bytes + n > PENDING_MAX;
    pthread_mutex_unlock(&lock);
    if (over) {
        CUresult rc = cuCtxSynchronize();
        if (rc != CUDA_SUCCESS)
            return rc;
    }
    delivery *l = malloc(sizeof *l);
    if (!l)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *l = (delivery){.id = atomic_fetch_add(&next_id, 1), .dst = dst, .n = n, .persistent = gw_captures_active(),
                    .server = gw_route_now(), .stream = (uint64_t)(uintptr_t)s};
    l->lanes = n >= lane_delivery_min() && !l->persistent && gw_lanes_receiving();
    pthread_mutex_lock(&lock);
    l->next = deliveries;
    deliveries = l;
    if (!l->persistent)
        pending_bytes += n;
    pthread_mutex_unlock(&lock);
    gw_req *q = gw_req_begin(GW_OP_DELIVER);
    gw_put_fields(q, gw_deliver_req,
                  {.delivery = l->id, .src = src, .n = n, .stream = (uint64_t)(uintptr_t)s,
                   .flags = (ptsz ? 1u : 0u) | (l->lanes ? 2u : 0u)});
    CUresult rc = gw_req_post(q);
    if (rc == CUDA_SUCCESS)
        gw_stat_delivery(n, 0);
    if (rc != CUDA_SUCCESS) {
        uint64_t id = l->id;
        pthread_mutex_lock(&lock);
        for (delivery **pp = &deliveries; *pp; pp = &(*pp)->next)
            if ((*pp)->id == id) {
                delivery *dead = *pp;
                *pp = dead->next;
                if (!dead->persistent)
                    pending_bytes -= dead->n - dead->got;
                free(dead);
                break;
            }
        pthread_mutex_unlock(&lock);
    }
    return rc;
}

/* A graph memcpy node into this process's memory: its bytes are delivered
 * at every launch of the graph (the worker's host node after the copy), so
 * the record stays, like a captured copy's. The id, or 0 if out of memory. */
uint64_t gw_delivery_for_node(void *dst, uint64_t n)
{
    delivery *l = malloc(sizeof *l);
    if (!l)
        return 0;
    *l = (delivery){.id = atomic_fetch_add(&next_id, 1), .dst = dst, .n = n, .persistent = 1,
                    .server = gw_route_now()};
    pthread_mutex_lock(&lock);
    l->next = deliveries;
    deliveries = l;
    pthread_mutex_unlock(&lock);
    return l->id;
}

static void *delivery_target_from(int from, uint64_t id, uint64_t off, uint64_t len)
{
    void *dst = NULL;
    pthread_mutex_lock(&lock);
    for (delivery *l = deliveries; l; l = l->next)
        if (l->id == id) {
            /* only inside the copy it asked for, and only from the server asked */
            if (off <= l->n && len <= l->n - off && l->server == from)
                dst = l->dst + off;
            break;
        }
    pthread_mutex_unlock(&lock);
    return dst;
}

static void *delivery_target(uint64_t id, uint64_t off, uint64_t len)
{
    return delivery_target_from(gw_pushed_server() /* 0 with one server */, id, off, len);
}

static pthread_cond_t landed_cv = PTHREAD_COND_INITIALIZER; /* a delivery's bytes came, or the lanes broke */
static int lanes_broken;                                     /* under lock */

static void gw_delivered(uint64_t id, uint64_t len)
{
    pthread_mutex_lock(&lock);
    pthread_cond_broadcast(&landed_cv);
    for (delivery **pp = &deliveries; *pp; pp = &(*pp)->next) {
        delivery *l = *pp;
        if (l->id != id)
            continue;
        l->got += len;
        if (!l->persistent)
            pending_bytes -= len;
        if (l->got >= l->n) {
            if (l->persistent) {
                l->got = 0; /* the next replay delivers it again */
            } else {
                *pp = l->next;
                free(l);
            }
        }
        break;
    }
    pthread_mutex_unlock(&lock);
}

void gw_deliveries_forget(uint64_t base, uint64_t size)
{
    /* copies still on their way into this memory arrive first, as freeing pinned
     * memory waits for the GPU natively: the reader then never writes into it */
    gw_deliveries_settle(base, size);
    pthread_mutex_lock(&lock);
    for (delivery **pp = &deliveries; *pp;) {
        delivery *l = *pp;
        uint64_t a = (uint64_t)(uintptr_t)l->dst;
        if (a >= base && a - base < size) {
            *pp = l->next;
            if (!l->persistent)
                pending_bytes -= l->n - l->got;
            free(l);
        } else {
            pp = &l->next;
        }
    }
    pthread_mutex_unlock(&lock);
}

/* A copy still on its way into [addr, addr + n): 1 and its server and stream, else 0. */
static int deliveries_pending_in(uint64_t addr, uint64_t n, int *server, uint64_t *stream)
{
    int pending = 0;
    pthread_mutex_lock(&lock);
    for (delivery *l = pending_bytes ? deliveries : NULL; l && !pending; l = l->next) {
        uint64_t a = (uint64_t)(uintptr_t)l->dst;
        pending = !l->persistent && a < addr + n && addr < a + l->n;
        if (pending)
            *server = l->server, *stream = l->stream;
    }
    pthread_mutex_unlock(&lock);
    return pending;
}

CUresult gw_deliveries_settle(uint64_t addr, uint64_t n)
{
    /* the application may send these bytes on in stream order, after the copy that
     * delivers them: natively the GPU reads them after that copy wrote them */
    int server;
    uint64_t stream;
    unsigned synced = 0; /* servers synchronized: each at most once */
    CUresult rc = CUDA_SUCCESS;
    while (rc == CUDA_SUCCESS && deliveries_pending_in(addr, n, &server, &stream) && !(synced >> server & 1u)) {
        synced |= 1u << server;
        gw_stat_delivery(0, 1);
        if (server == 0) {
            rc = cuCtxSynchronize(); /* its reply comes after every delivery queued before it */
        } else {
            /* a later server: the copy's own stream there (the calling thread's
             * context may be another server's); its reply follows the bytes */
            int prev = gw_route_enter(server);
            rc = cuStreamSynchronize((CUstream)(uintptr_t)stream);
            gw_route_leave(prev);
        }
    }
    return rc;
}

/* A DELIVERED frame read off a lane (wire/lanes.c), its fields and bytes still on fd: landed like one on
 * the session's connection (only server 0 has lanes); -1 if fd broke or the frame is malformed. */
static int lane_piece(int fd, uint32_t len)
{
    uint8_t head[GW_DELIVERED_REQ_SIZE];
    gw_delivered_req d;
    if (gw_io_read_all(fd, head, sizeof head, -1) || !gw_delivered_req_get(head, sizeof head, &d))
        return -1;
    size_t n = len - sizeof head; /* the lane's reader passes no frame shorter than its fields */
    if (!n)
        return -1;
    uint8_t *dst = delivery_target_from(0, d.delivery, d.offset, n);
    if (dst) {
        if (gw_io_read_all(fd, dst, n, -1))
            return -1;
        gw_delivered(d.delivery, n);
        return 0;
    }
    uint8_t scrap[16384]; /* a piece nobody waits for any more is dropped */
    for (size_t k; n; n -= k) {
        k = n < sizeof scrap ? n : sizeof scrap;
        if (gw_io_read_all(fd, scrap, k, -1))
            return -1;
    }
    return 0;
}

static void lanes_lost(void)
{
    pthread_mutex_lock(&lock);
    lanes_broken = 1;
    pthread_cond_broadcast(&landed_cv);
    pthread_mutex_unlock(&lock);
}

/* The marker of a delivery whose pieces travel on the lanes: this reader goes
 * on (to the reply behind it) once every byte landed; -1 if the lanes broke,
 * if that copy did not ask for the lanes (it would wait for nothing), or if
 * none of its bytes landed for LANE_PIECES_STALL_S (the pieces are on their
 * way already: a minute without one is a broken server, not a slow GPU). */
#define LANE_PIECES_STALL_S 60
static int wait_for_lane_pieces(uint64_t id)
{
    int asked = 1, stalled = 0, done = 0;
    uint64_t last_got = UINT64_MAX;
    struct timespec until = {0};
    pthread_mutex_lock(&lock);
    for (;;) {
        delivery *l = deliveries;
        while (l && l->id != id)
            l = l->next;
        asked = !l || l->lanes;
        done = !l || (asked && l->got >= l->n); /* landed, or its memory freed meanwhile */
        if (done || !asked || lanes_broken || stalled)
            break;
        if (l->got != last_got) { /* progress: the bound starts again */
            last_got = l->got;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += LANE_PIECES_STALL_S;
        }
        stalled = pthread_cond_timedwait(&landed_cv, &lock, &until) == ETIMEDOUT;
    }
    int rc = done ? 0 : -1;
    stalled = stalled && !done && asked && !lanes_broken;
    pthread_mutex_unlock(&lock);
    if (stalled)
        gw_log("delivery %llu: its pieces on the lanes stopped arriving (%d s without one): the session is lost",
               (unsigned long long)id, LANE_PIECES_STALL_S);
    else if (!asked)
        gw_log("delivery %llu: the server sent its bytes on the lanes unasked: the session is lost",
               (unsigned long long)id);
    return rc;
}

/* A GW_OP_DELIVERED frame (pushed.c): u64 delivery id, u64 offset, then the
 * bytes, read straight into place; a piece nobody waits for any more is dropped.
 * Offset 2^64-1 and no bytes: the copy's pieces come on the lanes (worker's choice). */
static int delivered_frame(uint32_t len)
{
    uint8_t head[GW_DELIVERED_REQ_SIZE];
    gw_delivered_req d;
    if (gw_pushed_read(head, sizeof head) || !gw_delivered_req_get(head, sizeof head, &d))
        return -1;
    size_t n = len - sizeof head; /* the registry passes no frame shorter than its fields */
    if (d.offset == UINT64_MAX)
        return n == 0 && gw_pushed_server() == 0 ? wait_for_lane_pieces(d.delivery) : -1;
    uint8_t *dst = delivery_target(d.delivery, d.offset, n);
    if (dst ? gw_pushed_read(dst, n) : gw_pushed_discard(n))
        return -1;
    if (dst)
        gw_delivered(d.delivery, n);
    return 0;
}

__attribute__((constructor)) static void deliveries_init(void)
{
    gw_on_pushed(GW_OP_DELIVERED, delivered_frame);
    gw_lanes_on_delivered(lane_piece, lanes_lost);
}
