/* JIT options whose values the driver writes: the info and error log buffers,
 * the bytes filled written back into their size options, the wall time
 * written over its option value. Through every call that takes JIT options:
 * cuLinkCreate's buffers (filled later, by cuLinkAddData and cuLinkComplete,
 * failures included), one input's own options, cuModuleLoadDataEx,
 * cuLibraryLoadData. NVIDIA's ptxjit sample passes exactly the first set.
 *
 * Built twice: jit_logs is linked against libcuda, jit_logs_dlopen finds
 * every entry point with dlopen("libcuda.so.1") and dlsym, as Ollama does.
 * It prints each log, size and time it got (the test compares them with the
 * stand-in driver's own answers) and checks the stand-in's texts
 * (tests/standin/link.c, module.c): "PASS jit_logs" last.
 *
 * "jit_logs any" checks only what holds for any driver (a real one compiles
 * the PTX) and prints the logs and how the sizes written back relate to
 * them, to compare a run on the real driver with one through gpuwire. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef JIT_DLOPEN
#include <dlfcn.h>
#define PROG "jit_logs_dlopen"
#else
#define PROG "jit_logs"
#endif
#include <cuda.h>
#include "prog_fail.h"
#include "driver_api_fatbin.h"

#define API(X)                                                                                                      \
    X(cuInit) X(cuDeviceGet) X(cuDevicePrimaryCtxRetain) X(cuCtxSetCurrent) X(cuGetErrorName) X(cuLinkCreate_v2)    \
    X(cuLinkAddData_v2) X(cuLinkComplete) X(cuLinkDestroy) X(cuModuleLoadData) X(cuModuleLoadDataEx)               \
    X(cuModuleGetFunction) X(cuModuleUnload) X(cuLibraryLoadData) X(cuLibraryGetKernel) X(cuLibraryUnload)

#ifdef JIT_DLOPEN
#define DECLARE(f) static __typeof__(&f) p_##f;
#else
#define DECLARE(f) static __typeof__(&f) p_##f = f;
#endif
API(DECLARE)

static void resolve(void)
{
#ifdef JIT_DLOPEN
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        FAIL("dlopen libcuda.so.1: %s", dlerror());
#define RESOLVE(f)                                                                                                  \
    if (!(p_##f = (__typeof__(p_##f))dlsym(h, #f)))                                                                 \
        FAIL("dlsym %s", #f);
    API(RESOLVE)
#endif
}

static void check(CUresult got, CUresult want, const char *what, int line)
{
    if (got != want) {
        const char *name = "?";
        p_cuGetErrorName(got, &name);
        FAIL("line %d: %s -> %d (%s), expected %d", line, what, (int)got, name ? name : "?", (int)want);
    }
}
#define EXPECT(call, want) check((call), (want), #call, __LINE__)
#define CK(call) EXPECT(call, CUDA_SUCCESS)
#define TRUE(cond)                                                                                                  \
    do {                                                                                                            \
        if (!(cond))                                                                                                \
            FAIL("line %d: %s", __LINE__, #cond);                                                                   \
    } while (0)

static unsigned size_of(void *v) { return (unsigned)(uintptr_t)v; }

static float wall_of(void *v)
{
    float f;
    memcpy(&f, &v, sizeof f); /* the driver writes a float over the option value */
    return f;
}

/* The PTX texts the stand-in judges by their .version line. */
static const char good_ptx[] = ".version 8.0\n.target sm_90\n.address_size 64\n";
static const char bad_ptx[] = "// no version line\n.target sm_90\n";

#define JUNK "not an image at all"

