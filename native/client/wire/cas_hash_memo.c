/* The client's memo of chunk hashes of file-backed memory (docs/cache.md).
 *
 * A model file mapped into memory (safetensors, torch.load(mmap=True)) is
 * copied to the GPU from the mapping; hashing gigabytes again on every start
 * would cost seconds. For a source range inside a mapping of a regular file,
 * a chunk's hash is remembered under (st_dev, st_ino, size, mtime_ns, file
 * offset, length), in a file of fixed-size records under ~/.cache/gpuwire.
 *
 * Only bytes that are the file's: the mapping must be the file /proc/self/maps
 * names (same device and inode as stat says now), and no page of the range may
 * be a private copy (a MAP_PRIVATE page the process wrote to, per
 * /proc/self/pagemap). A file rewritten in place keeping its size and mtime to
 * the nanosecond would defeat it: GPUWIRE_MEMO=0 turns it off. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../../common/sha256.h"
#include "../diag/env.h"
#include "cas.h"
#include "wire_api.h"

#define REC_MAGIC 0x314d5747u /* "GWM1" */
#define MAX_FILE (64u << 20)  /* a memo file beyond this starts over */

typedef struct rec {
    uint32_t magic;
    uint32_t check;  /* first 4 bytes of SHA-256(key || hash): a torn or garbled record is skipped */
    uint64_t key[6]; /* dev, ino, size, mtime_ns, offset, length */
    uint8_t hash[32];
} rec;

_Static_assert(sizeof(rec) == 88, "memo record is 88 bytes");

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int state; /* 0 not loaded, 1 usable, -1 off */
static rec *table; /* open addressing on key; magic 0 = empty slot */
static size_t slots, used;
static int memo_fd = -1;

static uint64_t key_hash(const uint64_t k[6])
{
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 6; i++)
        h = (h ^ k[i]) * 0xff51afd7ed558ccdull, h ^= h >> 29;
    return h;
}

static uint32_t rec_check(const rec *r)
{
    uint8_t buf[48 + 32], out[32];
    memcpy(buf, r->key, 48);
    memcpy(buf + 48, r->hash, 32);
    gw_sha256_hash(buf, sizeof buf, out);
    uint32_t v;
    memcpy(&v, out, 4);
    return v;
}

static void insert(const rec *r)
{
    if ((used + 1) * 2 > slots) {
        size_t ns = slots ? slots * 2 : 4096;
        rec *nt = calloc(ns, sizeof *nt);
        if (!nt)
            return;
        for (size_t i = 0; i < slots; i++)
            if (table[i].magic) {
                size_t j = key_hash(table[i].key) & (ns - 1);
                while (nt[j].magic)
                    j = (j + 1) & (ns - 1);
                nt[j] = table[i];
            }
        free(table);
        table = nt;
        slots = ns;
    }
    size_t j = key_hash(r->key) & (slots - 1);
    while (table[j].magic && memcmp(table[j].key, r->key, 48))
        j = (j + 1) & (slots - 1);
    if (!table[j].magic)
        used++;
    table[j] = *r;
}

static const rec *find(const uint64_t k[6])
{
    if (!slots)
        return NULL;
    for (size_t j = key_hash(k) & (slots - 1); table[j].magic; j = (j + 1) & (slots - 1))
        if (!memcmp(table[j].key, k, 48))
            return &table[j];
    return NULL;
}

static int memo_path(char *out, size_t cap)
{
    const char *v = getenv("GPUWIRE_MEMO_FILE");
    if (v && *v)
        return snprintf(out, cap, "%s", v) < (int)cap ? 0 : -1;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[3000];
    if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/gpuwire", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/gpuwire", home);
    else
        return -1;
    for (char *p = dir + 1; *p; p++) /* mkdir -p */
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0700);
            *p = '/';
        }
    mkdir(dir, 0700);
    return snprintf(out, cap, "%s/memo-v1.bin", dir) < (int)cap ? 0 : -1;
}

