// Kernels of the multi_module program, defined in three .cu files (three fatbins/modules).
// Their parameter lists mix sizes and alignments on purpose.
#ifndef GW_MULTI_MODULE_H
#define GW_MULTI_MODULE_H

struct mm_params {  /* 24 bytes, 8-aligned: padding after tag */
    int n;
    float scale;
    char tag;
    double offset;
};

/* multi_module_main.cu */
__global__ void mm_iota(int *out, int n);

/* multi_module_ops.cu */
__global__ void mm_axpy_f(float a, const float *x, float *y, int n);
__global__ void mm_axpy_d(double a, const double *x, double *y, int n);
__global__ void mm_mixed(char c, short s, int i, double d, float f, unsigned char u, long long *out);
__global__ void mm_apply(struct mm_params p, const float *in, double *out);

/* multi_module_misc.cu */
__global__ void mm_count_odd(const int *in, int n, unsigned int *count);
/* Template kernel instantiations stay local to their file: launched through these. */
cudaError_t mm_fill_short(short *out, short v, int n);
cudaError_t mm_fill_u8(unsigned char *out, unsigned char v, int n);

#endif
