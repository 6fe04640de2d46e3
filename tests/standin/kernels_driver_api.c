/* TEST DOUBLE: gpuwire CPU stand-in driver. Host implementations of the extern "C" kernels
 * of tests/programs/driver_api_kernels.cu. */
#include "kernels.h"

/* da_scale(float *data, float factor, int n) */
static void da_scale(sd_exec *x)
{
    int i = gidx(x);
    if (i >= arg_i32(x, 2))
        return;
    float v;
    if (!ld(x, arg_ptr(x, 0), i, &v, 4))
        return;
    v *= arg_f32(x, 1);
    st(x, arg_ptr(x, 0), i, &v, 4);
}

/* da_mix(int a, char b, double c, long long *out): no bounds check, as in the source */
static void da_mix(sd_exec *x)
{
    int i = gidx(x);
    int64_t v = (int64_t)arg_i32(x, 0) * 1000 + arg_i8(x, 1) + (int64_t)(arg_f64(x, 2) * 10.0) + i;
    st(x, arg_ptr(x, 3), i, &v, 8);
}

const sd_kernel_desc sd_kernels_driver_api[] = {
    {"da_scale", 3, {P(0, 8), P(8, 4), P(12, 4)}, da_scale},
    {"da_mix", 4, {P(0, 4), P(4, 1), P(8, 8), P(16, 8)}, da_mix},
};
const size_t sd_kernels_driver_api_n = sizeof sd_kernels_driver_api / sizeof sd_kernels_driver_api[0];
