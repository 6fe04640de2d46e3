/* TEST DOUBLE: gpuwire CPU stand-in driver. Green contexts: the device's SMs as a
 * resource, split into groups, described, and given to a green context, which works
 * as a context of its own (cuCtxFromGreenCtx) limited to its SMs. */
#define _POSIX_C_SOURCE 200809L
#include "standin.h"

#include <stdlib.h>
#include <string.h>

#define SM_MIN_PARTITION 8u /* Hopper's smallest group, and the step groups grow by */
#define SM_ALIGNMENT 2u     /* SMs of a cluster pair */

typedef struct sd_resdesc {
    sd_obj h;
    unsigned int sms;
} sd_resdesc;

typedef struct sd_green {
    sd_obj h;
    sd_ctx ctx; /* what cuCtxFromGreenCtx returns */
} sd_green;

static void sm_resource(CUdevResource *r, unsigned int sms)
{
    memset(r, 0, sizeof *r);
    r->type = CU_DEV_RESOURCE_TYPE_SM;
    r->sm.smCount = sms;
    r->sm.minSmPartitionSize = SM_MIN_PARTITION;
    r->sm.smCoscheduledAlignment = SM_ALIGNMENT;
}

SD_API CUresult cuDeviceGetDevResource(CUdevice dev, CUdevResource *res, CUdevResourceType type)
{
    if (!res || type != CU_DEV_RESOURCE_TYPE_SM)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sd_check_dev(dev);
    if (r == CUDA_SUCCESS)
        sm_resource(res, SD_SM_COUNT);
    return r;
}

SD_API CUresult cuCtxGetDevResource(CUcontext ctx, CUdevResource *res, CUdevResourceType type)
{
    if (!res || type != CU_DEV_RESOURCE_TYPE_SM)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = ctx && sd_obj_live(ctx, SD_CTX) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
    if (r == CUDA_SUCCESS) {
        const sd_ctx *c = (const sd_ctx *)ctx;
        sm_resource(res, c->primary ? SD_SM_COUNT : (unsigned)c->sm_count);
    }
    sd_unlock();
    return r;
}

/* Groups of at least minCount SMs, rounded up to the partition step. */
SD_API CUresult cuDevSmResourceSplitByCount(CUdevResource *result, unsigned int *nbGroups, const CUdevResource *input,
                                            CUdevResource *remaining, unsigned int useFlags, unsigned int minCount)
{
    if (!nbGroups || !input || input->type != CU_DEV_RESOURCE_TYPE_SM || (useFlags & ~3u))
        return CUDA_ERROR_INVALID_VALUE;
    unsigned int size = minCount < SM_MIN_PARTITION ? SM_MIN_PARTITION : minCount;
    size = (size + SM_MIN_PARTITION - 1) / SM_MIN_PARTITION * SM_MIN_PARTITION;
    unsigned int most = input->sm.smCount / size;
    if (!most)
        return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
    unsigned int n = result ? (*nbGroups < most ? *nbGroups : most) : most;
    for (unsigned int i = 0; result && i < n; i++)
        sm_resource(&result[i], size);
    if (remaining)
        sm_resource(remaining, result ? input->sm.smCount - n * size : input->sm.smCount - most * size);
    *nbGroups = n;
    return CUDA_SUCCESS;
}

