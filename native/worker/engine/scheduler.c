/* The scheduler: jobs on per-client-thread worker threads.
 * The reader only reads: each frame becomes a job on the queue of the worker
 * thread of its client thread (a thread keeps its current context, as the
 * client's thread does). Jobs start in arrival order across all threads, so a
 * handle one client thread creates (posted, never waited for) exists before
 * another thread's call names it; but a call that only waits for the GPU
 * (a synchronize) lets later jobs start at once, so one client thread's wait
 * never stalls another thread's calls. A thread's or the session's backlog
 * over its limit makes the reader wait (back-pressure). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../common/session_stats.h"
#include "engine.h"
#include "internal.h"

struct tthread {
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
    _Atomic uint64_t running_order; /* the arrival number of the job running now, 0 if none */
    _Atomic unsigned running_op;
};

#define QUEUE_BYTES (64u << 20) /* a thread's backlog beyond this makes the reader wait */
/* The session's jobs, queued or running, on all its threads: beyond this the
 * reader waits too (MAX_THREADS x QUEUE_BYTES alone would be 16 GiB). No
 * deadlock: the earliest-arrived job can always start, and every job frees its
 * bytes when done, unless a reply cannot be written (the stall timeout ends that). */
#define SESSION_QUEUE_BYTES (256u << 20)
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
static int drain_wanted;    /* gw_sched_stop waits on sched_cv for every job to finish */
static int session_broken;  /* a job was malformed: the session ends (reason logged, client told) */
static int threads_left;    /* gw_sched_stop left a thread inside the driver (the process should end) */
static void reset_threads(void);
static atomic_int inflight; /* jobs running, for the server's busy flag */
static size_t session_held; /* memory of the session's jobs from queueing until freed, under sched_lock */
static atomic_int big_replies; /* threads keeping a reply buffer over BIG_REPLY */

int gw_sched_broken(void) { return session_broken; }

/* A write to the client made no progress for the stall timeout (called by
 * core/io.c under its write lock): the session ends, its reader and threads
 * stop waiting. */
