/* SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104): the client's answer to the
 * server's auth challenge, and the content addresses of the transfer cache
 * (docs/cache.md). Small and dependency-free on purpose: the client library
 * must not need OpenSSL. Uses the CPU's SHA extensions when cpuid has them. */
#ifndef GW_SHA256_H
#define GW_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_sha256 {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
} gw_sha256;

void gw_sha256_init(gw_sha256 *s);
void gw_sha256_update(gw_sha256 *s, const void *data, size_t n);
void gw_sha256_final(gw_sha256 *s, uint8_t out[32]);
void gw_sha256_hash(const void *data, size_t n, uint8_t out[32]);
const char *gw_sha256_impl(void); /* "sha-ni" or "portable" */
/* Hash each item, on up to `threads` threads (sha256_par.c). */
typedef struct gw_sha256_item {
    const void *data;
    size_t len;
    uint8_t *out; /* 32 bytes */
} gw_sha256_item;
void gw_sha256_many(const gw_sha256_item *items, size_t count, unsigned threads);
void gw_hmac_sha256(const uint8_t *key, size_t klen, const void *msg, size_t n, uint8_t out[32]);

#endif
