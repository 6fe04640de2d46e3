/* Texture and surface objects: the descriptors arrive as the application
 * wrote them; an array named by the client is translated here. The object's
 * value goes back as the driver made it (kernels use it on the GPU). */
#include <string.h>

#include "handlers.h"

/* Replaces the client's array name with the real array. */
static void translate(gw_call *c, CUDA_RESOURCE_DESC *r)
{
    if (r->resType == CU_RESOURCE_TYPE_ARRAY)
        r->res.array.hArray = gw_handle_lookup(c, GW_HT_CUarray, (uint64_t)(uintptr_t)r->res.array.hArray);
    else if (r->resType == CU_RESOURCE_TYPE_MIPMAPPED_ARRAY)
        r->res.mipmap.hMipmappedArray =
            gw_handle_lookup(c, GW_HT_CUmipmappedArray, (uint64_t)(uintptr_t)r->res.mipmap.hMipmappedArray);
}

/* The resource, texture descriptor, u32 has-view, the view if so. */
void gw_h_cuTexObjectCreate(gw_call *c)
{
    CUDA_RESOURCE_DESC r;
    CUDA_TEXTURE_DESC t;
    CUDA_RESOURCE_VIEW_DESC v;
    const void *rp = gw_in_view(c, sizeof r), *tp = gw_in_view(c, sizeof t);
    uint32_t has_view = gw_in_u32(c);
    const void *vp = has_view ? gw_in_view(c, sizeof v) : NULL;
    if (c->bad)
        return;
    memcpy(&r, rp, sizeof r);
    memcpy(&t, tp, sizeof t);
    if (vp)
        memcpy(&v, vp, sizeof v);
    translate(c, &r);
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUtexObject *, const CUDA_RESOURCE_DESC *, const CUDA_TEXTURE_DESC *,
                   const CUDA_RESOURCE_VIEW_DESC *) =
        (CUresult(*)(CUtexObject *, const CUDA_RESOURCE_DESC *, const CUDA_TEXTURE_DESC *,
                     const CUDA_RESOURCE_VIEW_DESC *))gw_driver_fn(c, GW_OP_cuTexObjectCreate);
    if (!fn)
        return;
    CUtexObject o = 0;
    CUresult res = fn(&o, &r, &t, vp ? &v : NULL);
    gw_reply_result(c, res);
    if (res == CUDA_SUCCESS) {
        uint64_t val = o;
        gw_reply_bytes(c, &val, sizeof val);
    }
}

/* The resource descriptor. */
void gw_h_cuSurfObjectCreate(gw_call *c)
{
    CUDA_RESOURCE_DESC r;
    const void *rp = gw_in_view(c, sizeof r);
    if (c->bad)
        return;
    memcpy(&r, rp, sizeof r);
    translate(c, &r);
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUsurfObject *, const CUDA_RESOURCE_DESC *) =
        (CUresult(*)(CUsurfObject *, const CUDA_RESOURCE_DESC *))gw_driver_fn(c, GW_OP_cuSurfObjectCreate);
    if (!fn)
        return;
    CUsurfObject o = 0;
    CUresult res = fn(&o, &r);
    gw_reply_result(c, res);
    if (res == CUDA_SUCCESS) {
        uint64_t val = o;
        gw_reply_bytes(c, &val, sizeof val);
    }
}
