/* TEST DOUBLE: gpuwire CPU stand-in driver. Streams (work runs at once, so they are always
 * idle) and events (a host timestamp taken when recorded). */
#define _POSIX_C_SOURCE 200809L
#include "standin.h"

#include <stdlib.h>
#include <time.h>

typedef struct sd_event {
    sd_obj h;
    sd_ctx *ctx;
    unsigned int flags;
    int recorded;
    struct timespec when;
} sd_event;

CUresult sd_stream_check(CUstream s, sd_ctx **ctx)
{
    CUresult r = sd_cur(ctx);
    if (r != CUDA_SUCCESS)
        return r;
    if (s == NULL || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD)
        return CUDA_SUCCESS;
    if (!sd_obj_live(s, SD_STREAM))
        return CUDA_ERROR_INVALID_HANDLE;
    sd_ctx *owner = ((sd_stream *)s)->ctx;
    if (owner->sticky != CUDA_SUCCESS)
        return owner->sticky;
    *ctx = owner;
    return CUDA_SUCCESS;
}

static void drop_if_owned(void *obj, void *arg)
{
    sd_ctx *c = arg;
    sd_obj *o = obj;
    if ((o->kind == SD_STREAM && ((sd_stream *)obj)->ctx == c) ||
        (o->kind == SD_EVENT && ((sd_event *)obj)->ctx == c)) {
        sd_obj_del(obj);
        free(obj);
    }
}

void sd_free_ctx_streams_events(sd_ctx *c)
{
    sd_obj_each(SD_STREAM, drop_if_owned, c);
    sd_obj_each(SD_EVENT, drop_if_owned, c);
}

/* ---- streams ---- */

CUresult sd_stream_new(sd_ctx *c, unsigned int flags, int priority, CUstream *ph)
{
    sd_stream *s = calloc(1, sizeof *s);
    if (!s || sd_obj_add(s) != 0) {
        free(s);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    s->h.kind = SD_STREAM;
    s->ctx = c;
    s->flags = flags;
    s->priority = priority;
    s->id = sd_next_id();
    *ph = (CUstream)s;
    return CUDA_SUCCESS;
}

static CUresult stream_create(CUstream *ph, unsigned int flags, int priority)
{
    if (!ph || (flags & ~(unsigned)CU_STREAM_NON_BLOCKING))
        return CUDA_ERROR_INVALID_VALUE;
    if (priority > 0)
        priority = 0; /* clamped into [greatest, least] = [-5, 0], as the driver does */
    if (priority < -5)
        priority = -5;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS)
        r = sd_stream_new(c, flags, priority, ph);
    sd_unlock();
    return r;
}

SD_API CUresult cuStreamCreate(CUstream *ph, unsigned int flags) { return stream_create(ph, flags, 0); }

SD_API CUresult cuStreamCreateWithPriority(CUstream *ph, unsigned int flags, int priority)
{
    return stream_create(ph, flags, priority);
}

SD_API CUresult cuStreamDestroy_v2(CUstream h)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur_any(&c);
    if (r == CUDA_SUCCESS && !sd_obj_live(h, SD_STREAM))
        r = CUDA_ERROR_INVALID_HANDLE; /* includes the default streams, which are not destroyable */
    if (r == CUDA_SUCCESS) {
        sd_obj_del(h);
        free(h);
    }
    sd_unlock();
    return r;
}

/* Everything already ran: only a fault remains to report. */
SD_API CUresult cuStreamSynchronize(CUstream h)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_stream_check(h, &c);
    if (r == CUDA_SUCCESS)
        sd_wait_busy(c); /* booked GPU time (gw_sleep) counts on every stream of its context */
    sd_unlock();
    return r;
}

SD_API CUresult cuStreamQuery(CUstream h)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_stream_check(h, &c);
    sd_unlock();
    return r;
}

