/* Peer copies (cuMemcpyPeer, cuMemcpyPeerAsync and their per-thread-stream
 * variants): device to device between two contexts, run on the server, so
 * their bytes never cross the wire (docs/multi-gpu.md). CUDA defines both as
 * asynchronous to the host, and the generated forwarders post them when both
 * ranges are device memory the client knows. A posted request's failure only
 * surfaces at the next synchronization, so a context the client has not seen
 * made or retained (a stale or made-up handle) goes as a waiting request
 * instead: the driver's CUDA_ERROR_INVALID_CONTEXT comes back at once, as
 * natively. */
#include "api.h"

#undef cuMemcpyPeer
#undef cuMemcpyPeerAsync

static int contexts_known(CUcontext dst, CUcontext src)
{
    return gw_context_device(dst) >= 0 && gw_context_device(src) >= 0;
}

/* Several servers: contexts of two servers (their handles say which): the
 * bytes are staged through the client (cross_server.c). */
#define ACROSS(dctx, sctx)                                                                                 \
    (gw_servers_n > 1 && gw_handle_server((uint64_t)(uintptr_t)(dctx)) >= 0 &&                             \
     gw_handle_server((uint64_t)(uintptr_t)(sctx)) >= 0 &&                                                 \
     gw_handle_server((uint64_t)(uintptr_t)(dctx)) != gw_handle_server((uint64_t)(uintptr_t)(sctx)))

/* Several servers and a NULL context: no server holds both ends, so none can
 * judge the call; a NULL context is never valid for a peer copy, answered as
 * the driver documents it (one server: the driver's own answer, forwarded). */
#define NO_CONTEXT(dctx, sctx) (gw_servers_n > 1 && (!(dctx) || !(sctx)))

/* The request the generated forwarder would send, waiting for its answer. */
static CUresult peer_waiting(unsigned op, CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n,
                             int has_stream, CUstream s)
{
    gw_req *q = gw_req_begin(op);
    gw_put_u64(q, (uint64_t)dst);
    gw_put_handle(q, (uint64_t)(uintptr_t)dctx);
    gw_put_u64(q, (uint64_t)src);
    gw_put_handle(q, (uint64_t)(uintptr_t)sctx);
    gw_put_u64(q, (uint64_t)n);
    if (has_stream)
        gw_put_u64(q, (uint64_t)(uintptr_t)s);
    gw_req_set_flags(q, GW_F_COLLECT);
    gw_rep *r;
    CUresult res = gw_req_call(q, &r);
    gw_rep_end(r);
    return res;
}

CUresult CUDAAPI cuMemcpyPeer(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n)
{
    if (NO_CONTEXT(dctx, sctx))
        return gw_stat_call(GW_OP_cuMemcpyPeer), CUDA_ERROR_INVALID_CONTEXT;
    if (ACROSS(dctx, sctx))
        return gw_stat_call(GW_OP_cuMemcpyPeer), gw_cross_server_copy(dst, dctx, src, sctx, n, 0, NULL);
    if (contexts_known(dctx, sctx))
        return gwf_cuMemcpyPeer(dst, dctx, src, sctx, n);
    return peer_waiting(GW_OP_cuMemcpyPeer, dst, dctx, src, sctx, n, 0, NULL);
}

CUresult CUDAAPI cuMemcpyPeer_ptds(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n)
{
    if (NO_CONTEXT(dctx, sctx))
        return gw_stat_call(GW_OP_cuMemcpyPeer_ptds), CUDA_ERROR_INVALID_CONTEXT;
    if (ACROSS(dctx, sctx))
        return gw_stat_call(GW_OP_cuMemcpyPeer_ptds), gw_cross_server_copy(dst, dctx, src, sctx, n, 0, NULL);
    if (contexts_known(dctx, sctx))
        return gwf_cuMemcpyPeer_ptds(dst, dctx, src, sctx, n);
    return peer_waiting(GW_OP_cuMemcpyPeer_ptds, dst, dctx, src, sctx, n, 0, NULL);
}

CUresult CUDAAPI cuMemcpyPeerAsync(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n,
                                   CUstream s)
{
    if (NO_CONTEXT(dctx, sctx))
        return gw_stat_call(GW_OP_cuMemcpyPeerAsync), CUDA_ERROR_INVALID_CONTEXT;
    if (ACROSS(dctx, sctx))
        return gw_stat_call(GW_OP_cuMemcpyPeerAsync), gw_cross_server_copy(dst, dctx, src, sctx, n, 1, s);
    if (contexts_known(dctx, sctx))
        return gwf_cuMemcpyPeerAsync(dst, dctx, src, sctx, n, s);
    return peer_waiting(GW_OP_cuMemcpyPeerAsync, dst, dctx, src, sctx, n, 1, s);
}

CUresult CUDAAPI cuMemcpyPeerAsync_ptsz(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n,
                                        CUstream s)
{
    if (NO_CONTEXT(dctx, sctx))
        return gw_stat_call(GW_OP_cuMemcpyPeerAsync_ptsz), CUDA_ERROR_INVALID_CONTEXT;
    if (ACROSS(dctx, sctx))
        return gw_stat_call(GW_OP_cuMemcpyPeerAsync_ptsz), gw_cross_server_copy(dst, dctx, src, sctx, n, 1, s);
    if (contexts_known(dctx, sctx))
        return gwf_cuMemcpyPeerAsync_ptsz(dst, dctx, src, sctx, n, s);
    return peer_waiting(GW_OP_cuMemcpyPeerAsync_ptsz, dst, dctx, src, sctx, n, 1, s);
}
