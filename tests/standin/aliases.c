/* TEST DOUBLE: gpuwire CPU stand-in driver. Other exported names of implemented entry
 * points: the older unversioned names whose signatures did not change, and the _ptds/_ptsz
 * (per-thread default stream) variants. Work runs at once, so the per-thread default stream
 * behaves like the legacy one here. */
#include "standin.h"

/* cuda.h maps these names to their newest versions; the old symbols exist too. */
#undef cuDeviceGetUuid
#undef cuEventElapsedTime
#undef cuCtxDestroy
#undef cuCtxPushCurrent
#undef cuCtxPopCurrent
#undef cuStreamDestroy
#undef cuEventDestroy
#undef cuDevicePrimaryCtxRelease
#undef cuDevicePrimaryCtxReset
#undef cuDevicePrimaryCtxSetFlags

SD_API CUresult cuDeviceGetUuid(CUuuid *u, CUdevice d) { return cuDeviceGetUuid_v2(u, d); }
SD_API CUresult cuEventElapsedTime(float *ms, CUevent a, CUevent b) { return cuEventElapsedTime_v2(ms, a, b); }
SD_API CUresult cuCtxDestroy(CUcontext c) { return cuCtxDestroy_v2(c); }
SD_API CUresult cuCtxPushCurrent(CUcontext c) { return cuCtxPushCurrent_v2(c); }
SD_API CUresult cuCtxPopCurrent(CUcontext *c) { return cuCtxPopCurrent_v2(c); }
SD_API CUresult cuStreamDestroy(CUstream s) { return cuStreamDestroy_v2(s); }
SD_API CUresult cuEventDestroy(CUevent e) { return cuEventDestroy_v2(e); }
SD_API CUresult cuDevicePrimaryCtxRelease(CUdevice d) { return cuDevicePrimaryCtxRelease_v2(d); }
SD_API CUresult cuDevicePrimaryCtxReset(CUdevice d) { return cuDevicePrimaryCtxReset_v2(d); }
SD_API CUresult cuDevicePrimaryCtxSetFlags(CUdevice d, unsigned int f) { return cuDevicePrimaryCtxSetFlags_v2(d, f); }

/* ---- per-thread default stream variants ---- */
typedef CUdeviceptr Dp;

SD_API CUresult cuMemcpy_ptds(Dp d, Dp s, size_t n) { return cuMemcpy(d, s, n); }
SD_API CUresult cuMemcpyHtoD_v2_ptds(Dp d, const void *s, size_t n) { return cuMemcpyHtoD_v2(d, s, n); }
SD_API CUresult cuMemcpyDtoH_v2_ptds(void *d, Dp s, size_t n) { return cuMemcpyDtoH_v2(d, s, n); }
SD_API CUresult cuMemcpyDtoD_v2_ptds(Dp d, Dp s, size_t n) { return cuMemcpyDtoD_v2(d, s, n); }
SD_API CUresult cuMemcpy2D_v2_ptds(const CUDA_MEMCPY2D *p) { return cuMemcpy2D_v2(p); }
SD_API CUresult cuMemcpy2DUnaligned_v2_ptds(const CUDA_MEMCPY2D *p) { return cuMemcpy2DUnaligned_v2(p); }
SD_API CUresult cuMemcpy3D_v2_ptds(const CUDA_MEMCPY3D *p) { return cuMemcpy3D_v2(p); }
SD_API CUresult cuMemcpyAsync_ptsz(Dp d, Dp s, size_t n, CUstream st) { return cuMemcpyAsync(d, s, n, st); }
SD_API CUresult cuStreamBeginCaptureToGraph_ptsz(CUstream s, CUgraph g, const CUgraphNode *d, const CUgraphEdgeData *e,
                                                 size_t n, CUstreamCaptureMode m)
{
    return cuStreamBeginCaptureToGraph(s, g, d, e, n, m);
}
SD_API CUresult cuMemcpyHtoDAsync_v2_ptsz(Dp d, const void *s, size_t n, CUstream st) { return cuMemcpyHtoDAsync_v2(d, s, n, st); }
SD_API CUresult cuStreamUpdateCaptureDependencies_v2_ptsz(CUstream st, CUgraphNode *d, const CUgraphEdgeData *e, size_t n, unsigned f) { return cuStreamUpdateCaptureDependencies_v2(st, d, e, n, f); }
SD_API CUresult cuMemcpyDtoHAsync_v2_ptsz(void *d, Dp s, size_t n, CUstream st) { return cuMemcpyDtoHAsync_v2(d, s, n, st); }
SD_API CUresult cuMemcpyDtoDAsync_v2_ptsz(Dp d, Dp s, size_t n, CUstream st) { return cuMemcpyDtoDAsync_v2(d, s, n, st); }
SD_API CUresult cuMemcpy2DAsync_v2_ptsz(const CUDA_MEMCPY2D *p, CUstream st) { return cuMemcpy2DAsync_v2(p, st); }
SD_API CUresult cuMemcpy3DAsync_v2_ptsz(const CUDA_MEMCPY3D *p, CUstream st) { return cuMemcpy3DAsync_v2(p, st); }

