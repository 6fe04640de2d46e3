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

/* TEX_OBJECT_CREATE (codegen/protocol.txt) */
void gw_h_cuTexObjectCreate(gw_call *c)
{
    gw_tex_object_create_req q;
    gw_tex_object_create_req_view view;
    if (!gw_in_part(c, gw_tex_object_create_req, &q) || (q.has_view && !gw_in_part(c, gw_tex_object_create_req_view, &view)))
        return;
    CUDA_RESOURCE_DESC r = q.resource;
    CUDA_TEXTURE_DESC t = q.texture;
    const CUDA_RESOURCE_VIEW_DESC *vp = q.has_view ? &view.desc : NULL;
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
    CUresult res = fn(&o, &r, &t, vp);
    if (res == CUDA_SUCCESS)
        gw_reply_first(c, gw_tex_object_create_rep, {.result = res, .object = o});
    else
        gw_reply_result(c, res);
}

/* SURF_OBJECT_CREATE */
void gw_h_cuSurfObjectCreate(gw_call *c)
{
    gw_surf_object_create_req q;
    if (!gw_in_part(c, gw_surf_object_create_req, &q))
        return;
    CUDA_RESOURCE_DESC r = q.resource;
    translate(c, &r);
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUsurfObject *, const CUDA_RESOURCE_DESC *) =
        (CUresult(*)(CUsurfObject *, const CUDA_RESOURCE_DESC *))gw_driver_fn(c, GW_OP_cuSurfObjectCreate);
    if (!fn)
        return;
    CUsurfObject o = 0;
    CUresult res = fn(&o, &r);
    if (res == CUDA_SUCCESS)
        gw_reply_first(c, gw_surf_object_create_rep, {.result = res, .object = o});
    else
        gw_reply_result(c, res);
}
