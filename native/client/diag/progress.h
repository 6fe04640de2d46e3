/* One status line on stderr while a long transfer runs (progress.c): bytes
 * sent, rate, content cache hits and an estimate of time left, redrawn in
 * place at most 4 times a second once a transfer has lasted 2 s, cleared
 * when it is done; the same line for a lease that waits in the server's
 * queue. GPUWIRE_PROGRESS: auto (default: on where stderr is a terminal),
 * 0/off (`gpuwire run --quiet`), 1/on (as auto), force (also where stderr
 * is not a terminal, for tests).
 *
 * Every hook costs one predictable branch while the line is off. */
#ifndef GW_CLIENT_PROGRESS_H
#define GW_CLIENT_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#define GW_HIDDEN __attribute__((visibility("hidden")))

GW_HIDDEN extern int gw_progress_enabled; /* set once, before the session opens */

GW_HIDDEN void gw_progress_settings(void); /* reads GPUWIRE_PROGRESS */
GW_HIDDEN void gw_progress_begin_(uint64_t total);
GW_HIDDEN void gw_progress_sent_(uint64_t bytes);
GW_HIDDEN void gw_progress_cache_(uint64_t chunks, uint64_t hit_chunks, uint64_t hit_bytes);
GW_HIDDEN void gw_progress_end_(void);
/* The server's queue text, shown in place; 0 if the line is off (print it as a line instead). */
GW_HIDDEN int gw_progress_queued(const char *text, int n);
GW_HIDDEN void gw_progress_queue_done(void);
/* Before another line goes to stderr: the status line makes way (log.c). */
GW_HIDDEN void gw_progress_make_way(void);

/* A transfer of `total` bytes starts (a host-to-device copy, a module image) ... */
#define gw_progress_begin(total) \
    do { if (__builtin_expect(gw_progress_enabled, 0)) gw_progress_begin_(total); } while (0)
/* ... its bytes leave (or are found in the server's content cache) ... */
#define gw_progress_sent(bytes) \
    do { if (__builtin_expect(gw_progress_enabled, 0)) gw_progress_sent_(bytes); } while (0)
/* ... the cache's answer for `chunks` chunks: `hit_chunks` of them, `hit_bytes`, already there ... */
#define gw_progress_cache(chunks, hit_chunks, hit_bytes) \
    do { if (__builtin_expect(gw_progress_enabled, 0)) gw_progress_cache_(chunks, hit_chunks, hit_bytes); } while (0)
/* ... and it is over (every begin has one end). */
#define gw_progress_end() \
    do { if (__builtin_expect(gw_progress_enabled, 0)) gw_progress_end_(); } while (0)

#endif
