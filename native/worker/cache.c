/* The server's disk cache of content-addressed chunks (docs/cache.md).
 *
 * DIR/objects/ab/<64 hex digits of SHA-256>: the chunk's bytes followed by a
 * 32-byte trailer: "gwcas01\0", the length (u64 LE) and the CRC-32C of each
 * quarter of the bytes (4 x u32 LE, common/crc32c.h). The name is checked
 * against the bytes (SHA-256) when they arrive from a client, before they are
 * stored; every read then checks length and CRCs, so a truncated or corrupted
 * entry is removed and reported missing, never used. (SHA-256 on every read
 * bounded warm loads at about 0.8 GB/s a thread on the H100 host; the CRCs
 * ran at 15 GB/s on one core of the dev box.) An entry of exactly its length without a trailer,
 * from before the trailer existed, is still accepted and checked with
 * SHA-256. An entry is written to DIR/tmp and renamed into place, so a
 * reader sees a whole entry or none. Last use is the entry's mtime (touched
 * on a hit); eviction of the least recently used entries runs under an flock
 * on DIR/lock, so the many worker processes sharing a folder cooperate. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/crc32c.h"
#include "../common/sha256.h"
#include "cache.h"
#include "worker.h"

static char root[3072];
static uint64_t cap;      /* bytes the folder may hold; 0: no cap */
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

int gw_cas_open(const char *dir, uint64_t max_bytes)
{
    if (!dir || !*dir || strlen(dir) > 2048)
        return -1;
    snprintf(root, sizeof root, "%s", dir);
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

void gw_cas_reject(const uint8_t h[32], const char *why)
{
    char path[3300];
    entry_path(h, path, sizeof path);
    atomic_fetch_add(&gw_cas_stats.corrupt, 1);
    gw_wlog("cache entry %s is corrupt or truncated (%s): removed, fetching it again", path, why);
    unlink(path); /* never used; the next store replaces it */
}

#define TRAILER 32
static const char trailer_magic[8] = "gwcas01";

static void make_trailer(const void *data, size_t len, uint8_t t[TRAILER])
{
    uint64_t n = len;
    uint32_t crc[4];
    gw_crc32c4(data, len, crc);
    memcpy(t, trailer_magic, 8);
    memcpy(t + 8, &n, 8);
    memcpy(t + 16, crc, 16);
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
    int fst = fstat(fd, &st) == 0, res = 0;
    const char *why = "size";
    if (fst && (uint64_t)st.st_size == len + TRAILER) {
        if (read_full(fd, buf, len) == 0 && read_full(fd, got, TRAILER) == 0) {
            make_trailer(buf, len, want);
            res = memcmp(got, want, TRAILER) ? 0 : 2;
            why = "its length or checksums do not match its bytes";
        }
    } else if (fst && (uint64_t)st.st_size == len) { /* no trailer: SHA-256 by the caller */
        res = read_full(fd, buf, len) == 0 && read(fd, &extra, 1) == 0;
    }
    if (res)
        futimens(fd, NULL); /* last use, for LRU eviction */
    close(fd);
    if (!res) {
        char msg[128];
        snprintf(msg, sizeof msg, "%lld bytes for a chunk of %zu: %s", (long long)st.st_size, len, why);
        gw_cas_reject(h, msg);
    }
    return res;
}

void gw_cas_put(const uint8_t h[32], const void *data, size_t len)
{
    if (!enabled)
        return;
    char path[3300], tmp[3300];
    entry_path(h, path, sizeof path);
    if (access(path, F_OK) == 0)
        return; /* another session stored it meanwhile */
    static atomic_uint counter;
    snprintf(tmp, sizeof tmp, "%s/tmp/%d.%u", root, (int)getpid(), atomic_fetch_add(&counter, 1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        left -= (size_t)w;
    }
    uint8_t t[TRAILER];
    make_trailer(data, len, t);
    int bad = left || write(fd, t, TRAILER) != TRAILER;
    bad = close(fd) != 0 || bad;
    char dir[3300];
    snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(path, '/') - path), path);
    if (!bad && mkdir(dir, 0700) && errno != EEXIST)
        bad = 1;
    if (bad || rename(tmp, path)) {
        unlink(tmp); /* a full disk costs only the caching */
        return;
    }
    atomic_fetch_add(&gw_cas_stats.stored, 1);
    atomic_fetch_add(&gw_cas_stats.stored_bytes, len);
    if (cap && atomic_fetch_add(&since_evict, len) + len >= cap / 16) {
        atomic_store(&since_evict, 0);
        gw_cas_evict();
    }
}

