/* gpuwire client: the driver's compile cache, export table da9151d3.
 *
 * NVRTC (and cuFFT, cuDNN through it) keep what they compile in the driver's
 * compute cache: before turning a program's bitcode into PTX (kind 2), and
 * PTX into a cubin (kind 1), NVRTC opens an entry for it, looks it up, and on
 * a miss compiles and stores the result. On the H100
 * (2026-11-27, tests/gpu/gpu-all nvrtcdiag) a small NVRTC compile took 18 ms
 * natively and 64 ms with CUDA_CACHE_DISABLE=1, and the decode benchmark
 * (cuDNN attention NVRTC-compiling per token) 24 tokens in 1.45 s against
 * 9.50 s without the cache. Without this table a gpuwire client compiled
 * everything every time. NVRTC runs in the client, so its cache belongs here:
 * a folder on the client machine, nothing sent to the server.
 *
 * The slots as seen with tools/gpu-spy on the real driver and probed with
 * NVRTC 13.0 against this table (docs/export-tables.md):
 *   1 open(&handle, kind, key, key_len, options) -> 0, or 1 (refused: the cache is off)
 *   3 lookup(handle, 0, &data, &len32) -> 0 (hit) or 500 (NOT_FOUND)
 *   4 store(handle, 0, data, len) -> 0
 *   2 close(handle) -> 0
 * The key is the program's NVVM bitcode ("BC\xc0\xde"), the same for every
 * target; the options are a string naming the target (" -arch=compute_90
 * -ftz=0 ..." for PTX, " -arch=sm_90" for cubins), so both go into the entry's
 * name: without the options an sm_80 compile was handed sm_90 code. A cubin's
 * name also has the PTX it is made from (see last_ptx below). Data a
 * lookup hands out is the caller's until it gives it back through slot 6
 * (6 release(data, ...)), which may come after close: NVRTC copies the data
 * and releases it before close, but nvJitLink 13.0 keeps the pointer as its
 * link's result past close and releases it when the link is destroyed. Freed
 * at close, that was a use after free: nvJitLink answered ERROR_INTERNAL to
 * every link whose cubin came from the cache (the error of numba-cuda's suite
 * on the H100, issue 14; reproduced on the stand-in). So handed-out data is
 * listed and freed only by slot 6 (tests/e2e/test_compile_cache_release.py:
 * both orders, freed memory overwritten by glibc's MALLOC_PERTURB_).
 * Slot 5 was never seen called and is refused.
 *
 * Folder: GPUWIRE_COMPILE_CACHE (a path, or "off"); else $CUDA_CACHE_PATH/
 * gpuwire; else ${XDG_CACHE_HOME:-~/.cache}/gpuwire/compile. CUDA_CACHE_DISABLE=1
 * turns it off as it does the driver's; CUDA_CACHE_MAXSIZE caps it (bytes,
 * default 256 MiB; the least recently used entries go first). Entries are
 * written to a temporary name and renamed, and carry a SHA-256 of their data
 * that is checked on every read: a torn or corrupt entry is deleted and
 * counts as a miss, never handed out. */
#define _GNU_SOURCE
#include "../state/state.h"
#include "export_tables.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../common/sha256.h"

#define KIND_CUBIN 1u
#define KIND_PTX 2u
#define MAX_KEY (64u << 20)   /* NVRTC's keys were 1.4-18 KiB */
#define MAX_OPTIONS (1u << 20)
#define MAX_ENTRY (1u << 30)  /* the lookup reports a 32-bit length */
#define MAGIC "gwcc0001"
#define HEADER (8 + 8 + 32)   /* magic, length, SHA-256 of the data */
#define DEFAULT_CAP (256ull << 20)

typedef struct cc_handle {
    uint32_t kind;
    int blind;            /* a cubin entry whose PTX is unknown: never found, never stored */
    uint8_t key[32];      /* the entry's name: SHA-256 of kind, options, key (and PTX, for cubins) */
    uint8_t program[32];  /* SHA-256 of the caller's key alone */
} cc_handle;

