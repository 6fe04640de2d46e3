/* Per-process counters; with GPUWIRE_STATS=FILE they are written as JSON at exit. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "client.h"
#include "export_tables.h"

static atomic_ullong calls, round_trips, to_server, from_server;
static atomic_ullong by_op[GW_OP_COUNT];

uint64_t gw_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* GPUWIRE_TRACE_RT=2 also logs every module, kernel and occupancy call (the
 * order in which a library uses a kernel it just loaded). */
static void trace_call(unsigned op)
{
    if (op < 256 || gw_trace_rt_level() < 2)
        return;
    const char *n = gw_op_name(op);
    if (!strncmp(n, "cuKernel", 8) || !strncmp(n, "cuLibrary", 9) || !strncmp(n, "cuFunc", 6) ||
        !strncmp(n, "cuModule", 8) || !strncmp(n, "cuOccupancy", 11))
        gw_log("call %s", n);
}

void gw_stat_call(unsigned op)
{
    trace_call(op);
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    if (op >= 256 && op < 256 + GW_OP_COUNT)
        atomic_fetch_add_explicit(&by_op[op - 256], 1, memory_order_relaxed);
}

/* Round trips by the request that waited (control ops are counted under their own ids below 256). */
static atomic_ullong rt_by_op[256 + GW_OP_COUNT];
/* and the time the application waited in them: where a slow program's time goes */
static atomic_ullong rt_ns_by_op[256 + GW_OP_COUNT], rt_ns;
static atomic_ullong send_ns, sends, queue_wait_ns, queue_waits;

void gw_stat_send(uint64_t ns)
{
    atomic_fetch_add_explicit(&send_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&sends, 1, memory_order_relaxed);
}

void gw_stat_queue_wait(uint64_t ns)
{
    atomic_fetch_add_explicit(&queue_wait_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&queue_waits, 1, memory_order_relaxed);
}

void gw_stat_round_trip(unsigned op, uint64_t waited_ns)
{
    atomic_fetch_add_explicit(&round_trips, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt_ns, waited_ns, memory_order_relaxed);
    if (op < 256 + GW_OP_COUNT) {
        atomic_fetch_add_explicit(&rt_by_op[op], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&rt_ns_by_op[op], waited_ns, memory_order_relaxed);
    }
}

static gw_cas_figures cas; /* content-addressed transfers (cache.c) */
/* device-to-host copies that landed later (landings.c); waits: copies on from
 * pinned memory that had to wait for a landing first */
