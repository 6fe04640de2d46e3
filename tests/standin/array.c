/* TEST DOUBLE: CUDA arrays (and mipmapped arrays, an array per level) as plain host memory (rows of Width elements,
 * Height rows, Depth slices, each at least 1) kept with their descriptor;
 * copy.c reads and writes them. Texture and surface objects are opaque
 * handles that keep the descriptors they were made with (no sampling). */
#include "standin.h"

#include <stdlib.h>
#include <string.h>

static size_t elem_size(CUarray_format f, unsigned ch)
{
    size_t b;
    switch (f) {
    case CU_AD_FORMAT_UNSIGNED_INT8: case CU_AD_FORMAT_SIGNED_INT8: b = 1; break;
    case CU_AD_FORMAT_UNSIGNED_INT16: case CU_AD_FORMAT_SIGNED_INT16: case CU_AD_FORMAT_HALF: b = 2; break;
    case CU_AD_FORMAT_UNSIGNED_INT32: case CU_AD_FORMAT_SIGNED_INT32: case CU_AD_FORMAT_FLOAT: b = 4; break;
    default: return 0;
    }
    return (ch == 1 || ch == 2 || ch == 4) ? b * ch : 0;
}

static CUresult make(CUarray *ph, const CUDA_ARRAY3D_DESCRIPTOR *d)
{
    if (!ph || !d)
        return CUDA_ERROR_INVALID_VALUE;
    size_t es = elem_size(d->Format, d->NumChannels);
    if (!es || !d->Width || (!d->Height && d->Depth && !(d->Flags & CUDA_ARRAY3D_LAYERED)))
        return CUDA_ERROR_INVALID_VALUE;
    if ((d->Flags & CUDA_ARRAY3D_CUBEMAP) && (d->Width != d->Height || !d->Depth || d->Depth % 6))
        return CUDA_ERROR_INVALID_VALUE;
    size_t rows = d->Height ? d->Height : 1, slices = d->Depth ? d->Depth : 1;
    if (d->Width > (1u << 16) || rows > (1u << 16) || slices > (1u << 14))
        return CUDA_ERROR_INVALID_VALUE; /* keeps the size below in range */
    size_t bytes = d->Width * es * rows * slices;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    sd_array *a = NULL;
    if (r == CUDA_SUCCESS && sd_mem_used(c->dev) + bytes > sd_dev_total_mem(c->dev))
        r = CUDA_ERROR_OUT_OF_MEMORY;
    if (r == CUDA_SUCCESS) {
        a = calloc(1, sizeof *a);
        unsigned char *data = a ? calloc(1, bytes) : NULL;
        if (!data || sd_obj_add(a) != 0) {
            free(data);
            free(a);
            r = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            a->h.kind = SD_ARRAY;
            a->d = *d;
            a->data = data;
            a->pitch = d->Width * es;
            a->rows = rows;
            a->slices = slices;
            *ph = (CUarray)a;
        }
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuArray3DCreate_v2(CUarray *ph, const CUDA_ARRAY3D_DESCRIPTOR *d) { return make(ph, d); }

SD_API CUresult cuArrayCreate_v2(CUarray *ph, const CUDA_ARRAY_DESCRIPTOR *d)
{
    if (!d)
        return CUDA_ERROR_INVALID_VALUE;
    CUDA_ARRAY3D_DESCRIPTOR d3 = {d->Width, d->Height, 0, d->Format, d->NumChannels, 0};
    return make(ph, &d3);
}

SD_API CUresult cuArrayDestroy(CUarray h)
{
    sd_lock();
    CUresult r = sd_obj_live(h, SD_ARRAY) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS) {
        sd_array *a = (sd_array *)h;
        sd_obj_del(a);
        free(a->data);
        free(a);
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuArray3DGetDescriptor_v2(CUDA_ARRAY3D_DESCRIPTOR *out, CUarray h)
{
    sd_lock();
    CUresult r = !out ? CUDA_ERROR_INVALID_VALUE : sd_obj_live(h, SD_ARRAY) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        *out = ((sd_array *)h)->d;
    sd_unlock();
    return r;
}

SD_API CUresult cuArrayGetDescriptor_v2(CUDA_ARRAY_DESCRIPTOR *out, CUarray h)
{
    CUDA_ARRAY3D_DESCRIPTOR d;
    CUresult r = cuArray3DGetDescriptor_v2(out ? &d : NULL, h);
    /* a 3D array's too, depth left out, as the driver (H100, driver 580) */
    if (r == CUDA_SUCCESS) {
        out->Width = d.Width;
        out->Height = d.Height;
        out->Format = d.Format;
        out->NumChannels = d.NumChannels;
    }
    return r;
}

CUresult sd_array_box(CUarray h, size_t x, size_t y, size_t z, size_t w, size_t hgt, size_t dep,
                      unsigned char **base, size_t *pitch, size_t *height)
{
    if (!sd_obj_live(h, SD_ARRAY))
        return CUDA_ERROR_INVALID_HANDLE;
    const sd_array *a = (const sd_array *)h;
    if (x > a->pitch || w > a->pitch - x || y > a->rows || hgt > a->rows - y || z > a->slices ||
        dep > a->slices - z)
        return CUDA_ERROR_INVALID_VALUE;
    *base = a->data + (z * a->rows + y) * a->pitch + x;
    *pitch = a->pitch;
    *height = a->rows;
    return CUDA_SUCCESS;
}

/* ---- texture and surface objects: their descriptors, nothing sampled ---- */
typedef struct sd_texobj {
    sd_obj h;
    CUDA_RESOURCE_DESC res;
    CUDA_TEXTURE_DESC tex;
    CUDA_RESOURCE_VIEW_DESC view;
    int has_view;
} sd_texobj;

static CUresult check_res(const CUDA_RESOURCE_DESC *r, int surface)
{
    if (!r || r->flags)
        return CUDA_ERROR_INVALID_VALUE;
    switch (r->resType) {
    case CU_RESOURCE_TYPE_ARRAY:
        if (!sd_obj_live(r->res.array.hArray, SD_ARRAY))
            return CUDA_ERROR_INVALID_HANDLE;
        /* a surface on an array without CUDA_ARRAY3D_SURFACE_LDST is made: the driver
         * (H100, driver 580) refuses only its use */
        return CUDA_SUCCESS;
    case CU_RESOURCE_TYPE_LINEAR:
        if (surface || !sd_dev_range(r->res.linear.devPtr, r->res.linear.sizeInBytes ? r->res.linear.sizeInBytes : 1))
            return CUDA_ERROR_INVALID_VALUE;
        return CUDA_SUCCESS;
    case CU_RESOURCE_TYPE_PITCH2D: {
        size_t es = elem_size(r->res.pitch2D.format, r->res.pitch2D.numChannels);
        if (surface || !es || !r->res.pitch2D.width || !r->res.pitch2D.height ||
            r->res.pitch2D.pitchInBytes < r->res.pitch2D.width * es ||
            r->res.pitch2D.height > SIZE_MAX / r->res.pitch2D.pitchInBytes ||
            !sd_dev_range(r->res.pitch2D.devPtr, r->res.pitch2D.pitchInBytes * r->res.pitch2D.height))
            return CUDA_ERROR_INVALID_VALUE;
        return CUDA_SUCCESS;
    }
    case CU_RESOURCE_TYPE_MIPMAPPED_ARRAY:
        if (surface)
            return CUDA_ERROR_INVALID_VALUE;
        return sd_obj_live(r->res.mipmap.hMipmappedArray, SD_MIPMAP) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    default:
        return CUDA_ERROR_INVALID_VALUE;
    }
}

static CUresult obj_new(int kind, const CUDA_RESOURCE_DESC *res, const CUDA_TEXTURE_DESC *tex,
                        const CUDA_RESOURCE_VIEW_DESC *view, unsigned long long *out)
{
    if (!out || (kind == SD_TEXOBJ && !tex))
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS)
        r = check_res(res, kind == SD_SURFOBJ);
    if (r == CUDA_SUCCESS) {
        sd_texobj *o = calloc(1, sizeof *o);
        if (!o || sd_obj_add(o) != 0) {
            free(o);
            r = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            o->h.kind = kind;
            o->res = *res;
            if (tex)
                o->tex = *tex;
            if (view) {
                o->view = *view;
                o->has_view = 1;
            }
            *out = (unsigned long long)(uintptr_t)o;
        }
    }
    sd_unlock();
    return r;
}

static CUresult obj_get(int kind, unsigned long long v, sd_texobj *out)
{
    sd_lock();
    const void *h = (const void *)(uintptr_t)v;
    CUresult r = sd_obj_live(h, kind) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        *out = *(const sd_texobj *)h;
    sd_unlock();
    return r;
}

static CUresult obj_del(int kind, unsigned long long v)
{
    sd_lock();
    void *h = (void *)(uintptr_t)v;
    CUresult r = sd_obj_live(h, kind) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS) {
        sd_obj_del(h);
        free(h);
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuTexObjectCreate(CUtexObject *p, const CUDA_RESOURCE_DESC *res, const CUDA_TEXTURE_DESC *tex,
                                  const CUDA_RESOURCE_VIEW_DESC *view)
{
    return obj_new(SD_TEXOBJ, res, tex, view, p);
}

SD_API CUresult cuSurfObjectCreate(CUsurfObject *p, const CUDA_RESOURCE_DESC *res)
{
    return obj_new(SD_SURFOBJ, res, NULL, NULL, p);
}

SD_API CUresult cuTexObjectDestroy(CUtexObject t) { return obj_del(SD_TEXOBJ, t); }
SD_API CUresult cuSurfObjectDestroy(CUsurfObject s) { return obj_del(SD_SURFOBJ, s); }

SD_API CUresult cuTexObjectGetResourceDesc(CUDA_RESOURCE_DESC *out, CUtexObject t)
{
    sd_texobj o;
    CUresult r = out ? obj_get(SD_TEXOBJ, t, &o) : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        *out = o.res;
    return r;
}

SD_API CUresult cuTexObjectGetTextureDesc(CUDA_TEXTURE_DESC *out, CUtexObject t)
{
    sd_texobj o;
    CUresult r = out ? obj_get(SD_TEXOBJ, t, &o) : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        *out = o.tex;
    return r;
}

SD_API CUresult cuTexObjectGetResourceViewDesc(CUDA_RESOURCE_VIEW_DESC *out, CUtexObject t)
{
    sd_texobj o;
    CUresult r = out ? obj_get(SD_TEXOBJ, t, &o) : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS && !o.has_view)
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        *out = o.view;
    return r;
}

SD_API CUresult cuSurfObjectGetResourceDesc(CUDA_RESOURCE_DESC *out, CUsurfObject s)
{
    sd_texobj o;
    CUresult r = out ? obj_get(SD_SURFOBJ, s, &o) : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        *out = o.res;
    return r;
}

/* ---- mipmapped arrays: one array per level ---- */
typedef struct sd_mipmap {
    sd_obj h;
    unsigned levels;
    CUarray level[32];
} sd_mipmap;

SD_API CUresult cuMipmappedArrayCreate(CUmipmappedArray *ph, const CUDA_ARRAY3D_DESCRIPTOR *d, unsigned levels)
{
    if (!ph || !d)
        return CUDA_ERROR_INVALID_VALUE;
    int stay = (d->Flags & (CUDA_ARRAY3D_LAYERED | CUDA_ARRAY3D_CUBEMAP)) != 0; /* layers and faces */
    size_t big = d->Width > d->Height ? d->Width : d->Height;
    if (!stay && d->Depth > big)
        big = d->Depth;
    unsigned most = 1;
    while (big >>= 1)
        most++;
    levels = levels < 1 ? 1 : levels > most ? most : levels; /* clamped, as the driver does */
    sd_mipmap *m = calloc(1, sizeof *m);
    if (!m)
        return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult r = CUDA_SUCCESS;
    for (unsigned i = 0; i < levels && r == CUDA_SUCCESS; i++) {
        CUDA_ARRAY3D_DESCRIPTOR l = *d;
        l.Width = d->Width >> i ? d->Width >> i : 1;
        l.Height = !d->Height ? 0 : d->Height >> i ? d->Height >> i : 1;
        if (!stay)
            l.Depth = !d->Depth ? 0 : d->Depth >> i ? d->Depth >> i : 1;
        r = make(&m->level[i], &l);
        if (r == CUDA_SUCCESS)
            m->levels = i + 1;
    }
    sd_lock();
    if (r == CUDA_SUCCESS && sd_obj_add(m) != 0)
        r = CUDA_ERROR_OUT_OF_MEMORY;
    sd_unlock();
    if (r != CUDA_SUCCESS) {
        for (unsigned i = 0; i < m->levels; i++)
            cuArrayDestroy(m->level[i]);
        free(m);
        return r;
    }
    m->h.kind = SD_MIPMAP;
    *ph = (CUmipmappedArray)m;
    return CUDA_SUCCESS;
}

SD_API CUresult cuMipmappedArrayGetLevel(CUarray *out, CUmipmappedArray h, unsigned level)
{
    sd_lock();
    CUresult r = !out ? CUDA_ERROR_INVALID_VALUE : sd_obj_live(h, SD_MIPMAP) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS && level >= ((sd_mipmap *)h)->levels)
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        *out = ((sd_mipmap *)h)->level[level];
    sd_unlock();
    return r;
}

SD_API CUresult cuMipmappedArrayDestroy(CUmipmappedArray h)
{
    sd_lock();
    CUresult r = sd_obj_live(h, SD_MIPMAP) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        sd_obj_del(h);
    sd_unlock();
    if (r == CUDA_SUCCESS) {
        sd_mipmap *m = (sd_mipmap *)h;
        for (unsigned i = 0; i < m->levels; i++)
            cuArrayDestroy(m->level[i]);
        free(m);
    }
    return r;
}
