/* Registered host memory: cudaHostRegister on malloc'd buffers, async copies from and to them on a stream, cudaHostGetFlags, cudaHostUnregister; plus cudaMemcpy2DAsync and cudaMemsetAsync on pinned buffers. */
#include "compat.h"
#include <string.h>

#define N (3 << 20)

__global__ void square(float *x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = x[i] * x[i] - 1.0f;
}

int main(void)
{
    size_t bytes = N * sizeof(float);
    float *a = (float *)aligned_alloc(4096, bytes), *b = (float *)aligned_alloc(4096, bytes);
    if (!a || !b)
        return 1;
    for (int i = 0; i < N; i++)
        a[i] = (float)(i % 1000) / 256.0f; /* squares stay exact, fused or not */
    memset(b, 0, bytes);
    CHECK(cudaHostRegister(a, bytes, cudaHostRegisterDefault));
    CHECK(cudaHostRegister(b, bytes, cudaHostRegisterDefault));
    unsigned flags = 99;
    CHECK(cudaHostGetFlags(&flags, a));

    float *d;
    CHECK(cudaMalloc((void **)&d, bytes));
    cudaStream_t s;
    CHECK(cudaStreamCreate(&s));
    CHECK(cudaMemcpyAsync(d, a, bytes, cudaMemcpyHostToDevice, s));
    square<<<(N + 255) / 256, 256, 0, s>>>(d, N);
    CHECK(cudaGetLastError());
    CHECK(cudaMemcpyAsync(b, d, bytes, cudaMemcpyDeviceToHost, s));
    /* A 2-D copy of a 100 x 64 sub-block with pitches, then a memset of its first row. */
    float *d2;
    size_t pitch;
    CHECK(cudaMallocPitch((void **)&d2, &pitch, 64 * sizeof(float), 100));
    CHECK(cudaMemcpy2DAsync(d2, pitch, a + 7, 1000 * sizeof(float), 64 * sizeof(float), 100, cudaMemcpyHostToDevice, s));
    CHECK(cudaMemsetAsync(d2, 0, 64 * sizeof(float), s));
    float sub[100 * 64];
    CHECK(cudaMemcpy2DAsync(sub, 64 * sizeof(float), d2, pitch, 64 * sizeof(float), 100, cudaMemcpyDeviceToHost, s));
    CHECK(cudaStreamSynchronize(s));

    for (int i = 0; i < N; i += 1237) {
        float want = a[i] * a[i] - 1.0f;
        if (b[i] != want) {
            fprintf(stderr, "element %d: %g, want %g\n", i, b[i], want);
            return 1;
        }
    }
    if (sub[5] != 0.0f || sub[64 + 3] != a[1000 + 10]) {
        fprintf(stderr, "2-D copy: %g %g, want 0 %g\n", sub[5], sub[64 + 3], a[1010]);
        return 1;
    }
    uint64_t h = fnv1a(FNV_INIT, b, bytes);
    h = fnv1a(h, sub, sizeof sub);
    CHECK(cudaHostUnregister(a));
    CHECK(cudaHostUnregister(b));
    char notes[96];
    snprintf(notes, sizeof notes, "fnv1a64 of results; cudaHostGetFlags %u", flags);
    emit("cuda_host_register", h, notes);
    CHECK(cudaFree(d));
    CHECK(cudaFree(d2));
    CHECK(cudaStreamDestroy(s));
    free(a);
    free(b);
    return 0;
}
