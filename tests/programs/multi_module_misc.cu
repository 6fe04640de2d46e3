// multi_module: a template kernel (two instantiations) and an atomic counter.
#include "multi_module.h"

template <typename T> __global__ void mm_fill(T *out, T v, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = (T)(v + (T)(i & 3));
}

cudaError_t mm_fill_short(short *out, short v, int n)
{
    mm_fill<short><<<(n + 127) / 128, 128>>>(out, v, n);
    return cudaGetLastError();
}

cudaError_t mm_fill_u8(unsigned char *out, unsigned char v, int n)
{
    mm_fill<unsigned char><<<(n + 127) / 128, 128>>>(out, v, n);
    return cudaGetLastError();
}

__global__ void mm_count_odd(const int *in, int n, unsigned int *count)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && (in[i] & 1))
        atomicAdd(count, 1u);
}
