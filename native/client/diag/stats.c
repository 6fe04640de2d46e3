/* The driver library's per-process counters, counted by every layer; with
 * GPUWIRE_STATS=FILE stats_report.c writes them as JSON at exit. */
#include <stdatomic.h>
#include <string.h>

#include "../../generated/gw_ops.h"
#include "diag.h"
#include "stats_counters.h"

atomic_ullong gw_stats_calls, gw_stats_round_trips, gw_stats_to_server, gw_stats_from_server;
atomic_ullong gw_stats_by_op[GW_OP_COUNT];

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
    atomic_fetch_add_explicit(&gw_stats_calls, 1, memory_order_relaxed);
    if (op >= 256 && op < 256 + GW_OP_COUNT)
        atomic_fetch_add_explicit(&gw_stats_by_op[op - 256], 1, memory_order_relaxed);
}

/* Round trips by the request that waited (control ops are counted under their own ids below 256). */
atomic_ullong gw_stats_rt_by_op[256 + GW_OP_COUNT];
/* and the time the application waited in them: where a slow program's time goes */
atomic_ullong gw_stats_rt_ns_by_op[256 + GW_OP_COUNT], gw_stats_rt_ns;
atomic_ullong gw_stats_send_ns, gw_stats_sends, gw_stats_queue_wait_ns, gw_stats_queue_waits;

void gw_stat_send(uint64_t ns)
{
    atomic_fetch_add_explicit(&gw_stats_send_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&gw_stats_sends, 1, memory_order_relaxed);
}

void gw_stat_queue_wait(uint64_t ns)
{
    atomic_fetch_add_explicit(&gw_stats_queue_wait_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&gw_stats_queue_waits, 1, memory_order_relaxed);
}

void gw_stat_round_trip(unsigned op, uint64_t waited_ns)
{
    atomic_fetch_add_explicit(&gw_stats_round_trips, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&gw_stats_rt_ns, waited_ns, memory_order_relaxed);
    if (op < 256 + GW_OP_COUNT) {
        atomic_fetch_add_explicit(&gw_stats_rt_by_op[op], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&gw_stats_rt_ns_by_op[op], waited_ns, memory_order_relaxed);
    }
}

gw_cas_figures gw_stats_cas; /* content-addressed transfers (wire/cas_upload.c) */
/* device-to-host copies delivered later (state/deliveries.c); waits: copies on
 * from pinned memory that had to wait for a delivery first */
atomic_ullong gw_stats_delivery_copies, gw_stats_delivery_bytes, gw_stats_delivery_waits;
void gw_stat_delivery(uint64_t bytes, int waited)
{
    if (waited) {
        atomic_fetch_add_explicit(&gw_stats_delivery_waits, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&gw_stats_delivery_copies, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&gw_stats_delivery_bytes, bytes, memory_order_relaxed);
}

gw_cas_figures *gw_cas_stats(void) { return &gw_stats_cas; }

/* lanes (wire/lanes.c): how many are open, copy bytes on them (both ways) */
atomic_ullong gw_stats_lanes_open, gw_stats_lane_bytes;
void gw_stat_lanes(unsigned open, uint64_t bytes)
{
    if (open)
        atomic_store_explicit(&gw_stats_lanes_open, open, memory_order_relaxed);
    atomic_fetch_add_explicit(&gw_stats_lane_bytes, bytes, memory_order_relaxed);
}

/* REPLY frames read, and those of them that followed a burst's first (the
 * burst waited once): round trips = replies - burst replies, which a test
 * checks against the worker's own count of the replies it sent */
atomic_ullong gw_stats_replies, gw_stats_burst_replies;
void gw_stat_reply(void) { atomic_fetch_add_explicit(&gw_stats_replies, 1, memory_order_relaxed); }
void gw_stat_burst_reply(void) { atomic_fetch_add_explicit(&gw_stats_burst_replies, 1, memory_order_relaxed); }

/* bytes each lane carried: a test checks that copies spread over all of them */
atomic_ullong gw_stats_lane_bytes_by_lane[GW_LANES_MAX];
void gw_stat_lane_piece(unsigned lane, uint64_t bytes)
{
    if (lane < GW_LANES_MAX)
        atomic_fetch_add_explicit(&gw_stats_lane_bytes_by_lane[lane], bytes, memory_order_relaxed);
}

void gw_stat_bytes(uint64_t to, uint64_t from)
{
    atomic_fetch_add_explicit(&gw_stats_to_server, to, memory_order_relaxed);
    atomic_fetch_add_explicit(&gw_stats_from_server, from, memory_order_relaxed);
}

