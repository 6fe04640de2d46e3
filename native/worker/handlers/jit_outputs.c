/* JIT options: numbers to the driver as they are, outputs into the worker's
 * own buffers and slots (jit_outputs.h). */
#include <stdlib.h>
#include <string.h>

#include "jit_outputs.h"

int gw_jit_read(gw_call *c, gw_jit_bufs *b, CUjit_option *opts, void **vals, unsigned *n)
{
    memset(b, 0, sizeof *b);
    b->info_idx = b->err_idx = b->wall_idx = -1;
    *n = 0;
    uint32_t count = gw_in_u32(c);
    if (c->bad)
        return -1;
    if (count > GW_JIT_MAX_OPTIONS) {
        gw_call_fail(c, "%s: %u JIT options, more than %u", gw_op_name(c->h.op), count, GW_JIT_MAX_OPTIONS);
        return -1;
    }
    uint64_t info_size = 0, err_size = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t o = gw_in_u32(c);
        uint64_t v = gw_in_u64(c);
        if (c->bad)
            return -1;
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

static void reply_log(gw_call *c, const char *buf, size_t cap)
{
    uint32_t n = buf ? (uint32_t)strnlen(buf, cap) : 0;
    gw_reply_u32(c, n);
    gw_reply_bytes(c, buf, n);
}

void gw_jit_reply(gw_call *c, const gw_jit_bufs *b, void *const *vals)
{
    reply_log(c, b ? b->info : NULL, b ? b->info_cap : 0);
    reply_log(c, b ? b->err : NULL, b ? b->err_cap : 0);
    uint32_t mask = 0, v[3];
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
    gw_reply_u32(c, mask);
    for (int k = 0; k < 3; k++)
        if (mask >> k & 1)
            gw_reply_u32(c, v[k]);
}

void gw_jit_free(gw_jit_bufs *b)
{
    free(b->info);
    free(b->err);
    b->info = b->err = NULL;
}
