/* multi_server: a driver-API program that uses the GPUs of two gpuwire
 * servers at once (GPUWIRE_SERVER=a,b; tests/e2e/test_multi_server.py runs it
 * with server a's devices as ordinals 0 and 1 and server b's as 2).
 *   multi_server list   one line a device, as multi_device list prints them, and
 *                       BYBUS <ordinal> <what cuDeviceGetByPCIBusId gives for its bus id>
 *   multi_server work   on every device: its primary context, memory, a kernel
 *                       with its result checked; a peer copy inside server a;
 *                       copies between a and b (cuMemcpyPeer, cuMemcpyPeerAsync,
 *                       unified cuMemcpy, cuMemcpyDtoD) of sizes around the 8 MiB pieces,
 *                       every byte checked; a call mixing handles of both
 *                       servers refused (prints MIXED <result>)
 *   multi_server threads  two threads at once, on devices 0 (a) and 2 (b): kernels,
 *                       and their results copied to the other server, checked
 *   multi_server hold   memory on devices 0 and 2, "ready", then waits for a
 *                       line on stdin (the test stops server b meanwhile) and
 *                       prints LOST <result of a copy on device 2> and
 *                       STILL <result of one on device 0>
 * "PASS multi_server" last and exit 0, or "FAIL multi_server: why" and exit 1. */
#define PROG "multi_server"
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver_api_fatbin.h"
#include "driver_check.h"

#define N_FLOATS (1 << 16)
#define MIB ((size_t)1 << 20)
#define BIG (21 * MIB) /* every buffer: room for the largest copy below */

static void list(void)
{
    int n = 0;
    CK(cuDeviceGetCount(&n));
    for (int i = 0; i < n; i++) {
        CUdevice d;
        CK(cuDeviceGet(&d, i));
        char name[256], bus[64];
        CUuuid u;
        size_t mem;
        CK(cuDeviceGetName(name, sizeof name, d));
        CK(cuDeviceGetPCIBusId(bus, sizeof bus, d));
        CK(cuDeviceGetUuid_v2(&u, d));
        CK(cuDeviceTotalMem(&mem, d));
        const unsigned char *b = (const unsigned char *)u.bytes;
        printf("DEV %d uuid=GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x bus=%s mem=%zu "
               "name=%s\n",
               i, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
               bus, mem, name);
        CUdevice by = -1;
        CK(cuDeviceGetByPCIBusId(&by, bus));
        printf("BYBUS %d %d\n", i, (int)by);
    }
    printf("COUNT %d\n", n);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7u + seed + (i >> 13));
}

static void check_bytes(const uint8_t *got, size_t n, unsigned seed, const char *what, size_t size)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != (uint8_t)(i * 7u + seed + (i >> 13)))
            FAIL("%s of %zu bytes: byte %zu is %u, expected %u", what, size, i, got[i],
                 (uint8_t)(i * 7u + seed + (i >> 13)));
}

/* A kernel on device d (its context current): da_scale by 3 of 0, 1, 2, ... */
static void kernel_on(int d, CUdeviceptr buf)
{
    static float host[N_FLOATS], back[N_FLOATS];
    for (int i = 0; i < N_FLOATS; i++)
        host[i] = (float)i;
    CUmodule mod;
    CUfunction scale;
    CK(cuModuleLoadData(&mod, da_fatbin));
    CK(cuModuleGetFunction(&scale, mod, "da_scale"));
    CUstream s;
    CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CK(cuMemcpyHtoDAsync(buf, host, sizeof host, s));
    float factor = 3.0f;
    int count = N_FLOATS;
    void *args[] = {&buf, &factor, &count};
    CK(cuLaunchKernel(scale, N_FLOATS / 256, 1, 1, 256, 1, 1, 0, s, args, NULL));
    CK(cuStreamSynchronize(s));
    CK(cuMemcpyDtoH(back, buf, sizeof back));
    for (int i = 0; i < N_FLOATS; i++)
        if (back[i] != (float)i * 3.0f)
            FAIL("kernel on device %d: element %d is %g, expected %g", d, i, back[i], (float)i * 3.0f);
    printf("KERNEL dev=%d ok\n", d);
    CK(cuStreamDestroy(s));
    CK(cuModuleUnload(mod));
}

