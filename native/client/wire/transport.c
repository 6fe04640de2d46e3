/* The client's one ordered call stream to the gpuwire server: connection,
 * handshake, framing, and the request/reply buffers the forwarders fill.
 * One TCP connection per process: conn_lock orders what is queued on it,
 * send_lock what is written, recv_lock who reads (see "batching" and
 * "replies"). */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "client.h"
#include "env.h"
#include "tls.h"

#define NULL_MARKER 0xFFFFFFFFu
#define CONNECT_TIMEOUT_MS 5000

struct gw_req {
    uint8_t *buf; /* header + payload */
    size_t len, cap;
    unsigned op, flags;
    int oom;
};

struct gw_rep {
    uint8_t *buf;
    size_t len, cap, pos;
    int short_read;
    /* a reply of exactly 4 + direct_len bytes puts its bytes after the result
     * straight at direct (a device-to-host copy's destination): no second copy */
    void *direct;
    size_t direct_len;
    int direct_used;
};

static pthread_mutex_t conn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t connect_once = PTHREAD_ONCE_INIT;
static int conn_fd = -1;
static CUresult conn_status = CUDA_ERROR_NOT_INITIALIZED; /* outcome of gw_connect */
static atomic_int conn_lost; /* set by whichever thread sees the stream fail */
static gw_hello_ok server_info;
static atomic_int initialized;
static atomic_uint next_tid = 1;
static uint32_t next_seq = 1;

/* the batch of posted requests not yet written (see "batching") */
static uint8_t *sbuf;
static size_t slen, scap;
static uint8_t *spare; /* the other batch buffer: the one the flusher writes */
static size_t spare_cap;
static struct timespec sfirst; /* when the oldest unsent request was queued */
static pthread_cond_t flush_cv = PTHREAD_COND_INITIALIZER;
static int flusher_running;
static int flusher_asleep; /* under conn_lock: waiting with no deadline, so a new batch must wake it */
static long flush_us = 200;
/* Every write to conn_fd holds send_lock, taken while conn_lock is held (so
 * bytes leave in the order they were queued); the flusher then lets go of
 * conn_lock for its write, and posting threads never wait for a socket. */
static pthread_mutex_t send_lock = PTHREAD_MUTEX_INITIALIZER;

/* threads waiting for replies (see "replies") */
typedef struct waiter {
    struct waiter *next;
    uint32_t seq;
    gw_rep *rep;
    int done, failed;
} waiter;

static pthread_mutex_t recv_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t recv_cv = PTHREAD_COND_INITIALIZER;
static waiter *waiters; /* under recv_lock */
static int reader_busy; /* under recv_lock */


static unsigned long long requests_queued; /* under conn_lock */
static __thread unsigned long long tls_mark; /* requests_queued after this thread's last call */

static __thread gw_req tls_req;
static __thread gw_rep tls_rep;
static __thread uint32_t tls_tid;

/* ---- low-level I/O ---- */

int gw_io_write_all(int fd, const void *p, size_t n)
{
    if (__builtin_expect(fd == gw_tls_fd, 0)) /* never true without TLS (gw_tls_fd is -1) */
        return gw_tls_write_all(p, n);
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n, int timeout_ms);
static int drainer_running;
static void start_drainer(void);
int gw_io_read_all(int fd, void *p, size_t n, int timeout_ms) { return read_all(fd, p, n, timeout_ms); }

