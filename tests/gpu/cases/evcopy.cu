// evcopy: five 16 MiB asynchronous copies each way between page-locked host
// memory and the device on the legacy stream, each timed with events as
// NVIDIA's simpleMultiCopy times its copies (the first right after the
// allocations). One line per copy pair: "rep N: h2d MS ms (GB/s)  d2h MS ms (GB/s)".
// tests/gpu/copy-rates runs it natively and through gpuwire.
#include <cstdio>
#include <cuda_runtime.h>
int main(int argc, char **argv) {
  size_t n = 16 << 20; int *h, *h2, *d;
  if (cudaHostAlloc(&h, n, 0) || cudaHostAlloc(&h2, n, 0) || cudaMalloc(&d, n)) {
    printf("FAIL evcopy: %s\n", cudaGetErrorString(cudaGetLastError()));
    return 1;
  }
  for (size_t i = 0; i < n / 4; i++) h[i] = (int)i;
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  for (int r = 0; r < 5; r++) {
    for (size_t i = 0; i < n / 4; i += 1024) h[i] = r + (int)i;
    float ms, ms2;
    cudaEventRecord(a, 0); cudaMemcpyAsync(d, h, n, cudaMemcpyHostToDevice, 0); cudaEventRecord(b, 0);
    cudaEventSynchronize(b); cudaEventElapsedTime(&ms, a, b);
    cudaEventRecord(a, 0); cudaMemcpyAsync(h2, d, n, cudaMemcpyDeviceToHost, 0); cudaEventRecord(b, 0);
    cudaEventSynchronize(b); cudaEventElapsedTime(&ms2, a, b);
    printf("rep %d: h2d %.3f ms (%.2f GB/s)  d2h %.3f ms (%.2f GB/s)\n", r, ms, n / ms / 1e6, ms2, n / ms2 / 1e6);
  }
  return 0;
}
