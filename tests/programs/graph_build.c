/* graph_build: a graph built node by node with the driver API (memset, kernel,
 * device-to-device memcpy, child graph, event record and wait), read back,
 * and a memory alloc node whose allocation is filled, copied out and freed by
 * a free node, counted in the graph memory figures; a memset node through
 * cuGraphAddNode), read back, instantiated, launched twice with every byte
 * checked, then changed through
 * the exec's set-params calls and launched again. A clone of a small graph
 * finds its node, prints itself as DOT text and runs; conditional nodes (an
 * if taken, an if/else not) run the right bodies. Memcpy nodes reading
 * pageable host memory (as host and as unified memory) copy the bytes the
 * buffers hold at each launch: two launches with the buffers changed between
 * them, every byte checked. */
#define PROG "graph_build"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver_check.h"
#include "driver_api_fatbin.h" /* generated at build time: da_fatbin[], da_fatbin_len */

#define N 1024

static CUDA_MEMSET_NODE_PARAMS fill32(CUdeviceptr dst, float v)
{
    CUDA_MEMSET_NODE_PARAMS p;
    memset(&p, 0, sizeof p);
    memcpy(&p.value, &v, 4);
    p.dst = dst;
    p.elementSize = 4;
    p.width = N;
    p.height = 1;
    return p;
}

static CUDA_MEMCPY3D d2d(CUdeviceptr dst, CUdeviceptr src, size_t bytes)
{
    CUDA_MEMCPY3D p;
    memset(&p, 0, sizeof p);
    p.srcMemoryType = p.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    p.srcDevice = src;
    p.dstDevice = dst;
    p.WidthInBytes = bytes;
    p.Height = p.Depth = 1;
    return p;
}

static void expect_floats(CUdeviceptr d, float want, const char *what)
{
    static float h[N];
    CK(cuMemcpyDtoH(h, d, sizeof h));
    for (int i = 0; i < N; i++)
        if (h[i] != want)
            FAIL("%s[%d] = %g, want %g", what, i, h[i], want);
}

static void expect_bytes(CUdeviceptr d, unsigned char want, const char *what)
{
    static unsigned char h[N * 4];
    CK(cuMemcpyDtoH(h, d, sizeof h));
    for (int i = 0; i < N * 4; i++)
        if (h[i] != want)
            FAIL("%s byte %d = 0x%02x, want 0x%02x", what, i, h[i], want);
}

static void expect_type(CUgraphNode n, CUgraphNodeType want, const char *what)
{
    CUgraphNodeType t;
    CK(cuGraphNodeGetType(n, &t));
    if (t != want)
        FAIL("%s node has type %d, want %d", what, (int)t, (int)want);
}