void gw_sched_stalled(void)
{
    pthread_mutex_lock(&sched_lock);
    session_broken = 1;
    pthread_cond_broadcast(&sched_cv);
    pthread_mutex_unlock(&sched_lock);
    gw_io_shutdown();    /* the reader stops at once, */
    gw_lanes_shutdown(); /* also while it waits for a lane's bytes */
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

job *gw_job_alloc(uint32_t len)
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

/* A host-to-device copy frame read on the session's connection: a large one
 * goes into a free page-locked piece buffer (core/pinned.c), so its copy is
 * queued at once; from ordinary memory the driver copies through its own
 * staging on the job's thread first (44 and 62 us for two of llama.cpp's
 * prompt inputs in the nineteenth session's worker timeline). Only buffers
 * already page-locked, made for the session's lanes; else as any frame.
 * Reader only. */
job *gw_htod_job_alloc(uint32_t len)
{
    job *j = len >= SPARE_MIN ? gw_pinned_take(sizeof *j + len, 0) : NULL;
    if (!j)
        return gw_job_alloc(len);
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
    if (j->cap >= SPARE_MIN && gw_pinned_give(j)) /* only a lane's piece can be one of them */
        return;
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

/* A job dropped before it ran (its memory may be a page-locked buffer's). */
void gw_job_free(void *j)
{
    if (!gw_pinned_give(j))
        free(j);
}

/* What a queued job costs in memory, counted against SESSION_QUEUE_BYTES: its
 * allocation, not only its payload (empty frames would be nearly free). */
size_t gw_job_cost(const job *j) { return sizeof *j + j->cap; }

/* A queued job is done or dropped (sched_lock held). */
static void job_release_locked(job *j)
{
    session_held -= gw_job_cost(j);
    job_free_locked(j);
}

/* Runs one job on its thread and answers it (or keeps its failure). */
/* The op of the oldest job running on any thread, for the server to name
 * when a session seems stuck (the newest would be whatever other threads
 * still do around a hang). A scan of the few threads, no clock. */
static void publish_oldest_running(void)
{
    uint64_t best = 0;
    unsigned op = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        uint64_t o = atomic_load_explicit(&threads[i].running_order, memory_order_relaxed);
        if (o && (!best || o < best)) {
            best = o;
            op = atomic_load_explicit(&threads[i].running_op, memory_order_relaxed);
        }
    }
    if (best)
        GW_SSTATS_RUNNING(op);
}

static void run_job(tthread *t, job *j)
{
    gw_call *c = &t->c;
    atomic_store_explicit(&t->running_op, j->h.op, memory_order_relaxed);
    atomic_store_explicit(&t->running_order, j->order ? j->order : 1, memory_order_relaxed);
    if (gw_sstats)
        publish_oldest_running();
    c->h = j->h;
    c->p = j->payload;
    c->len = j->h.len;
    c->pos = 0;
    c->bad = 0;
    c->err = CUDA_SUCCESS;
    c->replied = 0;
    GW_TL('S', j->h.op, j->h.seq, j->h.flags);
    if (gw_prof_on()) {
        uint64_t t0 = gw_prof_now();
        gw_dispatch_run(c);
        gw_prof_add(c->h.op, gw_prof_now() - t0);
    } else {
        gw_dispatch_run(c);
    }
    GW_TL('E', j->h.op, j->h.seq, j->h.flags);
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
            gw_wlog("closing session: %s: %s", c->bad == 2 ? "stuck" : "malformed request", c->why);
            gw_send_error(c->bad == 2 ? GW_ERR_DRIVER : GW_ERR_MALFORMED, c->why);
            gw_io_shutdown(); /* the reader stops at once */
        }
        return;
    }
    if (!c->replied)
        gw_reply_result(c, CUDA_ERROR_UNKNOWN);
    gw_reply_req rr; /* the reply's i32 result: always there once replied (call.c) */
    if (!gw_reply_req_get(c->rbuf + sizeof(gw_hdr), c->rlen - sizeof(gw_hdr), &rr))
        rr.result = CUDA_ERROR_UNKNOWN;
    int32_t res = rr.result;
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
        /* outputs of a call that is reported failed are dropped */
        c->rlen = sizeof(gw_hdr) + gw_reply_req_put(c->rbuf + sizeof(gw_hdr), &(gw_reply_req){.result = res});
    }
    gw_stdout_flush(); /* device printf output a synchronization flushed is printed before the call returns */
    gw_deliveries_flush(); /* and copies delivered are in the client's memory before it returns */
    gw_hdr rh = {.len = (uint32_t)(c->rlen - sizeof(gw_hdr)), .op = GW_OP_REPLY, .tid = j->h.tid, .seq = j->h.seq};
    memcpy(c->rbuf, &rh, sizeof rh);
    int lost = gw_send_frame(c->rbuf, c->rlen);
    GW_TL('W', j->h.op, j->h.seq, j->h.flags);
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
 * to back, and a wake-up per call would cost more than the call. SPIN
 * pauses last 0.06 to 1 ms by the processor; on a machine of 8 or more cores
 * a job thread spins by the clock instead, GPUWIRE_JOB_SPIN_US (default 1000;
 * 0: the pauses only): llama.cpp's prompt processing sends its inputs in
 * bursts 0.1 to 0.5 ms apart, and a job thread asleep by then took 50 to
 * 70 us to wake on the H100 machine (worker timeline, nineteenth session). */
#define SPIN 20000
#define JOB_SPIN_DEFAULT_US 1000
static int64_t job_spin_ns_cache = -1;
#define job_spin_ns() gw_spin_setting_ns(&job_spin_ns_cache, "GPUWIRE_JOB_SPIN_US", JOB_SPIN_DEFAULT_US, 100000)

#if defined(__x86_64__) || defined(__i386__)
static inline void relax(void) { __builtin_ia32_pause(); }
#elif defined(__aarch64__)
static inline void relax(void) { __asm__ __volatile__("yield"); }
#else
static inline void relax(void) {}
#endif

