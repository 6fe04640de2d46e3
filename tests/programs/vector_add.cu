// vector_add: the README demo. c[i] = a[i] + b[i] on 1M floats, checked on the host.
#define PROG "vector_add"
#include "check.h"

#include <math.h>

__global__ void vector_add(const float *a, const float *b, float *c, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        c[i] = a[i] + b[i];
}

int main(void)
{
    const int n = 1 << 20;
    const size_t bytes = (size_t)n * sizeof(float);
    float *a = (float *)malloc(bytes), *b = (float *)malloc(bytes), *c = (float *)malloc(bytes);
    if (!a || !b || !c)
        FAIL("host malloc");
    for (int i = 0; i < n; i++) {
        a[i] = (float)(i % 1000) * 0.5f;
        b[i] = (float)(i % 37) * 2.0f;
    }

    float *da, *db, *dc;
    CK(cudaMalloc(&da, bytes));
    CK(cudaMalloc(&db, bytes));
    CK(cudaMalloc(&dc, bytes));
    CK(cudaMemcpy(da, a, bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(db, b, bytes, cudaMemcpyHostToDevice));

    const int threads = 256;
    vector_add<<<(n + threads - 1) / threads, threads>>>(da, db, dc, n);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(c, dc, bytes, cudaMemcpyDeviceToHost));

    printf("vector_add: first results:");
    for (int i = 0; i < 5; i++)
        printf(" %.1f", c[i]);
    printf("\n");

    double sum = 0.0, want = 0.0;
    for (int i = 0; i < n; i++) {
        if (c[i] != a[i] + b[i])
            FAIL("c[%d] = %f, expected %f", i, c[i], a[i] + b[i]);
        sum += c[i];
        want += (double)(a[i] + b[i]);
    }
    printf("vector_add: n=%d sum=%.1f %s\n", n, sum, fabs(sum - want) < 1e-6 ? "ok" : "MISMATCH");
    if (fabs(sum - want) >= 1e-6)
        FAIL("checksum %.1f != %.1f", sum, want);

    CK(cudaFree(da));
    CK(cudaFree(db));
    CK(cudaFree(dc));
    free(a);
    free(b);
    free(c);
    PASS();
}
