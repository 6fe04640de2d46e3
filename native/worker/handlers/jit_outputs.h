/* JIT options from the wire into the driver's arrays, with the worker's own
 * log buffers and wall-time slot for the outputs the client asked for, and
 * what the driver wrote into them back into the reply (format:
 * common/jit_options.h). Used by linking and module and library loads. */
#ifndef GW_WORKER_JIT_OUTPUTS_H
#define GW_WORKER_JIT_OUTPUTS_H

#include "../../common/jit_options.h"
#include "handlers.h"

/* A log size option becomes two driver options (buffer and size). */
#define GW_JIT_DRIVER_OPTIONS (GW_JIT_MAX_OPTIONS + 2u)

typedef struct gw_jit_bufs {
    char *info, *err;                /* the worker's log buffers (NULL: none asked for) */
    size_t info_cap, err_cap;
    int info_idx, err_idx, wall_idx; /* their size and the wall time in the driver's arrays (-1: none) */
} gw_jit_bufs;

/* u32 n (<= 64), n x (u32 option, u64 value) into opts/vals (*n of them).
 * 0; -1 malformed (gw_call_fail: a pointer option, a log over
 * GW_JIT_MAX_LOG, an output asked twice); -2 out of memory (answer
 * CUDA_ERROR_OUT_OF_MEMORY). b is always set up: gw_jit_free it. */
int gw_jit_read(gw_call *c, gw_jit_bufs *b, CUjit_option *opts, void **vals, unsigned *n);
/* The outputs section, after the result: from b and the driver's values. */
void gw_jit_reply(gw_call *c, const gw_jit_bufs *b, void *const *vals);
void gw_jit_free(gw_jit_bufs *b);

#endif