SD_API CUresult cuMemsetD8_v2_ptds(Dp d, unsigned char v, size_t n) { return cuMemsetD8_v2(d, v, n); }
SD_API CUresult cuMemsetD16_v2_ptds(Dp d, unsigned short v, size_t n) { return cuMemsetD16_v2(d, v, n); }
SD_API CUresult cuMemsetD32_v2_ptds(Dp d, unsigned int v, size_t n) { return cuMemsetD32_v2(d, v, n); }
SD_API CUresult cuMemsetD2D8_v2_ptds(Dp d, size_t p, unsigned char v, size_t w, size_t h) { return cuMemsetD2D8_v2(d, p, v, w, h); }
SD_API CUresult cuMemsetD2D16_v2_ptds(Dp d, size_t p, unsigned short v, size_t w, size_t h) { return cuMemsetD2D16_v2(d, p, v, w, h); }
SD_API CUresult cuMemsetD2D32_v2_ptds(Dp d, size_t p, unsigned int v, size_t w, size_t h) { return cuMemsetD2D32_v2(d, p, v, w, h); }
SD_API CUresult cuMemsetD8Async_ptsz(Dp d, unsigned char v, size_t n, CUstream s) { return cuMemsetD8Async(d, v, n, s); }
SD_API CUresult cuMemsetD16Async_ptsz(Dp d, unsigned short v, size_t n, CUstream s) { return cuMemsetD16Async(d, v, n, s); }
SD_API CUresult cuMemsetD32Async_ptsz(Dp d, unsigned int v, size_t n, CUstream s) { return cuMemsetD32Async(d, v, n, s); }
SD_API CUresult cuMemsetD2D8Async_ptsz(Dp d, size_t p, unsigned char v, size_t w, size_t h, CUstream s) { return cuMemsetD2D8Async(d, p, v, w, h, s); }
SD_API CUresult cuMemsetD2D16Async_ptsz(Dp d, size_t p, unsigned short v, size_t w, size_t h, CUstream s) { return cuMemsetD2D16Async(d, p, v, w, h, s); }
SD_API CUresult cuMemsetD2D32Async_ptsz(Dp d, size_t p, unsigned int v, size_t w, size_t h, CUstream s) { return cuMemsetD2D32Async(d, p, v, w, h, s); }

SD_API CUresult cuStreamGetPriority_ptsz(CUstream s, int *p) { return cuStreamGetPriority(s, p); }
SD_API CUresult cuStreamGetFlags_ptsz(CUstream s, unsigned int *f) { return cuStreamGetFlags(s, f); }
SD_API CUresult cuStreamGetId_ptsz(CUstream s, unsigned long long *id) { return cuStreamGetId(s, id); }
SD_API CUresult cuStreamGetCtx_ptsz(CUstream s, CUcontext *c) { return cuStreamGetCtx(s, c); }
SD_API CUresult cuStreamGetCtx_v2_ptsz(CUstream s, CUcontext *c, CUgreenCtx *g) { return cuStreamGetCtx_v2(s, c, g); }
SD_API CUresult cuStreamGetDevice_ptsz(CUstream s, CUdevice *d) { return cuStreamGetDevice(s, d); }
SD_API CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                               unsigned bz, unsigned sh, CUstream s, void **p)
{ return cuLaunchCooperativeKernel(f, gx, gy, gz, bx, by, bz, sh, s, p); }
SD_API CUresult cuStreamWaitEvent_ptsz(CUstream s, CUevent e, unsigned int f) { return cuStreamWaitEvent(s, e, f); }
SD_API CUresult cuStreamQuery_ptsz(CUstream s) { return cuStreamQuery(s); }
SD_API CUresult cuStreamSynchronize_ptsz(CUstream s) { return cuStreamSynchronize(s); }
SD_API CUresult cuEventRecord_ptsz(CUevent e, CUstream s) { return cuEventRecord(e, s); }
SD_API CUresult cuEventRecordWithFlags_ptsz(CUevent e, CUstream s, unsigned int f) { return cuEventRecordWithFlags(e, s, f); }

SD_API CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                                    unsigned int by, unsigned int bz, unsigned int shmem, CUstream s, void **params,
                                    void **extra)
{
    return cuLaunchKernel(f, gx, gy, gz, bx, by, bz, shmem, s, params, extra);
}

SD_API CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *cfg, CUfunction f, void **params, void **extra)
{
    return cuLaunchKernelEx(cfg, f, params, extra);
}
