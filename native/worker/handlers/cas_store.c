/* The server's disk cache of content-addressed chunks (docs/cache.md).
 *
 * DIR/objects/ab/<64 hex digits of SHA-256>: the chunk's bytes followed by a
 * 64-byte trailer: "gwcas02\0", the length (u64 LE), the CRC-32C of each
 * quarter of the bytes (4 x u32 LE, common/crc32c.h) and the SHA-256 itself.
 * The name is checked against the bytes (SHA-256) when they arrive from a
 * client, before they are stored; every read then checks length, CRCs and
 * that the trailer's hash is the name asked for, so a truncated, corrupted,
 * copied or renamed entry is removed and reported missing, never used. (SHA-256
 * on every read bounded warm loads at about 0.8 GB/s a thread on the H100
 * host; the CRCs ran at 15 GB/s on one core of the dev box.) Older entries
 * ("gwcas01" trailer without the hash, or no trailer) are accepted, checked
 * with SHA-256 by the caller and rewritten in the current format. An entry is
 * written to DIR/tmp and renamed into place, so a reader sees a whole entry or
 * none. Last use is the entry's mtime (touched on a hit); eviction of the
 * least recently used entries runs under an flock on DIR/lock, so the many
 * worker processes sharing a folder cooperate. With the server's tenant scope
 * a session's entries live in DIR/tenants/<token id>/ (same layout); the lock
 * and the cap cover the whole folder. Bytes from clients are stored by
 * background writer threads (gw_cas_put_later), off the session's jobs. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../../common/crc32c.h"
#include "../../common/sha256.h"
#include "../../common/session_stats.h"
#include "../../generated/cas_trailer.h"
#include "cas_store.h"
#include "handlers.h"

static char top[2100];    /* the cache folder: its lock and cap cover every scope in it */
static char root[2300];   /* this session's scope: top, or top/tenants/<token id> */
static uint64_t cap;      /* bytes the folder may hold; 0: no cap */
static atomic_ullong disk_cap; /* what the folder held when the disk filled (0: it has not): a cap too */
static int enabled;
static atomic_ullong since_evict; /* bytes stored since the last eviction pass */

gw_cas_counters gw_cas_stats;

static void hex(const uint8_t h[32], char out[65])
{
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = d[h[i] >> 4];
        out[2 * i + 1] = d[h[i] & 15];
    }
    out[64] = 0;
}

static void entry_path(const uint8_t h[32], char *out, size_t cap_)
{
    char x[65];
    hex(h, x);
    snprintf(out, cap_, "%s/objects/%.2s/%s", root, x, x);
}

static int mkdirs(const char *path)
{
    char buf[3200];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0700) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0700) && errno != EEXIST ? -1 : 0;
}

/* a folder name the server made from a token id (cache.py scope_dir) */
static int scope_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] >= '0' && s[i] <= '9') && !(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z') &&
            s[i] != '_' && s[i] != '-')
            return 0;
    return 1;
}

int gw_cas_open(const char *dir, uint64_t max_bytes)
{
    if (!dir || !*dir || strlen(dir) > 2048)
        return -1;
    /* set by the server for --cache-scope tenant; one it cannot have made turns the cache off */
    const char *scope = getenv("GPUWIRE_CACHE_SCOPE");
    if (scope && *scope && !scope_ok(scope))
        return -1;
    snprintf(top, sizeof top, "%s", dir);
    if (scope && *scope)
        snprintf(root, sizeof root, "%s/tenants/%s", top, scope);
    else
        snprintf(root, sizeof root, "%s", top);
    char sub[3200];
    snprintf(sub, sizeof sub, "%s/tmp", root);
    if (mkdirs(sub))
        return -1;
    snprintf(sub, sizeof sub, "%s/objects", root);
    if (mkdirs(sub))
        return -1;
    cap = max_bytes;
    enabled = 1;
    return 0;
}

int gw_cas_enabled(void) { return enabled; }

