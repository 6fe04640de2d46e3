/* Posted requests collect in one send buffer and leave in one write:
 * when a request that waits for its reply is sent, when the buffer
 * passes BATCH_BYTES, or at most flush_us after the oldest was queued (a
 * flusher thread), so a slow producer never strands work. The flusher writes
 * a full buffer while the application fills the other one: an application
 * thread that blocked on the lock for each such write (about 24 times a
 * decoded token on the H100 machine, a virtual machine) lost more time than
 * its launches took.
 *
 * Every write to the connection holds send_lock, taken while gw_conn_lock is
 * held (so bytes leave in the order they were queued); the flusher then lets
 * go of gw_conn_lock for its write, and posting threads never wait for a
 * socket. */
#include <string.h>
#include <time.h>

#include "../../generated/gw_ops.h"
#include "../diag/env.h"
#include "stream.h"

/* the batch of posted requests not yet written */
static uint8_t *sbuf;
static size_t slen, scap;
static uint8_t *spare; /* the other batch buffer: the one the flusher writes */
static size_t spare_cap;
static struct timespec sfirst; /* when the oldest unsent request was queued */
static struct timespec sdue;   /* when the flusher sends the batch */
/* Eager flushes: after a synchronize returned, the GPU has nothing of this
 * client's to run, so a batch that starts then leaves eager_us after its first
 * request (not flush_us), until a launch has gone, so work posted before a
 * stretch of the application's own CPU time reaches the GPU meanwhile, as it
 * would natively (llama.cpp posts a token's work within 20 us: no difference
 * measured there, bench/results.md). 0 (GPUWIRE_EAGER_FLUSH_US=0): off. */
static long eager_us = 20;
static int gpu_idle; /* under gw_conn_lock: a synchronize returned and no launch was queued since */
static pthread_cond_t flush_cv = PTHREAD_COND_INITIALIZER;
static int flusher_running;
static int flusher_asleep; /* under gw_conn_lock: waiting with no deadline, so a new batch must wake it */
static long flush_us = 200;
static pthread_mutex_t send_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned long long requests_queued; /* under gw_conn_lock */
static __thread unsigned long long tls_mark; /* requests_queued after this thread's last call */

#define BATCH_BYTES (256u * 1024u)
#define FLUSHER_LINGER_TICKS 50 /* idle ticks of flush_us before the flusher sleeps until woken */

/* gw_conn_fd writes, under send_lock */
static int send_bytes(const void *p, size_t n)
{
    uint64_t t0 = gw_now_ns();
    int rc = gw_io_write_all(gw_conn_fd, p, n);
    GW_WIRE_COUNT(send, gw_now_ns() - t0);
    if (rc)
        gw_stream_lose("send");
    return rc;
}

int gw_stream_flush_locked(void)
{
    if (!slen || gw_conn_lost)
        return gw_conn_lost ? -1 : 0;
    pthread_mutex_lock(&send_lock); /* after the flusher's write in flight, if any */
    int rc = send_bytes(sbuf, slen);
    pthread_mutex_unlock(&send_lock);
    slen = 0;
    return rc;
}

/* A direct write of bytes that follow the batch (gw_conn_lock held). */
static int send_after_batch(const void *p, size_t n, const void *tail, size_t tail_len)
{
    if (gw_stream_flush_locked())
        return -1;
    pthread_mutex_lock(&send_lock);
    int rc = send_bytes(p, n) || (tail_len && send_bytes(tail, tail_len));
    pthread_mutex_unlock(&send_lock);
    return rc;
}

/* The flusher's write: it takes the batch, lets go of gw_conn_lock while the
 * bytes leave, and has gw_conn_lock again when it returns. */
static void flush_in_background(void)
{
    pthread_mutex_lock(&send_lock);
    uint8_t *b = sbuf;
    size_t n = slen, cap = scap;
    sbuf = spare, scap = spare_cap, slen = 0;
    spare = b, spare_cap = cap;
    pthread_mutex_unlock(&gw_conn_lock);
    if (!gw_conn_lost)
        send_bytes(b, n);
    pthread_mutex_unlock(&send_lock);
    pthread_mutex_lock(&gw_conn_lock);
}

int gw_flush(void)
{
    pthread_mutex_lock(&gw_conn_lock);
    int bad = gw_conn_lost || gw_stream_flush_locked();
    pthread_mutex_unlock(&gw_conn_lock);
    return bad ? -1 : 0;
}


static struct timespec plus_us(struct timespec t, long us)
{
    t.tv_sec += us / 1000000; /* whole seconds apart: us * 1000 cannot overflow */
    t.tv_nsec += us % 1000000 * 1000;
    t.tv_sec += t.tv_nsec / 1000000000;
    t.tv_nsec %= 1000000000;
    return t;
}

