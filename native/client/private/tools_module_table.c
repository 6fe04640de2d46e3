/* gpuwire client: the driver's tools module table, export table 6e163fbe
 * (NVIDIA's tools headers: CU_ETID_ToolsModule; bytes in memory
 * 6e 16 3f be b9 58 44 4d 83 5c e1 82 af f1 99 1e, the same 16 bytes libcufft
 * carries). cuFFT 13 asks for it; refused, cufftPlan1d answered
 * CUFFT_INTERNAL_ERROR on the H100 (issue 14).
 *
 * What cuFFT 12.5 (the CUDA 13 wheel) does with it, seen by running it
 * through gpuwire against the stand-in and reading the code around the call
 * (docs/export-tables.md): after each cuModuleLoadData of one of its kernels
 * it checks that the size word exceeds 0x37 and calls slot 7 as
 * (context, module, callback, user), where the callback stores its second
 * argument (the CUfunction) through user, and it accepts only a return
 * value of 1: slot 7 enumerates the module's functions and returns how many
 * (a count, not a CUresult). It is served here with cuModuleGetFunctionCount
 * and cuModuleEnumerateFunctions, in the given context. cuFFT does not read
 * inside the function handle: the handles slot 7 gives are the worker's
 * ids, no memory of the client's, and plan, exec and destroy went through
 * with them on the stand-in.
 *
 * Every other slot logs its number and first six arguments (once per slot
 * on stderr; every call under GPUWIRE_DEBUG=2) and answers
 * CUDA_ERROR_NOT_SUPPORTED. */
#define _GNU_SOURCE /* dladdr */
#include "../state/state.h"
#include "export_tables.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A module with more functions than this is taken for a broken answer. */
#define MAX_MODULE_FUNCTIONS (1u << 20)

/* cuFFT's callback: (user, function, third word). cuFFT's ignores the third;
 * the module is passed there (a guess from Lupine's notes: the owner). */
typedef void (*tools_module_function_cb)(void *user, CUfunction fn, uintptr_t owner);

/* slot 7: calls cb once per function of mod and returns how many; 0 when
 * they cannot be listed. ctx: the module's context (NULL: the current). */
static unsigned tools_module_functions(CUcontext ctx, CUmodule mod, tools_module_function_cb cb,
                                       void *user)
{
    if (gw_debug_level() >= 2)
        fprintf(stderr, "gpuwire: export TOOLS_MODULE[7](ctx=%p, mod=%p, cb=%p, user=%p)\n",
                (void *)ctx, (void *)mod, (void *)(uintptr_t)cb, user);
    if (!mod || !cb)
        return 0;
    if (ctx && cuCtxPushCurrent(ctx) != CUDA_SUCCESS) {
        if (gw_debug_level() >= 1)
            fprintf(stderr, "gpuwire: export TOOLS_MODULE[7]: context %p refused\n", (void *)ctx);
        return 0;
    }
    unsigned n = 0;
    CUfunction *fns = NULL;
    CUresult r = cuModuleGetFunctionCount(&n, mod);
    if (r == CUDA_SUCCESS && n > MAX_MODULE_FUNCTIONS)
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS && n) {
        fns = calloc(n, sizeof *fns);
        r = fns ? cuModuleEnumerateFunctions(fns, n, mod) : CUDA_ERROR_OUT_OF_MEMORY;
    }
    /* Under lazy loading the functions listed are not loaded yet, and
     * cuFuncGetAttribute refuses their thread limit with
     * CUDA_ERROR_FUNCTION_NOT_LOADED (cuda.h): cuFFT asks it of the function
     * it takes here (913 on the H100 in torch_fft), so each is loaded first,
     * one round trip per function (cuFFT: one per module, at plan creation). */
    CUmoduleLoadingMode mode = CU_MODULE_EAGER_LOADING;
    if (r == CUDA_SUCCESS && cuModuleGetLoadingMode(&mode) == CUDA_SUCCESS && mode == CU_MODULE_LAZY_LOADING)
        for (unsigned i = 0; i < n && r == CUDA_SUCCESS; i++)
            r = cuFuncLoad(fns[i]);
    if (ctx) {
        CUcontext popped;
        cuCtxPopCurrent(&popped);
    }
    if (r != CUDA_SUCCESS) {
        free(fns);
        if (gw_debug_level() >= 1)
            fprintf(stderr, "gpuwire: export TOOLS_MODULE[7]: the functions of module %p: %d\n",
                    (void *)mod, (int)r);
        return 0;
    }
    if (gw_debug_level() >= 2)
        fprintf(stderr, "gpuwire: export TOOLS_MODULE[7] -> %u function(s), the first %p\n", n,
                n ? (void *)fns[0] : NULL);
    for (unsigned i = 0; i < n; i++) /* no lock held: the callback is the caller's code */
        cb(user, fns[i], (uintptr_t)mod);
    free(fns);
    return n;
}

