// graph_host_sources: graph memcpy nodes that copy host-to-device from
// ordinary (pageable) host memory, as NVIDIA's simpleCudaGraphs,
// jacobiCudaGraphs and graphMemoryNodes build them. Natively the node reads
// the host memory at each launch; every case here changes the host bytes
// between launches and checks every byte on the device:
// - a source larger than one wire chunk (9 MiB and a few bytes), launched twice;
// - one of two executable graphs destroyed, then the other launched;
// - the graph destroyed before its executable graph's next launch (*);
// - a clone of the graph, and the graph as a child of another graph;
// - cudaGraphExecUpdate onto a graph reading another buffer (*);
// - the executable graph's node set to another host buffer; the graph's node set to
//   another host buffer, then to a device source (the host bytes no longer count);
// - a cudaMemcpyAsync from pageable memory captured from a stream, launched twice.
// - cudaMemcpyAsync into pageable memory and a stack variable, captured, launched twice.
// (*) left out with --standin: the CPU stand-in runs an executable graph from
// its graph as it is at launch, so neither means anything there.
// `graph_host_sources launches K host|device` builds one small graph (its
// source in host or device memory) and launches it K times before one
// synchronize: what the e2e test counts round trips with.
#define PROG "graph_host_sources"
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void fill(float *h, size_t n, float base)
{
    for (size_t i = 0; i < n; i++)
        h[i] = base + (float)(i % 4096);
}