static void load_locked(void)
{
    int on = 1;
    char path[3100];
    state = -1;
    gw_env_bool("GPUWIRE_MEMO", "using the default, on", &on);
    if (!on || memo_path(path, sizeof path))
        return;
    memo_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (memo_fd < 0)
        return;
    struct stat st;
    if (fstat(memo_fd, &st) == 0 && st.st_size > MAX_FILE)
        ftruncate(memo_fd, 0);
    state = 1;
    rec r;
    /* records are whole and self-checked; anything else is skipped */
    FILE *f = fdopen(dup(memo_fd), "rb");
    if (!f)
        return;
    while (fread(&r, sizeof r, 1, f) == 1)
        if (r.magic == REC_MAGIC && r.check == rec_check(&r))
            insert(&r);
    fclose(f);
}

/* The mapping that holds [p, p+n), if it is a regular file's. */
int gw_memo_locate(const void *p, size_t n, gw_memo_src *w)
{
    pthread_mutex_lock(&lock);
    if (!state)
        load_locked();
    int on = state == 1;
    pthread_mutex_unlock(&lock);
    if (!on || !n)
        return 0;
    uintptr_t a = (uintptr_t)p, z = a + n;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return 0;
    char line[4352];
    int found = 0;
    unsigned long long lo, hi, foff, ino;
    unsigned maj, mnr;
    char perms[8], path[4096];
    while (fgets(line, sizeof line, f)) {
        path[0] = 0;
        if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %4095[^\n]", &lo, &hi, perms, &foff, &maj, &mnr, &ino,
                   path) < 7)
            continue;
        if (a < lo || a >= hi)
            continue;
        found = z <= hi && ino && perms[0] == 'r' && path[0] == '/' && !strstr(path, " (deleted)");
        break;
    }
    fclose(f);
    if (!found)
        return 0;
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode) || st.st_ino != ino || st.st_dev != makedev(maj, mnr))
        return 0;
    w->dev = st.st_dev;
    w->ino = st.st_ino;
    w->size = (uint64_t)st.st_size;
    w->mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
    w->off = foff + (a - lo);
    if (w->off + n > w->size)
        return 0;
    /* pagemap: bit 63 present, 62 swapped, 61 file page. A present page that is
     * not a file page, or a swapped one, is the process's own copy. */
    int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pm < 0)
        return 0;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t first = a / (uintptr_t)page, last = (z - 1) / (uintptr_t)page;
    uint64_t ent[1024];
    int clean = 1;
    for (uintptr_t pg = first; clean && pg <= last;) {
        size_t k = last - pg + 1 < 1024 ? last - pg + 1 : 1024;
        ssize_t r = pread(pm, ent, k * 8, (off_t)(pg * 8));
        if (r != (ssize_t)(k * 8)) {
            clean = 0;
            break;
        }
        for (size_t i = 0; i < k; i++)
            if (((ent[i] >> 63) & 1 && !((ent[i] >> 61) & 1)) || ((ent[i] >> 62) & 1))
                clean = 0;
        pg += k;
    }
    close(pm);
    return clean;
}

static void key_of(const gw_memo_src *w, uint64_t rel, uint64_t len, uint64_t k[6])
{
    k[0] = w->dev, k[1] = w->ino, k[2] = w->size, k[3] = w->mtime_ns, k[4] = w->off + rel, k[5] = len;
}

int gw_memo_get(const gw_memo_src *w, uint64_t rel, uint64_t len, uint8_t out[32])
{
    uint64_t k[6];
    key_of(w, rel, len, k);
    pthread_mutex_lock(&lock);
    const rec *r = find(k);
    if (r)
        memcpy(out, r->hash, 32);
    pthread_mutex_unlock(&lock);
    return r != NULL;
}

void gw_memo_put(const gw_memo_src *w, const uint64_t *rel, const uint64_t *len, uint8_t (*hash)[32], size_t count)
{
    rec *buf = malloc((count ? count : 1) * sizeof *buf);
    if (!buf)
        return;
    for (size_t i = 0; i < count; i++) {
        buf[i].magic = REC_MAGIC;
        key_of(w, rel[i], len[i], buf[i].key);
        memcpy(buf[i].hash, hash[i], 32);
        buf[i].check = rec_check(&buf[i]);
    }
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < count; i++)
        insert(&buf[i]);
    if (memo_fd >= 0) /* one append: whole records even with other processes appending */
        (void)!write(memo_fd, buf, count * sizeof *buf);
    pthread_mutex_unlock(&lock);
    free(buf);
}
