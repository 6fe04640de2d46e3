/* The client's wire layer, as the layers above it use it: requests and
 * replies, the session, bursts, the memo of constant replies, lanes,
 * content-addressed transfers (cas.h), and the two ways the layer reaches
 * up without naming anything above it: a registry for the frames the worker
 * sends unasked (pushed frames) and a hook for counting. libnvidia-ml.so.1
 * links this layer too (its own copy: its own connection). Nothing here is
 * exported. */
#ifndef GW_CLIENT_WIRE_API_H
#define GW_CLIENT_WIRE_API_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/wire.h"
#include "../diag/diag.h"
#include "servers.h" /* several servers: routing, the joined device list */

/* ---- requests and replies (marshal.c, batch.c, replies.c) ----
 * A request is built in a per-thread buffer, sent whole, and its reply read
 * into a per-thread buffer, so decoding happens outside the connection lock. */
typedef struct gw_req gw_req;
typedef struct gw_rep gw_rep;

GW_HIDDEN gw_req *gw_req_begin(unsigned op);
GW_HIDDEN gw_req *gw_req_begin_quiet(unsigned op); /* part of a call already counted */
GW_HIDDEN void gw_req_set_flags(gw_req *q, unsigned flags);
GW_HIDDEN void gw_put_u32(gw_req *q, uint32_t v);
GW_HIDDEN void gw_put_u64(gw_req *q, uint64_t v);
GW_HIDDEN void gw_put_f64(gw_req *q, double v);
GW_HIDDEN void gw_put_raw(gw_req *q, const void *p, size_t n);
GW_HIDDEN void gw_put_in(gw_req *q, const void *p, size_t nbytes);  /* u32 length (NULL marker) + bytes */
GW_HIDDEN void gw_put_out(gw_req *q, const void *p, size_t count); /* u32 element count (NULL marker) */
GW_HIDDEN void gw_put_str(gw_req *q, const char *s);
GW_HIDDEN void gw_put_handles(gw_req *q, void *const *h, size_t n);
/* Send and wait for the reply; *r is always set and must be ended. */
GW_HIDDEN CUresult gw_req_call(gw_req *q, gw_rep **r);
GW_HIDDEN void gw_mark_background_thread(void); /* its round trips are traced as rt-background */
/* A burst (burst.c): one thread queues several waiting requests, then reads
 * their replies in order, holding the connection meanwhile (large
 * device-to-host copies: no round trip between pieces). */
GW_HIDDEN CUresult gw_burst_begin(unsigned op);
GW_HIDDEN CUresult gw_burst_queue(gw_req *q, uint32_t *seq);
GW_HIDDEN CUresult gw_burst_reply(uint32_t seq, gw_rep **r);
/* the same, a reply of exactly n bytes after its result placed at dst (*placed = 1) */
GW_HIDDEN CUresult gw_burst_reply_into(uint32_t seq, gw_rep **r, void *dst, size_t n, int *placed);
GW_HIDDEN void gw_burst_end(void);
/* As gw_req_call, for answers that never change: asked once per argument
 * list (reply_memo.c). */
GW_HIDDEN CUresult gw_req_call_cached(gw_req *q, gw_rep **r);
/* Drop kept answers of these ops (their inputs changed: a Set call). */
GW_HIDDEN void gw_cache_forget(const unsigned *ops, size_t n);
/* Send without waiting (GW_F_NOREPLY): a failure comes back on a later collecting call. */
GW_HIDDEN CUresult gw_req_post(gw_req *q);
GW_HIDDEN CUresult gw_req_post_tail(gw_req *q, const void *tail, size_t tail_len); /* q, then tail's bytes, posted */
GW_HIDDEN int gw_get_bytes(gw_rep *r, void *dst, size_t n);
GW_HIDDEN uint32_t gw_get_u32(gw_rep *r);
GW_HIDDEN uint64_t gw_get_u64(gw_rep *r);
GW_HIDDEN const void *gw_get_view(gw_rep *r, size_t n); /* n bytes in place, or NULL */
GW_HIDDEN void gw_get_handles(gw_rep *r, void **h, size_t n);
GW_HIDDEN void gw_get_allocation_handles(gw_rep *r, uint64_t *h, size_t n); /* CUmemGenericAllocationHandle outputs, noted as the reply's server's */
GW_HIDDEN CUresult gw_rep_status(gw_rep *r, CUresult res); /* CUDA_ERROR_UNKNOWN if the reply was short */
GW_HIDDEN void gw_rep_end(gw_rep *r);
/* A payload's fixed fields through the codecs generated from
 * codegen/protocol.txt (native/generated/wire_protocol.h):
 *   gw_put_fields(q, gw_deliver_req, {.delivery = id, .src = src, ...});
 * appends them to q, and
 *   if (gw_get_fields(r, gw_func_layout_rep, &v)) ... (short reply)
 * decodes a reply's from its start (its i32 result first); reading with
 * gw_get_* then goes on after them. 0, or -1 (the reply is short). */