static int read_full(int fd, uint8_t *buf, size_t n)
{
    while (n) {
        ssize_t r = read(fd, buf, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        buf += r;
        n -= (size_t)r;
    }
    return 0;
}

static int pread_full(int fd, uint8_t *buf, size_t n, uint64_t at)
{
    while (n) {
        ssize_t r = pread(fd, buf, n, (off_t)at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        buf += r;
        at += (uint64_t)r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void gw_cas_reject(const uint8_t h[32], const char *why)
{
    char path[3300];
    entry_path(h, path, sizeof path);
    atomic_fetch_add(&gw_cas_stats.corrupt, 1);
    gw_wlog("cache entry %s is corrupt or truncated (%s): removed, fetching it again", path, why);
    unlink(path); /* never used; the next store replaces it */
}

/* The trailers (codegen/protocol.txt, native/generated/cas_trailer.h): "gwcas02\0",
 * length, 4 CRCs, SHA-256 (the name); v1: "gwcas01\0", length, 4 CRCs (before
 * the name joined it). */
#define TRAILER GW_CAS_TRAILER_V2_SIZE
#define TRAILER_V1 GW_CAS_TRAILER_V1_SIZE
#define MAGIC_LEN (GW_CAS_TRAILER_V2_LENGTH_OFF - GW_CAS_TRAILER_V2_MAGIC_OFF)
#define CRC_LEN (GW_CAS_TRAILER_V2_SHA256_OFF - GW_CAS_TRAILER_V2_CRC_OFF)
#define HASH_LEN (GW_CAS_TRAILER_V2_SIZE - GW_CAS_TRAILER_V2_SHA256_OFF)
static const char magic[] = GW_CAS_TRAILER_V2_MAGIC, magic_v1[] = GW_CAS_TRAILER_V1_MAGIC;
_Static_assert(sizeof magic == MAGIC_LEN && sizeof magic_v1 == GW_CAS_TRAILER_V1_LENGTH_OFF - GW_CAS_TRAILER_V1_MAGIC_OFF,
               "a trailer's magic is its NUL-terminated string");
_Static_assert(CRC_LEN == 4 * sizeof(uint32_t) && GW_CAS_TRAILER_V1_SIZE - GW_CAS_TRAILER_V1_CRC_OFF == CRC_LEN &&
                   GW_CAS_TRAILER_V2_CRC_OFF - GW_CAS_TRAILER_V2_LENGTH_OFF == sizeof(uint64_t) &&
                   GW_CAS_TRAILER_V1_CRC_OFF - GW_CAS_TRAILER_V1_LENGTH_OFF == sizeof(uint64_t) && HASH_LEN == 32,
               "the trailers' fields are the ones written here");

static void make_trailer(const uint8_t h[32], const void *data, size_t len, uint8_t t[TRAILER])
{
    uint64_t n = len;
    uint32_t crc[4];
    gw_crc32c4(data, len, crc);
    memcpy(t + GW_CAS_TRAILER_V2_MAGIC_OFF, magic, MAGIC_LEN);
    memcpy(t + GW_CAS_TRAILER_V2_LENGTH_OFF, &n, sizeof n);
    memcpy(t + GW_CAS_TRAILER_V2_CRC_OFF, crc, CRC_LEN);
    memcpy(t + GW_CAS_TRAILER_V2_SHA256_OFF, h, HASH_LEN);
}

/* The file ends in a current trailer for name h and its own size: a whole
 * entry, of another length than a reference claimed (the reference is wrong,
 * not the entry: it stays). */
static int whole_entry_of(int fd, uint64_t size, const uint8_t h[32])
{
    uint8_t t[TRAILER];
    uint64_t n;
    if (size < TRAILER || pread_full(fd, t, TRAILER, size - TRAILER))
        return 0;
    memcpy(&n, t + GW_CAS_TRAILER_V2_LENGTH_OFF, sizeof n);
    return !memcmp(t + GW_CAS_TRAILER_V2_MAGIC_OFF, magic, MAGIC_LEN) && n == size - TRAILER &&
           !memcmp(t + GW_CAS_TRAILER_V2_SHA256_OFF, h, HASH_LEN);
}

int gw_cas_load(const uint8_t h[32], void *buf, size_t len)
{
    if (!enabled)
        return 0;
    char path[3300];
    entry_path(h, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat st = {0};
    uint8_t extra, got[TRAILER], want[TRAILER];
    if (fstat(fd, &st)) {
        close(fd);
        return 0;
    }
    uint64_t size = (uint64_t)st.st_size;
    int res = 0, keep = 0;
    const char *why = "size";
    if (size == len + TRAILER) {
        why = "its length or checksums do not match its bytes";
        if (read_full(fd, buf, len) == 0 && read_full(fd, got, TRAILER) == 0) {
            make_trailer(h, buf, len, want);
            if (!memcmp(got, want, GW_CAS_TRAILER_V2_SHA256_OFF)) { /* magic, length and CRCs */
                res = memcmp(got + GW_CAS_TRAILER_V2_SHA256_OFF, h, HASH_LEN) ? 0 : 2;
                why = "its trailer names another hash: copied or renamed";
            }
        }
    } else if (whole_entry_of(fd, size, h)) {
        keep = 1;
    } else if (size == len + TRAILER_V1) { /* the older trailer has no hash: SHA-256 by the caller */
        why = "its length or checksums do not match its bytes";
        if (read_full(fd, buf, len) == 0 && read_full(fd, got, TRAILER_V1) == 0) {
            uint64_t n = len;
            uint32_t crc[4];
            gw_crc32c4(buf, len, crc);
            res = !memcmp(got + GW_CAS_TRAILER_V1_MAGIC_OFF, magic_v1, sizeof magic_v1) &&
                  !memcmp(got + GW_CAS_TRAILER_V1_LENGTH_OFF, &n, sizeof n) &&
                  !memcmp(got + GW_CAS_TRAILER_V1_CRC_OFF, crc, CRC_LEN);
        }
    } else if (size == len) { /* no trailer: SHA-256 by the caller */
        res = read_full(fd, buf, len) == 0 && read(fd, &extra, 1) == 0;
    }
    if (res)
        futimens(fd, NULL); /* last use, for LRU eviction */
    close(fd);
    if (!res && !keep) {
        char msg[160];
        snprintf(msg, sizeof msg, "%lld bytes for a chunk of %zu: %s", (long long)st.st_size, len, why);
        gw_cas_reject(h, msg);
    }
    return res;
}

static void evict_pass(uint64_t need);

/* A failed store is counted every time and logged once per cause (errno) in
 * a session: a full disk fails every store, and must not flood the log. */
static void store_failed(int err, const char *step)
{
    atomic_fetch_add(&gw_cas_stats.store_failed, 1);
    static atomic_ullong said;
    unsigned long long bit = 1ull << (err > 0 && err < 63 ? err : 63);
    if (atomic_fetch_or(&said, bit) & bit)
        return;
    char eb[128];
    const char *text = strerror_r(err, eb, sizeof eb);
    int full = err == ENOSPC || err == EDQUOT;
    gw_wlog("cache: cannot store a chunk in %s (%s: %s)%s; such failures are counted (store_failed), this "
            "one is logged once",
            root, step, text,
            full ? ": the disk filled before the cache's cap (lower --cache-max-bytes to what it holds); "
                   "evicting the least recently used entries to make room"
                 : "");
}

/* One attempt: 0, or the errno that stopped it (*step: what failed). */
static int store_once(const char *path, const uint8_t h[32], const void *data, size_t len, const char **step)
{
    static atomic_uint counter;
    char tmp[3300], dir[3300];
    snprintf(tmp, sizeof tmp, "%s/tmp/%d.%u", root, (int)getpid(), atomic_fetch_add(&counter, 1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        *step = "create";
        return errno;
    }
    uint8_t t[TRAILER];
    make_trailer(h, data, len, t);
    int err = write_full(fd, data, len) || write_full(fd, t, TRAILER) ? errno : 0;
    *step = "write";
    if (close(fd) && !err)
        err = errno; /* some file systems report a full disk only here */
    snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(path, '/') - path), path);
    if (!err && mkdir(dir, 0700) && errno != EEXIST) {
        err = errno;
        *step = "mkdir";
    }
    if (!err && rename(tmp, path)) {
        err = errno;
        *step = "rename";
    }
    if (err)
        unlink(tmp);
    return err;
}

static uint64_t cap_now(void)
{
    uint64_t d = atomic_load(&disk_cap);
    return cap && d ? (cap < d ? cap : d) : cap ? cap : d;
}

static void put(const uint8_t h[32], const void *data, size_t len, int replace)
{
    if (!enabled)
        return;
    char path[3300];
    entry_path(h, path, sizeof path);
    if (!replace && access(path, F_OK) == 0)
        return; /* another session stored it meanwhile */
    const char *step = "";
    int err = store_once(path, h, data, len, &step);
    if (err) {
        store_failed(err, step);
        if (err != ENOSPC && err != EDQUOT)
            return; /* eviction would not help: caching is lost, the copy is not */
        evict_pass(len + TRAILER);
        if ((err = store_once(path, h, data, len, &step)) != 0) {
            store_failed(err, step);
            return;
        }
    }
    if (replace)
        return; /* the same entry in the current format, not a new one */
    atomic_fetch_add(&gw_cas_stats.stored, 1);
    atomic_fetch_add(&gw_cas_stats.stored_bytes, len);
    uint64_t c = cap_now();
    if (c && atomic_fetch_add(&since_evict, len) + len >= c / 16) {
        atomic_store(&since_evict, 0);
        gw_cas_evict();
    }
}

void gw_cas_put(const uint8_t h[32], const void *data, size_t len) { put(h, data, len, 0); }

/* ---- the background writer ----
 * Storing a chunk (SHA-256 of fresh bytes, CRCs, the write, the rename) cost
 * more than the copy it rides on: on the H100 host 6 ms a 4 MiB chunk, all of
 * it in the session's ordered jobs. So the ops hand a copy of the bytes to
 * writer threads and go on; a writer hashes them itself (the name is still
 * the worker's own hash of what it stores) and stores them as before, tmp
 * file and rename. The queue is bounded in chunks; when it is full the chunk
 * is not stored (counted store_skipped): the session never waits for the
 * disk. Buffers are kept for reuse, so a busy queue does not fault in fresh
 * pages for every chunk. */
typedef struct wjob {
    uint8_t *buf;
    size_t len;
    uint8_t h[32];
    int replace; /* an upgrade: h is known (checked by the caller) */
} wjob;

static pthread_mutex_t wq_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wq_work = PTHREAD_COND_INITIALIZER, wq_idle = PTHREAD_COND_INITIALIZER;
static wjob *wq;                   /* ring of wq_cap jobs */
static uint8_t **wq_spare;         /* buffers not in use */
static unsigned wq_cap, wq_head, wq_count, wq_busy, wq_nspare, wq_bufs, wq_writers;
static int wq_said_skip;

static unsigned env_count(const char *name, unsigned dflt, unsigned max)
{
    const char *v = getenv(name);
    long n = v && *v ? strtol(v, NULL, 10) : 0;
    return n > 0 && (unsigned long)n <= max ? (unsigned)n : dflt;
}

static void *writer(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wq_m);
    for (;;) {
        while (!wq_count)
            pthread_cond_wait(&wq_work, &wq_m);
        wjob j = wq[wq_head];
        wq_head = (wq_head + 1) % wq_cap;
        wq_count--;
        wq_busy++;
        pthread_mutex_unlock(&wq_m);
        if (!j.replace)
            gw_sha256_hash(j.buf, j.len, j.h); /* what the bytes are, not what they were called */
        put(j.h, j.buf, j.len, j.replace);
        pthread_mutex_lock(&wq_m);
        wq_spare[wq_nspare++] = j.buf;
        wq_busy--;
        if (!wq_count && !wq_busy)
            pthread_cond_broadcast(&wq_idle);
    }
    return NULL;
}

/* Under wq_m: the queue and its threads, on first use. 0: none to be had. */
static int writers_ready(void)
{
    if (wq_writers)
        return 1;
    if (!wq) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned dflt = cpus >= 16 ? 8u : cpus >= 4 ? (unsigned)cpus / 2 : 1u;
        unsigned n = env_count("GPUWIRE_CACHE_WRITERS", dflt, 64);
        unsigned want = n * 8 < 16 ? 16 : n * 8 > 64 ? 64 : n * 8;
        wq_cap = env_count("GPUWIRE_CACHE_WRITE_QUEUE", want, 1024);
        wq = calloc(wq_cap, sizeof *wq);
        wq_spare = calloc(wq_cap, sizeof *wq_spare);
        if (!wq || !wq_spare) {
            free(wq), free(wq_spare);
            wq = NULL, wq_spare = NULL;
            return 0;
        }
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        for (unsigned i = 0; i < n; i++) {
            pthread_t t;
            if (pthread_create(&t, &a, writer, NULL))
                break;
            wq_writers++;
        }
        pthread_attr_destroy(&a);
    }
    return wq_writers > 0;
}

/* Queue a copy of the bytes; 0 queued, 1 the queue is full (not stored), -1 no writer (store here). */
static int enqueue(const uint8_t *h, const void *data, size_t len)
{
    if (len > GW_COPY_CHUNK)
        return -1;
    pthread_mutex_lock(&wq_m);
    if (!writers_ready()) {
        pthread_mutex_unlock(&wq_m);
        return -1;
    }
    uint8_t *buf = NULL;
    if (wq_count + wq_busy < wq_cap) {
        if (wq_nspare)
            buf = wq_spare[--wq_nspare];
        else if (wq_bufs < wq_cap && (buf = malloc(GW_COPY_CHUNK)) != NULL)
            wq_bufs++;
    }
    if (!buf) {
        int say = !wq_said_skip;
        wq_said_skip = 1;
        pthread_mutex_unlock(&wq_m);
        atomic_fetch_add(&gw_cas_stats.store_skipped, 1);
        if (say)
            gw_wlog("cache: the background writer is %u chunks behind: chunks are not stored while it catches up "
                    "(counted store_skipped; logged once)",
                    wq_cap);
        return 1;
    }
    wq_busy++; /* the buffer is ours while we fill it; counted so the slot stays taken */
    pthread_mutex_unlock(&wq_m);
    memcpy(buf, data, len);
    pthread_mutex_lock(&wq_m);
    wq_busy--;
    wjob *j = &wq[(wq_head + wq_count) % wq_cap];
    *j = (wjob){.buf = buf, .len = len, .replace = h != NULL};
    if (h)
        memcpy(j->h, h, 32);
    wq_count++;
    pthread_cond_signal(&wq_work);
    pthread_mutex_unlock(&wq_m);
    return 0;
}

void gw_cas_put_later(const void *data, size_t len)
{
    if (!enabled || enqueue(NULL, data, len) >= 0)
        return;
    uint8_t h[32];
    gw_sha256_hash(data, len, h);
    put(h, data, len, 0);
}

int gw_cas_drain(unsigned max_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += max_ms / 1000;
    until.tv_nsec += (long)(max_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&wq_m);
    int r = 0;
    while ((wq_count || wq_busy) && r == 0)
        r = pthread_cond_timedwait(&wq_idle, &wq_m, &until);
    int done = !wq_count && !wq_busy;
    pthread_mutex_unlock(&wq_m);
    return done ? 0 : -1;
}

void gw_cas_upgrade(const uint8_t h[32], const void *data, size_t len)
{
    if (enabled && enqueue(h, data, len) < 0)
        put(h, data, len, 1);
}

/* ---- eviction ---- */

typedef struct ent {
    int64_t mtime_ns;
    uint64_t size, disk; /* bytes (what the cap counts) and blocks on disk (what a full disk gets back) */
    uint32_t scope;      /* index in scopes */
    char name[65];       /* 64 hex digits */
} ent;

static int by_age(const void *a, const void *b)
{
    const ent *x = a, *y = b;
    return x->mtime_ns < y->mtime_ns ? -1 : x->mtime_ns > y->mtime_ns;
}

/* "" (the shared scope) and "tenants/<id>" for each tenant's folder */
typedef struct scopes {
    char (*name)[80];
    uint32_t n;
} scopes;

static void list_scopes(scopes *s)
{
    s->name = malloc(sizeof *s->name);
    s->n = 0;
    if (!s->name)
        return;
    s->name[s->n++][0] = 0;
    char path[2300];
    snprintf(path, sizeof path, "%s/tenants", top);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!scope_ok(e->d_name))
            continue;
        void *nn = realloc(s->name, (s->n + 1) * sizeof *s->name);
        if (!nn)
            break;
        s->name = nn;
        snprintf(s->name[s->n++], sizeof *s->name, "tenants/%.64s", e->d_name); /* scope_ok: at most 64 */
    }
    if (d)
        closedir(d);
}

