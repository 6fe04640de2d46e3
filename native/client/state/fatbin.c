/* The cubins inside a fatbin, for reading kernel layouts from the program's
 * own images (modules.c). A fatbin is a 16-byte header (magic, version,
 * header size, the entries' total size), then entries: u16 kind (1 PTX,
 * 2 ELF), u16, u32 entry header size, u64 payload size, u32 compressed size,
 * u32, u32 version, u32 arch (sm, e.g. 90), u32 name offset, u32 name size,
 * u64 flags, u64, u64 uncompressed size. nvcc 13 leaves cubins plain and
 * compresses PTX with zstd (flag 0x8000, a zstd frame); -Xfatbin
 * -compress-all compresses cubins too, with zstd, or with LZ4 (flag 0x2000,
 * one raw block) under --compress-mode=speed. Compressed cubins are
 * decompressed with the system's libzstd.so.1 or liblz4.so.1 where present,
 * else skipped (the worker's information is then awaited, as before). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

#define FATBIN_MAGIC 0xBA55ED50u
#define ENTRY_MIN 64
#define F_LZ4 0x2000u
#define F_ZSTD 0x8000u
#define UNPACKED_MAX ((uint64_t)256 << 20) /* a cubin larger than this is not read */

static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static size_t (*zstd_decompress)(void *, size_t, const void *, size_t);
static unsigned (*zstd_is_error)(size_t);
static int (*lz4_decompress)(const char *, char *, int, int);

static void libs_init(void)
{
    void *z = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
    if (z) {
        zstd_decompress = (size_t(*)(void *, size_t, const void *, size_t))dlsym(z, "ZSTD_decompress");
        zstd_is_error = (unsigned (*)(size_t))dlsym(z, "ZSTD_isError");
        if (!zstd_decompress || !zstd_is_error)
            zstd_decompress = NULL;
    }
    void *l = dlopen("liblz4.so.1", RTLD_NOW | RTLD_LOCAL);
    if (l)
        lz4_decompress = (int (*)(const char *, char *, int, int))dlsym(l, "LZ4_decompress_safe");
}

/* A compressed payload unpacked into a fresh buffer of exactly `unpacked`
 * bytes, or NULL (no library for it, or it did not unpack to that size). */
static uint8_t *unpack(uint64_t flags, const uint8_t *src, uint64_t packed, uint64_t unpacked)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, libs_init);
    if (!unpacked || unpacked > UNPACKED_MAX || !packed)
        return NULL;
    uint8_t *out = malloc((size_t)unpacked);
    if (!out)
        return NULL;
    int ok = 0;
    if ((flags & F_ZSTD) && zstd_decompress) {
        size_t got = zstd_decompress(out, (size_t)unpacked, src, (size_t)packed);
        ok = !zstd_is_error(got) && got == unpacked;
    } else if ((flags & F_LZ4) && lz4_decompress && packed <= INT32_MAX && unpacked <= INT32_MAX) {
        ok = lz4_decompress((const char *)src, (char *)out, (int)packed, (int)unpacked) == (int)unpacked;
    }
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

int gw_fatbin_cubins(const void *image, size_t size, int (*want)(uint32_t arch), gw_fatbin_cubin *out, int max)
{
    const uint8_t *p = image;
    if (!p || size < 16 || rd32(p) != FATBIN_MAGIC)
        return 0;
    uint64_t hs = rd16(p + 6), body = rd64(p + 8);
    if (hs < 16 || hs > size || body > size - hs)
        return 0;
    int n = 0;
    for (uint64_t at = hs, end = hs + body; at + ENTRY_MIN <= end && n < max;) {
        const uint8_t *e = p + at;
        uint32_t ehs = rd32(e + 4);
        uint64_t len = rd64(e + 8);
        if (ehs < ENTRY_MIN || ehs > end - at || len > end - at - ehs)
            break; /* malformed: what was found so far stands */
        if (rd16(e) == 2 && want(rd32(e + 28))) { /* only those unpacked: a library's fatbin holds many targets */
            const uint8_t *payload = e + ehs;
            uint64_t flags = rd64(e + 40), packed = rd32(e + 16), unpacked = rd64(e + 56);
            uint8_t *owned = NULL;
            if (flags & (F_ZSTD | F_LZ4)) {
                owned = packed <= len ? unpack(flags, payload, packed, unpacked) : NULL;
                payload = owned;
                len = owned ? unpacked : 0;
            }
            if (payload && len >= 64 && !memcmp(payload, "\x7f" "ELF", 4)) {
                out[n++] = (gw_fatbin_cubin){.elf = payload, .size = (size_t)len, .arch = rd32(e + 28), .owned = owned};
                owned = NULL;
            }
            free(owned);
        }
        at += ehs + rd64(e + 8);
    }
    return n;
}

void gw_fatbin_cubins_free(gw_fatbin_cubin *c, int n)
{
    for (int i = 0; i < n; i++)
        free(c[i].owned);
}
