/* Internal API of gpuwire's client libcuda.so.1: what the generated forwarders
 * and the hand-written pieces share. Nothing here is exported. */
#ifndef GW_CLIENT_H
#define GW_CLIENT_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/wire.h"
#include "../generated/gw_ops.h"
#include "../generated/client_generated.h"

#define GW_HIDDEN __attribute__((visibility("hidden")))

/* ---- requests and replies (transport.c) ----
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
/* A burst: one thread queues several waiting requests, then reads their
 * replies in order, holding the connection meanwhile (large device-to-host
 * copies: no round trip between pieces). */
GW_HIDDEN CUresult gw_burst_begin(unsigned op);
GW_HIDDEN CUresult gw_burst_queue(gw_req *q, uint32_t *seq);
GW_HIDDEN CUresult gw_burst_reply(uint32_t seq, gw_rep **r);
/* the same, a reply of exactly n bytes after its result landing at dst (*placed = 1) */
GW_HIDDEN CUresult gw_burst_reply_into(uint32_t seq, gw_rep **r, void *dst, size_t n, int *placed);
GW_HIDDEN void gw_burst_end(void);
/* As gw_req_call, for answers that never change: asked once per argument list. */
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
GW_HIDDEN CUresult gw_rep_status(gw_rep *r, CUresult res); /* CUDA_ERROR_UNKNOWN if the reply was short */
GW_HIDDEN void gw_rep_end(gw_rep *r);

/* ---- session (transport.c) ---- */
GW_HIDDEN CUresult gw_connect(void);    /* connect and handshake once; later calls return the outcome */
GW_HIDDEN int gw_initialized(void);     /* cuInit succeeded in this process */
GW_HIDDEN void gw_set_initialized(void);
GW_HIDDEN const gw_hello_ok *gw_server_info(void);
/* Requests queued by the whole process so far, and that count right after
 * this thread's last request: equal means nobody sent anything since. */
GW_HIDDEN unsigned long long gw_requests_queued(void);
GW_HIDDEN unsigned long long gw_call_mark(void);
GW_HIDDEN uint64_t gw_new_handle_id(void); /* a fresh client-named handle id */
/* Creating a client-named handle is posted unless the calling thread says it
 * needs the verdict now (gw_set_must_wait(1) ... gw_set_must_wait(0)). */
GW_HIDDEN int gw_may_post(void);
GW_HIDDEN void gw_set_must_wait(int on);

/* ---- raw I/O and the handshake (transport.c, handshake.c) ---- */
GW_HIDDEN int gw_io_write_all(int fd, const void *p, size_t n);
GW_HIDDEN int gw_io_read_frame(int fd, gw_hdr *h, uint8_t **payload, int timeout_ms); /* payload malloc'd */
GW_HIDDEN int gw_io_read_all(int fd, void *p, size_t n, int timeout_ms); /* -1: waits without end */
GW_HIDDEN int gw_handshake_settings(void); /* reads the lease settings before connecting; -1 if one is bad */
GW_HIDDEN CUresult gw_handshake(int fd, const char *server, gw_hello_ok *info);
/* The handshake's time limits, from the connection's start (gw_handshake_clock_start):
 * ms left for the first reply bytes (first) or for the whole handshake. */
GW_HIDDEN void gw_handshake_clock_start(void);
GW_HIDDEN int gw_handshake_ms_left(int first);
GW_HIDDEN void gw_handshake_silent(const char *server, int first); /* the line for a limit passed */
GW_HIDDEN void gw_handshake_not_gpuwire(const char *server, const uint8_t *b, size_t n); /* its line */
GW_HIDDEN const gw_lane_grant *gw_handshake_lanes(void); /* what HELLO_OK granted; NULL: no lanes */
GW_HIDDEN int gw_io_dial_server(char *why, size_t whycap); /* a new connection to the session's server, or -1 */
GW_HIDDEN int gw_flush(void);                 /* what is batched leaves now; -1 if the connection is lost */
GW_HIDDEN void gw_io_lost(const char *what);  /* the session's stream is broken (a lane failed) */
/* A detached helper thread of the library's own (flusher, drainer, progress
 * ticker), taking no part in the application's signals; 0, or -1 if none. */