static void work(void)
{
    int n = 0;
    CK(cuDeviceGetCount(&n));
    if (n < 3)
        FAIL("needs three devices (two on server a, one on b), sees %d", n);
    CUcontext ctx[3];
    CUdeviceptr buf[3];
    for (int d = 0; d < 3; d++) {
        CUdevice dev;
        CK(cuDeviceGet(&dev, d));
        CK(cuDevicePrimaryCtxRetain(&ctx[d], dev));
        CK(cuCtxSetCurrent(ctx[d]));
        CK(cuMemAlloc(&buf[d], BIG));
        kernel_on(d, buf[d]);
    }
    uint8_t *host = malloc(BIG), *back = malloc(BIG);
    if (!host || !back)
        FAIL("no host memory");

    /* inside server a: device 0 to device 1, on the server */
    CK(cuCtxSetCurrent(ctx[0]));
    fill(host, MIB, 1);
    CK(cuMemcpyHtoD(buf[0], host, MIB));
    CK(cuMemcpyPeer(buf[1], ctx[1], buf[0], ctx[0], MIB));
    CK(cuCtxSetCurrent(ctx[1]));
    memset(back, 0, MIB);
    CK(cuMemcpyDtoH(back, buf[1], MIB));
    check_bytes(back, MIB, 1, "cuMemcpyPeer device 0 to device 1 (server a)", MIB);

    /* between the servers, both ways, sizes around the 8 MiB pieces */
    static const size_t sizes[] = {1, 4097, 8 * MIB - 1, 8 * MIB, 8 * MIB + 1, 20 * MIB + 12345};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t sz = sizes[i];
        unsigned seed = (unsigned)(i * 11 + 3);
        for (int way = 0; way < 2; way++) {
            int from = way ? 2 : 0, to = way ? 0 : 2;
            CK(cuCtxSetCurrent(ctx[from]));
            fill(host, sz, seed + (unsigned)way);
            CK(cuMemcpyHtoD(buf[from], host, sz));
            CK(cuMemcpyPeer(buf[to], ctx[to], buf[from], ctx[from], sz));
            CK(cuCtxSetCurrent(ctx[to]));
            memset(back, 0, sz);
            CK(cuMemcpyDtoH(back, buf[to], sz));
            check_bytes(back, sz, seed + (unsigned)way, way ? "cuMemcpyPeer b to a" : "cuMemcpyPeer a to b", sz);
        }
        printf("CROSS sync size=%zu ok\n", sz);
    }

    /* asynchronous, on a stream of server a, after a kernel-free fill on that stream */
    CK(cuCtxSetCurrent(ctx[0]));
    CUstream s0;
    CK(cuStreamCreate(&s0, CU_STREAM_NON_BLOCKING));
    size_t sz = 17 * MIB + 3;
    fill(host, sz, 77);
    CK(cuMemcpyHtoDAsync(buf[0], host, sz, s0));
    CK(cuMemcpyPeerAsync(buf[2], ctx[2], buf[0], ctx[0], sz, s0));
    CK(cuStreamSynchronize(s0));
    CK(cuCtxSetCurrent(ctx[2]));
    memset(back, 0, sz);
    CK(cuMemcpyDtoH(back, buf[2], sz));
    check_bytes(back, sz, 77, "cuMemcpyPeerAsync a to b", sz);
    printf("CROSS async size=%zu ok\n", sz);

    /* unified: the addresses say which servers */
    fill(host, 9 * MIB, 91);
    CK(cuMemcpyHtoD(buf[2], host, 9 * MIB));
    CK(cuCtxSetCurrent(ctx[1]));
    CK(cuMemcpy(buf[1], buf[2], 9 * MIB));
    memset(back, 0, 9 * MIB);
    CK(cuMemcpyDtoH(back, buf[1], 9 * MIB));
    check_bytes(back, 9 * MIB, 91, "cuMemcpy (unified) b to a", 9 * MIB);
    printf("CROSS unified ok\n");
    fill(host, 3 * MIB + 5, 123);
    CK(cuMemcpyHtoD(buf[0], host, 3 * MIB + 5));
    CK(cuMemcpyDtoD(buf[2], buf[0], 3 * MIB + 5)); /* a to b, the current context b's */
    memset(back, 0, 3 * MIB + 5);
    CK(cuMemcpyDtoH(back, buf[2], 3 * MIB + 5));
    check_bytes(back, 3 * MIB + 5, 123, "cuMemcpyDtoD a to b", 3 * MIB + 5);
    printf("CROSS dtod ok\n");

    /* a stream of server a waits for an event of server b, recorded after a kernel there */
    CK(cuCtxSetCurrent(ctx[2]));
    kernel_on(2, buf[2]);
    CUstream s2;
    CK(cuStreamCreate(&s2, CU_STREAM_NON_BLOCKING));
    CUevent e2;
    CK(cuEventCreate(&e2, CU_EVENT_DISABLE_TIMING));
    CK(cuMemsetD8Async(buf[2], 5, 16 * MIB, s2));
    CK(cuEventRecord(e2, s2));
    CK(cuCtxSetCurrent(ctx[0]));
    CK(cuStreamWaitEvent(s0, e2, 0));
    CUresult q = cuEventQuery(e2);
    printf("WAIT across query=%d\n", (int)q);
    if (q != CUDA_SUCCESS)
        FAIL("a stream of server a waits for server b's event, yet the event is not done (%d)", (int)q);

    /* no peer access between servers; a call naming both servers' objects is refused */
    int can = -1;
    CUdevice dev0, dev2;
    CK(cuDeviceGet(&dev0, 0));
    CK(cuDeviceGet(&dev2, 2));
    CK(cuDeviceCanAccessPeer(&can, dev0, dev2));
    printf("PEER a-b can=%d enable=%d\n", can, (int)cuCtxEnablePeerAccess(ctx[2], 0));
    printf("MIXED %d\n", (int)cuMemcpyHtoDAsync(buf[2], host, 4096, s0)); /* b's memory, a's stream */
    CK(cuCtxSetCurrent(ctx[2]));
    CK(cuStreamDestroy(s2));
    CK(cuEventDestroy(e2));

    CK(cuCtxSetCurrent(ctx[0]));
    CK(cuStreamDestroy(s0));
    for (int d = 0; d < 3; d++) {
        CK(cuCtxSetCurrent(ctx[d]));
        CK(cuMemFree(buf[d]));
    }
    free(host);
    free(back);
}

