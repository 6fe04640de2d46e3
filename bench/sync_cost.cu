// sync_cost: what one synchronization point costs, in microseconds (median of many):
//   stream_sync    cudaStreamSynchronize on an idle stream
//   device_sync    cudaDeviceSynchronize with nothing pending
//   d2h_4B         cudaMemcpy of 4 bytes device-to-host (a value read back)
//   launch_sync    an empty-kernel launch then cudaStreamSynchronize (the usual pattern)
//   --iters N         per phase (default 2000), fewer if --max-seconds per phase runs out
//   --max-seconds S   per phase (default 1)
//   --phases a,b      a subset (default all)
//   --exact N         exactly N of each selected phase, no time limit (N = 0: set-up only)
#define BENCH_NAME "sync_cost"
#include "bench.h"

static const char *PHASES[] = {"stream_sync", "device_sync", "d2h_4B", "launch_sync"};
enum { NPHASE = 4 };

static cudaStream_t stream;
static int *dev_word;

static void one(int phase)
{
    int v;
    switch (phase) {
    case 0: CK(cudaStreamSynchronize(stream)); break;
    case 1: CK(cudaDeviceSynchronize()); break;
    case 2: CK(cudaMemcpy(&v, dev_word, sizeof v, cudaMemcpyDeviceToHost)); break;
    case 3:
        vector_add<<<1, 1, 0, stream>>>(NULL, NULL, NULL, 0);
        CK(cudaStreamSynchronize(stream));
        break;
    }
}

int main(int argc, char **argv)
{
    int exact = (int)opt_num(argc, argv, "--exact", -1);
    int iters = (int)opt_num(argc, argv, "--iters", 2000);
    double budget = opt_num(argc, argv, "--max-seconds", 1);
    const char *list = opt_str(argc, argv, "--phases", NULL);
    if (exact >= 0)
        iters = exact;
    if (iters < 0)
        BENCH_FAIL(BENCH_NAME, "bad arguments");

    CK(cudaStreamCreate(&stream));
    CK(cudaMalloc((void **)&dev_word, sizeof(int)));
    CK(cudaMemset(dev_word, 0, sizeof(int)));
    for (int p = 0; p < NPHASE; p++) // warm-up, every phase
        for (int i = 0; i < 5; i++)
            one(p);

    double *t = (double *)malloc(sizeof(double) * (iters ? iters : 1));
    if (!t)
        BENCH_FAIL(BENCH_NAME, "out of memory");
    printf("{\"bench\": \"%s\"", BENCH_NAME);
    if (exact >= 0)
        printf(", \"exact\": %d", exact);
    for (int p = 0; p < NPHASE; p++) {
        if (list && !in_list(list, PHASES[p]))
            continue;
        double start = now_s();
        int n = 0;
        while (n < iters && (exact >= 0 || n < 20 || now_s() - start < budget)) {
            double t0 = now_s();
            one(p);
            t[n++] = now_s() - t0;
        }
        double sum = 0;
        for (int i = 0; i < n; i++)
            sum += t[i];
        if (n)
            printf(", \"%s_us\": %.3f, \"%s_mean_us\": %.3f, \"%s_n\": %d", PHASES[p], median(t, n) * 1e6,
                   PHASES[p], sum / n * 1e6, PHASES[p], n);
    }
    printf("}\n");
    return 0;
}
