/* kernel_attrs: function attributes of a bare cubin loaded as a library, as cuDNN
 * uses them after each NVRTC compile: every attribute read through the kernel and
 * through a function taken from it, sets of the dynamic shared memory size and of
 * the non-portable cluster flag read back, a set that breaks the driver's rule
 * refused, and one kernel's set leaving the other's values alone. Prints every
 * value, the kernel's and then the function's (a GPU run compares them with the
 * native driver's: how each reads the other's sets is not documented), and checks
 * what the documentation promises; PASS last. `kernel_attrs cudnn` instead follows
 * cuDNN's pattern per decoded token (cudnn_pattern below), whose only round trip
 * through gpuwire must be its synchronize (tests/e2e/test_kernel_attrs.py). */
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_attrs_cubin.h" /* generated at build time: ka_cubin[] */

#define PROG "kernel_attrs"
#include "driver_check.h"

/* out: the kernel's values; fout: the function's */
static void show(const char *what, CUkernel k, CUfunction f, CUdevice dev, int *out, int *fout)
{
    int vk[CU_FUNC_ATTRIBUTE_MAX], vf[CU_FUNC_ATTRIBUTE_MAX];
    for (int a = 0; a < CU_FUNC_ATTRIBUTE_MAX; a++) {
        CUresult rk = cuKernelGetAttribute(&vk[a], (CUfunction_attribute)a, k, dev);
        CUresult rf = cuFuncGetAttribute(&vf[a], (CUfunction_attribute)a, f);
        if (rk != CUDA_SUCCESS)
            vk[a] = -1000 - (int)rk;
        if (rf != CUDA_SUCCESS)
            vf[a] = -1000 - (int)rf;
        if (out)
            out[a] = vk[a];
        if (fout)
            fout[a] = vf[a];
    }
    printf("%s, kernel:", what);
    for (int a = 0; a < CU_FUNC_ATTRIBUTE_MAX; a++)
        printf(" %d", vk[a]);
    printf("\n%s, function:", what);
    for (int a = 0; a < CU_FUNC_ATTRIBUTE_MAX; a++)
        printf(" %d", vf[a]);
    printf("\n");
}

/* cuDNN's pattern, `rounds` times, one round per decoded token: load a fresh
 * cubin, take its kernel, set the kernel's dynamic shared size and cluster
 * flag, read those two back, synchronize once (the token's one wait), then
 * read every attribute of every kernel so far. Through gpuwire the round's
 * only round trip is that synchronize. */
static void cudnn_pattern(CUdevice dev, int rounds)
{
    CUlibrary libs[8];
    CUkernel ks[8];
    for (int r = 0; r < rounds && r < 8; r++) {
        CK(cuLibraryLoadData(&libs[r], ka_cubin, NULL, NULL, 0, NULL, NULL, 0));
        CK(cuLibraryGetKernel(&ks[r], libs[r], "da_scale"));
        CUfunction f;
        CK(cuKernelGetFunction(&f, ks[r]));
        CK(cuKernelSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 4096 * (r + 1), ks[r], dev));
        CK(cuKernelSetAttribute(CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1, ks[r], dev));
        int smem = 0, nonportable = 0;
        CK(cuKernelGetAttribute(&smem, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, ks[r], dev));
        CK(cuKernelGetAttribute(&nonportable, CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, ks[r], dev));
        printf("round %d: set and read back %d %d\n", r, smem, nonportable);
        CK(cuCtxSynchronize());
        for (int e = 0; e <= r; e++) {
            int v[CU_FUNC_ATTRIBUTE_MAX];
            printf("round %d, kernel %d:", r, e);
            for (int a = 0; a < CU_FUNC_ATTRIBUTE_MAX; a++) {
                CK(cuKernelGetAttribute(&v[a], (CUfunction_attribute)a, ks[e], dev));
                printf(" %d", v[a]);
            }
            printf("\n");
            if (v[CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES] != 4096 * (e + 1) ||
                v[CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED] != 1)
                FAIL("kernel %d does not read back its sets", e);
        }
    }
    for (int r = 0; r < rounds && r < 8; r++)
        CK(cuLibraryUnload(libs[r]));
}

