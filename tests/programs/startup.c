/* startup: what a typical application (or the CUDA runtime) does before its
 * first piece of work: cuInit, the driver version, the device count, each
 * device's name, memory, UUID (both entry points), compute capability and a
 * few other attributes, its PCI bus id, then the primary context (retained,
 * made current) and a first allocation. Everything it learns is printed, so a
 * run through gpuwire can be compared with a direct run; "MARK init" and
 * "MARK alloc" go to stderr right before cuInit and right after cuMemAlloc, so
 * a GPUWIRE_TRACE_RT=1 run shows which round trips lie between them
 * (tests/e2e/test_startup_round_trips.py). "PASS startup" last and exit 0. */
#define PROG "startup"
#include <stdio.h>
#include <string.h>

#include "driver_check.h"

int main(void)
{
    int n = -1, ver = 0;
    CUdevice dev;
    /* before cuInit: the driver refuses with NOT_INITIALIZED */
    if (cuDeviceGetCount(&n) != CUDA_ERROR_NOT_INITIALIZED)
        FAIL("cuDeviceGetCount before cuInit did not return CUDA_ERROR_NOT_INITIALIZED");
    fprintf(stderr, "MARK init\n");
    CK(cuInit(0));
    CK(cuDriverGetVersion(&ver));
    CK(cuDeviceGetCount(&n));
    printf("driver %d devices %d\n", ver, n);
    if (n < 1)
        FAIL("no device");
    for (int i = 0; i < n; i++) {
        char name[256], bus[64];
        size_t mem = 0;
        CUuuid u1, u2;
        int major, minor, sms, warp, threads, l2, clock;
        CK(cuDeviceGet(&dev, i));
        CK(cuDeviceGetName(name, sizeof name, dev));
        CK(cuDeviceTotalMem(&mem, dev));
        CK(cuDeviceGetUuid(&u1, dev));
        CK(cuDeviceGetUuid_v2(&u2, dev));
        if (memcmp(&u1, &u2, sizeof u1))
            FAIL("cuDeviceGetUuid and cuDeviceGetUuid_v2 differ");
        CK(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
        CK(cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
        CK(cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev));
        CK(cuDeviceGetAttribute(&warp, CU_DEVICE_ATTRIBUTE_WARP_SIZE, dev));
        CK(cuDeviceGetAttribute(&threads, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, dev));
        CK(cuDeviceGetAttribute(&l2, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, dev));
        CK(cuDeviceGetAttribute(&clock, CU_DEVICE_ATTRIBUTE_CLOCK_RATE, dev));
        CK(cuDeviceGetPCIBusId(bus, sizeof bus, dev));
        printf("device %d name \"%s\" mem %zu uuid", i, name, mem);
        for (int k = 0; k < 16; k++)
            printf("%02x", (unsigned char)u1.bytes[k]);
        printf(" cc %d.%d sms %d warp %d threads %d l2 %d clock %d bus %s\n", major, minor, sms, warp, threads, l2,
               clock, bus);
    }
    /* an ordinal past the last device is refused, as natively */
    CUresult bad = cuDeviceGet(&dev, n);
    printf("cuDeviceGet(%d) -> %d\n", n, (int)bad);
    CK(cuDeviceGet(&dev, 0));
    CUcontext ctx;
    CK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(cuCtxSetCurrent(ctx));
    CUdeviceptr p;
    CK(cuMemAlloc(&p, 1 << 20));
    fprintf(stderr, "MARK alloc\n");
    CK(cuMemsetD8(p, 0x5a, 1 << 20));
    unsigned char b[16];
    CK(cuMemcpyDtoH(b, p, sizeof b));
    for (size_t k = 0; k < sizeof b; k++)
        if (b[k] != 0x5a)
            FAIL("memset byte %zu is %d", k, b[k]);
    CK(cuMemFree(p));
    CK(cuDevicePrimaryCtxRelease(dev));
    printf("PASS startup\n");
    return 0;
}
