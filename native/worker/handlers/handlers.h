/* gpuwire data-plane worker, handler layer (native/worker/handlers/): one
 * file per driver concern, plus the generated handlers
 * (native/generated/worker_dispatch.c). Handlers decode a request, call the
 * driver and build the reply with the floor (core/core.h); they never call
 * the engine (native/worker/engine/), which calls them. What one handler file
 * offers another, and the engine's entry points into them, are declared here. */
#ifndef GW_WORKER_HANDLERS_H
#define GW_WORKER_HANDLERS_H

#include "../core/core.h"
#include "../../generated/wire_formats.h" /* the hand-written formats' codecs (codegen/protocol.txt) */

extern const gw_handler gw_dispatch[GW_OP_COUNT]; /* generated, by op - 256 */

/* ---- control ops (the engine's dispatch names them by op) ---- */
void gw_op_stage(gw_call *c);        /* GW_OP_STAGE (modules.c) */
void gw_op_func_layout(gw_call *c);  /* GW_OP_FUNC_LAYOUT (modules.c) */
void gw_op_device_attrs(gw_call *c); /* GW_OP_DEVICE_ATTRS (modules.c) */
void gw_op_cas_refs(gw_call *c);     /* GW_OP_CAS_REFS (cas_ops.c) */
void gw_op_cas_data(gw_call *c);     /* GW_OP_CAS_DATA (cas_ops.c) */
void gw_op_deliver(gw_call *c);      /* GW_OP_DELIVER (deliveries.c) */
void gw_op_mapped_map(gw_call *c);   /* GW_OP_MAPPED_MAP (mapped.c) */
void gw_op_mapped_unmap(gw_call *c); /* GW_OP_MAPPED_UNMAP (mapped.c) */
void gw_op_mapped_read(gw_call *c);  /* GW_OP_MAPPED_READ (mapped.c) */
void gw_op_staging_fill(gw_call *c); /* GW_OP_STAGING_FILL (graph_sources.c) */
void gw_op_staging_free(gw_call *c); /* GW_OP_STAGING_FREE (graph_sources.c) */
void gw_op_nvml_table_call(gw_call *c); /* GW_OP_NVML_TABLE_CALL (nvml_internal.c) */
/* GW_OP_MAPPED_WRITE, applied by the reader as it reads the frame (mapped.c):
 * 0, or -1 and why (the session ends) */
int gw_mapped_write(const uint8_t *payload, uint32_t len, char *why, size_t whycap);
/* GW_OP_HOST_RETURNED, taken by the reader as it reads the frame (host_calls.c):
 * the waiting host function's stream goes on; 0, or -1 and why (the session ends) */
int gw_host_returned(const uint8_t *payload, uint32_t len, char *why, size_t whycap);

/* ---- device-to-host copies delivered without a wait (deliveries.c) ---- */
void gw_deliveries_flush(void); /* delivered bytes to the client: before every reply */
void gw_deliveries_flush_outbox(void); /* the same where CUDA cannot be called (a host function) */
void gw_deliveries_before_host_call(void); /* a host call is queued: pending copies go first */
/* copies staged in the lanes' piece buffers so far, and those whose bytes went on the lanes */
void gw_deliveries_counts(unsigned long long *chunked, unsigned long long *on_lanes);
/* a graph memcpy node into the client's memory: staging for it, then the host
 * node after it that delivers the bytes as delivery id at every launch */
void *gw_delivery_staging(size_t n);
void gw_delivery_staging_unused(void *staging, size_t n); /* its memcpy node was never made */
CUresult gw_delivery_node(CUgraph g, CUgraphNode copy_node, uint64_t id, void *staging, size_t n);
/* a graph memcpy node from the client's memory: device staging of n bytes
 * under the client's id, in ctx if given (graph_sources.c); a bad id or size fails the call */
CUresult gw_graph_source_staging(gw_call *c, uint64_t id, uint64_t n, CUcontext ctx, CUdeviceptr *dptr);
void gw_graph_source_unused(uint64_t id); /* its memcpy node was never made */

/* ---- staged blobs: module images sent in pieces (modules.c) ---- */
const void *gw_staged(uint32_t tid, size_t size); /* the complete staged blob of that size, or NULL */
uint8_t *gw_stage_reset(uint32_t tid, uint64_t total); /* a fresh zeroed blob; NULL if too big or no memory */
/* n bytes at off (src NULL: already written there) count as filled; -1 if outside the blob */
int gw_stage_fill(uint32_t tid, uint64_t off, const void *src, size_t n);

/* ---- launches (launch.c) ---- */
void gw_launch_install(void **syms); /* watch unloads, which invalidate cached layouts */
void gw_graph_view_install(void **syms); /* graphs' node lists without gpuwire's own nodes (graph_view.c) */
int gw_delivery_is_node(CUgraphNode n); /* one of deliveries.c's host nodes */
/* f's parameter layout as the driver reports it: n offsets into offs, their
 * sizes into sizes (if not NULL; both hold GW_MAX_PARAM_BYTES / 4), *end the
 * byte after the last parameter. 0, or -1 if the driver cannot tell. */
int gw_param_layout(void *f, int is_kernel, uint32_t *offs, uint32_t *sizes, uint32_t *n, uint32_t *end);
/* The id of a CUkernel or a CUfunction: the real handle (is_kernel says which) */
void *gw_function_of(gw_call *c, uint64_t id, int *is_kernel);
/* A new graph node's DEPENDENCIES (codegen/protocol.txt): the nodes, *m of
 * them (NULL when none or the request failed); noun names them in errors. */
CUgraphNode *gw_in_dependencies(gw_call *c, uint32_t *m, const char *noun);
/* A packed parameter buffer of nbytes (<= GW_MAX_PARAM_BYTES) as kernelParams
 * for f (thread-local until this thread's next call); not CUDA_SUCCESS: answer it. */
CUresult gw_kernel_params(gw_call *c, void *f, int is_kernel, const uint8_t *params, uint32_t nbytes, void ***kp);

#endif
