/* Contexts. Each client thread's context stack is mirrored here, so
 * cuCtxGetCurrent (which cudart asks on nearly every runtime call) needs no
 * round trip; every change is still forwarded, so the worker thread that
 * serves this client thread has the same current context. */
#include <pthread.h>

#include "state.h"

#define MAX_DEPTH 64
#define MAX_DEVS 64

static __thread CUcontext stack[MAX_DEPTH];
static __thread int depth;

/* A forked child's new session knows no thread's current context, though
 * the forking thread's mirror still names one: a set of the context the
 * mirror calls current is skipped only when it reached this process's
 * session (fork_gen unchanged since). */
static _Atomic unsigned fork_gen;
static __thread unsigned synced_gen;

static void after_fork_child(void) { fork_gen++; }

__attribute__((constructor)) static void contexts_init(void) { pthread_atfork(NULL, NULL, after_fork_child); }

/* Which device each context belongs to, learnt when it is made. */
#define MAX_CTXS 256
static struct { CUcontext ctx; CUdevice dev; } ctx_devs[MAX_CTXS];
static int nctx_devs;
static pthread_mutex_t ctx_devs_lock = PTHREAD_MUTEX_INITIALIZER;

static _Atomic unsigned ctx_devs_gen; /* bumped on every change: per-thread answers below */

static void remember_device(CUcontext ctx, CUdevice dev)
{
    pthread_mutex_lock(&ctx_devs_lock);
    ctx_devs_gen++;
    int i = 0;
    while (i < nctx_devs && ctx_devs[i].ctx != ctx)
        i++;
    if (i < MAX_CTXS) {
        ctx_devs[i].ctx = ctx;
        ctx_devs[i].dev = dev;
        if (i == nctx_devs)
            nctx_devs++;
    }
    pthread_mutex_unlock(&ctx_devs_lock);
}

/* The device of ctx, -1 if unknown. Libraries ask around every launch, so
 * each thread keeps its last answer while the table has not changed. */
static int known_device(CUcontext c)
{
    static __thread CUcontext last_ctx;
    static __thread int last_dev = -1;
    static __thread unsigned last_gen;
    unsigned gen = ctx_devs_gen; /* _Atomic: a seq-cst load (clang takes no __atomic builtin on an _Atomic object) */
    if (c && c == last_ctx && gen == last_gen)
        return last_dev;
    int dev = -1;
    pthread_mutex_lock(&ctx_devs_lock);
    gen = ctx_devs_gen;
    for (int i = 0; c && i < nctx_devs; i++)
        if (ctx_devs[i].ctx == c)
            dev = ctx_devs[i].dev;
    pthread_mutex_unlock(&ctx_devs_lock);
    last_ctx = c;
    last_dev = dev;
    last_gen = gen;
    return dev;
}

int gw_current_device(void) { return known_device(depth ? stack[depth - 1] : NULL); }
int gw_context_device(CUcontext ctx) { return known_device(ctx); }

/* Several servers (wire/servers.h): a thread's requests go to its current
 * context's server (its handle says which), unless their arguments say. */
static int route_of_current(void)
{
    int k = depth ? gw_handle_server((uint64_t)(uintptr_t)stack[depth - 1]) : 0;
    return k > 0 ? k : 0;
}

__attribute__((constructor)) static void contexts_route_init(void) { gw_set_route_fn(route_of_current); }

static void pstate_forget(CUdevice dev);

/* A device's primary context, as the last retain answered, while the process
 * holds a reference to it (retains minus releases, since the last reset):
 * another retain then names the same context, so it is posted and answered
 * here (issue 20: cudart retains twice at start-up). */
static struct { CUcontext ctx; int refs; } held[64];
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;

static CUcontext held_primary(CUdevice dev)
{
    if (dev < 0 || dev >= 64)
        return NULL;
    pthread_mutex_lock(&held_lock);
    CUcontext c = held[dev].refs > 0 ? held[dev].ctx : NULL;
    pthread_mutex_unlock(&held_lock);
    return c;
}

static void held_change(CUdevice dev, CUcontext c, int delta, int reset)
{
    if (dev < 0 || dev >= 64)
        return;
    pthread_mutex_lock(&held_lock);
    if (reset) {
        held[dev].ctx = NULL;
        held[dev].refs = 0;
    } else {
        if (c)
            held[dev].ctx = c;
        held[dev].refs = held[dev].refs + delta > 0 ? held[dev].refs + delta : 0;
    }
    pthread_mutex_unlock(&held_lock);
}

CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    pstate_forget(dev);
    CUcontext known = held_primary(dev);
    if (known && pctx && gw_may_post()) {
        gw_stat_call(GW_OP_cuDevicePrimaryCtxRetain);
        gw_req *q = gw_req_begin_quiet(GW_OP_cuDevicePrimaryCtxRetain); /* as the generated call encodes it */
        gw_put_out(q, pctx, 1);
        gw_put_device(q, (int64_t)dev);
        CUresult rc = gw_req_post(q);
        if (rc != CUDA_SUCCESS)
            return rc;
        held_change(dev, known, 1, 0);
        *pctx = known;
        return CUDA_SUCCESS;
    }
    CUresult rc = gwf_cuDevicePrimaryCtxRetain(pctx, dev);
    if (rc == CUDA_SUCCESS) {
        remember_device(*pctx, dev);
        held_change(dev, *pctx, 1, 0);
    }
    return rc;
}

CUcontext gw_current_context(void) { return depth ? stack[depth - 1] : NULL; }

CUresult CUDAAPI cuCtxGetCurrent(CUcontext *pctx)
{
    gw_stat_call(GW_OP_cuCtxGetCurrent);
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    if (!gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    *pctx = depth ? stack[depth - 1] : NULL;
    return CUDA_SUCCESS;
}

/* A primary context the process holds cannot fail to become current but
 * through a fault the next synchronisation reports: posted. (Other contexts
 * may have been destroyed since the client saw them: their answer waits.) */
static CUresult set_current(CUcontext ctx)
{
    int dev = ctx ? known_device(ctx) : -1;
    if (dev < 0 || held_primary(dev) != ctx || !gw_may_post())
        return gwf_cuCtxSetCurrent(ctx);
    unsigned gen = fork_gen;
    gw_stat_call(GW_OP_cuCtxSetCurrent);
    if (depth && stack[depth - 1] == ctx && synced_gen == gen)
        return CUDA_SUCCESS; /* already current: natively nothing happens, so nothing is sent */
    gw_req *q = gw_req_begin_quiet(GW_OP_cuCtxSetCurrent); /* as the generated call encodes it */
    gw_put_handle(q, (uint64_t)(uintptr_t)ctx);
    CUresult rc = gw_req_post(q);
    if (rc == CUDA_SUCCESS)
        synced_gen = gen;
    return rc;
}

CUresult CUDAAPI cuCtxSetCurrent(CUcontext ctx)
{
    CUresult rc = set_current(ctx);
    if (rc == CUDA_SUCCESS) {
        if (!ctx)
            depth = depth ? depth - 1 : 0; /* NULL pops the current context */
        else if (depth)
            stack[depth - 1] = ctx;
        else
            stack[depth++] = ctx;
    }
    return rc;
}

CUresult CUDAAPI cuCtxPushCurrent_v2(CUcontext ctx)
{
    if (depth == MAX_DEPTH)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = gwf_cuCtxPushCurrent_v2(ctx);
    if (rc == CUDA_SUCCESS)
        stack[depth++] = ctx;
    return rc;
}

CUresult CUDAAPI cuCtxPopCurrent_v2(CUcontext *pctx)
{
    CUresult rc = gwf_cuCtxPopCurrent_v2(pctx);
    if (rc == CUDA_SUCCESS && depth)
        depth--;
    return rc;
}

/* The pre-4.0 entry points, still exported: the same mirror. */
#undef cuCtxPushCurrent
#undef cuCtxPopCurrent
#undef cuCtxDestroy
CUresult CUDAAPI cuCtxPushCurrent(CUcontext ctx);
CUresult CUDAAPI cuCtxPopCurrent(CUcontext *pctx);
CUresult CUDAAPI cuCtxDestroy(CUcontext ctx);

CUresult CUDAAPI cuCtxPushCurrent(CUcontext ctx)
{
    if (depth == MAX_DEPTH)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = gwf_cuCtxPushCurrent(ctx);
    if (rc == CUDA_SUCCESS)
        stack[depth++] = ctx;
    return rc;
}

CUresult CUDAAPI cuCtxPopCurrent(CUcontext *pctx)
{
    CUresult rc = gwf_cuCtxPopCurrent(pctx);
    if (rc == CUDA_SUCCESS && depth)
        depth--;
    return rc;
}

/* ---- creation: the client names the context (no handle comes back) but
 * waits for the verdict, as the new context becomes this thread's current one ---- */

#define MAX_AFFINITY GW_CTX_CREATE_REQ_AFFINITY_MAX /* the worker's bound; the driver knows one affinity type */

/* CTX_CREATE (codegen/protocol.txt): the affinity list only if the array is given */
static CUresult ctx_create(unsigned op, CUcontext *pctx, int has_params, const CUexecAffinityParam *aff, int n,
                           unsigned flags, CUdevice dev)
{
    if (!pctx || depth == MAX_DEPTH) {
        gw_stat_call(op);
        return CUDA_ERROR_INVALID_VALUE;
    }
    int nsent = aff && n > 0 ? n : 0;
    if ((unsigned)nsent > MAX_AFFINITY) {
        gw_stat_call(op);
        return CUDA_ERROR_INVALID_VALUE;
    }
    uint64_t id = gw_new_handle_id();
    gw_req *q = gw_req_begin(op);
    int64_t on = gw_req_on_device(q, dev); /* several servers: dev's server, dev's ordinal there */
    id = gw_handle_on(id, gw_device_server(dev, NULL)); /* named on that server */
    gw_put_fields(q, gw_ctx_create_req,
                  {.id = id, .flags = flags, .device = (uint64_t)(gw_servers_n > 1 ? on : (int64_t)dev),
                   .has_params = has_params != 0,
                   .has_affinity = aff != NULL, .n = n});
    for (int i = 0; i < nsent; i++)
        gw_put_fields(q, gw_ctx_create_req_affinity_item, {.param = aff[i]});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    gw_rep_end(r);
    if (rc == CUDA_SUCCESS) {
        *pctx = (CUcontext)(uintptr_t)id;
        remember_device(*pctx, dev);
        stack[depth++] = *pctx; /* a new context becomes current */
    }
    return rc;
}

CUresult CUDAAPI cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *ctxCreateParams, unsigned int flags, CUdevice dev)
{
    if (ctxCreateParams && ctxCreateParams->cigParams) {
        /* CIG shares a D3D12 queue or a graphics blob of this process with CUDA */
        static int told;
        if (!__atomic_exchange_n(&told, 1, __ATOMIC_RELAXED))
            gw_log("cuCtxCreate: CIG parameters name graphics objects of this process, which a remote GPU cannot "
                   "share: returning CUDA_ERROR_NOT_SUPPORTED");
        gw_stat_call(GW_OP_cuCtxCreate_v4);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    if (!ctxCreateParams)
        return ctx_create(GW_OP_cuCtxCreate_v4, pctx, 0, NULL, 0, flags, dev);
    return ctx_create(GW_OP_cuCtxCreate_v4, pctx, 1, ctxCreateParams->execAffinityParams,
                      ctxCreateParams->numExecAffinityParams, flags, dev);
}

CUresult CUDAAPI cuCtxCreate_v3(CUcontext *pctx, CUexecAffinityParam *paramsArray, int numParams, unsigned int flags,
                                CUdevice dev)
{
    return ctx_create(GW_OP_cuCtxCreate_v3, pctx, 1, paramsArray, numParams, flags, dev);
}

CUresult CUDAAPI cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    return ctx_create(GW_OP_cuCtxCreate_v2, pctx, 0, NULL, 0, flags, dev);
}

