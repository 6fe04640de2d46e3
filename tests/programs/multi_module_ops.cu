// multi_module: arithmetic kernels with float, double, char/short and struct parameters.
#include "multi_module.h"

__global__ void mm_axpy_f(float a, const float *x, float *y, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = a * x[i] + y[i];
}

__global__ void mm_axpy_d(double a, const double *x, double *y, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = a * x[i] + y[i];
}

/* One thread reports every parameter back, so a misplaced byte shows. */
__global__ void mm_mixed(char c, short s, int i, double d, float f, unsigned char u, long long *out)
{
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        out[0] = c;
        out[1] = s;
        out[2] = i;
        out[3] = (long long)(d * 1000.0);
        out[4] = (long long)(f * 1000.0f);
        out[5] = u;
    }
}

__global__ void mm_apply(struct mm_params p, const float *in, double *out)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < p.n)
        out[i] = (double)(in[i] * p.scale) + p.offset + (double)p.tag;
}
