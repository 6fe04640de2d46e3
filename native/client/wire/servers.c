/* Several servers in one client (servers.h; docs/multi-gpu.md): the
 * sessions of servers 1.. (server 0's is session.c's), their devices joined
 * into one list with the client's CUDA_VISIBLE_DEVICES applied to it, the
 * route of each request, and the transport of servers 1..: one connection
 * each, frames written in seq order under the link's send lock, and one
 * exchange at a time reading it (a call's reply read by the thread that waits
 * for it, else the drainer). Posted frames are batched per link (below);
 * no copy lanes. Delivered copies' bytes come as pushed frames before the
 * reply that could see them done (state/deliveries.c), and mapped memory's
 * pages go to and come from their range's server (state/mapped.c), as on
 * server 0. Host functions on a link's streams run as server 0's do
 * (state/host_calls.c): whoever reads the link queues the HOST_CALL, and the
 * answer takes the send lock only, so it passes a caller that holds the
 * exchange for a synchronize waiting on that very function.
 *
 * A link that fails (the server went away) fails every later request routed
 * to it with CUDA_ERROR_DEVICE_UNAVAILABLE, as server 0's connection does;
 * the other servers go on. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../common/idmap.h"
#include "../diag/env.h"
#include "../../generated/gw_ops.h"
#include "pushed_pump.h"
#include "stream.h"
#include "tls.h"

/* Lock order: exchange, then send. Posts (HOST_RETURNED among them) take
 * send alone; a call or burst holds exchange from its first write to its
 * last reply, so no other thread reads a reply it waits for. */
typedef struct srv_link {
    char spec[300];
    int fd;
    pthread_mutex_t exchange; /* the one reader: a call, a burst, or the drainer */
    pthread_mutex_t send;     /* each frame whole and in seq order */
    uint32_t seq;             /* under send */
    atomic_int lost;
    gw_hello_ok info;
    uint8_t *frame; /* a pushed frame being read (under exchange) */
    size_t frame_cap;
    uint8_t *batch; /* posted frames not written yet (under send): they leave together */
    size_t blen, bcap;
    uint64_t bdue; /* gw_now_ns() by which the batch leaves (the drainer sees to it) */
} srv_link;

static srv_link links[GW_SERVERS_MAX]; /* [0] unused: server 0 is session.c's */
static int drainer;   /* the links' drainer thread runs */
static int links_set; /* links[].fd are descriptors or -1 (gw_servers_connect_rest ran) */

/* ---- the joined device list ---- */
typedef struct joined {
    int server, local; /* the server's table index; local: the server's CUdevice for it */
    gw_device_info info; /* handle: the client's ordinal */
    const int32_t *attrs;
} joined;
static joined list_[GW_HELLO_DEVICES_MAX];
static int list_n;

const gw_device_info *gw_servers_device(int ordinal)
{
    return ordinal >= 0 && ordinal < list_n ? &list_[ordinal].info : NULL;
}

const int32_t *gw_servers_device_attrs(int ordinal)
{
    return ordinal >= 0 && ordinal < list_n ? list_[ordinal].attrs : NULL;
}

int gw_servers_device_count(void) { return list_n; }

int gw_device_server(int dev, int *local)
{
    if (dev < 0 || dev >= list_n)
        return -1;
    if (local)
        *local = list_[dev].local;
    return list_[dev].server;
}

int gw_device_of_server(int k, int local)
{
    for (int i = 0; i < list_n; i++)
        if (list_[i].server == k && list_[i].local == local)
            return i;
    return -1;
}

const gw_hello_ok *gw_servers_info(int k) { return k > 0 && k < gw_servers_n ? &links[k].info : NULL; }

