/* The driver's own error wording, for the client's cuGetErrorString. */
#include <string.h>

#include "handlers.h"

/* GET_ERROR_STRING: u64 code -> i32 result, u32 length, the text (no NUL) */
static void text(gw_call *c)
{
    gw_get_error_string_req q = {0};
    gw_in_fields(c, GW_GET_ERROR_STRING_REQ_SIZE, gw_get_error_string_req_get(gw_in_next(c), gw_in_left(c), &q));
    CUresult code = (CUresult)q.code;
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUresult, const char **) = (CUresult(*)(CUresult, const char **))gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    const char *s = NULL;
    CUresult r = fn(code, &s);
    if (r != CUDA_SUCCESS) {
        gw_reply_result(c, r);
        return;
    }
    uint32_t n = s ? (uint32_t)strnlen(s, 4000) : 0;
    uint8_t *fields = gw_reply_start(c, GW_GET_ERROR_STRING_REP_SIZE);
    if (!fields)
        return;
    gw_get_error_string_rep_put(fields, &(gw_get_error_string_rep){.result = CUDA_SUCCESS, .length = n});
    gw_reply_bytes(c, s, n);
}

void gw_h_cuGetErrorString(gw_call *c) { text(c); }
void gw_h_cuGetErrorName(gw_call *c) { text(c); }