/* the CUDA 2.0 entry point, still exported by the driver */
#undef cuCtxCreate
CUresult CUDAAPI cuCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev);
CUresult CUDAAPI cuCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    return ctx_create(GW_OP_cuCtxCreate, pctx, 0, NULL, 0, flags, dev);
}

/* NULL means the current context: named here, so the answer kept for it
 * (cuCtxGetId is asked once per argument list) is that context's. */
CUresult CUDAAPI cuCtxGetId(CUcontext ctx, unsigned long long *ctxId)
{
    if (!ctx && depth)
        ctx = stack[depth - 1];
    return gwf_cuCtxGetId(ctx, ctxId);
}

/* ---- context limits: they change only through cuCtxSetLimit, except the
 * stack size, which the driver grows for a kernel that needs more. Libraries
 * ask before launches (cudart checks the shared-memory limit when a function's
 * attribute is set), so answers are kept per context and limit. ---- */

typedef struct kept_limit {
    CUcontext ctx;
    CUlimit limit;
    size_t value;
} kept_limit;

#define MAX_KEPT_LIMITS 64
static kept_limit kept_limits[MAX_KEPT_LIMITS];
static int n_kept_limits;
static pthread_mutex_t limits_lock = PTHREAD_MUTEX_INITIALIZER;

static void limits_forget(void)
{
    pthread_mutex_lock(&limits_lock);
    n_kept_limits = 0;
    pthread_mutex_unlock(&limits_lock);
}

