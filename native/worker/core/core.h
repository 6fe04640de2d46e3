/* gpuwire data-plane worker, floor layer (native/worker/core/): what every
 * handler and the engine above them build on: a request's decoding and its
 * reply, the session's handle table, the driver's entry points (and the
 * wrappers put in their place), the client connection, lanes, device printf
 * forwarding, logging and profiling. Nothing here calls a handler or the
 * engine (native/worker/handlers/, native/worker/engine/).
 *
 * Everything in a request is hostile until checked: decoding never reads past
 * the frame, counts are bounded, handles are looked up in typed tables. A
 * malformed request ends this session (and only this process). */
#ifndef GW_WORKER_CORE_H
#define GW_WORKER_CORE_H

#include <cuda.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "../../common/wire.h"
#include "../../generated/gw_ops.h"

typedef struct gw_call {
    gw_hdr h;
    const uint8_t *p; /* payload */
    size_t len, pos;
    int bad;          /* malformed (1) or stuck inside the worker (2): the session ends */
    char why[160];
    CUresult err;     /* a handle failed to resolve: answer this without calling */
    void **allocs;    /* per-call scratch, freed after the reply */
    size_t nallocs, capallocs;
    uint8_t *rbuf;    /* reply: header + i32 result + outputs */
    size_t rlen, rcap;
    int replied;
} gw_call;

typedef void (*gw_handler)(gw_call *c);

