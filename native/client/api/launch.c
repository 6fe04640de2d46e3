/* Kernel launches: the arguments the application points at are packed into
 * the kernel's parameter buffer layout (offsets and sizes the worker reports
 * once per function) and travel by value; the worker rebuilds kernelParams.
 * Page-locked memory the arguments point into is made a mapped range first
 * (state/arg_pointers.c), as the kernel may dereference it (UVA). */
#include <string.h>

#include "api.h"

#define MAX_PARAM_BYTES GW_MAX_PARAM_BYTES
#define MAX_LAUNCH_ATTRS GW_LAUNCH_CONFIG_REQ_ATTRS_MAX

/* LAUNCH's parameters (codegen/protocol.txt), packed already */
static void put_args(gw_req *q, const uint8_t *buf, uint32_t n)
{
    gw_put_fields(q, gw_launch_req_after_config, {.param_bytes = n});
    gw_put_raw(q, buf, n);
}

/* LAUNCH_CONFIG: nattrs <= GW_LAUNCH_CONFIG_REQ_ATTRS_MAX, checked by the callers */
static void put_config(gw_req *q, CUfunction f, const uint32_t dims[7], CUstream s, const CUlaunchAttribute *attrs,
                       unsigned nattrs)
{
    gw_launch_config_req c = {.function = (uint64_t)(uintptr_t)f, .stream = (uint64_t)(uintptr_t)s,
                              .attr_count = nattrs};
    memcpy(c.dims, dims, sizeof c.dims);
    uint8_t b[sizeof c];
    gw_put_raw(q, b, gw_launch_config_req_put(b, &c));
    for (unsigned i = 0; i < nattrs; i++) /* handles inside are gpuwire ids already */
        gw_put_fields(q, gw_launch_config_req_attrs_item, {.attr = attrs[i]});
}

/* What the driver refuses at once, refused here at once: launches are posted
 * without waiting, so anything found later surfaces at the next sync point. */
static CUresult check_config(const gw_layout *l, const uint32_t d[7])
{
    int dev = gw_current_device();
    const int *lim = dev < 0 ? NULL : gw_device_launch_limits(dev);
    if (!lim)
        return CUDA_SUCCESS; /* context unknown here: the server checks it */
    for (int i = 0; i < 6; i++) {
        if (d[i] == 0)
            return CUDA_ERROR_INVALID_VALUE;
        if (lim[i] >= 0 && d[i] > (uint32_t)lim[i])
            return CUDA_ERROR_INVALID_VALUE;
    }
    uint64_t threads = (uint64_t)d[3] * d[4] * d[5];
    if (lim[6] >= 0 && threads > (uint64_t)lim[6])
        return CUDA_ERROR_INVALID_VALUE;
    if (l->max_threads && threads > l->max_threads)
        return CUDA_ERROR_INVALID_VALUE;
    if (lim[7] >= 0 && d[6] > (uint32_t)lim[7])
        return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

static CUresult launch(unsigned op, CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                       unsigned bz, unsigned shmem, CUstream s, void **kernelParams, void **extra,
                       const CUlaunchAttribute *attrs, unsigned nattrs)
{
    gw_stat_call(op);
    if (kernelParams && extra)
        return CUDA_ERROR_INVALID_VALUE;
    if (nattrs > MAX_LAUNCH_ATTRS || (nattrs && !attrs))
        return CUDA_ERROR_INVALID_VALUE;
    const gw_layout *l;
    CUresult rc = gw_layout_of(f, &l);
    if (rc != CUDA_SUCCESS)
        return rc;
    uint32_t dims[7] = {gx, gy, gz, bx, by, bz, shmem};
    rc = check_config(l, dims);
    if (rc != CUDA_SUCCESS)
        return rc;
    uint8_t buf[MAX_PARAM_BYTES];
    uint32_t n;
    rc = gw_layout_pack(l, kernelParams, extra, buf, &n);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_args_map_pinned(l, buf, n); /* may make a round trip: before the request is begun */
    gw_req *q = gw_req_begin_quiet(op);
    put_config(q, f, dims, s, attrs, nattrs);
    put_args(q, buf, n);
    gw_fence_unsafe(op, (uint64_t)(uintptr_t)s); /* a kernel may fault later (state/stream_fences.c) */
    return gw_req_post(q);
}

CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                                unsigned int by, unsigned int bz, unsigned int shmem, CUstream s,
                                void **kernelParams, void **extra)
{
    return launch(GW_OP_cuLaunchKernel, f, gx, gy, gz, bx, by, bz, shmem, s, kernelParams, extra, NULL, 0);
}

CUresult CUDAAPI cuLaunchKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                     unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem,
                                     CUstream s, void **kernelParams, void **extra)
{
    return launch(GW_OP_cuLaunchKernel_ptsz, f, gx, gy, gz, bx, by, bz, shmem, s, kernelParams, extra, NULL, 0);
}

CUresult CUDAAPI cuLaunchCooperativeKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                           unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem,
                                           CUstream s, void **kernelParams)
{
    return launch(GW_OP_cuLaunchCooperativeKernel, f, gx, gy, gz, bx, by, bz, shmem, s, kernelParams, NULL, NULL, 0);
}

CUresult CUDAAPI cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                                unsigned int bx, unsigned int by, unsigned int bz,
                                                unsigned int shmem, CUstream s, void **kernelParams)
{
    return launch(GW_OP_cuLaunchCooperativeKernel_ptsz, f, gx, gy, gz, bx, by, bz, shmem, s, kernelParams, NULL,
                  NULL, 0);
}

