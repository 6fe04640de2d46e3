/* NVML's own counters (the wire layer counts through them: gw_wire_count_with)
 * and the unsupported-symbol log; with GPUWIRE_STATS=FILE they are written
 * to FILE.nvml at exit. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "nvml_client.h"

static atomic_ullong calls, round_trips, to_server, from_server;
static atomic_ullong by_op[GW_NVML_OP_COUNT], rt_by_op[GW_NVML_OP_COUNT];

static void count_call(unsigned op)
{
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    if (gw_is_nvml_op(op))
        atomic_fetch_add_explicit(&by_op[op - GW_NVML_OP_FIRST], 1, memory_order_relaxed);
}

static void count_round_trip(unsigned op, uint64_t waited_ns)
{
    (void)waited_ns; /* NVML sessions report counts only */
    atomic_fetch_add_explicit(&round_trips, 1, memory_order_relaxed);
    if (gw_is_nvml_op(op))
        atomic_fetch_add_explicit(&rt_by_op[op - GW_NVML_OP_FIRST], 1, memory_order_relaxed);
}

static void count_bytes(uint64_t to, uint64_t from)
{
    atomic_fetch_add_explicit(&to_server, to, memory_order_relaxed);
    atomic_fetch_add_explicit(&from_server, from, memory_order_relaxed);
}

/* NVML sessions report counts only: no send or queue times, no lanes. */
static const gw_wire_counters counters = {.call = count_call, .round_trip = count_round_trip, .bytes = count_bytes};

__attribute__((constructor)) static void nvml_stats_init(void) { gw_wire_count_with(&counters); }

int gw_nvml_unsupported(unsigned op)
{
    static atomic_uchar seen[GW_NVML_OP_COUNT];
    count_call(op);
    if (gw_is_nvml_op(op) && !atomic_exchange(&seen[op - GW_NVML_OP_FIRST], 1))
        gw_log("%s is not supported by gpuwire: returning NVML_ERROR_NOT_SUPPORTED", gw_nvml_op_name(op));
    return NVML_ERROR_NOT_SUPPORTED;
}

/* With GPUWIRE_STATS=FILE the driver library writes FILE; NVML's counts go to
 * FILE.nvml, and only if NVML was used, so neither overwrites the other. */
__attribute__((destructor)) static void write_stats(void)
{
    const char *path = getenv("GPUWIRE_STATS");
    if (!path || !*path || !calls)
        return;
    char name[4096];
    snprintf(name, sizeof name, "%s.nvml", path);
    FILE *f = fopen(name, "w");
    if (!f) {
        gw_log("cannot write NVML statistics to %s", name);
        return;
    }
    fprintf(f, "{\"calls\": %llu, \"round_trips\": %llu, \"bytes_to_server\": %llu, \"bytes_from_server\": %llu,\n",
            (unsigned long long)calls, (unsigned long long)round_trips, (unsigned long long)to_server,
            (unsigned long long)from_server);
    static atomic_ullong *const tables[2] = {by_op, rt_by_op};
    static const char *const keys[2] = {"by_function", "round_trips_by_function"};
    for (int t = 0; t < 2; t++) {
        fprintf(f, "%s \"%s\": {", t ? ",\n" : "", keys[t]);
        const char *sep = "";
        for (unsigned i = 0; i < GW_NVML_OP_COUNT; i++) {
            unsigned long long n = tables[t][i];
            if (n) {
                fprintf(f, "%s\n  \"%s\": %llu", sep, gw_nvml_op_names[i], n);
                sep = ",";
            }
        }
        fprintf(f, "\n }");
    }
    fprintf(f, "\n}\n");
    fclose(f);
}