/* Two threads at once, one on a device of each server, each running
 * kernels and copying its results to the other server. */
typedef struct worker_arg {
    int dev, other;
    CUcontext ctx, other_ctx;
    CUdeviceptr mine, theirs; /* theirs: on the other server, this thread's only */
    const char *failed;
    CUresult rc;
} worker_arg;

static void *thread_work(void *p)
{
    worker_arg *w = p;
    static __thread float host[N_FLOATS], back[N_FLOATS];
    if (cuCtxSetCurrent(w->ctx) != CUDA_SUCCESS)
        return w->failed = "cuCtxSetCurrent", NULL;
    CUmodule mod;
    CUfunction scale;
    if (cuModuleLoadData(&mod, da_fatbin) || cuModuleGetFunction(&scale, mod, "da_scale"))
        return w->failed = "module", NULL;
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < N_FLOATS; i++)
            host[i] = (float)(i + round);
        float factor = 3.0f;
        int count = N_FLOATS;
        void *args[] = {&w->mine, &factor, &count};
        if ((w->rc = cuMemcpyHtoD(w->mine, host, sizeof host)))
            return w->failed = "cuMemcpyHtoD", NULL;
        if ((w->rc = cuLaunchKernel(scale, N_FLOATS / 256, 1, 1, 256, 1, 1, 0, NULL, args, NULL)))
            return w->failed = "cuLaunchKernel", NULL;
        if ((w->rc = cuMemcpyPeer(w->theirs, w->other_ctx, w->mine, w->ctx, sizeof host)))
            return w->failed = "cuMemcpyPeer", NULL;
        if ((w->rc = cuMemcpyDtoH(back, w->theirs, sizeof back)))
            return w->failed = "cuMemcpyDtoH", NULL;
        for (int i = 0; i < N_FLOATS; i++)
            if (back[i] != (float)(i + round) * 3.0f)
                return w->failed = "a result", NULL;
    }
    cuModuleUnload(mod);
    return NULL;
}