static int read_all(int fd, void *p, size_t n, int timeout_ms)
{
    if (__builtin_expect(fd == gw_tls_fd, 0))
        return gw_tls_read_all(p, n, timeout_ms);
    uint8_t *b = p;
    while (n) {
        if (timeout_ms >= 0) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            int pr = poll(&pfd, 1, timeout_ms);
            if (pr == 0) {
                errno = ETIMEDOUT;
                return -1;
            }
            if (pr < 0) {
                if (errno == EINTR)
                    continue;
                return -1;
            }
        }
        ssize_t r = recv(fd, b, n, 0);
        if (r == 0) {
            errno = ECONNRESET;
            return -1;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static uint32_t thread_tag(void)
{
    if (!tls_tid)
        tls_tid = atomic_fetch_add(&next_tid, 1);
    return tls_tid;
}

/* ---- connection ---- */

/* GPUWIRE_SERVER as the Python commands read it (gpuwire.server.parse_address):
 * HOST, HOST:PORT, [V6] or [V6]:PORT, port 7750 if none; a host without
 * spaces or control characters, a port from 1 to 65535; -1 if malformed. */
static int split_server(const char *spec, char *host, size_t hostcap, char *port, size_t portcap)
{
    while (isspace((unsigned char)*spec))
        spec++;
    size_t n = strlen(spec);
    while (n && isspace((unsigned char)spec[n - 1]))
        n--;
    const char *h = spec, *p = NULL, *colon = memchr(spec, ':', n);
    size_t hl;
    if (n && spec[0] == '[') {
        const char *end = memchr(spec, ']', n);
        if (!end || (end + 1 < spec + n && end[1] != ':'))
            return -1;
        h = spec + 1, hl = (size_t)(end - h);
        p = end + 1 < spec + n ? end + 2 : NULL;
    } else if (colon && memchr(colon + 1, ':', (size_t)(spec + n - colon - 1))) {
        return -1; /* a bare IPv6 address: its last group would pass for the port */
    } else {
        hl = colon ? (size_t)(colon - spec) : n;
        p = colon ? colon + 1 : NULL;
    }
    size_t pl = p ? (size_t)(spec + n - p) : 0;
    uint64_t num = 7750;
    const char *end = p;
    if (p && (gw_env_parse_u64(p, &end, &num) || end != p + pl))
        return -1;
    if (num < 1 || num > 65535 || hl >= hostcap)
        return -1;
    for (size_t i = 0; i < hl; i++)
        if ((unsigned char)h[i] <= ' ' || h[i] == 0x7f)
            return -1;
    if (hl)
        snprintf(host, hostcap, "%.*s", (int)hl, h);
    else
        snprintf(host, hostcap, "0.0.0.0"); /* ":PORT": this machine, as in Python */
    snprintf(port, portcap, "%u", (unsigned)num);
    return 0;
}

/* A server whose machine vanishes (no FIN, no RST) must not leave the
 * client waiting for ever: keepalive probes an idle connection (30 s idle,
 * then every 10 s, 6 tries) and data unacknowledged for 120 s ends it.
 * Every connection dialed (session, lanes, NVML's) gets these. */
/* Keepalive finds a server whose machine vanished while the client waits for a
 * reply. No TCP_USER_TIMEOUT here: it also fires while the server's window is
 * closed, and the worker stops reading, by design, while a long kernel runs with
 * a full backlog behind it (back-pressure): that must not end the session. */
#define KEEPALIVE_IDLE_S 30
#define KEEPALIVE_INTERVAL_S 10
#define KEEPALIVE_PROBES 6

static void keep_alive(int fd)
{
    int on = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTERVAL_S, cnt = KEEPALIVE_PROBES;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt))
        gw_log("cannot set TCP keepalive on the connection to the server (%s): a vanished server may go "
               "unnoticed", strerror(errno));
}

static int dial(const char *host, const char *port, char *why, size_t whycap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
        snprintf(why, whycap, "%s", gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    snprintf(why, whycap, "no address");
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int ok = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
        if (!ok && errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, CONNECT_TIMEOUT_MS) == 1) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
                errno = err;
                ok = err == 0;
            } else {
                errno = ETIMEDOUT;
            }
        }
        if (ok)
            break;
        snprintf(why, whycap, "%s", strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int fl = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &fl, sizeof fl);
        keep_alive(fd);
        /* back to blocking: reads poll only where a timeout matters */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    }
    return fd;
}

/* Read one frame's header and payload (payload malloc'd, NUL-terminated). */
int gw_io_read_frame(int fd, gw_hdr *h, uint8_t **payload, int timeout_ms)
{
    *payload = NULL;
    if (read_all(fd, h, sizeof *h, timeout_ms))
        return -1;
    if (h->len > GW_MAX_PAYLOAD) {
        errno = EPROTO;
        return -1;
    }
    *payload = malloc((size_t)h->len + 1);
    if (!*payload || read_all(fd, *payload, h->len, timeout_ms)) {
        free(*payload);
        *payload = NULL;
        return -1;
    }
    (*payload)[h->len] = 0;
    return 0;
}

/* Where the session's connection went: lanes (lanes.c) dial the same place. */
static char server_host[256], server_port[64];

int gw_io_dial_server(char *why, size_t whycap)
{
    if (!server_host[0]) {
        snprintf(why, whycap, "not connected");
        return -1;
    }
    return dial(server_host, server_port, why, whycap);
}

static void do_connect(void)
{
    const char *spec = getenv("GPUWIRE_SERVER");
    if (!spec || !*spec)
        spec = "127.0.0.1:7750";
    char host[256], port[64], why[128];
    if (split_server(spec, host, sizeof host, port, sizeof port)) {
        gw_env_complain("GPUWIRE_SERVER", spec, "HOST, HOST:PORT or [IPV6]:PORT, port 1 to 65535, default 7750",
                        GW_ENV_NO_SESSION);
        conn_status = CUDA_ERROR_NO_DEVICE;
        return;
    }
    /* settings that shape the session are checked before any connection:
     * a bad one fails it, never falls back to something broader */
    int bad = gw_handshake_settings();
    if (gw_tls_settings() || bad) {
        conn_status = CUDA_ERROR_NO_DEVICE;
        return;
    }
    int fd = dial(host, port, why, sizeof why);
    if (fd < 0 && strstr(why, "reset")) { /* accepted, then closed at once */
        gw_log("the gpuwire server at %s closed the connection at once (%s): it may have too many connections "
               "not yet authenticated (--max-preauth); try again. CUDA calls will fail with "
               "CUDA_ERROR_NO_DEVICE", spec, why);
        conn_status = CUDA_ERROR_NO_DEVICE;
        return;
    }
    if (fd < 0) {
        gw_log("cannot reach the gpuwire server at %s (%s); is `gpuwire server` running there? "
               "CUDA calls will fail with CUDA_ERROR_NO_DEVICE", spec, why);
        conn_status = CUDA_ERROR_NO_DEVICE;
        return;
    }
    gw_handshake_clock_start(); /* the answer's time limits count from here (handshake.c) */
    if (gw_tls_client_start(fd, host, spec)) { /* TLS when it applies (tls.c) */
        conn_status = CUDA_ERROR_NO_DEVICE;
        close(fd);
        return;
    }
    conn_status = gw_handshake(fd, spec, &server_info);
    if (conn_status == CUDA_SUCCESS) {
        conn_fd = fd;
        start_drainer();
        snprintf(server_host, sizeof server_host, "%s", host);
        snprintf(server_port, sizeof server_port, "%s", port);
    } else {
        gw_tls_forget(fd);
        close(fd);
    }
}