/* ---- eviction ---- */

typedef struct ent {
    int64_t mtime_ns;
    uint64_t size;
    char name[68]; /* "ab/<64 hex>" */
} ent;

static int by_age(const void *a, const void *b)
{
    const ent *x = a, *y = b;
    return x->mtime_ns < y->mtime_ns ? -1 : x->mtime_ns > y->mtime_ns;
}

void gw_cas_evict(void)
{
    if (!enabled || !cap)
        return;
    char path[3300];
    snprintf(path, sizeof path, "%s/lock", root);
    int lk = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lk < 0)
        return;
    if (flock(lk, LOCK_EX | LOCK_NB)) { /* another process is evicting now: it does the job */
        close(lk);
        return;
    }
    ent *v = NULL;
    size_t n = 0, vcap = 0;
    uint64_t total = 0;
    snprintf(path, sizeof path, "%s/objects", root);
    DIR *top = opendir(path);
    struct dirent *d1, *d2;
    while (top && (d1 = readdir(top))) {
        if (strlen(d1->d_name) != 2)
            continue;
        char sub[3400];
        snprintf(sub, sizeof sub, "%s/%s", path, d1->d_name);
        DIR *dd = opendir(sub);
        while (dd && (d2 = readdir(dd))) {
            struct stat st;
            if (strlen(d2->d_name) != 64 || fstatat(dirfd(dd), d2->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
                !S_ISREG(st.st_mode))
                continue;
            if (n == vcap) {
                size_t nc = vcap ? vcap * 2 : 1024;
                ent *nv = realloc(v, nc * sizeof *v);
                if (!nv)
                    break;
                v = nv;
                vcap = nc;
            }
            v[n].mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            v[n].size = (uint64_t)st.st_size;
            snprintf(v[n].name, sizeof v[n].name, "%s/%s", d1->d_name, d2->d_name);
            total += v[n].size;
            n++;
        }
        if (dd)
            closedir(dd);
    }
    if (top)
        closedir(top);
    if (total > cap) { /* down to 90% of the cap, so the next stores do not evict again at once */
        qsort(v, n, sizeof *v, by_age);
        uint64_t low = cap / 10 * 9;
        for (size_t i = 0; i < n && total > low; i++) {
            char victim[3500];
            snprintf(victim, sizeof victim, "%s/%s", path, v[i].name);
            if (unlink(victim) == 0) {
                total -= v[i].size;
                atomic_fetch_add(&gw_cas_stats.evicted, 1);
                atomic_fetch_add(&gw_cas_stats.evicted_bytes, v[i].size);
            }
        }
    }
    /* temporary files left by a worker that died mid-write */
    snprintf(path, sizeof path, "%s/tmp", root);
    DIR *tdir = opendir(path);
    time_t now = time(NULL);
    while (tdir && (d1 = readdir(tdir))) {
        struct stat st;
        if (d1->d_name[0] != '.' && fstatat(dirfd(tdir), d1->d_name, &st, 0) == 0 && now - st.st_mtime > 3600)
            unlinkat(dirfd(tdir), d1->d_name, 0);
    }
    if (tdir)
        closedir(tdir);
    free(v);
    flock(lk, LOCK_UN);
    close(lk);
}

/* One line the server parses for its metrics (server.py reads "cache stats:"):
 * at most once a second while the counters move, and at the end. */
void gw_cas_report(int force)
{
    if (!enabled)
        return;
    static unsigned long long last_sum;
    static time_t last_time;
    unsigned long long sum = gw_cas_stats.hits + gw_cas_stats.misses + gw_cas_stats.corrupt + gw_cas_stats.stored;
    time_t now = time(NULL);
    if (sum == last_sum || (!force && now == last_time))
        return;
    last_sum = sum;
    last_time = now;
    gw_wlog("cache stats: hits=%llu misses=%llu hit_bytes=%llu miss_bytes=%llu stored=%llu stored_bytes=%llu "
            "corrupt=%llu evicted=%llu evicted_bytes=%llu",
            (unsigned long long)gw_cas_stats.hits, (unsigned long long)gw_cas_stats.misses,
            (unsigned long long)gw_cas_stats.hit_bytes, (unsigned long long)gw_cas_stats.miss_bytes,
            (unsigned long long)gw_cas_stats.stored, (unsigned long long)gw_cas_stats.stored_bytes,
            (unsigned long long)gw_cas_stats.corrupt, (unsigned long long)gw_cas_stats.evicted,
            (unsigned long long)gw_cas_stats.evicted_bytes);
}