static void scope_path(const scopes *s, uint32_t i, const char *sub, char *out, size_t n)
{
    snprintf(out, n, "%s%s%s/%s", top, s->name[i][0] ? "/" : "", s->name[i], sub);
}

typedef struct ents {
    ent *v;
    size_t n, cap;
    uint64_t total;
} ents;

static void scan(ents *es, const char *objects, uint32_t scope)
{
    DIR *top_ = opendir(objects);
    struct dirent *d1, *d2;
    while (top_ && (d1 = readdir(top_))) {
        if (strlen(d1->d_name) != 2)
            continue;
        char sub[3400];
        snprintf(sub, sizeof sub, "%s/%s", objects, d1->d_name);
        DIR *dd = opendir(sub);
        while (dd && (d2 = readdir(dd))) {
            struct stat st;
            if (strlen(d2->d_name) != 64 || fstatat(dirfd(dd), d2->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
                !S_ISREG(st.st_mode))
                continue;
            if (es->n == es->cap) {
                size_t nc = es->cap ? es->cap * 2 : 1024;
                ent *nv = realloc(es->v, nc * sizeof *es->v);
                if (!nv)
                    break;
                es->v = nv;
                es->cap = nc;
            }
            ent *e = &es->v[es->n++];
            e->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            e->size = (uint64_t)st.st_size;
            e->disk = (uint64_t)st.st_blocks * 512;
            e->scope = scope;
            memcpy(e->name, d2->d_name, 65);
            es->total += e->size;
        }
        if (dd)
            closedir(dd);
    }
    if (top_)
        closedir(top_);
}

/* Down to 90% of the cap, least recently used first, over every scope. need
 * > 0: a store of that many bytes found the disk full before the cap, so what
 * the folder holds now is the cap from now on (for this worker): down to 90%
 * of it, and at least until the store fits. */
static void evict_pass(uint64_t need)
{
    if (!enabled || (!cap_now() && !need))
        return;
    char path[3300];
    snprintf(path, sizeof path, "%s/lock", top);
    int lk = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lk < 0)
        return;
    if (flock(lk, LOCK_EX | LOCK_NB)) { /* another process is evicting (or pruning) now: it does the job */
        close(lk);
        return;
    }
    scopes sc;
    list_scopes(&sc);
    ents es = {0};
    for (uint32_t i = 0; i < sc.n; i++) {
        scope_path(&sc, i, "objects", path, sizeof path);
        scan(&es, path, i);
    }
    uint64_t short_by = 0;
    if (need) {
        struct statvfs fs;
        uint64_t avail = statvfs(root, &fs) == 0 ? (uint64_t)fs.f_bavail * fs.f_frsize : 0;
        short_by = need > avail ? need - avail : 0;
        uint64_t d = atomic_load(&disk_cap);
        if (es.total && (!d || es.total < d))
            atomic_store(&disk_cap, es.total);
    }
    uint64_t c = cap_now(), low = c && es.total >= c ? c / 10 * 9 : es.total;
    if (es.total > low || short_by) {
        qsort(es.v, es.n, sizeof *es.v, by_age);
        uint64_t freed = 0;
        for (size_t i = 0; i < es.n && (es.total > low || freed < short_by); i++) {
            char victim[3500];
            scope_path(&sc, es.v[i].scope, "objects", path, sizeof path);
            snprintf(victim, sizeof victim, "%s/%.2s/%s", path, es.v[i].name, es.v[i].name);
            if (unlink(victim) == 0) {
                es.total -= es.v[i].size;
                freed += es.v[i].disk;
                atomic_fetch_add(&gw_cas_stats.evicted, 1);
                atomic_fetch_add(&gw_cas_stats.evicted_bytes, es.v[i].size);
            }
        }
    }
    /* temporary files left by a worker that died mid-write */
    time_t now = time(NULL);
    for (uint32_t i = 0; i < sc.n; i++) {
        scope_path(&sc, i, "tmp", path, sizeof path);
        DIR *tdir = opendir(path);
        struct dirent *d;
        while (tdir && (d = readdir(tdir))) {
            struct stat st;
            if (d->d_name[0] != '.' && fstatat(dirfd(tdir), d->d_name, &st, 0) == 0 && now - st.st_mtime > 3600)
                unlinkat(dirfd(tdir), d->d_name, 0);
        }
        if (tdir)
            closedir(tdir);
    }
    free(es.v);
    free(sc.name);
    flock(lk, LOCK_UN);
    close(lk);
}