/* A forked child must not share the parent's stream: it starts a session of its own. */
static void after_fork_child(void)
{
    /* answers stay valid in the child: same server, same devices */
    slen = 0;
    flusher_running = 0; /* threads do not survive fork */
    drainer_running = 0;
    flusher_asleep = 0;
    pthread_mutex_init(&send_lock, NULL);
    if (conn_fd >= 0)
        close(conn_fd);
    conn_fd = -1;
    conn_lost = 0;
    conn_status = CUDA_ERROR_NOT_INITIALIZED;
    atomic_store(&initialized, 0);
    pthread_mutex_init(&conn_lock, NULL);
    pthread_mutex_init(&recv_lock, NULL);
    pthread_cond_init(&recv_cv, NULL);
    waiters = NULL; /* the parent's waiting threads are not in the child */
    reader_busy = 0;
    pthread_once_t fresh = PTHREAD_ONCE_INIT;
    connect_once = fresh;
}

__attribute__((constructor)) static void transport_init(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
}

CUresult gw_connect(void)
{
    pthread_once(&connect_once, do_connect);
    return conn_status;
}

int gw_initialized(void) { return atomic_load(&initialized); }
void gw_set_initialized(void) { atomic_store(&initialized, 1); }
unsigned long long gw_call_mark(void) { return tls_mark; }

static __thread int tls_must_wait;

int gw_may_post(void) { return !tls_must_wait; }
void gw_set_must_wait(int on) { tls_must_wait = on; }

uint64_t gw_new_handle_id(void)
{
    static atomic_ullong next = 1;
    return GW_CLIENT_ID_BIT | (atomic_fetch_add(&next, 1) << 3);
}

unsigned long long gw_requests_queued(void)
{
    pthread_mutex_lock(&conn_lock);
    unsigned long long n = requests_queued;
    pthread_mutex_unlock(&conn_lock);
    return n;
}

const gw_hello_ok *gw_server_info(void) { return conn_status == CUDA_SUCCESS ? &server_info : NULL; }

/* ---- request building ---- */

static void req_reserve(gw_req *q, size_t more)
{
    if (q->oom || q->len + more <= q->cap)
        return;
    size_t cap = q->cap ? q->cap : 4096;
    while (cap < q->len + more)
        cap *= 2;
    uint8_t *b = realloc(q->buf, cap);
    if (!b) {
        q->oom = 1;
        return;
    }
    q->buf = b;
    q->cap = cap;
}

gw_req *gw_req_begin_quiet(unsigned op)
{
    gw_req *q = &tls_req;
    q->len = sizeof(gw_hdr);
    q->op = op;
    q->flags = 0;
    q->oom = 0;
    req_reserve(q, 256);
    return q;
}

gw_req *gw_req_begin(unsigned op)
{
    gw_stat_call(op);
    return gw_req_begin_quiet(op);
}

void gw_req_set_flags(gw_req *q, unsigned flags) { q->flags = flags; }

void gw_put_raw(gw_req *q, const void *p, size_t n)
{
    req_reserve(q, n);
    if (q->oom)
        return;
    if (n)
        memcpy(q->buf + q->len, p, n);
    q->len += n;
}

void gw_put_u32(gw_req *q, uint32_t v) { gw_put_raw(q, &v, 4); }
void gw_put_u64(gw_req *q, uint64_t v) { gw_put_raw(q, &v, 8); }
void gw_put_f64(gw_req *q, double v) { gw_put_raw(q, &v, 8); }

void gw_put_in(gw_req *q, const void *p, size_t nbytes)
{
    if (!p || nbytes >= NULL_MARKER) {
        gw_put_u32(q, p ? (q->oom = 1, 0) : NULL_MARKER);
        return;
    }
    gw_put_u32(q, (uint32_t)nbytes);
    gw_put_raw(q, p, nbytes);
}

void gw_put_out(gw_req *q, const void *p, size_t count)
{
    if (p && count >= NULL_MARKER)
        q->oom = 1;
    gw_put_u32(q, p ? (uint32_t)count : NULL_MARKER);
}

void gw_put_str(gw_req *q, const char *s)
{
    gw_put_in(q, s, s ? strlen(s) : 0);
}

void gw_put_handles(gw_req *q, void *const *h, size_t n)
{
    if (!h) {
        gw_put_u32(q, NULL_MARKER);
        return;
    }
    gw_put_u32(q, (uint32_t)(n * 8));
    for (size_t i = 0; i < n; i++)
        gw_put_u64(q, (uint64_t)(uintptr_t)h[i]);
}

/* ---- sending ---- */

