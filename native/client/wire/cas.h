/* Content-addressed transfers in the client (cache.c) and its memo of file
 * hashes (cache_memo.c). docs/cache.md describes both. */
#ifndef GW_CLIENT_CACHE_H
#define GW_CLIENT_CACHE_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#define GW_HIDDEN __attribute__((visibility("hidden")))

/* The server offers a cache and GPUWIRE_CACHE does not say off. */
GW_HIDDEN int gw_cas_on(void);
GW_HIDDEN size_t gw_cas_min_copy(void);  /* copies from this size travel by content address */
GW_HIDDEN size_t gw_cas_min_image(void); /* module images from this size */
/* A host-to-device copy to known device memory, by content address. */
GW_HIDDEN CUresult gw_cas_htod(unsigned op, CUdeviceptr dst, const void *src, size_t n, uint64_t stream);
/* Fill the calling thread's staging buffer with an image, by content address. */
GW_HIDDEN CUresult gw_cas_stage(const void *data, size_t n);

typedef struct gw_memo_src {
    uint64_t dev, ino, size, mtime_ns, off; /* the file, and where the range starts in it */
} gw_memo_src;
GW_HIDDEN int gw_memo_locate(const void *p, size_t n, gw_memo_src *w); /* 1: [p, p+n) is the file's bytes */
GW_HIDDEN int gw_memo_get(const gw_memo_src *w, uint64_t rel, uint64_t len, uint8_t out[32]);
GW_HIDDEN void gw_memo_put(const gw_memo_src *w, const uint64_t *rel, const uint64_t *len, uint8_t (*hash)[32],
                           size_t count);

/* statistics (stats.c) */
typedef struct gw_cas_figures {
    unsigned long long hits, misses, hit_bytes, miss_bytes, sent_bytes;  /* device copies */
    unsigned long long image_hits, image_misses, image_hit_bytes, image_miss_bytes, image_sent_bytes;
    unsigned long long images, image_bytes, images_inline, image_inline_bytes; /* every staged image */
    unsigned long long hashed_bytes, hash_ns, memo_hit_bytes;
} gw_cas_figures;
GW_HIDDEN gw_cas_figures *gw_cas_stats(void);

#endif
