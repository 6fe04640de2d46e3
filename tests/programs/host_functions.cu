/* Host functions in stream order through gpuwire (issue 14), one mode per run:
 *   graph       a graph kernel -> copy down -> host node -> kernel -> copy down,
 *               launched 3 times: the host node sees the first kernel's result
 *               and not yet the second's, and its write to host memory lands
 *               between the two copies; its parameters read back, changed on
 *               the exec, and the changed function runs
 *   stream N    N host functions (and one stream callback) between posted
 *               kernels, one synchronize: each runs once, in order, after the
 *               copy before it landed
 *   wait        a host function wakes the main thread, which waits on a
 *               condition (not on CUDA): no synchronize reads the stream
 *   mapped      with mapped memory in the process, a host function reads what
 *               a kernel wrote there (the synchronous way: docs/host-functions.md)
 *   die         a host function that never returns while more are queued;
 *               the process ends from inside it (the session dies with
 *               host functions pending)
 * The kernels reuse the names (and so the CPU stand-in's host versions) of
 * ep_touch and se_consume from the other test programs. */
#define PROG "host_functions"
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

__global__ void ep_touch(int *p, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        p[i] = i + 1;
}

__global__ void se_consume(const int *in, int *out, int n, int add)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = in[i] + add;
}

#define N 64
#define ROUNDS 3

/* ---- graph ---- */
static int first_h[N], second_h[N]; /* pageable: each memcpy node's destination (delivered) */
static int seen_first[ROUNDS], seen_second[ROUNDS], host_runs, other_runs;

static void CUDART_CB host_node(void *arg)
{
    int round = host_runs++;
    if (arg != (void *)first_h || round >= ROUNDS)
        return;
    seen_first[round] = first_h[5];
    seen_second[round] = second_h[5];
    first_h[5] = -1; /* the host's write: nothing copies over it before the next launch's first copy */
}

static void CUDART_CB other_node(void *arg)
{
    (void)arg;
    other_runs++;
}

static int graph(void)
{
    int *a, *b, *c;
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    CK(cudaMalloc(&a, N * sizeof(int)));
    CK(cudaMalloc(&b, N * sizeof(int)));
    CK(cudaMalloc(&c, N * sizeof(int)));
    ep_touch<<<1, N, 0, s>>>(a, N); /* a[i] = i + 1 */
    CK(cudaStreamSynchronize(s));
    memset(second_h, 0, sizeof second_h);

    int n = N, add1 = 10, add2 = 100;
    cudaGraph_t g;
    CK(cudaGraphCreate(&g, 0));
    cudaGraphNode_t k1, down1, host, k2, down2;
    void *args1[] = {&a, &b, &n, &add1}; /* b = a + 10, then a = b (in place, round after round) */
    cudaKernelNodeParams kp = {0};
    kp.func = (void *)se_consume;
    kp.gridDim = dim3(1);
    kp.blockDim = dim3(N);
    kp.kernelParams = args1;
    CK(cudaGraphAddKernelNode(&k1, g, NULL, 0, &kp));
    CK(cudaGraphAddMemcpyNode1D(&down1, g, &k1, 1, first_h, b, N * sizeof(int), cudaMemcpyDeviceToHost));
    cudaHostNodeParams hp = {host_node, first_h};
    CK(cudaGraphAddHostNode(&host, g, &down1, 1, &hp));
    void *args2[] = {&b, &c, &n, &add2};
    kp.kernelParams = args2;
    CK(cudaGraphAddKernelNode(&k2, g, &host, 1, &kp));
    CK(cudaGraphAddMemcpyNode1D(&down2, g, &k2, 1, second_h, c, N * sizeof(int), cudaMemcpyDeviceToHost));
    cudaGraphNode_t k3;
    int zero = 0;
    void *args3[] = {&b, &a, &n, &zero};
    kp.kernelParams = args3;
    CK(cudaGraphAddKernelNode(&k3, g, &down2, 1, &kp)); /* a = b for the next round */

    cudaHostNodeParams back = {0};
    CK(cudaGraphHostNodeGetParams(host, &back));
    if (back.fn != host_node || back.userData != first_h)
        FAIL("host node parameters read back as %p %p", (void *)back.fn, back.userData);

    cudaGraphExec_t e;
    CK(cudaGraphInstantiate(&e, g, 0));
    for (int r = 0; r < ROUNDS; r++) {
        CK(cudaGraphLaunch(e, s));
        CK(cudaStreamSynchronize(s));
        int want1 = 5 + 1 + 10 * (r + 1); /* a[5] grew by 10 per round */
        if (host_runs != r + 1)
            FAIL("round %d: the host node ran %d times", r, host_runs);
        if (seen_first[r] != want1)
            FAIL("round %d: the host node saw the first copy as %d, not %d (it ran before the copy landed)", r,
                 seen_first[r], want1);
        int before = r ? want1 - 10 + 100 : 0;
        if (seen_second[r] != before)
            FAIL("round %d: the host node saw the second copy as %d, not %d (the kernel after it ran first)", r,
                 seen_second[r], before);
        if (first_h[5] != -1 || second_h[5] != want1 + 100)
            FAIL("round %d: host memory after the launch: %d %d", r, first_h[5], second_h[5]);
    }
    /* another function on the exec only: the graph keeps its own */
    cudaHostNodeParams other = {other_node, NULL};
    CK(cudaGraphExecHostNodeSetParams(e, host, &other));
    CK(cudaGraphLaunch(e, s));
    CK(cudaStreamSynchronize(s));
    if (other_runs != 1 || host_runs != ROUNDS)
        FAIL("after the exec's change: other ran %d times, the first %d", other_runs, host_runs);
    CK(cudaGraphHostNodeSetParams(host, &other));
    CK(cudaGraphHostNodeGetParams(host, &back));
    if (back.fn != other_node)
        FAIL("the graph's host node did not take its new function");
    CK(cudaGraphExecDestroy(e));
    CK(cudaGraphDestroy(g));
    printf("host_functions: graph host node in order, %d launches\n", ROUNDS + 1);
    return 0;
}

