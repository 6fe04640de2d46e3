/* Host functions in stream order (docs/host-functions.md). The application's
 * function and data stay in the client, under a callback id the client
 * chose; the worker hands its driver a trampoline of its own with that id as
 * the user data (cuLaunchHostFunc, cuStreamAddCallback, host nodes of graphs,
 * a host function captured into a graph). When the stream reaches it, the
 * trampoline pushes HOST_CALL to the client and waits until the client
 * answers HOST_RETURNED (taken by the reader: gw_host_returned), so the
 * stream's later work starts only after the function returned, as on a GPU.
 * A session that ends (the client gone, its writes stalled) lets every
 * waiting trampoline go: no driver thread waits forever.
 *
 * Formats: HOST_FUNC, GRAPH_ADD_HOST_NODE, HOST_NODE_SET_PARAMS,
 * EXEC_HOST_NODE_SET_PARAMS, HOST_NODE_GET_PARAMS; ops HOST_CALL and
 * HOST_RETURNED (codegen/protocol.txt). Callback ids are opaque here: the
 * worker only gives them back (never 0, which would mean "none"). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "handlers.h"

typedef struct waiting {
    struct waiting *next;
    uint64_t call;
    int returned;
} waiting;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t returned_cv = PTHREAD_COND_INITIALIZER;
static waiting *waiting_list; /* under lock: calls pushed and not yet answered */
static _Atomic uint64_t last_call;
static atomic_int told_over; /* the log says once that calls went unanswered */

#define CHECK_MS 200 /* how often a waiting trampoline looks whether the session is over */

