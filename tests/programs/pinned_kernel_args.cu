// pinned_kernel_args: page-locked memory allocated without DEVICEMAP handed to
// kernels inside their arguments, as XLA's autotuner and NVIDIA's
// UnifiedMemoryPerf do (UVA lets a kernel dereference any page-locked host
// pointer). Each way a kernel gets its arguments is used once, each with an
// allocation of its own: a launch (a pointer parameter, twice), a struct
// passed by value with the pointer inside it, cudaLaunchKernelEx, a
// cooperative launch, a graph kernel node, and that node's parameters set
// anew in the instantiated graph. The host writes the value first, the kernel adds to it, the
// host reads it after a synchronize; every result is checked here and
// printed. "integer" passes only integers to a kernel writing device memory
// (one just past the lower of two page-locked allocations' ends: between
// them, in neither): nothing to map.
// "unmappable" hands a kernel a registration that shares its page with other
// data (malloc'd, no DEVICEMAP): natively the kernel writes it; gpuwire cannot
// map such memory in place (docs/host-memory.md), so the kernel faults there;
// the outcome is printed either way.
#define PROG "pinned_kernel_args"
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct pk_box {
    unsigned long long add;
    unsigned long long *where;
};

__global__ void pk_add(unsigned long long *p, unsigned long long add)
{
    if (blockIdx.x == 0 && threadIdx.x == 0)
        *p += add;
}

__global__ void pk_add_boxed(pk_box b)
{
    if (blockIdx.x == 0 && threadIdx.x == 0)
        *b.where += b.add;
}

static unsigned long long *pinned(unsigned flags)
{
    unsigned long long *p;
    CK(cudaHostAlloc((void **)&p, sizeof *p, flags));
    *p = 1000;
    return p;
}

static void expect(const char *what, const unsigned long long *p, unsigned long long want)
{
    if (*p != want)
        FAIL("%s: the host reads %llu, want %llu", what, *p, want);
    printf("%s: %llu\n", what, *p);
}

static int integers(void)
{
    unsigned long long *h = pinned(cudaHostAllocDefault), *other = pinned(cudaHostAllocDefault), *d;
    CK(cudaMalloc((void **)&d, sizeof *d));
    CK(cudaMemset(d, 0, sizeof *d));
    unsigned long long past_end = (unsigned long long)(uintptr_t)((h < other ? h : other) + 1);
    pk_add<<<1, 1>>>(d, past_end);
    pk_add<<<1, 1>>>(d, 42);
    CK(cudaGetLastError());
    CK(cudaMemcpy(h, d, sizeof *h, cudaMemcpyDeviceToHost));
    if (*h != past_end + 42)
        FAIL("integer arguments: %llu, want %llu", *h, past_end + 42);
    printf("integer arguments: summed\n");
    CK(cudaFree(d));
    CK(cudaFreeHost(h));
    CK(cudaFreeHost(other));
    PASS();
}

static int unmappable(void)
{
    unsigned long long *m = (unsigned long long *)malloc(64);
    if (!m)
        FAIL("malloc");
    CK(cudaHostRegister(m, 64, cudaHostRegisterDefault));
    m[0] = 1000;
    pk_add<<<1, 1>>>(m, 1);
    pk_add<<<1, 1>>>(m, 2);
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess)
        printf("unmappable registration: %llu\n", m[0]);
    else
        printf("unmappable registration: %s\n", cudaGetErrorName(e));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "integer"))
        return integers();
    if (argc > 1 && !strcmp(argv[1], "unmappable"))
        return unmappable();

    unsigned long long *a = pinned(cudaHostAllocDefault);
    pk_add<<<1, 1>>>(a, 7);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    expect("launch", a, 1007);
    *a += 1; /* the host's write reaches the next launch */
    pk_add<<<1, 1>>>(a, 10);
    CK(cudaDeviceSynchronize());
    expect("launch again", a, 1018);

    unsigned long long *b = pinned(cudaHostAllocPortable);
    pk_box box = {20, b};
    pk_add_boxed<<<1, 1>>>(box);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    expect("struct argument", b, 1020);

    unsigned long long *c;
    CK(cudaMallocHost((void **)&c, sizeof *c));
    *c = 1000;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(1);
    cfg.blockDim = dim3(1);
    CK(cudaLaunchKernelEx(&cfg, pk_add, c, 30ull));
    CK(cudaDeviceSynchronize());
    expect("cudaLaunchKernelEx", c, 1030);

    unsigned long long *co = pinned(cudaHostAllocDefault), co_add = 35;
    void *co_args[] = {&co, &co_add};
    CK(cudaLaunchCooperativeKernel((void *)pk_add, dim3(1), dim3(1), co_args, 0, 0));
    CK(cudaDeviceSynchronize());
    expect("cooperative launch", co, 1035);

    unsigned long long *g = pinned(cudaHostAllocDefault), add = 40;
    void *args[] = {&g, &add};
    cudaKernelNodeParams kp = {};
    kp.func = (void *)pk_add;
    kp.gridDim = dim3(1);
    kp.blockDim = dim3(1);
    kp.kernelParams = args;
    cudaGraph_t graph;
    cudaGraphNode_t node;
    cudaGraphExec_t exec;
    CK(cudaGraphCreate(&graph, 0));
    CK(cudaGraphAddKernelNode(&node, graph, NULL, 0, &kp));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaGraphLaunch(exec, 0));
    CK(cudaGraphLaunch(exec, 0));
    CK(cudaDeviceSynchronize());
    expect("graph kernel node", g, 1080);
    unsigned long long *g2 = pinned(cudaHostAllocDefault), add2 = 50;
    void *args2[] = {&g2, &add2};
    kp.kernelParams = args2;
    CK(cudaGraphExecKernelNodeSetParams(exec, node, &kp));
    CK(cudaGraphLaunch(exec, 0));
    CK(cudaDeviceSynchronize());
    expect("graph kernel node set anew", g2, 1050);
    if (*g != 1080)
        FAIL("the node's first pointer was written after its parameters changed: %llu", *g);
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));

    CK(cudaFreeHost(a));
    CK(cudaFreeHost(b));
    CK(cudaFreeHost(c));
    CK(cudaFreeHost(co));
    CK(cudaFreeHost(g));
    CK(cudaFreeHost(g2));
    PASS();
}
