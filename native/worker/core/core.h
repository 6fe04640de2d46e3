/* gpuwire data-plane worker: one process per client session, executing the
 * client's driver calls on the real driver (or the CPU stand-in). Everything
 * in a request is hostile until checked: decoding never reads past the frame,
 * counts are bounded, handles are looked up in typed tables. A malformed
 * request ends this session (and only this process). */
#ifndef GW_WORKER_H
#define GW_WORKER_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/wire.h"
#include "../generated/gw_ops.h"

typedef struct gw_call {
    gw_hdr h;
    const uint8_t *p; /* payload */
    size_t len, pos;
    int bad;          /* malformed: the session ends */
    char why[160];
    CUresult err;     /* a handle failed to resolve: answer this without calling */
    void **allocs;    /* per-call scratch, freed after the reply */
    size_t nallocs, capallocs;
    uint8_t *rbuf;    /* reply: header + i32 result + outputs */
    size_t rlen, rcap;
    int replied;
} gw_call;

typedef void (*gw_handler)(gw_call *c);
extern const gw_handler gw_dispatch[GW_OP_COUNT]; /* generated */

/* ---- decoding (call.c) ---- */
void gw_call_fail(gw_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint32_t gw_in_u32(gw_call *c);
uint64_t gw_in_u64(gw_call *c);
double gw_in_f64(gw_call *c);
const void *gw_in_view(gw_call *c, size_t n); /* n bytes in place (unaligned) */
size_t gw_in_left(const gw_call *c);
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
void gw_reply_handles(gw_call *c, int type, void **h, size_t n);

/* ---- driver (main.c) ---- */
void *gw_driver_fn(gw_call *c, unsigned op); /* NULL after answering CUDA_ERROR_NOT_SUPPORTED */
void *gw_driver_sym(unsigned op);             /* NULL if the driver lacks it */
void gw_push(unsigned op, const void *payload, size_t len); /* an unasked frame to the client */
void gw_push_parts(unsigned op, const void *a, size_t alen, const void *b, size_t blen); /* one frame, two pieces */
/* ---- device-to-host copies that land without a wait (landings.c) ---- */
void gw_op_land(gw_call *c);
void gw_landings_flush(void); /* landed bytes to the client: before every reply */
void gw_wlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Exactly n bytes from a socket, or -1; count: add them to the session's bytes_in as they come. */
int gw_recv_all(int from, void *p, size_t n, int count);
int gw_send_all(int to, const void *p, size_t n); /* all n bytes to a socket, or -1 */
/* A client that reads nothing ends its session after this many seconds (--stall-timeout; 0: never). */
double gw_stall_timeout(void);
int gw_set_stall_timeout(int sock); /* sends on sock fail with EAGAIN after that long without progress */
/* profile.c: time per op, with GPUWIRE_WORKER_PROFILE=1 */
int gw_prof_on(void);
uint64_t gw_prof_now(void);
void gw_prof_add(unsigned op, uint64_t ns);
void gw_prof_report(void);
/* Pseudo-ops of the reader's own time (control op ids nothing else uses). */
#define GW_PROF_READ_LARGE 250u /* reading a large payload off the socket */
#define GW_PROF_READ_ROOM 251u  /* waiting for a thread's backlog to shrink */

/* ---- lanes: copy bytes on extra connections (lanes.c) ---- */
/* The allocator gives an item with room for len bytes at *bytes (called from a lane's thread). */
typedef void *(*gw_lane_alloc_fn)(uint32_t len, uint8_t **bytes);
typedef void (*gw_lane_free_fn)(void *item);
int gw_lanes_start(int chan_fd, uint32_t session, unsigned n, gw_lane_alloc_fn alloc, gw_lane_free_fn release,
                   gw_lane_grant *grant);
unsigned gw_lanes_granted(void);
/* The lane's next data frame (waits for it); NULL and why when the lane is closed or never opened. */
void *gw_lane_next(unsigned lane, uint32_t *len, char *why, size_t whycap);
int gw_lane_open(unsigned lane);  /* 1 if this session's lane is open */
void gw_lanes_shutdown(void);     /* the session ends: every lane's reader and writer stop */
uint8_t *gw_lane_buffer(void);    /* GW_COPY_CHUNK bytes for a device-to-host piece, or NULL */
/* A device-to-host piece's frame to the client on that lane (buf NULL: it failed); buf is
 * taken either way. Waits while the lane's writer is behind; -1 if the lane broke. */
int gw_lane_put(unsigned lane, uint32_t tag, uint8_t *buf, uint32_t len);

/* ---- device printf output (stdout_fwd.c) ---- */
int gw_stdout_start(void);  /* fd 1 becomes a pipe whose bytes go to the client; 0 or -1 */
void gw_stdout_flush(void); /* sends what the driver wrote so far (GW_OP_STDOUT); nothing before start */

/* ---- launches (launch.c) ---- */
void gw_launch_install(void **syms); /* watch unloads, which invalidate cached layouts */
#define GW_MAX_PARAM_BYTES 32764u   /* the driver's limit for a kernel parameter buffer */
/* f's parameter layout as the driver reports it: n offsets into offs, their
 * sizes into sizes (if not NULL; both hold GW_MAX_PARAM_BYTES / 4), *end the
 * byte after the last parameter. 0, or -1 if the driver cannot tell. */
int gw_param_layout(void *f, int is_kernel, uint32_t *offs, uint32_t *sizes, uint32_t *n, uint32_t *end);
/* u64 id of a CUkernel or a CUfunction: the real handle (is_kernel says which) */
void *gw_in_function(gw_call *c, int *is_kernel);
/* A packed parameter buffer of nbytes (<= GW_MAX_PARAM_BYTES) as kernelParams
 * for f (thread-local until this thread's next call); not CUDA_SUCCESS: answer it. */
CUresult gw_kernel_params(gw_call *c, void *f, int is_kernel, const uint8_t *params, uint32_t nbytes, void ***kp);

/* ---- memory cap (memcap.c) ---- */
void gw_memcap_install(void **syms, uint64_t bytes);

/* ---- handles (handles.c) ---- */
void *gw_in_handle(gw_call *c, int type);
void *gw_handle_lookup(gw_call *c, int type, uint64_t id);
void gw_handle_forget(gw_call *c, int type, uint64_t id);
uint64_t gw_handle_id(int type, void *real);
void gw_handle_bind(gw_call *c, int type, uint64_t id, void *real);
void *gw_handle_real(int type, uint64_t id, int *found);

/* ---- control ops (modules.c, launch.c) ---- */
void gw_op_stage(gw_call *c);
void gw_op_func_layout(gw_call *c);
void gw_op_device_attrs(gw_call *c);
const void *gw_staged(uint32_t tid, size_t size); /* the complete staged blob of that size, or NULL */
uint8_t *gw_stage_reset(uint32_t tid, uint64_t total); /* a fresh zeroed blob; NULL if too big or no memory */
/* n bytes at off (src NULL: already written there) count as filled; -1 if outside the blob */
int gw_stage_fill(uint32_t tid, uint64_t off, const void *src, size_t n);
void gw_op_cas_refs(gw_call *c);
void gw_op_cas_data(gw_call *c);

#endif
