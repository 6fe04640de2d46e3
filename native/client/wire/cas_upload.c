/* Content-addressed transfers (docs/cache.md): a large host-to-device copy
 * or module image travels as the SHA-256 of each GW_COPY_CHUNK piece; the
 * worker fills what its disk cache has and names the rest, which then travel
 * as bytes (compressed where that pays) and are stored for next time.
 *
 * One round trip per copy call (per 4096 chunks), never per chunk, and the
 * call returns only once every byte is on its way: the application may reuse
 * its buffer at once, as natively. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../common/sha256.h"
#include "../diag/env.h"
#include "../diag/progress.h"
#include "cas.h"
#include "wire_api.h"

#define ADD(field, v) __atomic_fetch_add(&gw_cas_stats()->field, (unsigned long long)(v), __ATOMIC_RELAXED)

/* A threshold: GPUWIRE_CACHE_MIN*, 0 meaning every copy (1 byte up). */
static size_t threshold(const char *name, uint64_t dflt, const char *then)
{
    uint64_t v = dflt;
    gw_env_size(name, 0, 1ull << 40, then, &v);
    return v ? (size_t)v : 1;
}

int gw_cas_on(void)
{
    static int off = -1;
    if (off < 0) {
        int on = 1;
        gw_env_bool("GPUWIRE_CACHE", "using the default, on", &on);
        off = !on;
    }
    const gw_hello_ok *s = gw_server_info();
    return !off && s && (s->flags & GW_OK_CAS);
}

size_t gw_cas_min_copy(void)
{
    static size_t v;
    if (!v)
        v = threshold("GPUWIRE_CACHE_MIN", 1u << 20, "using the default, 1M");
    return v;
}

/* GPUWIRE_CACHE_PINNED_SOURCES=1: asynchronous copies from page-locked memory
 * also travel by content address (off by default: api/copies.c says why) */
int gw_cas_pinned_sources(void)
{
    static int v = -1;
    if (v < 0) {
        int on = 0;
        gw_env_bool("GPUWIRE_CACHE_PINNED_SOURCES", "using the default, off", &on);
        v = on;
    }
    return v;
}

size_t gw_cas_min_image(void)
{
    static size_t v;
    if (!v)
        v = threshold("GPUWIRE_CACHE_MIN_IMAGE", 16u << 10, "using the default, 16K");
    return v;
}

static unsigned hash_threads(void)
{
    static unsigned n;
    if (!n) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned long long e = 0; /* 0: one per core, up to 8 */
        gw_env_int("GPUWIRE_HASH_THREADS", 0, 32, "using the default, one per core up to 8", &e);
        n = e ? (unsigned)e : cpus > 8 ? 8u : cpus > 1 ? (unsigned)cpus : 1u;
    }
    return n;
}

/* ---- compression of misses ----
 * zstd if libzstd.so.1 is here and the worker has it too. GPUWIRE_CACHE_COMPRESS:
 * auto (default) compresses module images only (they shrink; weights hardly
 * do), on also device copies, off never. A chunk is sent compressed only if
 * it shrank below 90%. */
static size_t (*z_compress)(void *, size_t, const void *, size_t, int);
static size_t (*z_bound)(size_t);
static unsigned (*z_is_error)(size_t);
static int compress_mode = -1; /* 0 off, 1 images, 2 everything */

static void zstd_init(void)
{
    static const char *const modes[] = {"off", "auto", "on", NULL};
    compress_mode = 1;
    gw_env_word("GPUWIRE_CACHE_COMPRESS", modes, "auto, on or off", "using the default, auto", &compress_mode);
    if (!compress_mode)
        return;
    void *z = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!z) {
        compress_mode = 0;
        return;
    }
    z_compress = (size_t(*)(void *, size_t, const void *, size_t, int))dlsym(z, "ZSTD_compress");
    z_bound = (size_t(*)(size_t))dlsym(z, "ZSTD_compressBound");
    z_is_error = (unsigned (*)(size_t))dlsym(z, "ZSTD_isError");
    if (!z_compress || !z_bound || !z_is_error)
        compress_mode = 0;
}

static int compress_for(int image)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, zstd_init);
    const gw_hello_ok *s = gw_server_info();
    return s && (s->flags & GW_OK_ZSTD) && (compress_mode == 2 || (compress_mode == 1 && image));
}

static __thread uint8_t *zbuf;
static __thread size_t zcap;

