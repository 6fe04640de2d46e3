// A client that faults: a kernel writes through a wild pointer, so the context
// gets CUDA_ERROR_ILLEGAL_ADDRESS (sticky). Exits 3 when the fault is reported
// as the native driver reports it, 0 if (wrongly) no error came back.
#include <cstdio>
#include <cuda_runtime.h>

__global__ void wild(int *p) { p[threadIdx.x * 4096] = 1; }

int main()
{
    wild<<<1, 32>>>(reinterpret_cast<int *>(0x10));
    cudaError_t e = cudaDeviceSynchronize();
    printf("illegal_address: synchronize says %s\n", cudaGetErrorName(e));
    void *p = nullptr;
    cudaError_t again = cudaMalloc(&p, 16);
    printf("illegal_address: the context stays broken: %s\n", cudaGetErrorName(again));
    return e == cudaErrorIllegalAddress ? 3 : 0;
}
