/* libFuzzer target: the worker's frame loop (decoding, dispatch, handle
 * table, copies, staging, launches) on the CPU stand-in driver, in process.
 *
 * An input is what a client sends after the handshake: frames (16-byte header,
 * payload), the last one possibly cut short. The harness plays the client over
 * a socketpair: it sends the frames in order and, after each one that expects
 * a reply, waits for that reply, so later frames can refer to earlier results.
 * The worker serves the session on its own thread through gw_worker_serve();
 * a malformed frame ends that session with an ERROR frame and a status code,
 * which is the expected outcome, never a crash.
 *
 * What the harness changes in a frame, and why:
 *  - a u64 of the form 0xD5D5'kkkk'oooooooo (any byte offset in a payload) is
 *    replaced by the first 8 output bytes of this input's reply number k plus
 *    offset o: device addresses and handle ids the driver hands out differ
 *    from run to run, and seeds need them to get past the first call;
 *  - allocations always get a reply (NOREPLY/COLLECT cleared) so the harness
 *    learns every address and frees it after the input: state from one input
 *    must not starve the next (the worker runs with a 256 MiB memory cap);
 *  - launches are bounded in CPU time: at most 4096 threads in all (larger
 *    grids become 1x1x1) and the stand-in's se_produce at most 1000 spins,
 *    since the stand-in runs kernels on the CPU, one thread after another;
 *    and in time: the stand-in's gw_sleep(ms), which books ms on its context
 *    for synchronizations to wait out as a long kernel would, books at most
 *    2 ms (GPUWIRE_STANDIN_SLEEP_CAP_MS, unless the environment sets it).
 * A session whose end leaves a thread inside the driver (the worker program
 * would exit then) is waited out before the next input: its thread table
 * once made a later input's calls wait forever (libFuzzer timeouts).
 * Client-named ids that appear in an input are forgotten after it, so the
 * same seed binds them again next time instead of being refused as reused. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../worker/engine/engine.h"
#include "../worker/handlers/nvml.h"

#ifndef GW_FUZZ_DRIVER
#define GW_FUZZ_DRIVER "libgpuwire_standin.so"
#endif
#ifndef GW_FUZZ_NVML
#define GW_FUZZ_NVML "libgpuwire_standin_nvml.so"
#endif

#define MEM_CAP (256ull << 20)
#define TAG 0xD5D5u
#define RECORDS 16
#define MAX_LAUNCH_THREADS 4096u
#define MAX_SPINS 1000
#define MAX_ALLOCS 4096

/* ---- the reply stream, read on its own thread ---- */

typedef struct replies {
    int fd;
    pthread_mutex_t m;
    pthread_cond_t cv;
    unsigned count; /* REPLY frames so far */
    int done;       /* the worker closed the connection */
    uint8_t last[16]; /* the start of the last reply's payload (zero-filled) */
} replies;

static int recv_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = recv(fd, b, n, 0);
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int send_all(int fd, const void *p, size_t n);

static void *reader(void *arg)
{
    replies *rp = arg;
    uint8_t skip[65536];
    for (;;) {
        gw_hdr h;
        if (recv_all(rp->fd, &h, sizeof h))
            break;
        uint8_t head[16] = {0};
        size_t keep = h.len < sizeof head ? h.len : sizeof head;
        if (recv_all(rp->fd, head, keep))
            break;
        int lost = 0;
        for (size_t left = h.len - keep; left && !lost;) {
            size_t k = left < sizeof skip ? left : sizeof skip;
            lost = recv_all(rp->fd, skip, k);
            left -= k;
        }
        if (lost)
            break;
        if (h.op == GW_OP_HOST_CALL && keep >= 8) { /* the stream waits until a client answers its host call */
            uint8_t f[sizeof(gw_hdr) + 8];
            gw_hdr a = {.len = 8, .op = GW_OP_HOST_RETURNED};
            memcpy(f, &a, sizeof a);
            memcpy(f + sizeof a, head, 8);
            send_all(rp->fd, f, sizeof f);
        }
        if (h.op != GW_OP_REPLY)
            continue; /* MODULE_INFO pushed after a load; ERROR before the close */
        pthread_mutex_lock(&rp->m);
        memcpy(rp->last, head, sizeof head);
        rp->count++;
        pthread_cond_broadcast(&rp->cv);
        pthread_mutex_unlock(&rp->m);
    }
    pthread_mutex_lock(&rp->m);
    rp->done = 1;
    pthread_cond_broadcast(&rp->cv);
    pthread_mutex_unlock(&rp->m);
    return NULL;
}

/* Waits for reply number `want`; 0 if it came, -1 if the session ended first.
 * *ok: the call succeeded; *out: its first 8 output bytes (NVML replies carry
 * i32 0 and the u32 nvmlReturn_t before their outputs). */
