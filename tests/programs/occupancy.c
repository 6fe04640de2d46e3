/* occupancy: cuOccupancyMaxPotentialBlockSize(WithFlags) (issue 14: NVIDIA's
 * matrixMulDrv sample asks it), with and without a blockSizeToDynamicSMemSize
 * callback (a function of this program's that the driver calls with the block
 * sizes it tries), with block size limits, with flags, through a function and
 * through a library kernel passed as one, and the errors for bad flags and a
 * missing output. Prints every answer: through gpuwire the output must equal
 * the driver's own (tests/e2e/test_occupancy.py against the stand-in, the GPU
 * run against the real driver); PASS last. */
#include <cuda.h>
#include <stdio.h>
#include <string.h>

#include "driver_api_fatbin.h" /* generated at build time: da_fatbin[] */

#define PROG "occupancy"
#include "driver_check.h"

static int calls; /* how often a callback was called: how often depends on the driver, not printed */

static size_t per_thread_8(int block) { calls++; return (size_t)block * 8; }
static size_t per_thread_100(int block) { calls++; return (size_t)block * 100; }
/* every other multiple of 32 needs more than the default 48 KiB: only a table
 * answered size by size gives the driver's answer */
static size_t odd_warps_only(int block) { calls++; return (block / 32) % 2 ? 0 : 60000; }

static CUresult ask(const char *what, CUfunction f, CUoccupancyB2DSize cb, size_t smem, int limit, int with_flags,
                    unsigned flags, int *block_out)
{
    int grid = -1, block = -1;
    CUresult r = with_flags ? cuOccupancyMaxPotentialBlockSizeWithFlags(&grid, &block, f, cb, smem, limit, flags)
                            : cuOccupancyMaxPotentialBlockSize(&grid, &block, f, cb, smem, limit);
    if (r == CUDA_SUCCESS)
        printf("%s: minGridSize %d blockSize %d\n", what, grid, block);
    else
        printf("%s: error %d\n", what, (int)r);
    if (block_out)
        *block_out = block;
    return r;
}