#define gw_put_fields(q, codec, ...)                                                                        \
    do {                                                                                                    \
        const codec f_ = __VA_ARGS__;                                                                       \
        uint8_t b_[sizeof(codec)]; /* the struct is never smaller than its packed wire form */              \
        gw_put_raw((q), b_, codec##_put(b_, &f_));                                                          \
    } while (0)
#define gw_get_fields(r, codec, v) gw_rep_resume((r), codec##_get(gw_rep_bytes(r), gw_rep_size(r), (v)))
GW_HIDDEN const uint8_t *gw_rep_bytes(const gw_rep *r); /* the reply's payload: i32 result, then outputs */
GW_HIDDEN size_t gw_rep_size(const gw_rep *r);
GW_HIDDEN int gw_rep_resume(gw_rep *r, size_t at); /* reading goes on at byte at; at 0: short, -1 */
/* A later part's fixed fields, where reading stands (after the result, or
 * after what was read before), through its generated codec:
 *   if (gw_get_part(r, gw_link_complete_rep_after_jit, &v)) ... (short reply)
 * 0, or -1 (short: the reply counts as short, as gw_get_* make it). */
#define gw_get_part(r, codec, v) gw_rep_skip((r), codec##_get(gw_rep_here(r), gw_rep_left(r), (v)))
GW_HIDDEN const uint8_t *gw_rep_here(const gw_rep *r); /* where reading stands */
GW_HIDDEN size_t gw_rep_left(const gw_rep *r);         /* bytes from there; 0 once the reply was short */
GW_HIDDEN int gw_rep_skip(gw_rep *r, size_t got);      /* past got bytes a codec read; got 0: short, -1 */

/* ---- session (session.c) ---- */
GW_HIDDEN CUresult gw_connect(void);    /* connect and handshake once; later calls return the outcome */
GW_HIDDEN int gw_initialized(void);     /* cuInit succeeded in this process */
GW_HIDDEN void gw_set_initialized(void);
GW_HIDDEN const gw_hello_ok *gw_server_info(void);
/* The devices HELLO_OK carried (handshake.c): NULL / -1 where it carried none. */
GW_HIDDEN const gw_device_info *gw_handshake_device(int ordinal);
GW_HIDDEN int gw_handshake_device_count(void);
GW_HIDDEN const int32_t *gw_handshake_device_attrs(int ordinal); /* attr_count (status, value) pairs; NULL: none */
/* Requests queued by the whole process so far, and that count right after
 * this thread's last request: equal means nobody sent anything since. */
GW_HIDDEN unsigned long long gw_requests_queued(void);
GW_HIDDEN unsigned long long gw_call_mark(void);
GW_HIDDEN uint64_t gw_new_handle_id(void); /* a fresh client-named handle id */
/* Creating a client-named handle is posted unless the calling thread says it
 * needs the verdict now (gw_set_must_wait(1) ... gw_set_must_wait(0)). */
GW_HIDDEN int gw_may_post(void);
GW_HIDDEN void gw_set_must_wait(int on);
GW_HIDDEN int gw_flush(void);                 /* what is batched leaves now; -1 if the connection is lost (batch.c) */
GW_HIDDEN void gw_io_lost(const char *what);  /* the session's stream is broken (a lane failed) */

/* ---- raw I/O (io.c), dialing (dial.c) and the handshake (handshake.c) ---- */
GW_HIDDEN int gw_io_write_all(int fd, const void *p, size_t n);
GW_HIDDEN int gw_io_read_frame(int fd, gw_hdr *h, uint8_t **payload, int timeout_ms); /* payload malloc'd */
GW_HIDDEN int gw_io_read_all(int fd, void *p, size_t n, int timeout_ms); /* -1: waits without end */
GW_HIDDEN void gw_io_close(int *fd, int in_child); /* a connection and its TLS state; *fd = -1 */
struct pollfd;
GW_HIDDEN int gw_io_poll_in(struct pollfd *p, unsigned long n, int timeout_ms); /* poll(), TLS-buffered bytes count */
GW_HIDDEN int gw_io_dial_server(char *why, size_t whycap); /* a new connection to the session's server, or -1 */
GW_HIDDEN const gw_lane_grant *gw_handshake_lanes(void); /* what HELLO_OK granted; NULL: no lanes */

/* Hooks a layer above registers (state/mapped.c: host memory the GPU sees):
 * before_request runs as a request is begun, with no lock of the wire held
 * (never inside a burst), so it may send requests of its own; after_reply
 * runs once a round trip's reply has come, no lock held. Both see the op. */
typedef struct gw_call_hooks {
    void (*before_request)(unsigned op);
    void (*after_reply)(unsigned op);
} gw_call_hooks;
GW_HIDDEN void gw_set_call_hooks(const gw_call_hooks *h);
/* what an op does to the GPU's work (batch.c): a launch (cuLaunch*, cuGraphLaunch*), a synchronize */
GW_HIDDEN int gw_op_is_launch(unsigned op);
GW_HIDDEN int gw_op_is_sync(unsigned op);
/* An observer a layer above registers (state/stream_fences.c): called with
 * each posted (NOREPLY) request's op as it is queued, in queue order, with
 * the connection's lock held (so it must not make requests itself). */
GW_HIDDEN void gw_set_post_observer(void (*fn)(unsigned op, int server)); /* server: whose connection */
/* The calling thread's request and reply buffers set aside (a signal handler
 * that must make a call of its own while the thread was between a call and
 * reading its reply), then put back; nesting up to 4. 0, or -1 if too deep. */
GW_HIDDEN int gw_wire_tls_push(void);
GW_HIDDEN void gw_wire_tls_pop(void);

/* ---- pushed frames (pushed.c) ----
 * Frames the worker sends unasked (module information, delivered copies,
 * device printf output) are read by whichever thread reads the stream and
 * handed to the handler registered for their op; an op nobody registered is
 * read and dropped. A handler reads exactly len bytes with gw_pushed_read
 * and gw_pushed_discard and returns 0, or -1 if a read failed (the
 * connection is then lost). Register from a constructor. */
typedef int (*gw_pushed_fn)(uint32_t len);
GW_HIDDEN void gw_on_pushed(unsigned op, gw_pushed_fn fn);
GW_HIDDEN int gw_pushed_read(void *dst, size_t n);
GW_HIDDEN int gw_pushed_discard(size_t n);

/* ---- counting (counters.c) ----
 * The layer counts through these hooks, set by the library it is part of
 * (none set: nothing is counted). */
typedef struct gw_wire_counters {
    void (*call)(unsigned op);
    void (*round_trip)(unsigned op, uint64_t waited_ns);
    void (*send)(uint64_t ns);
    void (*queue_wait)(uint64_t ns);
    void (*bytes)(uint64_t to_server, uint64_t from_server);
    void (*lanes)(unsigned open, uint64_t bytes);
    void (*reply)(void);       /* a REPLY frame read, whoever waited for it */
    void (*burst_reply)(void); /* a reply of a burst after its first: the burst waited once */
    void (*lane_piece)(unsigned lane, uint64_t bytes); /* a piece's bytes carried by that lane, either way */
} gw_wire_counters;
GW_HIDDEN void gw_wire_count_with(const gw_wire_counters *c);

/* ---- lanes: copy bytes on extra connections (lanes.c) ---- */
/* 1 if copies of n bytes go on lanes (set up at the first such copy). */
GW_HIDDEN int gw_lanes_for(size_t n);
GW_HIDDEN void gw_lanes_prepare(size_t n); /* page-locked memory of n bytes made: lanes opened in the background */
/* A host-to-device copy to known device memory, its bytes over the lanes;
 * returns once they have left src. */
GW_HIDDEN CUresult gw_lanes_htod(unsigned op, CUdeviceptr dst, const void *src, size_t n, uint64_t stream, int store);
/* A device-to-host copy, its bytes over the lanes, straight into dst; waits for them. */
GW_HIDDEN CUresult gw_lanes_dtoh(unsigned op, void *dst, CUdeviceptr src, size_t n, uint64_t stream);
/* 1 if the lanes are open and receiving: a delivery's bytes may come on them (DELIVER flags 2) */
GW_HIDDEN int gw_lanes_receiving(void);
/* Who lands a DELIVERED frame read off a lane (its fields and bytes still on fd; 0 or -1),
 * and who hears that the lanes' receiving side broke (state/deliveries.c). */
GW_HIDDEN void gw_lanes_on_delivered(int (*land)(int fd, uint32_t len), void (*lost)(void));
GW_HIDDEN int gw_lanes_lost(void); /* 1 once a lane's receiving side broke */

#endif
