// multi_device_rt: two GPUs through the CUDA runtime, as multi-GPU applications
// (cuda-samples simpleMultiGPU, simpleP2P) use them: cudaSetDevice, memory and a
// kernel on each device, pointer attributes, peer access with its errors, peer
// copies (cudaMemcpyPeer, cudaMemcpyPeerAsync, cudaMemcpyDefault between devices)
// with the data checked. On one device only the per-device part runs (and the
// peer errors a lone device gives); prints "PASS multi_device_rt" last.
#define PROG "multi_device_rt"
#include "check.h"

#include <string.h>

// The same kernel as vector_add.cu (the stand-in knows it by its mangled name).
__global__ void vector_add(const float *a, const float *b, float *c, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        c[i] = a[i] + b[i];
}

static const int N = 1 << 16;

static void check_sum(const float *got, int dev, const char *what)
{
    for (int i = 0; i < N; i++) {
        float want = (float)(i % 100) + (float)(dev + 1) * 1000.0f;
        if (got[i] != want)
            FAIL("%s: element %d is %g, expected %g", what, i, got[i], want);
    }
}

int main(void)
{
    int n = 0;
    CK(cudaGetDeviceCount(&n));
    if (n < 1)
        FAIL("no device");
    const int ndev = n < 2 ? n : 2;
    const size_t bytes = N * sizeof(float);
    static float a[N], b[N], out[N];
    float *dc[2];
    cudaStream_t st[2];
    for (int d = 0; d < ndev; d++) {
        CK(cudaSetDevice(d));
        for (int i = 0; i < N; i++) {
            a[i] = (float)(i % 100);
            b[i] = (float)(d + 1) * 1000.0f;
        }
        float *da, *db;
        CK(cudaMalloc(&da, bytes));
        CK(cudaMalloc(&db, bytes));
        CK(cudaMalloc(&dc[d], bytes));
        CK(cudaStreamCreate(&st[d]));
        CK(cudaMemcpyAsync(da, a, bytes, cudaMemcpyHostToDevice, st[d]));
        CK(cudaMemcpyAsync(db, b, bytes, cudaMemcpyHostToDevice, st[d]));
        vector_add<<<N / 256, 256, 0, st[d]>>>(da, db, dc[d], N);
        CK(cudaGetLastError());
        CK(cudaStreamSynchronize(st[d]));
        CK(cudaFree(da));
        CK(cudaFree(db));
        cudaPointerAttributes attr;
        CK(cudaPointerGetAttributes(&attr, dc[d]));
        if (attr.type != cudaMemoryTypeDevice || attr.device != d)
            FAIL("device %d's memory: type %d, device %d", d, (int)attr.type, attr.device);
    }
    int cur = -1;
    CK(cudaGetDevice(&cur));
    if (cur != ndev - 1)
        FAIL("cudaGetDevice says %d after cudaSetDevice(%d)", cur, ndev - 1);
    int self = -1;
    CK(cudaDeviceCanAccessPeer(&self, 0, 0));
    if (self != 0)
        FAIL("device 0 is its own peer");
    CK(cudaSetDevice(0));
    {
        /* a device as its own peer: invalid device per the documentation, peer
         * access unsupported from the H100 driver (580, one GPU) */
        cudaError_t self_err = cudaDeviceEnablePeerAccess(0, 0);
        if (self_err != cudaErrorInvalidDevice && self_err != cudaErrorPeerAccessUnsupported)
            FAIL("cudaDeviceEnablePeerAccess(0, 0) -> %s, expected cudaErrorInvalidDevice or "
                 "cudaErrorPeerAccessUnsupported",
                 cudaGetErrorName(self_err));
        (void)cudaGetLastError();
    }
    if (ndev < 2) {
        printf("one device: the peer part needs two\n");
        CK(cudaStreamDestroy(st[0]));
        CK(cudaFree(dc[0]));
        PASS();
    }

    int can01 = -1, can10 = -1;
    CK(cudaDeviceCanAccessPeer(&can01, 0, 1));
    CK(cudaDeviceCanAccessPeer(&can10, 1, 0));
    printf("peer access 0->1 %d, 1->0 %d\n", can01, can10);
    CK(cudaSetDevice(0));
    if (can01) {
        CK(cudaDeviceEnablePeerAccess(1, 0));
        EXPECT_ERR(cudaDeviceEnablePeerAccess(1, 0), cudaErrorPeerAccessAlreadyEnabled);
        CK(cudaDeviceDisablePeerAccess(1));
        EXPECT_ERR(cudaDeviceDisablePeerAccess(1), cudaErrorPeerAccessNotEnabled);
        CK(cudaDeviceEnablePeerAccess(1, 0));
    }

    // device 1's result to device 0, three ways, each checked on the host
    float *dst0;
    CK(cudaMalloc(&dst0, bytes));
    CK(cudaMemcpyPeer(dst0, 0, dc[1], 1, bytes));
    CK(cudaMemcpy(out, dst0, bytes, cudaMemcpyDeviceToHost));
    check_sum(out, 1, "cudaMemcpyPeer 1 -> 0");
    CK(cudaMemset(dst0, 0, bytes));
    CK(cudaMemcpyPeerAsync(dst0, 0, dc[1], 1, bytes, st[0]));
    CK(cudaStreamSynchronize(st[0]));
    CK(cudaMemcpy(out, dst0, bytes, cudaMemcpyDeviceToHost));
    check_sum(out, 1, "cudaMemcpyPeerAsync 1 -> 0");
    CK(cudaSetDevice(1));
    CK(cudaMemcpy(dc[1], dc[0], bytes, cudaMemcpyDefault)); // unified: device 0 -> device 1
    CK(cudaMemcpy(out, dc[1], bytes, cudaMemcpyDeviceToHost));
    check_sum(out, 0, "cudaMemcpyDefault 0 -> 1");

    CK(cudaSetDevice(0));
    if (can01)
        CK(cudaDeviceDisablePeerAccess(1));
    CK(cudaFree(dst0));
    for (int d = 0; d < 2; d++) {
        CK(cudaSetDevice(d));
        CK(cudaStreamDestroy(st[d]));
        CK(cudaFree(dc[d]));
        CK(cudaDeviceSynchronize());
    }
    PASS();
}