/* A cubin is made from PTX, and NVRTC names both entries by the same key (the
 * bitcode) with only the ptxas options added for the cubin: a --use_fast_math
 * compile, whose PTX differs, was handed the plain compile's cubin. So a cubin
 * entry is also named by the PTX it was made from: the PTX this thread just
 * looked up or stored for the same program (NVRTC asks for the PTX, then the
 * cubin, on one thread). Without it, a cubin entry is opened blind: its
 * lookups miss and its stores are dropped. Not refused: nvJitLink 13.0 (numba's
 * linker) opens a cubin entry after a PTX lookup that missed, with no store
 * between, and crashed when that open was refused (compat numba_kernels on the
 * H100); a blind entry is what a cold cache looks like to it. */
static __thread struct {
    uint8_t program[32], ptx[32];
    int valid;
} last_ptx;

static void saw_ptx(const cc_handle *h, const void *data, size_t len)
{
    memcpy(last_ptx.program, h->program, 32);
    gw_sha256_hash(data, len, last_ptx.ptx);
    last_ptx.valid = 1;
}

/* Data lookups handed out and slot 6 has not yet given back: the caller owns
 * it (nvJitLink keeps it past close). Slot 6 frees only pointers found here,
 * so a release of anything else frees nothing. */
typedef struct lent {
    void *data;
    struct lent *next;
} lent;
static lent *lent_list;
static pthread_mutex_t lent_lock = PTHREAD_MUTEX_INITIALIZER;

static int lend(void *data)
{
    lent *l = malloc(sizeof *l);
    if (!l)
        return -1;
    l->data = data;
    pthread_mutex_lock(&lent_lock);
    l->next = lent_list;
    lent_list = l;
    pthread_mutex_unlock(&lent_lock);
    return 0;
}

/* 1 if data was lent (and is now freed), 0 if it was not ours */
static int take_back(void *data)
{
    lent *found = NULL;
    pthread_mutex_lock(&lent_lock);
    for (lent **p = &lent_list; *p; p = &(*p)->next) {
        if ((*p)->data == data) {
            found = *p;
            *p = found->next;
            break;
        }
    }
    pthread_mutex_unlock(&lent_lock);
    if (!found)
        return 0;
    free(found->data);
    free(found);
    return 1;
}

static gw_compile_cache_figures figures;
gw_compile_cache_figures *gw_compile_cache_stats(void) { return &figures; }

static int debug(void)
{
    return gw_debug_level() >= 2;
}

/* ---- the folder ---- */

static char dir[PATH_MAX];
static int dir_state; /* 0 unknown, 1 usable, -1 off */
static pthread_once_t dir_once = PTHREAD_ONCE_INIT;

static int make_dirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        int r = mkdir(path, 0700);
        *p = '/';
        if (r && errno != EEXIST)
            return -1;
    }
    return mkdir(path, 0700) && errno != EEXIST ? -1 : 0;
}

