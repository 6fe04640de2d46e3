/* Stream fences: a stream synchronize that has nothing to report and nothing
 * to deliver is posted instead of waited for.
 *
 * It has nothing to report when (1) its stream holds no work that can fail
 * later on the GPU or write host memory: kernels, graph launches, copies
 * delivered into host memory, host functions, waits on other streams (the
 * generated stubs of @fails_later calls and the hand-written launch, delivery
 * and host-function paths name their stream here: gw_fence_unsafe), or all
 * such work was seen done by a waited synchronize of that stream or of the
 * context; and (2) the calling thread posted nothing since its last waited
 * call that could have failed on the server (a posted call's failure is kept
 * for the thread's next waited call, which a posted synchronize is not): only
 * calls the property table calls benign (gw_op_benign: host-to-device copies
 * and memsets the client checked against device memory it knows, the content
 * cache's and mapped memory's data).
 *
 * It is still sent, posted: the worker runs it in order, so what this thread
 * sends afterwards starts after the stream's work, as natively after the call
 * returned.
 *
 * Streams are keyed by handle; the legacy default stream and each thread's
 * per-thread default stream have keys of their own. The legacy stream waits
 * for (and is waited for by) every blocking stream, and the client does not
 * know which streams are blocking: a blocking stream's synchronize also needs
 * the legacy stream idle, and the legacy stream's needs every stream idle.
 *
 * Posting is off while mapped host memory exists (a memset into it writes
 * host memory: the pages are refetched only after a round trip) and while a
 * stream capture is under way (a synchronize then must fail as natively).
 *
 * Several servers (wire/servers.h): each server's connection keeps its own
 * posted failures for the thread's next waited call there, so the thread's
 * "may have failed" is one bit per server; each stream record belongs to one
 * server (client-named stream ids carry it; the legacy and per-thread
 * streams of each server have keys of their own), and a waited context
 * synchronize confirms its own server's streams only. */
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../generated/wire_props.h"
#include "../wire/servers.h"
#include "../wire/wire_api.h"
#include "state.h"

#define SLOTS 512 /* streams tracked at once (idle ones give way) */
#define KEY_LEGACY 1ull                /* | the server's index << GW_ROUTE_SHIFT */
#define KEY_PER_THREAD (1ull << 63) /* | the server's index << GW_ROUTE_SHIFT | the thread's id */

typedef struct {
    uint64_t key;
    uint64_t unsafe;    /* sequence number of its last unsafe request */
    uint64_t confirmed; /* everything before this number is known done */
    int server;         /* whose stream it is */
} fence;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static fence table[SLOTS];
static uint64_t seq = 1;
static uint64_t confirmed_all[GW_SERVERS_MAX]; /* a waited context synchronize, per server */
static int overflow;           /* a stream the table had no room for: every synchronize waits */

static __thread struct {
    unsigned op;
    uint64_t stream;
    int set;
} named; /* the stream the calling thread's next request of `op` works on */
/* bit k: a call posted to server k since the thread's last waited call there may have failed */
static __thread unsigned may_fail;

static int is_legacy(uint64_t key) { return (key & ~GW_ROUTE_MASK) == KEY_LEGACY; }

static uint64_t key_of(unsigned op, uint64_t stream, int server)
{
    uint64_t on = (uint64_t)server << GW_ROUTE_SHIFT;
    if (stream == (uint64_t)(uintptr_t)CU_STREAM_PER_THREAD || (stream == 0 && gw_op_per_thread(op)))
        return KEY_PER_THREAD | on | (uint64_t)syscall(SYS_gettid);
    if (stream == 0 || stream == (uint64_t)(uintptr_t)CU_STREAM_LEGACY)
        return KEY_LEGACY | on;
    return stream;
}

/* The server a synchronize or a copy of stream goes to: a later server's
 * stream names it; a default stream is the calling thread's route's. */
static int server_of(uint64_t stream)
{
    if (gw_servers_n <= 1)
        return 0;
    int k = gw_handle_server(stream);
    return k >= 0 && k < GW_SERVERS_MAX ? k : gw_route_now();
}

static int idle_locked(const fence *f)
{
    uint64_t all = confirmed_all[f->server];
    uint64_t c = f->confirmed > all ? f->confirmed : all;
    return f->unsafe < c || !f->unsafe;
}

/* The slot of key (made if absent). A full table gives up the first idle
 * stream's slot on key's path: an idle stream's record says no more than no
 * record does (a destroyed stream's stays until then). NULL when every slot
 * holds work not yet seen done. Lock held. */
