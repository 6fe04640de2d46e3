/* Host functions in stream order (docs/host-functions.md). The application's
 * function and data stay here under a callback id; the worker's driver calls
 * a trampoline that pushes HOST_CALL naming the id when the stream reaches
 * it, and waits. The reply reader only queues the call; the callback thread
 * runs it (a function may take long, and must never stall the reader), then
 * answers HOST_RETURNED, posted and sent at once: the stream goes on.
 *
 * The callback thread also reads pushed frames itself while calls may come
 * and no other thread reads (wire/pushed_pump.c), so a program that waits on
 * a condition its own callback sets does not wait for the drainer.
 *
 * With several servers (docs/multi-gpu.md) each call remembers the server
 * whose worker sent it, and its answer goes back there; the other servers'
 * links are read at once by their own drainer (wire/servers.c). One callback
 * thread serves them all, in the order the calls came. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../common/idmap.h"
#include "../wire/pushed_pump.h"
#include "host_calls.h"

typedef struct callback {
    uint64_t id, key;
    int kind;
    CUhostFn fn;
    CUstreamCallback cb;
    void *data;
    CUstream stream;
    unsigned once_pending; /* runs of a once-id still to come */
    int kept;              /* a graph may run it again: never forgotten */
} callback;

typedef struct host_call {
    struct host_call *next;
    uint64_t call, id;
    int32_t status;
    int server; /* whose worker waits for the answer (0 with one server) */
} host_call;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queued_cv = PTHREAD_COND_INITIALIZER;
static gw_idmap by_id;       /* id -> callback, under lock */
static gw_idmap by_key;      /* hash of kind, function, data, stream -> callback (one per hash), under lock */
static uint64_t last_id;     /* under lock */
static unsigned long expected; /* once-runs to come, plus 1 while any id is kept: the pump runs while > 0 */
static unsigned long kept_ids; /* ids a graph holds (under lock) */
static host_call *queue, **queue_end = &queue; /* under lock */
static int runner_started;   /* under lock */
static int wake_fd = -1;     /* an eventfd: a call was queued (the runner may be in poll) */

#define PUMP_MS 1000 /* the pump's longest sleep; a wake or a frame ends it at once */

int gw_in_host_callback(void) { return gw_pushed_in_host_code(); }

static uint64_t key_of(int kind, CUhostFn fn, CUstreamCallback cb, void *data, CUstream stream)
{
    uint64_t parts[5] = {(uint64_t)kind, (uint64_t)(uintptr_t)fn, (uint64_t)(uintptr_t)cb,
                         (uint64_t)(uintptr_t)data, (uint64_t)(uintptr_t)stream};
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 5; i++)
        h = (h ^ parts[i]) * 1099511628211ull ^ (h >> 29);
    return h ? h : 1; /* 0 is the map's empty key */
}

static void *runner(void *arg);

/* The callback thread, started at the first id: synchronous faults stay
 * deliverable there (mapped memory's pages fault on first touch). */
static void start_runner_locked(void)
{
    if (runner_started)
        return;
    if (wake_fd < 0)
        wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    runner_started = pthread_create(&t, &a, runner, NULL) == 0;
    pthread_attr_destroy(&a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!runner_started)
        gw_log("cannot start the host-function thread: host functions will not run");
}

uint64_t gw_host_callback_id(int kind, CUhostFn fn, CUstreamCallback cb, void *data, CUstream stream, int once)
{
    uint64_t key = key_of(kind, fn, cb, data, stream);
    pthread_mutex_lock(&lock);
    callback *e = gw_idmap_get(&by_key, key);
    if (!e || e->kind != kind || e->fn != fn || e->cb != cb || e->data != data || e->stream != stream) {
        e = calloc(1, sizeof *e);
        if (e) {
            *e = (callback){.id = ++last_id, .key = key, .kind = kind, .fn = fn, .cb = cb, .data = data,
                            .stream = stream};
            if (gw_idmap_put(&by_id, e->id, e)) {
                free(e);
                e = NULL;
            } else if (!gw_idmap_get(&by_key, key) && gw_idmap_put(&by_key, key, e)) {
                e->key = 0; /* not findable by its content: a later identical call gets another id */
            }
        }
    }
    uint64_t id = 0;
    if (e) {
        id = e->id;
        unsigned long before = expected;
        if (once) {
            e->once_pending++;
            expected++;
        } else if (!e->kept) {
            e->kept = 1;
            if (!kept_ids++)
                expected++;
        }
        start_runner_locked();
        if (!before && expected)
            pthread_cond_signal(&queued_cv); /* a runner idle since the last call pumps again */
    }
    pthread_mutex_unlock(&lock);
    return id;
}

/* One once-run of e is over (run or never sent): forgotten when nothing else holds it. */
static void once_done_locked(callback *e)
{
    if (!e->once_pending)
        return;
    e->once_pending--;
    expected--;
    if (e->once_pending || e->kept)
        return;
    gw_idmap_del(&by_id, e->id);
    if (e->key && gw_idmap_get(&by_key, e->key) == e)
        gw_idmap_del(&by_key, e->key);
    free(e);
}