static int wait_reply(replies *rp, unsigned want, unsigned op, int *ok, uint64_t *out)
{
    pthread_mutex_lock(&rp->m);
    while (rp->count < want && !rp->done)
        pthread_cond_wait(&rp->cv, &rp->m);
    int came = rp->count >= want;
    int32_t res;
    uint32_t nvml_res;
    memcpy(&res, rp->last, 4);
    memcpy(&nvml_res, rp->last + 4, 4);
    int nvml = gw_is_nvml_op(op);
    *ok = res == 0 && (!nvml || nvml_res == 0);
    memcpy(out, rp->last + (nvml ? 8 : 4), 8);
    pthread_mutex_unlock(&rp->m);
    return came ? 0 : -1;
}

static pthread_mutex_t send_lock = PTHREAD_MUTEX_INITIALIZER; /* the reader answers host calls too */

static int send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    pthread_mutex_lock(&send_lock);
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        b += w;
        n -= (size_t)w;
    }
    pthread_mutex_unlock(&send_lock);
    return n ? -1 : 0;
}

/* ---- per-input state ---- */

static uint64_t rec[RECORDS]; /* first output of this input's replies */
static unsigned nrec;
static uint64_t allocs[MAX_ALLOCS]; /* device memory to free after the input */
static unsigned nallocs;

static int is_alloc(unsigned op) { return op == GW_OP_cuMemAlloc_v2 || op == GW_OP_cuMemAllocPitch_v2; }

static int is_launch(unsigned op)
{
    return op == GW_OP_cuLaunchKernel || op == GW_OP_cuLaunchKernel_ptsz || op == GW_OP_cuLaunchKernelEx ||
           op == GW_OP_cuLaunchKernelEx_ptsz || op == GW_OP_cuLaunchCooperativeKernel ||
           op == GW_OP_cuLaunchCooperativeKernel_ptsz;
}

static void substitute(uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 8 <= n; i++) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        unsigned k = (unsigned)(v >> 32) & 0xFFFFu;
        if ((v >> 48) != TAG || k >= nrec)
            continue;
        v = rec[k] + (v & 0xFFFFFFFFu);
        memcpy(p + i, &v, 8);
        i += 7;
    }
}

static const char *function_name(uint64_t id)
{
    int found;
    const char *name = NULL;
    void *f = gw_handle_real(GW_HT_CUkernel, id, &found);
    if (found && f) {
        CUresult (*get)(const char **, void *) = (CUresult(*)(const char **, void *))gw_driver_sym(GW_OP_cuKernelGetName);
        return get && get(&name, f) == CUDA_SUCCESS ? name : NULL;
    }
    f = gw_handle_real(GW_HT_CUfunction, id, &found);
    if (found && f) {
        CUresult (*get)(const char **, void *) = (CUresult(*)(const char **, void *))gw_driver_sym(GW_OP_cuFuncGetName);
        return get && get(&name, f) == CUDA_SUCCESS ? name : NULL;
    }
    return NULL;
}

/* Launch payload: u64 f, u32 grid[3], block[3], shmem, u64 stream, u32 nattrs,
 * attrs, u32 nbytes, params. Called once every earlier frame has run. */
static void bound_launch(uint8_t *p, size_t n)
{
    if (n < 8 + 28)
        return;
    uint32_t d[6];
    memcpy(d, p + 8, sizeof d);
    unsigned __int128 threads = (unsigned __int128)d[0] * d[1] * d[2] * d[3] * d[4] * d[5];
    if (threads > MAX_LAUNCH_THREADS && d[0] <= 2147483647u && d[1] <= 65535u && d[2] <= 65535u) {
        d[0] = d[1] = d[2] = 1;
        memcpy(p + 8, d, sizeof d);
    }
    uint64_t fid;
    memcpy(&fid, p, 8);
    const char *name = function_name(fid);
    if (!name || !strstr(name, "se_produce"))
        return;
    uint32_t nattrs;
    if (n < 48)
        return;
    memcpy(&nattrs, p + 44, 4);
    if (nattrs > 32)
        return; /* refused by the worker */
    size_t at = 48 + (size_t)nattrs * sizeof(CUlaunchAttribute) + 4 + 16; /* se_produce's spins: offset 16 */
    int32_t spins;
    if (at + 4 > n)
        return;
    memcpy(&spins, p + at, 4);
    if (spins > MAX_SPINS) {
        spins = MAX_SPINS;
        memcpy(p + at, &spins, 4);
    }
}

static void *serve_thread(void *arg)
{
    int fd = (int)(intptr_t)arg;
    gw_worker_serve(fd); /* its status says why the session ended; any is fine here */
    close(fd);
    return NULL;
}

/* A waiting request all earlier frames have to pass before it is answered. */
static int barrier(int fd, replies *rp, unsigned *want, uint32_t tid)
{
    uint8_t f[20];
    gw_hdr h = {.len = 4, .op = GW_OP_cuDeviceGetCount, .tid = tid};
    uint32_t one = 1;
    memcpy(f, &h, 16);
    memcpy(f + 16, &one, 4);
    int ok;
    uint64_t out;
    if (send_all(fd, f, sizeof f))
        return -1;
    return wait_reply(rp, ++*want, h.op, &ok, &out);
}

