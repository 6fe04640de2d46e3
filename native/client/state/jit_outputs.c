/* JIT options: numbers travel, outputs travel as requests and come back in
 * the reply (see jit_outputs.h and common/jit_options.h). */
#include <string.h>

#include "../../common/jit_options.h"
#include "jit_outputs.h"

int gw_jit_scan(const char *fn, unsigned n, CUjit_option *opts, void **vals, gw_jit_outs *o)
{
    memset(o, 0, sizeof *o);
    o->vals = vals;
    o->info_idx = o->err_idx = o->wall_idx = -1;
    if (n && (!opts || !vals))
        return -1;
    if (n > GW_JIT_MAX_OPTIONS) {
        gw_log("%s: %u JIT options, more than %u", fn, n, GW_JIT_MAX_OPTIONS);
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        switch (opts[i]) {
        case CU_JIT_INFO_LOG_BUFFER:
            o->info = vals[i];
            break;
        case CU_JIT_ERROR_LOG_BUFFER:
            o->err = vals[i];
            break;
        case CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES:
            o->info_size = (unsigned)(uintptr_t)vals[i]; /* "Option type: unsigned int" */
            o->info_idx = (int)i;
            break;
        case CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES:
            o->err_size = (unsigned)(uintptr_t)vals[i];
            o->err_idx = (int)i;
            break;
        case CU_JIT_WALL_TIME:
            o->wall_idx = (int)i;
            break;
        default:
            if (!gw_jit_numeric_option(opts[i])) {
                gw_log("%s: JIT option %d is not forwarded (its value is a pointer the driver would read): "
                       "CUDA_ERROR_INVALID_VALUE", fn, (int)opts[i]);
                return -1;
            }
        }
    }
    /* a log needs both a buffer and room in it */
    if (!o->info || !o->info_size)
        o->info = NULL, o->info_size = 0;
    if (!o->err || !o->err_size)
        o->err = NULL, o->err_size = 0;
    return 0;
}

int gw_jit_has_outputs(const gw_jit_outs *o) { return o->info || o->err || o->wall_idx >= 0; }

static uint64_t capped(size_t size) { return size < GW_JIT_MAX_LOG ? size : GW_JIT_MAX_LOG; }

/* JIT_OPTIONS (codegen/protocol.txt) */
static void put_option(gw_req *q, uint32_t option, uint64_t value)
{
    gw_put_fields(q, gw_jit_options_req_options_item, {.option = option, .value = value});
}

void gw_jit_put(gw_req *q, unsigned n, CUjit_option *opts, void **vals, const gw_jit_outs *o)
{
    uint32_t count = (o->info != NULL) + (o->err != NULL) + (o->wall_idx >= 0);
    for (unsigned i = 0; i < n; i++)
        count += gw_jit_numeric_option(opts[i]);
    gw_put_fields(q, gw_jit_options_req, {.n = count});
    for (unsigned i = 0; i < n; i++)
        if (gw_jit_numeric_option(opts[i]))
            put_option(q, (uint32_t)opts[i], (uint64_t)(uintptr_t)vals[i]);
    if (o->info)
        put_option(q, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, capped(o->info_size));
    if (o->err)
        put_option(q, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, capped(o->err_size));
    if (o->wall_idx >= 0)
        put_option(q, CU_JIT_WALL_TIME, 0);
}

static void fill_log(char *dst, size_t size, const char *text, uint32_t n)
{
    if (!dst || !size || !text)
        return;
    size_t k = n < size - 1 ? n : size - 1; /* the text, cut to the buffer, always terminated */
    memcpy(dst, text, k);
    dst[k] = 0;
}

/* A log of JIT_OUTPUTS: its text in place, or NULL (short, or over its maximum: the reply is short). */
static const char *log_text(gw_rep *r, uint32_t n)
{
    if (n > GW_JIT_OUTPUTS_REQ_INFO_LOG_MAX) { /* the same maximum for both logs */
        gw_rep_skip(r, 0);
        return NULL;
    }
    return gw_get_view(r, n);
}

/* JIT_OUTPUTS (codegen/protocol.txt) */
void gw_jit_take(gw_rep *r, const gw_jit_outs *o)
{
    _Static_assert(GW_JIT_OUTPUTS_REQ_INFO_LOG_MAX == GW_JIT_OUTPUTS_REQ_ERROR_LOG_MAX, "one log maximum");
    gw_jit_outputs_req head = {0};
    gw_get_part(r, gw_jit_outputs_req, &head);
    uint32_t ni = head.info_length;
    const char *info = log_text(r, ni);
    gw_jit_outputs_req_after_info_log mid = {0};
    gw_get_part(r, gw_jit_outputs_req_after_info_log, &mid);
    uint32_t ne = mid.error_length;
    const char *err = log_text(r, ne);
    gw_jit_outputs_req_after_error_log tail = {0};
    gw_get_part(r, gw_jit_outputs_req_after_error_log, &tail);
    uint32_t mask = tail.mask, v[3] = {0};
    gw_jit_outputs_req_info_size is = {0};
    gw_jit_outputs_req_error_size es = {0};
    gw_jit_outputs_req_wall_time wt = {0};
    if (mask & GW_JIT_OUT_INFO_SIZE)
        gw_get_part(r, gw_jit_outputs_req_info_size, &is);
    if (mask & GW_JIT_OUT_ERROR_SIZE)
        gw_get_part(r, gw_jit_outputs_req_error_size, &es);
    if (mask & GW_JIT_OUT_WALL_TIME)
        gw_get_part(r, gw_jit_outputs_req_wall_time, &wt);
    v[0] = is.size;
    v[1] = es.size;
    v[2] = wt.bits;
    if (!o || !gw_get_view(r, 0) || mask >> 3) /* short or odd: nothing written (the caller sees a short reply) */
        return;
    fill_log(o->info, o->info_size, info, ni);
    fill_log(o->err, o->err_size, err, ne);
    if ((mask & GW_JIT_OUT_INFO_SIZE) && o->info_idx >= 0)
        o->vals[o->info_idx] = (void *)(uintptr_t)v[0];
    if ((mask & GW_JIT_OUT_ERROR_SIZE) && o->err_idx >= 0)
        o->vals[o->err_idx] = (void *)(uintptr_t)v[1];
    if ((mask & GW_JIT_OUT_WALL_TIME) && o->wall_idx >= 0)
        memcpy(&o->vals[o->wall_idx], &v[2], 4); /* a float over the slot's first bytes, as the driver writes it */
}
