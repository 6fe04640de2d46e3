/* gpuwire-demo: the program `gpuwire demo` runs when there is no build/programs/ (an
 * installed wheel, or a checkout without nvcc). A driver-API vector addition: it loads
 * libcuda.so.1 at run time (as frameworks do), JIT-loads the kernel below from PTX text
 * and checks the sums. The kernel is tests/programs/vector_add.cu's, same name and
 * parameters, so the CPU stand-in driver runs it too. Built by `make -C native`. */
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#define N 4096
#define KERNEL "_Z10vector_addPKfS0_Pfi" /* vector_add(const float *a, const float *b, float *c, int n) */

static const char ptx[] =
    ".version 8.0\n"
    ".target sm_75\n"
    ".address_size 64\n"
    ".visible .entry " KERNEL "(.param .u64 pa, .param .u64 pb, .param .u64 pc, .param .u32 pn)\n"
    "{\n"
    "  .reg .pred out;\n"
    "  .reg .b32 r<5>;\n"
    "  .reg .f32 f<3>;\n"
    "  .reg .b64 d<8>;\n"
    "  ld.param.u64 d0, [pa];\n"
    "  ld.param.u64 d1, [pb];\n"
    "  ld.param.u64 d2, [pc];\n"
    "  ld.param.u32 r0, [pn];\n"
    "  mov.u32 r1, %ctaid.x;\n"
    "  mov.u32 r2, %ntid.x;\n"
    "  mov.u32 r3, %tid.x;\n"
    "  mad.lo.s32 r4, r1, r2, r3;\n"
    "  setp.ge.s32 out, r4, r0;\n"
    "  @out bra done;\n"
    "  mul.wide.s32 d3, r4, 4;\n"
    "  cvta.to.global.u64 d0, d0;\n"
    "  cvta.to.global.u64 d1, d1;\n"
    "  cvta.to.global.u64 d2, d2;\n"
    "  add.s64 d4, d0, d3;\n"
    "  add.s64 d5, d1, d3;\n"
    "  add.s64 d6, d2, d3;\n"
    "  ld.global.f32 f0, [d4];\n"
    "  ld.global.f32 f1, [d5];\n"
    "  add.rn.f32 f2, f0, f1;\n"
    "  st.global.f32 [d6], f2;\n"
    "done:\n"
    "  ret;\n"
    "}\n";

/* the driver's entry points this program calls, by their exported names */
#define ENTRY_POINTS(X)                                                                      \
    X(cuInit, (unsigned))                                                                    \
    X(cuGetErrorName, (CUresult, const char **))                                             \
    X(cuDeviceGetCount, (int *))                                                             \
    X(cuDeviceGet, (CUdevice *, int))                                                        \
    X(cuDeviceGetName, (char *, int, CUdevice))                                              \
    X(cuDevicePrimaryCtxRetain, (CUcontext *, CUdevice))                                     \
    X(cuDevicePrimaryCtxRelease_v2, (CUdevice))                                              \
    X(cuCtxSetCurrent, (CUcontext))                                                          \
    X(cuCtxSynchronize, (void))                                                              \
    X(cuModuleLoadData, (CUmodule *, const void *))                                          \
    X(cuModuleUnload, (CUmodule))                                                            \
    X(cuModuleGetFunction, (CUfunction *, CUmodule, const char *))                           \
    X(cuMemAlloc_v2, (CUdeviceptr *, size_t))                                                \
    X(cuMemFree_v2, (CUdeviceptr))                                                           \
    X(cuMemcpyHtoD_v2, (CUdeviceptr, const void *, size_t))                                  \
    X(cuMemcpyDtoH_v2, (void *, CUdeviceptr, size_t))                                        \
    X(cuLaunchKernel, (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, \
                       unsigned, CUstream, void **, void **))

#define DECLARE(name, args) static CUresult (*p_##name) args;
ENTRY_POINTS(DECLARE)

static int check(CUresult rc, const char *what)
{
    if (rc == CUDA_SUCCESS)
        return 0;
    const char *name = NULL;
    if (p_cuGetErrorName)
        p_cuGetErrorName(rc, &name);
    fprintf(stderr, "FAIL gpuwire-demo: %s: %s (%d)\n", what, name ? name : "?", (int)rc);
    return 1;
}
#define CK(call)                  \
    do {                          \
        if (check(call, #call))   \
            return 1;             \
    } while (0)

int main(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "FAIL gpuwire-demo: cannot load libcuda.so.1: %s\n", dlerror());
        return 1;
    }
#define RESOLVE(name, args)                                                        \
    if (!(*(void **)&p_##name = dlsym(lib, #name))) {                              \
        fprintf(stderr, "FAIL gpuwire-demo: libcuda.so.1 has no %s\n", #name);     \
        return 1;                                                                  \
    }
    ENTRY_POINTS(RESOLVE)

    CK(p_cuInit(0));
    int count = 0;
    CK(p_cuDeviceGetCount(&count));
    if (count < 1) {
        fprintf(stderr, "FAIL gpuwire-demo: no CUDA device\n");
        return 1;
    }
    CUdevice dev;
    char name[256] = "";
    CK(p_cuDeviceGet(&dev, 0));
    CK(p_cuDeviceGetName(name, (int)sizeof name, dev));
    printf("gpuwire-demo: device 0 of %d: %s\n", count, name);

    CUcontext ctx;
    CK(p_cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(p_cuCtxSetCurrent(ctx));
    CUmodule mod;
    CUfunction fn;
    CK(p_cuModuleLoadData(&mod, ptx));
    CK(p_cuModuleGetFunction(&fn, mod, KERNEL));

    static float a[N], b[N], c[N];
    for (int i = 0; i < N; i++) {
        a[i] = (float)i * 0.5f;
        b[i] = (float)(N - i);
    }
    CUdeviceptr da, db, dc;
    CK(p_cuMemAlloc_v2(&da, sizeof a));
    CK(p_cuMemAlloc_v2(&db, sizeof b));
    CK(p_cuMemAlloc_v2(&dc, sizeof c));
    CK(p_cuMemcpyHtoD_v2(da, a, sizeof a));
    CK(p_cuMemcpyHtoD_v2(db, b, sizeof b));
    int n = N;
    void *params[] = {&da, &db, &dc, &n};
    CK(p_cuLaunchKernel(fn, (N + 255) / 256, 1, 1, 256, 1, 1, 0, NULL, params, NULL));
    CK(p_cuCtxSynchronize());
    CK(p_cuMemcpyDtoH_v2(c, dc, sizeof c));

    int bad = 0;
    for (int i = 0; i < N; i++)
        if (c[i] != a[i] + b[i] && bad++ < 3)
            fprintf(stderr, "gpuwire-demo: c[%d] = %g, expected %g\n", i, c[i], a[i] + b[i]);
    CK(p_cuMemFree_v2(da));
    CK(p_cuMemFree_v2(db));
    CK(p_cuMemFree_v2(dc));
    CK(p_cuModuleUnload(mod));
    CK(p_cuDevicePrimaryCtxRelease_v2(dev));
    if (bad) {
        fprintf(stderr, "FAIL gpuwire-demo: %d of %d sums wrong\n", bad, N);
        return 1;
    }
    printf("PASS gpuwire-demo: vector_add of %d floats on device 0 matches the sums on the host\n", N);
    return 0;
}