static fence *slot_of(uint64_t key, int server)
{
    unsigned h = (unsigned)((key * 0x9E3779B97F4A7C15ull) >> 55) % SLOTS;
    fence *idle = NULL;
    for (unsigned i = 0; i < SLOTS; i++) {
        fence *f = &table[(h + i) % SLOTS];
        if (f->key == key)
            return f;
        if (!f->key) {
            *f = (fence){.key = key, .server = server};
            return f;
        }
        if (!idle && !is_legacy(f->key) && idle_locked(f))
            idle = f;
    }
    if (idle)
        *idle = (fence){.key = key, .server = server};
    return idle;
}

/* The wire layer's observer: every posted request, in queue order, with the
 * connection's lock held (so sequence numbers follow the queue's order), on
 * the posting thread. */
static void on_posted(unsigned op, int server)
{
    if (server < 0 || server >= GW_SERVERS_MAX)
        server = 0;
    if (!gw_op_benign(op))
        may_fail |= 1u << server;
    if (!named.set || named.op != op)
        return;
    named.set = 0;
    pthread_mutex_lock(&lock);
    uint64_t n = seq++;
    fence *f = slot_of(key_of(op, named.stream, server), server);
    if (f)
        f->unsafe = n;
    else
        overflow = 1;
    pthread_mutex_unlock(&lock);
}

static void after_fork_child(void);
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void install(void)
{
    gw_set_post_observer(on_posted);
    pthread_atfork(NULL, NULL, after_fork_child);
}

/* From the first request on: a call posted before any synchronize must still
 * make the next one wait if it may have failed. */
__attribute__((constructor)) static void install_at_load(void) { pthread_once(&once, install); }

void gw_fence_unsafe(unsigned op, uint64_t stream)
{
    pthread_once(&once, install);
    named.op = op;
    named.stream = stream == GW_FENCE_DEFAULT_STREAM ? 0 : stream;
    named.set = 1;
}

uint64_t gw_fence_mark(void)
{
    pthread_once(&once, install);
    pthread_mutex_lock(&lock);
    uint64_t n = seq++;
    pthread_mutex_unlock(&lock);
    return n;
}

void gw_fence_collected(void) { gw_fence_collected_on(gw_route_now()); }

void gw_fence_collected_on(int server)
{
    if (server >= 0 && server < GW_SERVERS_MAX)
        may_fail &= ~(1u << server);
}

int gw_fence_server_of(uint64_t stream) { return server_of(stream); }

void gw_fence_confirmed(unsigned op, uint64_t stream, uint64_t mark)
{
    int server = server_of(stream);
    pthread_mutex_lock(&lock);
    fence *f = slot_of(key_of(op, stream, server), server);
    if (f && f->confirmed < mark)
        f->confirmed = mark;
    pthread_mutex_unlock(&lock);
}

void gw_fence_confirmed_all(uint64_t mark)
{
    int server = gw_route_now();
    pthread_mutex_lock(&lock);
    if (confirmed_all[server] < mark)
        confirmed_all[server] = mark;
    pthread_mutex_unlock(&lock);
}

int gw_fence_sync_may_post(unsigned op, uint64_t stream)
{
    int server = server_of(stream);
    if ((may_fail >> server & 1u) || gw_captures_active() || gw_mapped_live())
        return 0;
    pthread_once(&once, install);
    uint64_t key = key_of(op, stream, server);
    pthread_mutex_lock(&lock);
    int ok = !overflow;
    if (ok && is_legacy(key)) { /* every stream of its server idle */
        for (unsigned i = 0; ok && i < SLOTS; i++)
            ok = !table[i].key || table[i].server != server || idle_locked(&table[i]);
    } else if (ok) {
        fence *f = slot_of(key, server), *legacy = slot_of(KEY_LEGACY | (uint64_t)server << GW_ROUTE_SHIFT, server);
        ok = f && legacy && idle_locked(f) && idle_locked(legacy);
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

/* A forked child starts with no work anywhere (its session is new). */
static void after_fork_child(void)
{
    pthread_mutex_init(&lock, NULL);
    for (unsigned i = 0; i < SLOTS; i++)
        table[i] = (fence){0};
    for (int k = 0; k < GW_SERVERS_MAX; k++)
        confirmed_all[k] = 0;
    overflow = 0;
    named.set = 0;
    may_fail = 0;
}
