/* TEST DOUBLE: gpuwire CPU stand-in driver. Host implementations of the kernels of
 * tests/programs/multi_module_*.cu (three modules; float, double, char/short, struct-by-value
 * and template-instantiated kernels). */
#include "kernels.h"

/* mm_iota(int *out, int n) */
static void mm_iota(sd_exec *x)
{
    int i = gidx(x);
    if (i >= arg_i32(x, 1))
        return;
    int32_t v = (int32_t)((uint32_t)i * 3u - 5u);
    st(x, arg_ptr(x, 0), i, &v, 4);
}

/* mm_axpy_f(float a, const float *x, float *y, int n): fused multiply-add, as nvcc emits */
static void mm_axpy_f(sd_exec *x)
{
    int i = gidx(x);
    if (i >= arg_i32(x, 3))
        return;
    float xv, yv;
    if (!ld(x, arg_ptr(x, 1), i, &xv, 4) || !ld(x, arg_ptr(x, 2), i, &yv, 4))
        return;
    yv = __builtin_fmaf(arg_f32(x, 0), xv, yv);
    st(x, arg_ptr(x, 2), i, &yv, 4);
}

/* mm_axpy_d(double a, const double *x, double *y, int n) */
static void mm_axpy_d(sd_exec *x)
{
    int i = gidx(x);
    if (i >= arg_i32(x, 3))
        return;
    double xv, yv;
    if (!ld(x, arg_ptr(x, 1), i, &xv, 8) || !ld(x, arg_ptr(x, 2), i, &yv, 8))
        return;
    yv = __builtin_fma(arg_f64(x, 0), xv, yv);
    st(x, arg_ptr(x, 2), i, &yv, 8);
}

/* mm_mixed(char c, short s, int i, double d, float f, unsigned char u, long long *out) */
static void mm_mixed(sd_exec *x)
{
    if (x->bid[0] != 0 || x->tid[0] != 0)
        return;
    int64_t out[6] = {arg_i8(x, 0), arg_i16(x, 1), arg_i32(x, 2), (int64_t)(arg_f64(x, 3) * 1000.0),
                      (int64_t)(arg_f32(x, 4) * 1000.0f), arg_u8(x, 5)};
    uint64_t base = arg_ptr(x, 6);
    for (int k = 0; k < 6; k++)
        if (!st(x, base, k, &out[k], 8))
            return;
}

/* mm_apply(struct mm_params {int n; float scale; char tag; double offset;} p,
 *          const float *in, double *out) */
static void mm_apply(sd_exec *x)
{
    struct {
        int32_t n;
        float scale;
        int8_t tag;
        double offset;
    } p;
    _Static_assert(sizeof p == 24, "mm_params is 24 bytes on the GPU");
    sd_arg(x, 0, &p, sizeof p);
    int i = gidx(x);
    if (i >= p.n)
        return;
    float in;
    if (!ld(x, arg_ptr(x, 1), i, &in, 4))
        return;
    double out = (double)(in * p.scale) + p.offset + (double)p.tag;
    st(x, arg_ptr(x, 2), i, &out, 8);
}

/* mm_fill<short>(short *out, short v, int n) */
static void mm_fill_s(sd_exec *x)
{
    int i = gidx(x);
    if (i >= arg_i32(x, 2))
        return;
    int16_t v = (int16_t)(arg_i16(x, 1) + (int16_t)(i & 3));
    st(x, arg_ptr(x, 0), i, &v, 2);
}

/* mm_fill<unsigned char>(unsigned char *out, unsigned char v, int n) */
static void mm_fill_u8(sd_exec *x)
{
    int i = gidx(x);
    if (i >= arg_i32(x, 2))
        return;
    uint8_t v = (uint8_t)(arg_u8(x, 1) + (uint8_t)(i & 3));
    st(x, arg_ptr(x, 0), i, &v, 1);
}

/* mm_count_odd(const int *in, int n, unsigned int *count): atomicAdd is a plain add here,
 * since threads run one at a time. */
static void mm_count_odd(sd_exec *x)
{
    int i = gidx(x);
    if (i >= arg_i32(x, 1))
        return;
    int32_t v;
    if (!ld(x, arg_ptr(x, 0), i, &v, 4) || !(v & 1))
        return;
    uint32_t c;
    if (ld(x, arg_ptr(x, 2), 0, &c, 4)) {
        c++;
        st(x, arg_ptr(x, 2), 0, &c, 4);
    }
}

const sd_kernel_desc sd_kernels_multi_module[] = {
    {"_Z7mm_iotaPii", 2, {P(0, 8), P(8, 4)}, mm_iota},
    {"_Z9mm_axpy_ffPKfPfi", 4, {P(0, 4), P(8, 8), P(16, 8), P(24, 4)}, mm_axpy_f},
    {"_Z9mm_axpy_ddPKdPdi", 4, {P(0, 8), P(8, 8), P(16, 8), P(24, 4)}, mm_axpy_d},
    {"_Z8mm_mixedcsidfhPx", 7, {P(0, 1), P(2, 2), P(4, 4), P(8, 8), P(16, 4), P(20, 1), P(24, 8)}, mm_mixed},
    {"_Z8mm_apply9mm_paramsPKfPd", 3, {P(0, 24), P(24, 8), P(32, 8)}, mm_apply},
    {"_Z7mm_fillIsEvPT_S0_i", 3, {P(0, 8), P(8, 2), P(12, 4)}, mm_fill_s},
    {"_Z7mm_fillIhEvPT_S0_i", 3, {P(0, 8), P(8, 1), P(12, 4)}, mm_fill_u8},
    {"_Z12mm_count_oddPKiiPj", 3, {P(0, 8), P(8, 4), P(16, 8)}, mm_count_odd},
};
const size_t sd_kernels_multi_module_n = sizeof sd_kernels_multi_module / sizeof sd_kernels_multi_module[0];