static CUresult usable(const gw_req *q)
{
    if (q->oom)
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (q->len - sizeof(gw_hdr) > GW_MAX_PAYLOAD)
        return CUDA_ERROR_INVALID_VALUE;
    if (q->op != GW_OP_cuInit && !gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    CUresult rc = gw_connect();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (conn_lost)
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    return CUDA_SUCCESS;
}

static void lose_connection(const char *what)
{
    if (!conn_lost)
        gw_log("lost the connection to the gpuwire server (%s: %s); "
               "CUDA calls now fail with CUDA_ERROR_DEVICE_UNAVAILABLE", what, strerror(errno));
    conn_lost = 1;
}

/* ---- batching ----
 * Requests that need no answer collect in one send buffer and leave in one
 * write: when a request that waits for its reply is sent, when the buffer
 * passes BATCH_BYTES, or at most flush_us after the oldest was queued (a
 * flusher thread), so a slow producer never strands work. The flusher writes
 * a full buffer while the application fills the other one: an application
 * thread that blocked on the lock for each such write (about 24 times a
 * decoded token on the H100 machine, a virtual machine) lost more time than
 * its launches took. */
#define BATCH_BYTES (256u * 1024u)
#define FLUSHER_LINGER_TICKS 50 /* idle ticks of flush_us before the flusher sleeps until woken */

/* conn_fd writes, under send_lock */
static int send_bytes(const void *p, size_t n)
{
    uint64_t t0 = gw_now_ns();
    int rc = gw_io_write_all(conn_fd, p, n);
    gw_stat_send(gw_now_ns() - t0);
    if (rc)
        lose_connection("send");
    return rc;
}

static int flush_locked(void)
{
    if (!slen || conn_lost)
        return conn_lost ? -1 : 0;
    pthread_mutex_lock(&send_lock); /* after the flusher's write in flight, if any */
    int rc = send_bytes(sbuf, slen);
    pthread_mutex_unlock(&send_lock);
    slen = 0;
    return rc;
}

/* A direct write of bytes that follow the batch (conn_lock held). */
static int send_after_batch(const void *p, size_t n, const void *tail, size_t tail_len)
{
    if (flush_locked())
        return -1;
    pthread_mutex_lock(&send_lock);
    int rc = send_bytes(p, n) || (tail_len && send_bytes(tail, tail_len));
    pthread_mutex_unlock(&send_lock);
    return rc;
}

/* The flusher's write: it takes the batch, lets go of conn_lock while the
 * bytes leave, and has conn_lock again when it returns. */
static void flush_in_background(void)
{
    pthread_mutex_lock(&send_lock);
    uint8_t *b = sbuf;
    size_t n = slen, cap = scap;
    sbuf = spare, scap = spare_cap, slen = 0;
    spare = b, spare_cap = cap;
    pthread_mutex_unlock(&conn_lock);
    if (!conn_lost)
        send_bytes(b, n);
    pthread_mutex_unlock(&send_lock);
    pthread_mutex_lock(&conn_lock);
}

int gw_flush(void)
{
    pthread_mutex_lock(&conn_lock);
    int bad = conn_lost || flush_locked();
    pthread_mutex_unlock(&conn_lock);
    return bad ? -1 : 0;
}

void gw_io_lost(const char *what) { lose_connection(what); }

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
    pthread_mutex_lock(&conn_lock);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!slen) {
            if (idle >= FLUSHER_LINGER_TICKS) {
                flusher_asleep = 1;
                while (!slen)
                    pthread_cond_wait(&flush_cv, &conn_lock);
                flusher_asleep = 0;
                idle = 0;
            } else {
                struct timespec tick = plus_us(now, flush_us);
                pthread_cond_timedwait(&flush_cv, &conn_lock, &tick);
                idle += !slen;
            }
            continue;
        }
        idle = 0;
        struct timespec due = plus_us(sfirst, flush_us);
        if (before(now, due))
            pthread_cond_timedwait(&flush_cv, &conn_lock, &due); /* then look again: someone may have sent it */
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
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&flush_cv, &ca);
    flusher_running = gw_start_helper_thread(flusher) == 0;
}

int gw_start_helper_thread(void *(*fn)(void *))
{
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&t, &a, fn, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    return rc ? -1 : 0;
}

/* conn_lock for a posting or calling thread; the time it had to wait for it
 * (another thread queueing or sending) is counted: it is time the
 * application lost. */
static void lock_conn(void)
{
    if (pthread_mutex_trylock(&conn_lock) == 0)
        return;
    uint64_t t0 = gw_now_ns();
    pthread_mutex_lock(&conn_lock);
    gw_stat_queue_wait(gw_now_ns() - t0);
}

/* Queue one request (called with conn_lock held). */
static int queue_locked(gw_req *q, uint32_t seq)
{
    if (conn_lost)
        return -1;
    gw_hdr h = {.len = (uint32_t)(q->len - sizeof(gw_hdr)), .op = (uint16_t)q->op,
                .flags = (uint16_t)q->flags, .tid = thread_tag(), .seq = seq};
    memcpy(q->buf, &h, sizeof h);
    gw_stat_bytes(q->len, 0);
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
        if (flusher_asleep)
            pthread_cond_signal(&flush_cv);
    }
    memcpy(sbuf + slen, q->buf, q->len);
    slen += q->len;
    return slen >= BATCH_BYTES ? flush_locked() : 0;
}