static void find_dir(void)
{
    const char *own = getenv("GPUWIRE_COMPILE_CACHE"), *off = getenv("CUDA_CACHE_DISABLE");
    const char *cuda = getenv("CUDA_CACHE_PATH"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n = -1;
    dir_state = -1;
    if ((off && atoi(off) == 1) || (own && !strcmp(own, "off")))
        return;
    if (own && *own)
        n = snprintf(dir, sizeof dir, "%s", own);
    else if (cuda && *cuda)
        n = snprintf(dir, sizeof dir, "%s/gpuwire", cuda);
    else if (xdg && *xdg)
        n = snprintf(dir, sizeof dir, "%s/gpuwire/compile", xdg);
    else if (home && *home)
        n = snprintf(dir, sizeof dir, "%s/.cache/gpuwire/compile", home);
    if (n <= 0 || (size_t)n + 80 >= sizeof dir || make_dirs(dir) || access(dir, W_OK | X_OK))
        return;
    dir_state = 1;
}

static int usable(void)
{
    pthread_once(&dir_once, find_dir);
    return dir_state == 1;
}

static uint64_t cap_bytes(void)
{
    const char *v = getenv("CUDA_CACHE_MAXSIZE");
    unsigned long long n = v ? strtoull(v, NULL, 10) : 0;
    return n ? n : DEFAULT_CAP;
}

/* the entry of a handle, named by its key digest */
static void entry_path(const cc_handle *h, char *out, size_t cap)
{
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", h->key[i]);
    if (snprintf(out, cap, "%s/%.2s/%s", dir, hex, hex + 2) >= (int)cap) /* cannot be: find_dir left room */
        out[0] = 0;
}

static int read_all(int fd, void *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t n)
{
    for (size_t put = 0; put < n;) {
        ssize_t r = write(fd, (const char *)buf + put, n - put);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        put += (size_t)r;
    }
    return 0;
}

/* the entry's data, checked, or NULL (a bad entry is removed) */
static void *load(const char *path, uint32_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    uint8_t head[HEADER];
    struct stat st;
    void *data = NULL;
    uint64_t n = 0;
    int bad = 1;
    if (!fstat(fd, &st) && !read_all(fd, head, HEADER) && !memcmp(head, MAGIC, 8)) {
        memcpy(&n, head + 8, 8);
        if (n && n <= MAX_ENTRY && (uint64_t)st.st_size == HEADER + n && (data = malloc(n)) &&
            !read_all(fd, data, n)) {
            uint8_t d[32];
            gw_sha256_hash(data, n, d);
            bad = memcmp(d, head + 16, 32) != 0;
        }
    }
    close(fd);
    if (bad) {
        free(data);
        if (data || n) { /* a readable entry that failed its checks, not a vanished one */
            unlink(path);
            atomic_fetch_add(&figures.discarded, 1);
        }
        return NULL;
    }
    utimensat(AT_FDCWD, path, NULL, 0); /* used now: last to be evicted */
    *len = (uint32_t)n;
    return data;
}

typedef struct aged {
    char name[80];
    int64_t t; /* ns: entries written within one second still have an order */
    off_t size;
} aged;

static int older_first(const void *a, const void *b)
{
    int64_t x = ((const aged *)a)->t, y = ((const aged *)b)->t;
    return x < y ? -1 : x > y;
}

/* Least recently used entries out until the folder is under 90% of its cap. */
static void evict(void)
{
    size_t n = 0, cap = 256;
    aged *all = malloc(cap * sizeof *all);
    uint64_t total = 0, limit = cap_bytes();
    char sub[PATH_MAX];
    DIR *top = all ? opendir(dir) : NULL;
    for (struct dirent *e; top && (e = readdir(top));) {
        if (strlen(e->d_name) != 2 || snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) >= (int)sizeof sub)
            continue;
        DIR *d = opendir(sub);
        for (struct dirent *f; d && (f = readdir(d));) {
            struct stat st;
            if (f->d_name[0] == '.' || strlen(f->d_name) > 70 || fstatat(dirfd(d), f->d_name, &st, 0))
                continue;
            if (n == cap) {
                aged *more = realloc(all, 2 * cap * sizeof *all);
                if (!more)
                    break;
                all = more, cap *= 2;
            }
            snprintf(all[n].name, sizeof all[n].name, "%.2s/%.70s", e->d_name, f->d_name);
            all[n].t = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec, all[n].size = st.st_size;
            total += (uint64_t)st.st_size;
            n++;
        }
        if (d)
            closedir(d);
    }
    if (top)
        closedir(top);
    if (total > limit) {
        qsort(all, n, sizeof *all, older_first);
        for (size_t i = 0; i < n && total > limit / 10 * 9; i++) {
            if (snprintf(sub, sizeof sub, "%s/%s", dir, all[i].name) < (int)sizeof sub && !unlink(sub)) {
                total -= (uint64_t)all[i].size;
                atomic_fetch_add(&figures.evicted, 1);
            }
        }
    }
    free(all);
}

