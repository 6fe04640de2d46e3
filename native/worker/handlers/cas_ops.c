/* CAS_REFS and CAS_DATA: host-to-device copies and staged module images
 * named by the SHA-256 of their chunks (docs/cache.md).
 *
 * CAS_REFS (waits for its reply): u32 target, target fields, u32 n, n x
 * (u32 length, 32-byte hash). Chunks are consecutive from the copy's
 * destination (or offset 0 of the staging buffer). Every chunk the cache has
 * is read, verified and used at once; the reply is i32 result, u32 m, m x u32
 * indices of the chunks it did not have, which the client then sends as
 * CAS_DATA. Nothing is assumed present: an entry evicted or corrupted after
 * the client last saw it is simply one of the m.
 *
 * CAS_DATA: u32 target, target fields, u32 codec, u32 raw length, bytes. The
 * bytes go to their destination at once; a background writer then hashes the
 * (decompressed) bytes itself and stores them under that hash, so a client
 * cannot put wrong bytes under another chunk's name. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/sha256.h"
#include "cas_store.h"
#include "handlers.h"

/* A CAS_REFS_LIST item (u32 length, u8[32] sha256) is the generated struct's bytes in memory. */
_Static_assert(sizeof(gw_cas_refs_list_req_item) == GW_CAS_REFS_LIST_REQ_ITEM_SIZE, "CAS_REFS_LIST item layout");
_Static_assert(sizeof(gw_cas_refs_rep_item) == GW_CAS_REFS_REP_ITEM_SIZE, "CAS_REFS reply item layout");

static int is_htod(unsigned op)
{
    return op == GW_OP_cuMemcpyHtoD_v2 || op == GW_OP_cuMemcpyHtoD_v2_ptds || op == GW_OP_cuMemcpyHtoDAsync_v2 ||
           op == GW_OP_cuMemcpyHtoDAsync_v2_ptsz;
}

static CUresult h2d(unsigned op, CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
    void *f = gw_driver_sym(op);
    if (!f)
        return CUDA_ERROR_NOT_SUPPORTED;
    if (op == GW_OP_cuMemcpyHtoDAsync_v2 || op == GW_OP_cuMemcpyHtoDAsync_v2_ptsz)
        return ((CUresult(*)(CUdeviceptr, const void *, size_t, CUstream))f)(dst, src, n, s);
    return ((CUresult(*)(CUdeviceptr, const void *, size_t))f)(dst, src, n);
}

typedef struct target {
    uint32_t kind;
    unsigned op;
    CUdeviceptr dst;
    CUstream stream;
    uint64_t off; /* STAGE: total (REFS) or offset (DATA) */
} target;

/* The target's fields after u32 target (kind, decoded with the op's own
 * fields): CAS_COPY_TARGET or CAS_STAGE_TARGET. */
static int read_target(gw_call *c, uint32_t kind, target *t)
{
    if (c->bad)
        return -1;
    t->kind = kind;
    if (t->kind == GW_CAS_TARGET_COPY) {
        gw_cas_copy_target_req q = {0};
        if (gw_in_fields(c, GW_CAS_COPY_TARGET_REQ_SIZE, gw_cas_copy_target_req_get(gw_in_next(c), gw_in_left(c), &q))) {
            t->op = q.copy_op;
            t->dst = q.dst;
            t->stream = gw_handle_lookup(c, GW_HT_CUstream, q.stream);
        }
        if (!c->bad && !is_htod(t->op))
            gw_call_fail(c, "cache: op %u is not a host-to-device copy", t->op);
    } else if (t->kind == GW_CAS_TARGET_STAGE) {
        gw_cas_stage_target_req q = {0};
        if (gw_in_fields(c, GW_CAS_STAGE_TARGET_REQ_SIZE, gw_cas_stage_target_req_get(gw_in_next(c), gw_in_left(c), &q)))
            t->off = q.total_or_offset;
    } else {
        gw_call_fail(c, "cache: unknown target %u", t->kind);
    }
    return c->bad ? -1 : 0;
}