CUresult gw_req_post(gw_req *q)
{
    CUresult rc = usable(q);
    if (rc != CUDA_SUCCESS)
        return rc;
    q->flags |= GW_F_NOREPLY;
    lock_conn();
    int bad = queue_locked(q, next_seq++);
    pthread_mutex_unlock(&conn_lock);
    return bad ? CUDA_ERROR_DEVICE_UNAVAILABLE : CUDA_SUCCESS;
}

/* Posts q followed by `tail` (the frame's last bytes, e.g. a copy's payload)
 * without copying tail into the request first: the bytes go from the
 * caller's buffer into the socket, and have left it when this returns. */
CUresult gw_req_post_tail(gw_req *q, const void *tail, size_t tail_len)
{
    q->flags |= GW_F_NOREPLY;
    CUresult rc = usable(q);
    if (rc == CUDA_SUCCESS && q->len - sizeof(gw_hdr) + tail_len > GW_MAX_PAYLOAD)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc != CUDA_SUCCESS)
        return rc;
    lock_conn();
    int bad = conn_lost;
    if (!bad) {
        gw_hdr h = {.len = (uint32_t)(q->len - sizeof(gw_hdr) + tail_len), .op = (uint16_t)q->op,
                    .flags = (uint16_t)q->flags, .tid = thread_tag(), .seq = next_seq++};
        memcpy(q->buf, &h, sizeof h);
        gw_stat_bytes(q->len + tail_len, 0);
        tls_mark = ++requests_queued;
        bad = send_after_batch(q->buf, q->len, tail, tail_len); /* what was batched goes first: order is kept */
    }
    pthread_mutex_unlock(&conn_lock);
    return bad ? CUDA_ERROR_DEVICE_UNAVAILABLE : CUDA_SUCCESS;
}

/* Whatever is still queued leaves before the process does. */
__attribute__((destructor)) static void flush_at_exit(void)
{
    if (pthread_mutex_trylock(&conn_lock) == 0) {
        if (conn_fd >= 0)
            flush_locked();
        pthread_mutex_unlock(&conn_lock);
    }
}

/* ---- replies ----
 * A thread that waits for a reply sends its request, lets go of conn_lock and
 * waits on its own: other threads keep sending (their calls run on their own
 * worker threads), and one synchronize never stalls another thread's work.
 * Whichever waiting thread finds no reader becomes the reader: it reads frames
 * and hands each reply to the thread registered for its seq. A waiter leaves
 * only once answered or when no reader is active, so no reader ever writes to
 * a waiter that has gone. */
static void waiter_add(waiter *w)
{
    pthread_mutex_lock(&recv_lock);
    w->next = waiters;
    waiters = w;
    pthread_mutex_unlock(&recv_lock);
}

static void waiter_unlink_locked(waiter *w)
{
    for (waiter **pp = &waiters; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            return;
        }
    }
}

/* The reader is done (recv_lock held): after a failure nobody will be answered. */
static void reader_release_locked(int failed)
{
    reader_busy = 0;
    if (failed) {
        for (waiter *w = waiters; w; w = w->next)
            w->done = w->failed = 1;
        waiters = NULL;
    }
    pthread_cond_broadcast(&recv_cv);
}

static int grow_rep(gw_rep *r, size_t n)
{
    if (r->cap >= n)
        return 0;
    uint8_t *b = realloc(r->buf, n);
    if (!b)
        return -1;
    r->buf = b;
    r->cap = n;
    return 0;
}

/* Reads and drops len bytes of the stream: 0, or -1 if the read failed. */
static int discard(size_t len)
{
    uint8_t piece[16384];
    while (len) {
        size_t k = len < sizeof piece ? len : sizeof piece;
        if (read_all(conn_fd, piece, k, -1))
            return -1;
        len -= k;
    }
    return 0;
}

/* Device printf output (GW_OP_STDOUT, len bytes still on the wire): read in
 * pieces and written to fd 1, after what the application's stdio holds, so
 * host and device lines keep their order. A failed write (stdout closed)
 * drops the bytes; the stream stays in step. 0, or -1 if the read failed. */