static void threads(void)
{
    worker_arg w[2] = {{.dev = 0, .other = 2}, {.dev = 2, .other = 0}};
    CUcontext ctx[3];
    for (int d = 0; d < 3; d += 2) {
        CUdevice dev;
        CK(cuDeviceGet(&dev, d));
        CK(cuDevicePrimaryCtxRetain(&ctx[d], dev));
    }
    for (int t = 0; t < 2; t++) {
        w[t].ctx = ctx[w[t].dev];
        w[t].other_ctx = ctx[w[t].other];
        CK(cuCtxSetCurrent(w[t].ctx));
        CK(cuMemAlloc(&w[t].mine, N_FLOATS * sizeof(float)));
    }
    for (int t = 0; t < 2; t++) {
        CK(cuCtxSetCurrent(w[1 - t].ctx));
        CK(cuMemAlloc(&w[t].theirs, N_FLOATS * sizeof(float)));
    }
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        if (pthread_create(&th[t], NULL, thread_work, &w[t]))
            FAIL("pthread_create");
    for (int t = 0; t < 2; t++) {
        pthread_join(th[t], NULL);
        if (w[t].failed)
            FAIL("thread on device %d: %s failed (%d)", w[t].dev, w[t].failed, (int)w[t].rc);
    }
    printf("THREADS ok\n");
}

static void hold(void)
{
    CUcontext c0, c2;
    CUdevice d0, d2;
    CUdeviceptr b0, b2;
    CK(cuDeviceGet(&d0, 0));
    CK(cuDeviceGet(&d2, 2));
    CK(cuDevicePrimaryCtxRetain(&c0, d0));
    CK(cuDevicePrimaryCtxRetain(&c2, d2));
    CK(cuCtxSetCurrent(c2));
    CK(cuMemAlloc(&b2, MIB));
    CK(cuCtxSetCurrent(c0));
    CK(cuMemAlloc(&b0, MIB));
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        FAIL("stdin closed");
    static uint8_t back[4096];
    /* the link's loss may be seen already (its drainer reads the reset): then
     * this fails too, with the same code, as every call routed there does */
    CUresult set = cuCtxSetCurrent(c2);
    CUresult lost = cuMemcpyDtoH(back, b2, sizeof back);
    CUresult again = cuCtxSynchronize(); /* the current context's: still a's if the switch failed */
    printf("SET %d LOST %d %d\n", (int)set, (int)lost, (int)again);
    CK(cuCtxSetCurrent(c0));
    printf("STILL %d\n", (int)cuMemcpyDtoH(back, b0, sizeof back));
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "list";
    CK(cuInit(0));
    if (strcmp(what, "list") == 0)
        list();
    else if (strcmp(what, "work") == 0)
        work();
    else if (strcmp(what, "hold") == 0)
        hold();
    else if (strcmp(what, "threads") == 0)
        threads();
    else
        FAIL("unknown mode %s (list, work, hold)", what);
    printf("PASS %s\n", PROG);
    return 0;
}
