/* NVML over several gpuwire servers (GPUWIRE_SERVER=a:7750,b:7751;
 * docs/multi-gpu.md "NVML with several servers"). Server 0 is the session
 * the wire layer serves; every further server gets a connection of its own
 * here, with an NVML-only handshake and a plain transport: one request at a
 * time under the link's lock, the reply read by the thread that asked.
 * NVML pushes nothing and posts nothing, so that is all it needs.
 *
 * Device handles are the workers' ids (below 2^49, core/handles.c); the
 * handle an application holds carries its server's index in bits 52..55
 * (server 0: none, so one server's handles are unchanged), and a request goes
 * to the server its handles name (gw_put_handle), else to the calling
 * thread's route (gw_nvml_route_enter: the enumeration in enumerate.c), else
 * to server 0 (system queries). A request naming two servers' devices is
 * refused here. With one server nothing below runs but one comparison. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvml_client.h"

#include "../client/wire/servers.h"
#include "../client/wire/stream.h"
#include "../client/wire/tls.h"

#define ROUTE_SHIFT 52
#define ROUTE_MASK (0xfull << ROUTE_SHIFT)

typedef struct nvml_link {
    char spec[300];
    int fd;
    pthread_mutex_t lock; /* one exchange at a time: frames in order, the reply read by its asker */
    uint32_t seq;
    atomic_int lost;
    gw_hello_ok info;
    uint8_t *frame;
    size_t frame_cap;
} nvml_link;

static nvml_link links[GW_SERVERS_MAX]; /* [0] unused: server 0 is the wire layer's session */
static int servers_n = 1;
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static int opened;          /* under open_lock: the links were opened (or failed: open_rc) */
static nvmlReturn_t open_rc;
static __thread int thread_route = -1;

int gw_nvml_servers(void) { return servers_n; }

int gw_nvml_route_enter(int k)
{
    int prev = thread_route;
    thread_route = k;
    return prev;
}

void gw_nvml_route_leave(int prev) { thread_route = prev; }

int gw_nvml_handle_server(uint64_t h) { return (int)((h & ROUTE_MASK) >> ROUTE_SHIFT); }

/* A worker's ids stay below 2^49; one that does not (a hostile or broken
 * server) still routes back to the server that gave it, whose worker then
 * refuses the id it never made. */
uint64_t gw_nvml_handle_on(uint64_t id, int k)
{
    return id && servers_n > 1 ? (id & ~ROUTE_MASK) | ((uint64_t)k << ROUTE_SHIFT) : id;
}

static void route_join(gw_req *q, int k)
{
    if (q->route == -1)
        q->route = k;
    else if (q->route != k)
        q->route = -2;
}

/* A device (or unit, instance) handle argument: its server decides the route;
 * the worker gets its own id back. */
void gw_put_handle(gw_req *q, uint64_t h)
{
    if (servers_n > 1 && h) {
        int k = gw_nvml_handle_server(h);
        route_join(q, k < servers_n ? k : -2);
        h &= ~ROUTE_MASK;
    }
    gw_put_u64(q, h);
}

static void link_lose(nvml_link *l, const char *what, int err)
{
    if (!atomic_exchange(&l->lost, 1))
        gw_log("lost the NVML connection to the gpuwire server %s (%s: %s); its GPUs now answer "
               "NVML_ERROR_GPU_IS_LOST", l->spec, what, strerror(err));
}

static int read_frame(nvml_link *l, gw_hdr *h)
{
    if (gw_io_read_all(l->fd, h, sizeof *h, -1)) {
        link_lose(l, "receive", errno ? errno : ECONNRESET);
        return -1;
    }
    if (h->len > GW_MAX_PAYLOAD) {
        link_lose(l, "a frame longer than any", EPROTO);
        return -1;
    }
    if (l->frame_cap < (size_t)h->len + 1) {
        uint8_t *b = realloc(l->frame, (size_t)h->len + 1);
        if (!b) {
            link_lose(l, "frame buffer", ENOMEM);
            return -1;
        }
        l->frame = b, l->frame_cap = (size_t)h->len + 1;
    }
    if (gw_io_read_all(l->fd, l->frame, h->len, -1)) {
        link_lose(l, "receive", errno ? errno : ECONNRESET);
        return -1;
    }
    l->frame[h->len] = 0;
    return 0;
}

