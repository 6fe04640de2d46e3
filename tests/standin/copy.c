/* TEST DOUBLE: gpuwire CPU stand-in driver. Memory copies and memsets, synchronous and on
 * streams (which run them at once). Host pointers come from the worker's own buffers and are
 * trusted; device ranges come from the network and are checked before any byte moves.
 * cuMemcpy/cuMemcpyAsync (unified addressing) accept device memory on both sides only: a
 * host address cannot be told from a hostile one, so the worker must send host sides as
 * HtoD/DtoH. */
#include "standin.h"

#include <string.h>

/* Lock held, context checked by the caller. */
static CUresult d2d(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    if (n == 0)
        return CUDA_SUCCESS;
    void *d = sd_dev_range(dst, n), *s = sd_dev_range(src, n);
    if (!d || !s)
        return CUDA_ERROR_INVALID_VALUE;
    memmove(d, s, n);
    return CUDA_SUCCESS;
}

static CUresult h2d(CUdeviceptr dst, const void *src, size_t n)
{
    if (n == 0)
        return CUDA_SUCCESS;
    void *d = sd_dev_range(dst, n);
    if (!d || !src)
        return CUDA_ERROR_INVALID_VALUE;
    memcpy(d, src, n);
    return CUDA_SUCCESS;
}

static CUresult d2h(void *dst, CUdeviceptr src, size_t n)
{
    if (n == 0)
        return CUDA_SUCCESS;
    void *s = sd_dev_range(src, n);
    if (!s || !dst)
        return CUDA_ERROR_INVALID_VALUE;
    memcpy(dst, s, n);
    return CUDA_SUCCESS;
}

/* Enter: lock, check the current context (and a stream, when `s` is given). */
static CUresult enter(int has_stream, CUstream s)
{
    sd_lock();
    sd_ctx *c;
    return has_stream ? sd_stream_check(s, &c) : sd_cur(&c);
}

#define COPY_SYNC(body)                         \
    CUresult r = enter(0, NULL);                \
    if (r == CUDA_SUCCESS)                      \
        r = (body);                             \
    sd_unlock();                                \
    return r

#define COPY_ASYNC(stream, body)                \
    CUresult r = enter(1, (stream));            \
    if (r == CUDA_SUCCESS)                      \
        r = (body);                             \
    sd_unlock();                                \
    return r

SD_API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) { COPY_SYNC(h2d(dst, src, n)); }
SD_API CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) { COPY_SYNC(d2h(dst, src, n)); }
SD_API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) { COPY_SYNC(d2d(dst, src, n)); }
SD_API CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n) { COPY_SYNC(d2d(dst, src, n)); }

SD_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, CUstream s) { COPY_ASYNC(s, h2d(dst, src, n)); }
SD_API CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, CUstream s) { COPY_ASYNC(s, d2h(dst, src, n)); }
SD_API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) { COPY_ASYNC(s, d2d(dst, src, n)); }
SD_API CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) { COPY_ASYNC(s, d2d(dst, src, n)); }

/* ---- 2D and 3D copies ---- */

/* One side of a strided copy, resolved to a host base address (checked for device memory). */
typedef struct side {
    unsigned char *base; /* address of (x, y, z) = (0, 0, 0) of the copied box */
    size_t pitch, height;
} side;

/* The bytes a box of width w, h rows, d slices spans from its first byte. */
static int span(size_t w, size_t h, size_t d, size_t pitch, size_t height, size_t *out)
{
    if (w == 0 || h == 0 || d == 0) {
        *out = 0;
        return 0;
    }
    if ((h > 1 || d > 1) && pitch < w)
        return -1;
    if (d > 1 && height < h)
        return -1;
    /* ((d-1)*height + (h-1)) * pitch + w, each step checked for overflow */
    unsigned __int128 rows = (unsigned __int128)(d - 1) * height + (h - 1);
    unsigned __int128 total = rows * pitch + w;
    if (total > SIZE_MAX)
        return -1;
    *out = (size_t)total;
    return 0;
}

