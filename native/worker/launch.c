/* Kernel launches: the packed parameter buffer is checked against the
 * function's layout and turned back into kernelParams. */
#include <string.h>

#include "worker.h"

#define MAX_PARAM_BYTES 32764u
#define MAX_LAUNCH_ATTRS 32u

typedef CUresult (*param_info_fn)(void *, size_t, size_t *, size_t *);

/* u64 f, u32 grid[3], block[3], shmem, u64 stream, u32 nattrs, attrs, u32 nbytes, params */
static void launch(gw_call *c)
{
    uint64_t fid = gw_in_u64(c);
    int found, is_kernel = 0;
    void *f = gw_handle_real(GW_HT_CUkernel, fid, &found);
    if (found && f)
        is_kernel = 1;
    else
        f = gw_handle_lookup(c, GW_HT_CUfunction, fid);
    const uint32_t *dimsp = gw_in_view(c, 7 * 4);
    uint32_t dims[7] = {0};
    if (dimsp)
        memcpy(dims, dimsp, sizeof dims);
    CUstream s = gw_in_handle(c, GW_HT_CUstream);
    uint32_t nattrs = gw_in_u32(c);
    if (!c->bad && nattrs > MAX_LAUNCH_ATTRS)
        gw_call_fail(c, "%s: %u launch attributes", gw_op_name(c->h.op), nattrs);
    CUlaunchAttribute attrs[MAX_LAUNCH_ATTRS];
    const void *ap = c->bad ? NULL : gw_in_view(c, nattrs * sizeof(CUlaunchAttribute));
    if (ap)
        memcpy(attrs, ap, nattrs * sizeof(CUlaunchAttribute));
    for (uint32_t i = 0; ap && i < nattrs; i++) { /* event handles inside attributes are ids */
        if (attrs[i].id == CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT)
            attrs[i].value.programmaticEvent.event =
                gw_handle_lookup(c, GW_HT_CUevent, (uint64_t)(uintptr_t)attrs[i].value.programmaticEvent.event);
        else if (attrs[i].id == CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT)
            attrs[i].value.launchCompletionEvent.event =
                gw_handle_lookup(c, GW_HT_CUevent, (uint64_t)(uintptr_t)attrs[i].value.launchCompletionEvent.event);
    }
    uint32_t nbytes = gw_in_u32(c);
    if (!c->bad && nbytes > MAX_PARAM_BYTES)
        gw_call_fail(c, "%s: %u parameter bytes", gw_op_name(c->h.op), nbytes);
    const uint8_t *params = c->bad ? NULL : gw_in_view(c, nbytes);
    if (!gw_args_ok(c))
        return;
    /* rebuild kernelParams from the layout the driver reports for this function */
    param_info_fn info = (param_info_fn)gw_driver_sym(is_kernel ? GW_OP_cuKernelGetParamInfo : GW_OP_cuFuncGetParamInfo);
    if (!info) {
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
        return;
    }
    static _Thread_local uint8_t buf[MAX_PARAM_BYTES] __attribute__((aligned(16)));
    void *kp[MAX_PARAM_BYTES / 4 + 1];
    memcpy(buf, params, nbytes);
    uint32_t n = 0;
    for (; n < MAX_PARAM_BYTES / 4; n++) {
        size_t off, size;
        if (info(f, n, &off, &size) != CUDA_SUCCESS)
            break;
        if (off + size > nbytes) {
            gw_reply_result(c, CUDA_ERROR_INVALID_VALUE);
            return;
        }
        kp[n] = buf + off;
    }
    void *fn = gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    CUresult r;
    unsigned op = c->h.op;
    if (op == GW_OP_cuLaunchKernelEx || op == GW_OP_cuLaunchKernelEx_ptsz) {
        CUlaunchConfig cfg = {dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], s,
                              nattrs ? attrs : NULL, nattrs};
        r = ((CUresult(*)(const CUlaunchConfig *, CUfunction, void **, void **))fn)(&cfg, f, kp, NULL);
    } else if (op == GW_OP_cuLaunchCooperativeKernel || op == GW_OP_cuLaunchCooperativeKernel_ptsz) {
        r = ((CUresult(*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                          void **))fn)(f, dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], s, kp);
    } else {
        r = ((CUresult(*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                          void **, void **))fn)(f, dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], s, kp,
                                                NULL);
    }
    gw_reply_result(c, r);
}

void gw_h_cuLaunchKernel(gw_call *c) { launch(c); }
void gw_h_cuLaunchKernel_ptsz(gw_call *c) { launch(c); }
void gw_h_cuLaunchKernelEx(gw_call *c) { launch(c); }
void gw_h_cuLaunchKernelEx_ptsz(gw_call *c) { launch(c); }
void gw_h_cuLaunchCooperativeKernel(gw_call *c) { launch(c); }
void gw_h_cuLaunchCooperativeKernel_ptsz(gw_call *c) { launch(c); }
