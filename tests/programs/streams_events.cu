// streams_events: several streams, events (record/sync/query/elapsed), cross-stream waits,
// a cooperative launch, inside cudaProfilerStart/Stop as NVIDIA's asyncAPI sample does.
#define PROG "streams_events"
#include <cuda_profiler_api.h>

#include "check.h"

/* Each element takes `spins` rounds of a cheap hash, so the producer runs a while on a GPU. */
__global__ void se_produce(int *out, int n, int base, int spins)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    unsigned int x = (unsigned int)(base + i);
    for (int k = 0; k < spins; k++)
        x = x * 1664525u + 1013904223u;
    out[i] = (int)(x & 0x7fffffff);
}

/* The consumer reads what the producer wrote and adds to it. */
__global__ void se_consume(const int *in, int *out, int n, int add)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = in[i] + add;
}

static int produced(int base, int i, int spins)
{
    unsigned int x = (unsigned int)(base + i);
    for (int k = 0; k < spins; k++)
        x = x * 1664525u + 1013904223u;
    return (int)(x & 0x7fffffff);
}

int main(void)
{
    const int n = 1 << 16, spins = 200, nstreams = 4;
    const size_t bytes = (size_t)n * sizeof(int);
    cudaStream_t st[nstreams];
    int *dbuf[nstreams], *dout[nstreams];
    for (int k = 0; k < nstreams; k++) {
        CK(cudaStreamCreateWithFlags(&st[k], k % 2 ? cudaStreamNonBlocking : cudaStreamDefault));
        CK(cudaMalloc(&dbuf[k], bytes));
        CK(cudaMalloc(&dout[k], bytes));
    }

    cudaEvent_t start, stop, produced_ev, untimed;
    CK(cudaEventCreate(&start));
    CK(cudaEventCreate(&stop));
    CK(cudaEventCreateWithFlags(&produced_ev, cudaEventDefault));
    CK(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming));

    CK(cudaProfilerStart());

    /* A never-recorded event is complete. */
    CK(cudaEventQuery(untimed));

    /* Stream 0 produces; stream 1 waits on the event and consumes. */
    CK(cudaEventRecord(start, st[0]));
    se_produce<<<n / 256, 256, 0, st[0]>>>(dbuf[0], n, 1000, spins);
    CK(cudaGetLastError());
    CK(cudaEventRecord(produced_ev, st[0]));
    CK(cudaStreamWaitEvent(st[1], produced_ev, 0));
    se_consume<<<n / 256, 256, 0, st[1]>>>(dbuf[0], dout[1], n, 7);
    CK(cudaGetLastError());
    CK(cudaEventRecord(stop, st[1]));
    CK(cudaEventRecord(untimed, st[1]));

    /* Independent work on the other streams at the same time. */
    for (int k = 2; k < nstreams; k++) {
        se_produce<<<n / 256, 256, 0, st[k]>>>(dbuf[k], n, k * 10, 3);
        CK(cudaGetLastError());
        se_consume<<<n / 256, 256, 0, st[k]>>>(dbuf[k], dout[k], n, k);
        CK(cudaGetLastError());
    }

    CK(cudaEventSynchronize(stop));
    CK(cudaEventQuery(stop));
    CK(cudaEventSynchronize(untimed));
    float ms = -1.0f;
    CK(cudaEventElapsedTime(&ms, start, stop));
    if (!(ms >= 0.0f) || ms > 60000.0f)
        FAIL("elapsed time %f ms is not plausible", ms);
    printf("streams_events: producer+consumer took %.3f ms\n", ms);
    /* Timing was disabled on this event. */
    float bad;
    EXPECT_ERR(cudaEventElapsedTime(&bad, start, untimed), cudaErrorInvalidResourceHandle);

    CK(cudaStreamSynchronize(st[1]));
    CK(cudaStreamQuery(st[1]));
    CK(cudaDeviceSynchronize());
    for (int k = 0; k < nstreams; k++)
        CK(cudaStreamQuery(st[k]));

    int *h = (int *)malloc(bytes);
    if (!h)
        FAIL("host malloc");
    CK(cudaMemcpy(h, dout[1], bytes, cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++)
        if (h[i] != produced(1000, i, spins) + 7)
            FAIL("consumer element %d is %d, expected %d", i, h[i], produced(1000, i, spins) + 7);
    for (int k = 2; k < nstreams; k++) {
        CK(cudaMemcpyAsync(h, dout[k], bytes, cudaMemcpyDeviceToHost, st[k]));
        CK(cudaStreamSynchronize(st[k]));
        for (int i = 0; i < n; i++)
            if (h[i] != produced(k * 10, i, 3) + k)
                FAIL("stream %d element %d is %d", k, i, h[i]);
    }

    /* Stream properties come back as set. */
    unsigned int flags = 99;
    CK(cudaStreamGetFlags(st[1], &flags));
    if (flags != cudaStreamNonBlocking)
        FAIL("stream 1 flags %u, expected cudaStreamNonBlocking", flags);
    int lo, hi, prio;
    CK(cudaDeviceGetStreamPriorityRange(&lo, &hi));
    cudaStream_t ps;
    CK(cudaStreamCreateWithPriority(&ps, cudaStreamNonBlocking, hi));
    CK(cudaStreamGetPriority(ps, &prio));
    if (prio != hi)
        FAIL("stream priority %d, expected %d", prio, hi);
    CK(cudaStreamDestroy(ps));

    /* The legacy default stream works with events too. */
    CK(cudaEventRecord(start, 0));
    CK(cudaEventRecord(stop, 0));
    CK(cudaEventSynchronize(stop));
    CK(cudaEventElapsedTime(&ms, start, stop));

    /* A cooperative launch (as conjugateGradientMultiBlockCG makes) runs like any other. */
    int coop = 0;
    CK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, 0));
    if (!coop)
        FAIL("the device does not report cooperative launches");
    const int *cin = dbuf[2];
    int *cout = dout[2], cn = n, cadd = 100;
    void *cargs[] = {&cin, &cout, &cn, &cadd};
    CK(cudaLaunchCooperativeKernel((const void *)se_consume, dim3(n / 256), dim3(256), cargs, 0, st[2]));
    CK(cudaMemcpyAsync(h, dout[2], bytes, cudaMemcpyDeviceToHost, st[2]));
    CK(cudaStreamSynchronize(st[2]));
    for (int i = 0; i < n; i++)
        if (h[i] != produced(20, i, 3) + 100)
            FAIL("cooperative launch: element %d is %d", i, h[i]);

    for (int k = 0; k < nstreams; k++) {
        CK(cudaStreamDestroy(st[k]));
        CK(cudaFree(dbuf[k]));
        CK(cudaFree(dout[k]));
    }
    CK(cudaEventDestroy(start));
    CK(cudaEventDestroy(stop));
    CK(cudaEventDestroy(produced_ev));
    CK(cudaEventDestroy(untimed));
    free(h);
    CK(cudaProfilerStop());
    PASS();
}
