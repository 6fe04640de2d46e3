/* The driver's own error wording, for the client's cuGetErrorString. */
#include <string.h>

#include "handlers.h"

static void text(gw_call *c)
{
    CUresult code = (CUresult)gw_in_u64(c);
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUresult, const char **) = (CUresult(*)(CUresult, const char **))gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    const char *s = NULL;
    CUresult r = fn(code, &s);
    gw_reply_result(c, r);
    if (r == CUDA_SUCCESS) {
        uint32_t n = s ? (uint32_t)strnlen(s, 4000) : 0;
        gw_reply_u32(c, n);
        gw_reply_bytes(c, s, n);
    }
}

void gw_h_cuGetErrorString(gw_call *c) { text(c); }
void gw_h_cuGetErrorName(gw_call *c) { text(c); }