/* The client's connection is gone or shut (it hung up, or gw_io_shutdown after a stall). */
static int session_over(void)
{
    int fd = gw_io_client();
    if (fd < 0)
        return 1;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static struct timespec in_ms(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    return ts;
}

/* Runs on whichever thread the driver calls host functions on (the stand-in:
 * the thread that issued the work). CUDA must not be called here. */
static void run_in_client(uint64_t callback, CUresult status)
{
    waiting w = {.call = atomic_fetch_add(&last_call, 1) + 1};
    pthread_mutex_lock(&lock);
    w.next = waiting_list;
    waiting_list = &w;
    pthread_mutex_unlock(&lock);
    /* bytes of earlier device-to-host copies reach the client before the function may read them */
    gw_deliveries_flush_outbox();
    uint8_t frame[GW_HOST_CALL_REQ_SIZE];
    size_t n = gw_host_call_req_put(frame, &(gw_host_call_req){.call = w.call, .callback = callback,
                                                                 .status = (int32_t)status});
    gw_push(GW_OP_HOST_CALL, frame, n);
    pthread_mutex_lock(&lock);
    while (!w.returned) {
        if (session_over()) { /* checked first: the host functions queued behind go at once */
            if (!atomic_exchange(&told_over, 1))
                gw_wlog("host function call %llu (callback %llu) not answered: the session is over",
                        (unsigned long long)w.call, (unsigned long long)callback);
            break;
        }
        struct timespec until = in_ms(CHECK_MS);
        pthread_cond_timedwait(&returned_cv, &lock, &until);
    }
    for (waiting **pp = &waiting_list; *pp; pp = &(*pp)->next)
        if (*pp == &w) {
            *pp = w.next;
            break;
        }
    pthread_mutex_unlock(&lock);
}

static void CUDA_CB host_fn_trampoline(void *callback) { run_in_client((uint64_t)(uintptr_t)callback, CUDA_SUCCESS); }

static void CUDA_CB stream_cb_trampoline(CUstream s, CUresult status, void *callback)
{
    (void)s;
    run_in_client((uint64_t)(uintptr_t)callback, status);
}

int gw_host_returned(const uint8_t *payload, uint32_t len, char *why, size_t whycap)
{
    gw_host_returned_req q = {0};
    if (len != GW_HOST_RETURNED_REQ_SIZE || !gw_host_returned_req_get(payload, len, &q)) {
        snprintf(why, whycap, "HOST_RETURNED of %u bytes (%u expected)", len, GW_HOST_RETURNED_REQ_SIZE);
        return -1;
    }
    pthread_mutex_lock(&lock);
    waiting *w = waiting_list;
    while (w && w->call != q.call)
        w = w->next;
    if (w) {
        w->returned = 1;
        pthread_cond_broadcast(&returned_cv);
    }
    pthread_mutex_unlock(&lock);
    if (!w)
        snprintf(why, whycap, "HOST_RETURNED for call %llu, which no host function waits for",
                 (unsigned long long)q.call);
    return w ? 0 : -1;
}

static void *as_user_data(gw_call *c, uint64_t callback)
{
    if (!c->bad && !callback)
        gw_call_fail(c, "%s: callback id 0", gw_op_name(c->h.op));
    return (void *)(uintptr_t)callback;
}

/* HOST_FUNC: cuLaunchHostFunc(_ptsz), or cuStreamAddCallback(_ptsz) (stream_callback) */
static void host_func(gw_call *c, int stream_callback)
{
    gw_host_func_req q = {0};
    CUstream s = NULL;
    if (gw_in_part(c, gw_host_func_req, &q))
        s = (CUstream)gw_handle_lookup(c, GW_HT_CUstream, q.stream);
    void *data = as_user_data(c, q.callback);
    if (!gw_args_ok(c))
        return;
    void *fn = gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    gw_deliveries_before_host_call();
    CUresult r;
    if (stream_callback)
        r = ((CUresult(*)(CUstream, CUstreamCallback, void *, unsigned))fn)(s, stream_cb_trampoline, data, q.flags);
    else if (q.flags)
        r = CUDA_ERROR_INVALID_VALUE;
    else
        r = ((CUresult(*)(CUstream, CUhostFn, void *))fn)(s, host_fn_trampoline, data);
    gw_reply_result(c, r);
}

#define DEPENDENTS_MAX 4096    /* dependents looked at per dependency */
#define DEPENDENTS_TOTAL 65536 /* and in all: a hostile graph cannot make the list huge */

/* A delivered memcpy node (graph_copies.c) has a host node of the worker's
 * own after it, which sends the copied bytes to the client; a host node of
 * the program's that depends on the copy must also come after that one, or
 * the driver may run it first and the function read the client's memory
 * before the bytes land. So the dependencies gain every host node of a
 * dependency that is not a trampoline (only the worker makes those). The
 * list, in call scratch; deps as they are where the driver cannot tell. */
static CUgraphNode *after_deliveries(gw_call *c, CUgraphNode *deps, uint32_t *m)
{
    typedef CUresult (*dependents_fn)(CUgraphNode, CUgraphNode *, size_t *);
    typedef CUresult (*type_fn)(CUgraphNode, CUgraphNodeType *);
    typedef CUresult (*params_fn)(CUgraphNode, CUDA_HOST_NODE_PARAMS *);
    dependents_fn dependents = (dependents_fn)gw_driver_sym(GW_OP_cuGraphNodeGetDependentNodes);
    type_fn type_of = (type_fn)gw_driver_sym(GW_OP_cuGraphNodeGetType);
    params_fn params_of = (params_fn)gw_driver_sym(GW_OP_cuGraphHostNodeGetParams);
    if (!dependents || !type_of || !params_of || !*m)
        return deps;
    size_t total = 0;
    for (uint32_t i = 0; i < *m; i++) {
        size_t n = 0;
        if (dependents(deps[i], NULL, &n) == CUDA_SUCCESS && n <= DEPENDENTS_MAX)
            total += n;
    }
    if (!total || total > DEPENDENTS_TOTAL)
        return deps;
    CUgraphNode *all = gw_scratch(c, (*m + total) * sizeof *all);
    CUgraphNode *each = gw_scratch(c, DEPENDENTS_MAX * sizeof *each);
    if (!all || !each)
        return deps;
    memcpy(all, deps, *m * sizeof *all);
    size_t k = *m;
    for (uint32_t i = 0; i < *m; i++) {
        size_t n = 0;
        if (dependents(deps[i], NULL, &n) != CUDA_SUCCESS || n > DEPENDENTS_MAX || k + n > *m + total ||
            dependents(deps[i], each, &n) != CUDA_SUCCESS)
            continue;
        for (size_t j = 0; j < n; j++) {
            CUgraphNodeType t;
            CUDA_HOST_NODE_PARAMS p = {0};
            if (type_of(each[j], &t) == CUDA_SUCCESS && t == CU_GRAPH_NODE_TYPE_HOST &&
                params_of(each[j], &p) == CUDA_SUCCESS && p.fn != host_fn_trampoline)
                all[k++] = each[j];
        }
    }
    *m = (uint32_t)k;
    return all;
}

/* GRAPH_ADD_HOST_NODE */
void gw_h_cuGraphAddHostNode(gw_call *c)
{
    gw_graph_add_host_node_req q = {0};
    CUgraph g = NULL;
    if (gw_in_part(c, gw_graph_add_host_node_req, &q))
        g = (CUgraph)gw_handle_lookup(c, GW_HT_CUgraph, q.graph);
    uint32_t m;
    CUgraphNode *deps = gw_in_dependencies(c, &m, "dependencies");
    gw_graph_add_host_node_req_after_deps after = {0};
    gw_in_part(c, gw_graph_add_host_node_req_after_deps, &after);
    CUDA_HOST_NODE_PARAMS p = {host_fn_trampoline, as_user_data(c, after.callback)};
    if (!gw_args_ok(c))
        return;
    void *fn = gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    gw_deliveries_before_host_call(); /* a graph's host node may run in stream order after an uncaptured delivery */
    deps = after_deliveries(c, deps, &m);
    CUgraphNode node = NULL;
    CUresult r = ((CUresult(*)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t, const CUDA_HOST_NODE_PARAMS *))fn)(
        &node, g, deps, m, &p);
    if (r == CUDA_SUCCESS)
        gw_reply_first(c, gw_graph_add_host_node_rep, {.result = r, .node = gw_handle_id(GW_HT_CUgraphNode, node)});
    else
        gw_reply_result(c, r);
}