CUresult CUDAAPI cuCtxGetLimit(size_t *pvalue, CUlimit limit)
{
    CUcontext ctx = depth ? stack[depth - 1] : NULL;
    int keep = ctx && pvalue && limit != CU_LIMIT_STACK_SIZE && gw_initialized();
    if (keep) {
        pthread_mutex_lock(&limits_lock);
        for (int i = 0; i < n_kept_limits; i++) {
            if (kept_limits[i].ctx == ctx && kept_limits[i].limit == limit) {
                *pvalue = kept_limits[i].value;
                pthread_mutex_unlock(&limits_lock);
                gw_stat_call(GW_OP_cuCtxGetLimit);
                return CUDA_SUCCESS;
            }
        }
        pthread_mutex_unlock(&limits_lock);
    }
    CUresult rc = gwf_cuCtxGetLimit(pvalue, limit);
    if (keep && rc == CUDA_SUCCESS) {
        pthread_mutex_lock(&limits_lock);
        if (n_kept_limits < MAX_KEPT_LIMITS)
            kept_limits[n_kept_limits++] = (kept_limit){ctx, limit, *pvalue};
        pthread_mutex_unlock(&limits_lock);
    }
    return rc;
}

CUresult CUDAAPI cuCtxSetLimit(CUlimit limit, size_t value)
{
    limits_forget(); /* the driver may round the value: ask again */
    return gwf_cuCtxSetLimit(limit, value);
}

/* Code above this layer that keeps something per context (the export
 * tables' context-local storage) is told before a context goes, while its
 * handle cannot yet be reused. */
#define MAX_ENDING_HOOKS 4
static void (*ending_hooks[MAX_ENDING_HOOKS])(CUcontext);
static int n_ending_hooks;

void gw_on_context_ending(void (*fn)(CUcontext))
{
    if (n_ending_hooks < MAX_ENDING_HOOKS)
        ending_hooks[n_ending_hooks++] = fn;
}

static void context_ending(CUcontext ctx)
{
    for (int i = 0; i < n_ending_hooks; i++)
        ending_hooks[i](ctx);
}

/* Answers kept per context: a destroyed context's must not outlive it. */
static void ctx_answers_forget(void)
{
    static const unsigned ops[] = {GW_OP_cuCtxGetId, GW_OP_cuCtxGetApiVersion};
    gw_cache_forget(ops, sizeof ops / sizeof ops[0]);
}

static CUresult ctx_destroy(int v2, CUcontext ctx)
{
    if (ctx)
        context_ending(ctx);
    CUresult rc = v2 ? gwf_cuCtxDestroy_v2(ctx) : gwf_cuCtxDestroy(ctx);
    ctx_answers_forget();
    gw_attributes_reset();
    gw_kernel_functions_forget();
    limits_forget();
    if (rc == CUDA_SUCCESS && depth && stack[depth - 1] == ctx)
        depth--;
    return rc;
}

CUresult CUDAAPI cuCtxDestroy_v2(CUcontext ctx) { return ctx_destroy(1, ctx); }
CUresult CUDAAPI cuCtxDestroy(CUcontext ctx) { return ctx_destroy(0, ctx); }

/* ---- primary contexts ---- */

static CUcontext primary[MAX_DEVS];
static pthread_mutex_t primary_lock = PTHREAD_MUTEX_INITIALIZER;

/* cudart asks for a device's primary context handle without activating it.
 * Handles are named by the server, so the client retains the context once and
 * keeps that reference: the handle then stays valid for the process. */
CUresult gw_primary_ctx_handle(CUdevice dev, CUcontext *pctx)
{
    if (dev < 0 || dev >= MAX_DEVS)
        return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&primary_lock);
    CUcontext c = primary[dev];
    pthread_mutex_unlock(&primary_lock);
    if (!c) {
        CUresult rc = cuDevicePrimaryCtxRetain(&c, dev);
        if (rc != CUDA_SUCCESS)
            return rc;
        pthread_mutex_lock(&primary_lock);
        if (primary[dev])
            cuDevicePrimaryCtxRelease_v2(dev); /* another thread won: drop our extra reference */
        else
            primary[dev] = c;
        c = primary[dev];
        pthread_mutex_unlock(&primary_lock);
    }
    *pctx = c;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDevicePrimaryCtxReset_v2(CUdevice dev)
{
    CUcontext c = NULL;
    if (dev >= 0 && dev < MAX_DEVS) {
        pthread_mutex_lock(&primary_lock);
        c = primary[dev];
        pthread_mutex_unlock(&primary_lock);
    }
    if (c)
        context_ending(c);
    held_change(dev, NULL, 0, 1);
    pstate_forget(dev);
    ctx_answers_forget();
    gw_attributes_reset();
    gw_kernel_functions_forget();
    limits_forget();
    return gwf_cuDevicePrimaryCtxReset_v2(dev);
}