void gw_host_callback_unused(uint64_t id)
{
    pthread_mutex_lock(&lock);
    callback *e = gw_idmap_get(&by_id, id);
    if (e)
        once_done_locked(e);
    pthread_mutex_unlock(&lock);
}

int gw_host_callback_of(uint64_t id, CUhostFn *fn, void **data)
{
    pthread_mutex_lock(&lock);
    callback *e = id ? gw_idmap_get(&by_id, id) : NULL;
    int ok = e && e->kind == GW_HOST_FN;
    if (ok) {
        *fn = e->fn;
        *data = e->data;
    }
    pthread_mutex_unlock(&lock);
    return ok ? 0 : -1;
}

/* HOST_CALL, on the reader's thread: queued for the callback thread, never run here. */
static int on_host_call(uint32_t len)
{
    uint8_t b[GW_HOST_CALL_REQ_SIZE];
    gw_host_call_req q = {0};
    if (gw_pushed_read(b, sizeof b) || gw_pushed_discard(len - sizeof b))
        return -1;
    gw_host_call_req_get(b, sizeof b, &q);
    host_call *c = malloc(sizeof *c);
    if (!c) {
        /* the worker's stream waits for an answer that cannot be queued: the session cannot go on */
        gw_log("out of memory for a host function call: the session ends");
        return -1;
    }
    *c = (host_call){.call = q.call, .id = q.callback, .status = q.status, .server = gw_pushed_server()};
    pthread_mutex_lock(&lock);
    *queue_end = c;
    queue_end = &c->next;
    start_runner_locked();
    pthread_cond_signal(&queued_cv);
    int fd = wake_fd;
    pthread_mutex_unlock(&lock);
    if (fd >= 0) {
        uint64_t one = 1;
        (void)!write(fd, &one, sizeof one);
    }
    return 0;
}

/* The stream on the asking server goes on: sent now, not batched (a later
 * server's posts are written at once; server 0's batch is flushed, with
 * mapped memory's writes, which leave first: its hook). */
static void answer(uint64_t call, int server)
{
    gw_req *q = gw_req_begin_quiet(GW_OP_HOST_RETURNED);
    gw_put_fields(q, gw_host_returned_req, {.call = call});
    gw_req_route(q, server); /* not the callback thread's context's server */
    if (gw_req_post(q) == CUDA_SUCCESS)
        gw_flush();
}

static void run_one(host_call *c)
{
    pthread_mutex_lock(&lock);
    callback *e = gw_idmap_get(&by_id, c->id);
    callback copy = e ? *e : (callback){0};
    pthread_mutex_unlock(&lock);
    if (!e) {
        /* an id this process never gave (a worker bug, or a forked child's
         * stale call): nothing runs, but the stream must not wait forever */
        gw_log("host function call %llu names unknown callback %llu: nothing run",
               (unsigned long long)c->call, (unsigned long long)c->id);
    } else {
        gw_pushed_host_code(1); /* the device's writes before this point become visible */
        if (copy.kind == GW_HOST_STREAM_CALLBACK)
            copy.cb(copy.stream, (CUresult)c->status, copy.data);
        else
            copy.fn(copy.data);
        gw_pushed_host_code(0);
    }
    answer(c->call, c->server);
    pthread_mutex_lock(&lock);
    e = gw_idmap_get(&by_id, c->id);
    if (e && e->once_pending)
        once_done_locked(e);
    pthread_mutex_unlock(&lock);
}

static void *runner(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!queue) {
            if (expected && wake_fd >= 0) {
                int fd = wake_fd;
                pthread_mutex_unlock(&lock);
                int lost = gw_pushed_pump(fd, PUMP_MS);
                /* emptied after the wait, before the queue is looked at again: a
                 * wake from now on ends the next wait at once, and one before
                 * came with a call already queued */
                uint64_t drained;
                (void)!read(fd, &drained, sizeof drained);
                pthread_mutex_lock(&lock);
                if (lost && !queue)
                    pthread_cond_wait(&queued_cv, &lock); /* no more frames: only a fork's reset wakes it */
                continue;
            }
            pthread_cond_wait(&queued_cv, &lock);
        }
        host_call *c = queue;
        queue = c->next;
        if (!queue)
            queue_end = &queue;
        pthread_mutex_unlock(&lock);
        run_one(c);
        free(c);
    }
    return NULL;
}

/* A forked child has its own session and no callback thread: the parent's
 * calls and ids are not its own (its worker never heard of them). */
static void forget_in_child(void)
{
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&queued_cv, NULL);
    gw_idmap_clear(&by_id, free);
    gw_idmap_clear(&by_key, NULL);
    while (queue) {
        host_call *c = queue;
        queue = c->next;
        free(c);
    }
    queue_end = &queue;
    expected = 0;
    kept_ids = 0;
    runner_started = 0;
    if (wake_fd >= 0)
        close(wake_fd); /* the parent's counter: shared, so the child makes its own */
    wake_fd = -1;
}

__attribute__((constructor)) static void host_calls_init(void)
{
    gw_on_pushed(GW_OP_HOST_CALL, on_host_call);
    pthread_atfork(NULL, NULL, forget_in_child);
}
