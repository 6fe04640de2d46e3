/* Shared checking helpers for gpuwire's CUDA test programs.
 * Every program prints "PASS <name>" last and exits 0, or "FAIL <name>: why" and exits 1. */
#ifndef GW_PROGRAMS_CHECK_H
#define GW_PROGRAMS_CHECK_H

#include <cuda_runtime.h>
#include "prog_fail.h"

/* Every CUDA runtime call goes through this: an unexpected error ends the program. */
#define CK(call)                                                                  \
    do {                                                                          \
        cudaError_t ck_err_ = (call);                                             \
        if (ck_err_ != cudaSuccess)                                               \
            FAIL("%s:%d: %s -> %s (%s)", __FILE__, __LINE__, #call,              \
                 cudaGetErrorName(ck_err_), cudaGetErrorString(ck_err_));         \
    } while (0)

/* A call that must fail with exactly this error. */
#define EXPECT_ERR(call, want)                                                    \
    do {                                                                          \
        cudaError_t ck_err_ = (call);                                             \
        if (ck_err_ != (want))                                                    \
            FAIL("%s:%d: %s -> %s, expected %s", __FILE__, __LINE__, #call,      \
                 cudaGetErrorName(ck_err_), cudaGetErrorName(want));              \
    } while (0)

#define PASS()                          \
    do {                                \
        printf("PASS %s\n", PROG);      \
        fflush(stdout);                 \
        return 0;                       \
    } while (0)

#endif
