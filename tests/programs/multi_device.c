/* multi_device: a driver-API program that uses several GPUs, as a multi-GPU
 * application does (tests/e2e/test_multi_device.py runs it through gpuwire
 * against the stand-in with several devices, and straight on the stand-in to
 * compare; tests/gpu/cases/multi_device.sh runs it on a two-GPU machine).
 *   multi_device list    one line a device, in ordinal order:
 *                        DEV <ordinal> uuid=GPU-... bus=<pci bus id> mem=<bytes> clock=<kHz> name=<name>
 *   multi_device peers   devices 0 and 1 (at least two needed): primary contexts,
 *                        memory and pointer attributes per device, peer access and
 *                        its error codes, peer copies (sync, async, unified) with the
 *                        bytes checked, a kernel on device 1 that a stream of device 0
 *                        waits for through an event; then prints
 *                        MEM dev=<d> total=<bytes> used_by_alloc=<bytes> and
 *                        P2P can01=<0|1> rank=<n> atomics=<n>
 * "PASS multi_device" last and exit 0, or "FAIL multi_device: why" and exit 1. */
#define PROG "multi_device"
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "driver_api_fatbin.h"
#include "driver_check.h"

/* An exact result expected from a call that must fail (or succeed) in a given way. */
#define EXPECT(call, want)                                                                          \
    do {                                                                                            \
        CUresult ex_r_ = (call);                                                                    \
        if (ex_r_ != (want))                                                                        \
            FAIL("%s:%d: %s -> %d, expected %s (%d)", __FILE__, __LINE__, #call, (int)ex_r_, #want, \
                 (int)(want));                                                                      \
    } while (0)

#define N_FLOATS (1 << 16)

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
        int clock;
        CK(cuDeviceGetName(name, sizeof name, d));
        CK(cuDeviceGetPCIBusId(bus, sizeof bus, d));
        CK(cuDeviceGetUuid_v2(&u, d));
        CK(cuDeviceTotalMem(&mem, d));
        CK(cuDeviceGetAttribute(&clock, CU_DEVICE_ATTRIBUTE_CLOCK_RATE, d));
        const unsigned char *b = (const unsigned char *)u.bytes;
        printf("DEV %d uuid=GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x bus=%s mem=%zu "
               "clock=%d name=%s\n",
               i, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
               bus, mem, clock, name);
    }
    CUdevice d;
    EXPECT(cuDeviceGet(&d, n), CUDA_ERROR_INVALID_DEVICE);
    printf("COUNT %d\n", n);
}

/* Free memory of the current context's device. */
static size_t free_mem(size_t *total)
{
    size_t f, t;
    CK(cuMemGetInfo(&f, &t));
    if (total)
        *total = t;
    return f;
}

/* got[i] == i * 3 for the first n elements (what da_scale by 3 made of 0, 1, 2, ...). */
static void check_floats(const float *got, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        if (got[i] != (float)i * 3.0f)
            FAIL("%s: element %d is %g, expected %g", what, i, got[i], (float)i * 3.0f);
}