GW_HIDDEN int gw_start_helper_thread(void *(*fn)(void *));

/* ---- lanes: copy bytes on extra connections (lanes.c) ---- */
/* 1 if copies of n bytes go on lanes (set up at the first such copy). */
GW_HIDDEN int gw_lanes_for(size_t n);
/* A host-to-device copy to known device memory, its bytes over the lanes;
 * returns once they have left src. */
GW_HIDDEN CUresult gw_lanes_htod(unsigned op, CUdeviceptr dst, const void *src, size_t n, uint64_t stream);
/* A device-to-host copy, its bytes over the lanes, straight into dst; waits for them. */
GW_HIDDEN CUresult gw_lanes_dtoh(unsigned op, void *dst, CUdeviceptr src, size_t n, uint64_t stream);

/* ---- statistics (stats.c) ---- */
GW_HIDDEN void gw_stat_call(unsigned op);
GW_HIDDEN void gw_stat_round_trip(unsigned op, uint64_t waited_ns);
GW_HIDDEN uint64_t gw_now_ns(void);
GW_HIDDEN void gw_stat_send(uint64_t ns); /* time a batch took to leave (the server reading slowly shows here) */
GW_HIDDEN void gw_stat_queue_wait(uint64_t ns); /* time a thread waited to queue a request (another one held the stream) */
GW_HIDDEN void gw_stat_bytes(uint64_t to_server, uint64_t from_server);
GW_HIDDEN void gw_stat_lanes(unsigned open, uint64_t bytes); /* lanes open (0: unchanged), copy bytes on them */

/* ---- logging (log.c) ---- */
GW_HIDDEN void gw_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
GW_HIDDEN int gw_debug(void);        /* GPUWIRE_DEBUG >= 1 */
GW_HIDDEN int gw_debug_level(void);  /* GPUWIRE_DEBUG: 0 to 9 */
GW_HIDDEN int gw_trace_rt_level(void); /* GPUWIRE_TRACE_RT: 0 to 2 (transport.c) */
int gw_unsupported(unsigned op); /* used by the generated stubs */

/* ---- contexts (contexts.c) ---- */
GW_HIDDEN int gw_current_device(void); /* the calling thread's context's device, -1 if unknown */
#define GW_LAUNCH_LIMITS 8
GW_HIDDEN const int *gw_device_launch_limits(int dev); /* device.c: grid, block, threads, shared memory limits */

/* ---- memory bookkeeping (memory.c) ---- */
typedef enum { GW_MEM_NONE, GW_MEM_DEVICE, GW_MEM_HOST_PINNED } gw_mem_kind;
GW_HIDDEN void gw_mem_track_device(CUdeviceptr p, size_t size);
GW_HIDDEN void gw_mem_untrack_device(CUdeviceptr p);
GW_HIDDEN gw_mem_kind gw_mem_classify(uint64_t addr);
GW_HIDDEN int gw_mem_is_device_range(uint64_t addr, uint64_t n); /* inside one known device allocation */
/* CUDA arrays the client created (arrays.c) */
GW_HIDDEN int gw_array_desc(CUarray h, CUDA_ARRAY3D_DESCRIPTOR *out); /* 0: not a live array */
GW_HIDDEN size_t gw_array_elem_size(CUarray_format f, unsigned channels); /* 0: not remoted */
GW_HIDDEN int gw_mipmap_desc(CUmipmappedArray h, CUDA_ARRAY3D_DESCRIPTOR *out, unsigned *levels); /* 0: unknown */
GW_HIDDEN int gw_mem_is_pinned_range(uint64_t addr, uint64_t n); /* inside one pinned host allocation */

/* ---- device-to-host copies into pinned memory that land without a wait (landings.c) ---- */
GW_HIDDEN int gw_landings_on(void);
GW_HIDDEN CUresult gw_land(int ptsz, void *dst, CUdeviceptr src, size_t n, CUstream s);
/* Where a landed piece goes (NULL: nobody waits for it any more); then gw_landed. */
GW_HIDDEN void *gw_landing_target(uint64_t id, uint64_t off, uint64_t len);
GW_HIDDEN void gw_landed(uint64_t id, uint64_t len);
GW_HIDDEN void gw_landings_forget(uint64_t base, uint64_t size); /* pinned memory freed: waits, then forgets */
/* Bytes about to be read from host memory (a host-to-device copy): if a copy still
 * to land writes into them, wait for it first (a synchronize). */
