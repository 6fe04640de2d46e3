/* CUDA graphs from the runtime API: stream capture of a memset, kernels and a copy (with a forked second stream joined by events), instantiate, launch 3 times, update a kernel node's parameters, launch again. */
#include "compat.h"

#define N (1 << 20)

__global__ void axpb(float *x, int n, float a, float b)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = a * x[i] + b;
}

__global__ void add(const float *x, float *y, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] += x[i];
}

int main(void)
{
    float *x, *y, *h;
    CHECK(cudaMalloc((void **)&x, N * sizeof(float)));
    CHECK(cudaMalloc((void **)&y, N * sizeof(float)));
    CHECK(cudaMallocHost((void **)&h, N * sizeof(float)));
    CHECK(cudaMemset(y, 0, N * sizeof(float)));
    cudaStream_t s, side;
    cudaEvent_t fork, joined;
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CHECK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
    CHECK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
    CHECK(cudaEventCreateWithFlags(&joined, cudaEventDisableTiming));

    cudaGraph_t graph;
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    cudaStreamCaptureStatus st;
    CHECK(cudaStreamIsCapturing(s, &st));
    if (st != cudaStreamCaptureStatusActive) {
        fprintf(stderr, "capture status %d\n", (int)st);
        return 1;
    }
    CHECK(cudaMemsetAsync(x, 0, N * sizeof(float), s));
    axpb<<<N / 256, 256, 0, s>>>(x, N, 1.0f, 1.5f);
    CHECK(cudaEventRecord(fork, s));
    CHECK(cudaStreamWaitEvent(side, fork, 0));
    axpb<<<N / 256, 256, 0, side>>>(y, N, 0.5f, 0.25f);
    CHECK(cudaEventRecord(joined, side));
    CHECK(cudaStreamWaitEvent(s, joined, 0));
    add<<<N / 256, 256, 0, s>>>(x, y, N);
    CHECK(cudaMemcpyAsync(h, y, N * sizeof(float), cudaMemcpyDeviceToHost, s));
    CHECK(cudaStreamEndCapture(s, &graph));
    size_t nodes = 0;
    CHECK(cudaGraphGetNodes(graph, NULL, &nodes));

    cudaGraphExec_t exec;
    CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < 3; i++)
        CHECK(cudaGraphLaunch(exec, s));
    CHECK(cudaStreamSynchronize(s));
    uint64_t d = fnv1a(FNV_INIT, h, N * sizeof(float));
    float after3 = h[12345];

    /* Change the side kernel's scale in the executable graph and replay once. */
    cudaGraphNode_t *all = (cudaGraphNode_t *)calloc(nodes, sizeof *all);
    CHECK(cudaGraphGetNodes(graph, all, &nodes));
    int updated = 0;
    for (size_t i = 0; i < nodes; i++) {
        cudaGraphNodeType type;
        CHECK(cudaGraphNodeGetType(all[i], &type));
        if (type != cudaGraphNodeTypeKernel)
            continue;
        cudaKernelNodeParams p;
        CHECK(cudaGraphKernelNodeGetParams(all[i], &p));
        if (*(float **)p.kernelParams[0] == y) { /* the side stream's axpb: the only node whose first argument is y */
            float a = 2.0f, b = 0.0f;
            void *args[] = {&y, (void *)p.kernelParams[1], &a, &b};
            p.kernelParams = args;
            CHECK(cudaGraphExecKernelNodeSetParams(exec, all[i], &p));
            updated++;
        }
    }
    CHECK(cudaGraphLaunch(exec, s));
    CHECK(cudaStreamSynchronize(s));
    d = fnv1a(d, h, N * sizeof(float));
    /* y = 0.5y + 0.25 + 1.5 each launch: 0 -> 1.75 -> 2.625 -> 3.0625; updated, y = 2y + 1.5: 7.625 */
    if (updated != 1 || after3 != 3.0625f || h[12345] != 7.625f) {
        fprintf(stderr, "graph results: updated %d, after 3 launches %g (want 3.0625), after update %g (want 7.625)\n",
                updated, after3, h[12345]);
        return 1;
    }
    char notes[128];
    snprintf(notes, sizeof notes, "fnv1a64 of results after 3 launches and after an update; %zu nodes", nodes);
    emit("cuda_graph_capture", d, notes);
    CHECK(cudaGraphExecDestroy(exec));
    CHECK(cudaGraphDestroy(graph));
    free(all);
    return 0;
}
