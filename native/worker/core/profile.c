/* Where the worker's time goes, by op: with GPUWIRE_WORKER_PROFILE=1 in the
 * server's environment each job's run time is added up and the busiest ops
 * are logged when the session ends. Off, it costs one branch per job. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../../generated/wire_props.h"
#include "core.h"

/* Ops by id (control ops below 256, driver calls above), then the reader's
 * own ids (gw_prof_reader) in slots of their own after them. */
#define OP_SLOTS (256 + GW_OP_COUNT)
#define SLOTS (OP_SLOTS + GW_PROF_READER_IDS)
static int enabled = -1;
static atomic_ullong ns_by_op[SLOTS], n_by_op[SLOTS], max_by_op[SLOTS];

int gw_prof_on(void)
{
    if (enabled < 0) {
        const char *v = getenv("GPUWIRE_WORKER_PROFILE");
        enabled = v && *v && *v != '0';
    }
    return enabled;
}

uint64_t gw_prof_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void add(unsigned slot, uint64_t ns)
{
    atomic_fetch_add_explicit(&ns_by_op[slot], ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&n_by_op[slot], 1, memory_order_relaxed);
    unsigned long long m = atomic_load_explicit(&max_by_op[slot], memory_order_relaxed);
    while (ns > m && !atomic_compare_exchange_weak(&max_by_op[slot], &m, ns))
        ;
}

void gw_prof_add(unsigned op, uint64_t ns)
{
    if (op < OP_SLOTS)
        add(op, ns);
}

void gw_prof_add_reader(gw_prof_reader id, uint64_t ns)
{
    if ((unsigned)id < GW_PROF_READER_IDS)
        add(OP_SLOTS + (unsigned)id, ns);
}

void gw_prof_report(void)
{
    if (gw_prof_on() <= 0)
        return;
    unsigned long long total = 0;
    for (unsigned i = 0; i < OP_SLOTS; i++) /* jobs' time, not the reader's */
        total += ns_by_op[i];
    gw_wlog("profile: %.3f s running jobs; busiest ops:", total / 1e9);
    int shown[SLOTS] = {0};
    for (int k = 0; k < 15; k++) {
        int best = -1;
        for (unsigned i = 0; i < SLOTS; i++)
            if (!shown[i] && n_by_op[i] && (best < 0 || ns_by_op[i] > ns_by_op[best]))
                best = (int)i;
        if (best < 0)
            break;
        shown[best] = 1;
        static const char *const reader[GW_PROF_READER_IDS] = {[GW_PROF_READ_LARGE] = "(reader: large payloads)",
                                                               [GW_PROF_READ_ROOM] = "(reader: waiting for room)"};
        char name[40];
        if (best >= OP_SLOTS)
            snprintf(name, sizeof name, "%s", reader[best - OP_SLOTS]);
        else if (best < 256 && gw_control_op_label((unsigned)best))
            snprintf(name, sizeof name, "%s", gw_control_op_label((unsigned)best));
        else if (best < 256)
            snprintf(name, sizeof name, "(control op %d)", best);
        gw_wlog("profile:   %-40s %9llu jobs %10.3f ms  mean %8.1f us  max %9.1f us",
                best >= 256 && best < OP_SLOTS ? gw_op_name((unsigned)best) : name, n_by_op[best], ns_by_op[best] / 1e6,
                ns_by_op[best] / 1e3 / n_by_op[best], max_by_op[best] / 1e3);
    }
}