static int print_device_output(size_t len)
{
    fflush(stdout);
    int out_ok = 1;
    while (len) {
        uint8_t piece[16384];
        size_t k = len < sizeof piece ? len : sizeof piece;
        if (read_all(conn_fd, piece, k, -1))
            return -1;
        len -= k;
        for (size_t off = 0; out_ok && off < k;) {
            ssize_t w = write(STDOUT_FILENO, piece + off, k - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { /* the application made fd 1 non-blocking */
                struct pollfd pfd = {.fd = STDOUT_FILENO, .events = POLLOUT};
                if (poll(&pfd, 1, 1000) > 0)
                    continue;
            }
            if (w <= 0) {
                out_ok = 0;
                break;
            }
            off += (size_t)w;
        }
    }
    return 0;
}

/* Reads one frame as the reader and delivers it: a reply with seq `mine` into
 * `own` (*got set), another reply to its registered waiter, module information
 * to modules.c, device printf output to stdout. 0, or -1 with the connection lost. */
static int read_one(uint32_t mine, gw_rep *own, int *got)
{
    gw_hdr h;
    if (read_all(conn_fd, &h, sizeof h, -1)) {
        lose_connection("receive");
        return -1;
    }
    if (h.op == GW_OP_MODULE_INFO && h.len <= GW_MAX_PAYLOAD) {
        /* unasked: a loaded module's functions; keep them */
        uint8_t *info = malloc(h.len ? h.len : 1);
        if (!info || read_all(conn_fd, info, h.len, -1)) {
            free(info);
            lose_connection("receive");
            return -1;
        }
        gw_stat_bytes(0, sizeof h + h.len);
        gw_module_info_arrived(info, h.len);
        free(info);
        return 0;
    }
    if (h.op == GW_OP_LANDED && h.len >= 16 && h.len <= GW_MAX_PAYLOAD) {
        /* unasked: bytes of a device-to-host copy into pinned memory, straight into place */
        uint64_t head[2];
        if (read_all(conn_fd, head, sizeof head, -1)) {
            lose_connection("receive");
            return -1;
        }
        size_t len = h.len - sizeof head;
        uint8_t *dst = gw_landing_target(head[0], head[1], len);
        int bad = dst ? read_all(conn_fd, dst, len, -1) : discard(len);
        if (bad) {
            lose_connection("receive");
            return -1;
        }
        if (dst)
            gw_landed(head[0], len);
        gw_stat_bytes(0, sizeof h + h.len);
        return 0;
    }
    if (h.op == GW_OP_STDOUT && h.len <= GW_MAX_PAYLOAD) {
        /* unasked: what kernels printed, flushed by a synchronization; printed before the call returns */
        int saved = errno;
        if (print_device_output(h.len)) {
            lose_connection("receive");
            return -1;
        }
        errno = saved;
        gw_stat_bytes(0, sizeof h + h.len);
        return 0;
    }
    waiter *w = NULL;
    if (h.op == GW_OP_REPLY && h.seq != mine) {
        pthread_mutex_lock(&recv_lock);
        for (w = waiters; w && w->seq != h.seq; w = w->next)
            ;
        pthread_mutex_unlock(&recv_lock);
    }
    if (h.op != GW_OP_REPLY || (h.seq != mine && !w) || h.len < 4 || h.len > GW_MAX_PAYLOAD) {
        uint8_t msg[512] = {0};
        size_t n = h.len < sizeof msg - 1 ? h.len : sizeof msg - 1;
        if (h.op == GW_OP_ERROR && n >= 4 && read_all(conn_fd, msg, n, 1000) == 0)
            gw_log("the server ended the session: %s", (const char *)msg + 4);
        else
            gw_log("malformed reply from the server (op %u, seq %u, %u bytes, no request waits for it)", h.op,
                   h.seq, h.len);
        errno = EPROTO;
        lose_connection("reply");
        return -1;
    }
    gw_rep *r = w ? w->rep : own;
    int direct = r->direct && h.len == 4 + r->direct_len;
    size_t keep = direct ? 4 : h.len;
    if (grow_rep(r, keep)) {
        lose_connection("reply buffer");
        return -1;
    }
    if (read_all(conn_fd, r->buf, keep, -1) || (direct && read_all(conn_fd, r->direct, r->direct_len, -1))) {
        lose_connection("receive");
        return -1;
    }
    r->len = keep;
    r->direct_used = direct;
    gw_stat_bytes(0, sizeof h + h.len);
    if (w) {
        pthread_mutex_lock(&recv_lock);
        waiter_unlink_locked(w);
        w->done = 1;
        pthread_cond_broadcast(&recv_cv);
        pthread_mutex_unlock(&recv_lock);
    } else {
        *got = 1;
    }
    return 0;
}

/* Frames the worker sends unasked (module information, landed copies, device
 * printf output) are read by whichever thread waits for a reply. An
 * application that waits for nothing for a long while (CPU work after an
 * asynchronous copy into pinned memory) would leave them unread, the worker's
 * writes would stall, and the server ends a session that reads nothing for its
 * stall timeout. So every DRAIN_MS, while no thread reads, the drainer takes
 * the reader role and reads what has arrived: one wake-up a second, none per call. */
#define DRAIN_MS 1000

static void *drainer(void *arg)
{
    (void)arg;
    gw_rep scratch = {0}; /* for a reply with seq 0, which no request has */
    for (;;) {
        struct timespec pause = {DRAIN_MS / 1000, (DRAIN_MS % 1000) * 1000000L};
        nanosleep(&pause, NULL);
        pthread_mutex_lock(&recv_lock);
        for (;;) {
            struct pollfd pfd = {.fd = conn_fd, .events = POLLIN};
            if (reader_busy || waiters || conn_lost || conn_fd < 0 || poll(&pfd, 1, 0) <= 0)
                break;
            reader_busy = 1;
            pthread_mutex_unlock(&recv_lock);
            int got = 0;
            int rc = read_one(0, &scratch, &got);
            pthread_mutex_lock(&recv_lock);
            reader_release_locked(rc != 0);
            if (rc)
                break;
        }
        int lost = conn_lost;
        pthread_mutex_unlock(&recv_lock);
        if (lost)
            break;
    }
    free(scratch.buf);
    return NULL;
}

static void start_drainer(void)
{
    if (!drainer_running)
        drainer_running = gw_start_helper_thread(drainer) == 0;
}

/* Waits until w is answered, reading for everyone while no one else does. */
static int wait_reply(waiter *w)
{
    pthread_mutex_lock(&recv_lock);
    while (!w->done) {
        if (reader_busy) {
            pthread_cond_wait(&recv_cv, &recv_lock);
            continue;
        }
        if (conn_lost) {
            waiter_unlink_locked(w);
            w->done = w->failed = 1;
            break;
        }
        reader_busy = 1;
        pthread_mutex_unlock(&recv_lock);
        int got = 0;
        int rc = read_one(w->seq, w->rep, &got);
        pthread_mutex_lock(&recv_lock);
        if (got) {
            waiter_unlink_locked(w);
            w->done = 1;
        }
        reader_release_locked(rc != 0);
    }
    pthread_mutex_unlock(&recv_lock);
    return w->failed ? -1 : 0;
}

/* GPUWIRE_TRACE_RT=1: one stderr line per round trip (op, first arguments,
 * time waited), to see which calls still wait and in what order. */
int gw_trace_rt_level(void)
{
    static int level = -1;
    if (level < 0) {
        unsigned long long v = 0;
        gw_env_int("GPUWIRE_TRACE_RT", 0, 2, "not tracing", &v);
        level = (int)v;
    }
    return level;
}

static int trace_round_trips(void) { return gw_trace_rt_level() > 0; }

static void trace_round_trip(const gw_req *q, uint64_t t0, int32_t res)
{
    uint64_t a[4] = {0};
    size_t n = q->len > sizeof(gw_hdr) ? q->len - sizeof(gw_hdr) : 0;
    memcpy(a, q->buf + sizeof(gw_hdr), n < sizeof a ? n : sizeof a);
    gw_log("rt %s args %llx %llx %llx %llx -> %d after %.1f us", q->op >= 256 ? gw_op_name(q->op) : "control op",
           (unsigned long long)a[0], (unsigned long long)a[1], (unsigned long long)a[2], (unsigned long long)a[3],
           res, (gw_now_ns() - t0) / 1e3);
}

CUresult gw_req_call(gw_req *q, gw_rep **out)
{
    gw_rep *r = &tls_rep;
    r->len = r->pos = 0;
    r->short_read = 0;
    *out = r;
    CUresult rc = usable(q);
    if (rc != CUDA_SUCCESS)
        return rc;
    waiter w = {.rep = r};
    uint64_t t0 = gw_now_ns();
    lock_conn();
    w.seq = next_seq++;
    waiter_add(&w); /* before it leaves: its reply may come at once */
    (void)(queue_locked(q, w.seq) || flush_locked()); /* a failure shows in wait_reply */
    pthread_mutex_unlock(&conn_lock);
    if (wait_reply(&w))
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    gw_stat_round_trip(q->op, gw_now_ns() - t0);
    int32_t res;
    memcpy(&res, r->buf, 4);
    r->pos = 4;
    if (trace_round_trips())
        trace_round_trip(q, t0, res);
    if (res != CUDA_SUCCESS && gw_debug())
        gw_log("%s returned %d", q->op >= 256 ? gw_op_name(q->op) : "control op", res);
    return (CUresult)res;
}

/* ---- bursts: several waiting requests from one thread, replies read in order ---- */

static int burst_waited; /* a burst is one round trip, however many replies */
static uint64_t burst_t0;
static unsigned burst_op;
static int burst_failed;

CUresult gw_burst_begin(unsigned op)
{
    gw_req probe = {.op = op, .len = sizeof(gw_hdr)};
    CUresult rc = usable(&probe);
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&conn_lock);
    /* the burst reads its own replies, in order: it holds the reader role
     * throughout and hands other threads' replies on as they come */
    pthread_mutex_lock(&recv_lock);
    while (reader_busy)
        pthread_cond_wait(&recv_cv, &recv_lock);
    reader_busy = 1;
    pthread_mutex_unlock(&recv_lock);
    burst_waited = 0;
    burst_t0 = gw_now_ns();
    burst_failed = 0;
    burst_op = op;
    return CUDA_SUCCESS;
}