SD_API CUresult cuStreamWaitEvent(CUstream h, CUevent ev, unsigned int flags)
{
    if (flags & ~(unsigned)CU_EVENT_WAIT_EXTERNAL)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_stream_check(h, &c);
    if (r == CUDA_SUCCESS && !sd_obj_live(ev, SD_EVENT))
        r = CUDA_ERROR_INVALID_HANDLE;
    sd_unlock();
    return r;
}

/* Properties of a stream; the default streams read as flags 0, priority 0. */
static CUresult stream_props(CUstream h, sd_stream **out, sd_ctx **ctx)
{
    CUresult r = sd_stream_check(h, ctx);
    *out = NULL;
    if (r == CUDA_SUCCESS && h != NULL && h != CU_STREAM_LEGACY && h != CU_STREAM_PER_THREAD)
        *out = (sd_stream *)h;
    return r;
}

SD_API CUresult cuStreamGetFlags(CUstream h, unsigned int *flags)
{
    if (!flags)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_stream *s;
    sd_ctx *c;
    CUresult r = stream_props(h, &s, &c);
    if (r == CUDA_SUCCESS)
        *flags = s ? s->flags : 0;
    sd_unlock();
    return r;
}

SD_API CUresult cuStreamGetPriority(CUstream h, int *priority)
{
    if (!priority)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_stream *s;
    sd_ctx *c;
    CUresult r = stream_props(h, &s, &c);
    if (r == CUDA_SUCCESS)
        *priority = s ? s->priority : 0;
    sd_unlock();
    return r;
}

SD_API CUresult cuStreamGetId(CUstream h, unsigned long long *id)
{
    if (!id)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_stream *s;
    sd_ctx *c;
    CUresult r = stream_props(h, &s, &c);
    if (r == CUDA_SUCCESS)
        *id = s ? s->id : (h == CU_STREAM_PER_THREAD ? 2 : 1);
    sd_unlock();
    return r;
}

SD_API CUresult cuStreamGetCtx(CUstream h, CUcontext *pctx)
{
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_stream *s;
    sd_ctx *c;
    CUresult r = stream_props(h, &s, &c);
    if (r == CUDA_SUCCESS)
        *pctx = (CUcontext)c;
    sd_unlock();
    return r;
}

SD_API CUresult cuStreamGetCtx_v2(CUstream h, CUcontext *pctx, CUgreenCtx *pgreen)
{
    if (!pctx || !pgreen)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = cuStreamGetCtx(h, pctx);
    if (r == CUDA_SUCCESS) {
        *pgreen = (CUgreenCtx)((sd_ctx *)*pctx)->green;
        if (*pgreen)
            *pctx = (CUcontext)sd_primary_of(((sd_ctx *)*pctx)->dev); /* as the driver: the device's primary context */
    }
    return r;
}

SD_API CUresult cuStreamGetDevice(CUstream h, CUdevice *dev)
{
    if (!dev)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_stream *s;
    sd_ctx *c;
    CUresult r = stream_props(h, &s, &c);
    if (r == CUDA_SUCCESS)
        *dev = c->dev;
    sd_unlock();
    return r;
}

/* ---- events ---- */

