/* Checking helpers for gpuwire's driver-API test programs (check.h's
 * counterpart without cudart): "PASS <name>" last and exit 0, or
 * "FAIL <name>: why" and exit 1. */
#ifndef GW_PROGRAMS_DRIVER_CHECK_H
#define GW_PROGRAMS_DRIVER_CHECK_H

#include <cuda.h>
#include "prog_fail.h"

/* Every driver call goes through this: an unexpected error ends the program. */
#define CK(call)                                                                \
    do {                                                                        \
        CUresult ck_r_ = (call);                                                \
        if (ck_r_ != CUDA_SUCCESS) {                                            \
            const char *ck_n_ = "?";                                            \
            cuGetErrorName(ck_r_, &ck_n_);                                      \
            FAIL("%s:%d: %s -> %d (%s)", __FILE__, __LINE__, #call, (int)ck_r_, \
                 ck_n_ ? ck_n_ : "?");                                          \
        }                                                                       \
    } while (0)

#endif
