// launch_throughput: empty-kernel launches per second. A batch is N launches on the default
// stream followed by one cudaDeviceSynchronize; launches/s = N / (time of the batch).
//   --launches N      batch size (default 100000; fewer if a calibration batch says the
//                     batch would take longer than --max-seconds / --reps)
//   --reps R          batches measured (default 3), median reported
//   --max-seconds S   time budget of the measured batches (default 3)
//   --exact N         one batch of exactly N launches, no calibration (N = 0: set-up only);
//                     bench/suite.py uses it to count round trips per launch
//   --host-us G       G µs of host work (a busy loop) before each launch, as a framework's
//                     dispatch does between kernels: then the launches leave as a trickle
//                     and what each costs the application shows as launches/s below 1e6/G
#define BENCH_NAME "launch_throughput"
#include "bench.h"

static double host_s; // --host-us

static double batch(int n, double *enqueue_s)
{
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        for (double until = host_s > 0 ? now_s() + host_s : 0; now_s() < until;)
            ;
        vector_add<<<1, 1>>>(NULL, NULL, NULL, 0);
    }
    double t1 = now_s();
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    double t2 = now_s();
    if (enqueue_s)
        *enqueue_s = t1 - t0;
    return t2 - t0;
}

int main(int argc, char **argv)
{
    int exact = (int)opt_num(argc, argv, "--exact", -1);
    int n = (int)opt_num(argc, argv, "--launches", 100000);
    int reps = (int)opt_num(argc, argv, "--reps", 3);
    double budget = opt_num(argc, argv, "--max-seconds", 3);
    host_s = opt_num(argc, argv, "--host-us", 0) / 1e6;
    if (reps < 1 || reps > 100 || n < 1)
        BENCH_FAIL(BENCH_NAME, "bad arguments");

    CK(cudaFree(0));
    batch(10, NULL); // warm-up: module load, first launch
    if (exact >= 0) {
        double enq = 0, t = exact ? batch(exact, &enq) : 0;
        printf("{\"bench\": \"%s\", \"exact\": %d, \"seconds\": %.6f}\n", BENCH_NAME, exact, t);
        return 0;
    }
    int calib = 200;
    double per = batch(calib, NULL) / calib;
    int fit = (int)(budget / reps / per);
    if (fit < n)
        n = fit < calib ? calib : fit;

    double rate[100], enq_us[100], enq;
    for (int r = 0; r < reps; r++) {
        double t = batch(n, &enq);
        rate[r] = n / t;
        enq_us[r] = enq / n * 1e6;
    }
    double best = 0;
    for (int r = 0; r < reps; r++)
        best = rate[r] > best ? rate[r] : best;
    printf("{\"bench\": \"%s\", \"launches\": %d, \"reps\": %d, \"launches_per_s\": %.1f, "
           "\"best_launches_per_s\": %.1f, \"enqueue_us_per_launch\": %.3f, \"host_us\": %.1f, "
           "\"app_syncs_per_batch\": 1}\n",
           BENCH_NAME, n, reps, median(rate, reps), best, median(enq_us, reps), host_s * 1e6);
    return 0;
}
