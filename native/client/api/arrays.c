/* CUDA arrays. The client names each array (creation is posted like a
 * stream's) and keeps the descriptor it was made with: descriptor queries are
 * answered here, and array copies are bounds-checked here before any byte
 * leaves (copies.c). What the driver would refuse at once is refused here at
 * once, since a posted creation's failure only surfaces at the next sync. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

typedef struct known_array {
    CUarray h;
    CUDA_ARRAY3D_DESCRIPTOR d;
} known_array;

static pthread_mutex_t arrays_lock = PTHREAD_MUTEX_INITIALIZER;
static known_array *arrays;
static size_t n_arrays, cap_arrays;

size_t gw_array_elem_size(CUarray_format f, unsigned channels)
{
    size_t b;
    switch (f) {
    case CU_AD_FORMAT_UNSIGNED_INT8: case CU_AD_FORMAT_SIGNED_INT8: b = 1; break;
    case CU_AD_FORMAT_UNSIGNED_INT16: case CU_AD_FORMAT_SIGNED_INT16: case CU_AD_FORMAT_HALF: b = 2; break;
    case CU_AD_FORMAT_UNSIGNED_INT32: case CU_AD_FORMAT_SIGNED_INT32: case CU_AD_FORMAT_FLOAT: b = 4; break;
    default: return 0; /* block-compressed, planar (NV12...) and packed formats are not remoted */
    }
    if (channels != 1 && channels != 2 && channels != 4)
        return 0;
    return b * channels;
}

int gw_array_desc(CUarray h, CUDA_ARRAY3D_DESCRIPTOR *out)
{
    int found = 0;
    pthread_mutex_lock(&arrays_lock);
    for (size_t i = 0; i < n_arrays; i++)
        if (arrays[i].h == h) {
            *out = arrays[i].d;
            found = 1;
            break;
        }
    pthread_mutex_unlock(&arrays_lock);
    return found;
}

#define KNOWN_FLAGS (CUDA_ARRAY3D_LAYERED | CUDA_ARRAY3D_SURFACE_LDST | CUDA_ARRAY3D_CUBEMAP | \
                     CUDA_ARRAY3D_TEXTURE_GATHER | CUDA_ARRAY3D_DEPTH_TEXTURE | CUDA_ARRAY3D_COLOR_ATTACHMENT)

