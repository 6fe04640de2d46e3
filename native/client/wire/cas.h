/* Content-addressed transfers in the client (cas_upload.c) and its memo of
 * the chunk hashes of file-backed memory (cas_hash_memo.c). docs/cache.md
 * describes both; their figures are diag.h's gw_cas_figures. */
#ifndef GW_CLIENT_CACHE_H
#define GW_CLIENT_CACHE_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#include "../diag/diag.h"

/* The server offers a cache and GPUWIRE_CACHE does not say off. */
GW_HIDDEN int gw_cas_on(void);
GW_HIDDEN size_t gw_cas_min_copy(void);  /* copies from this size travel by content address */
GW_HIDDEN int gw_cas_pinned_sources(void);
GW_HIDDEN size_t gw_cas_min_image(void); /* module images from this size */
/* A host-to-device copy to known device memory, by content address. */
/* *all_missed: the cache had none of the bytes (new content) */
GW_HIDDEN CUresult gw_cas_htod(unsigned op, CUdeviceptr dst, const void *src, size_t n, uint64_t stream,
                               int *all_missed);
/* Fill the calling thread's staging buffer with an image, by content address. */
GW_HIDDEN CUresult gw_cas_stage(const void *data, size_t n);

typedef struct gw_memo_src {
    uint64_t dev, ino, size, mtime_ns, off; /* the file, and where the range starts in it */
} gw_memo_src;
GW_HIDDEN int gw_memo_locate(const void *p, size_t n, gw_memo_src *w); /* 1: [p, p+n) is the file's bytes */
GW_HIDDEN int gw_memo_get(const gw_memo_src *w, uint64_t rel, uint64_t len, uint8_t out[32]);
GW_HIDDEN void gw_memo_put(const gw_memo_src *w, const uint64_t *rel, const uint64_t *len, uint8_t (*hash)[32],
                           size_t count);

#endif
