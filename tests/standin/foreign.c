/* TEST DOUBLE: gpuwire CPU stand-in driver. Code the stand-in has no host implementation
 * for (a library's own kernels, cuFFT's): what a fat binary of it declares, so a module of
 * it lists its real kernels and globals as a driver would (cuFFT takes the one function of
 * each module it loads through the tools module table, then writes its twiddle table's
 * address into the module's global "lut_sp"). PTX is scanned for .entry and .global
 * declarations, a cubin's symbol table for entry functions (STO_CUDA_ENTRY) and objects; the
 * names of all entries (targets) are pooled. Such kernels cannot run here: launching one fails. Every length in the image is checked before use. Entries may be
 * compressed with LZ4 (flag 0x2000) or Zstandard (flag 0x8000, cuFFT's larger modules);
 * Zstandard through the system's libzstd.so.1, opened when first needed (without it such
 * entries are skipped). */
#define _GNU_SOURCE /* strndup, strnlen */
#include "foreign.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define FATBIN_MAGIC 0xBA55ED50u
#define ENTRY_PTX 1
#define ENTRY_ELF 2
#define ENTRY_LZ4 0x2000u
#define ENTRY_ZSTD 0x8000u
#define MAX_UNPACKED ((uint64_t)64 << 20) /* per entry, and per global */
#define MAX_NAMES 4096

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* LZ4 block format: sequences of a token, literals and a back-reference. 0 on any damage. */
static size_t lz4_unpack(const uint8_t *s, size_t n, uint8_t *d, size_t cap)
{
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned tok = s[i++];
        size_t lit = tok >> 4, b;
        if (lit == 15)
            do {
                if (i >= n)
                    return 0;
                b = s[i++];
                lit += b;
            } while (b == 255);
        if (lit > n - i || lit > cap - o)
            return 0;
        memcpy(d + o, s + i, lit);
        i += lit;
        o += lit;
        if (i == n)
            break; /* the last sequence has literals only */
        if (n - i < 2)
            return 0;
        size_t off = (size_t)s[i] | (size_t)s[i + 1] << 8;
        i += 2;
        if (off == 0 || off > o)
            return 0;
        size_t len = tok & 15;
        if (len == 15)
            do {
                if (i >= n)
                    return 0;
                b = s[i++];
                len += b;
            } while (b == 255);
        len += 4;
        if (len > cap - o)
            return 0;
        for (size_t k = 0; k < len; k++, o++)
            d[o] = d[o - off];
    }
    return o;
}

/* Zstandard frames, by the system's library: 0 on any damage or without it. */
typedef size_t (*zstd_decompress_fn)(void *dst, size_t cap, const void *src, size_t n);
typedef unsigned (*zstd_is_error_fn)(size_t code);
static zstd_decompress_fn zstd_decompress;
static zstd_is_error_fn zstd_is_error;

static void zstd_open(void)
{
    void *h = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return;
    zstd_is_error = (zstd_is_error_fn)dlsym(h, "ZSTD_isError");
    zstd_decompress = zstd_is_error ? (zstd_decompress_fn)dlsym(h, "ZSTD_decompress") : NULL;
}

static size_t zstd_unpack(const uint8_t *s, size_t n, uint8_t *d, size_t cap)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, zstd_open);
    if (!zstd_decompress)
        return 0;
    size_t got = zstd_decompress(d, cap, s, n);
    return zstd_is_error(got) || got > cap ? 0 : got;
}

static int add_func(sd_foreign *f, const char *name, size_t len)
{
    for (size_t i = 0; i < f->nfuncs; i++)
        if (strlen(f->funcs[i].name) == len && !memcmp(f->funcs[i].name, name, len))
            return 0;
    if (f->nfuncs >= MAX_NAMES)
        return -1;
    sd_kernel_desc *n = realloc(f->funcs, (f->nfuncs + 1) * sizeof *n);
    if (!n)
        return -1;
    f->funcs = n;
    memset(&n[f->nfuncs], 0, sizeof *n);
    char *s = strndup(name, len);
    if (!s)
        return -1;
    n[f->nfuncs++].name = s; /* no parameters known, no thread: it cannot run here */
    return 0;
}

