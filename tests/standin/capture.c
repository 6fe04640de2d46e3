/* TEST DOUBLE: gpuwire CPU stand-in driver. Stream capture, only as far as its
 * bookkeeping: a capture begins and ends on a created stream, the stream reports
 * it (status, id, the graph, no dependencies), and the graph it gives can be
 * destroyed. Work sent to a capturing stream still runs at once: no test records
 * work into a graph on the stand-in. */
#include "standin.h"

#include <stdlib.h>

typedef struct sd_graph {
    sd_obj h;
} sd_graph;

static CUresult capturing_stream(CUstream s, sd_stream **out)
{
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r != CUDA_SUCCESS)
        return r;
    if (s == NULL || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD)
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED; /* the legacy stream cannot be captured */
    if (!sd_obj_live(s, SD_STREAM))
        return CUDA_ERROR_INVALID_HANDLE;
    *out = (sd_stream *)s;
    return CUDA_SUCCESS;
}

/* A capture begins on s into g, or into a graph of its own when g is NULL. */
static CUresult begin(CUstream s, CUgraph g, CUstreamCaptureMode mode)
{
    if ((unsigned)mode > (unsigned)CU_STREAM_CAPTURE_MODE_RELAXED)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_stream *st;
    CUresult r = capturing_stream(s, &st);
    if (r == CUDA_SUCCESS && g && !sd_obj_live(g, SD_GRAPH))
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS && st->capture)
        r = CUDA_ERROR_ILLEGAL_STATE;
    sd_graph *own = NULL;
    if (r == CUDA_SUCCESS && !g && (!(own = calloc(1, sizeof *own)) || (own->h.kind = SD_GRAPH, sd_obj_add(own)))) {
        free(own);
        r = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (r == CUDA_SUCCESS) {
        st->capture = g ? (sd_graph *)g : own;
        st->capture_id = sd_next_id();
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuStreamBeginCapture_v2(CUstream s, CUstreamCaptureMode mode) { return begin(s, NULL, mode); }

/* Capture into a graph the caller made: the capture ends by handing back that graph. */
SD_API CUresult cuStreamBeginCaptureToGraph(CUstream s, CUgraph g, const CUgraphNode *deps,
                                            const CUgraphEdgeData *edges, size_t n, CUstreamCaptureMode mode)
{
    (void)edges;
    if (!g || (n && !deps))
        return CUDA_ERROR_INVALID_VALUE;
    return begin(s, g, mode);
}

SD_API CUresult cuStreamEndCapture(CUstream s, CUgraph *pg)
{
    if (!pg)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_stream *st;
    CUresult r = capturing_stream(s, &st);
    if (r == CUDA_SUCCESS && !st->capture)
        r = CUDA_ERROR_ILLEGAL_STATE;
    if (r == CUDA_SUCCESS) {
        *pg = (CUgraph)st->capture;
        st->capture = NULL;
    }
    sd_unlock();
    return r;
}

static CUresult info(CUstream s, CUstreamCaptureStatus *status, cuuint64_t *id, CUgraph *graph,
                     const CUgraphNode **deps, const CUgraphEdgeData **edges, size_t *num)
{
    if (!status)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    sd_stream *st = NULL;
    if (r == CUDA_SUCCESS && s && s != CU_STREAM_LEGACY && s != CU_STREAM_PER_THREAD) {
        if (sd_obj_live(s, SD_STREAM))
            st = (sd_stream *)s;
        else
            r = CUDA_ERROR_INVALID_HANDLE;
    }
    if (r == CUDA_SUCCESS) {
        *status = st && st->capture ? CU_STREAM_CAPTURE_STATUS_ACTIVE : CU_STREAM_CAPTURE_STATUS_NONE;
        if (st && st->capture) {
            if (id)
                *id = st->capture_id;
            if (graph)
                *graph = (CUgraph)st->capture;
            if (deps)
                *deps = NULL;
            if (edges)
                *edges = NULL;
            if (num)
                *num = 0;
        }
    }
    sd_unlock();
    return r;
}

/* The capture's dependencies replaced or added to (gpuwire's captured copies
 * from host memory, as nodes of the capture's graph): the stand-in keeps none,
 * so only the arguments are checked. */
SD_API CUresult cuStreamUpdateCaptureDependencies_v2(CUstream s, CUgraphNode *deps, const CUgraphEdgeData *data,
                                                     size_t n, unsigned int flags)
{
    (void)data;
    if (flags > CU_STREAM_SET_CAPTURE_DEPENDENCIES || (n && !deps))
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_stream *st;
    CUresult r = capturing_stream(s, &st);
    if (r == CUDA_SUCCESS && !st->capture)
        r = CUDA_ERROR_ILLEGAL_STATE;
    for (size_t i = 0; r == CUDA_SUCCESS && i < n; i++)
        if (!sd_obj_live(deps[i], SD_GRAPH_NODE))
            r = CUDA_ERROR_INVALID_VALUE;
    sd_unlock();
    return r;
}

SD_API CUresult cuStreamIsCapturing(CUstream s, CUstreamCaptureStatus *status)
{
    return info(s, status, NULL, NULL, NULL, NULL, NULL);
}

SD_API CUresult cuStreamGetCaptureInfo_v2(CUstream s, CUstreamCaptureStatus *status, cuuint64_t *id, CUgraph *graph,
                                          const CUgraphNode **deps, size_t *num)
{
    return info(s, status, id, graph, deps, NULL, num);
}

SD_API CUresult cuStreamGetCaptureInfo_v3(CUstream s, CUstreamCaptureStatus *status, cuuint64_t *id, CUgraph *graph,
                                          const CUgraphNode **deps, const CUgraphEdgeData **edges, size_t *num)
{
    return info(s, status, id, graph, deps, edges, num);
}

SD_API CUresult cuGraphDestroy(CUgraph g)
{
    sd_lock();
    int live = sd_obj_live(g, SD_GRAPH);
    if (live) {
        sd_graph_drop_nodes(g);
        sd_obj_del(g);
    }
    sd_unlock();
    if (!live)
        return CUDA_ERROR_INVALID_VALUE;
    free(g);
    return CUDA_SUCCESS;
}