/* ---- copies from a pinned ring ----
 * Cached chunks reach the device from the ring with asynchronous copies on
 * the stream the client's copy names (the legacy or per-thread stream for the
 * synchronous forms), several in flight while readers fill later slots; the
 * stream is waited for before slots are reused and before the reply, so the
 * copy is complete when the client's call returns, as a synchronous copy from
 * pageable memory would be. The ring is page-locked with cuMemHostRegister
 * under the current context; if that context goes away the registration goes
 * with it (the memory stays ours), and it is registered again on next use. */
typedef struct pinned_path {
    CUresult (*async)(CUdeviceptr, const void *, size_t, CUstream);
    CUresult (*sync)(CUstream);
    CUstream s;
} pinned_path;

static int pinned_ring(uint8_t *ring, size_t len)
{
    CUresult (*flags)(unsigned *, void *) = gw_driver_sym(GW_OP_cuMemHostGetFlags);
    CUresult (*reg)(void *, size_t, unsigned) = gw_driver_sym(GW_OP_cuMemHostRegister_v2);
    unsigned f;
    if (!flags || !reg)
        return 0;
    if (flags(&f, ring) == CUDA_SUCCESS)
        return 1;
    return reg(ring, len, CU_MEMHOSTREGISTER_PORTABLE) == CUDA_SUCCESS;
}

/* the async copy and stream for the client's copy op, or 0 (copy as before) */
static int pinned_path_for(const target *t, uint8_t *ring, size_t ring_len, pinned_path *pp)
{
    unsigned op = t->op, aop = op == GW_OP_cuMemcpyHtoD_v2_ptds || op == GW_OP_cuMemcpyHtoDAsync_v2_ptsz
                                   ? GW_OP_cuMemcpyHtoDAsync_v2_ptsz
                                   : GW_OP_cuMemcpyHtoDAsync_v2;
    pp->async = gw_driver_sym(aop);
    pp->sync = gw_driver_sym(aop == GW_OP_cuMemcpyHtoDAsync_v2_ptsz ? GW_OP_cuStreamSynchronize_ptsz
                                                                     : GW_OP_cuStreamSynchronize);
    pp->s = op == GW_OP_cuMemcpyHtoD_v2 ? CU_STREAM_LEGACY
            : op == GW_OP_cuMemcpyHtoD_v2_ptds ? CU_STREAM_PER_THREAD
                                               : t->stream;
    const char *off = getenv("GPUWIRE_CACHE_PINNED"); /* =0: copy from pageable memory, as before */
    return pp->async && pp->sync && !(off && !strcmp(off, "0")) && pinned_ring(ring, ring_len);
}

/* ---- the pipeline ----
 * Reader threads load chunk i into ring slot i % RING and then check it;
 * this thread copies chunk i to the device as soon as it is loaded, while
 * later chunks are still being read and verified. A chunk that fails its
 * verification is reported missing, so its correct bytes (CAS_DATA) are
 * written over the destination before the client's call returns: wrong bytes
 * never outlive the call that could observe them. For staging, chunks are
 * read straight into the image and nothing is copied. */

/* Up to 16 readers (a GPU server has cores to spare) and a ring twice their
 * number. A request's chunks are read and checked in parallel, but requests
 * come one at a time (the client waits for each copy), so a request lasts
 * about as long as one chunk's read and check: hence the entries' CRC trailer
 * (cas_store.c) instead of SHA-256 on every read. */
#define RING 32u

static unsigned reader_threads(void)
{
    static unsigned n;
    if (!n) {
        const char *v = getenv("GPUWIRE_CACHE_THREADS");
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = v && atoi(v) > 0 ? (unsigned)atoi(v) : cpus > 16 ? 16u : cpus > 1 ? (unsigned)cpus : 1u;
        if (n > RING / 2)
            n = RING / 2;
    }
    return n;
}

enum { LOADING = 0, LOADED = 1, ABSENT = 2 }; /* state[i]; verified[i] separately */

/* With GPUWIRE_WORKER_PROFILE: where a cache hit's time goes, summed over
 * threads (readers: waiting for a free slot, reading, verifying; the copying
 * thread: waiting for a chunk to be read, issuing copies, waiting for them). */
static atomic_ullong t_slot_wait, t_read, t_verify, t_loaded_wait, t_copy, t_sync, t_jobs, n_readers;