static CUresult resolve(CUmemorytype type, const void *host, CUdeviceptr dev, CUarray arr, size_t x, size_t y,
                        size_t z, size_t pitch, size_t height, size_t w, size_t h, size_t d, side *out)
{
    if (type == CU_MEMORYTYPE_ARRAY) /* its own pitch and height, not the caller's */
        return sd_array_box(arr, x, y, z, w, h, d, &out->base, &out->pitch, &out->height);
    size_t len;
    if (span(w, h, d, pitch, height, &len) != 0)
        return CUDA_ERROR_INVALID_VALUE;
    unsigned __int128 off = ((unsigned __int128)z * height + y) * pitch + x;
    if (off > SIZE_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    out->pitch = pitch;
    out->height = height;
    switch (type) {
    case CU_MEMORYTYPE_HOST:
        if (!host)
            return CUDA_ERROR_INVALID_VALUE;
        out->base = (unsigned char *)host + (size_t)off;
        return CUDA_SUCCESS;
    case CU_MEMORYTYPE_DEVICE:
    case CU_MEMORYTYPE_UNIFIED: { /* unified: device memory only, see the top of the file */
        if ((unsigned __int128)dev + off > UINT64_MAX)
            return CUDA_ERROR_INVALID_VALUE;
        CUdeviceptr first = dev + (CUdeviceptr)off;
        void *p = sd_dev_range(first, len ? len : 1);
        if (!p)
            return CUDA_ERROR_INVALID_VALUE;
        out->base = p;
        return CUDA_SUCCESS;
    }
    default:
        return CUDA_ERROR_INVALID_VALUE;
    }
}

static void move_box(const side *dst, const side *src, size_t w, size_t h, size_t d)
{
    for (size_t k = 0; k < d; k++)
        for (size_t j = 0; j < h; j++)
            memmove(dst->base + (k * dst->height + j) * dst->pitch,
                    src->base + (k * src->height + j) * src->pitch, w);
}

static CUresult copy3d(const CUDA_MEMCPY3D *p)
{
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    if (p->srcLOD || p->dstLOD)
        return CUDA_ERROR_INVALID_VALUE;
    size_t w = p->WidthInBytes, h = p->Height, d = p->Depth;
    if (w == 0 || h == 0 || d == 0)
        return CUDA_SUCCESS;
    side s, t;
    CUresult r = resolve(p->srcMemoryType, p->srcHost, p->srcDevice, p->srcArray, p->srcXInBytes, p->srcY, p->srcZ,
                         p->srcPitch, p->srcHeight, w, h, d, &s);
    if (r == CUDA_SUCCESS)
        r = resolve(p->dstMemoryType, p->dstHost, p->dstDevice, p->dstArray, p->dstXInBytes, p->dstY, p->dstZ,
                    p->dstPitch, p->dstHeight, w, h, d, &t);
    if (r == CUDA_SUCCESS)
        move_box(&t, &s, w, h, d);
    return r;
}

static CUresult copy2d(const CUDA_MEMCPY2D *p)
{
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    CUDA_MEMCPY3D q;
    memset(&q, 0, sizeof q);
    q.srcXInBytes = p->srcXInBytes;
    q.srcY = p->srcY;
    q.srcMemoryType = p->srcMemoryType;
    q.srcHost = p->srcHost;
    q.srcDevice = p->srcDevice;
    q.srcArray = p->srcArray;
    q.srcPitch = p->srcPitch;
    q.srcHeight = p->Height;
    q.dstXInBytes = p->dstXInBytes;
    q.dstY = p->dstY;
    q.dstMemoryType = p->dstMemoryType;
    q.dstHost = p->dstHost;
    q.dstDevice = p->dstDevice;
    q.dstArray = p->dstArray;
    q.dstPitch = p->dstPitch;
    q.dstHeight = p->Height;
    q.WidthInBytes = p->WidthInBytes;
    q.Height = p->Height;
    q.Depth = 1;
    return copy3d(&q);
}

SD_API CUresult cuMemcpy2D_v2(const CUDA_MEMCPY2D *p) { COPY_SYNC(copy2d(p)); }
SD_API CUresult cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D *p) { COPY_SYNC(copy2d(p)); }
SD_API CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D *p, CUstream s) { COPY_ASYNC(s, copy2d(p)); }
SD_API CUresult cuMemcpy3D_v2(const CUDA_MEMCPY3D *p) { COPY_SYNC(copy3d(p)); }
SD_API CUresult cuMemcpy3DAsync_v2(const CUDA_MEMCPY3D *p, CUstream s) { COPY_ASYNC(s, copy3d(p)); }

