/* JIT options: numbers to the driver as they are, outputs into the worker's
 * own buffers and slots (jit_outputs.h). */
#include <stdlib.h>
#include <string.h>

#include "jit_outputs.h"

_Static_assert(GW_JIT_OPTIONS_MAX == GW_JIT_MAX_OPTIONS && GW_JIT_LOG_MAX == GW_JIT_MAX_LOG,
               "codegen/protocol.txt and common/jit_options.h agree on the JIT limits");

int gw_jit_read(gw_call *c, gw_jit_bufs *b, CUjit_option *opts, void **vals, unsigned *n)
{
    memset(b, 0, sizeof *b);
    b->info_idx = b->err_idx = b->wall_idx = -1;
    *n = 0;
    gw_jit_options_req q = {0};
    if (!gw_in_part(c, gw_jit_options_req, &q))
        return -1;
    uint32_t count = q.n;
    if (count > GW_JIT_OPTIONS_REQ_OPTIONS_MAX) {
        gw_call_fail(c, "%s: %u JIT options, more than %u", gw_op_name(c->h.op), count, GW_JIT_MAX_OPTIONS);
        return -1;
    }
    uint64_t info_size = 0, err_size = 0;
    for (uint32_t i = 0; i < count; i++) {
        gw_jit_options_req_options_item it = {0};
        if (!gw_in_part(c, gw_jit_options_req_options_item, &it))
            return -1;
        uint32_t o = it.option;
        uint64_t v = it.value;
        if (gw_jit_numeric_option(o)) {
            opts[*n] = (CUjit_option)o;
            vals[(*n)++] = (void *)(uintptr_t)v;
            continue;
        }
        int info = o == CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, err = o == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES;
        if (info || err) {
            uint64_t *size = info ? &info_size : &err_size;
            if (*size || !v || v > GW_JIT_MAX_LOG) {
                gw_call_fail(c, "%s: JIT log of %llu bytes (1 to %u, once)", gw_op_name(c->h.op),
                             (unsigned long long)v, GW_JIT_MAX_LOG);
                return -1;
            }
            *size = v;
            continue;
        }
        if (o == CU_JIT_WALL_TIME && b->wall_idx < 0) {
            b->wall_idx = (int)*n;
            opts[*n] = CU_JIT_WALL_TIME;
            vals[(*n)++] = NULL; /* the driver overwrites it with a float */
            continue;
        }
        gw_call_fail(c, "%s: JIT option %u cannot travel (a pointer, an output asked twice or unknown)",
                     gw_op_name(c->h.op), o);
        return -1;
    }
    /* the buffers last: nothing is allocated for a request that turns out malformed */
    for (int k = 0; k < 2; k++) {
        uint64_t size = k ? err_size : info_size;
        if (!size)
            continue;
        char *buf = calloc(1, (size_t)size);
        if (!buf)
            return -2;
        *(k ? &b->err : &b->info) = buf;
        *(k ? &b->err_cap : &b->info_cap) = (size_t)size;
        opts[*n] = k ? CU_JIT_ERROR_LOG_BUFFER : CU_JIT_INFO_LOG_BUFFER;
        vals[(*n)++] = buf;
        *(k ? &b->err_idx : &b->info_idx) = (int)*n;
        opts[*n] = k ? CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES : CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES;
        vals[(*n)++] = (void *)(uintptr_t)size;
    }
    return 0;
}

static uint32_t log_length(const char *buf, size_t cap) { return buf ? (uint32_t)strnlen(buf, cap) : 0; }

/* JIT_OUTPUTS (codegen/protocol.txt) */
void gw_jit_reply(gw_call *c, const gw_jit_bufs *b, void *const *vals)
{
    uint32_t n = log_length(b ? b->info : NULL, b ? b->info_cap : 0);
    gw_reply_fields(c, gw_jit_outputs_req, {.info_length = n});
    gw_reply_bytes(c, b ? b->info : NULL, n);
    n = log_length(b ? b->err : NULL, b ? b->err_cap : 0);
    gw_reply_fields(c, gw_jit_outputs_req_after_info_log, {.error_length = n});
    gw_reply_bytes(c, b ? b->err : NULL, n);
    uint32_t mask = 0, v[3] = {0};
    if (b && b->info && (size_t)(uintptr_t)vals[b->info_idx] != b->info_cap) {
        mask |= GW_JIT_OUT_INFO_SIZE;
        v[0] = (uint32_t)(uintptr_t)vals[b->info_idx];
    }
    if (b && b->err && (size_t)(uintptr_t)vals[b->err_idx] != b->err_cap) {
        mask |= GW_JIT_OUT_ERROR_SIZE;
        v[1] = (uint32_t)(uintptr_t)vals[b->err_idx];
    }
    if (b && b->wall_idx >= 0) {
        mask |= GW_JIT_OUT_WALL_TIME;
        memcpy(&v[2], &vals[b->wall_idx], 4); /* the float the driver wrote over the slot */
    }
    gw_reply_fields(c, gw_jit_outputs_req_after_error_log, {.mask = mask});
    if (mask & GW_JIT_OUT_INFO_SIZE)
        gw_reply_fields(c, gw_jit_outputs_req_info_size, {.size = v[0]});
    if (mask & GW_JIT_OUT_ERROR_SIZE)
        gw_reply_fields(c, gw_jit_outputs_req_error_size, {.size = v[1]});
    if (mask & GW_JIT_OUT_WALL_TIME)
        gw_reply_fields(c, gw_jit_outputs_req_wall_time, {.bits = v[2]});
}

void gw_jit_free(gw_jit_bufs *b)
{
    free(b->info);
    free(b->err);
    b->info = b->err = NULL;
}
