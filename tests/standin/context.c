/* TEST DOUBLE: gpuwire CPU stand-in driver. Contexts: the primary context, created
 * contexts, the per-thread context stack, limits, sticky faults. */
#define _POSIX_C_SOURCE 200809L
#include "standin.h"

#include <time.h>

#include <stdlib.h>
#include <string.h>

_Static_assert(CU_LIMIT_MAX <= 16, "sd_ctx.limits holds every CUlimit");

#define STACK_MAX 32
static _Thread_local sd_ctx *t_stack[STACK_MAX]; /* the calling thread's context stack */
static _Thread_local int t_depth;

static sd_ctx g_primary[SD_MAX_DEVICES]; /* each device's primary context: its handle never dies */

static void default_limits(sd_ctx *c)
{
    memset(c->limits, 0, sizeof c->limits);
    c->limits[CU_LIMIT_STACK_SIZE] = 1024;
    c->limits[CU_LIMIT_PRINTF_FIFO_SIZE] = 1 << 20;
    c->limits[CU_LIMIT_MALLOC_HEAP_SIZE] = 8 << 20;
    c->limits[CU_LIMIT_DEV_RUNTIME_SYNC_DEPTH] = 2;
    c->limits[CU_LIMIT_DEV_RUNTIME_PENDING_LAUNCH_COUNT] = 2048;
    c->limits[CU_LIMIT_MAX_L2_FETCH_GRANULARITY] = 64;
    c->limits[CU_LIMIT_PERSISTING_L2_CACHE_SIZE] = 0;
}

/* dev must be checked (sd_check_dev) first. */
static sd_ctx *primary(CUdevice dev)
{
    sd_ctx *p = &g_primary[dev];
    if (p->h.kind == 0) {
        p->h.kind = SD_CTX;
        p->primary = 1;
        p->dev = dev;
        p->id = sd_next_id();
        default_limits(p);
        if (sd_obj_add(p) != 0)
            p->h.kind = 0;
    }
    return p->h.kind ? p : NULL;
}

sd_ctx *sd_primary(void) { return primary(0); }
sd_ctx *sd_primary_of(CUdevice dev) { return sd_check_dev(dev) == CUDA_SUCCESS ? primary(dev) : NULL; }

/* A context handle that may be used: live, and (primary) retained. */
static CUresult ctx_usable(sd_ctx *c)
{
    if (!c || !sd_obj_live(c, SD_CTX))
        return CUDA_ERROR_INVALID_CONTEXT;
    if (c->primary && c->retained <= 0)
        return CUDA_ERROR_CONTEXT_IS_DESTROYED;
    return CUDA_SUCCESS;
}

CUresult sd_cur_any(sd_ctx **out)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (t_depth == 0)
        return CUDA_ERROR_INVALID_CONTEXT;
    sd_ctx *c = t_stack[t_depth - 1];
    CUresult r = ctx_usable(c);
    if (r == CUDA_SUCCESS)
        *out = c;
    return r;
}

CUresult sd_cur(sd_ctx **out)
{
    CUresult r = sd_cur_any(out);
    if (r == CUDA_SUCCESS && (*out)->sticky != CUDA_SUCCESS)
        return (*out)->sticky;
    return r;
}

void sd_ctx_fault(sd_ctx *c, CUresult err)
{
    if (c->sticky == CUDA_SUCCESS)
        c->sticky = err;
}

/* Frees everything a context owns; its handle stays valid only if it is the primary. */
static void teardown(sd_ctx *c)
{
    sd_free_ctx_streams_events(c);
    sd_free_ctx_modules(c);
    sd_free_ctx_allocs(c);
    sd_peer_forget(c);
    c->sticky = CUDA_SUCCESS;
    default_limits(c);
}

void sd_ctx_forget_current(sd_ctx *c)
{
    int w = 0;
    for (int i = 0; i < t_depth; i++)
        if (t_stack[i] != c)
            t_stack[w++] = t_stack[i];
    t_depth = w;
}

/* ---- primary context ---- */

