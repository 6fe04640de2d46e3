/* gpuwire-netem: a TCP proxy that makes a loopback hop look like a network path with a given
 * round-trip time and bandwidth, for benchmarks on machines without tc/netem.
 *
 *   gpuwire-netem --listen HOST:PORT --to HOST:PORT [--rtt-us N] [--bandwidth-mbps M]
 *
 * Each accepted connection gets its own upstream connection. Each direction is an emulated
 * link that all connections share, as connections over one network path do (a client's copy
 * lanes must not multiply the bandwidth): bytes read from one side are "serialized" at M
 * megabits/s (a byte-accurate pacer: a token bucket with no burst allowance; M = 0 means
 * unlimited), then held for RTT/2 before they may be written to the other side. Order is preserved because each direction is one
 * FIFO ring whose release times never decrease. One thread, epoll plus a timerfd armed to
 * the earliest release time of a min-heap of directions: no busy waiting. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define RING_BYTES (8u << 20) /* per direction: bounds memory and the emulated queue */
#define MARKS 8192u           /* per direction: pending release points */
#define MAX_CHUNK (1u << 20)
#define MIN_CHUNK 4096u
#define NOT_QUEUED SIZE_MAX

typedef struct mark {
    uint64_t end; /* bytes [.., end) of the stream ... */
    uint64_t due; /* ... may leave at this time (ns, CLOCK_MONOTONIC) */
} mark;

struct conn;

/* One direction of one connection. Stream offsets are absolute 64-bit counts. */
typedef struct dir {
    struct conn *c;
    int src, dst;
    unsigned char *ring;
    uint64_t in, released, out; /* out <= released <= in */
    mark *marks;
    unsigned mhead, mcount;
    int way;             /* 0: client -> upstream, 1: upstream -> client (which shared link) */
    int eof, shut;       /* src reached EOF; dst was shut down for writing */
    uint64_t eof_due;    /* the EOF travels like data */
    int blocked;         /* dst returned EAGAIN: wait for EPOLLOUT */
    size_t heap_pos;
} dir;

/* epoll token for one socket of a connection. */
typedef struct end {
    struct conn *c;
    int side;
} end;

typedef struct conn {
    int fd[2];       /* 0: accepted client, 1: upstream */
    dir d[2];        /* d[0]: client -> upstream, d[1]: upstream -> client */
    end e[2];
    uint32_t ev[2];  /* epoll interest currently registered per fd */
    int reg[2];      /* fd is in the epoll set */
    int hup[2];      /* fd reported EPOLLHUP, which epoll repeats whatever the interest */
    int connecting;
    int dead;
    struct conn *next_dead;
} conn;

/* The emulated link of each way, shared by every connection. */
static struct {
    uint64_t free; /* when it has finished sending what it was given */
    uint64_t rem;  /* sub-nanosecond remainder of the pacing division, carried */
} g_link[2];

static uint64_t g_delay_ns;  /* one-way */
static uint64_t g_bps;       /* bits per second, 0 = unlimited */
static size_t g_chunk;
static int g_ep, g_tfd, g_lfd;
static struct sockaddr_storage g_to;
static socklen_t g_to_len;
static conn *g_dead;
static int g_verbose;
static uint64_t g_spin_ns = 150000; /* --spin-us: poll this long before a release instead of sleeping */

/* ---- time and the timer heap ---- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static dir **g_heap;
static size_t g_heap_n, g_heap_cap;
static uint64_t g_armed = UINT64_MAX;

/* The time a direction next needs attention: its oldest unreleased bytes, or its EOF. A
 * direction blocked on its socket waits for EPOLLOUT instead, which flushes it. After
 * dir_flush the key is always in the future, so the timer loop ends. */
static uint64_t dir_key(const dir *d)
{
    if (d->mcount)
        return d->marks[d->mhead].due;
    if (d->eof && !d->shut && !d->blocked)
        return d->eof_due;
    return UINT64_MAX;
}

