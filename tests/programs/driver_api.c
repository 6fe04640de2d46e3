/* driver_api: a pure driver-API program. Loads an embedded fatbin, launches one kernel with
 * kernelParams and one with the `extra` packed-buffer form, and checks parameter layout. */
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver_api_fatbin.h" /* generated at build time: da_fatbin[], da_fatbin_len */

#define PROG "driver_api"
#include "driver_check.h"

int main(void)
{
    CK(cuInit(0));
    int ver = 0, count = 0;
    CK(cuDriverGetVersion(&ver));
    CK(cuDeviceGetCount(&count));
    if (count < 1)
        FAIL("no device");
    CUdevice dev;
    CK(cuDeviceGet(&dev, 0));
    char name[256];
    CK(cuDeviceGetName(name, sizeof name, dev));
    int major = 0, minor = 0;
    CK(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
    CK(cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
    size_t total = 0;
    CK(cuDeviceTotalMem(&total, dev));
    printf("driver_api: driver %d, device 0: %s, cc %d.%d, %zu MiB\n", ver, name, major, minor,
           total >> 20);

    CUcontext ctx;
    CK(cuCtxCreate(&ctx, NULL, 0, dev));
    CUcontext cur = NULL;
    CK(cuCtxGetCurrent(&cur));
    if (cur != ctx)
        FAIL("cuCtxGetCurrent does not return the new context");

    CUmodule mod;
    CK(cuModuleLoadData(&mod, da_fatbin));
    CUfunction fscale, fmix;
    CK(cuModuleGetFunction(&fscale, mod, "da_scale"));
    CK(cuModuleGetFunction(&fmix, mod, "da_mix"));
    CUfunction nope;
    if (cuModuleGetFunction(&nope, mod, "no_such_kernel") != CUDA_ERROR_NOT_FOUND)
        FAIL("looking up a missing kernel did not give CUDA_ERROR_NOT_FOUND");

    /* The parameter layout the driver reports for da_mix. */
    const size_t want_off[4] = {0, 4, 8, 16}, want_size[4] = {4, 1, 8, 8};
    for (size_t k = 0; k < 4; k++) {
        size_t off = 99, size = 99;
        CK(cuFuncGetParamInfo(fmix, k, &off, &size));
        if (off != want_off[k] || size != want_size[k])
            FAIL("da_mix param %zu at offset %zu size %zu, expected %zu/%zu", k, off, size,
                 want_off[k], want_size[k]);
    }
    size_t off, size;
    if (cuFuncGetParamInfo(fmix, 4, &off, &size) != CUDA_ERROR_INVALID_VALUE)
        FAIL("cuFuncGetParamInfo past the last parameter did not fail");

    /* da_scale with kernelParams. */
    const int n = 5000;
    float *h = malloc(n * sizeof(float));
    if (!h)
        FAIL("host malloc");
    for (int i = 0; i < n; i++)
        h[i] = (float)i;
    CUdeviceptr d;
    CK(cuMemAlloc(&d, n * sizeof(float)));
    CK(cuMemcpyHtoD(d, h, n * sizeof(float)));
    float factor = 1.5f;
    int nn = n;
    void *params[] = {&d, &factor, &nn};
    CK(cuLaunchKernel(fscale, (n + 127) / 128, 1, 1, 128, 1, 1, 0, NULL, params, NULL));
    CK(cuCtxSynchronize());
    CK(cuMemcpyDtoH(h, d, n * sizeof(float)));
    for (int i = 0; i < n; i++)
        if (h[i] != (float)i * 1.5f)
            FAIL("da_scale element %d is %f", i, h[i]);

    /* da_mix with the packed `extra` buffer. */
    const int threads = 64;
    CUdeviceptr dout;
    CK(cuMemAlloc(&dout, threads * sizeof(long long)));
    struct {
        int a;
        char b;
        double c;
        CUdeviceptr out;
    } packed;
    memset(&packed, 0, sizeof packed);
    packed.a = 42;
    packed.b = -3;
    packed.c = 2.5;
    packed.out = dout;
    size_t packed_size = sizeof packed;
    if (packed_size != 24)
        FAIL("host packing is %zu bytes, expected 24", packed_size);
    void *extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &packed, CU_LAUNCH_PARAM_BUFFER_SIZE,
                     &packed_size, CU_LAUNCH_PARAM_END};
    CK(cuLaunchKernel(fmix, 1, 1, 1, threads, 1, 1, 0, NULL, NULL, extra));
    CK(cuCtxSynchronize());
    long long out[64];
    CK(cuMemcpyDtoH(out, dout, sizeof out));
    for (int i = 0; i < threads; i++)
        if (out[i] != 42000 - 3 + 25 + i)
            FAIL("da_mix element %d is %lld, expected %d", i, out[i], 42000 - 3 + 25 + i);

    /* An oversized block is refused by the launch itself. */
    if (cuLaunchKernel(fscale, 1, 1, 1, 2048, 1, 1, 0, NULL, params, NULL) != CUDA_ERROR_INVALID_VALUE)
        FAIL("a 2048-thread block was not refused with CUDA_ERROR_INVALID_VALUE");
    CK(cuCtxSynchronize());

    CK(cuMemFree(d));
    CK(cuMemFree(dout));
    CK(cuModuleUnload(mod));
    CK(cuCtxDestroy(ctx));
    free(h);
    printf("PASS %s\n", PROG);
    return 0;
}
