/* link_host_calls: host functions on the streams of any gpuwire server of
 * several (GPUWIRE_SERVER=a,b; tests/e2e/test_multi_server.py runs it with
 * server a's devices as ordinals 0 and 1 and server b's as 2). Driver API.
 *   link_host_calls              poll and graph on device 0 (every program's run)
 *   link_host_calls poll DEV     five rounds, each a kernel and a host function
 *                                (odd rounds a stream callback) on DEV's
 *                                stream; the program polls a flag the function
 *                                sets, with no CUDA call meanwhile, and prints
 *                                POLL dev=DEV round=R ms=<launch to flag>
 *   link_host_calls graph DEV    a graph kernel -> host node -> kernel, launched
 *                                on DEV: once waited for by polling (GRAPHPOLL
 *                                ms=...), then with synchronizes, then three
 *                                launches before one synchronize; the node runs
 *                                once per launch, between its two kernels'
 *                                launches (their result checked), and its
 *                                parameters read back
 *   link_host_calls two DEV DEV  a thread per device at once, each with kernels
 *                                and host functions in order on its stream,
 *                                some synchronizes between, one wait by polling
 * "PASS link_host_calls" last and exit 0, or "FAIL link_host_calls: why" and exit 1. */
#define _GNU_SOURCE
#define PROG "link_host_calls"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "driver_api_fatbin.h"
#include "driver_check.h"

#define N_FLOATS 4096
#define POLL_LIMIT_MS 20000.0 /* a function that never comes: fail, do not hang */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void nap_ms(long ms)
{
    struct timespec t = {0, ms * 1000000L};
    nanosleep(&t, NULL);
}

/* What one device's work needs: its context current on the calling thread,
 * a module with da_scale, a stream and a buffer of 1.0f, 2.0f, ... */
typedef struct on_device {
    int dev;
    CUcontext ctx;
    CUmodule mod;
    CUfunction scale;
    CUstream s;
    CUdeviceptr buf;
} on_device;

static void open_device(on_device *o, int dev)
{
    CUdevice d;
    o->dev = dev;
    CK(cuDeviceGet(&d, dev));
    CK(cuDevicePrimaryCtxRetain(&o->ctx, d));
    CK(cuCtxSetCurrent(o->ctx));
    CK(cuModuleLoadData(&o->mod, da_fatbin));
    CK(cuModuleGetFunction(&o->scale, o->mod, "da_scale"));
    CK(cuStreamCreate(&o->s, CU_STREAM_NON_BLOCKING));
    CK(cuMemAlloc(&o->buf, N_FLOATS * sizeof(float)));
    float host[N_FLOATS];
    for (int i = 0; i < N_FLOATS; i++)
        host[i] = (float)(i + 1);
    CK(cuMemcpyHtoD(o->buf, host, sizeof host));
}

static void scale_on(on_device *o, float factor)
{
    int n = N_FLOATS;
    void *args[] = {&o->buf, &factor, &n};
    CK(cuLaunchKernel(o->scale, N_FLOATS / 256, 1, 1, 256, 1, 1, 0, o->s, args, NULL));
}

/* The buffer's element 7 must be 8 * product: every kernel before ran. */
static void expect_scaled(on_device *o, double product, const char *what)
{
    float back[N_FLOATS];
    CK(cuStreamSynchronize(o->s));
    CK(cuMemcpyDtoH(back, o->buf, sizeof back));
    if (back[7] != (float)(8.0 * product))
        FAIL("%s on device %d: element 7 is %g, expected %g", what, o->dev, back[7], 8.0 * product);
}

/* Waits for *flag to reach want without any CUDA call: how long it took (ms). */
static double poll_for(atomic_int *flag, int want, const char *what)
{
    double t0 = now_ms();
    while (atomic_load(flag) < want) {
        if (now_ms() - t0 > POLL_LIMIT_MS)
            FAIL("%s: the host function did not run while the program polled (%d of %d)", what, atomic_load(flag),
                 want);
        nap_ms(1);
    }
    return now_ms() - t0;
}

/* ---- poll ---- */
static atomic_int polled;
static CUresult callback_status = (CUresult)-1;

static void CUDA_CB raise_flag(void *arg) { atomic_store(&polled, (int)(intptr_t)arg); }

static void CUDA_CB raise_flag_cb(CUstream s, CUresult status, void *arg)
{
    (void)s;
    callback_status = status;
    atomic_store(&polled, (int)(intptr_t)arg);
}

static void poll_mode(int dev)
{
    on_device o;
    open_device(&o, dev);
    CK(cuStreamSynchronize(o.s));
    for (int r = 1; r <= 5; r++) {
        scale_on(&o, 2.0f);
        if (r % 2)
            CK(cuLaunchHostFunc(o.s, raise_flag, (void *)(intptr_t)r));
        else
            CK(cuStreamAddCallback(o.s, raise_flag_cb, (void *)(intptr_t)r, 0));
        printf("POLL dev=%d round=%d ms=%.1f\n", dev, r, poll_for(&polled, r, "poll"));
    }
    if (callback_status != CUDA_SUCCESS)
        FAIL("the stream callback was told %d", (int)callback_status);
    expect_scaled(&o, 32.0, "five kernels");
}

/* ---- graph ---- */
static atomic_int node_runs;
static int node_order_ok = 1;

static void CUDA_CB host_node(void *arg)
{
    if (arg != (void *)&node_runs)
        node_order_ok = 0;
    atomic_fetch_add(&node_runs, 1);
}