static int before(struct timespec a, struct timespec b)
{
    return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

/* While the application is active the flusher looks every flush_us on its own
 * (nobody wakes it per batch); after FLUSHER_LINGER_TICKS quiet ticks it
 * sleeps until the next batch's first request wakes it. */
static void *flusher(void *arg)
{
    (void)arg;
    int idle = 0;
    pthread_mutex_lock(&gw_conn_lock);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!slen) {
            if (idle >= FLUSHER_LINGER_TICKS) {
                flusher_asleep = 1;
                while (!slen)
                    pthread_cond_wait(&flush_cv, &gw_conn_lock);
                flusher_asleep = 0;
                idle = 0;
            } else {
                struct timespec tick = plus_us(now, flush_us);
                pthread_cond_timedwait(&flush_cv, &gw_conn_lock, &tick);
                idle += !slen;
            }
            continue;
        }
        idle = 0;
        struct timespec due = sdue;
        if (before(now, due))
            pthread_cond_timedwait(&flush_cv, &gw_conn_lock, &due); /* then look again: someone may have sent it */
        else
            flush_in_background();
    }
    return NULL;
}

static void start_flusher_locked(void)
{
    if (flusher_running)
        return;
    unsigned long long us = 200;
    gw_env_int("GPUWIRE_FLUSH_US", 0, 1000000, "using the default, 200", &us);
    flush_us = us ? (long)us : 1;
    unsigned long long e = 20;
    gw_env_int("GPUWIRE_EAGER_FLUSH_US", 0, 1000000, "using the default, 20", &e);
    eager_us = (long)e;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&flush_cv, &ca);
    flusher_running = gw_start_helper_thread(flusher) == 0;
}

/* gw_conn_lock for a posting or calling thread; the time it had to wait for it
 * (another thread queueing or sending) is counted: it is time the
 * application lost. */
void gw_stream_lock(void)
{
    if (pthread_mutex_trylock(&gw_conn_lock) == 0)
        return;
    uint64_t t0 = gw_now_ns();
    pthread_mutex_lock(&gw_conn_lock);
    GW_WIRE_COUNT(queue_wait, gw_now_ns() - t0);
}

/* What an op does to the GPU's work, for eager flushes: 1 other, 2 a launch
 * (cuLaunch*, cuGraphLaunch*), 3 a synchronize (cu*Synchronize*). */
static unsigned char op_kind(unsigned op)
{
    static unsigned char kind[GW_OP_COUNT]; /* filled on first use; a race writes the same byte */
    if (op < 256 || op >= 256 + GW_OP_COUNT)
        return 1;
    unsigned char *k = &kind[op - 256];
    if (!*k) {
        const char *n = gw_op_name(op);
        *k = !strncmp(n, "cuLaunch", 8) || !strncmp(n, "cuGraphLaunch", 13) ? 2 : strstr(n, "Synchronize") ? 3 : 1;
    }
    return *k;
}

int gw_op_is_launch(unsigned op) { return op_kind(op) == 2; }
int gw_op_is_sync(unsigned op) { return op_kind(op) == 3; }

static void (*post_observer)(unsigned op, int server);

void gw_set_post_observer(void (*fn)(unsigned op, int server))
{
    __atomic_store_n(&post_observer, fn, __ATOMIC_RELEASE);
}

static void observe_post(const gw_req *q, int server)
{
    void (*fn)(unsigned, int) = __atomic_load_n(&post_observer, __ATOMIC_ACQUIRE);
    if (fn && (q->flags & GW_F_NOREPLY))
        fn(q->op, server);
}

void gw_stream_observe_post(const gw_req *q, int server) { observe_post(q, server); } /* servers.c's links post too */

