/* The JIT options whose values the driver writes (log buffers, their sizes,
 * the wall time): sent as requests, filled from the worker's reply
 * (common/jit_options.h has the wire format). Used by linking and module and
 * library loads. */
#ifndef GW_CLIENT_JIT_OUTPUTS_H
#define GW_CLIENT_JIT_OUTPUTS_H

#include "state.h"

typedef struct gw_jit_outs {
    void **vals;                     /* the application's option values: sizes and wall time land there */
    char *info, *err;                /* its log buffers (NULL: none, or no room) */
    size_t info_size, err_size;      /* their sizes as it gave them */
    int info_idx, err_idx, wall_idx; /* where the two sizes and the wall time were given (-1: nowhere) */
} gw_jit_outs;

/* Reads the application's options, the outputs into *o. 0, or -1 (logged) if
 * one cannot travel or there are too many. */
GW_HIDDEN int gw_jit_scan(const char *fn, unsigned n, CUjit_option *opts, void **vals, gw_jit_outs *o);
/* Whether the driver would write anything the application may read when the call returns. */
GW_HIDDEN int gw_jit_has_outputs(const gw_jit_outs *o);
/* u32 count, then (u32 option, u64 value) for each number and each output asked for. */
GW_HIDDEN void gw_jit_put(gw_req *q, unsigned n, CUjit_option *opts, void **vals, const gw_jit_outs *o);
/* A reply's outputs section into the application's buffers and values (o NULL: skipped). */
GW_HIDDEN void gw_jit_take(gw_rep *r, const gw_jit_outs *o);

#endif