static int add_global(sd_foreign *f, const char *name, size_t len, uint64_t size)
{
    for (size_t i = 0; i < f->nglobals; i++)
        if (strlen(f->globals[i].name) == len && !memcmp(f->globals[i].name, name, len))
            return 0;
    if (f->nglobals >= MAX_NAMES || size == 0 || size > MAX_UNPACKED)
        return f->nglobals >= MAX_NAMES ? -1 : 0;
    sd_foreign_global *n = realloc(f->globals, (f->nglobals + 1) * sizeof *n);
    if (!n)
        return -1;
    f->globals = n;
    memset(&n[f->nglobals], 0, sizeof *n);
    if (!(n[f->nglobals].name = strndup(name, len)))
        return -1;
    n[f->nglobals++].size = (size_t)size;
    return 0;
}

static int ident(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$';
}

static size_t type_size(const char *t, size_t len)
{
    static const struct { const char *name; size_t size; } types[] = {
        {".b8", 1},  {".u8", 1},  {".s8", 1},  {".b16", 2}, {".u16", 2}, {".s16", 2}, {".f16", 2},
        {".b32", 4}, {".u32", 4}, {".s32", 4}, {".f32", 4}, {".b64", 8}, {".u64", 8}, {".s64", 8},
        {".f64", 8}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strlen(types[i].name) == len && !memcmp(types[i].name, t, len))
            return types[i].size;
    return 0;
}

/* ".entry NAME(" and "[.visible] .global [.align N] .TYPE NAME[[N]...] [= ...];" */
static int scan_ptx(sd_foreign *f, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '.' || (i && ident(p[i - 1])))
            continue;
        if (n - i > 7 && !memcmp(p + i, ".entry", 6) && (p[i + 6] == ' ' || p[i + 6] == '\t')) {
            size_t s = i + 7;
            while (s < n && (p[s] == ' ' || p[s] == '\t'))
                s++;
            size_t e = s;
            while (e < n && ident(p[e]))
                e++;
            if (e > s && add_func(f, p + s, e - s))
                return -1;
            i = e;
        } else if (n - i > 8 && !memcmp(p + i, ".global", 7) && (p[i + 7] == ' ' || p[i + 7] == '\t')) {
            size_t j = i + 8, elem = 0;
            const char *name = NULL;
            size_t name_len = 0;
            uint64_t count = 1;
            while (j < n && p[j] != ';' && p[j] != '=' && p[j] != '\n') {
                while (j < n && (p[j] == ' ' || p[j] == '\t'))
                    j++;
                size_t s = j;
                if (j < n && p[j] == '.') {
                    j++;
                    while (j < n && ident(p[j]))
                        j++;
                    if (type_size(p + s, j - s))
                        elem = type_size(p + s, j - s);
                } else if (j < n && p[j] == '[') {
                    uint64_t v = 0;
                    for (j++; j < n && p[j] >= '0' && p[j] <= '9' && v < MAX_UNPACKED; j++)
                        v = v * 10 + (uint64_t)(p[j] - '0');
                    count *= v;
                    if (count > MAX_UNPACKED)
                        count = 0;
                    while (j < n && p[j] != ']' && p[j] != ';' && p[j] != '\n')
                        j++;
                    if (j < n && p[j] == ']')
                        j++;
                } else if (j < n && ident(p[j]) && !(p[j] >= '0' && p[j] <= '9')) {
                    while (j < n && ident(p[j]))
                        j++;
                    if (!name) {
                        name = p + s;
                        name_len = j - s;
                    }
                } else {
                    j++; /* numbers after .align, other punctuation */
                }
            }
            if (name && elem && add_global(f, name, name_len, count * elem))
                return -1;
            i = j;
        }
    }
    return 0;
}