static void graph_mode(int dev)
{
    on_device o;
    open_device(&o, dev);
    CUgraph g;
    CK(cuGraphCreate(&g, 0));
    int n = N_FLOATS;
    float twice = 2.0f, thrice = 3.0f;
    void *args1[] = {&o.buf, &twice, &n}, *args2[] = {&o.buf, &thrice, &n};
    CUDA_KERNEL_NODE_PARAMS kp;
    memset(&kp, 0, sizeof kp);
    kp.func = o.scale;
    kp.gridDimX = N_FLOATS / 256, kp.gridDimY = kp.gridDimZ = 1;
    kp.blockDimX = 256, kp.blockDimY = kp.blockDimZ = 1;
    kp.kernelParams = args1;
    CUgraphNode k1, host, k2;
    CK(cuGraphAddKernelNode(&k1, g, NULL, 0, &kp));
    CUDA_HOST_NODE_PARAMS hp = {host_node, &node_runs};
    CK(cuGraphAddHostNode(&host, g, &k1, 1, &hp));
    kp.kernelParams = args2;
    CK(cuGraphAddKernelNode(&k2, g, &host, 1, &kp));
    CUDA_HOST_NODE_PARAMS back;
    memset(&back, 0, sizeof back);
    CK(cuGraphHostNodeGetParams(host, &back));
    if (back.fn != host_node || back.userData != &node_runs)
        FAIL("the host node's parameters read back as %p %p", (void *)back.fn, back.userData);
    CUgraphExec e;
    CK(cuGraphInstantiate(&e, g, 0));

    CK(cuGraphLaunch(e, o.s)); /* waited for by polling: nobody reads the stream meanwhile */
    printf("GRAPHPOLL dev=%d ms=%.1f\n", dev, poll_for(&node_runs, 1, "graph"));
    expect_scaled(&o, 6.0, "one launch");
    for (int r = 2; r <= 3; r++) {
        CK(cuGraphLaunch(e, o.s));
        CK(cuStreamSynchronize(o.s));
        if (atomic_load(&node_runs) != r)
            FAIL("after launch %d the host node ran %d times", r, atomic_load(&node_runs));
    }
    for (int r = 0; r < 3; r++)
        CK(cuGraphLaunch(e, o.s));
    expect_scaled(&o, 6.0 * 6 * 6 * 6 * 6 * 6, "six launches");
    if (atomic_load(&node_runs) != 6 || !node_order_ok)
        FAIL("the host node ran %d times of 6 (its argument right: %d)", atomic_load(&node_runs), node_order_ok);
    CK(cuGraphExecDestroy(e));
    CK(cuGraphDestroy(g));
    printf("GRAPH dev=%d runs=%d\n", dev, atomic_load(&node_runs));
}

/* ---- two: a thread per device ---- */
#define TWO_ROUNDS 40

typedef struct two_work two_work;

typedef struct two_call {
    two_work *w;
    int k;
} two_call;

struct two_work {
    int dev;
    int ran;      /* host functions run, in order (only the callback thread writes it) */
    int order_ok;
    atomic_int last; /* the last one's flag, polled */
    two_call calls[TWO_ROUNDS];
};

static void CUDA_CB in_order(void *arg)
{
    two_call *c = arg;
    if (c->k != c->w->ran)
        c->w->order_ok = 0;
    c->w->ran++;
    if (c->k == TWO_ROUNDS - 1)
        atomic_store(&c->w->last, 1);
}

static void *two_thread(void *p)
{
    two_work *w = p;
    two_call *mine = w->calls;
    on_device o;
    open_device(&o, w->dev);
    for (int k = 0; k < TWO_ROUNDS; k++) {
        mine[k] = (two_call){w, k};
        scale_on(&o, k % 2 ? 0.5f : 2.0f); /* pairs cancel: the buffer ends as it began */
        CK(cuLaunchHostFunc(o.s, in_order, &mine[k]));
        if (k % 10 == 9 && k != TWO_ROUNDS - 1)
            CK(cuStreamSynchronize(o.s));
    }
    poll_for(&w->last, 1, "two threads");
    expect_scaled(&o, 1.0, "kernels between host functions");
    return NULL;
}

static void two_mode(int dev_a, int dev_b)
{
    two_work w[2] = {{.dev = dev_a, .order_ok = 1}, {.dev = dev_b, .order_ok = 1}};
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        if (pthread_create(&th[t], NULL, two_thread, &w[t]))
            FAIL("pthread_create");
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < 2; t++)
        if (w[t].ran != TWO_ROUNDS || !w[t].order_ok)
            FAIL("device %d: %d of %d host functions ran, in order: %d", w[t].dev, w[t].ran, TWO_ROUNDS,
                 w[t].order_ok);
    printf("TWO ok ran=%d,%d\n", w[0].ran, w[1].ran);
}

int main(int argc, char **argv)
{
    if (argc == 2)
        FAIL("usage: link_host_calls [poll|graph DEV | two DEV DEV] (none: poll and graph on device 0)");
    setvbuf(stdout, NULL, _IOLBF, 0);
    CK(cuInit(0));
    if (argc == 1) { /* one server's device 0: what every program run checks */
        poll_mode(0);
        graph_mode(0);
    } else if (!strcmp(argv[1], "poll"))
        poll_mode(atoi(argv[2]));
    else if (!strcmp(argv[1], "graph"))
        graph_mode(atoi(argv[2]));
    else if (!strcmp(argv[1], "two") && argc >= 4)
        two_mode(atoi(argv[2]), atoi(argv[3]));
    else
        FAIL("unknown mode %s", argv[1]);
    printf("PASS %s\n", PROG);
    return 0;
}