static uint64_t since(uint64_t t0) { return gw_prof_now() - t0; }

void gw_cas_prof_report(void)
{
    if (gw_prof_on() <= 0 || !t_jobs)
        return;
    gw_wlog("profile: cache hits (thread-seconds): %llu reader threads: waiting for a slot %.3f, reading (and checking "
            "trailers) %.3f, SHA-256 of entries without one %.3f; copying thread: waiting for reads %.3f, issuing copies %.3f, waiting for copies %.3f; "
            "jobs %.3f s",
            n_readers, t_slot_wait / 1e9, t_read / 1e9, t_verify / 1e9, t_loaded_wait / 1e9, t_copy / 1e9,
            t_sync / 1e9, t_jobs / 1e9);
}

typedef struct pipe {
    const uint8_t *refs; /* n CAS_REFS_LIST items, in place */
    const uint64_t *offs;
    uint32_t n;
    uint8_t *stage; /* staging target, or NULL */
    uint8_t *ring;  /* RING slots of GW_COPY_CHUNK (copies) */
    uint8_t *state, *good, *vdone; /* per chunk: loaded?, verified good?, verification finished? */
    uint32_t next, copied; /* the next chunk to take; chunks the copying thread is done with */
    int stop;
    pthread_mutex_t m;
    pthread_cond_t cv;
} pipe_t;

static gw_cas_refs_list_req_item ref_of(const uint8_t *refs, uint32_t i)
{
    gw_cas_refs_list_req_item it; /* n items were checked to be there (gw_in_view) */
    gw_cas_refs_list_req_item_get(refs + (size_t)i * GW_CAS_REFS_LIST_REQ_ITEM_SIZE, GW_CAS_REFS_LIST_REQ_ITEM_SIZE,
                                  &it);
    return it;
}

static uint32_t len_of(const pipe_t *p, uint32_t i) { return ref_of(p->refs, i).length; }

static void *reader(void *arg)
{
    pipe_t *p = arg;
    int prof = gw_prof_on() > 0;
    if (prof)
        atomic_fetch_add(&n_readers, 1);
    pthread_mutex_lock(&p->m);
    for (;;) {
        uint64_t t0 = prof ? gw_prof_now() : 0;
        /* a ring slot is reused only when the copy of its previous chunk is done and that chunk is verified */
        while (!p->stop && p->next < p->n && !p->stage &&
               (p->next >= p->copied + RING || (p->next >= RING && !p->vdone[p->next - RING])))
            pthread_cond_wait(&p->cv, &p->m);
        if (prof)
            atomic_fetch_add(&t_slot_wait, since(t0));
        if (p->stop || p->next >= p->n)
            break;
        uint32_t i = p->next++;
        pthread_mutex_unlock(&p->m);
        gw_cas_refs_list_req_item ref = ref_of(p->refs, i);
        const uint8_t *h = ref.sha256;
        uint32_t len = ref.length;
        uint8_t *buf = p->stage ? p->stage + p->offs[i] : p->ring + (size_t)(i % RING) * GW_COPY_CHUNK;
        uint64_t t1 = prof ? gw_prof_now() : 0;
        int have = gw_cas_load(h, buf, len);
        if (prof)
            atomic_fetch_add(&t_read, since(t1));
        pthread_mutex_lock(&p->m);
        p->state[i] = have ? LOADED : ABSENT;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->m);
        int ok = have == 2; /* checked by its trailer while read */
        if (have == 1) {
            uint8_t got[32];
            uint64_t t2 = prof ? gw_prof_now() : 0;
            gw_sha256_hash(buf, len, got);
            if (prof)
                atomic_fetch_add(&t_verify, since(t2));
            ok = memcmp(got, h, 32) == 0;
            if (!ok)
                gw_cas_reject(h, "content does not match its hash");
            else
                gw_cas_upgrade(h, buf, len); /* the next read checks the trailer instead */
        }
        pthread_mutex_lock(&p->m);
        p->good[i] = (uint8_t)ok;
        p->vdone[i] = 1;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->m);
    return NULL;
}

/* Two rings per worker thread would be waste: one, kept, since faulting in
 * 128 MiB per request would cost more than the copies. */