/* One missing chunk as CAS_DATA, posted. The target fields are already in q. */
static CUresult send_chunk(gw_req *q, const uint8_t *p, size_t len, int image)
{
    if (compress_for(image)) {
        size_t need = z_bound(len);
        if (zcap < need) {
            free(zbuf);
            zbuf = malloc(need);
            zcap = zbuf ? need : 0;
        }
        size_t got = zbuf ? z_compress(zbuf, zcap, p, len, 3) : 0;
        if (zbuf && !z_is_error(got) && got < len / 10 * 9) {
            gw_put_fields(q, gw_cas_data_chunk_req, {.codec = GW_CAS_CODEC_ZSTD, .raw_length = (uint32_t)len});
            gw_put_raw(q, zbuf, got);
            if (image)
                ADD(image_sent_bytes, got);
            else
                ADD(sent_bytes, got);
            return gw_req_post(q);
        }
    }
    gw_put_fields(q, gw_cas_data_chunk_req, {.codec = GW_CAS_CODEC_NONE, .raw_length = (uint32_t)len});
    gw_put_raw(q, p, len);
    if (image)
        ADD(image_sent_bytes, len);
    else
        ADD(sent_bytes, len);
    return gw_req_post(q);
}

/* ---- hashing, with the memo for file-backed memory ---- */

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int hash_all(const uint8_t *src, size_t n, size_t count, uint8_t (*h)[32])
{
    uint64_t t0 = now_ns();
    gw_memo_src w;
    int memo = gw_memo_locate(src, n, &w);
    gw_sha256_item *todo = malloc(count * sizeof *todo);
    uint64_t *rel = malloc(count * 8), *len = malloc(count * 8);
    if (!todo || !rel || !len) {
        free(todo), free(rel), free(len);
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < count; i++) {
        size_t off = i * GW_COPY_CHUNK, l = n - off < GW_COPY_CHUNK ? n - off : GW_COPY_CHUNK;
        if (memo && gw_memo_get(&w, off, l, h[i])) {
            ADD(memo_hit_bytes, l);
            continue;
        }
        todo[k] = (gw_sha256_item){.data = src + off, .len = l, .out = h[i]};
        rel[k] = off;
        len[k++] = l;
        ADD(hashed_bytes, l);
    }
    gw_sha256_many(todo, k, hash_threads());
    if (memo && k) {
        uint8_t (*fresh)[32] = malloc(k * 32);
        if (fresh) {
            for (size_t i = 0; i < k; i++)
                memcpy(fresh[i], todo[i].out, 32);
            gw_memo_put(&w, rel, len, fresh, k);
            free(fresh);
        }
    }
    free(todo), free(rel), free(len);
    ADD(hash_ns, now_ns() - t0);
    return 0;
}

/* ---- the exchange ---- */

typedef struct dest {
    int image;
    unsigned op;       /* copies */
    CUdeviceptr dst;
    uint64_t stream;
    uint64_t total;    /* images */
} dest;

/* A CAS_REFS or CAS_DATA request's start: the target, then its fields. */
static gw_req *begin_with_target(const dest *d, uint64_t at, int refs)
{
    uint32_t target = d->image ? GW_CAS_TARGET_STAGE : GW_CAS_TARGET_COPY;
    gw_req *q = gw_req_begin_quiet(refs ? GW_OP_CAS_REFS : GW_OP_CAS_DATA);
    if (refs)
        gw_put_fields(q, gw_cas_refs_req, {.target = target});
    else
        gw_put_fields(q, gw_cas_data_req, {.target = target});
    if (d->image) /* REFS: the image size; DATA: the chunk's offset */
        gw_put_fields(q, gw_cas_stage_target_req, {.total_or_offset = refs ? d->total : at});
    else
        gw_put_fields(q, gw_cas_copy_target_req, {.copy_op = d->op, .dst = d->dst + at, .stream = d->stream});
    return q;
}

_Static_assert(GW_CAS_REFS_REP_ITEM_SIZE == sizeof(uint32_t), "CAS_REFS' reply items are u32 indices");