static void expect(const float *dev, size_t n, float base, const char *what)
{
    float *got = (float *)malloc(n * sizeof(float));
    if (!got)
        FAIL("out of memory");
    CK(cudaMemcpy(got, dev, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++)
        if (got[i] != base + (float)(i % 4096))
            FAIL("%s: element %zu is %g, want %g", what, i, got[i], base + (float)(i % 4096));
    free(got);
}

/* one node from host (or device) memory, launched k times, then one synchronize */
static int launches(int k, int from_host)
{
    const size_t n = 16384;
    float *h = (float *)malloc(n * sizeof(float)), *d, *dsrc;
    CK(cudaMalloc((void **)&d, n * sizeof(float)));
    CK(cudaMalloc((void **)&dsrc, n * sizeof(float)));
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    cudaGraph_t g;
    cudaGraphNode_t node;
    cudaGraphExec_t e;
    CK(cudaGraphCreate(&g, 0));
    CK(cudaGraphAddMemcpyNode1D(&node, g, NULL, 0, d, from_host ? (const void *)h : (const void *)dsrc,
                                n * sizeof(float), from_host ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice));
    CK(cudaGraphInstantiate(&e, g, 0));
    for (int i = 0; i < k; i++) {
        fill(h, n, (float)i * 10000.0f);
        if (!from_host)
            CK(cudaMemcpyAsync(dsrc, h, n * sizeof(float), cudaMemcpyHostToDevice, s));
        CK(cudaGraphLaunch(e, s));
    }
    CK(cudaStreamSynchronize(s));
    expect(d, n, (float)(k - 1) * 10000.0f, "after the last launch");
    printf("%d launches from %s memory: the last one's bytes arrived\n", k, from_host ? "host" : "device");
    CK(cudaGraphExecDestroy(e));
    CK(cudaGraphDestroy(g));
    CK(cudaStreamDestroy(s));
    CK(cudaFree(d));
    CK(cudaFree(dsrc));
    free(h);
    PASS();
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "launches"))
        return launches(atoi(argv[2]), !strcmp(argv[3], "host"));
    /* the CPU stand-in runs an executable graph from its graph as it is at
     * launch: an exec that outlives its graph, and updates, are the GPU's only */
    int standin = argc >= 2 && !strcmp(argv[1], "--standin");
    /* --no-host-destinations: leave out captured copies into host memory (a
     * client's later servers do not deliver: docs/multi-gpu.md) */
    int host_destinations = !(argc >= 3 && !strcmp(argv[2], "--no-host-destinations"));
    cudaStream_t s;
    CK(cudaStreamCreate(&s));

    /* larger than one wire chunk, launched twice */
    const size_t big = (9u << 20) / sizeof(float) + 3;
    float *hbig = (float *)malloc(big * sizeof(float)), *dbig;
    CK(cudaMalloc((void **)&dbig, big * sizeof(float)));
    cudaGraph_t g;
    cudaGraphNode_t nbig;
    cudaGraphExec_t e, e2;
    CK(cudaGraphCreate(&g, 0));
    CK(cudaGraphAddMemcpyNode1D(&nbig, g, NULL, 0, dbig, hbig, big * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaGraphInstantiate(&e, g, 0));
    CK(cudaGraphInstantiate(&e2, g, 0));
    for (int round = 0; round < 2; round++) {
        fill(hbig, big, 1.0f + round * 100000.0f);
        CK(cudaGraphLaunch(e, s));
        CK(cudaStreamSynchronize(s));
        expect(dbig, big, 1.0f + round * 100000.0f, round ? "big source, second launch" : "big source, first launch");
    }
    printf("a 9 MiB source: 2 launches, every byte\n");

    /* one executable graph goes; another of the same graph still reads the source */
    CK(cudaGraphExecDestroy(e));
    fill(hbig, big, 5.0f);
    CK(cudaGraphLaunch(e2, s));
    CK(cudaStreamSynchronize(s));
    expect(dbig, big, 5.0f, "after another executable graph was destroyed");
    printf("another executable graph destroyed: this one still reads the source\n");

    /* the graph goes; its executable graph still reads the host buffer */
    CK(cudaGraphDestroy(g));
    if (!standin) {
        fill(hbig, big, 7.0f);
        CK(cudaGraphLaunch(e2, s));
        CK(cudaStreamSynchronize(s));
        expect(dbig, big, 7.0f, "after the graph was destroyed");
        printf("the graph destroyed: its executable graph still reads the source\n");
    }
    CK(cudaGraphExecDestroy(e2));

    /* a clone, and a child graph */
    const size_t n = 50000;
    float *ha = (float *)malloc(n * sizeof(float)), *hb = (float *)malloc(n * sizeof(float)), *da, *dsrc;
    CK(cudaMalloc((void **)&da, n * sizeof(float)));
    CK(cudaMalloc((void **)&dsrc, n * sizeof(float)));
    cudaGraph_t ga, clone, parent;
    cudaGraphNode_t na, nchild;
    CK(cudaGraphCreate(&ga, 0));
    CK(cudaGraphAddMemcpyNode1D(&na, ga, NULL, 0, da, ha, n * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaGraphClone(&clone, ga));
    CK(cudaGraphCreate(&parent, 0));
    CK(cudaGraphAddChildGraphNode(&nchild, parent, NULL, 0, ga));
    cudaGraphExec_t ec, ep;
    CK(cudaGraphInstantiate(&ec, clone, 0));
    CK(cudaGraphInstantiate(&ep, parent, 0));
    fill(ha, n, 11.0f);
    CK(cudaGraphLaunch(ec, s));
    CK(cudaStreamSynchronize(s));
    expect(da, n, 11.0f, "the clone's launch");
    fill(ha, n, 12.0f);
    CK(cudaGraphLaunch(ep, s));
    CK(cudaStreamSynchronize(s));
    expect(da, n, 12.0f, "the parent's launch");
    CK(cudaGraphExecDestroy(ec));
    CK(cudaGraphExecDestroy(ep));
    CK(cudaGraphDestroy(clone));
    CK(cudaGraphDestroy(parent));
    printf("a clone and a parent graph read the source at their launches\n");

    /* an update onto a graph that reads another buffer */
    if (!standin) {
        cudaGraph_t gb;
        cudaGraphNode_t nb;
        CK(cudaGraphCreate(&gb, 0));
        CK(cudaGraphAddMemcpyNode1D(&nb, gb, NULL, 0, da, hb, n * sizeof(float), cudaMemcpyHostToDevice));
        CK(cudaGraphInstantiate(&e, ga, 0));
        cudaGraphExecUpdateResultInfo info;
        CK(cudaGraphExecUpdate(e, gb, &info));
        CK(cudaGraphDestroy(gb));
        fill(ha, n, 21.0f);
        fill(hb, n, 22.0f);
        CK(cudaGraphLaunch(e, s));
        CK(cudaStreamSynchronize(s));
        expect(da, n, 22.0f, "after the update");
        CK(cudaGraphExecDestroy(e));
        printf("after an update the other buffer is read\n");
    }

    /* the executable graph's node set to another host buffer: that one is read at each
     * launch (an executable graph's node keeps its memory types, as the driver requires) */
    CK(cudaGraphInstantiate(&e, ga, 0));
    CK(cudaGraphExecMemcpyNodeSetParams1D(e, na, da, hb, n * sizeof(float), cudaMemcpyHostToDevice));
    for (int round = 0; round < 2; round++) {
        fill(ha, n, 50.0f);
        fill(hb, n, 51.0f + round);
        CK(cudaGraphLaunch(e, s));
        CK(cudaStreamSynchronize(s));
        expect(da, n, 51.0f + round, "after the exec's node was set to another host buffer");
    }
    printf("set to another host buffer: it is read at each launch\n");

    /* the graph itself still reads ha */
    CK(cudaGraphExecDestroy(e));
    CK(cudaGraphInstantiate(&e, ga, 0));
    fill(ha, n, 32.0f);
    CK(cudaGraphLaunch(e, s));
    CK(cudaStreamSynchronize(s));
    expect(da, n, 32.0f, "the graph instantiated again");
    CK(cudaGraphExecDestroy(e));
    printf("the graph instantiated again reads its own source\n");

    /* the graph's node set to another host buffer, then instantiated */
    CK(cudaGraphMemcpyNodeSetParams1D(na, da, hb, n * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaGraphInstantiate(&e, ga, 0));
    fill(ha, n, 61.0f);
    fill(hb, n, 62.0f);
    CK(cudaGraphLaunch(e, s));
    CK(cudaStreamSynchronize(s));
    expect(da, n, 62.0f, "the graph's node set to another host buffer");
    CK(cudaGraphExecDestroy(e));
    printf("the graph's node set to another host buffer reads that one\n");

    /* the graph's node set to a device source: the host buffers no longer count */
    fill(hb, n, 31.0f);
    CK(cudaMemcpy(dsrc, hb, n * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaGraphMemcpyNodeSetParams1D(na, da, dsrc, n * sizeof(float), cudaMemcpyDeviceToDevice));
    CK(cudaGraphInstantiate(&e, ga, 0));
    fill(ha, n, 32.0f);
    fill(hb, n, 33.0f);
    CK(cudaGraphLaunch(e, s));
    CK(cudaStreamSynchronize(s));
    expect(da, n, 31.0f, "after the node was set to a device source");
    CK(cudaGraphExecDestroy(e));
    CK(cudaGraphDestroy(ga));
    printf("set to a device source: the host buffers no longer count\n");

    /* a copy from pageable memory captured from a stream (graphMemoryNodes' way) */
    cudaStream_t cs;
    cudaGraph_t cg;
    CK(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
    CK(cudaStreamBeginCapture(cs, cudaStreamCaptureModeGlobal));
    CK(cudaMemsetAsync(da, 0, n * sizeof(float), cs));
    CK(cudaMemcpyAsync(da, ha, n * sizeof(float), cudaMemcpyHostToDevice, cs));
    CK(cudaStreamEndCapture(cs, &cg));
    CK(cudaGraphInstantiate(&e, cg, 0));
    for (int round = 0; round < 2; round++) {
        fill(ha, n, 41.0f + round);
        CK(cudaGraphLaunch(e, cs));
        CK(cudaStreamSynchronize(cs));
        expect(da, n, 41.0f + round, round ? "captured copy, second launch" : "captured copy, first launch");
    }
    CK(cudaGraphExecDestroy(e));
    CK(cudaGraphDestroy(cg));
    printf("a captured copy from pageable memory reads it at each launch\n");

    /* copies into pageable memory captured from a stream (simpleCudaGraphs'
     * result, graphMemoryNodes' output): written at each launch */
    if (!host_destinations) {
        CK(cudaStreamDestroy(cs));
        goto done_captures;
    }
    double one, *done;
    CK(cudaMalloc(&done, sizeof(double)));
    CK(cudaStreamBeginCapture(cs, cudaStreamCaptureModeGlobal));
    CK(cudaMemcpyAsync(da, ha, n * sizeof(float), cudaMemcpyHostToDevice, cs));
    CK(cudaMemcpyAsync(hb, da, n * sizeof(float), cudaMemcpyDeviceToHost, cs));
    CK(cudaMemcpyAsync(&one, done, sizeof(double), cudaMemcpyDefault, cs));
    CK(cudaStreamEndCapture(cs, &cg));
    CK(cudaGraphInstantiate(&e, cg, 0));
    for (int round = 0; round < 2; round++) {
        double want = 0.5 + round;
        CK(cudaMemcpy(done, &want, sizeof(double), cudaMemcpyHostToDevice));
        fill(ha, n, 51.0f + round);
        fill(hb, n, -1.0f);
        one = -1.0;
        CK(cudaGraphLaunch(e, cs));
        CK(cudaStreamSynchronize(cs));
        for (size_t i = 0; i < n; i++)
            if (hb[i] != ha[i]) {
                fprintf(stderr, "captured copy into pageable memory, launch %d: hb[%zu] = %g\n", round, i, hb[i]);
                return 1;
            }
        if (one != want) {
            fprintf(stderr, "captured copy into a stack variable, launch %d: %g, not %g\n", round, one, want);
            return 1;
        }
    }
    CK(cudaGraphExecDestroy(e));
    CK(cudaGraphDestroy(cg));
    CK(cudaFree(done));
    CK(cudaStreamDestroy(cs));
    printf("captured copies into pageable memory write it at each launch\n");
done_captures:

    CK(cudaFree(dbig));
    CK(cudaFree(da));
    CK(cudaFree(dsrc));
    CK(cudaStreamDestroy(s));
    free(hbig);
    free(ha);
    free(hb);
    PASS();
}