static void heap_swap(size_t a, size_t b)
{
    dir *t = g_heap[a];
    g_heap[a] = g_heap[b];
    g_heap[b] = t;
    g_heap[a]->heap_pos = a;
    g_heap[b]->heap_pos = b;
}

static void heap_fix(size_t i)
{
    while (i > 0 && dir_key(g_heap[(i - 1) / 2]) > dir_key(g_heap[i])) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < g_heap_n && dir_key(g_heap[l]) < dir_key(g_heap[m]))
            m = l;
        if (r < g_heap_n && dir_key(g_heap[r]) < dir_key(g_heap[m]))
            m = r;
        if (m == i)
            return;
        heap_swap(i, m);
        i = m;
    }
}

static void heap_remove(dir *d)
{
    size_t i = d->heap_pos;
    if (i == NOT_QUEUED)
        return;
    d->heap_pos = NOT_QUEUED;
    g_heap_n--;
    if (i != g_heap_n) {
        g_heap[i] = g_heap[g_heap_n];
        g_heap[i]->heap_pos = i;
        heap_fix(i);
    }
}

/* Put d in the heap at its current key (or take it out when it needs no timer). */
static int heap_update(dir *d)
{
    if (dir_key(d) == UINT64_MAX) {
        heap_remove(d);
        return 0;
    }
    if (d->heap_pos == NOT_QUEUED) {
        if (g_heap_n == g_heap_cap) {
            size_t cap = g_heap_cap ? 2 * g_heap_cap : 64;
            dir **h = realloc(g_heap, cap * sizeof *h);
            if (!h)
                return -1;
            g_heap = h;
            g_heap_cap = cap;
        }
        d->heap_pos = g_heap_n;
        g_heap[g_heap_n++] = d;
    }
    heap_fix(d->heap_pos);
    return 0;
}

static void arm_timer(void)
{
    uint64_t t = g_heap_n ? dir_key(g_heap[0]) : UINT64_MAX;
    if (t == g_armed)
        return;
    struct itimerspec its = {0};
    if (t != UINT64_MAX) {
        /* woken g_spin_ns early: the loop polls until it is due (a wake-up from
         * a long sleep comes late by tens of microseconds); 0 would disarm: the
         * earliest absolute time that still fires is 1 ns */
        uint64_t at = t > g_spin_ns ? t - g_spin_ns : 1;
        its.it_value.tv_sec = (time_t)(at / 1000000000u);
        its.it_value.tv_nsec = (long)(at % 1000000000u);
    }
    if (timerfd_settime(g_tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        g_armed = t;
}

/* ---- connections ---- */

static void set_interest(conn *c, int side, uint32_t want)
{
    if (c->dead)
        return;
    if (want == 0 && c->hup[side]) {
        /* a hung-up socket we can't act on yet would wake epoll_wait in a loop: drop it */
        if (c->reg[side])
            epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd[side], NULL);
        c->reg[side] = 0;
        c->ev[side] = 0;
        return;
    }
    if (c->reg[side] && c->ev[side] == want)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = &c->e[side]};
    epoll_ctl(g_ep, c->reg[side] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd[side], &ev);
    c->reg[side] = 1;
    c->ev[side] = want;
}

static void conn_close(conn *c, const char *why)
{
    if (c->dead)
        return;
    if (g_verbose)
        fprintf(stderr, "gpuwire-netem: connection closed (%s)\n", why);
    c->dead = 1;
    for (int s = 0; s < 2; s++) {
        heap_remove(&c->d[s]);
        if (c->reg[s])
            epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd[s], NULL);
        close(c->fd[s]);
    }
    /* freed after the current batch of events, which may still name it */
    c->next_dead = g_dead;
    g_dead = c;
}

static void free_dead(void)
{
    while (g_dead) {
        conn *c = g_dead;
        g_dead = c->next_dead;
        for (int s = 0; s < 2; s++) {
            free(c->d[s].ring);
            free(c->d[s].marks);
        }
        free(c);
    }
}