static CUresult exchange(const dest *d, const uint8_t *src, size_t n, int *all_missed)
{
    uint64_t hit_chunks = 0;
    size_t count = (n + GW_COPY_CHUNK - 1) / GW_COPY_CHUNK;
    if (d->image && count > GW_CAS_MAX_REFS)
        return CUDA_ERROR_INVALID_VALUE; /* 16 GiB image: beyond the staging limit anyway */
    uint8_t (*h)[32] = malloc(count * 32);
    uint32_t *miss = malloc(GW_CAS_MAX_REFS * 4);
    if (!h || !miss || hash_all(src, n, count, h)) {
        free(h), free(miss);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    CUresult rc = CUDA_SUCCESS;
    for (size_t b = 0; b < count && rc == CUDA_SUCCESS; b += GW_CAS_MAX_REFS) {
        size_t cnt = count - b < GW_CAS_MAX_REFS ? count - b : GW_CAS_MAX_REFS;
        uint64_t base = (uint64_t)b * GW_COPY_CHUNK;
        gw_req *q = begin_with_target(d, base, 1);
        gw_put_fields(q, gw_cas_refs_list_req, {.n = (uint32_t)cnt});
        for (size_t i = 0; i < cnt; i++) { /* the list's items */
            size_t off = base + i * GW_COPY_CHUNK;
            gw_cas_refs_list_req_item it = {.length = (uint32_t)(n - off < GW_COPY_CHUNK ? n - off : GW_COPY_CHUNK)};
            memcpy(it.sha256, h[b + i], sizeof it.sha256);
            uint8_t wire[GW_CAS_REFS_LIST_REQ_ITEM_SIZE];
            gw_put_raw(q, wire, gw_cas_refs_list_req_item_put(wire, &it));
        }
        gw_rep *r;
        rc = gw_req_call(q, &r);
        gw_cas_refs_rep rep = {0};
        if (rc == CUDA_SUCCESS && gw_get_fields(r, gw_cas_refs_rep, &rep))
            rep.m = UINT32_MAX; /* short: refused below */
        uint32_t m = rep.m;
        if (rc == CUDA_SUCCESS && (m > cnt || gw_get_bytes(r, miss, (size_t)m * sizeof *miss)))
            rc = gw_rep_status(r, CUDA_ERROR_UNKNOWN), m = 0;
        gw_rep_end(r);
        for (uint32_t j = 0; j < m && rc == CUDA_SUCCESS; j++)
            if (miss[j] >= cnt)
                rc = CUDA_ERROR_UNKNOWN; /* the worker named a chunk it was not asked about */
        if (rc != CUDA_SUCCESS)
            break;
        uint64_t bytes = cnt == count - b ? n - base : (uint64_t)cnt * GW_COPY_CHUNK;
        if (gw_progress_enabled) { /* what the cache had counts as sent (diag/progress.c) */
            uint64_t to_send = 0;
            for (uint32_t j = 0; j < m; j++) {
                uint64_t off = base + (uint64_t)miss[j] * GW_COPY_CHUNK;
                to_send += n - off < GW_COPY_CHUNK ? n - off : GW_COPY_CHUNK;
            }
            gw_progress_cache(cnt, cnt - m, bytes - to_send);
        }
        uint64_t missed = 0;
        hit_chunks += cnt - m;
        for (uint32_t j = 0; j < m && rc == CUDA_SUCCESS; j++) {
            uint64_t off = base + (uint64_t)miss[j] * GW_COPY_CHUNK;
            size_t len = n - off < GW_COPY_CHUNK ? n - off : GW_COPY_CHUNK;
            gw_req *dq = begin_with_target(d, off, 0);
            rc = send_chunk(dq, src + off, len, d->image);
            if (rc == CUDA_SUCCESS)
                gw_progress_sent(len);
            missed += len;
        }
        if (d->image) {
            ADD(image_hits, cnt - m), ADD(image_misses, m);
            ADD(image_hit_bytes, bytes - missed), ADD(image_miss_bytes, missed);
        } else {
            ADD(hits, cnt - m), ADD(misses, m);
            ADD(hit_bytes, bytes - missed), ADD(miss_bytes, missed);
        }
    }
    free(h), free(miss);
    if (all_missed)
        *all_missed = rc == CUDA_SUCCESS && !hit_chunks;
    return rc;
}

CUresult gw_cas_htod(unsigned op, CUdeviceptr dst, const void *src, size_t n, uint64_t stream, int *all_missed)
{
    dest d = {.op = op, .dst = dst, .stream = stream};
    return exchange(&d, src, n, all_missed);
}

CUresult gw_cas_stage(const void *data, size_t n)
{
    dest d = {.image = 1, .total = n};
    return exchange(&d, data, n, NULL);
}