SD_API CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_check_dev(dev);
    sd_ctx *c = r == CUDA_SUCCESS ? primary(dev) : NULL;
    if (r == CUDA_SUCCESS && !c)
        r = CUDA_ERROR_OUT_OF_MEMORY;
    if (r == CUDA_SUCCESS) {
        c->retained++;
        *pctx = (CUcontext)c;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
    sd_lock();
    CUresult r = sd_check_dev(dev);
    sd_ctx *c = r == CUDA_SUCCESS ? primary(dev) : NULL;
    if (r == CUDA_SUCCESS && (!c || c->retained <= 0))
        r = CUDA_ERROR_INVALID_CONTEXT;
    if (r == CUDA_SUCCESS && --c->retained == 0)
        teardown(c);
    sd_unlock();
    return r;
}

SD_API CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev)
{
    sd_lock();
    CUresult r = sd_check_dev(dev);
    sd_ctx *c = r == CUDA_SUCCESS ? primary(dev) : NULL;
    if (r == CUDA_SUCCESS && c) {
        teardown(c); /* frees everything and clears a sticky fault */
        c->retained = 0;
        c->flags = 0;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
{
    if (!flags || !active)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_check_dev(dev);
    sd_ctx *c = r == CUDA_SUCCESS ? primary(dev) : NULL;
    if (r == CUDA_SUCCESS) {
        *flags = c ? c->flags : 0;
        *active = c && c->retained > 0;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags)
{
    if (flags & ~(unsigned)(CU_CTX_SCHED_MASK | CU_CTX_LMEM_RESIZE_TO_MAX | CU_CTX_SYNC_MEMOPS))
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_check_dev(dev);
    sd_ctx *c = r == CUDA_SUCCESS ? primary(dev) : NULL;
    if (r == CUDA_SUCCESS && c)
        c->flags = flags;
    sd_unlock();
    return r;
}

/* ---- created contexts ---- */

static CUresult create(CUcontext *pctx, unsigned int flags, CUdevice dev, int sm_count)
{
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_check_dev(dev);
    if (r == CUDA_SUCCESS && t_depth >= STACK_MAX)
        r = CUDA_ERROR_OUT_OF_MEMORY;
    sd_ctx *c = NULL;
    if (r == CUDA_SUCCESS) {
        c = calloc(1, sizeof *c);
        if (!c || sd_obj_add(c) != 0) {
            free(c);
            r = CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    if (r == CUDA_SUCCESS) {
        c->h.kind = SD_CTX;
        c->dev = dev;
        c->flags = flags;
        c->id = sd_next_id();
        c->sm_count = sm_count;
        default_limits(c);
        t_stack[t_depth++] = c; /* a new context becomes current */
        *pctx = (CUcontext)c;
    }
    sd_unlock();
    return r;
}

/* Execution affinity: only an SM count, 1 to all of them. */
static CUresult affinity_sms(const CUexecAffinityParam *p, int n, int *sms)
{
    *sms = SD_SM_COUNT;
    if (n < 0 || (n > 0 && !p))
        return CUDA_ERROR_INVALID_VALUE;
    for (int i = 0; i < n; i++) {
        if (p[i].type != CU_EXEC_AFFINITY_TYPE_SM_COUNT || p[i].param.smCount.val == 0 ||
            p[i].param.smCount.val > SD_SM_COUNT)
            return CUDA_ERROR_INVALID_VALUE;
        *sms = (int)p[i].param.smCount.val;
    }
    return CUDA_SUCCESS;
}

SD_API CUresult cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *params, unsigned int flags, CUdevice dev)
{
    if (params && params->cigParams)
        return CUDA_ERROR_NOT_SUPPORTED; /* no graphics queue to share on a CPU */
    int sms;
    CUresult r = params ? affinity_sms(params->execAffinityParams, params->numExecAffinityParams, &sms)
                        : affinity_sms(NULL, 0, &sms);
    return r != CUDA_SUCCESS ? r : create(pctx, flags, dev, sms);
}

SD_API CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    return create(pctx, flags, dev, SD_SM_COUNT);
}

SD_API CUresult cuCtxCreate_v3(CUcontext *pctx, CUexecAffinityParam *params, int n, unsigned int flags, CUdevice dev)
{
    int sms;
    CUresult r = affinity_sms(params, n, &sms);
    return r != CUDA_SUCCESS ? r : create(pctx, flags, dev, sms);
}

SD_API CUresult cuDeviceGetExecAffinitySupport(int *pi, CUexecAffinityType type, CUdevice dev)
{
    if (!pi || (unsigned)type >= (unsigned)CU_EXEC_AFFINITY_TYPE_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sd_check_dev(dev);
    if (r == CUDA_SUCCESS)
        *pi = type == CU_EXEC_AFFINITY_TYPE_SM_COUNT;
    return r;
}

SD_API CUresult cuCtxGetExecAffinity(CUexecAffinityParam *p, CUexecAffinityType type)
{
    if (!p || type != CU_EXEC_AFFINITY_TYPE_SM_COUNT)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur_any(&c);
    if (r == CUDA_SUCCESS) {
        p->type = type;
        p->param.smCount.val = (unsigned)(c->primary ? SD_SM_COUNT : c->sm_count);
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuCtxDestroy_v2(CUcontext ctx)
{
    sd_ctx *c = (sd_ctx *)ctx;
    sd_lock();
    CUresult r = sd_initialized() ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    if (r == CUDA_SUCCESS && (!c || !sd_obj_live(c, SD_CTX) || c->primary))
        r = CUDA_ERROR_INVALID_CONTEXT;
    if (r == CUDA_SUCCESS) {
        teardown(c);
        sd_ctx_forget_current(c); /* other threads see a dead handle and say so */
        sd_obj_del(c);
        free(c);
    }
    sd_unlock();
    return r;
}

/* ---- the current context ---- */

SD_API CUresult cuCtxGetCurrent(CUcontext *pctx)
{
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    *pctx = t_depth ? (CUcontext)t_stack[t_depth - 1] : NULL;
    return CUDA_SUCCESS;
}

SD_API CUresult cuCtxSetCurrent(CUcontext ctx)
{
    sd_lock();
    CUresult r = sd_initialized() ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    if (r == CUDA_SUCCESS && ctx && !sd_obj_live(ctx, SD_CTX))
        r = CUDA_ERROR_INVALID_CONTEXT;
    if (r == CUDA_SUCCESS) {
        if (!ctx)
            t_depth = t_depth ? t_depth - 1 : 0;
        else if (t_depth == 0)
            t_stack[t_depth++] = (sd_ctx *)ctx;
        else
            t_stack[t_depth - 1] = (sd_ctx *)ctx;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuCtxPushCurrent_v2(CUcontext ctx)
{
    sd_lock();
    CUresult r = sd_initialized() ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    if (r == CUDA_SUCCESS && (!ctx || !sd_obj_live(ctx, SD_CTX)))
        r = CUDA_ERROR_INVALID_CONTEXT;
    if (r == CUDA_SUCCESS && t_depth >= STACK_MAX)
        r = CUDA_ERROR_OUT_OF_MEMORY;
    if (r == CUDA_SUCCESS)
        t_stack[t_depth++] = (sd_ctx *)ctx;
    sd_unlock();
    return r;
}

SD_API CUresult cuCtxPopCurrent_v2(CUcontext *pctx)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (t_depth == 0)
        return CUDA_ERROR_INVALID_CONTEXT;
    sd_ctx *c = t_stack[--t_depth];
    if (pctx)
        *pctx = (CUcontext)c;
    return CUDA_SUCCESS;
}

SD_API CUresult cuCtxGetDevice(CUdevice *dev)
{
    if (!dev)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur_any(&c);
    if (r == CUDA_SUCCESS)
        *dev = c->dev;
    sd_unlock();
    return r;
}

/* NULL ctx means the current one, as in the other _v2 context queries. */
static CUresult ctx_or_current(CUcontext ctx, sd_ctx **out)
{
    if (!ctx)
        return sd_cur_any(out);
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    CUresult r = ctx_usable((sd_ctx *)ctx);
    if (r == CUDA_SUCCESS)
        *out = (sd_ctx *)ctx;
    return r;
}

SD_API CUresult cuCtxGetDevice_v2(CUdevice *dev, CUcontext ctx)
{
    if (!dev)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = ctx_or_current(ctx, &c);
    if (r == CUDA_SUCCESS)
        *dev = c->dev;
    sd_unlock();
    return r;
}

/* All work already ran: synchronizing only reports a fault. */
void sd_wait_busy(sd_ctx *c)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double left = c->busy_until - (now.tv_sec + now.tv_nsec * 1e-9);
    if (left <= 0)
        return;
    struct timespec ts = {(time_t)left, (long)((left - (time_t)left) * 1e9)};
    sd_unlock(); /* other threads' calls go on while this one waits, as with a GPU */
    nanosleep(&ts, NULL);
    sd_lock();
}

SD_API CUresult cuCtxSynchronize(void)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS)
        sd_wait_busy(c);
    sd_unlock();
    return r;
}

SD_API CUresult cuCtxSynchronize_v2(CUcontext ctx)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = ctx_or_current(ctx, &c);
    if (r == CUDA_SUCCESS && c->sticky != CUDA_SUCCESS)
        r = c->sticky;
    if (r == CUDA_SUCCESS)
        sd_wait_busy(c);
    sd_unlock();
    return r;
}

/* No profiler is ever attached: starting and stopping only need a context. */
static CUresult profiler_toggle(void)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur_any(&c);
    sd_unlock();
    return r;
}

SD_API CUresult cuProfilerStart(void) { return profiler_toggle(); }
SD_API CUresult cuProfilerStop(void) { return profiler_toggle(); }

SD_API CUresult cuCtxGetApiVersion(CUcontext ctx, unsigned int *version)
{
    if (!version)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = ctx_or_current(ctx, &c);
    if (r == CUDA_SUCCESS)
        *version = 3020; /* what the driver reports for every _v2-API context */
    sd_unlock();
    return r;
}

SD_API CUresult cuCtxGetId(CUcontext ctx, unsigned long long *id)
{
    if (!id)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = ctx_or_current(ctx, &c);
    if (r == CUDA_SUCCESS)
        *id = c->id;
    sd_unlock();
    return r;
}

SD_API CUresult cuCtxGetFlags(unsigned int *flags)
{
    if (!flags)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur_any(&c);
    if (r == CUDA_SUCCESS)
        *flags = c->flags;
    sd_unlock();
    return r;
}

SD_API CUresult cuCtxSetFlags(unsigned int flags)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS)
        c->flags = flags;
    sd_unlock();
    return r;
}

