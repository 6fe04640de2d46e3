/* cuStreamGetCaptureInfo (v1, v2, v3 and their per-thread-stream forms): the
 * dependency and edge arrays live in the driver, so they travel by value.
 * Format: CAPTURE_INFO in codegen/protocol.txt. */
#include <string.h>

#include "../../common/capture_info.h"
#include "handlers.h"

typedef CUresult (*info_v1)(CUstream, CUstreamCaptureStatus *, cuuint64_t *);
typedef CUresult (*info_v2)(CUstream, CUstreamCaptureStatus *, cuuint64_t *, CUgraph *, const CUgraphNode **,
                            size_t *);
typedef CUresult (*info_v3)(CUstream, CUstreamCaptureStatus *, cuuint64_t *, CUgraph *, const CUgraphNode **,
                            const CUgraphEdgeData **, size_t *);

static void info(gw_call *c, int version)
{
    gw_capture_info_req q = {0};
    CUstream s = NULL;
    if (gw_in_part(c, gw_capture_info_req, &q))
        s = (CUstream)gw_handle_lookup(c, GW_HT_CUstream, q.stream);
    uint32_t want = q.outputs;
    if (!c->bad && (want & ~GW_CAPINFO_ALL))
        gw_call_fail(c, "%s: unknown output bits %#x", gw_op_name(c->h.op), want);
    if (!gw_args_ok(c))
        return;
    void *fn = gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
    cuuint64_t id = 0;
    CUgraph graph = NULL;
    const CUgraphNode *deps = NULL;
    const CUgraphEdgeData *edges = NULL;
    size_t n = 0;
    /* the driver sees NULL wherever the application passed NULL: some answers
     * (CUDA_ERROR_LOSSY_QUERY without edge data) depend on it */
    cuuint64_t *pid = want & GW_CAPINFO_ID ? &id : NULL;
    CUgraph *pgraph = want & GW_CAPINFO_GRAPH ? &graph : NULL;
    const CUgraphNode **pdeps = want & GW_CAPINFO_DEPS ? &deps : NULL;
    const CUgraphEdgeData **pedges = want & GW_CAPINFO_EDGES ? &edges : NULL;
    size_t *pn = want & GW_CAPINFO_COUNT ? &n : NULL;
    CUresult r;
    if (version == 1)
        r = ((info_v1)fn)(s, &st, pid);
    else if (version == 2)
        r = ((info_v2)fn)(s, &st, pid, pgraph, pdeps, pn);
    else
        r = ((info_v3)fn)(s, &st, pid, pgraph, pdeps, pedges, pn);
    if (r != CUDA_SUCCESS) {
        gw_reply_result(c, r);
        return;
    }
    if (!deps)
        n = 0; /* a count without the array (or an idle stream) sends no nodes */
    gw_reply_first(c, gw_capture_info_rep,
                   {.result = r, .status = (uint32_t)st, .id = id, .graph = gw_handle_id(GW_HT_CUgraph, graph),
                    .count = pn ? (uint64_t)*pn : 0, .n = n});
    for (size_t i = 0; i < n; i++)
        gw_reply_fields(c, gw_capture_info_rep_nodes_item, {.node = gw_handle_id(GW_HT_CUgraphNode, deps[i])});
    if (want & GW_CAPINFO_EDGES) {
        gw_reply_fields(c, gw_capture_info_rep_edges, {.given = edges != NULL});
        if (edges) /* edge_data: n raw CUgraphEdgeData */
            gw_reply_bytes(c, edges, n * sizeof *edges);
    }
}

void gw_h_cuStreamGetCaptureInfo(gw_call *c) { info(c, 1); }
void gw_h_cuStreamGetCaptureInfo_ptsz(gw_call *c) { info(c, 1); }
void gw_h_cuStreamGetCaptureInfo_v2(gw_call *c) { info(c, 2); }
void gw_h_cuStreamGetCaptureInfo_v2_ptsz(gw_call *c) { info(c, 2); }
void gw_h_cuStreamGetCaptureInfo_v3(gw_call *c) { info(c, 3); }
void gw_h_cuStreamGetCaptureInfo_v3_ptsz(gw_call *c) { info(c, 3); }
