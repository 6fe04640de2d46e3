/* JIT options (CUjit_option) on the wire, shared by the client and the worker.
 *
 * Options whose value is a plain number (cuda.h: "Option type: unsigned int /
 * int", or no value) travel as they are. The outputs (log buffers, the sizes
 * the driver writes back, the wall time) travel as requests: a log size
 * option asks the worker for a buffer of its own of that size (at most
 * GW_JIT_MAX_LOG), CU_JIT_WALL_TIME asks for the time; the buffer options
 * themselves never travel (a client pointer must not reach the driver).
 * Everything else (symbol tables, name lists: pointers) is refused. */
#ifndef GW_JIT_OPTIONS_H
#define GW_JIT_OPTIONS_H

#include <cuda.h>

#define GW_JIT_MAX_OPTIONS 64u
#define GW_JIT_MAX_LOG (1u << 20) /* per log; a longer log is cut, as a smaller buffer would cut it */

/* The outputs section of a reply (after the result, failures included):
 * u32 n, n bytes of the info log, u32 m, m bytes of the error log, u32 mask
 * of GW_JIT_OUT_*, then a u32 per bit set, in bit order: the info size the
 * driver wrote back, the error size, the wall time (float bits). A size is
 * sent only if the driver changed it. */
enum {
    GW_JIT_OUT_INFO_SIZE = 1u << 0,
    GW_JIT_OUT_ERROR_SIZE = 1u << 1,
    GW_JIT_OUT_WALL_TIME = 1u << 2,
};

static inline int gw_jit_numeric_option(unsigned o)
{
    switch (o) {
    case CU_JIT_MAX_REGISTERS:
    case CU_JIT_THREADS_PER_BLOCK:
    case CU_JIT_OPTIMIZATION_LEVEL:
    case CU_JIT_TARGET_FROM_CUCONTEXT:
    case CU_JIT_TARGET:
    case CU_JIT_FALLBACK_STRATEGY:
    case CU_JIT_GENERATE_DEBUG_INFO:
    case CU_JIT_LOG_VERBOSE:
    case CU_JIT_GENERATE_LINE_INFO:
    case CU_JIT_CACHE_MODE:
    case CU_JIT_LTO:
    case CU_JIT_FTZ:
    case CU_JIT_PREC_DIV:
    case CU_JIT_PREC_SQRT:
    case CU_JIT_FMA:
    case CU_JIT_OPTIMIZE_UNUSED_DEVICE_VARIABLES:
    case CU_JIT_POSITION_INDEPENDENT_CODE:
    case CU_JIT_MIN_CTA_PER_SM:
    case CU_JIT_MAX_THREADS_PER_BLOCK:
    case CU_JIT_OVERRIDE_DIRECTIVE_VALUES:
    case CU_JIT_SPLIT_COMPILE:
        return 1;
    default:
        return 0;
    }
}

#endif
