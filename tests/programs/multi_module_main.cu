// multi_module: kernels from three .cu files (three modules) launched from one program,
// with int, float, double, pointer, char/short and struct-by-value parameters.
#define PROG "multi_module"
#include "check.h"
#include "multi_module.h"

#include <math.h>

__global__ void mm_iota(int *out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = i * 3 - 5;
}

#define BLOCKS(n) (((n) + 127) / 128), 128

int main(void)
{
    const int n = 10007;

    /* mm_iota + mm_count_odd (two modules on one buffer) */
    int *di;
    unsigned int *dcount, count = 0;
    CK(cudaMalloc(&di, n * sizeof(int)));
    CK(cudaMalloc(&dcount, sizeof(unsigned int)));
    CK(cudaMemset(dcount, 0, sizeof(unsigned int)));
    mm_iota<<<BLOCKS(n)>>>(di, n);
    CK(cudaGetLastError());
    mm_count_odd<<<BLOCKS(n)>>>(di, n, dcount);
    CK(cudaGetLastError());
    CK(cudaMemcpy(&count, dcount, sizeof count, cudaMemcpyDeviceToHost));
    unsigned int want = 0;
    for (int i = 0; i < n; i++)
        want += (unsigned int)((i * 3 - 5) & 1);
    if (count != want)
        FAIL("mm_count_odd counted %u, expected %u", count, want);

    /* mm_axpy_f */
    float *hx = (float *)malloc(n * sizeof(float)), *hy = (float *)malloc(n * sizeof(float));
    double *hdx = (double *)malloc(n * sizeof(double)), *hdy = (double *)malloc(n * sizeof(double));
    if (!hx || !hy || !hdx || !hdy)
        FAIL("host malloc");
    for (int i = 0; i < n; i++) {
        hx[i] = (float)i * 0.25f;
        hy[i] = 1.0f;
        hdx[i] = (double)i * 0.125;
        hdy[i] = -2.0;
    }
    float *dx, *dy;
    CK(cudaMalloc(&dx, n * sizeof(float)));
    CK(cudaMalloc(&dy, n * sizeof(float)));
    CK(cudaMemcpy(dx, hx, n * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dy, hy, n * sizeof(float), cudaMemcpyHostToDevice));
    mm_axpy_f<<<BLOCKS(n)>>>(2.0f, dx, dy, n);
    CK(cudaGetLastError());
    CK(cudaMemcpy(hy, dy, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++)
        if (hy[i] != 2.0f * hx[i] + 1.0f)
            FAIL("mm_axpy_f y[%d] = %f", i, hy[i]);

    /* mm_axpy_d */
    double *ddx, *ddy;
    CK(cudaMalloc(&ddx, n * sizeof(double)));
    CK(cudaMalloc(&ddy, n * sizeof(double)));
    CK(cudaMemcpy(ddx, hdx, n * sizeof(double), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(ddy, hdy, n * sizeof(double), cudaMemcpyHostToDevice));
    mm_axpy_d<<<BLOCKS(n)>>>(-3.5, ddx, ddy, n);
    CK(cudaGetLastError());
    CK(cudaMemcpy(hdy, ddy, n * sizeof(double), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++)
        if (hdy[i] != -3.5 * hdx[i] - 2.0)
            FAIL("mm_axpy_d y[%d] = %f", i, hdy[i]);

    /* mm_mixed: every parameter comes back */
    long long *dout, hout[6];
    CK(cudaMalloc(&dout, sizeof hout));
    CK(cudaMemset(dout, 0, sizeof hout));
    mm_mixed<<<1, 32>>>((char)-7, (short)-12345, 123456789, 2.5, -1.25f, (unsigned char)200, dout);
    CK(cudaGetLastError());
    CK(cudaMemcpy(hout, dout, sizeof hout, cudaMemcpyDeviceToHost));
    const long long want_mixed[6] = {-7, -12345, 123456789, 2500, -1250, 200};
    for (int k = 0; k < 6; k++)
        if (hout[k] != want_mixed[k])
            FAIL("mm_mixed out[%d] = %lld, expected %lld", k, hout[k], want_mixed[k]);

    /* mm_apply: a struct by value */
    struct mm_params p;
    p.n = n;
    p.scale = 0.5f;
    p.tag = 3;
    p.offset = 100.25;
    double *dres, *hres = (double *)malloc(n * sizeof(double));
    if (!hres)
        FAIL("host malloc");
    CK(cudaMalloc(&dres, n * sizeof(double)));
    mm_apply<<<BLOCKS(n)>>>(p, dx, dres);
    CK(cudaGetLastError());
    CK(cudaMemcpy(hres, dres, n * sizeof(double), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++) {
        double w = (double)(hx[i] * 0.5f) + 100.25 + 3.0;
        if (fabs(hres[i] - w) > 1e-9)
            FAIL("mm_apply out[%d] = %f, expected %f", i, hres[i], w);
    }

    /* mm_fill<short>, mm_fill<unsigned char> */
    short *ds, hs[300];
    unsigned char *du, hu[300];
    CK(cudaMalloc(&ds, sizeof hs));
    CK(cudaMalloc(&du, sizeof hu));
    CK(mm_fill_short(ds, (short)-300, 300));
    CK(mm_fill_u8(du, (unsigned char)250, 300));
    CK(cudaMemcpy(hs, ds, sizeof hs, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hu, du, sizeof hu, cudaMemcpyDeviceToHost));
    for (int i = 0; i < 300; i++) {
        if (hs[i] != (short)(-300 + (i & 3)))
            FAIL("mm_fill<short>[%d] = %d", i, hs[i]);
        if (hu[i] != (unsigned char)(250 + (i & 3)))
            FAIL("mm_fill<unsigned char>[%d] = %d", i, hu[i]);
    }

    CK(cudaDeviceSynchronize());
    void *bufs[] = {di, dcount, dx, dy, ddx, ddy, dout, dres, ds, du};
    for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++)
        CK(cudaFree(bufs[k]));
    free(hx);
    free(hy);
    free(hdx);
    free(hdy);
    free(hres);
    PASS();
}
