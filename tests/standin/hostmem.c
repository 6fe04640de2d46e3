/* TEST DOUBLE: gpuwire CPU stand-in driver. Page-locked host memory (ordinary
 * aligned memory here; registered ranges are only remembered; those mapped for
 * the device, by DEVICEMAP or as page-locked allocations, are device memory
 * at their own address for kernels and copies, as with UVA), managed memory
 * (device memory the host can touch, which here it always can), host
 * functions in stream order (work runs at once, so a host function runs when
 * it is queued), and the per-thread capture mode. */
#define _POSIX_C_SOURCE 200809L
#include "standin.h"

#include <stdlib.h>

/* Registered ranges and page-locked allocations (allocated 1: cuMemFreeHost's),
 * for cuMemHostGetFlags and device access; as many as a gpuwire session may
 * map (MAPPED_RANGES_MAX), so bench/hostmem_cost's 1024 ranges fit. */
#define MAX_REGISTERED 4096
static struct {
    char *base;
    size_t size;
    unsigned flags;
    int allocated;
} registered[MAX_REGISTERED];

static void remember_alloc(void *p, size_t size, unsigned flags)
{
    sd_lock();
    for (int i = 0; i < MAX_REGISTERED; i++)
        if (!registered[i].base) {
            registered[i].base = p;
            registered[i].size = size;
            registered[i].flags = flags | CU_MEMHOSTALLOC_DEVICEMAP; /* UVA: every allocation is mapped */
            registered[i].allocated = 1;
            break;
        }
    sd_unlock();
}

static void forget_alloc(void *p)
{
    sd_lock();
    for (int i = 0; i < MAX_REGISTERED; i++)
        if (registered[i].base == p && registered[i].allocated)
            registered[i].base = NULL;
    sd_unlock();
}

/* [a, a+len) inside page-locked memory the device may use, or NULL. Lock held. */
void *sd_host_mapped_range(uintptr_t a, size_t len)
{
    for (int i = 0; i < MAX_REGISTERED; i++) {
        uintptr_t b = (uintptr_t)registered[i].base;
        if (b && (registered[i].flags & CU_MEMHOSTREGISTER_DEVICEMAP) && a >= b && a - b < registered[i].size &&
            len <= registered[i].size - (a - b))
            return (void *)a;
    }
    return NULL;
}

SD_API CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr *d, void *p, unsigned int flags)
{
    if (!d || flags)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    int ok = sd_host_mapped_range((uintptr_t)p, 1) != NULL;
    sd_unlock();
    if (!ok)
        return CUDA_ERROR_INVALID_VALUE;
    *d = (CUdeviceptr)(uintptr_t)p;
    return CUDA_SUCCESS;
}

/* Managed memory: device memory, which the stand-in's host reaches anyway. */
SD_API CUresult cuMemAllocManaged(CUdeviceptr *d, size_t size, unsigned int flags)
{
    if (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST)
        return CUDA_ERROR_INVALID_VALUE;
    return cuMemAlloc_v2(d, size);
}

/* Attaching managed memory changes nothing the stand-in's host could see: the
 * arguments are checked as the driver checks them (a stream, one flag of
 * GLOBAL, HOST, SINGLE) and the call succeeds. */
SD_API CUresult cuStreamAttachMemAsync(CUstream s, CUdeviceptr d, size_t length, unsigned int flags)
{
    (void)length;
    if (!d || (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST && flags != CU_MEM_ATTACH_SINGLE))
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_stream_check(s, &c);
    sd_unlock();
    return r;
}

SD_API CUresult cuMemHostAlloc(void **pp, size_t size, unsigned int flags)
{
    if (!pp || (flags & ~(unsigned)(CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP |
                                    CU_MEMHOSTALLOC_WRITECOMBINED)))
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    sd_unlock();
    if (r != CUDA_SUCCESS)
        return r;
    void *p = NULL;
    if (posix_memalign(&p, 4096, size ? size : 1))
        return CUDA_ERROR_OUT_OF_MEMORY;
    remember_alloc(p, size ? size : 1, flags);
    *pp = p;
    return CUDA_SUCCESS;
}

