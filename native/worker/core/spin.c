/* How long the worker's threads poll before they sleep: the reader on the
 * client's connection (engine/reader.c) and a job thread with nothing to run
 * (engine/scheduler.c). Each is a setting in microseconds, on by default only
 * on a machine with cores to spare, read once into the caller's cache
 * (-1 until then). */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

#define SPIN_MIN_CPUS 8

uint64_t gw_spin_setting_ns(int64_t *cache, const char *name, long default_us, long max_us)
{
    if (*cache >= 0) /* read before (threads racing here read the same value) */
        return (uint64_t)*cache;
    long us = sysconf(_SC_NPROCESSORS_ONLN) >= SPIN_MIN_CPUS ? default_us : 0;
    const char *e = getenv(name);
    if (e && *e) {
        char *end = NULL;
        long x = strtol(e, &end, 10);
        if (*end || x < 0 || x > max_us)
            gw_wlog("%s=%s is not a number of microseconds from 0 to %ld: using the default, %ld", name, e, max_us, us);
        else
            us = x;
    }
    *cache = (int64_t)us * 1000;
    return (uint64_t)*cache;
}

uint64_t gw_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