/* A cubin's symbol table: entry functions and objects with a size. */
static int scan_elf(sd_foreign *f, const uint8_t *p, size_t n)
{
    if (n < 64 || memcmp(p, "\x7f" "ELF", 4) || p[4] != 2)
        return 0;
    uint64_t shoff = rd64(p + 0x28);
    uint16_t shentsize = rd16(p + 0x3A), shnum = rd16(p + 0x3C);
    if (shentsize < 64 || shoff > n || (uint64_t)shnum * shentsize > n - shoff)
        return 0;
    for (unsigned s = 0; s < shnum; s++) {
        const uint8_t *sh = p + shoff + (uint64_t)s * shentsize;
        if (rd32(sh + 4) != 2 /* SHT_SYMTAB */)
            continue;
        uint64_t off = rd64(sh + 0x18), size = rd64(sh + 0x20);
        uint32_t link = rd32(sh + 0x28);
        if (off > n || size > n - off || link >= shnum)
            continue;
        const uint8_t *str = p + shoff + (uint64_t)link * shentsize;
        uint64_t soff = rd64(str + 0x18), ssize = rd64(str + 0x20);
        if (soff > n || ssize > n - soff || ssize == 0)
            continue;
        const char *names = (const char *)p + soff;
        for (uint64_t e = 0; e + 24 <= size; e += 24) {
            const uint8_t *sym = p + off + e;
            uint32_t nm = rd32(sym);
            uint8_t type = sym[4] & 15, other = sym[5];
            if (nm >= ssize)
                continue;
            size_t len = strnlen(names + nm, (size_t)(ssize - nm));
            if (len == 0 || len == ssize - nm)
                continue;
            if (type == 2 /* STT_FUNC */ && (other & 0x10) && add_func(f, names + nm, len))
                return -1;
            if (type == 1 /* STT_OBJECT */ && add_global(f, names + nm, len, rd64(sym + 16)))
                return -1;
        }
    }
    return 0;
}

void sd_foreign_free(sd_foreign *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nfuncs; i++)
        free((char *)f->funcs[i].name);
    for (size_t i = 0; i < f->nglobals; i++)
        free(f->globals[i].name);
    free(f->funcs);
    free(f->globals);
    free(f);
}

/* Calls fn for each entry of a fat binary, unpacked (LZ4 or Zstandard), in order;
 * stops at the first that returns non-zero and returns that. -1: not a fat binary. */
int sd_fatbin_each(const void *image, int (*fn)(int kind, const uint8_t *body, size_t len, void *arg), void *arg)
{
    const uint8_t *p = image;
    if (!p || rd32(p) != FATBIN_MAGIC) /* a wrapper's pointer is the client's: never followed here */
        return -1;
    uint16_t hs = rd16(p + 6);
    uint64_t total = rd64(p + 8);
    if (hs < 16 || total > MAX_UNPACKED)
        return -1;
    const uint8_t *e = p + hs, *end = p + hs + total;
    while (end - e >= 16) {
        uint16_t kind = rd16(e);
        uint32_t ehs = rd32(e + 4);
        uint64_t size = rd64(e + 8);
        if (ehs < 16 || ehs > (uint64_t)(end - e) || size > (uint64_t)(end - e) - ehs)
            break;
        const uint8_t *body = e + ehs;
        uint8_t *unpacked = NULL;
        size_t len = (size_t)size;
        uint32_t flags = ehs >= 0x40 ? rd32(e + 0x28) : 0;
        if (flags & (ENTRY_LZ4 | ENTRY_ZSTD)) {
            uint64_t want = rd64(e + 0x38), packed = rd32(e + 0x10);
            if (want == 0 || want > MAX_UNPACKED || packed > size || !(unpacked = malloc(want)))
                len = 0;
            else if (flags & ENTRY_LZ4)
                len = lz4_unpack(body, packed, unpacked, want);
            else
                len = zstd_unpack(body, packed, unpacked, want);
            body = unpacked;
        }
        int r = len ? fn(kind, body, len, arg) : 0;
        free(unpacked);
        if (r)
            return r;
        e += ehs + size;
    }
    return 0;
}

static int scan_entry(int kind, const uint8_t *body, size_t len, void *arg)
{
    sd_foreign *f = arg;
    if (kind == ENTRY_PTX)
        return scan_ptx(f, (const char *)body, len);
    return kind == ENTRY_ELF ? scan_elf(f, body, len) : 0;
}

/* Each entry of a fat binary, unpacked: first-come names win (the same kernel for several
 * targets is one function). */
sd_foreign *sd_foreign_parse(const void *image)
{
    if (!image || rd32(image) != FATBIN_MAGIC)
        return NULL;
    sd_foreign *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    if (sd_fatbin_each(image, scan_entry, f) > 0 || !f->nfuncs) {
        sd_foreign_free(f);
        return NULL;
    }
    return f;
}
