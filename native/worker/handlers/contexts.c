/* Context creation. The client names the new context; execution-affinity
 * parameters come by value and the driver gets them rebuilt here (CIG
 * parameters point at objects of the client process: the client refuses them). */
#include <string.h>

#include "handlers.h"

#define MAX_AFFINITY 64u /* far more than the driver's affinity types */

/* u64 context id, u32 flags, u64 device, u32 params given (v4), u32 array
 * given, i32 n, then n x CUexecAffinityParam if the array is given */
static void ctx_create(gw_call *c)
{
    uint64_t id = gw_in_u64(c);
    unsigned flags = gw_in_u32(c);
    CUdevice dev = (CUdevice)gw_in_u64(c);
    uint32_t has_params = gw_in_u32(c);
    uint32_t given = gw_in_u32(c);
    int32_t n = (int32_t)gw_in_u32(c);
    size_t nsent = given && n > 0 ? (size_t)n : 0;
    if (!c->bad && nsent > MAX_AFFINITY)
        gw_call_fail(c, "%s: %d affinity parameters", gw_op_name(c->h.op), n);
    const void *p = c->bad || !nsent ? NULL : gw_in_view(c, nsent * sizeof(CUexecAffinityParam));
    if (!gw_args_ok(c))
        return;
    CUexecAffinityParam aff[MAX_AFFINITY + 1]; /* one more: never a zero-length array */
    memset(aff, 0, sizeof aff);
    if (p)
        memcpy(aff, p, nsent * sizeof *aff);
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
