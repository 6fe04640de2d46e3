// error_paths: errors that must come back as error codes (not crashes), and a context that
// stays usable after non-sticky errors; finally a sticky illegal-address fault.
#define PROG "error_paths"
#include "check.h"

#include <stdint.h>

__global__ void ep_touch(int *p, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        p[i] = i + 1;
}

/* The context still works: allocate, launch, copy back, check. */
static void still_usable(const char *after)
{
    const int n = 1000;
    int *d, h[1000];
    cudaError_t e = cudaMalloc(&d, n * sizeof(int));
    if (e != cudaSuccess)
        FAIL("after %s: cudaMalloc -> %s", after, cudaGetErrorName(e));
    ep_touch<<<(n + 255) / 256, 256>>>(d, n);
    CK(cudaGetLastError());
    CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++)
        if (h[i] != i + 1)
            FAIL("after %s: element %d is %d", after, i, h[i]);
    CK(cudaFree(d));
}

int main(void)
{
    int count = 0;
    CK(cudaGetDeviceCount(&count));
    still_usable("start");

    EXPECT_ERR(cudaSetDevice(count), cudaErrorInvalidDevice);
    EXPECT_ERR(cudaSetDevice(-1), cudaErrorInvalidDevice);
    EXPECT_ERR(cudaGetLastError(), cudaErrorInvalidDevice); /* recorded, and cleared by reading */
    still_usable("cudaSetDevice(out of range)");

    /* Copies to and from addresses that were never allocated. */
    int host[16] = {0};
    void *bogus = (void *)(uintptr_t)0x10;
    if (cudaMemcpy(bogus, host, sizeof host, cudaMemcpyHostToDevice) == cudaSuccess)
        FAIL("cudaMemcpy to a bogus device pointer succeeded");
    if (cudaMemcpy(host, bogus, sizeof host, cudaMemcpyDeviceToHost) == cudaSuccess)
        FAIL("cudaMemcpy from a bogus device pointer succeeded");
    /* A copy running past the end of a real allocation. */
    int *small;
    CK(cudaMalloc(&small, 64));
    if (cudaMemcpy(small, host, 64 + (size_t)(1 << 24), cudaMemcpyDeviceToDevice) == cudaSuccess)
        FAIL("cudaMemcpy past the end of an allocation succeeded");
    (void)cudaGetLastError(); /* clear the non-sticky error */
    still_usable("cudaMemcpy(bogus)");

    if (cudaFree((void *)(uintptr_t)0xdead0000) == cudaSuccess)
        FAIL("cudaFree of a bogus pointer succeeded");
    if (cudaFree((char *)small + 4) == cudaSuccess)
        FAIL("cudaFree of an interior pointer succeeded");
    (void)cudaGetLastError();
    CK(cudaFree(small));
    CK(cudaFree(NULL)); /* freeing NULL is fine */
    still_usable("cudaFree(bogus)");

    /* Too many threads per block. CUDA 13.0 with driver 580 on an H100 reports
     * cudaErrorInvalidValue here (the driver's CUDA_ERROR_INVALID_VALUE), not the
     * cudaErrorInvalidConfiguration older runtimes gave: gpuwire must match the native answer. */
    int *d;
    CK(cudaMalloc(&d, 4096 * sizeof(int)));
    ep_touch<<<1, 2048>>>(d, 4096);
    EXPECT_ERR(cudaGetLastError(), cudaErrorInvalidValue);
    CK(cudaGetLastError()); /* cleared by the read */
    ep_touch<<<1, dim3(32, 32, 2)>>>(d, 4096);
    EXPECT_ERR(cudaGetLastError(), cudaErrorInvalidValue);
    ep_touch<<<1, dim3(1, 1, 65)>>>(d, 4096); /* blockDim.z is at most 64 */
    EXPECT_ERR(cudaGetLastError(), cudaErrorInvalidValue);
    CK(cudaDeviceSynchronize());
    still_usable("a launch with too many threads");

    /* Elapsed time between events that were never recorded is an error. */
    cudaEvent_t e1, e2;
    float ms;
    CK(cudaEventCreate(&e1));
    CK(cudaEventCreate(&e2));
    EXPECT_ERR(cudaEventElapsedTime(&ms, e1, e2), cudaErrorInvalidResourceHandle);
    CK(cudaEventDestroy(e1));
    CK(cudaEventDestroy(e2));
    (void)cudaGetLastError();
    still_usable("unrecorded events");
    CK(cudaFree(d));

    /* Last: a kernel writing through a bogus pointer. The fault is sticky: the next
     * synchronizing call reports it, and so does every later call in the context. */
    ep_touch<<<1, 32>>>((int *)(uintptr_t)0x10, 32);
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaErrorIllegalAddress && e != cudaErrorLaunchFailure)
        FAIL("bad-pointer kernel: cudaDeviceSynchronize -> %s, expected cudaErrorIllegalAddress",
             cudaGetErrorName(e));
    void *after;
    cudaError_t again = cudaMalloc(&after, 256);
    if (again != e)
        FAIL("after the fault cudaMalloc -> %s, expected the sticky %s", cudaGetErrorName(again),
             cudaGetErrorName(e));
    printf("error_paths: sticky fault reported as %s\n", cudaGetErrorName(e));
    PASS();
}