/* Queue one request (called with gw_conn_lock held). */
int gw_stream_queue_locked(gw_req *q, uint32_t seq)
{
    if (gw_conn_lost)
        return -1;
    observe_post(q, 0); /* server 0's session */
    gw_hdr h = {.len = (uint32_t)(q->len - sizeof(gw_hdr)), .op = (uint16_t)q->op,
                .flags = (uint16_t)q->flags, .tid = gw_stream_thread_tag(), .seq = seq};
    memcpy(q->buf, &h, sizeof h);
    GW_WIRE_COUNT(bytes, q->len, 0);
    tls_mark = ++requests_queued;
    if (q->len >= BATCH_BYTES) /* big: no point copying it into the batch */
        return send_after_batch(q->buf, q->len, NULL, 0);
    if (slen + q->len > scap) {
        size_t cap = scap ? scap * 2 : 2 * BATCH_BYTES;
        while (cap < slen + q->len)
            cap *= 2;
        uint8_t *b = realloc(sbuf, cap);
        if (!b)
            return send_after_batch(q->buf, q->len, NULL, 0);
        sbuf = b;
        scap = cap;
    }
    if (!slen) {
        clock_gettime(CLOCK_MONOTONIC, &sfirst);
        start_flusher_locked();
        int eager = gpu_idle && eager_us > 0 && eager_us < flush_us;
        sdue = plus_us(sfirst, eager ? eager_us : flush_us);
        if (flusher_asleep || eager) /* an eager batch: the flusher may be waiting for a later tick */
            pthread_cond_signal(&flush_cv);
    }
    if (gpu_idle && gw_op_is_launch(q->op))
        gpu_idle = 0; /* the GPU has work again: batch as usual */
    memcpy(sbuf + slen, q->buf, q->len);
    slen += q->len;
    return slen >= BATCH_BYTES ? gw_stream_flush_locked() : 0;
}

CUresult gw_req_post(gw_req *q)
{
#ifndef GW_NVML_CLIENT
    if (gw_servers_n > 1 && gw_route_of(q) != 0) /* several servers: another's (servers.c) */
        return gw_link_post(gw_route_of(q), q, NULL, 0);
#endif
    CUresult rc = gw_stream_usable(q);
    if (rc != CUDA_SUCCESS)
        return rc;
    q->flags |= GW_F_NOREPLY;
    gw_stream_lock();
    int bad = gw_stream_queue_locked(q, gw_next_seq++);
    pthread_mutex_unlock(&gw_conn_lock);
    return bad ? CUDA_ERROR_DEVICE_UNAVAILABLE : CUDA_SUCCESS;
}

/* Posts q followed by `tail` (the frame's last bytes, e.g. a copy's payload)
 * without copying tail into the request first: the bytes go from the
 * caller's buffer into the socket, and have left it when this returns. */
CUresult gw_req_post_tail(gw_req *q, const void *tail, size_t tail_len)
{
    q->flags |= GW_F_NOREPLY;
#ifndef GW_NVML_CLIENT
    if (gw_servers_n > 1 && gw_route_of(q) != 0) /* several servers: another's (servers.c) */
        return gw_link_post(gw_route_of(q), q, tail, tail_len);
#endif
    CUresult rc = gw_stream_usable(q);
    if (rc == CUDA_SUCCESS && q->len - sizeof(gw_hdr) + tail_len > GW_MAX_PAYLOAD)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_stream_lock();
    int bad = gw_conn_lost;
    if (!bad) {
        gw_hdr h = {.len = (uint32_t)(q->len - sizeof(gw_hdr) + tail_len), .op = (uint16_t)q->op,
                    .flags = (uint16_t)q->flags, .tid = gw_stream_thread_tag(), .seq = gw_next_seq++};
        memcpy(q->buf, &h, sizeof h);
        GW_WIRE_COUNT(bytes, q->len + tail_len, 0);
        tls_mark = ++requests_queued;
        observe_post(q, 0);
        bad = send_after_batch(q->buf, q->len, tail, tail_len); /* what was batched goes first: order is kept */
    }
    pthread_mutex_unlock(&gw_conn_lock);
    return bad ? CUDA_ERROR_DEVICE_UNAVAILABLE : CUDA_SUCCESS;
}

/* Whatever is still queued leaves before the process does. */
__attribute__((destructor)) static void flush_at_exit(void)
{
    if (pthread_mutex_trylock(&gw_conn_lock) == 0) {
        if (gw_conn_fd >= 0)
            gw_stream_flush_locked();
        pthread_mutex_unlock(&gw_conn_lock);
    }
}

unsigned long long gw_requests_queued(void)
{
    pthread_mutex_lock(&gw_conn_lock);
    unsigned long long n = requests_queued;
    pthread_mutex_unlock(&gw_conn_lock);
    return n;
}

unsigned long long gw_call_mark(void) { return tls_mark; }

/* A forked child has no flusher and nothing queued (session.c). */
void gw_batch_after_fork(void)
{
    slen = 0;
    flusher_running = 0;
    flusher_asleep = 0;
    pthread_mutex_init(&send_lock, NULL);
}

/* A synchronizing call's reply arrived: the GPU may be idle now (replies.c). */
void gw_batch_note_synchronized(unsigned op)
{
    if (!gw_op_is_sync(op))
        return;
    pthread_mutex_lock(&gw_conn_lock);
    gpu_idle = 1;
    pthread_mutex_unlock(&gw_conn_lock);
}