CUresult gw_burst_queue(gw_req *q, uint32_t *seq)
{
    *seq = next_seq++;
    return queue_locked(q, *seq) ? CUDA_ERROR_DEVICE_UNAVAILABLE : CUDA_SUCCESS;
}

CUresult gw_burst_reply_into(uint32_t seq, gw_rep **out, void *dst, size_t n, int *placed)
{
    gw_rep *r = &tls_rep;
    r->direct = dst;
    r->direct_len = n;
    r->direct_used = 0;
    CUresult rc = gw_burst_reply(seq, out);
    *placed = r->direct_used;
    r->direct = NULL;
    r->direct_used = 0;
    return rc;
}

CUresult gw_burst_reply(uint32_t seq, gw_rep **out)
{
    gw_rep *r = &tls_rep;
    r->len = r->pos = 0;
    r->short_read = 0;
    *out = r;
    int got = 0;
    if (burst_failed || flush_locked())
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    while (!got) {
        if (read_one(seq, r, &got)) {
            burst_failed = 1;
            return CUDA_ERROR_DEVICE_UNAVAILABLE;
        }
    }
    if (!burst_waited++)
        gw_stat_round_trip(burst_op, gw_now_ns() - burst_t0);
    int32_t res;
    memcpy(&res, r->buf, 4);
    r->pos = 4;
    return (CUresult)res;
}