/* ---- stream ---- */
static int *pinned, ran, order_ok = 1;

static cudaError_t nested = cudaSuccess;
static void CUDART_CB nothing(void *arg) { (void)arg; }

static void CUDART_CB in_order(void *arg)
{
    int k = (int)(intptr_t)arg;
    if (k == 0) /* CUDA forbids CUDA calls here: refused (no wait for this very stream), and the stream goes on */
        nested = cudaLaunchHostFunc(0, nothing, NULL);
    if (k != ran)
        order_ok = 0;
    /* the copy queued just before this function must have landed: the kernel wrote k into every element */
    if (pinned[7] != 7 + 1 + k)
        order_ok = 0;
    ran++;
}

static cudaError_t callback_status = cudaErrorUnknown;
static void CUDART_CB stream_cb(cudaStream_t s, cudaError_t status, void *arg)
{
    (void)s;
    if (arg == (void *)&callback_status)
        callback_status = status;
}

static int stream(int count)
{
    int *base, *d;
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    CK(cudaMalloc(&base, N * sizeof(int)));
    CK(cudaMalloc(&d, N * sizeof(int)));
    CK(cudaMallocHost(&pinned, N * sizeof(int)));
    ep_touch<<<1, N, 0, s>>>(base, N);
    for (int k = 0; k < count; k++) {
        se_consume<<<1, N, 0, s>>>(base, d, N, k);
        CK(cudaMemcpyAsync(pinned, d, N * sizeof(int), cudaMemcpyDeviceToHost, s));
        CK(cudaLaunchHostFunc(s, in_order, (void *)(intptr_t)k));
    }
    CK(cudaStreamAddCallback(s, stream_cb, &callback_status, 0));
    CK(cudaStreamSynchronize(s));
    if (ran != count || !order_ok)
        FAIL("%d of %d host functions ran, in order: %d", ran, count, order_ok);
    if (callback_status != cudaSuccess)
        FAIL("the stream callback was told %d", (int)callback_status);
    /* cudart's own set-up for the callback thread fails first (cudaErrorDevicesUnavailable), or the call itself */
    if (count && nested == cudaSuccess)
        FAIL("a host function launched inside a host function was accepted");
    printf("host_functions: %d host functions in stream order\n", count);
    return 0;
}

/* ---- wait: nothing but the callback thread reads the stream ---- */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int woken;

static void CUDART_CB wake(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    woken = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static int wait_mode(void)
{
    int *d;
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    CK(cudaMalloc(&d, N * sizeof(int)));
    CK(cudaStreamSynchronize(s));
    ep_touch<<<1, N, 0, s>>>(d, N);
    CK(cudaLaunchHostFunc(s, wake, NULL));
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&mu);
    while (!woken && pthread_cond_timedwait(&cv, &mu, &until) == 0)
        ;
    pthread_mutex_unlock(&mu);
    if (!woken)
        FAIL("the host function did not run while the program waited on its own condition");
    CK(cudaStreamSynchronize(s));
    printf("host_functions: woken by a host function\n");
    return 0;
}

/* ---- mapped ---- */
static int *mapped_h, mapped_seen = -1;

static void CUDART_CB read_mapped(void *arg)
{
    (void)arg;
    mapped_seen = mapped_h[3];
}

static int mapped(void)
{
    int *d;
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    CK(cudaHostAlloc((void **)&mapped_h, 4096, cudaHostAllocMapped));
    mapped_h[3] = 0;
    CK(cudaHostGetDevicePointer((void **)&d, mapped_h, 0));
    CK(cudaStreamSynchronize(s));
    ep_touch<<<1, N, 0, s>>>(d, N);
    CK(cudaLaunchHostFunc(s, read_mapped, NULL));
    CK(cudaStreamSynchronize(s));
    if (mapped_seen != 4)
        FAIL("the host function read %d from mapped memory the kernel wrote 4 into", mapped_seen);
    printf("host_functions: a host function read mapped memory the kernel wrote\n");
    return 0;
}

/* ---- die ---- */
static void CUDART_CB never_returns(void *arg)
{
    (void)arg;
    printf("host_functions: inside a host function, ending the process\n");
    fflush(stdout);
    _exit(0); /* the worker's stream still waits for this function, and more are queued behind it */
}

static int die(void)
{
    int *d;
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    CK(cudaMalloc(&d, N * sizeof(int)));
    ep_touch<<<1, N, 0, s>>>(d, N);
    CK(cudaLaunchHostFunc(s, never_returns, NULL));
    for (int k = 0; k < 5; k++)
        CK(cudaLaunchHostFunc(s, in_order, (void *)(intptr_t)k));
    CK(cudaStreamSynchronize(s));
    FAIL("the synchronize returned");
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "graph";
    int rc;
    if (!strcmp(mode, "graph"))
        rc = graph();
    else if (!strcmp(mode, "stream"))
        rc = stream(argc > 2 ? atoi(argv[2]) : 10);
    else if (!strcmp(mode, "wait"))
        rc = wait_mode();
    else if (!strcmp(mode, "mapped"))
        rc = mapped();
    else if (!strcmp(mode, "die"))
        rc = die();
    else
        FAIL("unknown mode %s", mode);
    if (rc)
        return rc;
    PASS();
}
