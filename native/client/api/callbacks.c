/* Host callbacks run in the client, where their code and data live. They run
 * once the stream's earlier work is done, and the stream's later work is only
 * issued after they return, which keeps the stream order. */
#include "api.h"

static CUresult host_func(unsigned op, int ptsz, CUstream s, CUhostFn fn, void *data)
{
    gw_stat_call(op);
    if (!fn)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = ptsz ? cuStreamSynchronize_ptsz(s) : cuStreamSynchronize(s);
    if (rc != CUDA_SUCCESS)
        return rc;
    fn(data);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuLaunchHostFunc(CUstream s, CUhostFn fn, void *userData)
{ return host_func(GW_OP_cuLaunchHostFunc, 0, s, fn, userData); }
CUresult CUDAAPI cuLaunchHostFunc_ptsz(CUstream s, CUhostFn fn, void *userData)
{ return host_func(GW_OP_cuLaunchHostFunc_ptsz, 1, s, fn, userData); }

static CUresult stream_callback(unsigned op, int ptsz, CUstream s, CUstreamCallback cb, void *data, unsigned flags)
{
    gw_stat_call(op);
    if (!cb || flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult status = ptsz ? cuStreamSynchronize_ptsz(s) : cuStreamSynchronize(s);
    cb(s, status, data); /* the callback learns of an earlier failure, as on a GPU */
    return status == CUDA_ERROR_INVALID_HANDLE ? status : CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamAddCallback(CUstream s, CUstreamCallback cb, void *userData, unsigned int flags)
{ return stream_callback(GW_OP_cuStreamAddCallback, 0, s, cb, userData, flags); }
CUresult CUDAAPI cuStreamAddCallback_ptsz(CUstream s, CUstreamCallback cb, void *userData, unsigned int flags)
{ return stream_callback(GW_OP_cuStreamAddCallback_ptsz, 1, s, cb, userData, flags); }
