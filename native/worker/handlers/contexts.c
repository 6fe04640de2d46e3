/* Context creation. The client names the new context; execution-affinity
 * parameters come by value and the driver gets them rebuilt here (CIG
 * parameters point at objects of the client process: the client refuses them). */
#include <string.h>

#include "handlers.h"

#define MAX_AFFINITY GW_CTX_CREATE_REQ_AFFINITY_MAX /* far more than the driver's affinity types */

/* CTX_CREATE (codegen/protocol.txt) */
static void ctx_create(gw_call *c)
{
    gw_ctx_create_req q = {0};
    gw_in_part(c, gw_ctx_create_req, &q);
    uint64_t id = q.id;
    unsigned flags = q.flags;
    CUdevice dev = (CUdevice)q.device;
    uint32_t has_params = q.has_params;
    uint32_t given = q.has_affinity;
    int32_t n = q.n;
    size_t nsent = given && n > 0 ? (size_t)n : 0;
    if (!c->bad && nsent > MAX_AFFINITY)
        gw_call_fail(c, "%s: %d affinity parameters", gw_op_name(c->h.op), n);
    size_t bytes = nsent * GW_CTX_CREATE_REQ_AFFINITY_ITEM_SIZE;
    const void *p = c->bad || !nsent ? NULL : gw_in_view(c, bytes);
    gw_ctx_create_req_affinity_item items[MAX_AFFINITY];
    if (p && !gw_ctx_create_req_affinity_get(p, bytes, (uint32_t)nsent, items))
        gw_call_fail(c, "%s: affinity parameters not decoded", gw_op_name(c->h.op)); /* cannot: checked above */
    if (!gw_args_ok(c))
        return;
    CUexecAffinityParam aff[MAX_AFFINITY + 1]; /* one more: never a zero-length array */
    memset(aff, 0, sizeof aff);
    for (size_t i = 0; p && i < nsent; i++)
        aff[i] = items[i].param;
    void *fn = gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    CUcontext ctx = NULL;
    CUresult r;
    if (c->h.op == GW_OP_cuCtxCreate_v4) {
        CUctxCreateParams prm = {given ? aff : NULL, n, NULL};
        r = ((CUresult(*)(CUcontext *, CUctxCreateParams *, unsigned, CUdevice))fn)(&ctx, has_params ? &prm : NULL,
                                                                                     flags, dev);
    } else if (c->h.op == GW_OP_cuCtxCreate_v3) {
        r = ((CUresult(*)(CUcontext *, CUexecAffinityParam *, int, unsigned, CUdevice))fn)(&ctx, given ? aff : NULL,
                                                                                           n, flags, dev);
    } else {
        r = ((CUresult(*)(CUcontext *, unsigned, CUdevice))fn)(&ctx, flags, dev);
    }
    gw_reply_result(c, r);
    if (r == CUDA_SUCCESS)
        gw_handle_bind(c, GW_HT_CUcontext, id, ctx);
}

void gw_h_cuCtxCreate(gw_call *c) { ctx_create(c); }
void gw_h_cuCtxCreate_v2(gw_call *c) { ctx_create(c); }
void gw_h_cuCtxCreate_v3(gw_call *c) { ctx_create(c); }
void gw_h_cuCtxCreate_v4(gw_call *c) { ctx_create(c); }