static void ptxjit_link(void)
{
    /* the options of NVIDIA's ptxjit sample, buffers prefilled with garbage */
    char info[1024], err[1024];
    memset(info, 'X', sizeof info);
    memset(err, 'X', sizeof err);
    float walltime = 0;
    CUjit_option o[6] = {CU_JIT_WALL_TIME, CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
                         CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_LOG_VERBOSE};
    void *v[6] = {&walltime, info, (void *)(uintptr_t)sizeof info, err, (void *)(uintptr_t)sizeof err, (void *)1};
    CUlinkState link;
    CK(p_cuLinkCreate_v2(6, o, v, &link));

    /* the log of an input is there when cuLinkAddData returns */
    CK(p_cuLinkAddData_v2(link, CU_JIT_INPUT_FATBINARY, (void *)da_fatbin, da_fatbin_len, "kernels", 0, NULL, NULL));
    char want[128];
    snprintf(want, sizeof want, "stand-in linker: added kernels (%lu bytes)\n", da_fatbin_len);
    TRUE(strcmp(info, want) == 0);
    TRUE(size_of(v[2]) == strlen(info) + 1);
    printf("add: info=[%s] info_size=%u err=[%s] err_size=%u\n", info, size_of(v[2]), err, size_of(v[4]));

    /* a refused input fills the error log, and the call that failed delivers it */
    EXPECT(p_cuLinkAddData_v2(link, CU_JIT_INPUT_CUBIN, (void *)JUNK, sizeof JUNK, "junk.cubin", 0, NULL, NULL),
           CUDA_ERROR_INVALID_IMAGE);
    TRUE(strstr(err, "stand-in linker: junk.cubin is not an input of its type") == err);
    TRUE(size_of(v[4]) == strlen(err) + 1);
    printf("bad input: err=[%s] err_size=%u\n", err, size_of(v[4]));

    /* an input's own log buffers get its own lines */
    char own[256];
    CUjit_option oo[3] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_OPTIMIZATION_LEVEL};
    void *ov[3] = {own, (void *)(uintptr_t)sizeof own, (void *)3};
    CK(p_cuLinkAddData_v2(link, CU_JIT_INPUT_FATBINARY, (void *)da_fatbin, da_fatbin_len, "second", 3, oo, ov));
    snprintf(want, sizeof want, "stand-in linker: added second (%lu bytes)\n", da_fatbin_len);
    TRUE(strcmp(own, want) == 0);
    TRUE(size_of(ov[1]) == strlen(own) + 1);
    printf("own: info=[%s] info_size=%u\n", own, size_of(ov[1]));

    void *cubin;
    size_t size;
    CK(p_cuLinkComplete(link, &cubin, &size));
    TRUE(strstr(info, "stand-in linker: linked 2 inputs\n") != NULL);
    TRUE(size_of(v[2]) == strlen(info) + 1);
    TRUE(wall_of(v[0]) == 2.5f);
    printf("complete: info=[%s] info_size=%u wall=%.3f ms\n", info, size_of(v[2]), wall_of(v[0]));

    CUmodule mod;
    CUfunction fn;
    CK(p_cuModuleLoadData(&mod, cubin));
    CK(p_cuModuleGetFunction(&fn, mod, "da_scale"));
    CK(p_cuModuleUnload(mod));
    /* outputs "accumulate data until the CUlinkState is destroyed" (the stand-in adds 0.5 ms) */
    CK(p_cuLinkDestroy(link));
    TRUE(wall_of(v[0]) == 3.0f);
    printf("destroy: wall=%.3f ms\n", wall_of(v[0]));
}

static void failing_link(void)
{
    /* only an error log, smaller than its text: cut, terminated, its size the bytes filled */
    char err[24];
    memset(err, 'X', sizeof err);
    CUjit_option o[3] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_WALL_TIME};
    void *v[3] = {err, (void *)(uintptr_t)sizeof err, NULL};
    CUlinkState link;
    CK(p_cuLinkCreate_v2(3, o, v, &link));
    void *cubin;
    EXPECT(p_cuLinkComplete(link, &cubin, NULL), CUDA_ERROR_INVALID_VALUE);
    TRUE(strcmp(err, "stand-in linker: nothin") == 0);
    TRUE(size_of(v[1]) == sizeof err);
    printf("failed link: err=[%s] err_size=%u wall=%.3f ms\n", err, size_of(v[1]), wall_of(v[2]));
    CK(p_cuLinkDestroy(link));
}

