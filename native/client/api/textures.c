/* Texture and surface objects. A CUtexObject/CUsurfObject is the value a
 * kernel hands to the GPU's texture unit, so it must be the driver's own:
 * creation waits for it (one round trip), unlike streams or arrays, which
 * the client names. The request carries the descriptors as the application
 * wrote them (an array by the client's name; device addresses are real);
 * the worker translates the array. The client keeps the descriptors, so the
 * Get*Desc queries are answered here. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

typedef struct known_obj {
    unsigned long long v;
    int surface;
    int has_view;
    CUDA_RESOURCE_DESC res;
    CUDA_TEXTURE_DESC tex;
    CUDA_RESOURCE_VIEW_DESC view;
} known_obj;

static pthread_mutex_t objs_lock = PTHREAD_MUTEX_INITIALIZER;
static known_obj *objs;
static size_t n_objs, cap_objs;

static int find(unsigned long long v, int surface, known_obj *out)
{
    int found = 0;
    pthread_mutex_lock(&objs_lock);
    for (size_t i = 0; i < n_objs; i++)
        if (objs[i].v == v && objs[i].surface == surface) {
            if (out)
                *out = objs[i];
            found = 1;
            break;
        }
    pthread_mutex_unlock(&objs_lock);
    return found;
}

static void forget(unsigned long long v, int surface)
{
    pthread_mutex_lock(&objs_lock);
    for (size_t i = 0; i < n_objs; i++)
        if (objs[i].v == v && objs[i].surface == surface) {
            objs[i] = objs[--n_objs];
            break;
        }
    pthread_mutex_unlock(&objs_lock);
}

static int remember(const known_obj *o)
{
    int ok = 0;
    pthread_mutex_lock(&objs_lock);
    if (n_objs == cap_objs) {
        size_t ncap = cap_objs ? cap_objs * 2 : 16;
        known_obj *n = realloc(objs, ncap * sizeof *n);
        if (n) {
            objs = n;
            cap_objs = ncap;
        }
    }
    if (n_objs < cap_objs) {
        objs[n_objs++] = *o;
        ok = 1;
    }
    pthread_mutex_unlock(&objs_lock);
    return ok;
}

/* What the worker can translate: an array or mipmapped array the client made, or device memory. */
static CUresult check_resource(const CUDA_RESOURCE_DESC *r)
{
    CUDA_ARRAY3D_DESCRIPTOR d;
    switch (r->resType) {
    case CU_RESOURCE_TYPE_ARRAY:
        return gw_array_desc(r->res.array.hArray, &d) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    case CU_RESOURCE_TYPE_LINEAR:
    case CU_RESOURCE_TYPE_PITCH2D:
        return CUDA_SUCCESS;
    case CU_RESOURCE_TYPE_MIPMAPPED_ARRAY:
        return gw_mipmap_desc(r->res.mipmap.hMipmappedArray, NULL, NULL) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    default:
        return CUDA_ERROR_INVALID_VALUE;
    }
}

static CUresult create(unsigned op, known_obj *o)
{
    gw_stat_call(op);
    CUresult rc = check_resource(&o->res);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin(op); /* TEX_OBJECT_CREATE / SURF_OBJECT_CREATE in codegen/protocol.txt */
    if (o->surface) {
        gw_put_fields(q, gw_surf_object_create_req, {.resource = o->res});
    } else {
        gw_put_fields(q, gw_tex_object_create_req,
                      {.resource = o->res, .texture = o->tex, .has_view = (uint32_t)o->has_view});
        if (o->has_view)
            gw_put_fields(q, gw_tex_object_create_req_view, {.desc = o->view});
    }
    gw_rep *r;
    rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        gw_tex_object_create_rep rep = {0}; /* the surface's reply is the same */
        _Static_assert(sizeof(gw_tex_object_create_rep) == sizeof(gw_surf_object_create_rep), "one reply");
        if (gw_get_fields(r, gw_tex_object_create_rep, &rep))
            rc = gw_rep_status(r, CUDA_ERROR_UNKNOWN);
        o->v = rep.object;
    }
    gw_rep_end(r);
    return rc;
}

CUresult CUDAAPI cuTexObjectCreate(CUtexObject *p, const CUDA_RESOURCE_DESC *res, const CUDA_TEXTURE_DESC *tex,
                                   const CUDA_RESOURCE_VIEW_DESC *view)
{
    if (!p || !res || !tex)
        return CUDA_ERROR_INVALID_VALUE;
    known_obj o = {0};
    o.res = *res;
    o.tex = *tex;
    if (view) {
        o.view = *view;
        o.has_view = 1;
    }
    CUresult rc = create(GW_OP_cuTexObjectCreate, &o);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (!remember(&o)) {
        gwf_cuTexObjectDestroy(o.v);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *p = o.v;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuSurfObjectCreate(CUsurfObject *p, const CUDA_RESOURCE_DESC *res)
{
    if (!p || !res)
        return CUDA_ERROR_INVALID_VALUE;
    if (res->resType != CU_RESOURCE_TYPE_ARRAY) /* surfaces are arrays only */
        return CUDA_ERROR_INVALID_VALUE;
    known_obj o = {0};
    o.surface = 1;
    o.res = *res;
    CUresult rc = create(GW_OP_cuSurfObjectCreate, &o);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (!remember(&o)) {
        gwf_cuSurfObjectDestroy(o.v);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *p = o.v;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuTexObjectDestroy(CUtexObject t)
{
    CUresult rc = gwf_cuTexObjectDestroy(t);
    if (rc == CUDA_SUCCESS)
        forget(t, 0);
    return rc;
}

CUresult CUDAAPI cuSurfObjectDestroy(CUsurfObject s)
{
    CUresult rc = gwf_cuSurfObjectDestroy(s);
    if (rc == CUDA_SUCCESS)
        forget(s, 1);
    return rc;
}

CUresult CUDAAPI cuTexObjectGetResourceDesc(CUDA_RESOURCE_DESC *out, CUtexObject t)
{
    gw_stat_call(GW_OP_cuTexObjectGetResourceDesc);
    known_obj o;
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    if (!find(t, 0, &o))
        return CUDA_ERROR_INVALID_HANDLE;
    *out = o.res;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuSurfObjectGetResourceDesc(CUDA_RESOURCE_DESC *out, CUsurfObject s)
{
    gw_stat_call(GW_OP_cuSurfObjectGetResourceDesc);
    known_obj o;
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    if (!find(s, 1, &o))
        return CUDA_ERROR_INVALID_HANDLE;
    *out = o.res;
    return CUDA_SUCCESS;
}