/* A call that only waits for the GPU lets the jobs after it start at once:
 * its client thread sends nothing before the reply. One the client posts (a
 * stream synchronize it did not wait for: gw_op_may_post) is an ordinary
 * job: what its thread sent after it must start after it. */
static int waits_alone(const gw_hdr *h)
{
    return gw_op_only_waits(h->op) && !((h->flags & GW_F_NOREPLY) && gw_op_may_post(h->op));
}

static void *thread_main(void *arg)
{
    tthread *t = arg;
    pthread_mutex_lock(&sched_lock);
    for (;;) {
        if (!stopping && !runnable_locked(t)) {
            pthread_mutex_unlock(&sched_lock);
            uint64_t spin = job_spin_ns(), until = spin ? gw_mono_ns() + spin : 0;
            for (int i = 0; (spin || i < SPIN) && !atomic_load(&stopping); i++) {
                uint64_t n = atomic_load(&t->next_order);
                if (n && n == atomic_load(&released) + 1)
                    break;
                relax();
                if (spin && (i & 63) == 63 && gw_mono_ns() >= until)
                    break;
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
        int early = waits_alone(&j->h);
        for (int n = 1; !early && n < BATCH && last->next && last->next->order == last->order + 1 &&
                        !waits_alone(&last->next->h);
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
        gw_fold fold = {0};
        for (job *k = j; k; k = k->next)
            if (!session_broken && !gw_fold_skip(&fold, k))
                run_job(t, k);
        atomic_store_explicit(&t->running_order, 0, memory_order_relaxed); /* nothing runs here now */
        if (atomic_fetch_sub(&inflight, 1) == 1)
            gw_sstats_busy(0);
        trim_reply_buffer(t);
        gw_pinned_tend();
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
        session_held -= gw_job_cost(j);
        gw_job_free(j);
    }
    t->head = t->tail = NULL;
    atomic_store(&t->next_order, 0);
    t->queued_bytes = 0;
    pthread_mutex_unlock(&sched_lock);
    return NULL;
}

/* The worker thread of a client thread, started at its first request; NULL past MAX_THREADS. */
tthread *gw_sched_thread(uint32_t tid)
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
 * (cost: the list's gw_job_cost); -1 if the session broke meanwhile (the list is
 * then the caller's to free). */
int gw_sched_enqueue(tthread *t, job *head, job *tail, size_t bytes, size_t cost)
{
    pthread_mutex_lock(&sched_lock);
    uint64_t t0 = no_room_locked(t) && gw_prof_on() ? gw_prof_now() : 0;
    while (no_room_locked(t) && !session_broken) {
        room_wanted = 1;
        pthread_cond_wait(&sched_cv, &sched_lock);
        room_wanted = 0;
    }
    if (t0)
        gw_prof_add_reader(GW_PROF_READ_ROOM, gw_prof_now() - t0);
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
int gw_sched_stop(int drain)
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
    gw_io_clear_stall();
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

/* ---- copies whose bytes come on a lane (core/lanes.c) ---- */

/* A lane's data frame is read straight into a host-to-device copy job; the
 * job's payload starts with room for the HTOD fields (destination and stream)
 * that the copy frame on the main connection brings (called on a lane's thread). */
void *gw_lane_job_alloc(uint32_t len, uint8_t **bytes)
{
    uint32_t cap = GW_HTOD_REQ_SIZE + len;
    job *j;
    if (cap >= SPARE_MIN && (j = gw_pinned_take(sizeof *j + cap, 1))) {
        j->cap = cap;
    } else if (cap >= SPARE_MIN) {
        j = gw_job_alloc(cap); /* spares are under sched_lock */
    } else {
        cap = cap <= SMALL_CAP ? SMALL_CAP + 1 : cap; /* never on the reader's own small list */
        j = malloc(sizeof *j + cap);
        if (j)
            j->cap = cap;
    }
    if (j)
        *bytes = j->payload + GW_HTOD_REQ_SIZE;
    return j;
}
