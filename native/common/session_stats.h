/* Per-session counters the worker keeps for the server, in a small shared
 * memory block the server creates (a memfd) and hands to the worker as
 * GPUWIRE_SESSION_STATS_FD. The worker only stores into it; the server reads
 * it whenever it reports (status, /metrics, gpuwire top): no messages, no
 * cost on the call path beyond a few stores per request.
 *
 * Layout: native-endian (the worker and the server share a machine), every
 * field after `size` a u64 at an 8-byte offset, in this order;
 * src/gpuwire/session_stats.py mirrors it (a test keeps the two in step).
 * New fields go at the end, and `size` tells the reader which exist. */
#ifndef GW_SESSION_STATS_H
#define GW_SESSION_STATS_H

#include <stdint.h>

#define GW_SSTATS_MAGIC 0x31535347u /* "GSS1" */
#define GW_SSTATS_ENV "GPUWIRE_SESSION_STATS_FD"

typedef struct gw_session_stats {
    uint32_t magic;
    uint32_t size;             /* sizeof(gw_session_stats) as the worker knows it */
    uint64_t requests;         /* request frames received (calls, posted or not) */
    uint64_t replies;          /* replies sent: each a round trip the client waited for */
    uint64_t bytes_in;         /* frame bytes received, headers included */
    uint64_t bytes_out;        /* frame bytes sent, headers included */
    uint64_t busy_since_ns;    /* CLOCK_MONOTONIC ns when the request running now began; 0: none */
} gw_session_stats;
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

#endif