/* HOST_NODE_SET_PARAMS */
void gw_h_cuGraphHostNodeSetParams(gw_call *c)
{
    gw_host_node_set_params_req q = {0};
    CUgraphNode node = NULL;
    if (gw_in_part(c, gw_host_node_set_params_req, &q))
        node = (CUgraphNode)gw_handle_lookup(c, GW_HT_CUgraphNode, q.node);
    CUDA_HOST_NODE_PARAMS p = {host_fn_trampoline, as_user_data(c, q.callback)};
    if (!gw_args_ok(c))
        return;
    void *fn = gw_driver_fn(c, c->h.op);
    if (fn)
        gw_reply_result(c, ((CUresult(*)(CUgraphNode, const CUDA_HOST_NODE_PARAMS *))fn)(node, &p));
}

/* EXEC_HOST_NODE_SET_PARAMS */
void gw_h_cuGraphExecHostNodeSetParams(gw_call *c)
{
    gw_exec_host_node_set_params_req q = {0};
    CUgraphExec e = NULL;
    CUgraphNode node = NULL;
    if (gw_in_part(c, gw_exec_host_node_set_params_req, &q)) {
        e = (CUgraphExec)gw_handle_lookup(c, GW_HT_CUgraphExec, q.exec);
        node = (CUgraphNode)gw_handle_lookup(c, GW_HT_CUgraphNode, q.node);
    }
    CUDA_HOST_NODE_PARAMS p = {host_fn_trampoline, as_user_data(c, q.callback)};
    if (!gw_args_ok(c))
        return;
    void *fn = gw_driver_fn(c, c->h.op);
    if (fn)
        gw_reply_result(c, ((CUresult(*)(CUgraphExec, CUgraphNode, const CUDA_HOST_NODE_PARAMS *))fn)(e, node, &p));
}

/* HOST_NODE_GET_PARAMS: a node of the worker's own (a delivered copy's) answers callback 0 */
void gw_h_cuGraphHostNodeGetParams(gw_call *c)
{
    gw_host_node_get_params_req q = {0};
    CUgraphNode node = NULL;
    if (gw_in_part(c, gw_host_node_get_params_req, &q))
        node = (CUgraphNode)gw_handle_lookup(c, GW_HT_CUgraphNode, q.node);
    if (!gw_args_ok(c))
        return;
    void *fn = gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    CUDA_HOST_NODE_PARAMS p = {0};
    CUresult r = ((CUresult(*)(CUgraphNode, CUDA_HOST_NODE_PARAMS *))fn)(node, &p);
    uint64_t callback = p.fn == host_fn_trampoline ? (uint64_t)(uintptr_t)p.userData : 0;
    if (r == CUDA_SUCCESS)
        gw_reply_first(c, gw_host_node_get_params_rep, {.result = r, .callback = callback});
    else
        gw_reply_result(c, r);
}

void gw_h_cuLaunchHostFunc(gw_call *c) { host_func(c, 0); }
void gw_h_cuLaunchHostFunc_ptsz(gw_call *c) { host_func(c, 0); }
void gw_h_cuStreamAddCallback(gw_call *c) { host_func(c, 1); }
void gw_h_cuStreamAddCallback_ptsz(gw_call *c) { host_func(c, 1); }
