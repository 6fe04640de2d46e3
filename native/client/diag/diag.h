/* The client's bottom layer: what every other layer uses to speak to the
 * user and to count, calling nothing above it. Log lines (log.c), settings
 * (env.h), the status line of long transfers (progress.h), the library's own
 * helper threads and clock (helpers.c), and the counters GPUWIRE_STATS
 * writes (stats.c; the report itself is stats_report.c, which reads every
 * layer's figures at exit and is called by nobody). Shared with
 * libnvidia-ml.so.1: log.c and helpers.c. Nothing here is exported. */
#ifndef GW_CLIENT_DIAG_H
#define GW_CLIENT_DIAG_H

#include <stddef.h>
#include <stdint.h>

#define GW_HIDDEN __attribute__((visibility("hidden")))

/* ---- logging (log.c) ---- */
GW_HIDDEN void gw_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
GW_HIDDEN int gw_debug(void);        /* GPUWIRE_DEBUG >= 1 */
GW_HIDDEN int gw_debug_level(void);  /* GPUWIRE_DEBUG: 0 to 9 */
GW_HIDDEN int gw_trace_rt_level(void); /* GPUWIRE_TRACE_RT: 0 to 2 */

/* The generated stubs of entry points not forwarded, and a few hand-written
 * refusals: CUDA_ERROR_NOT_SUPPORTED, and the name logged once (unsupported.c). */
int gw_unsupported(unsigned op);

/* ---- helper threads and the clock (helpers.c) ---- */
GW_HIDDEN uint64_t gw_now_ns(void); /* CLOCK_MONOTONIC */
/* A detached helper thread of the library's own (flusher, drainer, progress
 * ticker), taking no part in the application's signals; 0, or -1 if none. */
GW_HIDDEN int gw_start_helper_thread(void *(*fn)(void *));

/* ---- the driver library's counters (stats.c) ---- */
GW_HIDDEN void gw_stat_call(unsigned op);
GW_HIDDEN void gw_stat_round_trip(unsigned op, uint64_t waited_ns);
GW_HIDDEN void gw_stat_send(uint64_t ns); /* time a batch took to leave (the server reading slowly shows here) */
GW_HIDDEN void gw_stat_queue_wait(uint64_t ns); /* time a thread waited to queue a request (another one held the stream) */
GW_HIDDEN void gw_stat_bytes(uint64_t to_server, uint64_t from_server);
GW_HIDDEN void gw_stat_reply(void);       /* a REPLY frame read */
GW_HIDDEN void gw_stat_burst_reply(void); /* a burst's reply after its first */
GW_HIDDEN void gw_stat_lanes(unsigned open, uint64_t bytes);
GW_HIDDEN void gw_stat_lane_piece(unsigned lane, uint64_t bytes); /* a piece's bytes on that lane */ /* lanes open (0: unchanged), copy bytes on them */
GW_HIDDEN void gw_stat_delivery(uint64_t bytes, int waited); /* a delivered copy, or a wait for one */

/* content-addressed transfers (wire/cas_upload.c, wire/cas_hash_memo.c) */
typedef struct gw_cas_figures {
    unsigned long long hits, misses, hit_bytes, miss_bytes, sent_bytes;  /* device copies */
    unsigned long long image_hits, image_misses, image_hit_bytes, image_miss_bytes, image_sent_bytes;
    unsigned long long images, image_bytes, images_inline, image_inline_bytes; /* every staged image */
    unsigned long long hashed_bytes, hash_ns, memo_hit_bytes;
    unsigned long long cold_plain_bytes; /* copies sent plain for the worker to store (a run of misses) */
} gw_cas_figures;
GW_HIDDEN gw_cas_figures *gw_cas_stats(void);

#endif