/* Request q to server k (its lock held for the exchange), the reply into r. */
static CUresult link_call(int k, gw_req *q, gw_rep *r)
{
    nvml_link *l = &links[k];
    if (q->oom)
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (q->len - sizeof(gw_hdr) > GW_MAX_PAYLOAD)
        return CUDA_ERROR_INVALID_VALUE;
    if (atomic_load(&l->lost))
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    uint64_t t0 = gw_now_ns();
    pthread_mutex_lock(&l->lock);
    gw_hdr h = {.len = (uint32_t)(q->len - sizeof(gw_hdr)), .op = (uint16_t)q->op, .flags = (uint16_t)q->flags,
                .tid = gw_stream_thread_tag(), .seq = l->seq++};
    uint32_t seq = h.seq;
    memcpy(q->buf, &h, sizeof h);
    int bad = gw_io_write_all(l->fd, q->buf, q->len);
    if (bad)
        link_lose(l, "send", errno ? errno : EPIPE);
    while (!bad) {
        if ((bad = read_frame(l, &h)))
            break;
        GW_WIRE_COUNT(bytes, 0, sizeof h + h.len);
        if (h.op == GW_OP_REPLY && h.seq == seq && h.len >= GW_REPLY_REQ_SIZE)
            break;
        if (h.op == GW_OP_ERROR && h.len > GW_ERROR_REQ_SIZE) {
            gw_log("the gpuwire server %s ended the NVML session: %s", l->spec,
                   (const char *)l->frame + GW_ERROR_REQ_SIZE);
            link_lose(l, "ended by the server", ECONNRESET);
            bad = 1;
        } else {
            /* NVML asks for nothing unasked: anything else is not this protocol */
            link_lose(l, "a frame no request waits for", EPROTO);
            bad = 1;
        }
    }
    if (!bad) { /* the reply becomes the thread's reply buffer, as the wire layer's would */
        if (r->cap < h.len) {
            uint8_t *b = realloc(r->buf, h.len);
            if (!b)
                bad = 1;
            else
                r->buf = b, r->cap = h.len;
        }
        if (!bad) {
            memcpy(r->buf, l->frame, h.len);
            r->len = h.len;
        }
    }
    pthread_mutex_unlock(&l->lock);
    if (bad)
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    GW_WIRE_COUNT(reply);
    GW_WIRE_COUNT(round_trip, q->op, gw_now_ns() - t0);
    gw_reply_req rep = {0};
    r->pos = gw_reply_req_get(r->buf, r->len, &rep);
    return (CUresult)rep.result;
}

CUresult gw_nvml_send(gw_req *q, gw_rep **out)
{
    int k = q->route >= 0 ? q->route : q->route == -1 && thread_route >= 0 ? thread_route : q->route == -1 ? 0 : -2;
    if (servers_n == 1 || k == 0) {
        CUresult rc = gw_req_call(q, out);
        (*out)->route = 0; /* its handles are server 0's (gw_get_handles) */
        return rc;
    }
    gw_rep *r = &gw_tls_rep;
    r->len = r->pos = 0;
    r->short_read = 0;
    r->route = k;
    *out = r;
    if (k < 0 || k >= servers_n) {
        gw_log("%s: its devices are on two different gpuwire servers, which one NVML call cannot reach "
               "together (docs/multi-gpu.md); returning NVML_ERROR_NOT_SUPPORTED", gw_nvml_op_name(q->op));
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    return link_call(k, q, r);
}

/* ---- opening the links: at the first nvmlInit, after server 0's session ---- */

static nvmlReturn_t open_link(int k, const char *spec)
{
    nvml_link *l = &links[k];
    snprintf(l->spec, sizeof l->spec, "%s", spec);
    char host[256], port[64], why[128];
    if (gw_dial_split(spec, host, sizeof host, port, sizeof port))
        return NVML_ERROR_DRIVER_NOT_LOADED; /* server 0's session checked the list's form already */
    int fd = gw_dial(host, port, why, sizeof why);
    if (fd < 0) {
        gw_log("cannot reach the gpuwire server at %s (%s); is `gpuwire server` running there? NVML calls will "
               "fail with NVML_ERROR_DRIVER_NOT_LOADED", spec, why);
        return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    gw_handshake_clock_start();
    if (gw_tls_client_start(fd, host, spec)) {
        close(fd);
        return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    if (gw_handshake_with(fd, spec, &l->info, k) != CUDA_SUCCESS) {
        gw_tls_forget(fd);
        close(fd);
        return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    l->fd = fd;
    l->seq = 1;
    atomic_store(&l->lost, 0);
    return NVML_SUCCESS;
}

static void close_links(int in_child)
{
    for (int k = 1; k < GW_SERVERS_MAX; k++)
        gw_io_close(&links[k].fd, in_child);
}

nvmlReturn_t gw_nvml_servers_open(void)
{
    pthread_mutex_lock(&open_lock);
    if (!opened) {
        opened = 1;
        open_rc = NVML_SUCCESS;
        const char *list = getenv("GPUWIRE_SERVER");
        char spec[300];
        int n = list && *list ? gw_servers_entry(list, 0, spec, sizeof spec) : 1;
        servers_n = n > 1 ? n : 1; /* a malformed list: server 0's session has said so and failed */
        for (int k = 1; k < GW_SERVERS_MAX; k++) {
            links[k].fd = -1;
            pthread_mutex_init(&links[k].lock, NULL);
        }
        for (int k = 1; k < servers_n && open_rc == NVML_SUCCESS; k++) {
            gw_servers_entry(list, k, spec, sizeof spec);
            open_rc = open_link(k, spec);
        }
        if (open_rc != NVML_SUCCESS) {
            close_links(0);
            opened = 0; /* a later nvmlInit tries again, as one with server 0 down does */
        }
    }
    nvmlReturn_t rc = open_rc;
    pthread_mutex_unlock(&open_lock);
    return rc;
}

/* A forked child opens its own connections (server 0's session does the same). */
static void after_fork_child(void)
{
    pthread_mutex_init(&open_lock, NULL);
    if (opened)
        close_links(1);
    opened = 0;
    servers_n = 1;
    for (int k = 1; k < GW_SERVERS_MAX; k++)
        atomic_store(&links[k].lost, 0);
}

__attribute__((constructor)) static void nvml_servers_init(void)
{
    for (int k = 1; k < GW_SERVERS_MAX; k++)
        links[k].fd = -1;
    pthread_atfork(NULL, NULL, after_fork_child);
}