GW_HIDDEN CUresult gw_landings_settle(uint64_t addr, uint64_t n);
GW_HIDDEN void gw_stat_landing(uint64_t bytes, int waited); /* stats.c */

/* ---- module images (image.c) ---- */
GW_HIDDEN size_t gw_image_size(const void *image); /* 0 if not recognised */
GW_HIDDEN const void *gw_image_unwrap(const void *image); /* a fatbin wrapper -> its fatbin */

/* ---- what the client knows of loaded modules (modules.c) ---- */
GW_HIDDEN void gw_module_info_arrived(const uint8_t *payload, size_t len);
/* One value for a function or kernel and every handle that names the same code
 * (a kernel and the functions taken from it): its module and name, hashed;
 * the handle itself when the client knows neither. */
GW_HIDDEN uint64_t gw_fn_identity(uint64_t handle);
/* Function attributes go back to their defaults with their context (func_attrs.c). */
GW_HIDDEN void gw_attributes_reset(void);
/* Attribute values of a code on a device as loaded (bit a of mask: vals[a]
 * holds attribute a); once the application set one of its attributes, only
 * the read-only ones are taken. 1 if the static shared size differs from the
 * one read from its cubin (gw_attrs_shared_hint). */
GW_HIDDEN int gw_attrs_loaded(uint64_t code, int dev, uint32_t mask, const int32_t *vals);
/* A code's static shared memory size as its cubin gives it (checks a set of
 * the dynamic shared memory size before the worker's values arrive). */
GW_HIDDEN void gw_attrs_shared_hint(uint64_t code, uint32_t bytes);
/* Libraries whose functions the client read from their cubins, those checked
 * against the worker's information, and those that differed (modules.c). */
GW_HIDDEN void gw_image_info_figures(unsigned long long out[3]);
/* Drop every kept launch layout: one may have come from a wrong reading (launch.c). */
GW_HIDDEN void gw_layouts_forget(void);
/* Whether any stream capture is under way in the process (launch.c). */
GW_HIDDEN int gw_captures_active(void);
/* The parameter layout of a function named by the client, if its module's
 * information has arrived: 1 and the fields set, else 0. */
GW_HIDDEN int gw_function_layout(uint64_t fid, uint32_t *n, uint32_t **pairs, uint32_t *max_threads); /* *pairs: malloc'd, the caller frees it */
/* Is addr inside memory a graph alloc node was given (graph_memory.c)? */
GW_HIDDEN int gw_graph_mem_has(uint64_t addr);
/* A conditional node (graph_conditional.c): sent as cuGraphAddNode_v2; p->phGraph_out set on success. */
GW_HIDDEN CUresult gw_graph_add_conditional(CUgraphNode *out, CUgraph g, const CUgraphNode *deps, size_t n,
                                            CUDA_CONDITIONAL_NODE_PARAMS *p);
/* The arguments of a call of f (kernelParams or `extra`, as cuLaunchKernel
 * takes them) packed into its parameter buffer layout, as a launch sends them;
 * buf holds GW_MAX_PARAM_BYTES. May wait for the layout: call it before
 * beginning a request (launch.c). */
#define GW_MAX_PARAM_BYTES 32764u /* the driver's limit for a kernel parameter buffer */
GW_HIDDEN CUresult gw_pack_args(CUfunction f, void **kernelParams, void **extra, uint8_t *buf, uint32_t *nbytes);

/* ---- uploads of large blobs through the worker's staging buffer (modules.c) ---- */
GW_HIDDEN CUresult gw_stage_upload(const void *data, size_t size);

/* ---- export tables (export_tables.c) ---- */
CUresult gw_export_table_get(const void **ppExportTable, const CUuuid *pExportTableId);

#endif