static void peers(void)
{
    int n = 0;
    CK(cuDeviceGetCount(&n));
    if (n < 2)
        FAIL("needs two devices, sees %d", n);
    CUdevice d0, d1;
    CK(cuDeviceGet(&d0, 0));
    CK(cuDeviceGet(&d1, 1));

    int can01 = -1, can10 = -1, can00 = -1, rank = -1, atomics = -1, v;
    CK(cuDeviceCanAccessPeer(&can01, d0, d1));
    CK(cuDeviceCanAccessPeer(&can10, d1, d0));
    CK(cuDeviceCanAccessPeer(&can00, d0, d0));
    if (can00 != 0)
        FAIL("a device is its own peer (%d)", can00);
    EXPECT(cuDeviceCanAccessPeer(&v, d0, n), CUDA_ERROR_INVALID_DEVICE);
    CK(cuDeviceGetP2PAttribute(&rank, CU_DEVICE_P2P_ATTRIBUTE_PERFORMANCE_RANK, d0, d1));
    CK(cuDeviceGetP2PAttribute(&atomics, CU_DEVICE_P2P_ATTRIBUTE_NATIVE_ATOMIC_SUPPORTED, d0, d1));
    CK(cuDeviceGetP2PAttribute(&v, CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED, d0, d1));
    if (v != can01)
        FAIL("P2P ACCESS_SUPPORTED %d but cuDeviceCanAccessPeer %d", v, can01);
    EXPECT(cuDeviceGetP2PAttribute(&v, CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED, d0, d0), CUDA_ERROR_INVALID_DEVICE);
    EXPECT(cuDeviceGetP2PAttribute(&v, CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED, d0, n), CUDA_ERROR_INVALID_DEVICE);
    printf("P2P can01=%d can10=%d rank=%d atomics=%d\n", can01, can10, rank, atomics);

    CUcontext p0, p1;
    CK(cuDevicePrimaryCtxRetain(&p0, d0));
    CK(cuDevicePrimaryCtxRetain(&p1, d1));
    if (p0 == p1)
        FAIL("devices 0 and 1 share a primary context");

    /* memory on each device, attributed to it */
    const size_t bytes = N_FLOATS * sizeof(float);
    CUdeviceptr a0, a1;
    size_t total0, total1, mem0, mem1;
    CK(cuDeviceTotalMem(&mem0, d0));
    CK(cuDeviceTotalMem(&mem1, d1));
    CK(cuCtxSetCurrent(p1));
    size_t before1 = free_mem(&total1);
    CK(cuMemAlloc(&a1, bytes));
    size_t after1 = free_mem(NULL);
    CK(cuCtxSetCurrent(p0));
    size_t before0 = free_mem(&total0);
    CK(cuMemAlloc(&a0, bytes));
    size_t after0 = free_mem(NULL);
    if (total0 != mem0 || total1 != mem1)
        FAIL("cuMemGetInfo totals %zu, %zu differ from cuDeviceTotalMem %zu, %zu", total0, total1, mem0, mem1);
    if (before1 - after1 < bytes || before0 - after0 < bytes)
        FAIL("an allocation of %zu bytes took %zu on device 1, %zu on device 0", bytes, before1 - after1,
             before0 - after0);
    printf("MEM dev=0 total=%zu used_by_alloc=%zu\n", total0, before0 - after0);
    printf("MEM dev=1 total=%zu used_by_alloc=%zu\n", total1, before1 - after1);
    unsigned ord = 99;
    CK(cuPointerGetAttribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, a1));
    if (ord != 1)
        FAIL("device 1's allocation has DEVICE_ORDINAL %u", ord);
    CK(cuPointerGetAttribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, a0));
    if (ord != 0)
        FAIL("device 0's allocation has DEVICE_ORDINAL %u", ord);
    CUcontext owner = NULL;
    CK(cuPointerGetAttribute(&owner, CU_POINTER_ATTRIBUTE_CONTEXT, a1));
    if (owner != p1)
        FAIL("device 1's allocation names context %p, not %p", (void *)owner, (void *)p1);

    /* peer access, current context p0 */
    if (can01) {
        CK(cuCtxEnablePeerAccess(p1, 0));
        EXPECT(cuCtxEnablePeerAccess(p1, 0), CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED);
        CK(cuCtxDisablePeerAccess(p1));
        EXPECT(cuCtxDisablePeerAccess(p1), CUDA_ERROR_PEER_ACCESS_NOT_ENABLED);
        EXPECT(cuCtxEnablePeerAccess(p1, 1), CUDA_ERROR_INVALID_VALUE);
        CK(cuCtxEnablePeerAccess(p1, 0));
    } else {
        EXPECT(cuCtxEnablePeerAccess(p1, 0), CUDA_ERROR_PEER_ACCESS_UNSUPPORTED);
    }
    /* a context as its own peer: CUDA's documentation names INVALID_DEVICE, and
     * the H100 driver (580, one GPU) answers PEER_ACCESS_UNSUPPORTED; either is
     * the driver's, passed on as it came */
    {
        CUresult self = cuCtxEnablePeerAccess(p0, 0);
        if (self != CUDA_ERROR_INVALID_DEVICE && self != CUDA_ERROR_PEER_ACCESS_UNSUPPORTED)
            FAIL("cuCtxEnablePeerAccess of a context to itself -> %d, expected %d or %d", (int)self,
                 (int)CUDA_ERROR_INVALID_DEVICE, (int)CUDA_ERROR_PEER_ACCESS_UNSUPPORTED);
    }
    EXPECT(cuCtxDisablePeerAccess(p0), CUDA_ERROR_PEER_ACCESS_NOT_ENABLED);

    /* a kernel on device 1 (its own module), then the result copied peer to peer */
    static float host[N_FLOATS], back[N_FLOATS];
    for (int i = 0; i < N_FLOATS; i++)
        host[i] = (float)i;
    CK(cuCtxSetCurrent(p1));
    CUmodule mod;
    CUfunction scale;
    CK(cuModuleLoadData(&mod, da_fatbin));
    CK(cuModuleGetFunction(&scale, mod, "da_scale"));
    CUstream s1;
    CK(cuStreamCreate(&s1, CU_STREAM_NON_BLOCKING));
    CUdevice sdev = -1;
    CK(cuStreamGetDevice(s1, &sdev));
    if (sdev != d1)
        FAIL("a stream of device 1's context is on device %d", (int)sdev);
    CK(cuMemcpyHtoDAsync(a1, host, bytes, s1));
    float factor = 3.0f;
    int count = N_FLOATS;
    void *args[] = {&a1, &factor, &count};
    CK(cuLaunchKernel(scale, N_FLOATS / 256, 1, 1, 256, 1, 1, 0, s1, args, NULL));
    CUevent done1;
    CK(cuEventCreate(&done1, CU_EVENT_DISABLE_TIMING));
    CK(cuEventRecord(done1, s1));
    /* device 0's stream waits for device 1's kernel, then pulls its result */
    CK(cuCtxSetCurrent(p0));
    CUstream s0;
    CK(cuStreamCreate(&s0, CU_STREAM_NON_BLOCKING));
    CK(cuStreamWaitEvent(s0, done1, 0));
    CK(cuMemcpyPeerAsync(a0, p0, a1, p1, bytes, s0));
    CK(cuStreamSynchronize(s0));
    CK(cuStreamDestroy(s0));
    memset(back, 0, sizeof back);
    CK(cuMemcpyDtoH(back, a0, bytes));
    check_floats(back, N_FLOATS, "kernel on device 1, cuMemcpyPeerAsync to device 0");

    /* the synchronous peer copy, and the unified one, at an offset each */
    CK(cuMemsetD8(a1, 0, bytes));
    CK(cuMemcpyPeer(a1 + 64, p1, a0, p0, bytes - 64));
    CK(cuCtxSynchronize());
    CK(cuMemcpyDtoH(back, a1, bytes));
    for (int i = 0; i < 16; i++)
        if (back[i] != 0.0f)
            FAIL("cuMemcpyPeer wrote before its destination (element %d is %g)", i, back[i]);
    check_floats(back + 16, N_FLOATS - 16, "cuMemcpyPeer device 0 to device 1, 64 bytes in");
    CK(cuMemsetD8(a0, 0, bytes));
    CK(cuMemcpy(a0, a1 + 64, bytes - 64));
    CK(cuCtxSynchronize());
    CK(cuMemcpyDtoH(back, a0, bytes));
    check_floats(back, N_FLOATS - 16, "cuMemcpy (unified) device 1 to device 0");

    /* a peer copy past the end of an allocation, and ones naming no context: refused at once */
    EXPECT(cuMemcpyPeer(a1, p1, a0, p0, bytes + 4096), CUDA_ERROR_INVALID_VALUE);
    EXPECT(cuMemcpyPeer(a1, NULL, a0, p0, bytes), CUDA_ERROR_INVALID_CONTEXT);
    EXPECT(cuMemcpyPeerAsync(a1, p1, a0, NULL, bytes, NULL), CUDA_ERROR_INVALID_CONTEXT);
    CK(cuCtxSynchronize());

    /* a created context on device 1 */
    CUcontext c1;
    CK(cuCtxCreate(&c1, NULL, 0, d1));
    CUdevice cd = -1;
    CK(cuCtxGetDevice(&cd));
    if (cd != d1)
        FAIL("a context created on device 1 says device %d", (int)cd);
    CK(cuCtxDestroy(c1));

    CK(cuCtxSetCurrent(p1));
    CK(cuEventDestroy(done1));
    CK(cuStreamDestroy(s1));
    CK(cuModuleUnload(mod));
    CK(cuMemFree(a1));
    CK(cuCtxSetCurrent(p0));
    if (can01)
        CK(cuCtxDisablePeerAccess(p1));
    CK(cuMemFree(a0));
    CK(cuDevicePrimaryCtxRelease(d1));
    CK(cuDevicePrimaryCtxRelease(d0));
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "list";
    CK(cuInit(0));
    if (strcmp(what, "list") == 0)
        list();
    else if (strcmp(what, "peers") == 0)
        peers();
    else
        FAIL("unknown mode %s (list, peers)", what);
    printf("PASS %s\n", PROG);
    return 0;
}