static void store(const char *path, const void *data, uint32_t len)
{
    static atomic_uint seq;
    static atomic_ullong since_evict;
    char tmp[PATH_MAX + 32], sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s", path);
    char *slash = strrchr(sub, '/');
    if (!slash)
        return;
    *slash = 0;
    if (mkdir(sub, 0700) && errno != EEXIST)
        return;
    snprintf(tmp, sizeof tmp, "%s/.tmp-%d-%u", sub, (int)getpid(), atomic_fetch_add(&seq, 1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    uint8_t head[HEADER];
    uint64_t n = len;
    memcpy(head, MAGIC, 8);
    memcpy(head + 8, &n, 8);
    gw_sha256_hash(data, len, head + 16);
    int ok = !write_all(fd, head, HEADER) && !write_all(fd, data, len);
    ok = !close(fd) && ok;
    if (!ok || rename(tmp, path)) { /* a full disk costs the entry, nothing else */
        unlink(tmp);
        return;
    }
    atomic_fetch_add(&figures.stores, 1);
    atomic_fetch_add(&figures.stored_bytes, len);
    if (atomic_fetch_add(&since_evict, HEADER + n) + HEADER + n > cap_bytes() / 16) {
        atomic_store(&since_evict, 0);
        evict();
    }
}

/* ---- the slots ---- */

static CUresult cc_open(cc_handle **out, unsigned kind, const void *key, size_t key_len, const char *options)
{
    size_t olen = options ? strnlen(options, MAX_OPTIONS + 1) : 0;
    if (olen > MAX_OPTIONS)
        return CUDA_ERROR_INVALID_VALUE;
    if (!out || !key || !key_len || key_len > MAX_KEY || (kind != KIND_CUBIN && kind != KIND_PTX))
        return CUDA_ERROR_INVALID_VALUE;
    if (!usable())
        return CUDA_ERROR_INVALID_VALUE; /* what a refusal looked like natively; the caller compiles */
    uint8_t program[32];
    gw_sha256_hash(key, key_len, program);
    int from_ptx = kind == KIND_CUBIN;
    cc_handle *h = calloc(1, sizeof *h);
    if (!h)
        return CUDA_ERROR_OUT_OF_MEMORY;
    h->kind = kind;
    /* which PTX it would be made from is unknown */
    h->blind = from_ptx && !(last_ptx.valid && !memcmp(last_ptx.program, program, 32));
    memcpy(h->program, program, 32);
    uint32_t tag[2] = {kind, (uint32_t)olen};
    gw_sha256 st;
    gw_sha256_init(&st);
    gw_sha256_update(&st, tag, sizeof tag);
    gw_sha256_update(&st, options ? options : "", olen);
    gw_sha256_update(&st, program, 32);
    if (from_ptx && !h->blind)
        gw_sha256_update(&st, last_ptx.ptx, 32);
    gw_sha256_final(&st, h->key);
    *out = h;
    return CUDA_SUCCESS;
}

static CUresult cc_close(cc_handle *h)
{
    if (!h)
        return CUDA_ERROR_INVALID_VALUE;
    free(h); /* what lookups handed out stays the caller's until slot 6 */
    return CUDA_SUCCESS;
}

static CUresult cc_lookup(cc_handle *h, void **data, uint32_t *len)
{
    if (!h || !data || !len)
        return CUDA_ERROR_INVALID_VALUE;
    atomic_fetch_add(&figures.lookups, 1);
    if (h->blind)
        return CUDA_ERROR_NOT_FOUND;
    char path[PATH_MAX];
    entry_path(h, path, sizeof path);
    uint32_t n = 0;
    void *got = load(path, &n);
    if (!got)
        return CUDA_ERROR_NOT_FOUND;
    if (lend(got)) {
        free(got);
        return CUDA_ERROR_NOT_FOUND;
    }
    *data = got;
    *len = n;
    if (h->kind == KIND_PTX)
        saw_ptx(h, got, n);
    atomic_fetch_add(&figures.hits, 1);
    atomic_fetch_add(&figures.hit_bytes, n);
    return CUDA_SUCCESS;
}

static CUresult cc_store(cc_handle *h, const void *data, size_t len)
{
    if (!h || !data || !len || len > MAX_ENTRY)
        return CUDA_ERROR_INVALID_VALUE;
    if (h->kind == KIND_PTX)
        saw_ptx(h, data, len);
    if (h->blind)
        return CUDA_SUCCESS;
    char path[PATH_MAX];
    entry_path(h, path, sizeof path);
    store(path, data, (uint32_t)len);
    return CUDA_SUCCESS;
}

/* The slots take the driver's integer-register arguments; a wrapper per slot
 * traces them under GPUWIRE_DEBUG=2. */
static CUresult slot1(void **out, uintptr_t kind, const void *key, uintptr_t len, const void *options)
{
    CUresult r = cc_open((cc_handle **)out, (unsigned)kind, key, (size_t)len, (const char *)options);
    if (debug()) {
        const uint8_t *d = r == CUDA_SUCCESS ? (*(cc_handle **)out)->key : (const uint8_t *)"\0\0\0\0";
        fprintf(stderr, "gpuwire: export COMPILE_CACHE[1](kind %lu, key %lu bytes, sha256 %02x%02x%02x%02x..) -> %d\n",
                (unsigned long)kind, (unsigned long)len, d[0], d[1], d[2], d[3], r);
    }
    return r;
}

static CUresult slot2(void *h)
{
    if (debug())
        fprintf(stderr, "gpuwire: export COMPILE_CACHE[2](%p)\n", h);
    return cc_close(h);
}

static CUresult slot3(void *h, uintptr_t flags, void **data, uint32_t *len)
{
    (void)flags;
    CUresult r = cc_lookup(h, data, len);
    if (debug())
        fprintf(stderr, "gpuwire: export COMPILE_CACHE[3](%p) -> %d%s\n", h, r, r == CUDA_SUCCESS ? " (hit)" : "");
    return r;
}

static CUresult slot4(void *h, uintptr_t flags, const void *data, uintptr_t len)
{
    if (debug())
        fprintf(stderr, "gpuwire: export COMPILE_CACHE[4](%p, %lu bytes)\n", h, (unsigned long)len);
    (void)flags;
    return cc_store(h, data, (size_t)len);
}

static CUresult slot5(void)
{
    static atomic_flag said = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&said))
        fprintf(stderr, "gpuwire: export table COMPILE_CACHE slot 5 is not implemented\n");
    return CUDA_ERROR_NOT_SUPPORTED;
}

/* release(data, ...): the caller gives back what a lookup handed out. NVRTC
 * calls it before close as (data, ?, len, len, 0); nvJitLink 13.0 after close,
 * when its link is destroyed, as (data, 0, pointer, pointer, 7): only the
 * first argument means the same to both. */
static CUresult slot6(void *data)
{
    int ours = data && take_back(data);
    if (debug())
        fprintf(stderr, "gpuwire: export COMPILE_CACHE[6](%p)%s\n", data, ours ? "" : " (not lent by a lookup)");
    return CUDA_SUCCESS;
}

const void *const gw_compile_cache_table[7] = {
    (const void *)(7 * sizeof(void *)), (const void *)slot1, (const void *)slot2, (const void *)slot3,
    (const void *)slot4, (const void *)slot5, (const void *)slot6,
};
