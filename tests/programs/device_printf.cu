/* Device printf through gpuwire (issue 4): a kernel's printf output, which the
 * driver writes at synchronization points, appears on this process's stdout
 * before the synchronizing call returns, so it comes before the host lines
 * printed after it (and after the host lines printed before the launch).
 * Each synchronization kind flushes once: device, stream, event, and a
 * blocking device-to-host copy. Host lines are left to stdio's buffering on
 * purpose: the order must hold when stdout is a pipe or a file too. */
#define PROG "device_printf"
#include "check.h"

__global__ void dp_say(int *out, int v)
{
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        printf("device says %d\n", v);
        out[0] = v;
    }
}

int main(void)
{
    int *d, h = 0;
    cudaStream_t s;
    cudaEvent_t ev;
    printf("host: start\n");
    CK(cudaMalloc(&d, sizeof(int)));
    CK(cudaStreamCreate(&s));
    CK(cudaEventCreate(&ev));

    dp_say<<<1, 32>>>(d, 1);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    printf("host: after device synchronize\n");

    dp_say<<<1, 32, 0, s>>>(d, 2);
    CK(cudaGetLastError());
    CK(cudaStreamSynchronize(s));
    printf("host: after stream synchronize\n");

    dp_say<<<1, 32, 0, s>>>(d, 3);
    CK(cudaGetLastError());
    CK(cudaEventRecord(ev, s));
    CK(cudaEventSynchronize(ev));
    printf("host: after event synchronize\n");

    dp_say<<<1, 32>>>(d, 4);
    CK(cudaGetLastError());
    CK(cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost));
    if (h != 4)
        FAIL("the kernel wrote %d, expected 4", h);
    printf("host: after copy\n");

    CK(cudaEventDestroy(ev));
    CK(cudaStreamDestroy(s));
    CK(cudaFree(d));
    printf("PASS %s\n", PROG);
    return 0;
}