int main(void)
{
    CK(cuInit(0));
    CUdevice dev;
    CK(cuDeviceGet(&dev, 0));
    CUcontext ctx;
    CK(cuCtxCreate(&ctx, NULL, 0, dev));
    CUmodule mod;
    CK(cuModuleLoadData(&mod, da_fatbin));
    CUfunction f;
    CK(cuModuleGetFunction(&f, mod, "da_scale"));

    int b;
    CK(ask("no callback", f, NULL, 0, 0, 0, 0, &b));
    if (b <= 0)
        FAIL("no block size without a callback");
    CK(ask("no callback, 16 KiB", f, NULL, 16384, 0, 0, 0, NULL));
    CK(ask("no callback, 40 KiB", f, NULL, 40960, 0, 0, 0, NULL));
    CK(ask("no callback, limit 200", f, NULL, 0, 200, 0, 0, &b));
    if (b <= 0 || b > 200)
        FAIL("limit 200 gave block size %d", b);
    CK(ask("no callback, limit 20", f, NULL, 0, 20, 0, 0, NULL));
    CK(ask("no callback, limit 4096", f, NULL, 0, 4096, 0, 0, NULL));

    calls = 0;
    CK(ask("8 bytes a thread", f, per_thread_8, 0, 0, 0, 0, NULL));
    if (!calls)
        FAIL("the callback was never called");
    CK(ask("100 bytes a thread", f, per_thread_100, 0, 0, 0, 0, &b));
    if (b <= 0 || (size_t)b * 100 > 48 * 1024)
        FAIL("100 bytes a thread: block size %d needs more than the default 48 KiB (the callback was ignored)", b);
    CK(ask("100 bytes a thread, dynamicSMemSize ignored", f, per_thread_100, 1 << 20, 0, 0, 0, NULL));
    CK(ask("100 bytes a thread, limit 200", f, per_thread_100, 0, 200, 0, 0, &b));
    if (b <= 0 || b > 200)
        FAIL("limit 200 gave block size %d", b);
    CK(ask("100 bytes a thread, limit 333", f, per_thread_100, 0, 333, 0, 0, NULL));
    CK(ask("odd warps only", f, odd_warps_only, 0, 0, 0, 0, &b));
    if (b <= 0 || (b / 32) % 2 == 0)
        FAIL("odd warps only: block size %d", b);

    CK(ask("flags 0, 100 bytes a thread", f, per_thread_100, 0, 0, 1, 0, NULL));
    CK(ask("caching override, no callback", f, NULL, 8192, 0, 1, CU_OCCUPANCY_DISABLE_CACHING_OVERRIDE, NULL));
    CK(ask("caching override, 100 bytes a thread", f, per_thread_100, 0, 0, 1, CU_OCCUPANCY_DISABLE_CACHING_OVERRIDE,
           NULL));
    CK(ask("caching override, limit 100", f, per_thread_8, 0, 100, 1, CU_OCCUPANCY_DISABLE_CACHING_OVERRIDE, NULL));
    ask("unknown flag 0x80", f, NULL, 0, 0, 1, 0x80, NULL); /* the driver's verdict, printed */

    /* a missing output: the driver's verdict, printed */
    int grid = -1;
    CUresult r = cuOccupancyMaxPotentialBlockSize(&grid, NULL, f, per_thread_8, 0, 0);
    printf("no blockSize output: %d\n", (int)r);
    r = cuOccupancyMaxPotentialBlockSizeWithFlags(NULL, &grid, f, NULL, 0, 0, 0);
    printf("no minGridSize output: %d\n", (int)r);

    /* a library's kernel, passed as a function (the current context's device) */
    CUlibrary lib;
    CK(cuLibraryLoadData(&lib, da_fatbin, NULL, NULL, 0, NULL, NULL, 0));
    CUkernel k;
    CK(cuLibraryGetKernel(&k, lib, "da_scale"));
    CK(ask("kernel, no callback", (CUfunction)k, NULL, 0, 0, 0, 0, NULL));
    CK(ask("kernel, 100 bytes a thread", (CUfunction)k, per_thread_100, 0, 0, 1, 0, NULL));

    /* cudart's way before each occupancy query: the kernel's function in the
     * current context (one handle, the same every time), then the query
     * (tests/e2e/test_occupancy.py counts the round trips of this loop) */
    CUfunction f1 = NULL, f2 = NULL;
    CK(cuKernelGetFunction(&f1, k));
    CK(cuKernelGetFunction(&f2, k));
    if (f1 != f2)
        FAIL("cuKernelGetFunction gave two handles for one kernel in one context");
    /* lookups by name answer the same handle again too */
    CUfunction f3 = NULL;
    CUkernel k2 = NULL;
    CK(cuModuleGetFunction(&f3, mod, "da_scale"));
    CK(cuLibraryGetKernel(&k2, lib, "da_scale"));
    if (f3 != f || k2 != k)
        FAIL("a second lookup by name gave another handle");
    int per_sm = -1;
    for (int i = 0; i < 20; i++) {
        CUfunction fi = NULL;
        CK(cuKernelGetFunction(&fi, k));
        CK(cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&per_sm, fi, 128, 0, 0));
    }
    printf("kernel's function, 20 times: %d blocks of 128 threads per SM\n", per_sm);
    /* cuBLASLt's way around its GEMMs: the same cluster occupancy question
     * again and again (tests/e2e/test_occupancy.py counts its round trips) */
    CUlaunchAttribute cluster = {.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION};
    cluster.value.clusterDim.x = 2;
    cluster.value.clusterDim.y = cluster.value.clusterDim.z = 1;
    CUlaunchConfig cfg = {.gridDimX = 64, .gridDimY = 1, .gridDimZ = 1, .blockDimX = 128, .blockDimY = 1,
                          .blockDimZ = 1, .attrs = &cluster, .numAttrs = 1};
    int clusters = -1;
    CUresult cr = CUDA_SUCCESS;
    for (int i = 0; i < 20 && cr == CUDA_SUCCESS; i++)
        cr = cuOccupancyMaxActiveClusters(&clusters, f, &cfg);
    printf("cluster occupancy of 2-block clusters, 20 times: result %d, %d clusters\n", (int)cr,
           cr == CUDA_SUCCESS ? clusters : -1);

    CK(cuLibraryUnload(lib));
    CK(cuModuleUnload(mod));
    CK(cuCtxDestroy(ctx));
    printf("PASS %s\n", PROG);
    return 0;
}