/* Interest of one socket: readable if its outgoing direction has room, writable if its
 * incoming direction is blocked on it (or the upstream connect is still in progress). */
static void refresh(conn *c)
{
    if (c->dead)
        return;
    for (int s = 0; s < 2; s++) {
        const dir *rd = &c->d[s], *wr = &c->d[1 - s];
        uint32_t want = 0;
        if (!c->connecting && !rd->eof && rd->in - rd->out < RING_BYTES && rd->mcount < MARKS)
            want |= EPOLLIN;
        if (wr->blocked || (s == 1 && c->connecting))
            want |= EPOLLOUT;
        set_interest(c, s, want);
    }
    if (c->d[0].shut && c->d[1].shut)
        conn_close(c, "both directions finished");
}

/* Release what is due, write what is released, and pass on a due EOF. */
static void dir_flush(dir *d, uint64_t now)
{
    while (d->mcount && d->marks[d->mhead].due <= now) {
        d->released = d->marks[d->mhead].end;
        d->mhead = (d->mhead + 1) % MARKS;
        d->mcount--;
    }
    d->blocked = 0;
    while (d->out < d->released) {
        size_t off = d->out % RING_BYTES;
        size_t n = d->released - d->out;
        if (n > RING_BYTES - off)
            n = RING_BYTES - off;
        ssize_t w = send(d->dst, d->ring + off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            d->out += (uint64_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            d->blocked = 1;
            break;
        } else {
            conn_close(d->c, "write failed");
            return;
        }
    }
    if (d->eof && !d->shut && d->out == d->in && d->eof_due <= now) {
        shutdown(d->dst, SHUT_WR);
        d->shut = 1;
    }
    heap_update(d);
}

/* When n bytes read at `now` may leave the emulated link. */
static uint64_t due_time(dir *d, size_t n, uint64_t now)
{
    if (!g_bps)
        return now + g_delay_ns;
    typeof(g_link[0]) *l = &g_link[d->way];
    if (l->free < now) {
        l->free = now;
        l->rem = 0;
    }
    /* n*8 bits at g_bps: whole nanoseconds now, the fraction carried to the next read */
    uint64_t num = (uint64_t)n * 8u * 1000000000u + l->rem;
    l->free += num / g_bps;
    l->rem = num % g_bps;
    return l->free + g_delay_ns;
}

static void dir_read(dir *d)
{
    for (int rounds = 0; rounds < 8; rounds++) {
        uint64_t space = RING_BYTES - (d->in - d->out);
        if (d->eof || space == 0 || d->mcount == MARKS)
            break;
        size_t off = d->in % RING_BYTES;
        size_t n = RING_BYTES - off;
        if (n > space)
            n = space;
        if (n > g_chunk)
            n = g_chunk;
        ssize_t r = recv(d->src, d->ring + off, n, MSG_DONTWAIT);
        uint64_t now = now_ns();
        if (r > 0) {
            uint64_t due = due_time(d, (size_t)r, now);
            d->in += (uint64_t)r;
            if (d->mcount == 0 && due <= now) {
                d->released = d->in;
            } else if (d->mcount && d->marks[(d->mhead + d->mcount - 1) % MARKS].due == due) {
                d->marks[(d->mhead + d->mcount - 1) % MARKS].end = d->in;
            } else {
                d->marks[(d->mhead + d->mcount) % MARKS] = (mark){d->in, due};
                d->mcount++;
            }
            dir_flush(d, now);
            if (d->c->dead)
                return;
            if ((size_t)r < n)
                break; /* drained for now */
        } else if (r == 0) {
            d->eof = 1;
            uint64_t due = g_bps && g_link[d->way].free > now ? g_link[d->way].free : now;
            d->eof_due = due + g_delay_ns;
            dir_flush(d, now);
            return;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            conn_close(d->c, "read failed");
            return;
        }
    }
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void accept_all(void)
{
    for (;;) {
        int fd = accept4(g_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN, or out of fds: try again on the next event */
        }
        set_nodelay(fd);
        int up = socket(g_to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        conn *c = calloc(1, sizeof *c);
        int ok = up >= 0 && c;
        for (int s = 0; ok && s < 2; s++) {
            c->d[s].ring = malloc(RING_BYTES);
            c->d[s].marks = malloc(MARKS * sizeof(mark));
            ok = c->d[s].ring && c->d[s].marks;
        }
        if (ok) {
            set_nodelay(up);
            int r = connect(up, (struct sockaddr *)&g_to, g_to_len);
            ok = r == 0 || errno == EINPROGRESS;
            c->connecting = r != 0;
        }
        if (!ok) {
            if (c) {
                for (int s = 0; s < 2; s++) {
                    free(c->d[s].ring);
                    free(c->d[s].marks);
                }
                free(c);
            }
            if (up >= 0)
                close(up);
            close(fd);
            fprintf(stderr, "gpuwire-netem: cannot open upstream connection: %s\n", strerror(errno));
            continue;
        }
        c->fd[0] = fd;
        c->fd[1] = up;
        for (int s = 0; s < 2; s++) {
            dir *d = &c->d[s];
            d->way = s;
            c->e[s] = (end){c, s};
            d->c = c;
            d->src = c->fd[s];
            d->dst = c->fd[1 - s];
            d->heap_pos = NOT_QUEUED;
            struct epoll_event ev = {.events = 0, .data.ptr = &c->e[s]};
            epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd[s], &ev);
            c->reg[s] = 1;
        }
        if (g_verbose)
            fprintf(stderr, "gpuwire-netem: connection accepted\n");
        refresh(c);
    }
}

static void on_socket(conn *c, int side, uint32_t events)
{
    if (c->dead)
        return;
    if (side == 1 && c->connecting) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fprintf(stderr, "gpuwire-netem: upstream connect failed: %s\n", strerror(err));
            conn_close(c, "connect failed");
            return;
        }
        c->connecting = 0;
        refresh(c);
        return;
    }
    if (events & (EPOLLHUP | EPOLLERR))
        c->hup[side] = 1;
    if (events & EPOLLOUT)
        dir_flush(&c->d[1 - side], now_ns());
    /* HUP/ERR: read to learn EOF or the error */
    if (!c->dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        dir_read(&c->d[side]);
    refresh(c);
}

static void on_timer(void)
{
    uint64_t expirations;
    if (read(g_tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        return;
    g_armed = UINT64_MAX;
}

/* Release everything due by now. */
static void flush_due(void)
{
    uint64_t now = now_ns();
    while (g_heap_n && dir_key(g_heap[0]) <= now) {
        dir *d = g_heap[0];
        dir_flush(d, now); /* moves d's key past now, or takes d out of the heap */
        refresh(d->c);
    }
}

/* ---- set-up ---- */

static int resolve(const char *text, int passive, struct sockaddr_storage *sa, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host)
        return -1;
    const char *h = text, *hend = colon;
    if (*h == '[' && hend > h && hend[-1] == ']') {
        h++;
        hend--;
    }
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0}, *ai;
    if (getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai) != 0)
        return -1;
    memcpy(sa, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: gpuwire-netem --listen HOST:PORT --to HOST:PORT [--rtt-us N] "
                    "[--bandwidth-mbps M] [--spin-us S] [--no-realtime] [--verbose]\n"
                    "  each direction: paced at M Mbit/s (0: unlimited), then delayed RTT/2\n"
                    "  --spin-us: poll the last S us before a release instead of sleeping (default 150)\n"
                    "  --no-realtime: stay at normal priority (by default it asks for SCHED_FIFO)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *listen_at = NULL, *to = NULL;
    double rtt_us = 0, mbps = 0;
    int realtime = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--verbose")) {
            g_verbose = 1;
            continue;
        }
        if (!strcmp(a, "--no-realtime")) {
            realtime = 0;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        char *endp;
        if (!strcmp(a, "--listen")) {
            listen_at = v;
        } else if (!strcmp(a, "--to")) {
            to = v;
        } else if (!strcmp(a, "--rtt-us")) {
            rtt_us = strtod(v, &endp);
            if (*endp || rtt_us < 0 || rtt_us > 60e6)
                usage();
        } else if (!strcmp(a, "--spin-us")) {
            double spin = strtod(v, &endp);
            if (*endp || spin < 0 || spin > 10000)
                usage();
            g_spin_ns = (uint64_t)(spin * 1000.0);
        } else if (!strcmp(a, "--bandwidth-mbps")) {
            mbps = strtod(v, &endp);
            if (*endp || mbps < 0 || mbps > 1e9)
                usage();
        } else {
            usage();
        }
    }
    if (!listen_at || !to)
        usage();
    g_delay_ns = (uint64_t)(rtt_us * 1000.0 / 2.0 + 0.5);
    g_bps = (uint64_t)(mbps * 1e6 + 0.5);
    /* reads of about half a millisecond of link time keep the pacing smooth */
    g_chunk = MAX_CHUNK;
    if (g_bps) {
        uint64_t c = g_bps / 8 / 2000;
        g_chunk = c < MIN_CHUNK ? MIN_CHUNK : c > MAX_CHUNK ? MAX_CHUNK : (size_t)c;
    }

    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1UL); /* the default 50 us slack would blur sub-ms delays */

    struct sockaddr_storage la;
    socklen_t la_len;
    if (resolve(listen_at, 1, &la, &la_len) != 0 || resolve(to, 0, &g_to, &g_to_len) != 0) {
        fprintf(stderr, "gpuwire-netem: cannot resolve %s or %s\n", listen_at, to);
        return 2;
    }
    g_lfd = socket(la.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(g_lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (g_lfd < 0 || bind(g_lfd, (struct sockaddr *)&la, la_len) != 0 || listen(g_lfd, 128) != 0) {
        fprintf(stderr, "gpuwire-netem: cannot listen on %s: %s\n", listen_at, strerror(errno));
        return 1;
    }
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    g_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g_ep < 0 || g_tfd < 0) {
        perror("gpuwire-netem: epoll/timerfd");
        return 1;
    }
    static int listen_tag, timer_tag;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listen_tag};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, g_lfd, &ev);
    ev.data.ptr = &timer_tag;
    epoll_ctl(g_ep, EPOLL_CTL_ADD, g_tfd, &ev);
    /* A link's delay must not include this process waiting for a CPU: on a
     * busy machine (a 2-core one running client, worker and server) that
     * added 0.7 ms to a 2 ms round trip. A real-time priority, where allowed,
     * releases each byte when due; it only ever runs for short bursts. */
    const char *prio = "normal priority";
    if (realtime) {
        struct sched_param sp = {.sched_priority = 10};
        prio = sched_setscheduler(0, SCHED_FIFO, &sp) == 0 ? "real-time priority"
                                                            : "normal priority (SCHED_FIFO not permitted)";
    }
    if (g_bps)
        fprintf(stderr, "gpuwire-netem: %s -> %s, rtt %.0f us, %g Mbit/s, %s\n", listen_at, to, rtt_us, mbps, prio);
    else
        fprintf(stderr, "gpuwire-netem: %s -> %s, rtt %.0f us, unlimited bandwidth, %s\n", listen_at, to, rtt_us,
                prio);

    struct epoll_event evs[64];
    for (;;) {
        /* within g_spin_ns of the next release: poll without sleeping */
        uint64_t next = g_heap_n ? dir_key(g_heap[0]) : UINT64_MAX;
        int polling = next != UINT64_MAX && next <= now_ns() + g_spin_ns;
        int n = epoll_wait(g_ep, evs, 64, polling ? 0 : -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("gpuwire-netem: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &listen_tag) {
                accept_all();
            } else if (p == &timer_tag) {
                on_timer();
            } else {
                end *e = p;
                on_socket(e->c, e->side, evs[i].events);
            }
        }
        flush_due();
        free_dead();
        arm_timer();
    }
}