static void module_loads(void)
{
    /* a log larger than the worker keeps (1 MiB) is no error */
    size_t big = 4u << 20;
    char *info = malloc(big), err[256];
    if (!info)
        FAIL("out of memory");
    memset(info, 'X', big);
    CUjit_option o[5] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                         CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_WALL_TIME};
    void *v[5] = {info, (void *)(uintptr_t)big, err, (void *)(uintptr_t)sizeof err, NULL};
    CUmodule mod;
    CUfunction fn;
    CK(p_cuModuleLoadDataEx(&mod, da_fatbin, 5, o, v));
    TRUE(strcmp(info, "stand-in JIT: module loaded from a binary image\n") == 0);
    TRUE(size_of(v[1]) == strlen(info) + 1 && err[0] == 0 && wall_of(v[4]) == 1.25f);
    printf("load: info=[%s] info_size=%u err=[%s] err_size=%u wall=%.3f ms\n", info, size_of(v[1]), err,
           size_of(v[3]), wall_of(v[4]));
    CK(p_cuModuleGetFunction(&fn, mod, "da_scale"));
    CK(p_cuModuleUnload(mod));

    /* PTX the compiler refuses: the error and its log when the call returns */
    v[1] = (void *)(uintptr_t)big;
    v[3] = (void *)(uintptr_t)sizeof err;
    EXPECT(p_cuModuleLoadDataEx(&mod, bad_ptx, 5, o, v), CUDA_ERROR_INVALID_PTX);
    TRUE(strcmp(err, "stand-in JIT: module: PTX without a .version directive\n") == 0 && info[0] == 0);
    TRUE(size_of(v[3]) == strlen(err) + 1);
    printf("bad load: err=[%s] err_size=%u info=[%s]\n", err, size_of(v[3]), info);

    /* the same through a library */
    CUlibrary lib;
    CUkernel k;
    v[1] = (void *)(uintptr_t)big;
    v[3] = (void *)(uintptr_t)sizeof err;
    CK(p_cuLibraryLoadData(&lib, good_ptx, o, v, 5, NULL, NULL, 0));
    TRUE(strcmp(info, "stand-in JIT: library loaded from PTX\n") == 0 && wall_of(v[4]) == 1.25f);
    printf("library: info=[%s] info_size=%u wall=%.3f ms\n", info, size_of(v[1]), wall_of(v[4]));
    CK(p_cuLibraryGetKernel(&k, lib, "da_scale"));
    CK(p_cuLibraryUnload(lib));
    v[3] = (void *)(uintptr_t)sizeof err;
    EXPECT(p_cuLibraryLoadData(&lib, bad_ptx, o, v, 5, NULL, NULL, 0), CUDA_ERROR_INVALID_PTX);
    TRUE(strcmp(err, "stand-in JIT: library: PTX without a .version directive\n") == 0);
    printf("bad library: err=[%s] err_size=%u\n", err, size_of(v[3]));
    free(info);

    /* without outputs a load stays posted (the test counts its round trips) */
    CUjit_option n[1] = {CU_JIT_OPTIMIZATION_LEVEL};
    void *nv[1] = {(void *)2};
    CK(p_cuModuleLoadDataEx(&mod, da_fatbin, 1, n, nv));
    CK(p_cuModuleUnload(mod));
}

/* How a size written back relates to its log's text. */
static const char *size_says(void *v, const char *log)
{
    static char out[64];
    unsigned n = size_of(v), len = (unsigned)strlen(log);
    if (n == len + 1)
        return "text+NUL";
    if (n == len)
        return "text";
    snprintf(out, sizeof out, "%u for %u bytes of text", n, len);
    return out;
}

static const char kernel_ptx[] = ".version 7.0\n.target sm_75\n.address_size 64\n\n"
                                 ".visible .entry jl_nop()\n{\n\tret;\n}\n";

/* A real driver's info log holds compile times and depends on its JIT cache:
 * "any" mode says whether a log has text, and asks for no JIT cache, so a
 * native run and one through gpuwire just after it both compile. */
static const char *has_text(const char *log) { return log[0] ? "text" : "empty"; }

