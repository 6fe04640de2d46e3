// graph_host_copies: graphs whose memcpy nodes touch this process's memory,
// as NVIDIA's simpleCudaGraphs and jacobiCudaGraphs build them: a node copying
// from page-locked host memory to the device, a kernel, and a node copying a
// result back into ordinary (pageable) host memory; the graph launched
// several times with the host input changed between launches.
#define PROG "graph_host_copies"
#include "check.h"

__global__ void vector_add(const float *a, const float *b, float *c, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        c[i] = a[i] + b[i];
}

int main(void)
{
    const int n = 5000;
    const size_t bytes = n * sizeof(float);
    float *in_h, *in_d, *out_d;
    static float out_h[5000]; /* pageable: the node's destination */
    CK(cudaMallocHost((void **)&in_h, bytes));
    CK(cudaMalloc((void **)&in_d, bytes));
    CK(cudaMalloc((void **)&out_d, bytes));
    cudaStream_t s;
    CK(cudaStreamCreate(&s));

    cudaGraph_t g;
    CK(cudaGraphCreate(&g, 0));
    cudaMemcpy3DParms up = {0};
    up.srcPtr = make_cudaPitchedPtr(in_h, bytes, n, 1);
    up.dstPtr = make_cudaPitchedPtr(in_d, bytes, n, 1);
    up.extent = make_cudaExtent(bytes, 1, 1);
    up.kind = cudaMemcpyHostToDevice;
    cudaGraphNode_t nup, nk, ndown;
    CK(cudaGraphAddMemcpyNode(&nup, g, NULL, 0, &up));

    void *args[] = {&in_d, &in_d, &out_d, (void *)&n};
    cudaKernelNodeParams kp = {0};
    kp.func = (void *)vector_add;
    kp.gridDim = dim3((n + 255) / 256);
    kp.blockDim = dim3(256);
    kp.kernelParams = args;
    CK(cudaGraphAddKernelNode(&nk, g, &nup, 1, &kp));

    cudaMemcpy3DParms down = {0};
    down.srcPtr = make_cudaPitchedPtr(out_d, bytes, n, 1);
    down.dstPtr = make_cudaPitchedPtr(out_h, bytes, n, 1);
    down.extent = make_cudaExtent(bytes, 1, 1);
    down.kind = cudaMemcpyDeviceToHost;
    CK(cudaGraphAddMemcpyNode(&ndown, g, &nk, 1, &down));

    cudaGraphExec_t e;
    CK(cudaGraphInstantiate(&e, g, 0));
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < n; i++)
            in_h[i] = (float)(i % 100 + round);
        CK(cudaGraphLaunch(e, s));
        CK(cudaStreamSynchronize(s));
        for (int i = 0; i < n; i++)
            if (out_h[i] != 2.0f * in_h[i])
                FAIL("round %d: element %d is %g, want %g", round, i, out_h[i], 2.0f * in_h[i]);
    }
    size_t nodes = 0; /* gpuwire adds a host node after a delivered copy: compared with the native run */
    if (cudaGraphGetNodes(g, NULL, &nodes) == cudaSuccess)
        printf("nodes in the graph: %zu\n", nodes);
    cudaGetLastError();
    CK(cudaGraphExecDestroy(e));
    CK(cudaGraphDestroy(g));
    CK(cudaFreeHost(in_h));
    printf("PASS graph_host_copies\n");
    return 0;
}
