/* The worker's content-addressed chunk store on disk (cas_store.c); its ops are in cas_ops.c. */
#ifndef GW_WORKER_CAS_STORE_H
#define GW_WORKER_CAS_STORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gw_cas_counters {
    atomic_ullong hits, misses, hit_bytes, miss_bytes; /* chunk references answered / not */
    atomic_ullong stored, stored_bytes, corrupt, evicted, evicted_bytes;
    atomic_ullong store_failed; /* writes into the folder that failed (full disk, I/O error), retries included */
    atomic_ullong store_skipped; /* chunks not stored because the background writer's queue was full */
} gw_cas_counters;

extern gw_cas_counters gw_cas_stats;

int gw_cas_open(const char *dir, uint64_t max_bytes); /* 0 ok */
int gw_cas_enabled(void);
/* Read an entry of len bytes into buf: 2 read and checked (its trailer's
 * length and CRCs match its bytes, its hash is h); 1 read, an entry of an
 * older format: the caller verifies its SHA-256, rejects a mismatch and
 * upgrades a match; 0 absent, or of the wrong size, checksums or name (then
 * removed). */
int gw_cas_load(const uint8_t h[32], void *buf, size_t len);
void gw_cas_reject(const uint8_t h[32], const char *why); /* remove a corrupt entry, count and log it */
/* Store bytes whose hash the caller computed itself. Best effort: a failure
 * is counted and logged, and a full disk evicts and retries once. */
void gw_cas_put(const uint8_t h[32], const void *data, size_t len);
/* Store bytes that just arrived from a client, in the background: a copy is
 * queued for the writer threads, which hash it and store it under that hash.
 * Never waits for the disk: with the queue full the chunk is not stored
 * (store_skipped). Without a writer thread it is stored here, as gw_cas_put. */
void gw_cas_put_later(const void *data, size_t len);
/* Wait until the writers have stored (or failed) everything queued, at most
 * max_ms: 0 done, -1 still writing (what is unfinished stays in DIR/tmp). */
int gw_cas_drain(unsigned max_ms);
/* Rewrite an older-format entry (SHA-256 checked by the caller) in the current one, in the background. */
void gw_cas_upgrade(const uint8_t h[32], const void *data, size_t len);
void gw_cas_evict(void); /* down to the cap, least recently used first */
void gw_cas_report(int force); /* counters to the session-stats block; a "cache stats:" log line (at most 1/s unless forced) */
void gw_cas_prof_report(void); /* with GPUWIRE_WORKER_PROFILE: where cache hits spent their time */
int gw_cas_zstd(void);    /* libzstd is loaded: GW_CAS_CODEC_ZSTD accepted */
void gw_cas_zstd_load(void);

#endif