static void play(int fd, replies *rp, const uint8_t *data, size_t size)
{
    static uint8_t *buf;
    static size_t bufcap;
    unsigned want = 0;
    size_t pos = 0;
    while (pos < size) {
        if (size - pos < sizeof(gw_hdr)) {
            send_all(fd, data + pos, size - pos);
            return;
        }
        gw_hdr h;
        memcpy(&h, data + pos, sizeof h);
        pos += sizeof h;
        size_t n = h.len <= size - pos ? h.len : size - pos;
        if (sizeof h + n > bufcap) {
            uint8_t *b = realloc(buf, sizeof h + n);
            if (!b)
                return;
            buf = b;
            bufcap = sizeof h + n;
        }
        int complete = n == h.len;
        if (complete && is_alloc(h.op))
            h.flags &= (uint16_t)~(GW_F_NOREPLY | GW_F_COLLECT);
        memcpy(buf, &h, sizeof h);
        memcpy(buf + sizeof h, data + pos, n);
        pos += n;
        substitute(buf + sizeof h, n);
        if (complete && is_launch(h.op)) {
            if (barrier(fd, rp, &want, h.tid))
                return;
            bound_launch(buf + sizeof h, n);
        }
        if (send_all(fd, buf, sizeof h + n) || !complete || h.op == GW_OP_BYE)
            return;
        if (h.flags & GW_F_NOREPLY)
            continue;
        int ok;
        uint64_t out;
        if (wait_reply(rp, ++want, h.op, &ok, &out))
            return;
        if (nrec < RECORDS)
            rec[nrec++] = ok ? out : 0;
        if (is_alloc(h.op) && ok && out && nallocs < MAX_ALLOCS)
            allocs[nallocs++] = out;
    }
}

/* Frees what the input allocated, through the worker's cap wrapper so the cap
 * is given back too, with a fresh context current (the input's may be faulted). */
static void clean_up(const uint8_t *data, size_t size)
{
    CUresult (*create)(CUcontext *, CUctxCreateParams *, unsigned, CUdevice) =
        (CUresult(*)(CUcontext *, CUctxCreateParams *, unsigned, CUdevice))gw_driver_sym(GW_OP_cuCtxCreate_v4);
    CUresult (*destroy)(CUcontext) = (CUresult(*)(CUcontext))gw_driver_sym(GW_OP_cuCtxDestroy_v2);
    CUresult (*mfree)(CUdeviceptr) = (CUresult(*)(CUdeviceptr))gw_driver_sym(GW_OP_cuMemFree_v2);
    CUcontext ctx = NULL;
    if (nallocs && create && create(&ctx, NULL, 0, 0) == CUDA_SUCCESS) {
        for (unsigned i = 0; i < nallocs; i++)
            mfree(allocs[i]);
        destroy(ctx);
    }
    nallocs = 0;
    nrec = 0;
    gw_call dummy = {0};
    for (size_t i = 0; i + 8 <= size; i++) {
        uint64_t id;
        memcpy(&id, data + i, 8);
        if ((id & GW_CLIENT_ID_BIT) && !(id & 7))
            for (int t = 1; t < GW_HT_COUNT; t++)
                gw_handle_forget(&dummy, t, id);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    setenv("GPUWIRE_STANDIN_SLEEP_CAP_MS", "2", 0); /* tests/unit/test_fuzz.py raises it for one regression */
    const char *drv = getenv("GPUWIRE_FUZZ_DRIVER");
    const char *nvml = getenv("GPUWIRE_FUZZ_NVML");
    gw_nvml_set_path(nvml ? nvml : GW_FUZZ_NVML);
    const char *why = gw_worker_init(drv ? drv : GW_FUZZ_DRIVER, MEM_CAP);
    if (why) {
        fprintf(stderr, "fuzz_worker: %s\n", why);
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        return 0;
    replies rp = {.fd = sv[0]};
    pthread_mutex_init(&rp.m, NULL);
    pthread_cond_init(&rp.cv, NULL);
    pthread_t server, rd;
    if (pthread_create(&server, NULL, serve_thread, (void *)(intptr_t)sv[1])) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    if (pthread_create(&rd, NULL, reader, &rp)) {
        shutdown(sv[0], SHUT_RDWR);
        pthread_join(server, NULL);
        close(sv[0]);
        return 0;
    }
    play(sv[0], &rp, data, size);
    shutdown(sv[0], SHUT_WR); /* the worker sees the client go */
    pthread_join(server, NULL);
    pthread_join(rd, NULL);
    gw_worker_join_left_threads(); /* a slow call outlived the session's end: it finishes before the next input */
    close(sv[0]);
    pthread_mutex_destroy(&rp.m);
    pthread_cond_destroy(&rp.cv);
    clean_up(data, size);
    return 0;
}
