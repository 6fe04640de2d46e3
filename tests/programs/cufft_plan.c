/* cuFFT's first steps through gpuwire (issue 14): cufftCreate, cufftPlan1d
 * (C2C, 1024 points), cufftExecC2C and cufftDestroy, with libcufft found
 * by dlopen (argv[1], else "libcufft.so.12", cuFFT for CUDA 13), so a
 * machine without cuFFT builds it anyway and the test skips. Device memory
 * comes from the driver API, in the primary context cuFFT's runtime uses.
 * Prints one line per call, "<call> <status>", and exits 0 once every call
 * was made: the caller judges the statuses (the CPU stand-in cannot run
 * cuFFT's kernels, so its exec may fail). Exit 77: no libcufft. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define PROG "cufft_plan"
#include "prog_fail.h"

#define CUFFT_C2C 0x29
#define CUFFT_FORWARD (-1)
#define POINTS 1024

typedef int (*cufft_create_fn)(int *plan);
typedef int (*cufft_plan1d_fn)(int *plan, int nx, int type, int batch);
typedef int (*cufft_exec_c2c_fn)(int plan, void *in, void *out, int direction);
typedef int (*cufft_destroy_fn)(int plan);
typedef int (*cu_init_fn)(unsigned flags);
typedef int (*cu_device_get_fn)(int *dev, int ordinal);
typedef int (*cu_primary_retain_fn)(void **ctx, int dev);
typedef int (*cu_ctx_set_fn)(void *ctx);
typedef int (*cu_mem_alloc_fn)(uint64_t *ptr, size_t bytes);
typedef int (*cu_mem_free_fn)(uint64_t ptr);
typedef int (*cu_sync_fn)(void);

static void *sym(void *lib, const char *name)
{
    void *p = dlsym(lib, name);
    if (!p)
        FAIL("%s not found", name);
    return p;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "libcufft.so.12";
    void *fft = dlopen(path, RTLD_NOW);
    if (!fft) {
        printf("SKIP %s: no cuFFT (%s)\n", PROG, dlerror());
        return 77;
    }
    void *cu = dlopen("libcuda.so.1", RTLD_NOW);
    if (!cu)
        FAIL("libcuda.so.1: %s", dlerror());
    cu_init_fn cu_init = (cu_init_fn)sym(cu, "cuInit");
    cu_device_get_fn cu_device_get = (cu_device_get_fn)sym(cu, "cuDeviceGet");
    cu_primary_retain_fn cu_retain = (cu_primary_retain_fn)sym(cu, "cuDevicePrimaryCtxRetain");
    cu_ctx_set_fn cu_ctx_set = (cu_ctx_set_fn)sym(cu, "cuCtxSetCurrent");
    cu_mem_alloc_fn cu_alloc = (cu_mem_alloc_fn)sym(cu, "cuMemAlloc_v2");
    cu_mem_free_fn cu_free = (cu_mem_free_fn)sym(cu, "cuMemFree_v2");
    cu_sync_fn cu_sync = (cu_sync_fn)sym(cu, "cuCtxSynchronize");
    cufft_create_fn create = (cufft_create_fn)sym(fft, "cufftCreate");
    cufft_plan1d_fn plan1d = (cufft_plan1d_fn)sym(fft, "cufftPlan1d");
    cufft_exec_c2c_fn exec_c2c = (cufft_exec_c2c_fn)sym(fft, "cufftExecC2C");
    cufft_destroy_fn destroy = (cufft_destroy_fn)sym(fft, "cufftDestroy");

    int dev = 0;
    void *ctx = NULL;
    if (cu_init(0) || cu_device_get(&dev, 0) || cu_retain(&ctx, dev) || cu_ctx_set(ctx))
        FAIL("no primary context");

    int handle = -1;
    int rc = create(&handle);
    printf("cufftCreate %d\n", rc);
    if (rc == 0)
        printf("cufftDestroy(created) %d\n", destroy(handle));

    int plan = -1;
    rc = plan1d(&plan, POINTS, CUFFT_C2C, 1);
    printf("cufftPlan1d %d\n", rc);
    fflush(stdout);
    if (rc == 0) {
        uint64_t buf = 0;
        if (cu_alloc(&buf, POINTS * 8))
            FAIL("cuMemAlloc");
        printf("cufftExecC2C %d\n", exec_c2c(plan, (void *)(uintptr_t)buf, (void *)(uintptr_t)buf,
                                              CUFFT_FORWARD));
        printf("cuCtxSynchronize %d\n", cu_sync());
        printf("cufftDestroy %d\n", destroy(plan));
        cu_free(buf);
    }
    printf("DONE %s\n", PROG);
    return 0;
}