static void any_driver(void)
{
    char info[4096], err[4096];
    float walltime = 0;
    CUjit_option o[7] = {CU_JIT_WALL_TIME, CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
                         CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_LOG_VERBOSE,
                         CU_JIT_CACHE_MODE};
    void *v[7] = {&walltime, info, (void *)(uintptr_t)sizeof info, err, (void *)(uintptr_t)sizeof err, (void *)1,
                  (void *)(uintptr_t)CU_JIT_CACHE_OPTION_NONE};
    CUlinkState link;
    CK(p_cuLinkCreate_v2(7, o, v, &link));
    CUresult r = p_cuLinkAddData_v2(link, CU_JIT_INPUT_PTX, (void *)kernel_ptx, sizeof kernel_ptx, "nop.ptx", 0,
                                    NULL, NULL);
    printf("link add: %d info=%s (%s) err=[%s] (%s)\n", (int)r, has_text(info), size_says(v[2], info), err,
           size_says(v[4], err));
    void *cubin;
    size_t size;
    r = p_cuLinkComplete(link, &cubin, &size);
    TRUE(r != CUDA_SUCCESS || size > 0);
    printf("link complete: %d info=%s (%s) err=[%s] (%s) wall>0: %d\n", (int)r, has_text(info),
           size_says(v[2], info), err, size_says(v[4], err), wall_of(v[0]) > 0);
    CK(p_cuLinkDestroy(link));

    v[2] = (void *)(uintptr_t)sizeof info;
    v[4] = (void *)(uintptr_t)sizeof err;
    CK(p_cuLinkCreate_v2(7, o, v, &link));
    r = p_cuLinkAddData_v2(link, CU_JIT_INPUT_PTX, (void *)bad_ptx, sizeof bad_ptx, "bad.ptx", 0, NULL, NULL);
    if (r == CUDA_SUCCESS)
        r = p_cuLinkComplete(link, &cubin, &size);
    printf("bad link: %d err=[%s] (%s)\n", (int)r, err, size_says(v[4], err));
    CK(p_cuLinkDestroy(link));

    CUjit_option lo[6] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                          CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_LOG_VERBOSE, CU_JIT_CACHE_MODE};
    for (int bad = 0; bad < 2; bad++) {
        void *lv[6] = {info, (void *)(uintptr_t)sizeof info, err, (void *)(uintptr_t)sizeof err, (void *)1,
                       (void *)(uintptr_t)CU_JIT_CACHE_OPTION_NONE};
        CUmodule mod;
        r = p_cuModuleLoadDataEx(&mod, bad ? bad_ptx : kernel_ptx, 6, lo, lv);
        printf("%smodule: %d info=%s (%s) err=[%s] (%s)\n", bad ? "bad " : "", (int)r, has_text(info),
               size_says(lv[1], info), err, size_says(lv[3], err));
        if (r == CUDA_SUCCESS)
            CK(p_cuModuleUnload(mod));
        lv[1] = (void *)(uintptr_t)sizeof info;
        lv[3] = (void *)(uintptr_t)sizeof err;
        CUlibrary lib;
        r = p_cuLibraryLoadData(&lib, bad ? bad_ptx : kernel_ptx, lo, lv, 6, NULL, NULL, 0);
        printf("%slibrary: %d info=%s (%s) err=[%s] (%s)\n", bad ? "bad " : "", (int)r, has_text(info),
               size_says(lv[1], info), err, size_says(lv[3], err));
        if (r == CUDA_SUCCESS)
            CK(p_cuLibraryUnload(lib));
    }
}

int main(int argc, char **argv)
{
    resolve();
    CUdevice dev;
    CUcontext ctx;
    CK(p_cuInit(0));
    CK(p_cuDeviceGet(&dev, 0));
    CK(p_cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(p_cuCtxSetCurrent(ctx));
    if (argc > 1 && strcmp(argv[1], "any") == 0) {
        any_driver();
    } else {
        ptxjit_link();
        failing_link();
        module_loads();
    }
    printf("PASS %s\n", PROG);
    return 0;
}
