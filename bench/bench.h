/* Shared helpers of the C benchmarks: wall-clock time, argument parsing, the JSON result
 * line, and failing with a JSON error line (bench/suite.py reads the last JSON line). */
#ifndef GW_BENCH_H
#define GW_BENCH_H

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define BENCH_FAIL(name, ...)                                                      \
    do {                                                                           \
        char msg_[512];                                                            \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                  \
        printf("{\"bench\": \"%s\", \"error\": \"%s\"}\n", name, msg_);            \
        exit(1);                                                                   \
    } while (0)

#define CK(call)                                                                   \
    do {                                                                           \
        cudaError_t e_ = (call);                                                   \
        if (e_ != cudaSuccess)                                                     \
            BENCH_FAIL(BENCH_NAME, "%s: %s (line %d)", #call, cudaGetErrorName(e_), \
                       __LINE__);                                                  \
    } while (0)

/* --name VALUE options; returns VALUE or def. */
static inline const char *opt_str(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return def;
}

static inline double opt_num(int argc, char **argv, const char *name, double def)
{
    const char *v = opt_str(argc, argv, name, NULL);
    return v ? atof(v) : def;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Whether name is one of the comma-separated words of list. */
static inline int in_list(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += len)
        if ((p == list || p[-1] == ',') && (p[len] == 0 || p[len] == ','))
            return 1;
    return 0;
}

/* Median of v[0..n) (sorts v). */
static inline double median(double *v, int n)
{
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The kernel every C benchmark launches: the signature (and so the mangled name) of
 * tests/programs/vector_add.cu, which the CPU stand-in implements; with n = 0 it does
 * nothing, so on a GPU it is an empty kernel. */
__global__ void vector_add(const float *a, const float *b, float *c, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        c[i] = a[i] + b[i];
}

#endif