SD_API CUresult cuEventCreate(CUevent *ph, unsigned int flags)
{
    const unsigned int known = CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS;
    if (!ph || (flags & ~known))
        return CUDA_ERROR_INVALID_VALUE;
    if ((flags & CU_EVENT_INTERPROCESS) && !(flags & CU_EVENT_DISABLE_TIMING))
        return CUDA_ERROR_INVALID_VALUE;
    if (flags & CU_EVENT_INTERPROCESS)
        return CUDA_ERROR_NOT_SUPPORTED; /* IPC is not remoted */
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    sd_event *e = NULL;
    if (r == CUDA_SUCCESS) {
        e = calloc(1, sizeof *e);
        if (!e || sd_obj_add(e) != 0) {
            free(e);
            r = CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    if (r == CUDA_SUCCESS) {
        e->h.kind = SD_EVENT;
        e->ctx = c;
        e->flags = flags;
        *ph = (CUevent)e;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuEventDestroy_v2(CUevent h)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur_any(&c);
    if (r == CUDA_SUCCESS && !sd_obj_live(h, SD_EVENT))
        r = CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS) {
        sd_obj_del(h);
        free(h);
    }
    sd_unlock();
    return r;
}

static CUresult record(CUevent h, CUstream s)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_stream_check(s, &c);
    if (r == CUDA_SUCCESS && !sd_obj_live(h, SD_EVENT))
        r = CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS) {
        sd_event *e = (sd_event *)h;
        clock_gettime(CLOCK_MONOTONIC, &e->when);
        e->recorded = 1;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuEventRecord(CUevent h, CUstream s) { return record(h, s); }

SD_API CUresult cuEventRecordWithFlags(CUevent h, CUstream s, unsigned int flags)
{
    if (flags & ~(unsigned)CU_EVENT_RECORD_EXTERNAL)
        return CUDA_ERROR_INVALID_VALUE;
    return record(h, s);
}

/* A context's work: all of it has run by now, so recording only stamps the
 * event, which must belong to that context as the driver demands. */
CUresult sd_ctx_event(sd_ctx *c, CUevent h, int record, const sd_ctx *also)
{
    if (c->primary && c->retained <= 0)
        return CUDA_ERROR_INVALID_CONTEXT;
    if (c->sticky != CUDA_SUCCESS)
        return c->sticky;
    if (!sd_obj_live(h, SD_EVENT))
        return CUDA_ERROR_INVALID_HANDLE;
    sd_event *e = (sd_event *)h;
    if (record && e->ctx != c && e->ctx != also)
        return CUDA_ERROR_INVALID_HANDLE;
    if (record) {
        clock_gettime(CLOCK_MONOTONIC, &e->when);
        e->recorded = 1;
    }
    return CUDA_SUCCESS;
}

static CUresult ctx_event(CUcontext hctx, CUevent h, int record)
{
    sd_lock();
    CUresult r = sd_initialized() ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    if (r == CUDA_SUCCESS && (!hctx || !sd_obj_live(hctx, SD_CTX)))
        r = CUDA_ERROR_INVALID_CONTEXT;
    if (r == CUDA_SUCCESS)
        r = sd_ctx_event((sd_ctx *)hctx, h, record, NULL);
    sd_unlock();
    return r;
}

SD_API CUresult cuCtxRecordEvent(CUcontext hctx, CUevent h) { return ctx_event(hctx, h, 1); }
SD_API CUresult cuCtxWaitEvent(CUcontext hctx, CUevent h) { return ctx_event(hctx, h, 0); }

/* Recorded work has run by the time the record returns: every event is complete. */
static CUresult event_done(CUevent h)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && !sd_obj_live(h, SD_EVENT))
        r = CUDA_ERROR_INVALID_HANDLE;
    sd_unlock();
    return r;
}

SD_API CUresult cuEventQuery(CUevent h) { return event_done(h); }
SD_API CUresult cuEventSynchronize(CUevent h) { return event_done(h); }

SD_API CUresult cuEventElapsedTime_v2(float *ms, CUevent start, CUevent end)
{
    if (!ms)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && (!sd_obj_live(start, SD_EVENT) || !sd_obj_live(end, SD_EVENT)))
        r = CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS) {
        sd_event *a = (sd_event *)start, *b = (sd_event *)end;
        if (!a->recorded || !b->recorded || (a->flags & CU_EVENT_DISABLE_TIMING) ||
            (b->flags & CU_EVENT_DISABLE_TIMING))
            r = CUDA_ERROR_INVALID_HANDLE; /* what the driver answers for these cases */
        else
            *ms = (float)((double)(b->when.tv_sec - a->when.tv_sec) * 1e3 +
                          (double)(b->when.tv_nsec - a->when.tv_nsec) / 1e6);
    }
    sd_unlock();
    return r;
}
