/* gpuwire-worker: started by `gpuwire server` for one client connection (the
 * server has already read and checked the client's HELLO), or with --probe to
 * report whether a driver works.
 *
 *   gpuwire-worker --fd N --driver PATH [--nvml PATH] [--session ID] [--api-digest D] [--client TEXT]
 *                  [--lane-fd N [--lanes K]] [--stall-timeout SECONDS] [--server-pid PID]
 *   gpuwire-worker --probe --driver PATH
 *
 * Requests are executed in arrival order. Calls from one client thread run on
 * one worker thread, so the driver's per-thread state (current context,
 * per-thread default stream) matches the client's threads. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../common/idmap.h"
#include "../common/session_stats.h"
#include "cache.h"
#include "nvml.h"
#include "worker.h"

#define MAX_THREADS 256

static void *driver;
static void *syms[GW_OP_COUNT];
static int fd = -1;
static const char *session = "-";

void gw_wlog(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "worker session=%s: %s\n", session, line);
}

void *gw_driver_sym(unsigned op)
{
    return op >= 256 && op < 256 + GW_OP_COUNT ? syms[op - 256] : NULL;
}

void *gw_driver_fn(gw_call *c, unsigned op)
{
    void *f = gw_driver_sym(op);
    if (!f) {
        static unsigned char told[GW_OP_COUNT];
        if (op >= 256 && op < 256 + GW_OP_COUNT && !told[op - 256]++)
            gw_wlog("the driver lacks %s: answering CUDA_ERROR_NOT_SUPPORTED", gw_op_name(op));
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
    }
    return f;
}

/* ---- I/O ---- */

/* Replies, pushes and errors come from several threads: each frame is written whole under this. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

/* A client that reads nothing would hold the session (and what its queued
 * jobs hold) forever: a write that makes no progress for this long ends it. */
static double stall_s = 60.0; /* the server passes its --client-stall-timeout */
static atomic_int write_stalled; /* a write timed out: nothing more is written */
static void end_stalled_session(void);

double gw_stall_timeout(void) { return stall_s; }

/* Sends on s wake every quarter of stall_s (EAGAIN) so gw_send_all can tell a
 * stall from the time of the last progress, not only the start of a send; 0 or -1. */
