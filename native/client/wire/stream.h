/* Inside the wire layer only: the session's one ordered stream to the
 * server and the state its files share. session.c owns the connection,
 * batch.c what is queued and written (conn_lock, send_lock), replies.c who
 * reads (recv_lock), burst.c and reply_memo.c build on both. */
#ifndef GW_CLIENT_WIRE_STREAM_H
#define GW_CLIENT_WIRE_STREAM_H

#include <pthread.h>
#include <stdatomic.h>

#include "servers.h"
#include "wire_api.h"

struct gw_req {
    uint8_t *buf; /* header + payload */
    size_t len, cap;
    unsigned op, flags;
    int oom;
    int route; /* several servers (servers.h): the arguments' server, -1 none yet, -2 two of them */
};

struct gw_rep {
    uint8_t *buf;
    size_t len, cap, pos;
    int short_read;
    /* a reply of exactly 4 + direct_len bytes puts its bytes after the result
     * straight at direct (a device-to-host copy's destination): no second copy */
    void *direct;
    size_t direct_len;
    int direct_used;
    int route; /* several servers: the server that answered (its handles get its index) */
};

/* the calling thread's request and reply buffers (marshal.c) */
GW_HIDDEN extern __thread gw_req gw_tls_req;
GW_HIDDEN extern __thread gw_rep gw_tls_rep;
GW_HIDDEN extern __thread int gw_tls_in_burst; /* burst.c sets it: no hook may send meanwhile */
GW_HIDDEN void gw_after_reply(unsigned op);     /* the registered after_reply hook (marshal.c) */

/* ---- the connection (session.c) ---- */
GW_HIDDEN extern pthread_mutex_t gw_conn_lock; /* orders what is queued */
GW_HIDDEN extern int gw_conn_fd;
GW_HIDDEN extern atomic_int gw_conn_lost; /* set by whichever thread sees the stream fail */
GW_HIDDEN extern uint32_t gw_next_seq;     /* under gw_conn_lock */
/* 0 if q may be sent now (connected, initialized, within bounds), else why not */
GW_HIDDEN CUresult gw_stream_usable(const gw_req *q);
GW_HIDDEN void gw_stream_lose(const char *what); /* the line, once; then every call fails */
GW_HIDDEN uint32_t gw_stream_thread_tag(void);

/* ---- queueing and writing (batch.c) ---- */
GW_HIDDEN void gw_stream_lock(void);              /* gw_conn_lock, its wait counted */
GW_HIDDEN int gw_stream_queue_locked(gw_req *q, uint32_t seq);
GW_HIDDEN int gw_stream_flush_locked(void);
GW_HIDDEN void gw_batch_note_synchronized(unsigned op); /* a synchronizing reply arrived: eager flushes (batch.c) */
GW_HIDDEN void gw_batch_after_fork(void);
GW_HIDDEN void gw_stream_observe_post(const gw_req *q, int server); /* the post observer, for a link's post (servers.c) */

/* ---- reading (replies.c) ---- */
GW_HIDDEN extern pthread_mutex_t gw_recv_lock;
GW_HIDDEN extern pthread_cond_t gw_recv_cv;
GW_HIDDEN extern int gw_reader_busy; /* under gw_recv_lock */
/* Reads one frame as the reader: a reply with seq `mine` into `own` (*got
 * set), another to its waiter, a pushed frame to its handler. 0, or -1 with
 * the connection lost. */
GW_HIDDEN int gw_stream_read_one(uint32_t mine, gw_rep *own, int *got);
GW_HIDDEN void gw_reader_release_locked(int failed);
GW_HIDDEN void gw_replies_start_drainer(void);
/* Long waits (long_waits.c): the oldest waiter's call and start, and the
 * watcher's marks; the watcher starts with the first waited call. */
GW_HIDDEN int gw_replies_oldest(uint64_t *t0, unsigned *op, uint32_t *seq);
GW_HIDDEN int gw_replies_mark_noticed(uint32_t seq);
GW_HIDDEN void gw_long_waits_start(void);
GW_HIDDEN void gw_long_waits_after_fork(void);
GW_HIDDEN void gw_long_wait_ended(unsigned op, uint64_t t0);
GW_HIDDEN void gw_replies_after_fork(void);
/* a pushed frame (pushed.c): 1 handled, 0 not a pushed frame, -1 a read failed */
GW_HIDDEN int gw_pushed_dispatch(const gw_hdr *h);
GW_HIDDEN int gw_pushed_dispatch_bytes(const gw_hdr *h, const uint8_t *payload); /* a frame read whole: h->len bytes */

/* ---- counting through the library's hooks (counters.c) ---- */
GW_HIDDEN extern const gw_wire_counters *gw_wire_hooks;
#define GW_WIRE_COUNT(what, ...)                                   \
    do {                                                           \
        const gw_wire_counters *c_ = gw_wire_hooks;                \
        if (c_ && c_->what)                                        \
            c_->what(__VA_ARGS__);                                 \
    } while (0)

/* ---- dialing (dial.c) ---- */
/* GPUWIRE_SERVER's text split into host and port; -1 if malformed. */
GW_HIDDEN int gw_dial_split(const char *spec, char *host, size_t hostcap, char *port, size_t portcap);
GW_HIDDEN int gw_dial(const char *host, const char *port, char *why, size_t whycap);
GW_HIDDEN void gw_dial_remember(const char *host, const char *port); /* where gw_io_dial_server goes */

/* ---- the handshake (handshake.c; its time limits in handshake_limits.c, used by tls.c too) ---- */
GW_HIDDEN int gw_handshake_settings(void); /* reads the lease settings before connecting; -1 if one is bad */
GW_HIDDEN CUresult gw_handshake(int fd, const char *server, gw_hello_ok *info);
/* The handshake's time limits, from the connection's start (gw_handshake_clock_start):
 * ms left for the first reply bytes (first) or for the whole handshake. */
GW_HIDDEN void gw_handshake_limits_settings(void); /* reads GPUWIRE_HANDSHAKE_TIMEOUT */
GW_HIDDEN void gw_handshake_clock_start(void);
GW_HIDDEN void gw_handshake_clock_again(void); /* the whole handshake's limit counts again from now */
GW_HIDDEN int gw_handshake_ms_left(int first);
GW_HIDDEN void gw_handshake_silent(const char *server, int first); /* the line for a limit passed */
GW_HIDDEN void gw_handshake_not_gpuwire(const char *server, const uint8_t *b, size_t n); /* its line */

#endif
