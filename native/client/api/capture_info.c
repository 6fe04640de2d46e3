/* cuStreamGetCaptureInfo, every version: outside any capture (the client sees
 * every capture begin and end) the answer is "not capturing", given here; during
 * one the worker answers, and the dependency and edge arrays it returns live in
 * per-thread buffers, valid until the thread's next such call. */
#include <stdlib.h>
#include <string.h>

#include "../../common/capture_info.h"
#include "api.h"

static _Thread_local CUgraphNode *tls_nodes;
static _Thread_local CUgraphEdgeData *tls_edges;
static _Thread_local size_t tls_cap;

static int reserve(size_t n)
{
    if (n <= tls_cap)
        return 0;
    CUgraphNode *nodes = realloc(tls_nodes, n * sizeof *nodes);
    if (!nodes)
        return -1;
    tls_nodes = nodes;
    CUgraphEdgeData *edges = realloc(tls_edges, n * sizeof *edges);
    if (!edges)
        return -1;
    tls_edges = edges;
    tls_cap = n;
    return 0;
}

static CUresult info(unsigned op, CUstream s, CUstreamCaptureStatus *st, cuuint64_t *id, CUgraph *graph,
                     const CUgraphNode **deps, const CUgraphEdgeData **edges, size_t *num)
{
    if (!st)
        return CUDA_ERROR_INVALID_VALUE;
    if (!gw_captures_active() && gw_initialized()) {
        gw_stat_call(op);
        *st = CU_STREAM_CAPTURE_STATUS_NONE;
        return CUDA_SUCCESS;
    }
    uint32_t want = (id ? GW_CAPINFO_ID : 0) | (graph ? GW_CAPINFO_GRAPH : 0) | (deps ? GW_CAPINFO_DEPS : 0) |
                    (edges ? GW_CAPINFO_EDGES : 0) | (num ? GW_CAPINFO_COUNT : 0);
    gw_req *q = gw_req_begin(op); /* CAPTURE_INFO in codegen/protocol.txt */
    gw_put_fields(q, gw_capture_info_req, {.stream = (uint64_t)(uintptr_t)s, .outputs = want});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    gw_capture_info_rep rep = {0};
    if (rc == CUDA_SUCCESS && gw_get_fields(r, gw_capture_info_rep, &rep))
        rc = gw_rep_status(r, rc); /* short */
    if (rc == CUDA_SUCCESS) {
        CUstreamCaptureStatus status = (CUstreamCaptureStatus)rep.status;
        uint64_t capture_id = rep.id;
        CUgraph g = (CUgraph)(uintptr_t)rep.graph;
        uint64_t count = rep.count, n = rep.n;
        /* n node ids and as many edge records must fit in what arrived */
        if (n > count || n > (1u << 24) || reserve((size_t)n)) {
            gw_log("cuStreamGetCaptureInfo: %llu dependencies in the reply, more than it can hold",
                   (unsigned long long)n);
            rc = CUDA_ERROR_UNKNOWN;
        } else {
            for (uint64_t i = 0; i < n; i++) {
                gw_capture_info_rep_nodes_item it = {0};
                gw_get_part(r, gw_capture_info_rep_nodes_item, &it); /* short: the status below says so */
                tls_nodes[i] = (CUgraphNode)(uintptr_t)it.node;
            }
            gw_capture_info_rep_edges e = {0};
            if (want & GW_CAPINFO_EDGES)
                gw_get_part(r, gw_capture_info_rep_edges, &e);
            int has_edges = (int)e.given;
            if (has_edges) /* edge_data: n raw CUgraphEdgeData */
                gw_get_bytes(r, tls_edges, (size_t)n * sizeof *tls_edges);
            rc = gw_rep_status(r, rc);
            if (rc == CUDA_SUCCESS) {
                *st = status;
                if (id)
                    *id = capture_id;
                if (graph)
                    *graph = g;
                if (deps)
                    *deps = n ? tls_nodes : NULL;
                if (edges)
                    *edges = has_edges ? tls_edges : NULL;
                if (num)
                    *num = (size_t)count;
            }
        }
    }
    gw_rep_end(r);
    return rc;
}

#undef cuStreamGetCaptureInfo
#undef cuStreamGetCaptureInfo_v2
#undef cuStreamGetCaptureInfo_v3
CUresult CUDAAPI cuStreamGetCaptureInfo(CUstream s, CUstreamCaptureStatus *st, cuuint64_t *id);
CUresult CUDAAPI cuStreamGetCaptureInfo_ptsz(CUstream s, CUstreamCaptureStatus *st, cuuint64_t *id);
CUresult CUDAAPI cuStreamGetCaptureInfo_v2(CUstream s, CUstreamCaptureStatus *st, cuuint64_t *id, CUgraph *g,
                                           const CUgraphNode **deps, size_t *num);
CUresult CUDAAPI cuStreamGetCaptureInfo_v2_ptsz(CUstream s, CUstreamCaptureStatus *st, cuuint64_t *id, CUgraph *g,
                                                const CUgraphNode **deps, size_t *num);
CUresult CUDAAPI cuStreamGetCaptureInfo_v3(CUstream s, CUstreamCaptureStatus *st, cuuint64_t *id, CUgraph *g,
                                           const CUgraphNode **deps, const CUgraphEdgeData **edges, size_t *num);
CUresult CUDAAPI cuStreamGetCaptureInfo_v3_ptsz(CUstream s, CUstreamCaptureStatus *st, cuuint64_t *id, CUgraph *g,
                                                const CUgraphNode **deps, const CUgraphEdgeData **edges,
                                                size_t *num);

CUresult CUDAAPI cuStreamGetCaptureInfo(CUstream s, CUstreamCaptureStatus *st, cuuint64_t *id)
{ return info(GW_OP_cuStreamGetCaptureInfo, s, st, id, NULL, NULL, NULL, NULL); }
CUresult CUDAAPI cuStreamGetCaptureInfo_ptsz(CUstream s, CUstreamCaptureStatus *st, cuuint64_t *id)
{ return info(GW_OP_cuStreamGetCaptureInfo_ptsz, s, st, id, NULL, NULL, NULL, NULL); }
CUresult CUDAAPI cuStreamGetCaptureInfo_v2(CUstream s, CUstreamCaptureStatus *st, cuuint64_t *id, CUgraph *g,
                                           const CUgraphNode **deps, size_t *num)
{ return info(GW_OP_cuStreamGetCaptureInfo_v2, s, st, id, g, deps, NULL, num); }
CUresult CUDAAPI cuStreamGetCaptureInfo_v2_ptsz(CUstream s, CUstreamCaptureStatus *st, cuuint64_t *id, CUgraph *g,
                                                const CUgraphNode **deps, size_t *num)
{ return info(GW_OP_cuStreamGetCaptureInfo_v2_ptsz, s, st, id, g, deps, NULL, num); }
CUresult CUDAAPI cuStreamGetCaptureInfo_v3(CUstream s, CUstreamCaptureStatus *st, cuuint64_t *id, CUgraph *g,
                                           const CUgraphNode **deps, const CUgraphEdgeData **edges, size_t *num)
{ return info(GW_OP_cuStreamGetCaptureInfo_v3, s, st, id, g, deps, edges, num); }
CUresult CUDAAPI cuStreamGetCaptureInfo_v3_ptsz(CUstream s, CUstreamCaptureStatus *st, cuuint64_t *id, CUgraph *g,
                                                const CUgraphNode **deps, const CUgraphEdgeData **edges,
                                                size_t *num)
{ return info(GW_OP_cuStreamGetCaptureInfo_v3_ptsz, s, st, id, g, deps, edges, num); }
