// hostmem_cost: what host memory the GPU sees costs (issue 15, item 4), in
// microseconds (median of many), on --ranges mapped allocations of --pages
// pages each (cudaHostAlloc, cudaHostAllocMapped):
//   sync        cudaStreamSynchronize on an idle stream, nothing written
//   fault       the host's first read of one page after the device wrote the
//               range (cudaMemsetAsync on its device pointer, then a
//               synchronize, both untimed): natively a memory read; through
//               gpuwire the page's fetch (docs/host-memory.md)
//   writeback   a cudaStreamSynchronize after the host wrote --dirty-kib KiB
//               of the first range (the write itself untimed): natively the
//               idle synchronize; through gpuwire also the dirty pages' trip
//   --iters N   per phase (default 200), fewer if --max-seconds runs out
//   --max-seconds S  per phase (default 2); --phases a,b  a subset
#define BENCH_NAME "hostmem_cost"
#include <string.h>

#include "bench.h"

static const char *PHASES[] = {"sync", "fault", "writeback"};
enum { NPHASE = 3 };

static cudaStream_t stream;
static unsigned char **host;
static unsigned char **dev;
static int ranges, pages;
static size_t page = 4096, dirty;
static volatile unsigned sink;

/* untimed set-up of one measurement; then the timed part */
static double one(int phase, int i)
{
    double t0;
    switch (phase) {
    case 0:
        t0 = now_s();
        CK(cudaStreamSynchronize(stream));
        return now_s() - t0;
    case 1: {
        int r = i % ranges;
        CK(cudaMemsetAsync(dev[r], i & 0xff, (size_t)pages * page, stream));
        CK(cudaStreamSynchronize(stream));
        unsigned char *p = host[r] + (size_t)((i / ranges) % pages) * page;
        t0 = now_s();
        sink += *p;
        double t = now_s() - t0;
        if (*p != (unsigned char)(i & 0xff))
            BENCH_FAIL(BENCH_NAME, "a page read back %u, not the %u the device wrote", *p, i & 0xff);
        return t;
    }
    default:
        memset(host[0], i & 0xff, dirty);
        t0 = now_s();
        CK(cudaStreamSynchronize(stream));
        return now_s() - t0;
    }
}

int main(int argc, char **argv)
{
    int iters = (int)opt_num(argc, argv, "--iters", 200);
    double budget = opt_num(argc, argv, "--max-seconds", 2);
    const char *list = opt_str(argc, argv, "--phases", NULL);
    ranges = (int)opt_num(argc, argv, "--ranges", 1);
    pages = (int)opt_num(argc, argv, "--pages", 256);
    dirty = (size_t)opt_num(argc, argv, "--dirty-kib", 1024) * 1024;
    if (iters < 1 || ranges < 1 || ranges > 4096 || pages < 1 || dirty > (size_t)pages * page)
        BENCH_FAIL(BENCH_NAME, "bad arguments");

    CK(cudaStreamCreate(&stream));
    host = (unsigned char **)calloc(ranges, sizeof *host);
    dev = (unsigned char **)calloc(ranges, sizeof *dev);
    double *t = (double *)malloc(sizeof(double) * iters);
    if (!host || !dev || !t)
        BENCH_FAIL(BENCH_NAME, "out of memory");
    for (int r = 0; r < ranges; r++) {
        CK(cudaHostAlloc((void **)&host[r], (size_t)pages * page, cudaHostAllocMapped));
        CK(cudaHostGetDevicePointer((void **)&dev[r], host[r], 0));
        memset(host[r], 0, (size_t)pages * page);
    }
    for (int p = 0; p < NPHASE; p++) // warm-up, every phase
        for (int i = 0; i < 3; i++)
            one(p, i);

    printf("{\"bench\": \"%s\", \"ranges\": %d, \"pages\": %d, \"dirty_kib\": %zu", BENCH_NAME, ranges, pages,
           dirty / 1024);
    for (int p = 0; p < NPHASE; p++) {
        if (list && !in_list(list, PHASES[p]))
            continue;
        double start = now_s();
        int n = 0;
        while (n < iters && (n < 10 || now_s() - start < budget))
            t[n] = one(p, n), n++;
        double sum = 0;
        for (int i = 0; i < n; i++)
            sum += t[i];
        printf(", \"%s_us\": %.3f, \"%s_mean_us\": %.3f, \"%s_n\": %d", PHASES[p], median(t, n) * 1e6, PHASES[p],
               sum / n * 1e6, PHASES[p], n);
    }
    printf("}\n");
    return 0;
}