CUresult CUDAAPI cuLaunchKernelEx(const CUlaunchConfig *c, CUfunction f, void **kernelParams, void **extra)
{
    if (!c)
        return CUDA_ERROR_INVALID_VALUE;
    return launch(GW_OP_cuLaunchKernelEx, f, c->gridDimX, c->gridDimY, c->gridDimZ, c->blockDimX, c->blockDimY,
                  c->blockDimZ, c->sharedMemBytes, c->hStream, kernelParams, extra, c->attrs, c->numAttrs);
}

CUresult CUDAAPI cuLaunchKernelEx_ptsz(const CUlaunchConfig *c, CUfunction f, void **kernelParams, void **extra)
{
    if (!c)
        return CUDA_ERROR_INVALID_VALUE;
    return launch(GW_OP_cuLaunchKernelEx_ptsz, f, c->gridDimX, c->gridDimY, c->gridDimZ, c->blockDimX,
                  c->blockDimY, c->blockDimZ, c->sharedMemBytes, c->hStream, kernelParams, extra, c->attrs,
                  c->numAttrs);
}

/* Cluster occupancy queries take a launch configuration too. Their answers
 * hold until a function's attributes change (state/func_attrs.c forgets
 * them then): cuBLASLt asks the same ones around its GEMMs, a round trip
 * each before (llama.cpp's prompt processing, issue 20). */
static CUresult cluster_query(unsigned op, int *out, CUfunction f, const CUlaunchConfig *c)
{
    gw_stat_call(op);
    if (!out || !c || c->numAttrs > MAX_LAUNCH_ATTRS || (c->numAttrs && !c->attrs))
        return CUDA_ERROR_INVALID_VALUE;
    gw_req *q = gw_req_begin_quiet(op);
    uint32_t dims[7] = {c->gridDimX, c->gridDimY, c->gridDimZ, c->blockDimX, c->blockDimY, c->blockDimZ,
                        c->sharedMemBytes};
    put_config(q, f, dims, c->hStream, c->attrs, c->numAttrs);
    gw_rep *r;
    CUresult rc = gw_req_call_cached(q, &r);
    if (rc == CUDA_SUCCESS) { /* CLUSTER_OCCUPANCY */
        gw_cluster_occupancy_rep rep = {0};
        gw_get_fields(r, gw_cluster_occupancy_rep, &rep); /* short: the status below says so */
        *out = (int)rep.value;
        rc = gw_rep_status(r, rc);
    }
    gw_rep_end(r);
    return rc;
}

CUresult CUDAAPI cuOccupancyMaxActiveClusters(int *numClusters, CUfunction func, const CUlaunchConfig *config)
{ return cluster_query(GW_OP_cuOccupancyMaxActiveClusters, numClusters, func, config); }
CUresult CUDAAPI cuOccupancyMaxPotentialClusterSize(int *clusterSize, CUfunction func, const CUlaunchConfig *config)
{ return cluster_query(GW_OP_cuOccupancyMaxPotentialClusterSize, clusterSize, func, config); }

/* ---- stream capture: while no capture is under way anywhere in the process
 * (they all begin and end through the client, counted in state/captures.c),
 * no stream is capturing ---- */

static CUresult began(CUresult rc)
{
    if (rc == CUDA_SUCCESS)
        gw_capture_began();
    return rc;
}

CUresult CUDAAPI cuStreamBeginCapture_v2(CUstream s, CUstreamCaptureMode mode)
{ return began(gwf_cuStreamBeginCapture_v2(s, mode)); }
CUresult CUDAAPI cuStreamBeginCapture_v2_ptsz(CUstream s, CUstreamCaptureMode mode)
{ return began(gwf_cuStreamBeginCapture_v2_ptsz(s, mode)); }
/* capture into a graph the application made (graphConditionalNodes) */
CUresult CUDAAPI cuStreamBeginCaptureToGraph(CUstream s, CUgraph g, const CUgraphNode *deps,
                                             const CUgraphEdgeData *edges, size_t n, CUstreamCaptureMode mode)
{ return began(gwf_cuStreamBeginCaptureToGraph(s, g, deps, edges, n, mode)); }
CUresult CUDAAPI cuStreamBeginCaptureToGraph_ptsz(CUstream s, CUgraph g, const CUgraphNode *deps,
                                                  const CUgraphEdgeData *edges, size_t n, CUstreamCaptureMode mode)
{ return began(gwf_cuStreamBeginCaptureToGraph_ptsz(s, g, deps, edges, n, mode)); }

CUresult CUDAAPI cuStreamEndCapture(CUstream s, CUgraph *g)
{
    CUresult rc = gwf_cuStreamEndCapture(s, g);
    gw_capture_ended();
    return rc;
}

CUresult CUDAAPI cuStreamEndCapture_ptsz(CUstream s, CUgraph *g)
{
    CUresult rc = gwf_cuStreamEndCapture_ptsz(s, g);
    gw_capture_ended();
    return rc;
}

static CUresult is_capturing(unsigned op, int ptsz, CUstream s, CUstreamCaptureStatus *st)
{
    if (st && !gw_captures_active() && gw_initialized()) {
        gw_stat_call(op);
        *st = CU_STREAM_CAPTURE_STATUS_NONE;
        return CUDA_SUCCESS;
    }
    return ptsz ? gwf_cuStreamIsCapturing_ptsz(s, st) : gwf_cuStreamIsCapturing(s, st);
}

CUresult CUDAAPI cuStreamIsCapturing(CUstream s, CUstreamCaptureStatus *st)
{ return is_capturing(GW_OP_cuStreamIsCapturing, 0, s, st); }
CUresult CUDAAPI cuStreamIsCapturing_ptsz(CUstream s, CUstreamCaptureStatus *st)
{ return is_capturing(GW_OP_cuStreamIsCapturing_ptsz, 1, s, st); }