SD_API CUresult cuMemAllocHost_v2(void **pp, size_t size) { return cuMemHostAlloc(pp, size, 0); }

SD_API CUresult cuMemFreeHost(void *p)
{
    forget_alloc(p);
    free(p);
    return CUDA_SUCCESS;
}

SD_API CUresult cuMemHostRegister_v2(void *p, size_t size, unsigned int flags)
{
    if (!p || !size)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    int slot = -1;
    for (int i = 0; r == CUDA_SUCCESS && i < MAX_REGISTERED; i++) {
        if (registered[i].base && (char *)p < registered[i].base + registered[i].size &&
            registered[i].base < (char *)p + size)
            r = CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
        else if (!registered[i].base && slot < 0)
            slot = i;
    }
    if (r == CUDA_SUCCESS && slot < 0)
        r = CUDA_ERROR_OUT_OF_MEMORY;
    if (r == CUDA_SUCCESS) {
        registered[slot].base = p;
        registered[slot].size = size;
        registered[slot].flags = flags | CU_MEMHOSTREGISTER_DEVICEMAP; /* UVA: every registration is mapped */
        registered[slot].allocated = 0;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemHostUnregister(void *p)
{
    sd_lock();
    CUresult r = CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
    for (int i = 0; i < MAX_REGISTERED; i++)
        if (registered[i].base == p && !registered[i].allocated) {
            registered[i].base = NULL;
            r = CUDA_SUCCESS;
        }
    sd_unlock();
    return r;
}

SD_API CUresult cuMemHostGetFlags(unsigned int *flags, void *p)
{
    if (!flags)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = CUDA_ERROR_INVALID_VALUE;
    for (int i = 0; i < MAX_REGISTERED; i++)
        if (registered[i].base && (char *)p >= registered[i].base && (char *)p < registered[i].base + registered[i].size) {
            *flags = registered[i].flags;
            r = CUDA_SUCCESS;
        }
    sd_unlock();
    return r;
}

SD_API CUresult cuLaunchHostFunc(CUstream s, CUhostFn fn, void *data)
{
    if (!fn)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_stream_check(s, &c);
    if (r == CUDA_SUCCESS)
        sd_wait_busy(c); /* after the stream's booked work, as on a GPU */
    sd_unlock();
    if (r == CUDA_SUCCESS)
        fn(data); /* everything before it on the stream has run */
    return r;
}

SD_API CUresult cuLaunchHostFunc_ptsz(CUstream s, CUhostFn fn, void *data) { return cuLaunchHostFunc(s, fn, data); }

/* A stream callback: as a host function, told the stream's status (work here never fails later). */
SD_API CUresult cuStreamAddCallback(CUstream s, CUstreamCallback cb, void *data, unsigned int flags)
{
    if (!cb || flags)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_stream_check(s, &c);
    if (r == CUDA_SUCCESS)
        sd_wait_busy(c);
    sd_unlock();
    if (r == CUDA_SUCCESS)
        cb(s, CUDA_SUCCESS, data);
    return r;
}

SD_API CUresult cuStreamAddCallback_ptsz(CUstream s, CUstreamCallback cb, void *data, unsigned int flags)
{
    return cuStreamAddCallback(s, cb, data, flags);
}

static _Thread_local CUstreamCaptureMode capture_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;

SD_API CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode *mode)
{
    if (!mode || (unsigned)*mode > (unsigned)CU_STREAM_CAPTURE_MODE_RELAXED)
        return CUDA_ERROR_INVALID_VALUE;
    CUstreamCaptureMode old = capture_mode;
    capture_mode = *mode;
    *mode = old;
    return CUDA_SUCCESS;
}