static __thread uint8_t *ring_buf;

/* CAS_REFS: u32 target, its fields, CAS_REFS_LIST -> i32 result, u32 m, m x u32 index */
void gw_op_cas_refs(gw_call *c)
{
    target t = {0};
    gw_cas_refs_req head = {0};
    if (!gw_in_fields(c, GW_CAS_REFS_REQ_SIZE, gw_cas_refs_req_get(gw_in_next(c), gw_in_left(c), &head)) ||
        read_target(c, head.target, &t))
        return;
    gw_cas_refs_list_req list = {0};
    gw_in_fields(c, GW_CAS_REFS_LIST_REQ_SIZE, gw_cas_refs_list_req_get(gw_in_next(c), gw_in_left(c), &list));
    uint32_t n = list.n;
    if (!c->bad && (n == 0 || n > GW_CAS_MAX_REFS))
        gw_call_fail(c, "cache: %u chunk references (1..%u)", n, GW_CAS_MAX_REFS);
    const uint8_t *refs = c->bad ? NULL : gw_in_view(c, (size_t)n * GW_CAS_REFS_LIST_REQ_ITEM_SIZE);
    if (!gw_args_ok(c))
        return;
    if (!gw_cas_enabled()) {
        gw_call_fail(c, "cache: this server has no content cache (HELLO_OK did not offer one)");
        return;
    }
    uint64_t *offs = gw_scratch(c, (size_t)n * 8);
    gw_cas_refs_rep_item *missing = gw_scratch(c, (size_t)n * sizeof *missing);
    uint8_t *state = gw_scratch(c, n), *good = gw_scratch(c, n), *vdone = gw_scratch(c, n);
    if (!offs || !missing || !state || !good || !vdone) {
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
        return;
    }
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = ref_of(refs, i).length;
        if (len == 0 || len > GW_COPY_CHUNK) {
            gw_call_fail(c, "cache: chunk %u of %u bytes (1..%u)", i, len, GW_COPY_CHUNK);
            return;
        }
        offs[i] = sum;
        sum += len;
    }
    pipe_t p = {.refs = refs, .offs = offs, .n = n, .state = state, .good = good, .vdone = vdone};
    if (t.kind == GW_CAS_TARGET_STAGE) {
        if (sum != t.off) {
            gw_call_fail(c, "cache: chunks of %llu bytes for an image of %llu", (unsigned long long)sum,
                         (unsigned long long)t.off);
            return;
        }
        p.stage = gw_stage_reset(c->h.tid, t.off);
        if (!p.stage) {
            gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
            return;
        }
    } else {
        if (!gw_driver_fn(c, t.op))
            return;
        if (!ring_buf)
            ring_buf = malloc((size_t)RING * GW_COPY_CHUNK);
        if (!ring_buf) {
            gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
            return;
        }
        p.ring = ring_buf;
    }
    pthread_mutex_init(&p.m, NULL);
    pthread_cond_init(&p.cv, NULL);
    pthread_t th[RING];
    unsigned want = reader_threads() < n ? reader_threads() : n, started = 0;
    for (; started < want; started++)
        if (pthread_create(&th[started], NULL, reader, &p))
            break;
    if (!started) { /* no thread to be had */
        pthread_mutex_destroy(&p.m);
        pthread_cond_destroy(&p.cv);
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
        return;
    }
    CUresult r = CUDA_SUCCESS;
    pinned_path pp = {0};
    int pinned = !p.stage && pinned_path_for(&t, p.ring, (size_t)RING * GW_COPY_CHUNK, &pp);
    uint32_t issued = 0; /* async copies issued from the ring and not yet waited for */
    int prof = gw_prof_on() > 0;
    uint64_t tj = prof ? gw_prof_now() : 0;
    pthread_mutex_lock(&p.m);
    /* Only this thread sets stop, and it leaves the loop when it does: a reader
     * that stopped would never load the chunk waited for below. */
    for (uint32_t i = 0; i < n && !p.stage && !p.stop; i++) {
        uint64_t t0 = prof ? gw_prof_now() : 0;
        struct timespec deadline = {0, 0};
        while (p.state[i] == LOADING)
            if (gw_cond_wait_bounded(&p.cv, &p.m, &deadline) == ETIMEDOUT)
                break;
        if (p.state[i] == LOADING) { /* no reader brought it: a bug of this pipeline, not the client's */
            gw_call_stuck(c, "CAS_REFS (cache references): chunk %u of %u was not read within %d s "
                             "(GPUWIRE_WORKER_STUCK_S): the session ends", i, n, gw_stuck_seconds());
            r = CUDA_ERROR_UNKNOWN;
            p.stop = 1;
            pthread_cond_broadcast(&p.cv);
            break;
        }
        if (prof)
            atomic_fetch_add(&t_loaded_wait, since(t0));
        uint8_t *slot = p.ring + (size_t)(i % RING) * GW_COPY_CHUNK;
        if (p.state[i] == LOADED && r == CUDA_SUCCESS) {
            pthread_mutex_unlock(&p.m);
            uint64_t t1 = prof ? gw_prof_now() : 0;
            if (pinned) {
                r = pp.async(t.dst + offs[i], slot, len_of(&p, i), pp.s);
                issued++;
                if (prof)
                    atomic_fetch_add(&t_copy, since(t1));
                /* slots are handed back to the readers a quarter ring at a time */
                if (r == CUDA_SUCCESS && (issued == RING / 4 || i + 1 == n)) {
                    uint64_t t2 = prof ? gw_prof_now() : 0;
                    r = pp.sync(pp.s);
                    issued = 0;
                    if (prof)
                        atomic_fetch_add(&t_sync, since(t2));
                }
            } else {
                r = h2d(t.op, t.dst + offs[i], slot, len_of(&p, i), t.stream);
                if (prof)
                    atomic_fetch_add(&t_copy, since(t1));
            }
            pthread_mutex_lock(&p.m);
        }
        if (r != CUDA_SUCCESS) {
            p.stop = 1; /* the readers end; the reply is the failure */
            pthread_cond_broadcast(&p.cv);
            break;
        }
        if (issued && p.state[i] != LOADED) {
            /* An absent chunk issues no copy, so the quarter-ring sync below would
             * not come while a stretch of absent chunks follows hits: the slots stay
             * unreturned, the readers stop RING chunks on, and this loop waits for a
             * chunk none will load (reproduced on the stand-in; most likely
             * StreamPriorities' hang on the H100, whose CAS_REFS ran 31 s there).
             * Hand the slots back now. */
            pthread_mutex_unlock(&p.m);
            r = pp.sync(pp.s);
            issued = 0;
            pthread_mutex_lock(&p.m);
            if (r != CUDA_SUCCESS) {
                p.stop = 1;
                pthread_cond_broadcast(&p.cv);
                break;
            }
        }
        if (!issued) { /* every slot up to i is free again */
            p.copied = i + 1;
            pthread_cond_broadcast(&p.cv);
        }
    }
    if (issued && pinned) { /* the last chunks were absent or a copy failed: wait for what is in flight */
        pthread_mutex_unlock(&p.m);
        CUresult w = pp.sync(pp.s);
        r = r == CUDA_SUCCESS ? w : r;
        pthread_mutex_lock(&p.m);
        p.copied = n;
        pthread_cond_broadcast(&p.cv);
    }
    pthread_mutex_unlock(&p.m);
    for (unsigned k = 0; k < started; k++)
        pthread_join(th[k], NULL);
    if (prof)
        atomic_fetch_add(&t_jobs, since(tj));
    pthread_mutex_destroy(&p.m);
    pthread_cond_destroy(&p.cv);
    uint32_t m = 0;
    for (uint32_t i = 0; i < n && r == CUDA_SUCCESS; i++) {
        uint32_t len = len_of(&p, i);
        if (p.good[i]) {
            atomic_fetch_add(&gw_cas_stats.hits, 1);
            atomic_fetch_add(&gw_cas_stats.hit_bytes, len);
            if (p.stage)
                gw_stage_fill(c->h.tid, offs[i], NULL, len);
        } else {
            missing[m++].index = i;
            atomic_fetch_add(&gw_cas_stats.misses, 1);
            atomic_fetch_add(&gw_cas_stats.miss_bytes, len);
        }
    }
    gw_cas_report(0);
    if (r != CUDA_SUCCESS) {
        gw_reply_result(c, r);
        return;
    }
    uint8_t *fields = gw_reply_start(c, GW_CAS_REFS_REP_SIZE);
    if (!fields)
        return;
    gw_cas_refs_rep_put(fields, &(gw_cas_refs_rep){.result = CUDA_SUCCESS, .m = m});
    gw_reply_bytes(c, missing, (size_t)m * GW_CAS_REFS_REP_ITEM_SIZE);
}

