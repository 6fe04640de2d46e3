/* The client's state layer: what the client knows and keeps of the
 * session's objects, above the wire and below the driver calls: contexts,
 * devices' fixed answers, memory (device ranges, pinned host memory,
 * delivered copies into it), modules and what their images say (kernel
 * layouts, function attributes), stream captures under way. Code above
 * learns of a context's end through gw_on_context_ending, never by being
 * named here. Nothing here is exported. */
#ifndef GW_CLIENT_STATE_H
#define GW_CLIENT_STATE_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#include "../../generated/gw_ops.h"
#include "../../generated/client_generated.h"
#include "../wire/wire_api.h"
#include "../../generated/wire_formats.h" /* the hand-written formats' codecs (codegen/protocol.txt) */

/* ---- several servers: which server device memory is on (server_memory.c) ---- */
GW_HIDDEN int gw_server_memory_add(uint64_t base, uint64_t size, int server); /* -1: overlaps another server's */
GW_HIDDEN int gw_server_memory_clashes(uint64_t base, uint64_t size, int server);
GW_HIDDEN void gw_server_memory_remove(uint64_t base);
GW_HIDDEN int gw_server_of_address(uint64_t addr); /* -1 if unknown; 0 with one server */
GW_HIDDEN CUcontext gw_server_memory_context(uint64_t addr); /* the context it was made in, NULL if unknown */
/* A call on addr's memory goes to its server, its context current there meanwhile. */
GW_HIDDEN int gw_memory_server_enter(uint64_t addr, CUcontext *pushed);
GW_HIDDEN void gw_memory_server_leave(int prev, CUcontext pushed);

/* ---- contexts (contexts.c) ---- */
GW_HIDDEN int gw_current_device(void); /* the calling thread's context's device, -1 if unknown */
GW_HIDDEN CUcontext gw_current_context(void); /* the calling thread's current context, NULL if none */
GW_HIDDEN void gw_kernel_functions_forget(void); /* the answers of lookups kept in modules.c: a context ended */
GW_HIDDEN int gw_context_device(CUcontext ctx); /* the device of a context this client made or retained, -1 if unknown */
/* fn(ctx) runs before a context is destroyed or reset, its handle not yet reusable */
GW_HIDDEN void gw_on_context_ending(void (*fn)(CUcontext ctx));

/* ---- devices (device.c) ---- */
#define GW_LAUNCH_LIMITS 8
GW_HIDDEN const int *gw_device_launch_limits(int dev); /* grid, block, threads, shared memory limits */

/* ---- memory bookkeeping (memory.c) ---- */
typedef enum { GW_MEM_NONE, GW_MEM_DEVICE, GW_MEM_HOST_PINNED, GW_MEM_MAPPED } gw_mem_kind; /* MAPPED: mapped.c's */
GW_HIDDEN void gw_mem_track_device(CUdeviceptr p, size_t size);
GW_HIDDEN void gw_mem_untrack_device(CUdeviceptr p);
GW_HIDDEN gw_mem_kind gw_mem_classify(uint64_t addr);
GW_HIDDEN int gw_mem_is_device_range(uint64_t addr, uint64_t n); /* inside one known device allocation */
GW_HIDDEN int gw_mem_is_pinned_range(uint64_t addr, uint64_t n); /* inside one pinned host allocation */
/* [addr, addr+n) as an asynchronous call's device operand: 1 if it lies in
 * device memory the client knows, or in page-locked memory, which becomes a
 * mapped range for it (UVA programs memset page-locked pointers directly). */
GW_HIDDEN int gw_mem_device_use(uint64_t addr, uint64_t n);
/* The [*lo, *hi) span around every page-locked allocation the device does
 * not see yet (*lo == *hi: none); lock-free, for a scan of each launch. */
GW_HIDDEN void gw_mem_pinned_span(uint64_t *lo, uint64_t *hi);
/* 0 if addr (inside that span) lies in no such allocation; lock-free too */
GW_HIDDEN int gw_mem_maybe_pinned(uint64_t addr);
/* addr, a word of a kernel's arguments, points into page-locked memory the
 * device does not see yet: that allocation becomes a mapped range now (1).
 * Call it before beginning a request. */
GW_HIDDEN int gw_mem_kernel_arg_use(uint64_t addr);