int gw_set_stall_timeout(int s)
{
    double q = stall_s / 4 < 0.01 ? 0.01 : stall_s / 4;
    struct timeval tv = {.tv_sec = (time_t)q, .tv_usec = (suseconds_t)((q - (time_t)q) * 1e6)};
    return setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* -1 with errno EAGAIN: a socket with a stall timeout took nothing for stall_s. */
int gw_send_all(int to, const void *p, size_t n)
{
    const uint8_t *b = p;
    double progress = mono_s(); /* when bytes last went */
    while (n) {
        ssize_t w = send(to, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (mono_s() - progress < stall_s)
                continue;
            errno = EAGAIN;
        }
        if (w <= 0)
            return -1;
        progress = mono_s();
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_all(const void *p, size_t n)
{
    if (atomic_load(&write_stalled))
        return -1;
    if (gw_send_all(fd, p, n) == 0)
        return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK) /* stall_s without progress (gw_send_all) */
        end_stalled_session();
    return -1;
}

int gw_recv_all(int from, void *p, size_t n, int count)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = recv(from, b, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (count)
            GW_SSTATS_ADD(bytes_in, r);
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int read_all(void *p, size_t n) { return gw_recv_all(fd, p, n, 0); }

/* Buffered reads: posted requests arrive many to a segment, and one recv
 * should deliver them all rather than two system calls per request. */
static uint8_t inbuf[1u << 20];
static size_t in_pos, in_end;

static int read_frame_bytes(void *p, size_t n)
{
    uint8_t *dst = p;
    while (n) {
        if (in_pos == in_end) {
            if (n >= sizeof inbuf / 4) { /* large payload: straight into place */
                if (!gw_prof_on())
                    return read_all(dst, n);
                uint64_t t0 = gw_prof_now();
                int r = read_all(dst, n);
                gw_prof_add(GW_PROF_READ_LARGE, gw_prof_now() - t0);
                return r;
            }
            ssize_t r = recv(fd, inbuf, sizeof inbuf, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return -1;
            in_pos = 0;
            in_end = (size_t)r;
        }
        size_t k = in_end - in_pos < n ? in_end - in_pos : n;
        memcpy(dst, inbuf + in_pos, k);
        in_pos += k;
        dst += k;
        n -= k;
    }
    return 0;
}

/* A frame nobody asked for (module information after a load). Called from
 * a request's handler, while the reader waits for it, so it cannot cross a reply. */
void gw_push_parts(unsigned op, const void *a, size_t alen, const void *b, size_t blen)
{
    gw_hdr h = {.len = (uint32_t)(alen + blen), .op = (uint16_t)op};
    pthread_mutex_lock(&write_lock);
    if (write_all(&h, sizeof h) == 0 && write_all(a, alen) == 0 && write_all(b, blen) == 0)
        GW_SSTATS_ADD(bytes_out, sizeof h + alen + blen);
    pthread_mutex_unlock(&write_lock);
}

void gw_push(unsigned op, const void *payload, size_t len)
{
    gw_hdr h = {.len = (uint32_t)len, .op = (uint16_t)op};
    pthread_mutex_lock(&write_lock);
    if (write_all(&h, sizeof h) == 0 && write_all(payload, len) == 0)
        GW_SSTATS_ADD(bytes_out, sizeof h + len);
    pthread_mutex_unlock(&write_lock);
}

static void send_error(uint32_t code, const char *msg)
{
    size_t n = strlen(msg);
    gw_hdr h = {.len = (uint32_t)(4 + n), .op = GW_OP_ERROR};
    uint8_t buf[16 + 4 + 512];
    if (n > 500)
        n = 500, h.len = 504;
    memcpy(buf, &h, 16);
    memcpy(buf + 16, &code, 4);
    memcpy(buf + 20, msg, n);
    pthread_mutex_lock(&write_lock);
    write_all(buf, 20 + n);
    pthread_mutex_unlock(&write_lock);
}

/* ---- driver ---- */

static const char *load_driver(const char *path)
{
    static char why[512];
    driver = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!driver) {
        snprintf(why, sizeof why, "cannot load driver %s: %s", path, dlerror());
        return why;
    }
    for (unsigned i = 0; i < GW_OP_COUNT; i++)
        syms[i] = dlsym(driver, gw_op_names[i]);
    CUresult (*init)(unsigned) = (CUresult(*)(unsigned))syms[GW_OP_cuInit - 256];
    if (!init) {
        snprintf(why, sizeof why, "%s has no cuInit", path);
        return why;
    }
    CUresult rc = init(0);
    if (rc != CUDA_SUCCESS) {
        snprintf(why, sizeof why, "cuInit failed on %s with error %d", path, (int)rc);
        return why;
    }
    return NULL;
}

static void describe(gw_hello_ok *ok, const char *path)
{
    CUresult (*ver)(int *) = (CUresult(*)(int *))syms[GW_OP_cuDriverGetVersion - 256];
    CUresult (*count)(int *) = (CUresult(*)(int *))syms[GW_OP_cuDeviceGetCount - 256];
    int v = 0, n = 0;
    if (ver)
        ver(&v);
    if (count)
        count(&n);
    ok->proto_version = GW_PROTO_VERSION;
    ok->driver_version = v;
    ok->device_count = (uint32_t)n;
    const char *(*standin)(void) = (const char *(*)(void))dlsym(driver, "gpuwire_standin_description");
    if (standin)
        snprintf(ok->driver_desc, sizeof ok->driver_desc, "%s", standin());
    else if (strstr(path, "standin"))
        snprintf(ok->driver_desc, sizeof ok->driver_desc, "gpuwire CPU stand-in (test double)");
    if (standin || strstr(path, "standin"))
        ok->flags |= GW_OK_STANDIN; /* the client warns its user: results are not a GPU's */
    else
        snprintf(ok->driver_desc, sizeof ok->driver_desc, "NVIDIA driver, CUDA %d.%d", v / 1000, (v % 1000) / 10);
}

static int probe(const char *path)
{
    const char *why = load_driver(path);
    if (why) {
        printf("{\"ok\": false, \"error\": \"");
        for (const char *p = why; *p; p++)
            printf(*p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
        printf("\"}\n");
        return 1;
    }
    gw_hello_ok ok = {0};
    describe(&ok, path);
    printf("{\"ok\": true, \"driver_version\": %d, \"device_count\": %u, \"desc\": \"%s\"}\n", ok.driver_version,
           ok.device_count, ok.driver_desc);
    return 0;
}

/* ---- execution on per-client-thread worker threads ----
 * The reader only reads: each frame becomes a job on the queue of the worker
 * thread of its client thread (a thread keeps its current context, as the
 * client's thread does). Jobs start in arrival order across all threads, so a
 * handle one client thread creates (posted, never waited for) exists before
 * another thread's call names it; but a call that only waits for the GPU
 * (a synchronize) lets later jobs start at once, so one client thread's wait
 * never stalls another thread's calls. */

typedef struct job {
    struct job *next;
    uint64_t order; /* arrival number */
    uint32_t cap;   /* payload bytes allocated */
    gw_hdr h;
    uint8_t payload[];
} job;

typedef struct tthread {
    uint32_t tid;
    pthread_t th;
    job *head, *tail;     /* under sched_lock */
    size_t queued_bytes;  /* under sched_lock */
    _Atomic uint64_t next_order; /* the head's arrival number, 0 if none: read while spinning */
    pthread_cond_t cv;    /* its head became runnable, or the session ends */
    int sleeping;         /* waiting on cv (under sched_lock) */
    int32_t deferred;     /* first failure of its NOREPLY requests, for its next GW_F_COLLECT */
    int keeps_big_reply;  /* one of the few threads whose large reply buffer is kept between calls */
    gw_call c;            /* its call state, buffers reused */
} tthread;

#define QUEUE_BYTES (64u << 20) /* a thread's backlog beyond this makes the reader wait */
/* The session's jobs, queued or running, on all its threads: beyond this the
 * reader waits too (MAX_THREADS x QUEUE_BYTES alone would be 16 GiB). No
 * deadlock: the earliest-arrived job can always start, and every job frees its
 * bytes when done, unless a reply cannot be written (stall_s ends that). */
#define SESSION_QUEUE_BYTES (256u << 20)
#define BATCH 64                /* jobs handed over, or taken, at once */
/* Reply buffers grow to the largest reply (a 4 MiB copy piece): only this many
 * threads keep one over BIG_REPLY between calls, or 256 threads could hold 2 GiB. */
#define BIG_REPLY (1u << 20)
#define BIG_REPLY_THREADS 16

static tthread threads[MAX_THREADS];
static unsigned nthreads;
static pthread_mutex_t sched_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sched_cv = PTHREAD_COND_INITIALIZER;
static _Atomic uint64_t released; /* every job up to this number has finished or is only waiting */
static uint64_t arrived;    /* jobs queued so far */
static atomic_int stopping; /* the session is over: threads drop what is queued and end */
static int room_wanted;     /* the reader waits on sched_cv for a backlog to shrink */
static int drain_wanted;    /* stop_threads waits on sched_cv for every job to finish */
static int session_broken;  /* a job was malformed: the session ends (reason logged, client told) */
static int threads_left;    /* stop_threads left a thread inside the driver (the process should end) */
static void reset_threads(void);
static atomic_int inflight; /* jobs running, for the server's busy flag */
static size_t session_held; /* memory of the session's jobs from queueing until freed, under sched_lock */
static atomic_int big_replies; /* threads keeping a reply buffer over BIG_REPLY */

/* A write to the client made no progress for stall_s (called under write_lock):
 * the session ends, its reader and threads stop waiting. */
static void end_stalled_session(void)
{
    if (atomic_exchange(&write_stalled, 1))
        return;
    gw_wlog("closing session: the client read nothing for %g s while a frame waited to be sent "
            "(stall timeout): it does not read its replies", stall_s);
    pthread_mutex_lock(&sched_lock);
    session_broken = 1;
    pthread_cond_broadcast(&sched_cv);
    pthread_mutex_unlock(&sched_lock);
    shutdown(fd, SHUT_RDWR); /* the reader stops at once, */
    gw_lanes_shutdown();     /* also while it waits for a lane's bytes */
}

/* Big jobs (copy chunks) reuse their memory: a fresh 4 MiB allocation per chunk
 * would cost a page fault per page, every chunk. */
#define SPARE_MIN (256u << 10)
#define SPARES 8
static job *spares[SPARES]; /* under sched_lock */

/* Small jobs (launches, most calls) are recycled: the reader would otherwise
 * malloc each one and a worker thread free it, per call. Freed small jobs
 * collect on a list under sched_lock; the reader takes a handful whenever it
 * queues jobs (it holds the lock then anyway), so neither side locks per job. */
#define SMALL_CAP 512u
#define SMALL_KEEP 4096
static job *small_free;       /* under sched_lock */
static unsigned small_nfree;  /* under sched_lock */
static job *reader_cache;     /* the reader's own, taken from small_free */

static void reader_cache_refill_locked(void)
{
    for (int n = 0; n < 2 * BATCH && small_free; n++) {
        job *j = small_free;
        small_free = j->next;
        small_nfree--;
        j->next = reader_cache;
        reader_cache = j;
    }
}

static job *job_alloc(uint32_t len)
{
    if (len <= SMALL_CAP) {
        job *j = reader_cache;
        if (j) {
            reader_cache = j->next;
            return j;
        }
        j = malloc(sizeof *j + SMALL_CAP);
        if (j)
            j->cap = SMALL_CAP;
        return j;
    }
    if (len >= SPARE_MIN) {
        pthread_mutex_lock(&sched_lock);
        for (int i = 0; i < SPARES; i++) {
            if (spares[i] && spares[i]->cap >= len) {
                job *j = spares[i];
                spares[i] = NULL;
                pthread_mutex_unlock(&sched_lock);
                return j;
            }
        }
        pthread_mutex_unlock(&sched_lock);
        len = len < GW_COPY_CHUNK ? GW_COPY_CHUNK : len; /* room for a full chunk next time */
    }
    job *j = malloc(sizeof *j + len);
    if (j)
        j->cap = len;
    return j;
}

static void job_free_locked(job *j)
{
    if (j->cap == SMALL_CAP && small_nfree < SMALL_KEEP) {
        j->next = small_free;
        small_free = j;
        small_nfree++;
        return;
    }
    if (j->cap >= SPARE_MIN) {
        for (int i = 0; i < SPARES; i++) {
            if (!spares[i]) {
                spares[i] = j;
                return;
            }
        }
    }
    free(j);
}

/* What a queued job costs in memory, counted against SESSION_QUEUE_BYTES: its
 * allocation, not only its payload (empty frames would be nearly free). */
static size_t job_cost(const job *j) { return sizeof *j + j->cap; }

/* A queued job is done or dropped (sched_lock held). */
static void job_release_locked(job *j)
{
    session_held -= job_cost(j);
    job_free_locked(j);
}

static void run(gw_call *c)
{
    unsigned op = c->h.op;
    if (op == GW_OP_STAGE)
        gw_op_stage(c);
    else if (op == GW_OP_FUNC_LAYOUT)
        gw_op_func_layout(c);
    else if (op == GW_OP_DEVICE_ATTRS)
        gw_op_device_attrs(c);
    else if (op == GW_OP_CAS_REFS)
        gw_op_cas_refs(c);
    else if (op == GW_OP_CAS_DATA)
        gw_op_cas_data(c);
    else if (op == GW_OP_LAND)
        gw_op_land(c);
    else if (gw_is_nvml_op(op))
        gw_nvml_run(c);
    else
        gw_dispatch[op - 256](c);
}

/* Calls that only wait for work already sent: later jobs need not wait for them. */
static int only_waits(unsigned op)
{
    return op == GW_OP_cuCtxSynchronize || op == GW_OP_cuCtxSynchronize_v2 || op == GW_OP_cuStreamSynchronize ||
           op == GW_OP_cuStreamSynchronize_ptsz || op == GW_OP_cuEventSynchronize ||
           /* device-to-host copies wait for the work before them, then only read */
           op == GW_OP_cuMemcpyDtoH_v2 || op == GW_OP_cuMemcpyDtoH_v2_ptds || op == GW_OP_cuMemcpyDtoHAsync_v2 ||
           op == GW_OP_cuMemcpyDtoHAsync_v2_ptsz;
}

/* Runs one job on its thread and answers it (or keeps its failure). */
static void run_job(tthread *t, job *j)
{
    gw_call *c = &t->c;
    c->h = j->h;
    c->p = j->payload;
    c->len = j->h.len;
    c->pos = 0;
    c->bad = 0;
    c->err = CUDA_SUCCESS;
    c->replied = 0;
    if (gw_prof_on()) {
        uint64_t t0 = gw_prof_now();
        run(c);
        gw_prof_add(c->h.op, gw_prof_now() - t0);
    } else {
        run(c);
    }
    for (size_t i = 0; i < c->nallocs; i++)
        free(c->allocs[i]);
    c->nallocs = 0;
    if (c->bad) {
        pthread_mutex_lock(&sched_lock);
        int first = !session_broken;
        session_broken = 1;
        pthread_cond_broadcast(&sched_cv);
        pthread_mutex_unlock(&sched_lock);
        if (first) {
            gw_wlog("closing session: malformed request: %s", c->why);
            send_error(GW_ERR_MALFORMED, c->why);
            shutdown(fd, SHUT_RDWR); /* the reader stops at once */
        }
        return;
    }
    if (!c->replied)
        gw_reply_result(c, CUDA_ERROR_UNKNOWN);
    int32_t res;
    memcpy(&res, c->rbuf + sizeof(gw_hdr), 4);
    if (j->h.flags & GW_F_NOREPLY) {
        if (res != CUDA_SUCCESS && t->deferred == CUDA_SUCCESS) {
            t->deferred = res;
            gw_wlog("%s failed with %d; reported at the client thread's next synchronization",
                    gw_op_name(j->h.op), res);
        }
        return;
    }
    if ((j->h.flags & GW_F_COLLECT) && t->deferred != CUDA_SUCCESS) {
        res = t->deferred;
        t->deferred = CUDA_SUCCESS;
        memcpy(c->rbuf + sizeof(gw_hdr), &res, 4);
        c->rlen = sizeof(gw_hdr) + 4; /* outputs of a call that is reported failed are dropped */
    }
    gw_stdout_flush(); /* device printf output a synchronization flushed is printed before the call returns */
    gw_landings_flush(); /* and copies that landed are in the client's memory before it returns */
    gw_hdr rh = {.len = (uint32_t)(c->rlen - sizeof(gw_hdr)), .op = GW_OP_REPLY, .tid = j->h.tid, .seq = j->h.seq};
    memcpy(c->rbuf, &rh, sizeof rh);
    pthread_mutex_lock(&write_lock);
    int lost = write_all(c->rbuf, c->rlen);
    pthread_mutex_unlock(&write_lock);
    if (!lost) {
        GW_SSTATS_ADD(replies, 1);
        GW_SSTATS_ADD(bytes_out, c->rlen);
    }
}

/* Wakes the thread whose next job may now start (sched_lock held). */
static void wake_next_locked(void)
{
    uint64_t next = released + 1;
    for (unsigned i = 0; i < nthreads; i++) {
        if (threads[i].head && threads[i].head->order == next) {
            if (threads[i].sleeping)
                pthread_cond_signal(&threads[i].cv);
            return;
        }
    }
}

static int runnable_locked(const tthread *t) { return t->head && t->head->order == released + 1; }

/* After a thread's calls: a large reply buffer is kept only by the first
 * BIG_REPLY_THREADS threads that need one (they reuse it, copy after copy). */
static void trim_reply_buffer(tthread *t)
{
    gw_call *c = &t->c;
    if (c->rcap <= BIG_REPLY || t->keeps_big_reply)
        return;
    if (atomic_fetch_add(&big_replies, 1) < BIG_REPLY_THREADS) {
        t->keeps_big_reply = 1;
        return;
    }
    atomic_fetch_sub(&big_replies, 1);
    free(c->rbuf);
    c->rbuf = NULL;
    c->rcap = c->rlen = 0;
}

/* Hand-offs spin briefly before sleeping: a client thread's calls come back
 * to back, and a wake-up per call would cost more than the call. */
#define SPIN 20000
#if defined(__x86_64__) || defined(__i386__)
static inline void relax(void) { __builtin_ia32_pause(); }
#elif defined(__aarch64__)
static inline void relax(void) { __asm__ __volatile__("yield"); }
#else
static inline void relax(void) {}
#endif

static void *thread_main(void *arg)
{
    tthread *t = arg;
    pthread_mutex_lock(&sched_lock);
    for (;;) {
        if (!stopping && !runnable_locked(t)) {
            pthread_mutex_unlock(&sched_lock);
            for (int i = 0; i < SPIN && !atomic_load(&stopping); i++) {
                uint64_t n = atomic_load(&t->next_order);
                if (n && n == atomic_load(&released) + 1)
                    break;
                relax();
            }
            pthread_mutex_lock(&sched_lock);
            while (!stopping && !runnable_locked(t)) {
                t->sleeping = 1;
                pthread_cond_wait(&t->cv, &sched_lock);
                t->sleeping = 0;
            }
        }
        if (stopping)
            break;
        /* take the run of jobs that follow each other in arrival order: no other
         * thread's job can start between them, so they run on one hand-off */
        job *j = t->head, *last = j;
        size_t bytes = j->h.len;
        int early = only_waits(j->h.op);
        for (int n = 1; !early && n < BATCH && last->next && last->next->order == last->order + 1 &&
                        !only_waits(last->next->h.op);
             n++) {
            last = last->next;
            bytes += last->h.len;
        }
        t->head = last->next;
        if (!t->head)
            t->tail = NULL;
        last->next = NULL;
        atomic_store(&t->next_order, t->head ? t->head->order : 0);
        t->queued_bytes -= bytes;
        if (room_wanted)
            pthread_cond_broadcast(&sched_cv);
        if (early) {
            atomic_store(&released, j->order);
            wake_next_locked();
        }
        pthread_mutex_unlock(&sched_lock);
        uint64_t order = last->order;
        if (atomic_fetch_add(&inflight, 1) == 0) /* the busy flag changes per run of jobs, not per job */
            gw_sstats_busy(1);
        for (job *k = j; k; k = k->next)
            if (!session_broken)
                run_job(t, k);
        if (atomic_fetch_sub(&inflight, 1) == 1)
            gw_sstats_busy(0);
        trim_reply_buffer(t);
        pthread_mutex_lock(&sched_lock);
        for (job *k = j, *next; k; k = next) {
            next = k->next;
            job_release_locked(k);
        }
        if (!early && order > released) {
            atomic_store(&released, order);
            wake_next_locked();
        }
        if (drain_wanted || room_wanted)
            pthread_cond_broadcast(&sched_cv);
    }
    for (job *j = t->head, *n; j; j = n) { /* the session ended: what is left will not run */
        n = j->next;
        session_held -= job_cost(j);
        free(j);
    }
    t->head = t->tail = NULL;
    atomic_store(&t->next_order, 0);
    t->queued_bytes = 0;
    pthread_mutex_unlock(&sched_lock);
    return NULL;
}

/* The worker thread of a client thread, started at its first request; NULL past MAX_THREADS. */
static tthread *thread_for(uint32_t tid)
{
    for (unsigned i = 0; i < nthreads; i++)
        if (threads[i].tid == tid)
            return &threads[i];
    if (nthreads == MAX_THREADS)
        return NULL;
    tthread *t = &threads[nthreads];
    memset(t, 0, sizeof *t);
    t->tid = tid;
    pthread_cond_init(&t->cv, NULL);
    if (pthread_create(&t->th, NULL, thread_main, t)) {
        pthread_cond_destroy(&t->cv);
        return NULL;
    }
    pthread_mutex_lock(&sched_lock); /* worker threads read the table under it (wake_next_locked) */
    nthreads++;
    pthread_mutex_unlock(&sched_lock);
    return t;
}

static int no_room_locked(const tthread *t)
{
    return t->queued_bytes > QUEUE_BYTES || session_held > SESSION_QUEUE_BYTES;
}

/* Queues the list head..tail (linked by next) on t, in order, waiting while
 * t's backlog is over QUEUE_BYTES or the session's over SESSION_QUEUE_BYTES
 * (cost: the list's job_cost); -1 if the session broke meanwhile (the list is
 * then the caller's to free). */
static int enqueue(tthread *t, job *head, job *tail, size_t bytes, size_t cost)
{
    pthread_mutex_lock(&sched_lock);
    uint64_t t0 = no_room_locked(t) && gw_prof_on() ? gw_prof_now() : 0;
    while (no_room_locked(t) && !session_broken) {
        room_wanted = 1;
        pthread_cond_wait(&sched_cv, &sched_lock);
        room_wanted = 0;
    }
    if (t0)
        gw_prof_add(GW_PROF_READ_ROOM, gw_prof_now() - t0);
    int broken = session_broken;
    reader_cache_refill_locked();
    if (!broken) {
        for (job *j = head; j; j = j->next)
            j->order = ++arrived;
        tail->next = NULL;
        if (t->tail) {
            t->tail->next = head;
        } else {
            t->head = head;
            atomic_store(&t->next_order, head->order);
        }
        t->tail = tail;
        t->queued_bytes += bytes;
        session_held += cost;
        if (t->sleeping && runnable_locked(t))
            pthread_cond_signal(&t->cv);
    }
    pthread_mutex_unlock(&sched_lock);
    return broken ? -1 : 0;
}

/* Jobs read but not yet queued: the reader hands a thread several at once
 * while more frames wait in its input buffer. */
typedef struct pending {
    tthread *t;
    job *head, *tail;
    size_t bytes, cost;
    int n;
    uint64_t frames, frame_bytes; /* for the session counters, published per hand-off */
} pending;

static void pending_count(pending *pd)
{
    GW_SSTATS_ADD(requests, pd->frames); /* what the server shows (common/session_stats.h) */
    GW_SSTATS_ADD(bytes_in, pd->frame_bytes);
    pd->frames = pd->frame_bytes = 0;
}

static int pending_flush(pending *pd)
{
    pending_count(pd);
    if (!pd->head)
        return 0;
    int rc = enqueue(pd->t, pd->head, pd->tail, pd->bytes, pd->cost);
    if (rc)
        for (job *j = pd->head, *next; j; j = next) {
            next = j->next;
            free(j);
        }
    *pd = (pending){0};
    return rc;
}

static void pending_drop(pending *pd)
{
    pending_count(pd);
    for (job *j = pd->head, *next; j; j = next) {
        next = j->next;
        free(j);
    }
    *pd = (pending){0};
}

/* A deadline d seconds from now, on the clock pthread's timed waits use. */
static struct timespec deadline_in(double d)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)d;
    ts.tv_nsec += (long)((d - (time_t)d) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

#define DRAIN_S 30.0 /* after a goodbye, queued work may finish for this long */
#define JOIN_S 0.5   /* then a thread still inside the driver is left to the process's exit */

/* Ends the session's threads. With drain, queued work runs first (an orderly
 * goodbye). 0, or -1 if a thread is stuck in the driver: the caller must then
 * end the process rather than serve again (the thread still uses its state). */
static int stop_threads(int drain)
{
    pthread_mutex_lock(&sched_lock);
    struct timespec until = deadline_in(DRAIN_S);
    while (drain && released < arrived && !session_broken) {
        drain_wanted = 1;
        if (pthread_cond_timedwait(&sched_cv, &sched_lock, &until) == ETIMEDOUT) {
            gw_wlog("queued work still unfinished %.0f s after the client's goodbye: ending anyway", DRAIN_S);
            break;
        }
    }
    drain_wanted = 0;
    atomic_store(&stopping, 1);
    for (unsigned i = 0; i < nthreads; i++)
        pthread_cond_signal(&threads[i].cv);
    pthread_mutex_unlock(&sched_lock);
    struct timespec join_until = deadline_in(JOIN_S);
    for (unsigned i = 0; i < nthreads; i++) {
        if (threads[i].th && pthread_timedjoin_np(threads[i].th, NULL, &join_until)) {
            /* a call that never returns (a hung kernel): the process's exit frees the GPU */
            gw_wlog("a worker thread is still inside the driver (%s): leaving it to the process's exit",
                    gw_op_name(threads[i].c.h.op));
            threads_left = 1;
            return -1;
        }
        threads[i].th = 0; /* joined */
    }
    reset_threads();
    return 0;
}

/* The session's thread table back to empty, every thread joined. */
static void reset_threads(void)
{
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_cond_destroy(&threads[i].cv);
        gw_call *c = &threads[i].c;
        free(c->rbuf);
        free(c->allocs);
    }
    nthreads = 0;
    session_held = 0;
    atomic_store(&big_replies, 0);
    atomic_store(&write_stalled, 0);
    for (int i = 0; i < SPARES; i++) {
        free(spares[i]);
        spares[i] = NULL;
    }
    atomic_store(&released, 0);
    arrived = 0;
    atomic_store(&stopping, 0);
    session_broken = 0;
    threads_left = 0;
}

/* After a session that left a thread inside the driver: waits for it (and
 * joins the rest), then empties the thread table. The worker program exits
 * instead; the fuzz harness serves session after session in one process, and
 * a table holding ended threads made a later session's jobs wait forever. */
void gw_worker_join_left_threads(void)
{
    if (!threads_left)
        return;
    for (unsigned i = 0; i < nthreads; i++)
        if (threads[i].th) {
            pthread_join(threads[i].th, NULL);
            threads[i].th = 0;
        }
    reset_threads();
}

/* ---- copies whose bytes come on a lane (lanes.c) ---- */

/* A lane's data frame is read straight into a host-to-device copy job; the
 * job's payload starts with the 16 bytes of destination and stream that the
 * copy frame on the main connection brings (called on a lane's thread). */
static void *lane_job_alloc(uint32_t len, uint8_t **bytes)
{
    uint32_t cap = 16 + len;
    job *j;
    if (cap >= SPARE_MIN) {
        j = job_alloc(cap); /* spares are under sched_lock */
    } else {
        cap = cap <= SMALL_CAP ? SMALL_CAP + 1 : cap; /* never on the reader's own small list */
        j = malloc(sizeof *j + cap);
        if (j)
            j->cap = cap;
    }
    if (j)
        *bytes = j->payload + 16;
    return j;
}

static int is_dtoh_op(unsigned op)
{
    return op == GW_OP_cuMemcpyDtoH_v2 || op == GW_OP_cuMemcpyDtoH_v2_ptds || op == GW_OP_cuMemcpyDtoHAsync_v2 ||
           op == GW_OP_cuMemcpyDtoHAsync_v2_ptsz;
}

static int is_htod_op(unsigned op)
{
    return op == GW_OP_cuMemcpyHtoD_v2 || op == GW_OP_cuMemcpyHtoD_v2_ptds || op == GW_OP_cuMemcpyHtoDAsync_v2 ||
           op == GW_OP_cuMemcpyHtoDAsync_v2_ptsz;
}

/* A GW_F_LANE copy frame (u64 dst, u64 stream, u32 lane, u32 bytes) joined
 * with its lane's next data frame into an ordinary copy job; NULL and why if
 * the frame is malformed, the lane is not this session's or it closed (why
 * empty: the session had already broken). */
static job *lane_copy_job(const gw_hdr *h, pending *pd, char *why, size_t whycap)
{
    uint8_t a[24];
    if (!is_htod_op(h->op) || h->len != sizeof a) {
        snprintf(why, whycap, "a lane frame must be a host-to-device copy of %zu bytes (op %u, %u bytes)", sizeof a,
                 h->op, h->len);
        return NULL;
    }
    if (read_frame_bytes(a, sizeof a)) {
        snprintf(why, whycap, "connection lost inside a lane copy frame");
        return NULL;
    }
    uint32_t k, n, got;
    memcpy(&k, a + 16, 4);
    memcpy(&n, a + 20, 4);
    if (pending_flush(pd)) { /* what was read goes to its thread before waiting for the lane */
        why[0] = 0;          /* the session broke meanwhile: the client was told then */
        return NULL;
    }
    job *j = gw_lane_next(k, &got, why, whycap);
    if (!j)
        return NULL;
    if (got != n) {
        free(j);
        snprintf(why, whycap, "lane %u: a copy of %u bytes, but the lane's next data frame has %u", k, n, got);
        return NULL;
    }
    j->h = *h;
    j->h.flags &= (uint16_t)~GW_F_LANE;
    j->h.len = 16 + got;
    memcpy(j->payload, a, 16);
    return j;
}

static int valid_op(unsigned op)
{
    if (op == GW_OP_STAGE || op == GW_OP_FUNC_LAYOUT || op == GW_OP_DEVICE_ATTRS || op == GW_OP_LAND)
        return 1;
    if (op == GW_OP_CAS_REFS || op == GW_OP_CAS_DATA)
        return gw_cas_enabled();
    if (gw_is_nvml_op(op))
        return gw_nvml_valid_op(op);
    return op >= 256 && op < 256 + GW_OP_COUNT && gw_dispatch[op - 256];
}

static int serve(void)
{
    uint64_t calls = 0;
    pending pd = {0};
    for (;;) {
        gw_hdr h;
        /* what was read goes to its thread before the reader may wait for more bytes */
        if (in_end - in_pos < sizeof h && pending_flush(&pd)) {
            stop_threads(0);
            return 3;
        }
        if (read_frame_bytes(&h, sizeof h)) {
            pending_drop(&pd);
            if (session_broken) {
                stop_threads(0);
                return 3;
            }
            gw_wlog("client disconnected after %llu requests", (unsigned long long)calls);
            stop_threads(0);
            return 0;
        }
        if (h.op == GW_OP_BYE) {
            pending_flush(&pd);
            stop_threads(1);
            if (!session_broken)
                gw_wlog("client said goodbye after %llu requests", (unsigned long long)calls);
            return 0;
        }
        if (h.len > GW_MAX_PAYLOAD) {
            pending_drop(&pd);
            gw_wlog("closing session: frame of %u bytes is over the %u-byte limit", h.len, GW_MAX_PAYLOAD);
            stop_threads(0);
            send_error(GW_ERR_MALFORMED, "frame over the size limit");
            return 3;
        }
        if (!valid_op(h.op)) {
            pending_drop(&pd);
            gw_wlog("closing session: unknown or unsupported request op %u", h.op);
            stop_threads(0);
            send_error(GW_ERR_MALFORMED, "unknown request op");
            return 3;
        }
        job *j;
        uint32_t wire_len = h.len; /* a lane's bytes are counted as they arrive (lanes.c) */
        if ((h.flags & GW_F_LANE) && !is_dtoh_op(h.op)) { /* device-to-host: copies.c */
            char why[200];
            j = lane_copy_job(&h, &pd, why, sizeof why);
            if (!j) {
                pending_drop(&pd);
                stop_threads(0);
                if (why[0]) {
                    gw_wlog("closing session: %s", why);
                    send_error(GW_ERR_MALFORMED, why);
                }
                return 3;
            }
            h = j->h;
        } else {
            j = job_alloc(h.len);
            if (!j) {
                pending_drop(&pd);
                gw_wlog("closing session: out of memory for a %u-byte frame", h.len);
                stop_threads(0);
                return 4;
            }
            j->h = h;
            if (in_end - in_pos < h.len && pending_flush(&pd)) {
                free(j);
                stop_threads(0);
                return 3;
            }
            if (read_frame_bytes(j->payload, h.len)) {
                free(j);
                pending_drop(&pd);
                gw_wlog("closing session: connection lost inside a %u-byte frame (truncated frame)", h.len);
                stop_threads(0);
                return 3;
            }
        }
        calls++;
        pd.frames++;
        pd.frame_bytes += sizeof h + wire_len;
        tthread *t = thread_for(h.tid);
        if (!t) {
            free(j);
            pending_drop(&pd);
            gw_wlog("closing session: more than %d client threads, or no thread for one", MAX_THREADS);
            stop_threads(0);
            send_error(GW_ERR_MALFORMED, "too many client threads");
            return 3;
        }
        if ((pd.head && (pd.t != t || pd.n >= BATCH)) && pending_flush(&pd)) {
            free(j);
            stop_threads(0);
            return 3;
        }
        j->next = NULL;
        if (pd.head)
            pd.tail->next = j;
        else
            pd.head = j, pd.t = t;
        pd.tail = j;
        pd.bytes += h.len;
        pd.cost += job_cost(j);
        pd.n++;
    }
}

/* Serves one session on an already connected socket (after HELLO_OK) and
 * returns serve()'s status instead of exiting: native/fuzz/ drives it in process. */
int gw_worker_serve(int sock)
{
    fd = sock;
    in_pos = in_end = 0;
    return serve();
}

/* Loads the driver and puts the worker's wrappers in place; NULL or why not. */
const char *gw_worker_init(const char *drv, unsigned long long mem_cap)
{
    const char *why = load_driver(drv);
    if (why)
        return why;
    gw_launch_install(syms);
    if (mem_cap) {
        gw_memcap_install(syms, mem_cap);
        gw_wlog("device memory capped at %llu bytes for this session", mem_cap);
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: gpuwire-worker --fd N --driver PATH [--nvml PATH] [--session ID] [--api-digest D]\n"
                    "                      [--client TEXT]\n"
                    "                      [--mem-cap BYTES] [--cache-dir DIR [--cache-max-bytes BYTES]]\n"
                    "                      [--lane-fd N [--lanes K]]   (a Unix socket the server hands lanes on)\n"
                    "                      [--stall-timeout SECONDS]   (end the session when the client reads\n"
                    "                                                   nothing this long; 0: never; default 60)\n"
                    "                      [--server-pid PID]          (exit with that process)\n"
                    "       gpuwire-worker --probe --driver PATH\n");
}

int main(int argc, char **argv)
{
    const char *drv = NULL, *client = "";
    long digest = -1;
    unsigned long long mem_cap = 0, cache_max = 0;
    const char *cache_dir = NULL;
    int do_probe = 0, lane_fd = -1;
    unsigned nlanes = 3;
    long server_pid = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--probe"))
            do_probe = 1;
        else if (!strcmp(a, "--fd") && v)
            fd = atoi(argv[++i]);
        else if (!strcmp(a, "--driver") && v)
            drv = argv[++i];
        else if (!strcmp(a, "--nvml") && v)
            gw_nvml_set_path(argv[++i]);
        else if (!strcmp(a, "--session") && v)
            session = argv[++i];
        else if (!strcmp(a, "--api-digest") && v)
            digest = strtol(argv[++i], NULL, 0);
        else if (!strcmp(a, "--client") && v)
            client = argv[++i];
        else if (!strcmp(a, "--mem-cap") && v)
            mem_cap = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--cache-dir") && v)
            cache_dir = argv[++i];
        else if (!strcmp(a, "--cache-max-bytes") && v)
            cache_max = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--lane-fd") && v)
            lane_fd = atoi(argv[++i]);
        else if (!strcmp(a, "--lanes") && v)
            nlanes = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--stall-timeout") && v) {
            char *end;
            stall_s = strtod(argv[++i], &end);
            if (*end || !(stall_s >= 0 && stall_s <= 1e6)) { /* NaN fails too */
                fprintf(stderr, "gpuwire-worker: --stall-timeout wants seconds (0..1e6), not %s\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--server-pid") && v) {
            char *end;
            server_pid = strtol(argv[++i], &end, 10);
            if (*end || server_pid <= 1) {
                fprintf(stderr, "gpuwire-worker: --server-pid wants a process id, not %s\n", argv[i]);
                return 2;
            }
        } else {
            usage();
            return 2;
        }
    }
    if (!drv || (!do_probe && fd < 0)) {
        usage();
        return 2;
    }
    if (do_probe)
        return probe(drv);
    if (server_pid) {
        /* A worker must not outlive its server (it would serve on, unknown to the
         * next one). PDEATHSIG fires when the forking *thread* ends: the server
         * forks from the session's thread, which waits for this process to exit
         * (server.py _run_session), so that thread ends only with the server. */
        const char *keep = getenv("GPUWIRE_WORKER_NO_PDEATHSIG"); /* tests of the server's orphan sweep only */
        if (!(keep && !strcmp(keep, "1")))
            prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != (pid_t)server_pid) { /* the server died before the prctl */
            gw_wlog("the server (pid %ld) is gone: exiting", server_pid);
            return 7;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (stall_s > 0 && gw_set_stall_timeout(fd))
        gw_wlog("cannot set the stall timeout on the client's socket: %s", strerror(errno));
    /* libnvidia-ml.so.1 sends the digest of both op tables (native/client/handshake.c) */
    if (digest >= 0 && (uint32_t)digest != GW_API_DIGEST && (uint32_t)digest != (GW_API_DIGEST ^ GW_NVML_API_DIGEST)) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "client and server are different gpuwire builds (API digest 0x%08lx vs 0x%08x): "
                 "use the same gpuwire version on both sides", digest, GW_API_DIGEST);
        gw_wlog("%s", msg);
        send_error(GW_ERR_VERSION, msg);
        return 5;
    }
    const char *why = gw_worker_init(drv, mem_cap);
    if (why) {
        gw_wlog("%s", why);
        send_error(GW_ERR_DRIVER, why);
        return 6;
    }
    gw_hello_ok ok = {0};
    describe(&ok, drv);
    if (cache_dir && gw_cas_open(cache_dir, cache_max) == 0) { /* docs/cache.md */
        gw_cas_zstd_load();
        ok.flags |= GW_OK_CAS | (gw_cas_zstd() ? GW_OK_ZSTD : 0);
    } else if (cache_dir) {
        gw_wlog("cannot use cache folder %s: serving without the content cache", cache_dir);
    }
    gw_lane_grant grant = {0};
    if (lane_fd >= 0 && gw_lanes_start(lane_fd, (uint32_t)strtoul(session, NULL, 10), nlanes, lane_job_alloc, free,
                                       &grant) == 0)
        ok.flags |= GW_OK_LANES;
    else if (lane_fd >= 0)
        close(lane_fd);
    gw_hdr h = {.len = sizeof ok + (ok.flags & GW_OK_LANES ? sizeof grant : 0), .op = GW_OP_HELLO_OK};
    uint8_t buf[sizeof h + sizeof ok + sizeof grant];
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, &ok, sizeof ok);
    memcpy(buf + sizeof h + sizeof ok, &grant, sizeof grant);
    if (write_all(buf, sizeof h + h.len)) {
        gw_wlog("client went away before the handshake finished");
        return 0;
    }
    gw_wlog("serving %s with %s (driver %d, %u device(s))", client, ok.driver_desc, ok.driver_version,
            ok.device_count);
    gw_stdout_start(); /* device printf output goes to the client, not the server's log */
    int rc = gw_worker_serve(fd);
    gw_cas_report(1);
    gw_prof_report();
    fflush(stderr);
    _exit(rc); /* process exit releases every context, allocation and module the client held */
}