SD_API CUresult cuDevResourceGenerateDesc(CUdevResourceDesc *phDesc, CUdevResource *resources,
                                          unsigned int nbResources)
{
    if (!phDesc || !resources || nbResources == 0)
        return CUDA_ERROR_INVALID_VALUE;
    unsigned int sms = 0;
    for (unsigned int i = 0; i < nbResources; i++) {
        if (resources[i].type != CU_DEV_RESOURCE_TYPE_SM || resources[i].sm.smCount == 0)
            return CUDA_ERROR_INVALID_RESOURCE_TYPE;
        sms += resources[i].sm.smCount;
    }
    if (sms > SD_SM_COUNT)
        return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
    sd_lock();
    sd_resdesc *d = calloc(1, sizeof *d);
    CUresult r = CUDA_SUCCESS;
    if (!d || sd_obj_add(d) != 0) {
        free(d);
        r = CUDA_ERROR_OUT_OF_MEMORY;
    } else {
        d->h.kind = SD_RESDESC;
        d->sms = sms;
        *phDesc = (CUdevResourceDesc)d;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuGreenCtxCreate(CUgreenCtx *phCtx, CUdevResourceDesc desc, CUdevice dev, unsigned int flags)
{
    if (!phCtx || flags != CU_GREEN_CTX_DEFAULT_STREAM) /* the one flag, and it is required */
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_check_dev(dev);
    if (r == CUDA_SUCCESS && !sd_obj_live(desc, SD_RESDESC))
        r = CUDA_ERROR_INVALID_VALUE;
    sd_green *g = NULL;
    if (r == CUDA_SUCCESS) {
        g = calloc(1, sizeof *g);
        if (!g || sd_obj_add(g) != 0) {
            free(g);
            r = CUDA_ERROR_OUT_OF_MEMORY;
        } else if (sd_obj_add(&g->ctx) != 0) {
            sd_obj_del(g);
            free(g);
            r = CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    if (r == CUDA_SUCCESS) {
        g->h.kind = SD_GREEN;
        g->ctx.h.kind = SD_CTX;
        g->ctx.dev = dev;
        g->ctx.id = sd_next_id();
        g->ctx.sm_count = (int)((sd_resdesc *)desc)->sms;
        g->ctx.green = g;
        *phCtx = (CUgreenCtx)g; /* not made current, as the driver does */
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuGreenCtxDestroy(CUgreenCtx h)
{
    sd_lock();
    CUresult r = sd_obj_live(h, SD_GREEN) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS) {
        sd_green *g = (sd_green *)h;
        sd_free_ctx_streams_events(&g->ctx);
        sd_peer_forget(&g->ctx); /* no context keeps a mapping to it */
        sd_ctx_forget_current(&g->ctx);
        sd_obj_del(&g->ctx);
        sd_obj_del(g);
        free(g);
    }
    sd_unlock();
    return r;
}

static sd_green *live_green(CUgreenCtx h) { return sd_obj_live(h, SD_GREEN) ? (sd_green *)h : NULL; }

SD_API CUresult cuCtxFromGreenCtx(CUcontext *pctx, CUgreenCtx h)
{
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_green *g = live_green(h);
    if (g)
        *pctx = (CUcontext)&g->ctx;
    sd_unlock();
    return g ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

SD_API CUresult cuGreenCtxGetId(CUgreenCtx h, unsigned long long *id)
{
    if (!id)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_green *g = live_green(h);
    if (g)
        *id = g->ctx.id;
    sd_unlock();
    return g ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

SD_API CUresult cuGreenCtxGetDevResource(CUgreenCtx h, CUdevResource *res, CUdevResourceType type)
{
    if (!res || type != CU_DEV_RESOURCE_TYPE_SM)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_green *g = live_green(h);
    if (g)
        sm_resource(res, (unsigned)g->ctx.sm_count);
    sd_unlock();
    return g ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

SD_API CUresult cuGreenCtxStreamCreate(CUstream *ph, CUgreenCtx h, unsigned int flags, int priority)
{
    if (!ph || flags != CU_STREAM_NON_BLOCKING) /* required for green context streams */
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_green *g = live_green(h);
    CUresult r = g ? sd_stream_new(&g->ctx, flags, priority > 0 ? 0 : priority < -5 ? -5 : priority, ph)
                   : CUDA_ERROR_INVALID_HANDLE;
    sd_unlock();
    return r;
}

SD_API CUresult cuStreamGetGreenCtx(CUstream s, CUgreenCtx *ph)
{
    if (!ph)
        return CUDA_ERROR_INVALID_VALUE;
    CUcontext ctx;
    CUgreenCtx g;
    CUresult r = cuStreamGetCtx_v2(s, &ctx, &g);
    if (r == CUDA_SUCCESS)
        *ph = g;
    return r;
}

/* Events of the green context or of its device's primary context. */
static CUresult green_event(CUgreenCtx h, CUevent ev, int record)
{
    sd_lock();
    sd_green *g = live_green(h);
    CUresult r = g ? sd_ctx_event(&g->ctx, ev, record, sd_primary_of(g->ctx.dev)) : CUDA_ERROR_INVALID_HANDLE;
    sd_unlock();
    return r;
}

SD_API CUresult cuGreenCtxRecordEvent(CUgreenCtx h, CUevent ev) { return green_event(h, ev, 1); }
SD_API CUresult cuGreenCtxWaitEvent(CUgreenCtx h, CUevent ev) { return green_event(h, ev, 0); }