/* ---- host memory the GPU sees: mapped and managed ranges (mapped.c) ---- */
enum { GW_MAPPED_HOST_ALLOC = 1, GW_MAPPED_REGISTER = 2, GW_MAPPED_MANAGED = 3 }; /* MAPPED_MAP's kinds */
/* a new range of `bytes` at an address the worker chooses (host allocation or managed) */
GW_HIDDEN CUresult gw_mapped_alloc(unsigned kind, unsigned flags, size_t bytes, uint64_t *out);
/* the program's own [p, p+bytes) (whole pages: *base the first) made a mapped range in place */
GW_HIDDEN CUresult gw_mapped_register(void *p, size_t bytes, unsigned flags, uint64_t *base);
GW_HIDDEN CUresult gw_mapped_release(uint64_t base, unsigned kind); /* CUDA_ERROR_INVALID_VALUE: no such range */
/* 1 if [addr, addr+n) lies inside one range (its base, kind and flags out; each may be NULL) */
GW_HIDDEN int gw_mapped_lookup(uint64_t addr, uint64_t n, uint64_t *base, unsigned *kind, unsigned *flags);
GW_HIDDEN int gw_mapped_overlaps(uint64_t addr, uint64_t n);
GW_HIDDEN int gw_mapped_live(void); /* 1 while any mapped or managed range exists */
/* gpuwire is about to read (0) or write (1) these bytes of the program's: made current, no fault inside */
GW_HIDDEN void gw_mapped_prepare(uint64_t addr, uint64_t n, int for_write);
GW_HIDDEN void gw_mapped_written_remotely(uint64_t addr, uint64_t n); /* a posted copy wrote them on the server */
GW_HIDDEN void gw_mapped_set_attach(uint64_t addr, unsigned flags); /* cuStreamAttachMemAsync's flags */
GW_HIDDEN void gw_mapped_flush(void);      /* the host's writes to the worker now */

/* ---- device-to-host copies into pinned memory, delivered without a wait (deliveries.c) ---- */
GW_HIDDEN int gw_deliveries_on(void);
GW_HIDDEN CUresult gw_deliver(int ptsz, void *dst, CUdeviceptr src, size_t n, CUstream s);
GW_HIDDEN void gw_deliveries_forget(uint64_t base, uint64_t size); /* pinned memory freed: waits, then forgets */
GW_HIDDEN uint64_t gw_delivery_for_node(void *dst, uint64_t n); /* a graph memcpy node's: delivered at every launch */
/* Bytes about to be read from host memory (a host-to-device copy): if a copy still
 * to be delivered writes into them, wait for it first (a synchronize). */
GW_HIDDEN CUresult gw_deliveries_settle(uint64_t addr, uint64_t n);

/* ---- graphs' host sources: memcpy nodes reading host memory at each launch (graph_sources.c);
 * owners are graph ids (exec 0) or executable graph ids (exec 1) ---- */
GW_HIDDEN uint64_t gw_graph_source_id(void); /* a fresh staging id */
/* the node of owner now reads this source (staging 0: none); what it read before is let go */
GW_HIDDEN CUresult gw_graph_source_set(uint64_t owner, int exec, CUgraphNode node, uint64_t staging, const void *src,
                                       uint64_t n);
GW_HIDDEN int gw_graph_source_owner(CUgraphNode node, uint64_t *graph); /* 1: a graph's node with a host source */
GW_HIDDEN CUresult gw_graph_sources_copy(uint64_t from, int from_exec, uint64_t to, int to_exec, int keep_nodes);
GW_HIDDEN void gw_graph_sources_release(uint64_t owner, int exec); /* destroyed: unused stagings freed */
GW_HIDDEN int gw_graph_sources_any(uint64_t owner, int exec);
GW_HIDDEN int gw_graph_source_of(CUgraphNode node, const void **src, uint64_t *n); /* a graph's node: 1 and its source */
GW_HIDDEN void gw_graph_sources_exec_updated(CUgraphExec e, CUgraph g); /* cuGraphExecUpdate succeeded */
GW_HIDDEN CUresult gw_graph_sources_fill(uint64_t exec, CUstream s, int ptsz); /* posted, before a launch */

/* ---- module images (image.c) ---- */
GW_HIDDEN size_t gw_image_size(const void *image); /* 0 if not recognised */
GW_HIDDEN const void *gw_image_unwrap(const void *image); /* a fatbin wrapper -> its fatbin */
/* The cubins of a fatbin for the targets want() accepts, at most max,
 * compressed ones unpacked where the system has the library (fatbin.c): how
 * many were found; free them with gw_fatbin_cubins_free. */
typedef struct gw_fatbin_cubin {
    const void *elf;
    size_t size;
    uint32_t arch; /* the entry's sm, e.g. 90 */
    void *owned;   /* the unpacked copy, if it was compressed */
} gw_fatbin_cubin;
GW_HIDDEN int gw_fatbin_cubins(const void *image, size_t size, int (*want)(uint32_t arch), gw_fatbin_cubin *out,
                               int max);
GW_HIDDEN void gw_fatbin_cubins_free(gw_fatbin_cubin *c, int n);
/* the program's own fatbins, loaded at cuInit (preload.c) */
GW_HIDDEN void gw_preload_start(void);
GW_HIDDEN int gw_preload_take(const void *image, uint64_t *id);
GW_HIDDEN CUresult gw_library_preload(const void *image, size_t size, uint64_t *id);