int main(int argc, char **argv)
{
    CK(cuInit(0));
    CUdevice dev;
    CK(cuDeviceGet(&dev, 0));
    CUcontext ctx;
    CK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(cuCtxSetCurrent(ctx));
    int optin = 0;
    CK(cuDeviceGetAttribute(&optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev));

    if (argc > 1 && !strcmp(argv[1], "cudnn")) {
        cudnn_pattern(dev, 4);
        CK(cuDevicePrimaryCtxRelease(dev));
        printf("PASS %s cudnn\n", PROG);
        return 0;
    }

    CUlibrary lib;
    CK(cuLibraryLoadData(&lib, ka_cubin, NULL, NULL, 0, NULL, NULL, 0));
    CUkernel ks, km;
    CK(cuLibraryGetKernel(&ks, lib, "da_scale"));
    CK(cuLibraryGetKernel(&km, lib, "da_mix"));
    CUkernel none;
    if (cuLibraryGetKernel(&none, lib, "da_absent") != CUDA_ERROR_NOT_FOUND)
        FAIL("a name the cubin lacks was found");
    CUfunction fs, fm;
    CK(cuKernelGetFunction(&fs, ks));
    CK(cuKernelGetFunction(&fm, km));

    int s0[CU_FUNC_ATTRIBUTE_MAX], m0[CU_FUNC_ATTRIBUTE_MAX], s1[CU_FUNC_ATTRIBUTE_MAX], m1[CU_FUNC_ATTRIBUTE_MAX];
    int fs0[CU_FUNC_ATTRIBUTE_MAX], fs1[CU_FUNC_ATTRIBUTE_MAX];
    show("da_scale as loaded", ks, fs, dev, s0, fs0);
    show("da_mix as loaded", km, fm, dev, m0, NULL);
    for (int a = 0; a < CU_FUNC_ATTRIBUTE_MAX; a++)
        if (s0[a] != fs0[a])
            FAIL("as loaded, attribute %d reads %d through the kernel, %d through its function", a, s0[a], fs0[a]);

    /* the largest dynamic size the rule allows, then one byte more */
    int most = optin - s0[CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES];
    CK(cuKernelSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, most, ks, dev));
    if (cuKernelSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, most + 1, ks, dev) == CUDA_SUCCESS)
        FAIL("a dynamic shared size past the opt-in maximum was accepted");
    if (cuKernelSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, -1, ks, dev) == CUDA_SUCCESS)
        FAIL("a negative dynamic shared size was accepted");
    CK(cuKernelSetAttribute(CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1, ks, dev));
    show("da_scale after its sets", ks, fs, dev, s1, NULL);
    show("da_mix after da_scale's sets", km, fm, dev, m1, NULL);
    if (s1[CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES] != most)
        FAIL("dynamic shared size reads %d after a set to %d", s1[CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES],
             most);
    for (int a = 0; a < CU_FUNC_ATTRIBUTE_MAX; a++)
        if (m1[a] != m0[a])
            FAIL("da_mix's attribute %d went from %d to %d on da_scale's sets", a, m0[a], m1[a]);

    /* through the function */
    CK(cuFuncSetAttribute(fs, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 1024));
    show("da_scale after a set through its function", ks, fs, dev, NULL, fs1);
    if (fs1[CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES] != 1024)
        FAIL("dynamic shared size reads %d after a set to 1024", fs1[CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES]);
    CK(cuFuncSetAttribute(fs, CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, 50));
    show("da_scale after a carveout set", ks, fs, dev, NULL, NULL);

    CK(cuLibraryUnload(lib));
    CK(cuDevicePrimaryCtxRelease(dev));
    printf("PASS %s\n", PROG);
    return 0;
}
