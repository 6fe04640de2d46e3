/* Pinned host memory (cudaMallocHost, cudaHostAlloc), four non-blocking streams with chunked async copies and kernels, events joining them, a timed event pair, stream/event queries. */
#include "compat.h"

#define N (1 << 22)
#define STREAMS 4

__global__ void transform(const float *in, float *out, int n, float k)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        out[i] = in[i] * k + sinf(in[i]);
}

/* One partial sum per block, in a fixed order: deterministic. */
__global__ void block_sums(const float *x, double *out, int n)
{
    __shared__ double s[256];
    double acc = 0;
    for (int i = blockIdx.x * 256 + threadIdx.x; i < n; i += gridDim.x * 256)
        acc += x[i];
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int k = 128; k > 0; k >>= 1) {
        if (threadIdx.x < k)
            s[threadIdx.x] += s[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        out[blockIdx.x] = s[0];
}

int main(void)
{
    float *h_in, *h_out;
    double *h_sums;
    CHECK(cudaMallocHost((void **)&h_in, N * sizeof(float)));
    CHECK(cudaHostAlloc((void **)&h_out, N * sizeof(float), cudaHostAllocPortable));
    CHECK(cudaMallocHost((void **)&h_sums, 128 * sizeof(double)));
    for (int i = 0; i < N; i++)
        h_in[i] = (float)((i * 2654435761u) % 100003) / 1000.0f;

    float *d_in, *d_out;
    double *d_sums;
    CHECK(cudaMalloc((void **)&d_in, N * sizeof(float)));
    CHECK(cudaMalloc((void **)&d_out, N * sizeof(float)));
    CHECK(cudaMalloc((void **)&d_sums, 128 * sizeof(double)));

    cudaStream_t s[STREAMS], join;
    cudaEvent_t done[STREAMS], t0, t1;
    for (int i = 0; i < STREAMS; i++) {
        CHECK(cudaStreamCreateWithFlags(&s[i], cudaStreamNonBlocking));
        CHECK(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming));
    }
    int lo, hi;
    CHECK(cudaDeviceGetStreamPriorityRange(&lo, &hi));
    CHECK(cudaStreamCreateWithPriority(&join, cudaStreamNonBlocking, hi));
    CHECK(cudaEventCreate(&t0));
    CHECK(cudaEventCreate(&t1));

    CHECK(cudaEventRecord(t0, join));
    const int chunk = N / STREAMS;
    for (int i = 0; i < STREAMS; i++) {
        size_t off = (size_t)i * chunk;
        CHECK(cudaMemcpyAsync(d_in + off, h_in + off, chunk * sizeof(float), cudaMemcpyHostToDevice, s[i]));
        transform<<<64, 256, 0, s[i]>>>(d_in + off, d_out + off, chunk, 0.5f + i);
        CHECK(cudaGetLastError());
        CHECK(cudaMemcpyAsync(h_out + off, d_out + off, chunk * sizeof(float), cudaMemcpyDeviceToHost, s[i]));
        CHECK(cudaEventRecord(done[i], s[i]));
        CHECK(cudaStreamWaitEvent(join, done[i], 0));
    }
    block_sums<<<128, 256, 0, join>>>(d_out, d_sums, N);
    CHECK(cudaGetLastError());
    CHECK(cudaMemcpyAsync(h_sums, d_sums, 128 * sizeof(double), cudaMemcpyDeviceToHost, join));
    CHECK(cudaEventRecord(t1, join));
    CHECK(cudaEventSynchronize(t1));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, t0, t1));
    for (int i = 0; i < STREAMS; i++) {
        CHECK(cudaStreamQuery(s[i]));
        CHECK(cudaEventQuery(done[i]));
    }

    /* Check on the host what the streams computed. */
    int bad = 0;
    for (int i = 0; i < N && bad < 5; i += 997) {
        float want = h_in[i] * (0.5f + i / chunk) + sinf(h_in[i]);
        if (fabsf(h_out[i] - want) > 1e-4f * (1 + fabsf(want))) {
            fprintf(stderr, "element %d: %g, want about %g\n", i, h_out[i], want);
            bad++;
        }
    }
    if (bad || !(ms > 0)) {
        fprintf(stderr, "wrong results (%d) or event time %g ms\n", bad, ms);
        return 1;
    }
    uint64_t h = fnv1a(FNV_INIT, h_out, N * sizeof(float));
    h = fnv1a(h, h_sums, 128 * sizeof(double));
    char notes[160];
    double total = 0;
    for (int i = 0; i < 128; i++)
        total += h_sums[i];
    snprintf(notes, sizeof notes, "fnv1a64 of outputs and block sums; sum %.6e; priorities %d..%d", total, lo, hi);
    emit("cuda_pinned_streams", h, notes);

    for (int i = 0; i < STREAMS; i++) {
        CHECK(cudaStreamDestroy(s[i]));
        CHECK(cudaEventDestroy(done[i]));
    }
    CHECK(cudaStreamDestroy(join));
    CHECK(cudaFreeHost(h_in));
    CHECK(cudaFreeHost(h_out));
    CHECK(cudaFreeHost(h_sums));
    CHECK(cudaFree(d_in));
    CHECK(cudaFree(d_out));
    CHECK(cudaFree(d_sums));
    return 0;
}