void gw_burst_end(void)
{
    pthread_mutex_lock(&recv_lock);
    reader_release_locked(burst_failed || conn_lost);
    pthread_mutex_unlock(&recv_lock);
    pthread_mutex_unlock(&conn_lock);
}

/* ---- answers that never change ----
 * Keyed by the request's op and payload (which encodes every argument and
 * output count); only successful replies are kept. Libraries ask some of these
 * around every launch (function attributes, a stream's context), and a process
 * keeps thousands of answers: a hash table finds one in constant time. */
typedef struct cached_reply {
    struct cached_reply *next;     /* in its bucket */
    struct cached_reply *next_all; /* in the list of all, for forgetting by op */
    uint64_t hash;
    unsigned op;
    size_t qlen, rlen;
    uint8_t data[]; /* request payload, then reply */
} cached_reply;

#define REPLY_BUCKETS (1u << 14)
static cached_reply *reply_buckets[REPLY_BUCKETS];
static cached_reply *replies; /* all, newest first */
static pthread_mutex_t replies_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t reply_key_hash(unsigned op, const uint8_t *key, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ op; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return h;
}

CUresult gw_req_call_cached(gw_req *q, gw_rep **out)
{
    const uint8_t *key = q->buf + sizeof(gw_hdr);
    size_t klen = q->len - sizeof(gw_hdr);
    uint64_t hash = reply_key_hash(q->op, key, klen);
    gw_rep *r = &tls_rep;
    if (!q->oom && gw_initialized()) {
        pthread_mutex_lock(&replies_lock);
        for (cached_reply *c = reply_buckets[hash & (REPLY_BUCKETS - 1)]; c; c = c->next) {
            if (c->hash != hash || c->op != q->op || c->qlen != klen || memcmp(c->data, key, klen))
                continue;
            if (r->cap < c->rlen) {
                uint8_t *b = realloc(r->buf, c->rlen);
                if (!b)
                    break;
                r->buf = b;
                r->cap = c->rlen;
            }
            memcpy(r->buf, c->data + klen, c->rlen);
            pthread_mutex_unlock(&replies_lock);
            r->len = c->rlen;
            r->pos = 4;
            r->short_read = 0;
            *out = r;
            return CUDA_SUCCESS;
        }
        pthread_mutex_unlock(&replies_lock);
    }
    CUresult rc = gw_req_call(q, out);
    if (rc == CUDA_SUCCESS && !q->oom) {
        cached_reply *c = malloc(sizeof *c + klen + r->len);
        if (c) {
            c->hash = hash;
            c->op = q->op;
            c->qlen = klen;
            c->rlen = r->len;
            memcpy(c->data, key, klen);
            memcpy(c->data + klen, r->buf, r->len);
            pthread_mutex_lock(&replies_lock);
            cached_reply **b = &reply_buckets[hash & (REPLY_BUCKETS - 1)];
            c->next = *b;
            *b = c;
            c->next_all = replies;
            replies = c;
            pthread_mutex_unlock(&replies_lock);
        }
    }
    return rc;
}

void gw_cache_forget(const unsigned *ops, size_t n)
{
    pthread_mutex_lock(&replies_lock);
    for (cached_reply **pp = &replies; *pp;) {
        int hit = 0;
        for (size_t i = 0; i < n; i++)
            hit |= (*pp)->op == ops[i];
        if (!hit) {
            pp = &(*pp)->next_all;
            continue;
        }
        cached_reply *dead = *pp;
        *pp = dead->next_all;
        for (cached_reply **bp = &reply_buckets[dead->hash & (REPLY_BUCKETS - 1)]; *bp; bp = &(*bp)->next)
            if (*bp == dead) {
                *bp = dead->next;
                break;
            }
        free(dead);
    }
    pthread_mutex_unlock(&replies_lock);
}

/* ---- reply decoding ---- */

const void *gw_get_view(gw_rep *r, size_t n)
{
    if (r->short_read || r->len - r->pos < n) {
        r->short_read = 1;
        return NULL;
    }
    const void *p = r->buf + r->pos;
    r->pos += n;
    return p;
}

int gw_get_bytes(gw_rep *r, void *dst, size_t n)
{
    const void *p = gw_get_view(r, n);
    if (!p)
        return -1;
    if (n)
        memcpy(dst, p, n);
    return 0;
}

uint32_t gw_get_u32(gw_rep *r)
{
    uint32_t v = 0;
    gw_get_bytes(r, &v, 4);
    return v;
}

uint64_t gw_get_u64(gw_rep *r)
{
    uint64_t v = 0;
    gw_get_bytes(r, &v, 8);
    return v;
}

void gw_get_handles(gw_rep *r, void **h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h[i] = (void *)(uintptr_t)gw_get_u64(r);
}

CUresult gw_rep_status(gw_rep *r, CUresult res)
{
    if (r->short_read) {
        gw_log("short reply from the server; returning CUDA_ERROR_UNKNOWN");
        return CUDA_ERROR_UNKNOWN;
    }
    return res;
}

void gw_rep_end(gw_rep *r) { (void)r; }
