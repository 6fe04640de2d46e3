/* TEST DOUBLE: gpuwire CPU stand-in driver. Host implementations of the kernels of
 * tests/programs/vector_add.cu, streams_events.cu, error_paths.cu, async_pipeline.cu,
 * device_printf.cu and pinned_kernel_args.cu. Names are the device symbols nvcc emits; layouts are what
 * cuFuncGetParamInfo reports on the GPU (checked against the cubins' parameter tables by
 * `make -C tests/standin layouts`). */
#include "kernels.h"

#include <stdio.h>

/* vector_add(const float *a, const float *b, float *c, int n) */
static void vector_add(sd_exec *x)
{
    int i = gidx(x);
    if (i >= arg_i32(x, 3))
        return;
    float a, b, c;
    if (!ld(x, arg_ptr(x, 0), i, &a, 4) || !ld(x, arg_ptr(x, 1), i, &b, 4))
        return;
    c = a + b;
    st(x, arg_ptr(x, 2), i, &c, 4);
}

/* se_produce(int *out, int n, int base, int spins) */
static void se_produce(sd_exec *x)
{
    int i = gidx(x);
    if (i >= arg_i32(x, 1))
        return;
    uint32_t v = (uint32_t)(arg_i32(x, 2) + i);
    for (int k = 0, spins = arg_i32(x, 3); k < spins; k++)
        v = v * 1664525u + 1013904223u;
    int32_t out = (int32_t)(v & 0x7fffffff);
    st(x, arg_ptr(x, 0), i, &out, 4);
}

/* se_consume(const int *in, int *out, int n, int add) */
static void se_consume(sd_exec *x)
{
    int i = gidx(x);
    if (i >= arg_i32(x, 2))
        return;
    int32_t v;
    if (!ld(x, arg_ptr(x, 0), i, &v, 4))
        return;
    v = (int32_t)((uint32_t)v + (uint32_t)arg_i32(x, 3));
    st(x, arg_ptr(x, 1), i, &v, 4);
}

/* ep_touch(int *p, int n) */
static void ep_touch(sd_exec *x)
{
    int i = gidx(x);
    if (i >= arg_i32(x, 1))
        return;
    int32_t v = i + 1;
    st(x, arg_ptr(x, 0), i, &v, 4);
}

/* gw_sleep(int ms) (async_pipeline.cu): stands for long GPU work. Nothing runs
 * here: the launch books the milliseconds on the context (sd_ctx.busy_until)
 * and synchronizations wait them out, as they would wait for a GPU. */
static void gw_sleep(sd_exec *x) { (void)x; }

/* dp_say(int *out, int v) (device_printf.cu): thread 0 prints "device says v"
 * and stores v. The driver writes device printf output to the process's
 * stdout; here it goes there at once (flushed), which the worker forwards. */
static void dp_say(sd_exec *x)
{
    if (x->bid[0] || x->bid[1] || x->bid[2] || x->tid[0] || x->tid[1] || x->tid[2])
        return;
    int32_t v = arg_i32(x, 1);
    printf("device says %d\n", v);
    fflush(stdout);
    st(x, arg_ptr(x, 0), 0, &v, 4);
}

/* *p += add for thread 0 of block 0, p a 64-bit integer anywhere the device
 * reaches (pinned_kernel_args.cu hands it page-locked host memory). */
static void add_u64_at(sd_exec *x, uint64_t p, uint64_t add)
{
    if (x->bid[0] || x->bid[1] || x->bid[2] || x->tid[0] || x->tid[1] || x->tid[2])
        return;
    uint64_t v;
    if (!ld(x, p, 0, &v, 8))
        return;
    v += add;
    st(x, p, 0, &v, 8);
}

/* pk_add(unsigned long long *p, unsigned long long add) */
static void pk_add(sd_exec *x)
{
    uint64_t add;
    sd_arg(x, 1, &add, sizeof add);
    add_u64_at(x, arg_ptr(x, 0), add);
}

/* pk_add_boxed(pk_box b): struct { unsigned long long add; unsigned long long *where; } by value */
static void pk_add_boxed(sd_exec *x)
{
    uint64_t box[2];
    sd_arg(x, 0, box, sizeof box);
    add_u64_at(x, box[1], box[0]);
}

const sd_kernel_desc sd_kernels_programs[] = {
    {"_Z10vector_addPKfS0_Pfi", 4, {P(0, 8), P(8, 8), P(16, 8), P(24, 4)}, vector_add},
    {"_Z10se_producePiiii", 4, {P(0, 8), P(8, 4), P(12, 4), P(16, 4)}, se_produce},
    {"_Z10se_consumePKiPiii", 4, {P(0, 8), P(8, 8), P(16, 4), P(20, 4)}, se_consume},
    {"_Z8ep_touchPii", 2, {P(0, 8), P(8, 4)}, ep_touch},
    {"_Z8gw_sleepi", 1, {P(0, 4)}, gw_sleep},
    {"_Z6dp_sayPii", 2, {P(0, 8), P(8, 4)}, dp_say},
    {"_Z6pk_addPyy", 2, {P(0, 8), P(8, 8)}, pk_add},
    {"_Z12pk_add_boxed6pk_box", 1, {P(0, 16)}, pk_add_boxed},
};
const size_t sd_kernels_programs_n = sizeof sd_kernels_programs / sizeof sd_kernels_programs[0];