static atomic_ullong landing_copies, landing_bytes, landing_waits;
void gw_stat_landing(uint64_t bytes, int waited)
{
    if (waited) {
        atomic_fetch_add_explicit(&landing_waits, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&landing_copies, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&landing_bytes, bytes, memory_order_relaxed);
}

gw_cas_figures *gw_cas_stats(void) { return &cas; }

/* lanes (lanes.c): how many are open, copy bytes on them (both ways) */
static atomic_ullong lanes_open, lane_bytes;
void gw_stat_lanes(unsigned open, uint64_t bytes)
{
    if (open)
        atomic_store_explicit(&lanes_open, open, memory_order_relaxed);
    atomic_fetch_add_explicit(&lane_bytes, bytes, memory_order_relaxed);
}

void gw_stat_bytes(uint64_t to, uint64_t from)
{
    atomic_fetch_add_explicit(&to_server, to, memory_order_relaxed);
    atomic_fetch_add_explicit(&from_server, from, memory_order_relaxed);
}

__attribute__((destructor)) static void write_stats(void)
{
    const char *path = getenv("GPUWIRE_STATS");
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "w");
    if (!f) {
        gw_log("cannot write GPUWIRE_STATS file %s", path);
        return;
    }
    fprintf(f, "{\"calls\": %llu, \"round_trips\": %llu, \"round_trip_seconds\": %.6f, \"batches_sent\": %llu, "
               "\"batch_send_seconds\": %.6f, \"queue_waits\": %llu, \"queue_wait_seconds\": %.6f, "
               "\"bytes_to_server\": %llu, "
               "\"bytes_from_server\": %llu, \"lanes\": %llu, \"lane_bytes\": %llu,\n",
            (unsigned long long)calls, (unsigned long long)round_trips, rt_ns / 1e9, (unsigned long long)sends, send_ns / 1e9,
            (unsigned long long)queue_waits, queue_wait_ns / 1e9,
            (unsigned long long)to_server,
            (unsigned long long)from_server, (unsigned long long)lanes_open, (unsigned long long)lane_bytes);
    const gw_hello_ok *s = gw_server_info();
    fprintf(f, " \"server_driver\": \"%s\",\n \"by_function\": {", s ? s->driver_desc : "");
    const char *sep = "";
    for (unsigned i = 0; i < GW_OP_COUNT; i++) {
        unsigned long long n = by_op[i];
        if (n) {
            fprintf(f, "%s\n  \"%s\": %llu", sep, gw_op_names[i], n);
            sep = ",";
        }
    }
    fprintf(f, "\n },\n \"round_trips_by_function\": {");
    sep = "";
    static const char *const control[] = {[GW_OP_FUNC_LAYOUT] = "(parameter layout)", [GW_OP_DEVICE_ATTRS] = "(device attributes)",
                                          [GW_OP_CAS_REFS] = "(cache references)"};
    for (unsigned i = 0; i < 256 + GW_OP_COUNT; i++) {
        unsigned long long n = rt_by_op[i];
        if (!n)
            continue;
        const char *name = i >= 256 ? gw_op_names[i - 256]
                           : i < sizeof control / sizeof control[0] && control[i] ? control[i] : "(control)";
        fprintf(f, "%s\n  \"%s\": %llu", sep, name, n);
        sep = ",";
    }
    fprintf(f, "\n },\n \"round_trip_seconds_by_function\": {");
    sep = "";
    for (unsigned i = 0; i < 256 + GW_OP_COUNT; i++) {
        if (!rt_by_op[i])
            continue;
        const char *name = i >= 256 ? gw_op_names[i - 256]
                           : i < sizeof control / sizeof control[0] && control[i] ? control[i] : "(control)";
        fprintf(f, "%s\n  \"%s\": %.6f", sep, name, rt_ns_by_op[i] / 1e9);
        sep = ",";
    }
    /* bytes_avoided: chunk bytes the server's cache supplied instead of the wire */
    fprintf(f, "\n },\n \"cache\": {\"enabled\": %s, \"hits\": %llu, \"misses\": %llu, \"bytes_avoided\": %llu, "
               "\"miss_bytes\": %llu, \"miss_bytes_sent\": %llu,\n  \"image_hits\": %llu, \"image_misses\": %llu, "
               "\"image_bytes_avoided\": %llu, \"image_miss_bytes\": %llu, \"image_miss_bytes_sent\": %llu,\n  "
               "\"images\": %llu, \"image_bytes\": %llu, \"images_inline\": %llu, \"image_inline_bytes\": %llu,\n  "
               "\"hashed_bytes\": %llu, \"hash_seconds\": %.6f, \"memo_bytes\": %llu},\n"
               " \"landings\": {\"copies\": %llu, \"bytes\": %llu, \"waits\": %llu},\n",
            gw_cas_on() ? "true" : "false", cas.hits, cas.misses, cas.hit_bytes, cas.miss_bytes, cas.sent_bytes,
            cas.image_hits, cas.image_misses, cas.image_hit_bytes, cas.image_miss_bytes, cas.image_sent_bytes,
            cas.images, cas.image_bytes, cas.images_inline, cas.image_inline_bytes, cas.hashed_bytes,
            cas.hash_ns / 1e9, cas.memo_hit_bytes, landing_copies, landing_bytes, landing_waits);
    /* NVRTC's compile cache, kept on this machine (compile_cache.c) */
    gw_compile_cache_figures *cc = gw_compile_cache_stats();
    /* libraries whose kernels the client read from their cubins (modules.c) */
    unsigned long long ii[3];
    gw_image_info_figures(ii);
    fprintf(f, " \"image_info\": {\"read\": %llu, \"checked\": %llu, \"differing\": %llu},\n", ii[0], ii[1], ii[2]);
    fprintf(f, " \"compile_cache\": {\"lookups\": %llu, \"hits\": %llu, \"hit_bytes\": %llu, \"stores\": %llu, "
               "\"stored_bytes\": %llu, \"discarded\": %llu, \"evicted\": %llu}\n}\n",
            (unsigned long long)cc->lookups, (unsigned long long)cc->hits, (unsigned long long)cc->hit_bytes,
            (unsigned long long)cc->stores, (unsigned long long)cc->stored_bytes, (unsigned long long)cc->discarded,
            (unsigned long long)cc->evicted);
    fclose(f);
}