void gw_cas_evict(void) { evict_pass(0); }

/* The counters into the session-stats block, where the server reads them
 * for its metrics; and a "cache stats:" line for whoever reads the log, at
 * most once a second while the counters move, and at the end. */
void gw_cas_report(int force)
{
    if (!enabled)
        return;
    if (gw_sstats) {
#define PUBLISH(f) __atomic_store_n(&gw_sstats->cas_##f, (uint64_t)gw_cas_stats.f, __ATOMIC_RELAXED)
        PUBLISH(hits), PUBLISH(misses), PUBLISH(hit_bytes), PUBLISH(miss_bytes), PUBLISH(stored);
        PUBLISH(stored_bytes), PUBLISH(corrupt), PUBLISH(evicted), PUBLISH(evicted_bytes), PUBLISH(store_failed);
#undef PUBLISH
    }
    static unsigned long long last_sum;
    static time_t last_time;
    unsigned long long sum = gw_cas_stats.hits + gw_cas_stats.misses + gw_cas_stats.corrupt + gw_cas_stats.stored +
                             gw_cas_stats.store_failed + gw_cas_stats.store_skipped;
    time_t now = time(NULL);
    if (sum == last_sum || (!force && now == last_time))
        return;
    last_sum = sum;
    last_time = now;
    gw_wlog("cache stats: hits=%llu misses=%llu hit_bytes=%llu miss_bytes=%llu stored=%llu stored_bytes=%llu "
            "corrupt=%llu evicted=%llu evicted_bytes=%llu store_failed=%llu store_skipped=%llu",
            (unsigned long long)gw_cas_stats.hits, (unsigned long long)gw_cas_stats.misses,
            (unsigned long long)gw_cas_stats.hit_bytes, (unsigned long long)gw_cas_stats.miss_bytes,
            (unsigned long long)gw_cas_stats.stored, (unsigned long long)gw_cas_stats.stored_bytes,
            (unsigned long long)gw_cas_stats.corrupt, (unsigned long long)gw_cas_stats.evicted,
            (unsigned long long)gw_cas_stats.evicted_bytes, (unsigned long long)gw_cas_stats.store_failed,
            (unsigned long long)gw_cas_stats.store_skipped);
}
