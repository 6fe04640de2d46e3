// Tiny cudart program for the export-table probe: count devices, allocate,
// copy there and back, launch an empty kernel. Prints every result.
#include <cstdio>
#include <cstring>
#include <cuda_runtime.h>

__global__ void empty_kernel() {}

#define CHECK(call)                                                              \
    do {                                                                         \
        cudaError_t e_ = (call);                                                 \
        printf("%-40s -> %d %s\n", #call, (int)e_, cudaGetErrorName(e_));        \
        if (e_ != cudaSuccess) fails++;                                          \
    } while (0)

int main()
{
    int fails = 0, n = -1;
    CHECK(cudaGetDeviceCount(&n));
    printf("device count %d\n", n);
    void *d = nullptr;
    char in[64], out[64];
    for (int i = 0; i < 64; i++) in[i] = (char)i;
    memset(out, 0, sizeof out);
    CHECK(cudaMalloc(&d, sizeof in));
    CHECK(cudaMemcpy(d, in, sizeof in, cudaMemcpyHostToDevice));
    empty_kernel<<<1, 1>>>();
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaMemcpy(out, d, sizeof out, cudaMemcpyDeviceToHost));
    CHECK(cudaFree(d));
    printf("round trip %s\n", memcmp(in, out, sizeof in) == 0 ? "ok" : "MISMATCH");
    if (memcmp(in, out, sizeof in) != 0) fails++;
    // The runtime must come back after its context is torn down.
    CHECK(cudaDeviceReset());
    CHECK(cudaMalloc(&d, 16));
    empty_kernel<<<1, 1>>>();
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaFree(d));
    printf("RESULT %s\n", fails ? "FAIL" : "PASS");
    return fails != 0;
}