/* Slots served. The real size is not known yet; generous, so that a caller
 * that checks the size word before a slot finds it. */
#define TOOLS_MODULE_WORDS 64

static CUresult tools_module_unserved(unsigned slot, uintptr_t a0, uintptr_t a1, uintptr_t a2,
                                      uintptr_t a3, uintptr_t a4, uintptr_t a5)
{
    static atomic_uint_least64_t said;
    uint_least64_t bit = (uint_least64_t)1 << (slot & 63u);
    int first = !(atomic_fetch_or(&said, bit) & bit);
    if (first || gw_debug_level() >= 2)
        fprintf(stderr,
                "gpuwire: export table TOOLS_MODULE slot %u is not implemented "
                "(%#lx, %#lx, %#lx, %#lx, %#lx, %#lx)\n",
                slot, (unsigned long)a0, (unsigned long)a1, (unsigned long)a2,
                (unsigned long)a3, (unsigned long)a4, (unsigned long)a5);
    if (first) { /* a code pointer among them (a callback): which library, where */
        uintptr_t a[6] = {a0, a1, a2, a3, a4, a5};
        for (int i = 0; i < 6; i++) {
            Dl_info di;
            if (a[i] > 0x10000 && dladdr((void *)a[i], &di) && di.dli_fname && di.dli_fbase)
                fprintf(stderr, "gpuwire:   argument %d is %s+%#lx\n", i, di.dli_fname,
                        (unsigned long)(a[i] - (uintptr_t)di.dli_fbase));
        }
    }
    return CUDA_ERROR_NOT_SUPPORTED;
}

/* One function per slot, so each knows its number. Six word arguments are
 * read whatever the caller passed: under the x86-64 and AArch64 calling
 * conventions the extra ones are leftover registers, only printed. */
#define TM1(n)                                                                               \
    static CUresult tools_module_##n(uintptr_t a0, uintptr_t a1, uintptr_t a2, uintptr_t a3, \
                                     uintptr_t a4, uintptr_t a5)                             \
    {                                                                                        \
        return tools_module_unserved(n, a0, a1, a2, a3, a4, a5);                             \
    }
#define TM10(a) TM1(a##0) TM1(a##1) TM1(a##2) TM1(a##3) TM1(a##4) \
    TM1(a##5) TM1(a##6) TM1(a##7) TM1(a##8) TM1(a##9)
#define TM_ALL TM1(1) TM1(2) TM1(3) TM1(4) TM1(5) TM1(6) TM1(7) TM1(8) TM1(9) \
    TM10(1) TM10(2) TM10(3) TM10(4) TM10(5) TM1(60) TM1(61) TM1(62) TM1(63)
TM_ALL
#undef TM1
#define TM1(n) (const void *)tools_module_##n,
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init" /* slot 7 replaces its logging stub */
const void *const gw_tools_module_table[TOOLS_MODULE_WORDS] = {
    (const void *)(TOOLS_MODULE_WORDS * sizeof(void *)),
    TM_ALL
    [7] = (const void *)tools_module_functions,
};
#pragma GCC diagnostic pop
#undef TM1
#undef TM10
#undef TM_ALL