/* ---- compressed misses ---- */

static size_t (*zstd_decompress)(void *, size_t, const void *, size_t);
static unsigned (*zstd_is_error)(size_t);

void gw_cas_zstd_load(void)
{
    const char *v = getenv("GPUWIRE_CACHE_COMPRESS");
    if (v && !strcmp(v, "off"))
        return;
    void *z = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!z)
        return;
    zstd_decompress = (size_t(*)(void *, size_t, const void *, size_t))dlsym(z, "ZSTD_decompress");
    zstd_is_error = (unsigned (*)(size_t))dlsym(z, "ZSTD_isError");
    if (!zstd_decompress || !zstd_is_error)
        zstd_decompress = NULL;
}

int gw_cas_zstd(void) { return zstd_decompress != NULL; }

/* CAS_DATA: u32 target, its fields, CAS_DATA_CHUNK (u32 codec, u32 raw length, the bytes) */
void gw_op_cas_data(gw_call *c)
{
    target t = {0};
    gw_cas_data_req head = {0};
    if (!gw_in_fields(c, GW_CAS_DATA_REQ_SIZE, gw_cas_data_req_get(gw_in_next(c), gw_in_left(c), &head)) ||
        read_target(c, head.target, &t))
        return;
    gw_cas_data_chunk_req chunk = {0};
    gw_in_fields(c, GW_CAS_DATA_CHUNK_REQ_SIZE, gw_cas_data_chunk_req_get(gw_in_next(c), gw_in_left(c), &chunk));
    uint32_t codec = chunk.codec, raw = chunk.raw_length;
    size_t n = gw_in_left(c);
    const void *src = gw_in_view(c, n);
    if (c->bad)
        return;
    if (raw == 0 || raw > GW_COPY_CHUNK || n > GW_COPY_CHUNK + 4096 ||
        (codec == GW_CAS_CODEC_NONE && n != raw) || (codec != GW_CAS_CODEC_NONE && codec != GW_CAS_CODEC_ZSTD) ||
        (codec == GW_CAS_CODEC_ZSTD && !gw_cas_zstd())) {
        gw_call_fail(c, "cache: chunk of %zu bytes, codec %u, %u bytes raw", n, codec, raw);
        return;
    }
    if (!gw_args_ok(c))
        return;
    const void *data = src;
    if (codec == GW_CAS_CODEC_ZSTD) {
        void *out = gw_scratch(c, raw);
        if (!out) {
            gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
            return;
        }
        size_t got = zstd_decompress(out, raw, src, n);
        if (zstd_is_error(got) || got != raw) {
            gw_call_fail(c, "cache: a compressed chunk does not decompress to its %u bytes", raw);
            return;
        }
        data = out;
    }
    /* The bytes go where the client sent them first: they are its own, for
     * this copy, so they need no check to be used here. Only what is stored
     * for others must be named by what it is: the background writer hashes
     * its own copy of them and stores them under that hash, off this
     * session's ordered jobs (cas_store.c). */
    if (t.kind == GW_CAS_TARGET_STAGE) {
        if (gw_stage_fill(c->h.tid, t.off, data, raw)) {
            gw_call_fail(c, "cache: %u bytes at %llu are outside the staged image", raw, (unsigned long long)t.off);
            return;
        }
        gw_reply_result(c, CUDA_SUCCESS);
    } else {
        if (!gw_driver_fn(c, t.op))
            return;
        gw_reply_result(c, h2d(t.op, t.dst, data, raw, t.stream));
    }
    if (gw_cas_enabled())
        gw_cas_put_later(data, raw);
}