static void uuid_text(const uint8_t *u, char *out, size_t cap)
{
    snprintf(out, cap, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2],
             u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

/* One entry of CUDA_VISIBLE_DEVICES as the driver reads it, over all the
 * servers' devices: an index, or a UUID ("GPU-..."; a prefix naming one
 * device); -1 if it names none. */
static int visible_entry(const char *tok, size_t len, const joined *all, int n)
{
    char t[128];
    if (len == 0 || len >= sizeof t)
        return -1;
    memcpy(t, tok, len);
    t[len] = 0;
    char *end;
    long i = strtol(t, &end, 10);
    if (*end == 0)
        return i >= 0 && i < n ? (int)i : -1;
    int found = -1;
    for (int d = 0; d < n; d++) {
        char u[48];
        uuid_text(all[d].info.uuid_v2, u, sizeof u);
        if (!strncasecmp(u, t, len)) {
            if (found >= 0)
                return -1; /* a prefix of two devices' UUIDs names none */
            found = d;
        }
    }
    return found;
}

/* Every server's devices in list order, then the client's CUDA_VISIBLE_DEVICES
 * applied: the list ends at the first entry that names no device (or one
 * named before), as the driver reads it. 0, or -1 if a server sent no table. */
static int join_devices(void) /* (the servers' tables: HELLO_OK's, bounded and checked by handshake.c) */
{
    static joined all[GW_HELLO_DEVICES_MAX];
    int n = 0;
    for (int k = 0; k < gw_servers_n; k++) {
        int c = gw_hello_device_count(k);
        if (c < 0) {
            gw_log("the gpuwire server %d of GPUWIRE_SERVER did not list its devices in its handshake (an older "
                   "server?): several servers need every server's list; CUDA calls will fail with "
                   "CUDA_ERROR_NO_DEVICE", k + 1);
            return -1;
        }
        for (int i = 0; i < c && n < GW_HELLO_DEVICES_MAX; i++) {
            const gw_device_info *d = gw_hello_device(k, i);
            if (d->status != CUDA_SUCCESS) {
                gw_log("the gpuwire server %d of GPUWIRE_SERVER could not describe its device %d: several "
                       "servers need every device's table; CUDA calls will fail with CUDA_ERROR_NO_DEVICE", k + 1, i);
                return -1;
            }
            all[n] = (joined){.server = k, .local = d->handle, .info = *d, .attrs = gw_hello_device_attrs(k, i)};
            n++;
        }
    }
    /* One GPU seen through two servers (a server listed twice, or two servers
     * of one machine sharing a GPU) would be two devices to the program, and
     * the two sessions' workers would name their objects alike: refused. */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (all[i].server != all[j].server && !memcmp(all[i].info.uuid, all[j].info.uuid, 16)) {
                char u[48];
                uuid_text(all[i].info.uuid, u, sizeof u);
                gw_log("GPUWIRE_SERVER: servers %d and %d both show the GPU %s (the same server twice, or two "
                       "servers sharing a GPU): each GPU must come from one server; CUDA calls will fail with "
                       "CUDA_ERROR_NO_DEVICE", all[i].server + 1, all[j].server + 1, u);
                return -1;
            }
    const char *mask = getenv("CUDA_VISIBLE_DEVICES");
    list_n = 0;
    if (!mask) {
        memcpy(list_, all, (size_t)n * sizeof all[0]);
        list_n = n;
    } else {
        unsigned char taken[GW_HELLO_DEVICES_MAX] = {0};
        for (const char *p = mask; *p && list_n < n;) {
            size_t len = strcspn(p, ",");
            const char *tok = p;
            size_t tl = len;
            while (tl && (*tok == ' ' || *tok == '\t'))
                tok++, tl--;
            while (tl && (tok[tl - 1] == ' ' || tok[tl - 1] == '\t'))
                tl--;
            int d = visible_entry(tok, tl, all, n);
            if (d < 0 || taken[d])
                break;
            taken[d] = 1;
            list_[list_n++] = all[d];
            p += len + (p[len] == ',');
        }
    }
    for (int i = 0; i < list_n; i++)
        list_[i].info.handle = i;
    return 0;
}

/* ---- routing ---- */

static int (*route_fn)(void);

void gw_set_route_fn(int (*fn)(void)) { __atomic_store_n(&route_fn, fn, __ATOMIC_RELEASE); }

static __thread int route_override = -1; /* gw_route_enter: a copy's memory decides, not the context */

int gw_route_enter(int k)
{
    int prev = route_override;
    if (gw_servers_n > 1 && k >= 0 && k < gw_servers_n)
        route_override = k;
    return prev;
}

void gw_route_leave(int prev) { route_override = prev; }

int gw_route_now(void)
{
    if (gw_servers_n <= 1)
        return 0;
    if (route_override >= 0)
        return route_override;
    int (*fn)(void) = __atomic_load_n(&route_fn, __ATOMIC_ACQUIRE);
    int k = fn ? fn() : 0;
    return k > 0 && k < gw_servers_n ? k : 0;
}

/* Ids a worker named travel as it named them (each worker counts from a
 * random start, so two servers' never meet): the client only notes whose
 * each is. Ids the client names carry their server in bits 52..55. */
static gw_idmap worker_ids; /* worker-named id -> server + 1 */
static pthread_mutex_t worker_ids_lock = PTHREAD_MUTEX_INITIALIZER;

uint64_t gw_handle_on(uint64_t h, int k)
{
    if (gw_servers_n <= 1 || k < 0 || h <= 2 || gw_handle_everywhere(h)) /* one server: as it came */
        return h; /* (NULL and the two special streams belong to nobody) */
    if (h & GW_CLIENT_ID_BIT)
        return (h & ~GW_ROUTE_MASK) | ((uint64_t)k << GW_ROUTE_SHIFT);
    pthread_mutex_lock(&worker_ids_lock);
    gw_idmap_put(&worker_ids, h, (void *)(uintptr_t)(k + 1)); /* out of memory: unknown, routed by the rest */
    pthread_mutex_unlock(&worker_ids_lock);
    return h;
}

/* Generic allocation handles (cuMemCreate's) are the driver's own values, not
 * ids a worker names: the client notes whose each is as a reply brings it (in
 * the same map: two servers' values meeting is as unlikely as two workers'
 * ids), and a call naming one goes to its server. A value with the id bits
 * set is left to the current context's route (no driver's seen so far). */
static int plain_value(uint64_t h) { return h && !(h & (GW_CLIENT_ID_BIT | GW_ROUTE_MASK)); }

uint64_t gw_allocation_handle_on(uint64_t h, int k)
{
    if (gw_servers_n > 1 && k >= 0 && plain_value(h)) {
        pthread_mutex_lock(&worker_ids_lock);
        gw_idmap_put(&worker_ids, h, (void *)(uintptr_t)(k + 1));
        pthread_mutex_unlock(&worker_ids_lock);
    }
    return h;
}

int gw_allocation_handle_server(uint64_t h)
{
    if (gw_servers_n <= 1)
        return 0;
    if (!plain_value(h))
        return -1;
    pthread_mutex_lock(&worker_ids_lock);
    int k = (int)(uintptr_t)gw_idmap_get(&worker_ids, h) - 1;
    pthread_mutex_unlock(&worker_ids_lock);
    return k;
}

int gw_handle_everywhere(uint64_t h) { return h > 2 && ((h & GW_ROUTE_MASK) >> GW_ROUTE_SHIFT) == GW_ROUTE_ALL; }

int gw_handle_server(uint64_t h)
{
    if (h <= 2 || gw_handle_everywhere(h))
        return -1;
    if (h & GW_CLIENT_ID_BIT)
        return (int)((h & GW_ROUTE_MASK) >> GW_ROUTE_SHIFT);
    if (gw_servers_n <= 1)
        return 0;
    pthread_mutex_lock(&worker_ids_lock);
    int k = (int)(uintptr_t)gw_idmap_get(&worker_ids, h) - 1;
    pthread_mutex_unlock(&worker_ids_lock);
    return k; /* -1: not one a server gave this client (the worker that gets it refuses it) */
}

static void route_join(gw_req *q, int k)
{
    if (k < 0 || q->route == -2)
        return;
    q->route = q->route == -1 || q->route == k ? k : -2;
}

void gw_put_handle(gw_req *q, uint64_t h)
{
    if (gw_servers_n > 1 && h > 2) {
        int k = gw_handle_server(h);
        if (k >= gw_servers_n)
            q->route = -2; /* names no server this client has: refused, as two servers are */
        route_join(q, k);
    }
    gw_put_u64(q, h);
}

void gw_put_allocation_handle(gw_req *q, uint64_t h)
{
    if (gw_servers_n > 1)
        route_join(q, gw_allocation_handle_server(h)); /* unknown: the thread's route */
    gw_put_u64(q, h);
}

void gw_put_device_on(gw_req *q, int64_t dev, int *server)
{
    int k = -1, local = 0;
    if (gw_servers_n > 1) {
        k = gw_device_server((int)dev, &local);
        if (k >= 0) {
            route_join(q, k);
            dev = local;
        } else if (dev >= 0) {
            dev = 0x7fffffff; /* names no device of any server: the driver says so */
        }
    }
    if (server)
        *server = k;
    gw_put_u64(q, (uint64_t)dev);
}

void gw_put_device(gw_req *q, int64_t dev) { gw_put_device_on(q, dev, NULL); }

static int (*address_fn)(uint64_t addr);

void gw_set_address_fn(int (*fn)(uint64_t addr)) { __atomic_store_n(&address_fn, fn, __ATOMIC_RELEASE); }

void gw_put_address(gw_req *q, uint64_t addr)
{
    if (gw_servers_n > 1) {
        int (*fn)(uint64_t) = __atomic_load_n(&address_fn, __ATOMIC_ACQUIRE);
        if (fn)
            route_join(q, fn(addr)); /* memory the client saw made: its server; else no opinion */
    }
    gw_put_u64(q, addr);
}

void gw_req_route(gw_req *q, int k)
{
    if (gw_servers_n > 1)
        route_join(q, k);
}

int gw_req_on_device(gw_req *q, int dev)
{
    int local = dev;
    if (gw_servers_n > 1) {
        int k = gw_device_server(dev, &local);
        if (k < 0)
            return 0x7fffffff;
        route_join(q, k);
    }
    return local;
}

int gw_route_of(const gw_req *q)
{
    if (q->op >= GW_OP_MAPPED_MAP && q->op <= GW_OP_MAPPED_READ)
        return q->route >= 0 ? q->route : 0; /* a mapped range's server (state/mapped.c), not the thread's context's */
    if (q->route == -2)
        return -1;
    return q->route >= 0 ? q->route : gw_route_now();
}

/* ---- the links' transport ---- */

static void link_lose(srv_link *l, const char *what, int err)
{
    if (atomic_exchange(&l->lost, 1))
        return;
    gw_log("lost the connection to the gpuwire server %s (%s: %s); CUDA calls on its devices now fail with "
           "CUDA_ERROR_DEVICE_UNAVAILABLE (the other servers' go on)", l->spec, what, strerror(err));
    /* the worker sees the hang-up: a host function it waits for will never be answered (its trampoline
     * lets go), nor any reply read; the descriptor stays open, so no other thread's use of it can meet a reuse */
    shutdown(l->fd, SHUT_RDWR);
}

static int write_now(srv_link *l, const void *p, size_t n)
{
    uint64_t t0 = gw_now_ns();
    if (gw_io_write_all(l->fd, p, n)) {
        link_lose(l, "send", errno);
        return -1;
    }
    GW_WIRE_COUNT(bytes, n, 0);
    GW_WIRE_COUNT(send, gw_now_ns() - t0); /* one write: GPUWIRE_STATS' batches_sent */
    return 0;
}

/* ---- a link's batch of posted frames (its send lock held throughout) ----
 * Posted requests collect and leave in one write, as server 0's do
 * (batch.c): before anything else is written on the link, at BATCH_MAX
 * bytes, at once for an answer a worker waits for (HOST_RETURNED), and at
 * the latest GPUWIRE_FLUSH_US after the first (the drainer's timer). */
#define BATCH_MAX (256u << 10)
static uint64_t flush_ns = 200000;
static int drain_wake = -1; /* an eventfd: a batch began, the drainer's timer must see it */

static int batch_flush(srv_link *l)
{
    if (!l->blen)
        return 0;
    size_t n = l->blen;
    l->blen = 0;
    return atomic_load(&l->lost) ? -1 : write_now(l, l->batch, n);
}

static int batch_add(srv_link *l, const void *p, size_t n);

/* Write p after what is batched (in the same write when it is small): the
 * link's frames stay in seq order. */
static int link_write(srv_link *l, const void *p, size_t n)
{
    if (l->blen && n < BATCH_MAX / 4 && flush_ns)
        return batch_add(l, p, n) || batch_flush(l);
    return batch_flush(l) || write_now(l, p, n);
}

static int batch_add(srv_link *l, const void *p, size_t n)
{
    /* large: no point copying it; GPUWIRE_FLUSH_US=0: no batching; and none without the drainer
     * and its wake, whose timer is all that sends a batch nothing else follows */
    if (n >= BATCH_MAX / 4 || !flush_ns || !drainer || drain_wake < 0)
        return batch_flush(l) || write_now(l, p, n);
    if (l->blen + n > l->bcap) {
        size_t cap = l->bcap ? l->bcap * 2 : 2 * BATCH_MAX;
        while (cap < l->blen + n)
            cap *= 2;
        uint8_t *b = realloc(l->batch, cap);
        if (!b)
            return batch_flush(l) || write_now(l, p, n);
        l->batch = b, l->bcap = cap;
    }
    if (!l->blen) {
        l->bdue = gw_now_ns() + flush_ns;
        uint64_t one = 1;
        if (drain_wake >= 0)
            (void)!write(drain_wake, &one, sizeof one);
    }
    memcpy(l->batch + l->blen, p, n);
    l->blen += n;
    return l->blen >= BATCH_MAX ? batch_flush(l) : 0;
}

static __thread int pushed_from; /* the server of the pushed frame being handed on */

int gw_pushed_server(void) { return pushed_from; }

/* What a pushed frame from this server means here: module information names
 * the server's own device ordinal, made the client's; a host function call
 * is queued with k, and its answer goes back to k (state/host_calls.c);
 * a delivered copy's bytes land only in a copy asked of k
 * (state/deliveries.c). 0, or -1 (the link is then lost). */
static int link_pushed(srv_link *l, int k, const gw_hdr *h, uint8_t *p)
{
    (void)l;
    pushed_from = k; /* its handler learns which server sent it (gw_pushed_server) */
    int rc = gw_pushed_dispatch_bytes(h, p);
    pushed_from = 0;
    if (rc == 0)
        errno = EPROTO;
    return rc == 1 ? 0 : -1;
}

/* One frame from link k (its exchange held): the reply to `seq` into r (*got
 * set), or a pushed frame handed on. 0, or -1 with the link lost. */
static int link_read_one(srv_link *l, int k, uint32_t seq, gw_rep *r, int *got)
{
    gw_hdr h;
    if (gw_io_read_all(l->fd, &h, sizeof h, -1)) {
        link_lose(l, "receive", errno ? errno : ECONNRESET);
        return -1;
    }
    if (h.len > GW_MAX_PAYLOAD) {
        link_lose(l, "a frame longer than any", EPROTO);
        return -1;
    }
    if (h.op == GW_OP_REPLY && r && h.seq == seq && h.len >= GW_REPLY_REQ_SIZE) {
        if (r->cap < h.len) {
            uint8_t *b = realloc(r->buf, h.len);
            if (!b) {
                link_lose(l, "reply buffer", ENOMEM);
                return -1;
            }
            r->buf = b, r->cap = h.len;
        }
        if (gw_io_read_all(l->fd, r->buf, h.len, -1)) {
            link_lose(l, "receive", errno ? errno : ECONNRESET);
            return -1;
        }
        r->len = h.len;
        r->direct_used = 0;
        GW_WIRE_COUNT(bytes, 0, sizeof h + h.len);
        GW_WIRE_COUNT(reply);
        *got = 1;
        return 0;
    }
    if (l->frame_cap < (size_t)h.len + 1) {
        uint8_t *b = realloc(l->frame, (size_t)h.len + 1);
        if (!b) {
            link_lose(l, "frame buffer", ENOMEM);
            return -1;
        }
        l->frame = b, l->frame_cap = (size_t)h.len + 1;
    }
    if (gw_io_read_all(l->fd, l->frame, h.len, -1)) {
        link_lose(l, "receive", errno ? errno : ECONNRESET);
        return -1;
    }
    l->frame[h.len] = 0;
    GW_WIRE_COUNT(bytes, 0, sizeof h + h.len);
    if (h.op == GW_OP_ERROR && h.len > GW_ERROR_REQ_SIZE) {
        gw_log("the gpuwire server %s ended the session: %s", l->spec, (const char *)l->frame + GW_ERROR_REQ_SIZE);
        link_lose(l, "ended by the server", ECONNRESET);
        return -1;
    }
    if (h.op == GW_OP_REPLY) {
        link_lose(l, "a reply no request waits for", EPROTO);
        return -1;
    }
    if (link_pushed(l, k, &h, l->frame)) {
        link_lose(l, "a frame sent unasked", errno);
        return -1;
    }
    return 0;
}

CUresult gw_route_mixed(unsigned op)
{
    gw_log("%s: its arguments belong to two different gpuwire servers (or to none), which cannot be mixed in one "
           "call yet (docs/multi-gpu.md); returning CUDA_ERROR_INVALID_HANDLE",
           op >= GW_OP_FIRST_CALL ? gw_op_name(op) : "a control request");
    return CUDA_ERROR_INVALID_HANDLE;
}

int gw_handle_fits(uint64_t h, int k)
{
    return gw_servers_n <= 1 || h <= 2 || gw_handle_everywhere(h) ||
           (gw_handle_server(h) < gw_servers_n && (k < 0 || gw_handle_server(h) == k));
}

static CUresult link_usable(int k, const gw_req *q, size_t extra)
{
    if (k < 0 || k >= gw_servers_n)
        return gw_route_mixed(q->op);
    if (q->oom)
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (q->len - sizeof(gw_hdr) + extra > GW_MAX_PAYLOAD)
        return CUDA_ERROR_INVALID_VALUE;
    if (q->op != GW_OP_cuInit && !gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (q->op >= GW_OP_FIRST_CALL && gw_pushed_in_host_code())
        return CUDA_ERROR_NOT_PERMITTED;
    if (atomic_load(&links[k].lost))
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    return CUDA_SUCCESS;
}

static void frame_header(gw_req *q, uint32_t payload, uint32_t seq)
{
    gw_hdr h = {.len = payload, .op = (uint16_t)q->op, .flags = (uint16_t)q->flags,
                .tid = gw_stream_thread_tag(), .seq = seq};
    memcpy(q->buf, &h, sizeof h);
}

CUresult gw_link_call(int k, gw_req *q, gw_rep *r)
{
    r->len = r->pos = 0;
    r->short_read = 0;
    r->route = k;
    CUresult rc = link_usable(k, q, 0);
    if (rc != CUDA_SUCCESS)
        return rc;
    srv_link *l = &links[k];
    uint64_t t0 = gw_now_ns();
    pthread_mutex_lock(&l->exchange);
    pthread_mutex_lock(&l->send);
    uint32_t seq = l->seq++;
    frame_header(q, (uint32_t)(q->len - sizeof(gw_hdr)), seq);
    int got = 0, bad = link_write(l, q->buf, q->len);
    pthread_mutex_unlock(&l->send);
    while (!bad && !got)
        bad = link_read_one(l, k, seq, r, &got);
    pthread_mutex_unlock(&l->exchange);
    if (bad)
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    GW_WIRE_COUNT(round_trip, q->op, gw_now_ns() - t0);
    gw_reply_req rep = {0};
    r->pos = gw_reply_req_get(r->buf, r->len, &rep);
    gw_after_reply(q->op);
    return (CUresult)rep.result;
}

CUresult gw_link_post(int k, gw_req *q, const void *tail, size_t tail_len)
{
    CUresult rc = link_usable(k, q, tail_len);
    if (rc != CUDA_SUCCESS)
        return rc;
    srv_link *l = &links[k];
    q->flags |= GW_F_NOREPLY;
    pthread_mutex_lock(&l->send); /* not the exchange: a caller may hold it waiting for what this answers */
    frame_header(q, (uint32_t)(q->len - sizeof(gw_hdr) + tail_len), l->seq++);
    gw_stream_observe_post(q, k); /* as server 0's posts are seen (state/stream_fences.c) */
    int bad = batch_add(l, q->buf, q->len) || (tail_len && batch_add(l, tail, tail_len));
    if (!bad && q->op == GW_OP_HOST_RETURNED) /* its worker's stream waits for it */
        bad = batch_flush(l);
    pthread_mutex_unlock(&l->send);
    return bad ? CUDA_ERROR_DEVICE_UNAVAILABLE : CUDA_SUCCESS;
}

/* ---- bursts on a link: its exchange held from begin to end ---- */
static __thread int burst_link; /* 0: none */
static __thread CUresult burst_rc;

int gw_link_bursting(void) { return burst_link != 0; }

CUresult gw_link_burst_begin(int k, unsigned op)
{
    gw_req probe = {.op = op, .len = sizeof(gw_hdr)};
    CUresult rc = link_usable(k, &probe, 0);
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&links[k].exchange);
    burst_link = k;
    burst_rc = CUDA_SUCCESS;
    return CUDA_SUCCESS;
}

CUresult gw_link_burst_queue(gw_req *q, uint32_t *seq)
{
    srv_link *l = &links[burst_link];
    pthread_mutex_lock(&l->send);
    *seq = l->seq++;
    frame_header(q, (uint32_t)(q->len - sizeof(gw_hdr)), *seq);
    if (burst_rc == CUDA_SUCCESS && link_write(l, q->buf, q->len))
        burst_rc = CUDA_ERROR_DEVICE_UNAVAILABLE;
    pthread_mutex_unlock(&l->send);
    return burst_rc;
}

CUresult gw_link_burst_reply(uint32_t seq, gw_rep *r)
{
    srv_link *l = &links[burst_link];
    r->len = r->pos = 0;
    r->short_read = 0;
    r->route = burst_link;
    int got = 0;
    while (burst_rc == CUDA_SUCCESS && !got)
        if (link_read_one(l, burst_link, seq, r, &got))
            burst_rc = CUDA_ERROR_DEVICE_UNAVAILABLE;
    if (burst_rc != CUDA_SUCCESS)
        return burst_rc;
    gw_reply_req rep = {0};
    r->pos = gw_reply_req_get(r->buf, r->len, &rep);
    return (CUresult)rep.result;
}

void gw_link_burst_end(void)
{
    pthread_mutex_unlock(&links[burst_link].exchange);
    burst_link = 0;
}

/* Frames a server sends unasked while nobody waits on its link (a host
 * function to run, device printf, module information): the drainer poll()s
 * every live link and reads what comes as soon as it comes, so a host
 * function runs at once also for a program that waits on its own condition,
 * and a worker never stalls on a client that reads nothing. A link whose
 * exchange another thread holds is that thread's to read (it hands pushed
 * frames on as it waits): left out of the poll for DRAIN_BUSY_MS, then looked
 * at again (the holder may have let go with a frame still unread). Idle, the
 * thread sleeps in poll. */
#define DRAIN_BUSY_MS 10
#define DRAIN_IDLE_MS 1000 /* poll's longest wait (a lost link leaves the set without a wake) */

static void drain_link(srv_link *l, int k) /* its exchange held: every frame already here */
{
    for (;;) {
        struct pollfd pfd = {.fd = l->fd, .events = POLLIN};
        int got = 0;
        if (atomic_load(&l->lost) || gw_io_poll_in(&pfd, 1, 0) <= 0 || link_read_one(l, k, 0, NULL, &got))
            return;
    }
}

/* Batches due by now leave; the time until the next one is due (ns), or UINT64_MAX. */
static uint64_t flush_due_batches(void)
{
    uint64_t next = UINT64_MAX;
    for (int k = 1; k < gw_servers_n; k++) {
        srv_link *l = &links[k];
        if (atomic_load(&l->lost) || l->fd < 0)
            continue;
        pthread_mutex_lock(&l->send);
        uint64_t now = gw_now_ns();
        if (l->blen && l->bdue <= now)
            batch_flush(l);
        else if (l->blen && l->bdue - now < next)
            next = l->bdue - now;
        pthread_mutex_unlock(&l->send);
    }
    return next;
}

static void *link_drainer(void *arg)
{
    (void)arg;
    uint64_t busy_until[GW_SERVERS_MAX] = {0}; /* gw_now_ns() before which a held link is left alone */
    for (;;) {
        struct pollfd pfd[GW_SERVERS_MAX + 1];
        int which[GW_SERVERS_MAX], n = 0;
        uint64_t wait_ns = (uint64_t)DRAIN_IDLE_MS * 1000000, due = flush_due_batches();
        wait_ns = due < wait_ns ? due : wait_ns;
        uint64_t now = gw_now_ns();
        for (int k = 1; k < gw_servers_n; k++) {
            if (atomic_load(&links[k].lost) || links[k].fd < 0)
                continue;
            if (busy_until[k] > now) {
                wait_ns = busy_until[k] - now < wait_ns ? busy_until[k] - now : wait_ns;
                continue;
            }
            pfd[n] = (struct pollfd){.fd = links[k].fd, .events = POLLIN};
            which[n++] = k;
        }
        pfd[n] = (struct pollfd){.fd = drain_wake, .events = POLLIN}; /* a batch began: its deadline counts */
        /* frames TLS has decrypted already first, then the sockets (and the wake) for up to wait_ns */
        int ready = gw_io_poll_in(pfd, (nfds_t)n, 0);
        if (ready == 0) {
            struct timespec ts = {(time_t)(wait_ns / 1000000000u), (long)(wait_ns % 1000000000u)};
            ready = ppoll(pfd, (nfds_t)n + (drain_wake >= 0), &ts, NULL);
            if (drain_wake >= 0 && (pfd[n].revents & POLLIN)) {
                uint64_t drained;
                (void)!read(drain_wake, &drained, sizeof drained);
            }
        }
        if (ready <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            int k = which[i];
            srv_link *l = &links[k];
            if (!pfd[i].revents)
                continue;
            if (pthread_mutex_trylock(&l->exchange)) {
                busy_until[k] = gw_now_ns() + (uint64_t)DRAIN_BUSY_MS * 1000000;
                continue;
            }
            drain_link(l, k);
            pthread_mutex_unlock(&l->exchange);
        }
    }
    return NULL;
}

/* ---- opening the sessions ---- */

/* cuInit on server k's worker, as cuInit does on server 0's (the request the
 * generated call writes: u64 flags). */
static CUresult link_init(int k)
{
    gw_req *q = gw_req_begin_quiet(GW_OP_cuInit);
    gw_put_u64(q, 0);
    gw_rep *r = &gw_tls_rep;
    CUresult rc = gw_link_call(k, q, r);
    gw_rep_end(r);
    return rc;
}

static CUresult open_link(int k, const char *spec)
{
    srv_link *l = &links[k];
    snprintf(l->spec, sizeof l->spec, "%s", spec);
    pthread_mutex_init(&l->exchange, NULL);
    pthread_mutex_init(&l->send, NULL);
    l->blen = 0; /* a forked child's copy of the parent's batch is not its own */
    l->seq = 1;
    atomic_store(&l->lost, 0);
    l->fd = -1;
    char host[256], port[64], why[128];
    if (gw_dial_split(spec, host, sizeof host, port, sizeof port))
        return CUDA_ERROR_NO_DEVICE; /* checked before any connection (gw_servers_entry's caller) */
    int fd = gw_dial(host, port, why, sizeof why);
    if (fd < 0) {
        gw_log("cannot reach the gpuwire server at %s (%s); is `gpuwire server` running there? CUDA calls will "
               "fail with CUDA_ERROR_NO_DEVICE", spec, why);
        return CUDA_ERROR_NO_DEVICE;
    }
    gw_handshake_clock_start(); /* the TLS handshake's time limits count from here too */
    /* TLS under the first server's rules and settings (tls.c): GPUWIRE_TLS, its
     * certificates, the name check against this entry's host */
    if (gw_tls_client_start(fd, host, spec)) {
        close(fd);
        return CUDA_ERROR_NO_DEVICE;
    }
    CUresult rc = gw_handshake_with(fd, spec, &l->info, k);
    if (rc != CUDA_SUCCESS) {
        gw_tls_forget(fd);
        close(fd);
        return rc;
    }
    l->fd = fd;
    return CUDA_SUCCESS;
}

/* in_child: after fork, where the parent's TLS state is not this process's to free (tls.c drops it) */
static void close_links(int in_child)
{
    for (int k = 1; k < GW_SERVERS_MAX; k++)
        gw_io_close(&links[k].fd, in_child);
}

CUresult gw_servers_connect_rest(const char *list)
{
    char spec[300];
    for (int k = 1; k < GW_SERVERS_MAX; k++) /* none open yet (statics start at 0, a real descriptor) */
        links[k].fd = -1;
    links_set = 1;
    for (int k = 1; k < gw_servers_n; k++) {
        gw_servers_entry(list, k, spec, sizeof spec);
        CUresult rc = open_link(k, spec);
        if (rc != CUDA_SUCCESS) {
            close_links(0);
            return rc;
        }
    }
    if (join_devices()) {
        close_links(0);
        return CUDA_ERROR_NO_DEVICE;
    }
    for (int k = 1; k < gw_servers_n; k++) {
        /* before gw_set_initialized: the link's cuInit alone is let through */
        CUresult rc = link_init(k);
        if (rc != CUDA_SUCCESS) {
            gw_log("cuInit on the gpuwire server %s failed (%d); CUDA calls will fail with it", links[k].spec, rc);
            close_links(0);
            return rc;
        }
    }
    if (list_n == 0) {
        gw_log("CUDA_VISIBLE_DEVICES=%s leaves no device of the %d gpuwire servers: cuInit returns "
               "CUDA_ERROR_NO_DEVICE", getenv("CUDA_VISIBLE_DEVICES"), gw_servers_n);
        close_links(0);
        return CUDA_ERROR_NO_DEVICE;
    }
    unsigned long long us = 200;
    if (gw_env_int("GPUWIRE_FLUSH_US", 0, 1000000, "using the default, 200", &us) >= 0)
        flush_ns = us * 1000ull;
    if (drain_wake < 0)
        drain_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!drainer)
        drainer = gw_start_helper_thread(link_drainer) == 0;
    return CUDA_SUCCESS;
}

void gw_servers_after_fork(void)
{
    if (links_set) /* the parent's links: the child opens its own */
        close_links(1);
    list_n = 0;
    drainer = 0; /* threads do not survive fork */
    if (drain_wake >= 0)
        close(drain_wake); /* the parent's counter: the child makes its own */
    drain_wake = -1;
}
