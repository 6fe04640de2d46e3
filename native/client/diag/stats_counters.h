/* The counters stats.c keeps, read by stats_report.c at exit (diag/ only). */
#ifndef GW_CLIENT_STATS_COUNTERS_H
#define GW_CLIENT_STATS_COUNTERS_H

#include <stdatomic.h>

#include "../../generated/gw_ops.h"
#include "diag.h"

GW_HIDDEN extern atomic_ullong gw_stats_calls, gw_stats_round_trips, gw_stats_to_server, gw_stats_from_server;
GW_HIDDEN extern atomic_ullong gw_stats_by_op[GW_OP_COUNT];
GW_HIDDEN extern atomic_ullong gw_stats_rt_by_op[256 + GW_OP_COUNT], gw_stats_rt_ns_by_op[256 + GW_OP_COUNT],
    gw_stats_rt_ns;
GW_HIDDEN extern atomic_ullong gw_stats_send_ns, gw_stats_sends, gw_stats_queue_wait_ns, gw_stats_queue_waits;
GW_HIDDEN extern gw_cas_figures gw_stats_cas;
GW_HIDDEN extern atomic_ullong gw_stats_delivery_copies, gw_stats_delivery_bytes, gw_stats_delivery_waits;
GW_HIDDEN extern atomic_ullong gw_stats_lanes_open, gw_stats_lane_bytes;
GW_HIDDEN extern atomic_ullong gw_stats_replies, gw_stats_burst_replies;
GW_HIDDEN extern atomic_ullong gw_stats_lane_bytes_by_lane[GW_LANES_MAX];

#endif