SD_API CUresult cuCtxGetLimit(size_t *value, CUlimit limit)
{
    if (!value || (unsigned)limit >= (unsigned)CU_LIMIT_MAX)
        return CUDA_ERROR_INVALID_VALUE; /* checked before any lookup: limit is an index */
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS)
        *value = c->limits[limit];
    sd_unlock();
    return r;
}

SD_API CUresult cuCtxSetLimit(CUlimit limit, size_t value)
{
    if ((unsigned)limit >= (unsigned)CU_LIMIT_MAX || limit == CU_LIMIT_SHMEM_SIZE ||
        limit == CU_LIMIT_CIG_ENABLED)
        return CUDA_ERROR_INVALID_VALUE; /* query-only limits */
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS)
        c->limits[limit] = value;
    sd_unlock();
    return r;
}

SD_API CUresult cuCtxGetStreamPriorityRange(int *least, int *greatest)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    sd_unlock();
    if (r != CUDA_SUCCESS)
        return r;
    if (least)
        *least = 0;
    if (greatest)
        *greatest = -5;
    return CUDA_SUCCESS;
}

SD_API CUresult cuCtxGetCacheConfig(CUfunc_cache *config)
{
    if (!config)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    sd_unlock();
    if (r == CUDA_SUCCESS)
        *config = CU_FUNC_CACHE_PREFER_NONE;
    return r;
}

SD_API CUresult cuCtxSetCacheConfig(CUfunc_cache config)
{
    if ((unsigned)config > (unsigned)CU_FUNC_CACHE_PREFER_EQUAL)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    sd_unlock();
    return r;
}

SD_API CUresult cuCtxResetPersistingL2Cache(void)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    sd_unlock();
    return r;
}