/* ---- what the client knows of loaded modules (modules.c) ---- */
/* One value for a function or kernel and every handle that names the same code
 * (a kernel and the functions taken from it): its module and name, hashed;
 * the handle itself when the client knows neither. */
GW_HIDDEN uint64_t gw_fn_identity(uint64_t handle);
/* Libraries whose functions the client read from their cubins, those checked
 * against the worker's information, and those that differed. */
GW_HIDDEN void gw_image_info_figures(unsigned long long out[3]);
/* The parameter layout of a function named by the client, if its module's
 * information has arrived: 1 and the fields set, else 0. */
GW_HIDDEN int gw_function_layout(uint64_t fid, uint32_t *n, uint32_t **pairs, uint32_t *max_threads); /* *pairs: malloc'd, the caller frees it */
/* uploads of large blobs through the worker's staging buffer */
GW_HIDDEN CUresult gw_stage_upload(const void *data, size_t size);

/* ---- function attributes (func_attrs.c) ---- */
/* Function attributes go back to their defaults with their context. */
GW_HIDDEN void gw_attributes_reset(void);
/* Attribute values of a code on a device as loaded (bit a of mask: vals[a]
 * holds attribute a); once the application set one of its attributes, only
 * the read-only ones are taken. 1 if the static shared size differs from the
 * one read from its cubin (gw_attrs_shared_hint). */
GW_HIDDEN int gw_attrs_loaded(uint64_t code, int dev, uint32_t mask, const int32_t *vals);
/* A code's static shared memory size as its cubin gives it (checks a set of
 * the dynamic shared memory size before the worker's values arrive). */
GW_HIDDEN void gw_attrs_shared_hint(uint64_t code, uint32_t bytes);

/* ---- kernel parameter layouts (kernel_layouts.c) ---- */
typedef struct gw_layout {
    uint32_t n, total;
    uint32_t max_threads; /* of this function; 0: unknown */
    uint32_t off[];
    /* followed by n sizes */
} gw_layout;
/* A function's or kernel's layout, fetched once (may wait for it). */
GW_HIDDEN CUresult gw_layout_of(CUfunction f, const gw_layout **out);
/* The arguments (kernelParams or `extra`, as cuLaunchKernel takes them)
 * packed into l's parameter buffer layout; buf holds GW_MAX_PARAM_BYTES. */
GW_HIDDEN CUresult gw_layout_pack(const gw_layout *l, void **kernelParams, void **extra, uint8_t *buf,
                                  uint32_t *nbytes);
/* Both at once, as a graph kernel node sends them. Call it before beginning a request. */
GW_HIDDEN CUresult gw_pack_args(CUfunction f, void **kernelParams, void **extra, uint8_t *buf, uint32_t *nbytes);
/* Drop every kept layout: one may have come from a wrong reading. */
GW_HIDDEN void gw_layouts_forget(void);

/* ---- stream fences (stream_fences.c): a synchronize posted when its stream
 * holds no work that can still fail or write host memory ---- */
#define GW_FENCE_DEFAULT_STREAM (~0ull) /* the call names no stream: its default stream */
/* the calling thread's next posted request of `op` is work on `stream` that may fail later */
GW_HIDDEN void gw_fence_unsafe(unsigned op, uint64_t stream);
GW_HIDDEN uint64_t gw_fence_mark(void); /* taken before a waited synchronize is sent */
GW_HIDDEN void gw_fence_collected(void); /* a waited call collected the thread's posted failures */
GW_HIDDEN void gw_fence_collected_on(int server); /* ... the waited call went to that server */
GW_HIDDEN int gw_fence_server_of(uint64_t stream); /* the server a synchronize of stream goes to */
/* a waited synchronize of the stream (op tells per-thread variants) returned success */
GW_HIDDEN void gw_fence_confirmed(unsigned op, uint64_t stream, uint64_t mark);
GW_HIDDEN void gw_fence_confirmed_all(uint64_t mark); /* ... of the whole context */
GW_HIDDEN int gw_fence_sync_may_post(unsigned op, uint64_t stream);

/* ---- pointers to page-locked memory inside kernel arguments (arg_pointers.c) ---- */
/* buf (n bytes) packed in l's layout, about to be launched or put in a graph:
 * every 8-byte word of it that points into page-locked memory the device does
 * not see yet makes that memory a mapped range (gw_mem_kernel_arg_use). Call
 * it before beginning the request. */
GW_HIDDEN void gw_args_map_pinned(const gw_layout *l, const uint8_t *buf, uint32_t n);

/* ---- stream captures under way (captures.c) ---- */
GW_HIDDEN int gw_captures_active(void);
GW_HIDDEN void gw_capture_began(void);
GW_HIDDEN void gw_capture_ended(void);

#endif
