// evkernel: single kernels timed between two events on the legacy stream, as
// NVIDIA's TensorCoreGemm samples time their one launch (issue 20 item 5),
// after different idle times of the GPU, so that a difference through gpuwire
// can be told apart from the GPU's own warm-up after idling:
//   "idle MS ms rep N: K ms"       a fixed-work kernel after MS ms of host sleep
//   "first launch (attr) N: K ms"  a kernel's first launch with
//                                  cudaFuncSetAttribute between the events, as
//                                  cudaTensorCoreGemm does
// tests/gpu/copy-rates runs it natively and through gpuwire.
#include <cstdio>
#include <unistd.h>
#include <cuda_runtime.h>

// A dependent chain of multiply-adds per thread: fixed work, no memory traffic
// beyond one load and one store, so the time is the SMs' clock.
template <int K> __global__ void chain(float *x, int iters) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  float a = x[i];
  for (int k = 0; k < iters; k++) a = a * 0.9999999f + (float)K;
  x[i] = a;
}

static float timed(void (*launch)(float *, int, int), float *d, int blocks, int iters, bool attr,
                   const void *fn) {
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  cudaEventRecord(a, 0);
  if (attr) cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 << 10);
  launch(d, blocks, iters);
  cudaEventRecord(b, 0);
  cudaEventSynchronize(b);
  float ms = -1; cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a); cudaEventDestroy(b);
  return ms;
}
static void l0(float *d, int blocks, int iters) { chain<0><<<blocks, 256>>>(d, iters); }
static void l1(float *d, int blocks, int iters) { chain<1><<<blocks, 256>>>(d, iters); }
static void l2(float *d, int blocks, int iters) { chain<2><<<blocks, 256>>>(d, iters); }

int main() {
  int sms = 0; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  int blocks = sms * 8, iters = 200000;
  size_t n = (size_t)blocks * 256;
  float *d;
  if (cudaMalloc(&d, n * sizeof(float)) || cudaMemset(d, 0, n * sizeof(float))) {
    printf("FAIL evkernel: %s\n", cudaGetErrorString(cudaGetLastError()));
    return 1;
  }
  cudaDeviceSynchronize();
  // the first launches of two kernels not launched before, as the samples time theirs
  printf("first launch (attr) 1: %.3f ms\n", timed(l1, d, blocks, iters, true, (const void *)chain<1>));
  printf("first launch (plain) 2: %.3f ms\n", timed(l2, d, blocks, iters, false, nullptr));
  const int idle_ms[] = {0, 1, 10, 100};
  for (int ms : idle_ms)
    for (int r = 0; r < 3; r++) {
      usleep(ms * 1000);
      printf("idle %d ms rep %d: %.3f ms\n", ms, r, timed(l0, d, blocks, iters, false, nullptr));
    }
  cudaError_t e = cudaDeviceSynchronize();
  if (e) { printf("FAIL evkernel: %s\n", cudaGetErrorString(e)); return 1; }
  return 0;
}
