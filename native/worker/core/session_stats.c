/* The worker's side of the per-session counters (common/session_stats.h):
 * maps the block the server passed, if any. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../common/session_stats.h"

gw_session_stats *gw_sstats;

__attribute__((constructor)) static void sstats_open(void)
{
    const char *v = getenv(GW_SSTATS_ENV);
    if (!v || !*v)
        return;
    char *end;
    long fd = strtol(v, &end, 10);
    unsetenv(GW_SSTATS_ENV); /* not for the driver, nor for anything it starts */
    struct stat st;
    if (*end || fd < 0 || fd > 1 << 20 || fstat((int)fd, &st) || (size_t)st.st_size < sizeof(gw_session_stats))
        return;
    void *p = mmap(NULL, sizeof(gw_session_stats), PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
    close((int)fd);
    if (p == MAP_FAILED)
        return;
    gw_sstats = p;
    memset(gw_sstats, 0, sizeof *gw_sstats);
    gw_sstats->size = sizeof *gw_sstats;
    __atomic_store_n(&gw_sstats->magic, GW_SSTATS_MAGIC, __ATOMIC_RELEASE);
}

void gw_sstats_busy(int on)
{
    if (!gw_sstats)
        return;
    uint64_t ns = 0;
    if (on) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        ns += !ns;
    }
    __atomic_store_n(&gw_sstats->busy_since_ns, ns, __ATOMIC_RELAXED);
}