/* ---- questions about contexts the client can answer itself ---- */

static CUresult device_of(CUcontext ctx, CUdevice *device)
{
    if (!device)
        return CUDA_ERROR_INVALID_VALUE;
    if (!gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!ctx)
        ctx = depth ? stack[depth - 1] : NULL;
    if (!ctx)
        return CUDA_ERROR_INVALID_CONTEXT; /* no current context, as natively */
    int dev = known_device(ctx);
    if (dev < 0)
        return CUDA_ERROR_NOT_FOUND; /* not one the client saw made: ask the server */
    *device = dev;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxGetDevice(CUdevice *device)
{
    CUresult rc = device_of(NULL, device);
    if (rc != CUDA_ERROR_NOT_FOUND) {
        gw_stat_call(GW_OP_cuCtxGetDevice);
        return rc;
    }
    return gwf_cuCtxGetDevice(device);
}

CUresult CUDAAPI cuCtxGetDevice_v2(CUdevice *device, CUcontext ctx)
{
    CUresult rc = device_of(ctx, device);
    if (rc != CUDA_ERROR_NOT_FOUND) {
        gw_stat_call(GW_OP_cuCtxGetDevice_v2);
        return rc;
    }
    return gwf_cuCtxGetDevice_v2(device, ctx);
}

/* A primary context's state changes only through calls the client makes, so
 * the last answer holds until one of them. */
static struct { int valid; unsigned flags; int active; } pstate[MAX_DEVS];

static void pstate_forget(CUdevice dev)
{
    if (dev >= 0 && dev < MAX_DEVS) {
        pthread_mutex_lock(&primary_lock);
        pstate[dev].valid = 0;
        pthread_mutex_unlock(&primary_lock);
    }
}

/* A released or reset primary context may be destroyed with what it held. */
static void primary_gone(CUdevice dev)
{
    pstate_forget(dev);
    ctx_answers_forget();
    gw_attributes_reset();
    gw_kernel_functions_forget();
    limits_forget();
}

CUresult CUDAAPI cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
{
    if (dev >= 0 && dev < MAX_DEVS && flags && active && gw_initialized()) {
        pthread_mutex_lock(&primary_lock);
        int valid = pstate[dev].valid;
        if (valid) {
            *flags = pstate[dev].flags;
            *active = pstate[dev].active;
        }
        pthread_mutex_unlock(&primary_lock);
        if (valid) {
            gw_stat_call(GW_OP_cuDevicePrimaryCtxGetState);
            return CUDA_SUCCESS;
        }
    }
    CUresult rc = gwf_cuDevicePrimaryCtxGetState(dev, flags, active);
    if (rc == CUDA_SUCCESS && dev >= 0 && dev < MAX_DEVS && flags && active) {
        pthread_mutex_lock(&primary_lock);
        pstate[dev].flags = *flags;
        pstate[dev].active = *active;
        pstate[dev].valid = 1;
        pthread_mutex_unlock(&primary_lock);
    }
    return rc;
}

/* cuda.h maps these old names onto the _v2 ones: both are exported */
#undef cuDevicePrimaryCtxRelease
#undef cuDevicePrimaryCtxReset
#undef cuDevicePrimaryCtxSetFlags
CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice dev);
CUresult CUDAAPI cuDevicePrimaryCtxReset(CUdevice dev);
CUresult CUDAAPI cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags);
CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice dev)
{ primary_gone(dev); held_change(dev, NULL, -1, 0); return gwf_cuDevicePrimaryCtxRelease(dev); }
CUresult CUDAAPI cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{ primary_gone(dev); held_change(dev, NULL, -1, 0); return gwf_cuDevicePrimaryCtxRelease_v2(dev); }
CUresult CUDAAPI cuDevicePrimaryCtxReset(CUdevice dev)
{ primary_gone(dev); held_change(dev, NULL, 0, 1); return gwf_cuDevicePrimaryCtxReset(dev); }
CUresult CUDAAPI cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags)
{ pstate_forget(dev); return gwf_cuDevicePrimaryCtxSetFlags(dev, flags); }
CUresult CUDAAPI cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags)
{ pstate_forget(dev); return gwf_cuDevicePrimaryCtxSetFlags_v2(dev, flags); }