/* ---- memset ---- */

/* Fills h rows of w elements of `esize` bytes, rows `pitch` bytes apart. */
static CUresult fill2d(CUdeviceptr dst, size_t pitch, uint32_t value, size_t esize, size_t w, size_t h)
{
    if (w == 0 || h == 0)
        return CUDA_SUCCESS;
    if (dst % esize != 0 || (h > 1 && pitch % esize != 0))
        return CUDA_ERROR_INVALID_VALUE;
    if (w > SIZE_MAX / esize)
        return CUDA_ERROR_INVALID_VALUE;
    size_t wb = w * esize, len;
    if (span(wb, h, 1, pitch, h, &len) != 0)
        return CUDA_ERROR_INVALID_VALUE;
    unsigned char *base = sd_dev_range(dst, len);
    if (!base)
        return CUDA_ERROR_INVALID_VALUE;
    for (size_t j = 0; j < h; j++) {
        unsigned char *row = base + j * pitch;
        if (esize == 1) {
            memset(row, (int)(value & 0xff), wb);
        } else if (esize == 2) {
            uint16_t v = (uint16_t)value;
            for (size_t i = 0; i < w; i++)
                memcpy(row + 2 * i, &v, 2);
        } else {
            for (size_t i = 0; i < w; i++)
                memcpy(row + 4 * i, &value, 4);
        }
    }
    return CUDA_SUCCESS;
}

SD_API CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n) { COPY_SYNC(fill2d(d, 0, v, 1, n, 1)); }
SD_API CUresult cuMemsetD16_v2(CUdeviceptr d, unsigned short v, size_t n) { COPY_SYNC(fill2d(d, 0, v, 2, n, 1)); }
SD_API CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned int v, size_t n) { COPY_SYNC(fill2d(d, 0, v, 4, n, 1)); }
SD_API CUresult cuMemsetD2D8_v2(CUdeviceptr d, size_t p, unsigned char v, size_t w, size_t h) { COPY_SYNC(fill2d(d, p, v, 1, w, h)); }
SD_API CUresult cuMemsetD2D16_v2(CUdeviceptr d, size_t p, unsigned short v, size_t w, size_t h) { COPY_SYNC(fill2d(d, p, v, 2, w, h)); }
SD_API CUresult cuMemsetD2D32_v2(CUdeviceptr d, size_t p, unsigned int v, size_t w, size_t h) { COPY_SYNC(fill2d(d, p, v, 4, w, h)); }
SD_API CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream s) { COPY_ASYNC(s, fill2d(d, 0, v, 1, n, 1)); }
SD_API CUresult cuMemsetD16Async(CUdeviceptr d, unsigned short v, size_t n, CUstream s) { COPY_ASYNC(s, fill2d(d, 0, v, 2, n, 1)); }
SD_API CUresult cuMemsetD32Async(CUdeviceptr d, unsigned int v, size_t n, CUstream s) { COPY_ASYNC(s, fill2d(d, 0, v, 4, n, 1)); }
SD_API CUresult cuMemsetD2D8Async(CUdeviceptr d, size_t p, unsigned char v, size_t w, size_t h, CUstream s) { COPY_ASYNC(s, fill2d(d, p, v, 1, w, h)); }
SD_API CUresult cuMemsetD2D16Async(CUdeviceptr d, size_t p, unsigned short v, size_t w, size_t h, CUstream s) { COPY_ASYNC(s, fill2d(d, p, v, 2, w, h)); }
SD_API CUresult cuMemsetD2D32Async(CUdeviceptr d, size_t p, unsigned int v, size_t w, size_t h, CUstream s) { COPY_ASYNC(s, fill2d(d, p, v, 4, w, h)); }
