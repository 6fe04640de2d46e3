/* The client's driver calls written by hand, one file per driver concern
 * (contexts and devices answered in state/; here: init, copies, launches,
 * graphs, arrays and textures, pointers, callbacks, ...), beside the
 * generated forwarders. What these files share with one another. Nothing
 * here is exported. */
#ifndef GW_CLIENT_API_H
#define GW_CLIENT_API_H

#include "../state/state.h"

/* ---- CUDA arrays the client created (arrays.c) ---- */
GW_HIDDEN int gw_array_desc(CUarray h, CUDA_ARRAY3D_DESCRIPTOR *out); /* 0: not a live array */
GW_HIDDEN size_t gw_array_elem_size(CUarray_format f, unsigned channels); /* 0: not remoted */
GW_HIDDEN int gw_mipmap_desc(CUmipmappedArray h, CUDA_ARRAY3D_DESCRIPTOR *out, unsigned *levels); /* 0: unknown */

/* ---- graphs ---- */
/* A host-to-device copy on a capturing stream as a graph host source node: 1 if taken (*rc), 0 if not capturing (graph_sources.c). */
GW_HIDDEN int gw_graph_source_captured(int ptsz, CUdeviceptr dst, const void *src, size_t n, CUstream s, CUresult *rc);
GW_HIDDEN int gw_graph_dest_captured(int ptsz, void *dst, CUdeviceptr src, size_t n, CUstream s, CUresult *rc);
/* Is addr inside memory a graph alloc node was given (graph_memory.c)? */
GW_HIDDEN int gw_graph_mem_has(uint64_t addr);
/* A new node's DEPENDENCIES (codegen/protocol.txt): the ids the client knows them by (graph_nodes.c). */
GW_HIDDEN void gw_put_dependencies(gw_req *q, const CUgraphNode *deps, size_t n);
/* A conditional node (graph_conditional.c): sent as cuGraphAddNode_v2; p->phGraph_out set on success. */
GW_HIDDEN CUresult gw_graph_add_conditional(CUgraphNode *out, CUgraph g, const CUgraphNode *deps, size_t n,
                                            CUDA_CONDITIONAL_NODE_PARAMS *p);

/* ---- several servers: a copy between two servers' device memory, staged
 * through the client (cross_server.c); a NULL context: the allocation's ---- */
GW_HIDDEN CUresult gw_cross_server_copy(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n,
                                        int has_stream, CUstream s);

/* Device locations inside structures (mem_locations.c; several servers): a
 * DEVICE location's client ordinal made its server's (*server joins it;
 * INVALID_DEVICE for no such device, INVALID_HANDLE with a line for a second
 * server), and an answer's location of server k made the client's. */
GW_HIDDEN CUresult gw_mem_location_to_server(unsigned op, CUmemLocation *loc, int *server);
GW_HIDDEN void gw_mem_location_to_client(CUmemLocation *loc, int k);

#endif