static CUresult check(const CUDA_ARRAY3D_DESCRIPTOR *d)
{
    if (!gw_array_elem_size(d->Format, d->NumChannels)) {
        int valid_enum = d->NumChannels == 1 || d->NumChannels == 2 || d->NumChannels == 4;
        if (!valid_enum)
            return CUDA_ERROR_INVALID_VALUE;
        return (CUresult)gw_unsupported(GW_OP_cuArray3DCreate_v2);
    }
    if (d->Flags & ~(unsigned)KNOWN_FLAGS) /* sparse and deferred-mapping arrays are not remoted */
        return (CUresult)gw_unsupported(GW_OP_cuArray3DCreate_v2);
    if (!d->Width || (!d->Height && d->Depth && !(d->Flags & CUDA_ARRAY3D_LAYERED)))
        return CUDA_ERROR_INVALID_VALUE;
    if (d->Flags & CUDA_ARRAY3D_CUBEMAP) {
        if (d->Width != d->Height || !d->Depth || d->Depth % 6 ||
            (!(d->Flags & CUDA_ARRAY3D_LAYERED) && d->Depth != 6))
            return CUDA_ERROR_INVALID_VALUE;
    }
    if ((d->Flags & CUDA_ARRAY3D_LAYERED) && !d->Depth)
        return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

static CUresult remember(CUarray h, const CUDA_ARRAY3D_DESCRIPTOR *d)
{
    CUresult rc = CUDA_SUCCESS;
    pthread_mutex_lock(&arrays_lock);
    if (n_arrays == cap_arrays) {
        size_t ncap = cap_arrays ? cap_arrays * 2 : 16;
        known_array *n = realloc(arrays, ncap * sizeof *n);
        if (n) {
            arrays = n;
            cap_arrays = ncap;
        }
    }
    if (n_arrays < cap_arrays)
        arrays[n_arrays++] = (known_array){h, *d};
    else
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    pthread_mutex_unlock(&arrays_lock);
    return rc;
}

CUresult CUDAAPI cuArray3DCreate_v2(CUarray *ph, const CUDA_ARRAY3D_DESCRIPTOR *d)
{
    if (!ph || !d)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = check(d);
    if (rc == CUDA_SUCCESS)
        rc = gwf_cuArray3DCreate_v2(ph, d);
    if (rc == CUDA_SUCCESS && (rc = remember(*ph, d)) != CUDA_SUCCESS)
        gwf_cuArrayDestroy(*ph);
    return rc;
}

CUresult CUDAAPI cuArrayCreate_v2(CUarray *ph, const CUDA_ARRAY_DESCRIPTOR *d)
{
    if (!ph || !d)
        return CUDA_ERROR_INVALID_VALUE;
    CUDA_ARRAY3D_DESCRIPTOR d3 = {d->Width, d->Height, 0, d->Format, d->NumChannels, 0};
    CUresult rc = check(&d3);
    if (rc == CUDA_SUCCESS)
        rc = gwf_cuArrayCreate_v2(ph, d);
    if (rc == CUDA_SUCCESS && (rc = remember(*ph, &d3)) != CUDA_SUCCESS)
        gwf_cuArrayDestroy(*ph);
    return rc;
}

CUresult CUDAAPI cuArrayDestroy(CUarray h)
{
    CUDA_ARRAY3D_DESCRIPTOR d;
    if (!gw_array_desc(h, &d))
        return CUDA_ERROR_INVALID_HANDLE;
    CUresult rc = gwf_cuArrayDestroy(h);
    if (rc == CUDA_SUCCESS) {
        pthread_mutex_lock(&arrays_lock);
        for (size_t i = 0; i < n_arrays; i++)
            if (arrays[i].h == h) {
                arrays[i] = arrays[--n_arrays];
                break;
            }
        pthread_mutex_unlock(&arrays_lock);
    }
    return rc;
}

CUresult CUDAAPI cuArray3DGetDescriptor_v2(CUDA_ARRAY3D_DESCRIPTOR *out, CUarray h)
{
    gw_stat_call(GW_OP_cuArray3DGetDescriptor_v2);
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    return gw_array_desc(h, out) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult CUDAAPI cuArrayGetDescriptor_v2(CUDA_ARRAY_DESCRIPTOR *out, CUarray h)
{
    gw_stat_call(GW_OP_cuArrayGetDescriptor_v2);
    CUDA_ARRAY3D_DESCRIPTOR d;
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    if (!gw_array_desc(h, &d))
        return CUDA_ERROR_INVALID_HANDLE;
    /* a 3D array's too, its depth left out: the driver answers so (H100, driver 580) */
    out->Width = d.Width;
    out->Height = d.Height;
    out->Format = d.Format;
    out->NumChannels = d.NumChannels;
    return CUDA_SUCCESS;
}

/* ---- mipmapped arrays: the descriptor and level count, for the levels'
 * descriptors (each level an array the worker names) ---- */
typedef struct known_mipmap {
    CUmipmappedArray h;
    CUDA_ARRAY3D_DESCRIPTOR d;
    unsigned levels;
} known_mipmap;

static known_mipmap *mipmaps;
static size_t n_mipmaps, cap_mipmaps;

int gw_mipmap_desc(CUmipmappedArray h, CUDA_ARRAY3D_DESCRIPTOR *out, unsigned *levels)
{
    int found = 0;
    pthread_mutex_lock(&arrays_lock);
    for (size_t i = 0; i < n_mipmaps; i++)
        if (mipmaps[i].h == h) {
            if (out)
                *out = mipmaps[i].d;
            if (levels)
                *levels = mipmaps[i].levels;
            found = 1;
            break;
        }
    pthread_mutex_unlock(&arrays_lock);
    return found;
}

CUresult CUDAAPI cuMipmappedArrayCreate(CUmipmappedArray *ph, const CUDA_ARRAY3D_DESCRIPTOR *d, unsigned levels)
{
    if (!ph || !d)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = check(d);
    if (rc != CUDA_SUCCESS)
        return rc;
    size_t big = d->Width > d->Height ? d->Width : d->Height;
    big = big > d->Depth || (d->Flags & (CUDA_ARRAY3D_LAYERED | CUDA_ARRAY3D_CUBEMAP)) ? big : d->Depth;
    unsigned most = 1;
    while (big >>= 1)
        most++;
    rc = gwf_cuMipmappedArrayCreate(ph, d, levels);
    if (rc != CUDA_SUCCESS)
        return rc;
    /* the driver clamps the count to [1, halvings down to 1] */
    levels = levels < 1 ? 1 : levels > most ? most : levels;
    pthread_mutex_lock(&arrays_lock);
    if (n_mipmaps == cap_mipmaps) {
        size_t ncap = cap_mipmaps ? cap_mipmaps * 2 : 8;
        known_mipmap *n = realloc(mipmaps, ncap * sizeof *n);
        if (n) {
            mipmaps = n;
            cap_mipmaps = ncap;
        }
    }
    if (n_mipmaps < cap_mipmaps)
        mipmaps[n_mipmaps++] = (known_mipmap){*ph, *d, levels};
    else
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    pthread_mutex_unlock(&arrays_lock);
    if (rc != CUDA_SUCCESS)
        gwf_cuMipmappedArrayDestroy(*ph);
    return rc;
}

CUresult CUDAAPI cuMipmappedArrayDestroy(CUmipmappedArray h)
{
    if (!gw_mipmap_desc(h, NULL, NULL))
        return CUDA_ERROR_INVALID_HANDLE;
    CUresult rc = gwf_cuMipmappedArrayDestroy(h);
    if (rc == CUDA_SUCCESS) {
        pthread_mutex_lock(&arrays_lock);
        for (size_t i = 0; i < n_mipmaps; i++)
            if (mipmaps[i].h == h) {
                mipmaps[i] = mipmaps[--n_mipmaps];
                break;
            }
        pthread_mutex_unlock(&arrays_lock);
    }
    return rc;
}

static size_t halve(size_t n, unsigned level)
{
    if (!n)
        return 0;
    n >>= level;
    return n ? n : 1;
}

CUresult CUDAAPI cuMipmappedArrayGetLevel(CUarray *out, CUmipmappedArray h, unsigned level)
{
    CUDA_ARRAY3D_DESCRIPTOR d;
    unsigned levels;
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    if (!gw_mipmap_desc(h, &d, &levels))
        return CUDA_ERROR_INVALID_HANDLE;
    if (level >= levels)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = gwf_cuMipmappedArrayGetLevel(out, h, level);
    if (rc != CUDA_SUCCESS)
        return rc;
    /* a level halves each extent; layers and cube faces stay */
    d.Width = halve(d.Width, level);
    d.Height = halve(d.Height, level);
    if (!(d.Flags & (CUDA_ARRAY3D_LAYERED | CUDA_ARRAY3D_CUBEMAP)))
        d.Depth = halve(d.Depth, level);
    CUDA_ARRAY3D_DESCRIPTOR seen;
    if (!gw_array_desc(*out, &seen)) /* the worker names a level once: asked again, it is known */
        rc = remember(*out, &d);
    return rc;
}
