/* Shared by the compat CUDA C programs: error checks and the result line. */
#ifndef COMPAT_H
#define COMPAT_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cuda_runtime.h>

#define CHECK(call)                                                                   \
    do {                                                                              \
        cudaError_t err_ = (call);                                                    \
        if (err_ != cudaSuccess) {                                                    \
            fprintf(stderr, "%s:%d: %s failed: %s (%d)\n", __FILE__, __LINE__, #call, \
                    cudaGetErrorString(err_), (int)err_);                             \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

/* FNV-1a, 64 bits: a stable digest of result bytes (equality, not security). */
static inline uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ULL

static inline void emit(const char *name, uint64_t digest, const char *notes)
{
    fflush(stderr);
    printf("{\"name\": \"%s\", \"digest\": \"fnv1a64:%016llx\", \"tolerance\": \"exact\", \"notes\": \"%s\"}\n",
           name, (unsigned long long)digest, notes);
    fflush(stdout);
}
#endif
