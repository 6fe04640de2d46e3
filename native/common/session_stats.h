/* Per-session counters the worker keeps for the server, in a small shared
 * memory block the server creates (a memfd) and hands to the worker as
 * GPUWIRE_SESSION_STATS_FD. The worker only stores into it; the server reads
 * it whenever it reports (status, /metrics, gpuwire top): no messages, no
 * cost on the call path beyond a few stores per request.
 *
 * Layout: declared in codegen/protocol.txt ("sstats"), generated into
 * native/generated/session_stats_layout.h and src/gpuwire/wire_generated.py
 * (which src/gpuwire/session_stats.py reads). New fields go at the end, and
 * `size` tells the reader which exist. */
#ifndef GW_SESSION_STATS_H
#define GW_SESSION_STATS_H

#include <stdint.h>

#include "../generated/session_stats_layout.h"

/* (The content cache's figures reach the server as the worker's "cache stats:" log
 * lines, src/gpuwire/cache.py; a live copy could be added here the same way.) */

/* NULL unless the server gave this worker a block (native/worker/core/session_stats.c). */
extern gw_session_stats *gw_sstats;

#define GW_SSTATS_ADD(field, n)                                                                                    \
    do {                                                                                                           \
        if (gw_sstats)                                                                                             \
            __atomic_fetch_add(&gw_sstats->field, (uint64_t)(n), __ATOMIC_RELAXED);                                \
    } while (0)

/* A request starts running (1) or is done (0): lets the server tell a long call from an idle client. */
void gw_sstats_busy(int on);
/* The request about to run: the server names it when a session seems stuck. */
#define GW_SSTATS_RUNNING(op)                                                                                     \
    do {                                                                                                           \
        if (gw_sstats)                                                                                             \
            __atomic_store_n(&gw_sstats->busy_op, (uint64_t)(op), __ATOMIC_RELAXED);                               \
    } while (0)

#endif
