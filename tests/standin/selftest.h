/* TEST DOUBLE self-tests (selftest.c, selftest_devices.c): the stand-in library opened with
 * dlopen as the worker opens it, and checks that stop the program at the first failure. */
#ifndef GW_STANDIN_SELFTEST_H
#define GW_STANDIN_SELFTEST_H

#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static void *g_lib;
static int g_checks;

static void *sym(const char *name)
{
    void *p = dlsym(g_lib, name);
    if (!p) {
        printf("FAIL standin_selftest: symbol %s is not exported\n", name);
        exit(1);
    }
    return p;
}

/* F(cuMemAlloc_v2)(...) calls the library's export of that name, with the header's type. */
#define F(name) ((__typeof__(&name))sym(#name))
/* An export the header does not declare, called with the type of one it does. */
#define FAS(like, name) ((__typeof__(&like))sym(name))

#define EXPECT(call, want)                                                                      \
    do {                                                                                        \
        CUresult got_ = (call);                                                                 \
        g_checks++;                                                                             \
        if (got_ != (want)) {                                                                   \
            printf("FAIL standin_selftest: %s:%d: %s -> %d, expected %d (%s)\n", __FILE__,     \
                   __LINE__, #call, (int)got_, (int)(want), #want);                             \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)
#define OK(call) EXPECT(call, CUDA_SUCCESS)
#define TRUE(cond)                                                                              \
    do {                                                                                        \
        g_checks++;                                                                             \
        if (!(cond)) {                                                                          \
            printf("FAIL standin_selftest: %s:%d: %s\n", __FILE__, __LINE__, #cond);           \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

#endif