int main(void)
{
    CUdevice dev;
    CUcontext ctx;
    CUmodule mod;
    CUfunction scale;
    CK(cuInit(0));
    CK(cuDeviceGet(&dev, 0));
    CK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(cuCtxSetCurrent(ctx));
    CK(cuModuleLoadData(&mod, da_fatbin));
    CK(cuModuleGetFunction(&scale, mod, "da_scale"));
    CUdeviceptr a, b, c, d, e, f;
    CK(cuMemAlloc(&a, N * 4));
    CK(cuMemAlloc(&b, N * 4));
    CK(cuMemAlloc(&c, N * 4));
    CK(cuMemAlloc(&d, N * 4));
    CK(cuMemAlloc(&e, N * 4));
    CK(cuMemAlloc(&f, N * 4));
    CUstream s;
    CUevent ev;
    CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CK(cuEventCreate(&ev, CU_EVENT_DEFAULT));

    /* child: c filled with 0x5a bytes */
    CUgraph child, g;
    CUgraphNode cn, nset, nker, ncpy, nchild, nrec, nwait;
    CK(cuGraphCreate(&child, 0));
    CUDA_MEMSET_NODE_PARAMS cset;
    memset(&cset, 0, sizeof cset);
    cset.dst = c;
    cset.value = 0x5a;
    cset.elementSize = 1;
    cset.width = N * 4;
    cset.height = 1;
    CK(cuGraphAddMemsetNode(&cn, child, NULL, 0, &cset, ctx));

    /* a = 1.0 ; a *= 3 ; b = a ; child ; record ev ; wait ev */
    CK(cuGraphCreate(&g, 0));
    CUDA_MEMSET_NODE_PARAMS set = fill32(a, 1.0f);
    CK(cuGraphAddMemsetNode(&nset, g, NULL, 0, &set, ctx));
    float factor = 3.0f;
    int n = N;
    void *args[] = {&a, &factor, &n};
    CUDA_KERNEL_NODE_PARAMS kp;
    memset(&kp, 0, sizeof kp);
    kp.func = scale;
    kp.gridDimX = N / 128;
    kp.gridDimY = kp.gridDimZ = 1;
    kp.blockDimX = 128;
    kp.blockDimY = kp.blockDimZ = 1;
    kp.kernelParams = args;
    CK(cuGraphAddKernelNode(&nker, g, &nset, 1, &kp));
    CUDA_MEMCPY3D cp = d2d(b, a, N * 4);
    CK(cuGraphAddMemcpyNode(&ncpy, g, &nker, 1, &cp, ctx));
    CK(cuGraphAddChildGraphNode(&nchild, g, &ncpy, 1, child));
    CK(cuGraphAddEventRecordNode(&nrec, g, &nchild, 1, ev));
    CK(cuGraphAddEventWaitNode(&nwait, g, &nrec, 1, ev));

    /* m = graph memory ; m = 7.0 ; e = m ; free m */
    CUgraphNode nalloc, nmset, nmcpy, nfree;
    CUDA_MEM_ALLOC_NODE_PARAMS ap;
    memset(&ap, 0, sizeof ap);
    ap.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    ap.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    ap.poolProps.location.id = 0;
    ap.bytesize = N * 4;
    CUmemAccessDesc access = {{CU_MEM_LOCATION_TYPE_DEVICE, 0}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    ap.accessDescs = &access;
    ap.accessDescCount = 1;
    CK(cuGraphAddMemAllocNode(&nalloc, g, &nwait, 1, &ap));
    if (!ap.dptr)
        FAIL("the alloc node gave no address");
    CUdeviceptr m = ap.dptr;
    CUDA_MEMSET_NODE_PARAMS mset = fill32(m, 7.0f);
    CK(cuGraphAddMemsetNode(&nmset, g, &nalloc, 1, &mset, ctx));
    CUDA_MEMCPY3D mcp = d2d(e, m, N * 4);
    mcp.srcMemoryType = mcp.dstMemoryType = CU_MEMORYTYPE_UNIFIED; /* as cudart sends cudaMemcpyDefault */
    CK(cuGraphAddMemcpyNode(&nmcpy, g, &nmset, 1, &mcp, ctx));
    CK(cuGraphAddMemFreeNode(&nfree, g, &nmcpy, 1, m));
    /* f = 9.0, through the generic call */
    CUgraphNode ngen;
    CUgraphNodeParams np;
    memset(&np, 0, sizeof np);
    np.type = CU_GRAPH_NODE_TYPE_MEMSET;
    CUDA_MEMSET_NODE_PARAMS fset = fill32(f, 9.0f);
    np.memset.dst = f;
    np.memset.value = fset.value;
    np.memset.elementSize = 4;
    np.memset.width = N;
    np.memset.height = 1;
    np.memset.ctx = ctx;
    CK(cuGraphAddNode(&ngen, g, &nfree, NULL, 1, &np));
    CUgraphNodeParams rp;
    memset(&rp, 0, sizeof rp);
    rp.type = CU_GRAPH_NODE_TYPE_EVENT_RECORD;
    rp.eventRecord.event = ev;
    CK(cuGraphNodeSetParams(nrec, &rp));
    CUDA_MEM_ALLOC_NODE_PARAMS aget;
    CK(cuGraphMemAllocNodeGetParams(nalloc, &aget));
    if (aget.dptr != m || aget.bytesize != N * 4 || aget.poolProps.location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
        aget.accessDescCount != 1 || aget.accessDescs[0].flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
        FAIL("alloc node parameters read back differ");
    CUdeviceptr freed = 0;
    CK(cuGraphMemFreeNodeGetParams(nfree, &freed));
    if (freed != m)
        FAIL("the free node frees 0x%llx, not 0x%llx", (unsigned long long)freed, (unsigned long long)m);

    /* memcpy nodes reading this process's memory at each launch: pageable
     * memory as host memory (one row, from an offset) and as unified memory;
     * each launch sees the bytes the buffers hold then */
    static float host[N + 16];
    float *uni = malloc(64 * sizeof(float));
    CUdeviceptr u;
    CK(cuMemAlloc(&u, 64 * sizeof(float)));
    CUDA_MEMCPY3D hp = d2d(d, 0, N * 4);
    hp.srcMemoryType = CU_MEMORYTYPE_HOST;
    hp.srcHost = host;
    hp.srcXInBytes = 16 * sizeof(float);
    CUDA_MEMCPY3D up = d2d(u, (CUdeviceptr)(uintptr_t)uni, 64 * sizeof(float));
    up.srcMemoryType = CU_MEMORYTYPE_UNIFIED;
    CUgraph hg;
    CUgraphNode hn, un;
    CUgraphExec hx;
    CK(cuGraphCreate(&hg, 0));
    CK(cuGraphAddMemcpyNode(&hn, hg, NULL, 0, &hp, ctx));
    CK(cuGraphAddMemcpyNode(&un, hg, &hn, 1, &up, ctx));
    CUDA_MEMCPY3D hget;
    CK(cuGraphMemcpyNodeGetParams(hn, &hget));
    if (hget.srcMemoryType != CU_MEMORYTYPE_HOST || (char *)hget.srcHost + hget.srcXInBytes != (char *)(host + 16) ||
        hget.dstDevice != d || hget.WidthInBytes != N * 4)
        FAIL("the host-side memcpy node's parameters read back differ");
    CK(cuGraphInstantiateWithFlags(&hx, hg, 0));
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N + 16; i++)
            host[i] = i < 16 ? -1.0f : (float)(round * 10000 + i);
        for (int i = 0; i < 64; i++)
            uni[i] = (float)(round * 100 + i) + 0.5f;
        CK(cuGraphLaunch(hx, s));
        CK(cuStreamSynchronize(s));
        static float got[N];
        CK(cuMemcpyDtoH(got, d, N * 4));
        for (int i = 0; i < N; i++)
            if (got[i] != (float)(round * 10000 + 16 + i))
                FAIL("launch %d: d[%d] = %g, want %g (host source)", round + 1, i, got[i],
                     (float)(round * 10000 + 16 + i));
        CK(cuMemcpyDtoH(got, u, 64 * sizeof(float)));
        for (int i = 0; i < 64; i++)
            if (got[i] != (float)(round * 100 + i) + 0.5f)
                FAIL("launch %d: u[%d] = %g, want %g (unified source)", round + 1, i, got[i],
                     (float)(round * 100 + i) + 0.5f);
    }
    printf("host-side memcpy nodes: 2 launches read the host buffers as they were then\n");
    CK(cuGraphExecDestroy(hx));
    CK(cuGraphDestroy(hg));
    CK(cuMemFree(u));
    free(uni);

    /* read back */
    expect_type(nset, CU_GRAPH_NODE_TYPE_MEMSET, "memset");
    expect_type(nker, CU_GRAPH_NODE_TYPE_KERNEL, "kernel");
    expect_type(ncpy, CU_GRAPH_NODE_TYPE_MEMCPY, "memcpy");
    expect_type(nchild, CU_GRAPH_NODE_TYPE_GRAPH, "child");
    expect_type(nrec, CU_GRAPH_NODE_TYPE_EVENT_RECORD, "record");
    expect_type(nwait, CU_GRAPH_NODE_TYPE_WAIT_EVENT, "wait");
    expect_type(nalloc, CU_GRAPH_NODE_TYPE_MEM_ALLOC, "alloc");
    expect_type(nfree, CU_GRAPH_NODE_TYPE_MEM_FREE, "free");
    CUDA_MEMSET_NODE_PARAMS sget;
    CK(cuGraphMemsetNodeGetParams(nset, &sget));
    if (sget.dst != a || sget.value != set.value || sget.elementSize != 4 || sget.width != N || sget.height != 1)
        FAIL("memset node parameters read back differ");
    CUDA_MEMCPY3D cget;
    CK(cuGraphMemcpyNodeGetParams(ncpy, &cget));
    if (cget.srcDevice != a || cget.dstDevice != b || cget.WidthInBytes != N * 4 ||
        cget.srcMemoryType != CU_MEMORYTYPE_DEVICE || cget.dstMemoryType != CU_MEMORYTYPE_DEVICE)
        FAIL("memcpy node parameters read back differ");
    CUevent eget;
    CK(cuGraphEventRecordNodeGetEvent(nrec, &eget));
    if (eget != ev)
        FAIL("event record node names another event");
    CK(cuGraphEventWaitNodeGetEvent(nwait, &eget));
    if (eget != ev)
        FAIL("event wait node names another event");
    CUgraph cg;
    CK(cuGraphChildGraphNodeGetGraph(nchild, &cg));
    if (!cg)
        FAIL("no child graph");
    /* the node holds a copy: the graph given may go */
    CK(cuGraphDestroy(child));
    /* set and read back on the graph, then put back */
    CUDA_MEMSET_NODE_PARAMS other = fill32(a, 5.0f);
    CK(cuGraphMemsetNodeSetParams(nset, &other));
    CK(cuGraphMemsetNodeGetParams(nset, &sget));
    if (sget.value != other.value)
        FAIL("memset node set params did not take");
    CK(cuGraphMemsetNodeSetParams(nset, &set));
    CUDA_MEMCPY3D ccopy = d2d(d, a, N * 4);
    CK(cuGraphMemcpyNodeSetParams(ncpy, &ccopy));
    CK(cuGraphMemcpyNodeGetParams(ncpy, &cget));
    if (cget.dstDevice != d)
        FAIL("memcpy node set params did not take");
    CK(cuGraphMemcpyNodeSetParams(ncpy, &cp));

    CUgraphExec x;
    CK(cuGraphInstantiateWithFlags(&x, g, 0));
    for (int round = 0; round < 2; round++) {
        CK(cuMemsetD8(a, 0xee, N * 4));
        CK(cuMemsetD8(b, 0xee, N * 4));
        CK(cuMemsetD8(c, 0xee, N * 4));
        CK(cuMemsetD8(e, 0xee, N * 4));
        CK(cuMemsetD8(f, 0xee, N * 4));
        CK(cuGraphLaunch(x, s));
        CK(cuStreamSynchronize(s));
        expect_floats(a, 3.0f, "a");
        expect_floats(b, 3.0f, "b");
        expect_bytes(c, 0x5a, "c");
        expect_floats(e, 7.0f, "e");
        expect_floats(f, 9.0f, "f");
        CK(cuEventQuery(ev));
    }
    /* the alloc node's memory is counted */
    cuuint64_t reserved = 0, zero = 0;
    CK(cuDeviceGetGraphMemAttribute(dev, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT, &reserved));
    if (reserved < N * 4)
        FAIL("graph memory reserved: %llu bytes, fewer than the alloc node's", (unsigned long long)reserved);
    CK(cuDeviceSetGraphMemAttribute(dev, CU_GRAPH_MEM_ATTR_USED_MEM_HIGH, &zero));
    CK(cuDeviceGraphMemTrim(dev));

    /* the exec changed: a = 2.0 (then tripled), copied into d; the graph itself keeps its own */
    CUDA_MEMSET_NODE_PARAMS xset = fill32(a, 2.0f);
    CK(cuGraphExecMemsetNodeSetParams(x, nset, &xset, ctx));
    CUDA_MEMCPY3D xcp = d2d(d, a, N * 4);
    CK(cuGraphExecMemcpyNodeSetParams(x, ncpy, &xcp, ctx));
    np.memset.value = fill32(f, 4.0f).value;
    CK(cuGraphExecNodeSetParams(x, ngen, &np));
    CK(cuMemsetD8(b, 0xee, N * 4));
    CK(cuMemsetD8(d, 0xee, N * 4));
    CK(cuGraphLaunch(x, s));
    CK(cuStreamSynchronize(s));
    expect_floats(a, 6.0f, "a after exec set params");
    expect_floats(d, 6.0f, "d after exec set params");
    expect_bytes(b, 0xee, "b after exec set params");
    expect_floats(f, 4.0f, "f after exec set params");
    CK(cuGraphMemsetNodeGetParams(nset, &sget));
    if (sget.value != set.value)
        FAIL("the exec's parameters reached the graph");

    CK(cuGraphExecDestroy(x));

    /* a clone (graphs with memory nodes cannot be cloned: a small one) */
    CUgraph small, copy;
    CUgraphNode sn, cnode;
    CUgraphExec cx;
    CK(cuGraphCreate(&small, 0));
    cset.value = 0x33;
    CK(cuGraphAddMemsetNode(&sn, small, NULL, 0, &cset, ctx));
    CK(cuGraphClone(&copy, small));
    CK(cuGraphNodeFindInClone(&cnode, sn, copy));
    if (cnode == sn)
        FAIL("the clone's node is the original's");
    CK(cuGraphMemsetNodeGetParams(cnode, &sget));
    if (sget.dst != c || sget.value != 0x33)
        FAIL("the clone's memset node differs");
    /* the DOT text lands at this process's path */
    char dot[64];
    snprintf(dot, sizeof dot, "/tmp/graph_build_%d.dot", (int)getpid());
    remove(dot);
    CK(cuGraphDebugDotPrint(copy, dot, CU_GRAPH_DEBUG_DOT_FLAGS_VERBOSE));
    FILE *df = fopen(dot, "r");
    char head[64] = {0};
    if (!df || !fgets(head, sizeof head, df) || strncmp(head, "digraph", 7))
        FAIL("cuGraphDebugDotPrint wrote no DOT text to %s", dot);
    fclose(df);
    remove(dot);
    CK(cuGraphDestroy(small));
    CK(cuGraphInstantiateWithFlags(&cx, copy, 0));
    CK(cuGraphLaunch(cx, s));
    CK(cuStreamSynchronize(s));
    expect_bytes(c, 0x33, "c after the clone ran");
    CK(cuGraphExecDestroy(cx));
    CK(cuGraphDestroy(copy));

    /* conditional nodes: an if taken (default 1) and an if/else not taken (default 0) */
    CUgraph cg2;
    CUgraphConditionalHandle yes, no;
    CUgraphNode nif, nelse, bn;
    CK(cuGraphCreate(&cg2, 0));
    CK(cuGraphConditionalHandleCreate(&yes, cg2, ctx, 1, CU_GRAPH_COND_ASSIGN_DEFAULT));
    CK(cuGraphConditionalHandleCreate(&no, cg2, ctx, 0, CU_GRAPH_COND_ASSIGN_DEFAULT));
    CUgraphNodeParams cnp;
    memset(&cnp, 0, sizeof cnp);
    cnp.type = CU_GRAPH_NODE_TYPE_CONDITIONAL;
    cnp.conditional.handle = yes;
    cnp.conditional.type = CU_GRAPH_COND_TYPE_IF;
    cnp.conditional.size = 1;
    cnp.conditional.ctx = ctx;
    CK(cuGraphAddNode(&nif, cg2, NULL, NULL, 0, &cnp));
    if (!cnp.conditional.phGraph_out || !cnp.conditional.phGraph_out[0])
        FAIL("the if node gave no body");
    cset.dst = c;
    cset.value = 0x11;
    CK(cuGraphAddMemsetNode(&bn, cnp.conditional.phGraph_out[0], NULL, 0, &cset, ctx));
    memset(&cnp, 0, sizeof cnp);
    cnp.type = CU_GRAPH_NODE_TYPE_CONDITIONAL;
    cnp.conditional.handle = no;
    cnp.conditional.type = CU_GRAPH_COND_TYPE_IF;
    cnp.conditional.size = 2;
    cnp.conditional.ctx = ctx;
    CK(cuGraphAddNode(&nelse, cg2, &nif, NULL, 1, &cnp));
    if (!cnp.conditional.phGraph_out || !cnp.conditional.phGraph_out[0] || !cnp.conditional.phGraph_out[1])
        FAIL("the if/else node gave no bodies");
    cset.dst = d;
    cset.value = 0x77;
    CK(cuGraphAddMemsetNode(&bn, cnp.conditional.phGraph_out[0], NULL, 0, &cset, ctx));
    cset.value = 0x22;
    CK(cuGraphAddMemsetNode(&bn, cnp.conditional.phGraph_out[1], NULL, 0, &cset, ctx));
    expect_type(nif, CU_GRAPH_NODE_TYPE_CONDITIONAL, "if");
    CK(cuGraphInstantiateWithFlags(&cx, cg2, 0));
    CK(cuMemsetD8(c, 0xee, N * 4));
    CK(cuMemsetD8(d, 0xee, N * 4));
    CK(cuGraphLaunch(cx, s));
    CK(cuStreamSynchronize(s));
    expect_bytes(c, 0x11, "c after the if ran");
    expect_bytes(d, 0x22, "d after the else ran");
    CK(cuGraphExecDestroy(cx));
    CK(cuGraphDestroy(cg2));
    CK(cuGraphDestroy(g));
    CK(cuEventDestroy(ev));
    CK(cuStreamDestroy(s));
    CK(cuMemFree(a));
    CK(cuMemFree(b));
    CK(cuMemFree(c));
    CK(cuMemFree(d));
    CK(cuMemFree(e));
    CK(cuMemFree(f));
    CK(cuModuleUnload(mod));
    CK(cuDevicePrimaryCtxRelease(dev));
    printf("PASS %s\n", PROG);
    return 0;
}
