/* TEST DOUBLE: gpuwire CPU stand-in driver. Helpers for the host implementations of the
 * test kernels (kernels_*.c): typed parameter reads and checked element loads and stores.
 * A load or store through a bad address returns 0 and has marked the fault; the kernel then
 * returns at once. */
#ifndef GW_STANDIN_KERNELS_H
#define GW_STANDIN_KERNELS_H

#include "standin.h"

#include <string.h>

#define ARG_READER(name, T)                                         \
    static inline T name(const sd_exec *x, unsigned int i)          \
    {                                                               \
        T v;                                                        \
        sd_arg(x, i, &v, sizeof v);                                 \
        return v;                                                   \
    }
ARG_READER(arg_ptr, uint64_t)
ARG_READER(arg_i8, int8_t)
ARG_READER(arg_u8, uint8_t)
ARG_READER(arg_i16, int16_t)
ARG_READER(arg_i32, int32_t)
ARG_READER(arg_f32, float)
ARG_READER(arg_f64, double)
#undef ARG_READER

/* Element i of an array of `size`-byte elements at device address base. Index arithmetic
 * wraps like the GPU's 64-bit address arithmetic; the table check catches the result. */
static inline int ld(sd_exec *x, uint64_t base, int64_t i, void *out, size_t size)
{
    const void *p = sd_at(x, base + (uint64_t)i * size, size);
    if (!p)
        return 0;
    memcpy(out, p, size);
    return 1;
}

static inline int st(sd_exec *x, uint64_t base, int64_t i, const void *v, size_t size)
{
    void *p = sd_at(x, base + (uint64_t)i * size, size);
    if (!p)
        return 0;
    memcpy(p, v, size);
    return 1;
}

/* blockIdx.x * blockDim.x + threadIdx.x, converted to int as the CUDA source does. */
static inline int gidx(const sd_exec *x) { return (int)sd_gx(x); }

#define P(off, size) {(uint16_t)(off), (uint16_t)(size)}

#endif
