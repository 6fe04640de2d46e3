// bandwidth: cudaMemcpy host-to-device and device-to-host, pageable (malloc) and pinned
// (cudaMallocHost) host memory, in GB/s (1e9 bytes/s), median of several timed batches.
// A batch is max(1, 64 MiB / size) copies then cudaDeviceSynchronize, timed on the host,
// so it is what the application sees. One word per 4 KiB of the source changes before each
// copy, so a content-addressed transport cannot skip the bytes (--same-data: don't).
//   --sizes 1M,16M,256M,1G   (K, M, G: binary units)
//   --modes h2d_pageable,d2h_pageable,h2d_pinned,d2h_pinned
//   --reps R (default 5)  --max-seconds S per mode and size (default 1.5; at least one batch)
//   --exact N   one batch of exactly N copies per selected mode and size (N = 0: just the
//               synchronize), for round-trip counting
#define BENCH_NAME "bandwidth"
#include "bench.h"

#include <stdint.h>

static const char *MODES[] = {"h2d_pageable", "d2h_pageable", "h2d_pinned", "d2h_pinned"};

static int parse_sizes(const char *text, size_t *out, int max)
{
    int n = 0;
    const char *p = text;
    while (*p && n < max) {
        char *end;
        double v = strtod(p, &end);
        size_t mul = 1;
        if (*end == 'K' || *end == 'k') mul = 1 << 10, end++;
        else if (*end == 'M' || *end == 'm') mul = 1 << 20, end++;
        else if (*end == 'G' || *end == 'g') mul = (size_t)1 << 30, end++;
        if (end == p || v <= 0)
            return -1;
        out[n++] = (size_t)(v * (double)mul);
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return n;
}

static void fmt_size(size_t s, char *buf, size_t len)
{
    if (s >= ((size_t)1 << 30) && s % ((size_t)1 << 30) == 0) snprintf(buf, len, "%zuGiB", s >> 30);
    else if (s >= (1 << 20) && s % (1 << 20) == 0) snprintf(buf, len, "%zuMiB", s >> 20);
    else if (s >= (1 << 10) && s % (1 << 10) == 0) snprintf(buf, len, "%zuKiB", s >> 10);
    else snprintf(buf, len, "%zuB", s);
}

static int same_data;
static uint32_t stamp;

static void touch(unsigned char *p, size_t size)
{
    if (same_data)
        return;
    stamp++;
    for (size_t off = 0; off + 4 <= size; off += 4096)
        memcpy(p + off, &stamp, 4);
}

/* Time of `copies` copies then a device synchronize. */
static double batch(int mode, unsigned char *host, void *dev, size_t size, int copies)
{
    int h2d = mode == 0 || mode == 2;
    double t0 = now_s();
    for (int i = 0; i < copies; i++) {
        if (h2d) {
            touch(host, size);
            CK(cudaMemcpy(dev, host, size, cudaMemcpyHostToDevice));
        } else {
            CK(cudaMemcpy(host, dev, size, cudaMemcpyDeviceToHost));
        }
    }
    CK(cudaDeviceSynchronize());
    return now_s() - t0;
}

int main(int argc, char **argv)
{
    size_t sizes[16];
    int nsizes = parse_sizes(opt_str(argc, argv, "--sizes", "1M,16M,256M,1G"), sizes, 16);
    const char *modes = opt_str(argc, argv, "--modes", "h2d_pageable,d2h_pageable,h2d_pinned,d2h_pinned");
    int reps = (int)opt_num(argc, argv, "--reps", 5);
    double budget = opt_num(argc, argv, "--max-seconds", 1.5);
    int exact = (int)opt_num(argc, argv, "--exact", -1);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--same-data"))
            same_data = 1;
    if (nsizes <= 0 || reps < 1 || reps > 64)
        BENCH_FAIL(BENCH_NAME, "bad arguments");

    size_t max = 0;
    for (int i = 0; i < nsizes; i++)
        max = sizes[i] > max ? sizes[i] : max;
    unsigned char *pageable = (unsigned char *)malloc(max), *pinned = NULL, *check = NULL;
    void *dev;
    if (!pageable)
        BENCH_FAIL(BENCH_NAME, "host malloc of %zu bytes", max);
    memset(pageable, 0x5a, max);
    CK(cudaMalloc(&dev, max));
    const char *pinned_error = NULL;
    { // always, so that every run makes the same set-up calls (bench/suite.py subtracts runs)
        cudaError_t e = cudaMallocHost((void **)&pinned, max);
        if (e != cudaSuccess) {
            pinned_error = cudaGetErrorName(e);
            pinned = NULL;
            cudaGetLastError();
        } else {
            memset(pinned, 0x3c, max);
        }
    }

    printf("{\"bench\": \"%s\"", BENCH_NAME);
    if (exact >= 0)
        printf(", \"exact\": %d", exact);
    if (pinned_error)
        printf(", \"pinned_error\": \"%s\"", pinned_error);
    printf(", \"results\": [");
    const char *sep = "";
    double gb[64];
    for (int s = 0; s < nsizes; s++) {
        size_t size = sizes[s];
        char name[32];
        fmt_size(size, name, sizeof name);
        for (int m = 0; m < 4; m++) {
            if (!in_list(modes, MODES[m]) || (m >= 2 && !pinned))
                continue;
            unsigned char *host = m >= 2 ? pinned : pageable;
            int copies = (int)((64u << 20) / size);
            copies = copies < 1 ? 1 : copies;
            if (exact >= 0) { // N copies and a synchronize, even for N = 0
                batch(m, host, dev, size, exact);
                continue;
            }
            batch(m, host, dev, size, 1); // warm-up
            int r = 0;
            double start = now_s();
            while (r < reps && (r == 0 || now_s() - start < budget)) {
                double t = batch(m, host, dev, size, copies);
                gb[r++] = (double)size * copies / t / 1e9;
            }
            printf("%s{\"mode\": \"%s\", \"size\": \"%s\", \"bytes\": %zu, \"gbps\": %.3f, \"reps\": %d, "
                   "\"copies_per_rep\": %d}", sep, MODES[m], name, size, median(gb, r), r, copies);
            sep = ", ";
        }
    }
    printf("]");

    // Correctness: a pattern through the device and back, at the largest size.
    check = (unsigned char *)malloc(max);
    if (check && exact < 0) {
        for (size_t i = 0; i < max; i += 4096)
            pageable[i] = (unsigned char)(i / 4096 * 31 + 7);
        CK(cudaMemcpy(dev, pageable, max, cudaMemcpyHostToDevice));
        unsigned char *back = pinned ? pinned : check;
        CK(cudaMemcpy(back, dev, max, cudaMemcpyDeviceToHost));
        printf(", \"verified\": %s", memcmp(back, pageable, max) ? "false" : "true");
    }
    printf("}\n");
    free(check);
    return 0;
}
