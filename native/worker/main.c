/* gpuwire-worker: started by `gpuwire server` for one client connection (the
 * server has already read and checked the client's HELLO), or with --probe to
 * report whether a driver works.
 *
 *   gpuwire-worker --fd N --driver PATH [--nvml PATH] [--session ID] [--api-digest D] [--client TEXT]
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
#include <sys/socket.h>
#include <unistd.h>

#include "../common/idmap.h"
#include "nvml.h"
#include "worker.h"

#define MAX_THREADS 256

static void *driver;
static void *syms[GW_OP_COUNT];
static int fd = -1;
static const char *session = "-";
/* Per client thread: the first failure among its NOREPLY requests, kept for
 * its next GW_F_COLLECT request (a synchronization point). */
static gw_idmap deferred;

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

static int write_all(const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Buffered reads: posted requests arrive many to a segment, and one recv
 * should deliver them all rather than two system calls per request. */
static uint8_t inbuf[1u << 20];
static size_t in_pos, in_end;

static int read_frame_bytes(void *p, size_t n)
{
    uint8_t *dst = p;
    while (n) {
        if (in_pos == in_end) {
            if (n >= sizeof inbuf / 4) /* large payload: straight into place */
                return read_all(dst, n);
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
void gw_push(unsigned op, const void *payload, size_t len)
{
    gw_hdr h = {.len = (uint32_t)len, .op = (uint16_t)op};
    if (write_all(&h, sizeof h) == 0)
        write_all(payload, len);
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
    write_all(buf, 20 + n);
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

/* ---- execution on per-client-thread worker threads ---- */

typedef struct tthread {
    uint32_t tid;
    pthread_t th;
    pthread_mutex_t m;
    pthread_cond_t cv;
    _Atomic(gw_call *) job; /* set by the reader, cleared by the thread when done */
} tthread;

static tthread threads[MAX_THREADS];
static unsigned nthreads;
static uint32_t main_tid; /* the first client thread runs on the reader thread itself */

/* Hand-offs spin briefly before sleeping: a client thread's calls come back
 * to back, and a condition-variable wake-up per call would cost more than
 * the call. */
#define SPIN 20000

static inline void relax(void) { __builtin_ia32_pause(); }

static void run(gw_call *c)
{
    unsigned op = c->h.op;
    if (op == GW_OP_STAGE)
        gw_op_stage(c);
    else if (op == GW_OP_FUNC_LAYOUT)
        gw_op_func_layout(c);
    else if (op == GW_OP_DEVICE_ATTRS)
        gw_op_device_attrs(c);
    else if (gw_is_nvml_op(op))
        gw_nvml_run(c);
    else
        gw_dispatch[op - 256](c);
}

static void *thread_main(void *arg)
{
    tthread *t = arg;
    for (;;) {
        gw_call *job = NULL;
        for (int i = 0; i < SPIN && !(job = atomic_load(&t->job)); i++)
            relax();
        if (!job) {
            pthread_mutex_lock(&t->m);
            while (!(job = atomic_load(&t->job)))
                pthread_cond_wait(&t->cv, &t->m);
            pthread_mutex_unlock(&t->m);
        }
        run(job);
        atomic_store(&t->job, NULL);
        pthread_mutex_lock(&t->m);
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->m);
    }
    return NULL;
}

static int execute(gw_call *c)
{
    if (!main_tid)
        main_tid = c->h.tid;
    if (c->h.tid == main_tid) {
        run(c);
        return 0;
    }
    tthread *t = NULL;
    for (unsigned i = 0; i < nthreads; i++)
        if (threads[i].tid == c->h.tid)
            t = &threads[i];
    if (!t) {
        if (nthreads == MAX_THREADS) {
            gw_call_fail(c, "more than %d client threads", MAX_THREADS);
            return -1;
        }
        t = &threads[nthreads];
        t->tid = c->h.tid;
        atomic_store(&t->job, NULL);
        pthread_mutex_init(&t->m, NULL);
        pthread_cond_init(&t->cv, NULL);
        if (pthread_create(&t->th, NULL, thread_main, t)) {
            gw_call_fail(c, "cannot start a worker thread");
            return -1;
        }
        nthreads++;
    }
    atomic_store(&t->job, c);
    pthread_mutex_lock(&t->m);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->m);
    for (int i = 0; i < SPIN && atomic_load(&t->job); i++)
        relax();
    if (atomic_load(&t->job)) {
        pthread_mutex_lock(&t->m);
        while (atomic_load(&t->job))
            pthread_cond_wait(&t->cv, &t->m);
        pthread_mutex_unlock(&t->m);
    }
    return 0;
}

static int valid_op(unsigned op)
{
    if (op == GW_OP_STAGE || op == GW_OP_FUNC_LAYOUT || op == GW_OP_DEVICE_ATTRS)
        return 1;
    if (gw_is_nvml_op(op))
        return gw_nvml_valid_op(op);
    return op >= 256 && op < 256 + GW_OP_COUNT && gw_dispatch[op - 256];
}

static int serve(void)
{
    /* static: a process serving several sessions (native/fuzz/) reuses them rather than losing them */
    static uint8_t *payload;
    static size_t cap;
    static gw_call c;
    uint64_t calls = 0;
    for (;;) {
        gw_hdr h;
        if (read_frame_bytes(&h, sizeof h)) {
            gw_wlog("client disconnected after %llu requests", (unsigned long long)calls);
            return 0;
        }
        if (h.op == GW_OP_BYE) {
            gw_wlog("client said goodbye after %llu requests", (unsigned long long)calls);
            return 0;
        }
        if (h.len > GW_MAX_PAYLOAD) {
            gw_wlog("closing session: frame of %u bytes is over the %u-byte limit", h.len, GW_MAX_PAYLOAD);
            send_error(GW_ERR_MALFORMED, "frame over the size limit");
            return 3;
        }
        if (!valid_op(h.op)) {
            gw_wlog("closing session: unknown or unsupported request op %u", h.op);
            send_error(GW_ERR_MALFORMED, "unknown request op");
            return 3;
        }
        if (h.len > cap) {
            uint8_t *b = realloc(payload, h.len);
            if (!b) {
                gw_wlog("closing session: out of memory for a %u-byte frame", h.len);
                return 4;
            }
            payload = b;
            cap = h.len;
        }
        if (read_frame_bytes(payload, h.len)) {
            gw_wlog("closing session: connection lost inside a %u-byte frame (truncated frame)", h.len);
            return 3;
        }
        calls++;
        c.h = h;
        c.p = payload;
        c.len = h.len;
        c.pos = 0;
        c.bad = 0;
        c.err = CUDA_SUCCESS;
        c.replied = 0;
        execute(&c);
        for (size_t i = 0; i < c.nallocs; i++)
            free(c.allocs[i]);
        c.nallocs = 0;
        if (c.bad) {
            gw_wlog("closing session: malformed request: %s", c.why);
            send_error(GW_ERR_MALFORMED, c.why);
            return 3;
        }
        if (!c.replied)
            gw_reply_result(&c, CUDA_ERROR_UNKNOWN);
        int32_t res;
        memcpy(&res, c.rbuf + sizeof(gw_hdr), 4);
        if (h.flags & GW_F_NOREPLY) {
            if (res != CUDA_SUCCESS && !gw_idmap_get(&deferred, h.tid)) {
                gw_idmap_put(&deferred, h.tid, (void *)(intptr_t)res);
                gw_wlog("%s failed with %d; reported at the client thread's next synchronization", gw_op_name(h.op),
                        res);
            }
            continue;
        }
        if (h.flags & GW_F_COLLECT) {
            int32_t earlier = (int32_t)(intptr_t)gw_idmap_del(&deferred, h.tid);
            if (earlier != CUDA_SUCCESS) {
                res = earlier;
                memcpy(c.rbuf + sizeof(gw_hdr), &res, 4);
                c.rlen = sizeof(gw_hdr) + 4; /* outputs of a call that is reported failed are dropped */
            }
        }
        gw_hdr rh = {.len = (uint32_t)(c.rlen - sizeof(gw_hdr)), .op = GW_OP_REPLY, .tid = h.tid, .seq = h.seq};
        memcpy(c.rbuf, &rh, sizeof rh);
        if (write_all(c.rbuf, c.rlen)) {
            gw_wlog("client disconnected while receiving a reply");
            return 0;
        }
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
                    "                      [--mem-cap BYTES]\n"
                    "       gpuwire-worker --probe --driver PATH\n");
}

int main(int argc, char **argv)
{
    const char *drv = NULL, *client = "";
    long digest = -1;
    unsigned long long mem_cap = 0;
    int do_probe = 0;
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
        else {
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
    signal(SIGPIPE, SIG_IGN);
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
    gw_hdr h = {.len = sizeof ok, .op = GW_OP_HELLO_OK};
    uint8_t buf[sizeof h + sizeof ok];
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, &ok, sizeof ok);
    if (write_all(buf, sizeof buf)) {
        gw_wlog("client went away before the handshake finished");
        return 0;
    }
    gw_wlog("serving %s with %s (driver %d, %u device(s))", client, ok.driver_desc, ok.driver_version,
            ok.device_count);
    int rc = gw_worker_serve(fd);
    fflush(stderr);
    _exit(rc); /* process exit releases every context, allocation and module the client held */
}