/* ---- decoding (call.c) ---- */
void gw_call_fail(gw_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint32_t gw_in_u32(gw_call *c);
uint64_t gw_in_u64(gw_call *c);
double gw_in_f64(gw_call *c);
const void *gw_in_view(gw_call *c, size_t n); /* n bytes in place (unaligned) */
size_t gw_in_left(const gw_call *c);
const uint8_t *gw_in_next(const gw_call *c); /* where the next field starts (gw_in_left bytes there) */
/* The fixed fields of a field-list payload, decoded by its generated codec
 * (native/generated/wire_protocol.h) from the bytes left:
 *     gw_in_fields(c, GW_STAGE_REQ_SIZE, gw_stage_req_get(gw_in_next(c), gw_in_left(c), &q))
 * got is what the codec read (0: too few bytes, or the call had already
 * failed). 1 and past them; 0 with the call failed as truncated. */
int gw_in_fields(gw_call *c, size_t size, size_t got);
/* The same for one part of a hand-written format, by its codec's name:
 *     if (gw_in_part(c, gw_capture_info_req, &q)) ...
 * A cut request fails at the first field that is not all there, as reading
 * field by field would (its size, and the bytes left there). */
#define gw_in_part(c, codec, v) \
    gw_in_part_sized((c), codec##_field_size, codec##_get(gw_in_next(c), gw_in_left(c), (v)))
int gw_in_part_sized(gw_call *c, size_t (*field_size)(unsigned), size_t got);
const char *gw_in_str(gw_call *c);
void *gw_in_array(gw_call *c, size_t esz, size_t *n);
void *gw_in_handles(gw_call *c, int type, size_t *n);
void *gw_in_counted_handles(gw_call *c, int type, uint32_t *n); /* u32 count + ids */
void *gw_out_array(gw_call *c, size_t esz, size_t *n);
void *gw_scratch(gw_call *c, size_t n); /* zeroed, freed after the call */
int gw_args_ok(gw_call *c);

/* ---- replies (call.c) ---- */
void gw_reply_result(gw_call *c, CUresult r);
void gw_reply_bytes(gw_call *c, const void *p, size_t n);
void gw_reply_u32(gw_call *c, uint32_t v);
void *gw_reply_reserve(gw_call *c, size_t n); /* n bytes at the end of the reply; NULL if out of memory */
/* A reply (or a reply-shaped push) begun afresh with room for its fixed
 * fields, n bytes after the header, for a generated gw_<name>_put to fill;
 * NULL (the call failed) if out of memory. gw_reply_result is one: REPLY's
 * i32 result. */
uint8_t *gw_reply_start(gw_call *c, size_t n);
void gw_reply_handles(gw_call *c, int type, void **h, size_t n);
/* Fixed fields appended to the reply through their generated codec
 * (native/generated/wire_formats.h, wire_protocol.h):
 *     gw_reply_fields(c, gw_dot_rep_after_x, {.n = n});
 * and a reply begun afresh with its first part (its i32 result among them):
 *     gw_reply_first(c, gw_graph_add_memcpy_node_rep, {.result = r, .node = id}); */
#define gw_reply_fields(c, codec, ...)                                                                         \
    do {                                                                                                       \
        const codec f_ = __VA_ARGS__;                                                                          \
        uint8_t b_[sizeof(codec)]; /* the struct is never smaller than its packed wire form */                 \
        gw_reply_bytes((c), b_, codec##_put(b_, &f_));                                                         \
    } while (0)
#define gw_reply_first(c, codec, ...)                                                                          \
    do {                                                                                                       \
        if (gw_reply_start((c), 0))                                                                            \
            gw_reply_fields((c), codec, __VA_ARGS__);                                                          \
    } while (0)

/* ---- handles (handles.c) ---- */
void *gw_in_handle(gw_call *c, int type);
void *gw_handle_lookup(gw_call *c, int type, uint64_t id);
void gw_handle_forget(gw_call *c, int type, uint64_t id);
uint64_t gw_handle_id(int type, void *real);
void gw_handle_bind(gw_call *c, int type, uint64_t id, void *real);
void *gw_handle_real(int type, uint64_t id, int *found);

/* ---- the driver (driver.c) ---- */
const char *gw_driver_load(const char *path); /* dlopen, every entry point, cuInit; NULL or why not */
void **gw_driver_table(void); /* the entry points by op - 256, for wrappers to take their place */
void gw_driver_describe(gw_hello_ok *ok, const char *path); /* versions, device count, description */
#define GW_DEVICE_TABLE_ATTRS (CU_DEVICE_ATTRIBUTE_MAX - 1) /* attributes 1.. sent with each device */
unsigned gw_driver_device_table(gw_device_info *out, unsigned max, int32_t *attrs); /* HELLO_OK's devices */
void *gw_driver_fn(gw_call *c, unsigned op); /* NULL after answering CUDA_ERROR_NOT_SUPPORTED */
void *gw_driver_sym(unsigned op);             /* NULL if the driver lacks it */

/* ---- memory cap (memcap.c): wrappers in the driver's table ---- */
void gw_memcap_install(void **syms, uint64_t bytes);

/* ---- logging (log.c) ---- */
void gw_log_session(const char *session); /* the session named in every line (--session) */
void gw_wlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- the client's connection (io.c) ---- */
void gw_io_set_client(int sock);
int gw_io_client(void);
void gw_io_shutdown(void); /* the client's socket both ways: a reader blocked on it stops at once */
/* Whole frames to the client, each written under one lock (replies, pushes and
 * errors come from several threads); -1 if the connection is lost or stalled. */
int gw_send_frame(const void *p, size_t n);
void gw_push(unsigned op, const void *payload, size_t len); /* an unasked frame to the client */
void gw_push_parts(unsigned op, const void *a, size_t alen, const void *b, size_t blen); /* one frame, two pieces */
void gw_send_error(uint32_t code, const char *msg); /* GW_OP_ERROR; the caller then ends the session */
/* Exactly n bytes from a socket, or -1; count: add them to the session's bytes_in as they come. */
int gw_recv_all(int from, void *p, size_t n, int count);
int gw_send_all(int to, const void *p, size_t n); /* all n bytes to a socket, or -1 */
struct iovec;
int gw_sendv_all(int to, const struct iovec *parts, int cnt); /* the same for up to 4 parts, in one call where it can */
/* A client that reads nothing ends its session after this many seconds (--stall-timeout; 0: never). */
void gw_set_stall_seconds(double s);
double gw_stall_timeout(void);
int gw_set_stall_timeout(int sock); /* sends on sock fail with EAGAIN after that long without progress */
/* Called once when a write to the client stalls (under the write lock): the
 * session's owner ends the session. */
void gw_io_on_stall(void (*fn)(void));
void gw_io_clear_stall(void); /* a new session may write again */

/* ---- profile.c: time per op, with GPUWIRE_WORKER_PROFILE=1 ---- */
int gw_prof_on(void);
uint64_t gw_prof_now(void);
void gw_prof_add(unsigned op, uint64_t ns);
/* The reader's own time, counted apart from ops (ids of their own, not ops). */
typedef enum gw_prof_reader {
    GW_PROF_READ_LARGE, /* reading a large payload off the socket */
    GW_PROF_READ_ROOM,  /* waiting for a thread's backlog to shrink */
    GW_PROF_READER_IDS
} gw_prof_reader;
void gw_prof_add_reader(gw_prof_reader id, uint64_t ns);
void gw_prof_report(void);

/* ---- timeline.c: every frame, job, reply and delivery stamped, with
 * GPUWIRE_WORKER_TIMELINE=DIR (tools/timeline-report) ---- */
int gw_tl_on(void);
void gw_tl_stamp(char kind, unsigned op, uint32_t seq, unsigned flags);
void gw_tl_write(void);
#define GW_TL(kind, op, seq, flags)                                                                                    \
    do {                                                                                                               \
        if (gw_tl_on())                                                                                                \
            gw_tl_stamp(kind, op, seq, flags);                                                                         \
    } while (0)

/* ---- lanes: copy bytes on extra connections (lanes.c) ---- */
/* The allocator gives an item with room for len bytes at *bytes (called from a lane's thread). */
typedef void *(*gw_lane_alloc_fn)(uint32_t len, uint8_t **bytes);
typedef void (*gw_lane_free_fn)(void *item);
int gw_lanes_start(int chan_fd, uint32_t session, unsigned n, gw_lane_alloc_fn alloc, gw_lane_free_fn release,
                   gw_lane_grant *grant);
unsigned gw_lanes_granted(void);
/* The lane's next data frame (waits for it); NULL and why when the lane is closed or never opened. */
void *gw_lane_next(unsigned lane, uint32_t *len, char *why, size_t whycap);

/* ---- spin.c: how long threads poll before they sleep ---- */
/* name's microseconds (0..max_us) as ns; default_us on a machine of 8+ cores, else 0; a bad value is logged */
uint64_t gw_spin_setting_ns(int64_t *cache, const char *name, long default_us, long max_us);
uint64_t gw_mono_ns(void); /* CLOCK_MONOTONIC */

/* ---- pinned.c: page-locked buffers for copy pieces ---- */
void gw_pinned_prepare(void);                   /* the first piece came: the buffers are made in the background */
void gw_pinned_lane_opened(void);               /* a lane opened: on a machine of 8+ cores, the buffers are made now */
/* a free one of at least n bytes, or NULL (any thread, no CUDA call); lane: a lane's piece (counted; the
 * first makes the buffers), else a frame of the session's connection (a page-locked one only, if made) */
void *gw_pinned_take(size_t n, int lane);
int gw_pinned_give(void *p);                    /* 1 if p was one of them: back (reused once its fence is done) */
void *gw_pinned_take_locked_chunk(CUstream s); /* a page-locked one a delivery's copy on s may write, or NULL (job's thread) */
void gw_pinned_fence(const void *p, CUstream s); /* a queued copy on s reads p: fenced by an event (job's thread) */
void gw_pinned_tend(void);                      /* job's thread between runs: fences looked at, buffers page-locked */
/* lane pieces taken into each kind so far, and copy frames of the session's connection read into them */
void gw_pinned_counts(unsigned long long *pinned, unsigned long long *plain, unsigned long long *frames);

/* Waits inside the worker that only the worker's own threads or the client's
 * lanes can end (not the GPU's): bounded by GPUWIRE_WORKER_STUCK_S seconds
 * (default 300; 0: unbounded), after which the call fails naming what it
 * waited for and the session ends, rather than the client waiting for ever. */
int gw_stuck_seconds(void);
/* pthread_cond_wait with that bound from *deadline (0: set it now); ETIMEDOUT once past it */
int gw_cond_wait_bounded(pthread_cond_t *cv, pthread_mutex_t *m, struct timespec *deadline);
/* the call fails as stuck (bad = 2): the session ends with an ERROR frame naming it */
void gw_call_stuck(gw_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int gw_lane_open(unsigned lane);  /* 1 if this session's lane is open */
void gw_lanes_shutdown(void);     /* the session ends: every lane's reader and writer stop */
uint8_t *gw_lane_buffer(void);    /* GW_COPY_CHUNK bytes for a device-to-host piece, or NULL */
/* A device-to-host piece's frame to the client on that lane (buf NULL: it failed); buf is
 * taken either way. Waits while the lane's writer is behind; -1 if the lane broke. */
int gw_lane_put(unsigned lane, uint32_t tag, uint8_t *buf, uint32_t len);
/* A delivery's piece as a DELIVERED frame on the next usable lane, from p (not
 * taken: done(arg) is called once it is written, or at once if it cannot be);
 * waits while that lane's writer is behind; -1 if it was not sent. */
int gw_lane_put_delivery(uint64_t id, uint64_t off, const uint8_t *p, uint32_t len, void (*done)(void *), void *arg);
unsigned gw_lanes_usable(void); /* lanes open and unbroken */

/* ---- device printf output (stdout_fwd.c) ---- */
int gw_stdout_start(void);  /* fd 1 becomes a pipe whose bytes go to the client; 0 or -1 */
void gw_stdout_flush(void); /* sends what the driver wrote so far (GW_OP_STDOUT); nothing before start */

#endif
