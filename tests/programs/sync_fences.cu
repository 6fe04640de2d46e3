/* Stream synchronizes that need not wait (issue 20), one mode per run:
 *   decode T    T "tokens" shaped like llama.cpp's decode: six small inputs
 *               copied on the per-thread stream, each followed by a
 *               synchronize of it and one of the compute stream (idle then,
 *               as ggml's is), one more of the per-thread stream with nothing
 *               new, a kernel on a non-blocking stream reading them (ordered
 *               only by those
 *               host-side synchronizes), its result copied back into pinned
 *               memory and that stream synchronized. Only the last of these
 *               needs a round trip through gpuwire.
 *   blocking T  each token launches on the legacy default stream and does
 *               not synchronize it before copying on the per-thread stream:
 *               the per-thread stream's synchronize must wait (the per-thread
 *               stream waits for legacy work), then the legacy stream's.
 *   fault       a kernel faults on a non-blocking stream; a synchronize of the
 *               per-thread stream after a copy may succeed (as natively, when
 *               the fault has not happened yet), and the faulting stream's
 *               synchronize reports cudaErrorIllegalAddress.
 * Every value is checked. The kernels reuse the names (and so the CPU
 * stand-in's host versions) of se_consume and ep_touch. */
#define PROG "sync_fences"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define N 256
#define INPUTS 6

__global__ void se_consume(const int *in, int *out, int n, int add)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = in[i] + add;
}

__global__ void ep_touch(int *p, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        p[i] = i + 1;
}

static int *din[INPUTS], *dout, *hout;
static int hin[INPUTS][N];

static void setup(void)
{
    for (int i = 0; i < INPUTS; i++)
        CK(cudaMalloc(&din[i], N * sizeof(int)));
    CK(cudaMalloc(&dout, N * sizeof(int)));
    CK(cudaMallocHost(&hout, N * sizeof(int)));
}

/* the six inputs of token t, each copied and its stream synchronized */
static void inputs(int t, cudaStream_t compute)
{
    for (int i = 0; i < INPUTS; i++) {
        for (int j = 0; j < N; j++)
            hin[i][j] = t * 1000 + i * 100 + j;
        CK(cudaMemcpyAsync(din[i], hin[i], N * sizeof(int), cudaMemcpyHostToDevice, cudaStreamPerThread));
        CK(cudaStreamSynchronize(cudaStreamPerThread));
        if (compute)
            CK(cudaStreamSynchronize(compute)); /* ggml's backend synchronize: idle here */
    }
    CK(cudaStreamSynchronize(cudaStreamPerThread)); /* nothing new since the last */
}

static void check(int t)
{
    int i = t % INPUTS;
    for (int j = 0; j < N; j++)
        if (hout[j] != t * 1000 + i * 100 + j + 7)
            FAIL("token %d: element %d is %d, want %d", t, j, hout[j], t * 1000 + i * 100 + j + 7);
}

static int decode(int tokens)
{
    cudaStream_t c;
    CK(cudaStreamCreateWithFlags(&c, cudaStreamNonBlocking));
    setup();
    for (int t = 0; t < tokens; t++) {
        inputs(t, c);
        se_consume<<<1, N, 0, c>>>(din[t % INPUTS], dout, N, 7);
        CK(cudaMemcpyAsync(hout, dout, N * sizeof(int), cudaMemcpyDeviceToHost, c));
        CK(cudaStreamSynchronize(c));
        check(t);
    }
    printf("sync_fences: %d tokens decoded, every value as expected\n", tokens);
    return 0;
}

static int blocking(int tokens)
{
    setup();
    for (int t = 0; t < tokens; t++) {
        se_consume<<<1, N, 0, 0>>>(din[0], dout, N, 1); /* legacy stream, not synchronized yet */
        for (int j = 0; j < N; j++)
            hin[1][j] = t + j;
        CK(cudaMemcpyAsync(din[1], hin[1], N * sizeof(int), cudaMemcpyHostToDevice, cudaStreamPerThread));
        CK(cudaStreamSynchronize(cudaStreamPerThread)); /* must wait: the legacy kernel may fail */
        CK(cudaStreamSynchronize(0));
    }
    printf("sync_fences: %d tokens with legacy-stream work\n", tokens);
    return 0;
}

static int fault(void)
{
    cudaStream_t c;
    CK(cudaStreamCreateWithFlags(&c, cudaStreamNonBlocking));
    setup();
    ep_touch<<<1, 64, 0, c>>>((int *)(uintptr_t)0x1000, 64); /* no memory there */
    CK(cudaGetLastError());
    CK(cudaMemcpyAsync(din[0], hin[0], N * sizeof(int), cudaMemcpyHostToDevice, cudaStreamPerThread));
    cudaError_t e = cudaStreamSynchronize(cudaStreamPerThread);
    if (e != cudaSuccess && e != cudaErrorIllegalAddress)
        FAIL("per-thread stream synchronize gave %s", cudaGetErrorName(e));
    e = cudaStreamSynchronize(c);
    if (e != cudaErrorIllegalAddress)
        FAIL("the faulting stream's synchronize gave %s", cudaGetErrorName(e));
    printf("sync_fences: the fault reported at its stream's synchronize\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "decode";
    int tokens = argc > 2 ? atoi(argv[2]) : 16;
    int rc;
    if (tokens < 1 || tokens > 100000)
        FAIL("tokens out of range: %d", tokens);
    if (!strcmp(mode, "decode"))
        rc = decode(tokens);
    else if (!strcmp(mode, "blocking"))
        rc = blocking(tokens);
    else if (!strcmp(mode, "fault"))
        rc = fault();
    else
        FAIL("unknown mode %s", mode);
    printf("PASS %s %s\n", PROG, mode);
    return rc;
}
