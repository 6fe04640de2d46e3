/* Copies between two servers' device memory (several servers,
 * docs/multi-gpu.md): cuMemcpyPeer(Async) between contexts of two servers,
 * and a unified cuMemcpy(Async) whose ends are on two servers. The bytes
 * pass through the client, pipelined: a reader thread copies chunks from the
 * source server into a ring of host buffers while this thread writes the
 * chunks before them to the destination server, so the two legs overlap
 * (each server has its own connection) and the time is about the slower
 * leg's, not their sum.
 *
 * Order: the copy starts once the source context (and the stream named, if
 * any) has finished its earlier work, and returns once every byte is on the
 * destination, so work queued after it on any stream sees the bytes. That is
 * stronger than CUDA asks of the asynchronous forms (they return at once on a
 * GPU); it is correct, and it holds the calling thread for the copy's time. */
#include <pthread.h>
#include <stdlib.h>

#include "api.h"

#define CHUNK (8u << 20) /* bytes per piece */
#define RING 4           /* pieces in flight */

typedef struct pipe_state {
    CUdeviceptr src;
    CUcontext sctx;
    size_t n, pieces;
    uint8_t *buf[RING];
    pthread_mutex_t lock;
    pthread_cond_t cv;
    size_t read, written; /* pieces read from the source / written to the destination */
    CUresult read_rc;
    int stop;
} pipe_state;

static size_t piece_len(const pipe_state *p, size_t i) { return i + 1 < p->pieces ? CHUNK : p->n - i * CHUNK; }

/* The source leg, on a thread of its own (so on a worker thread of its own on
 * the source server, with the source context current there). */
static void *reader(void *arg)
{
    pipe_state *p = arg;
    CUresult rc = p->sctx ? cuCtxPushCurrent_v2(p->sctx) : CUDA_SUCCESS;
    for (size_t i = 0; rc == CUDA_SUCCESS && i < p->pieces; i++) {
        pthread_mutex_lock(&p->lock);
        while (i - p->written >= RING && !p->stop) /* a free slot: the writer is done with piece i - RING */
            pthread_cond_wait(&p->cv, &p->lock);
        int stop = p->stop;
        pthread_mutex_unlock(&p->lock);
        if (stop)
            break;
        rc = cuMemcpyDtoH_v2(p->buf[i % RING], p->src + i * CHUNK, piece_len(p, i));
        pthread_mutex_lock(&p->lock);
        if (rc == CUDA_SUCCESS)
            p->read = i + 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->lock);
    }
    if (p->sctx) {
        CUcontext popped;
        cuCtxPopCurrent_v2(&popped);
    }
    pthread_mutex_lock(&p->lock);
    p->read_rc = rc;
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static CUresult staged(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n)
{
    pipe_state p = {.src = src, .sctx = sctx, .n = n, .pieces = (n + CHUNK - 1) / CHUNK};
    size_t ring = p.pieces < RING ? p.pieces : RING, each = n < CHUNK ? n : CHUNK;
    for (size_t i = 0; i < ring; i++)
        if (!(p.buf[i] = malloc(each))) {
            for (size_t j = 0; j < i; j++)
                free(p.buf[j]);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.cv, NULL);
    pthread_t t;
    CUresult rc = CUDA_SUCCESS;
    if (pthread_create(&t, NULL, reader, &p)) {
        rc = CUDA_ERROR_OPERATING_SYSTEM;
    } else {
        CUresult pushed = dctx ? cuCtxPushCurrent_v2(dctx) : CUDA_SUCCESS;
        rc = pushed;
        for (size_t i = 0; rc == CUDA_SUCCESS && i < p.pieces; i++) {
            pthread_mutex_lock(&p.lock);
            while (p.read <= i && !p.stop)
                pthread_cond_wait(&p.cv, &p.lock);
            int ready = p.read > i;
            pthread_mutex_unlock(&p.lock);
            if (!ready)
                break; /* the reader failed: its result says why */
            rc = cuMemcpyHtoD_v2(dst + i * CHUNK, p.buf[i % RING], piece_len(&p, i));
            pthread_mutex_lock(&p.lock);
            p.written = i + 1;
            if (rc != CUDA_SUCCESS)
                p.stop = 1;
            pthread_cond_broadcast(&p.cv);
            pthread_mutex_unlock(&p.lock);
        }
        if (dctx && pushed == CUDA_SUCCESS) {
            CUcontext popped;
            cuCtxPopCurrent_v2(&popped);
        }
        pthread_join(t, NULL);
        if (rc == CUDA_SUCCESS)
            rc = p.read_rc;
    }
    for (size_t i = 0; i < ring; i++)
        free(p.buf[i]);
    pthread_mutex_destroy(&p.lock);
    pthread_cond_destroy(&p.cv);
    return rc;
}

/* Everything queued before the copy on the source context (and on stream s)
 * is done. */
static CUresult source_settled(CUcontext sctx, int has_stream, CUstream s)
{
    CUresult rc = has_stream ? cuStreamSynchronize(s) : CUDA_SUCCESS;
    if (rc == CUDA_SUCCESS && sctx) {
        rc = cuCtxPushCurrent_v2(sctx);
        if (rc == CUDA_SUCCESS) {
            rc = cuCtxSynchronize();
            CUcontext popped;
            cuCtxPopCurrent_v2(&popped);
        }
    }
    return rc;
}

CUresult gw_cross_server_copy(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n,
                              int has_stream, CUstream s)
{
    if (!dctx)
        dctx = gw_server_memory_context(dst);
    if (!sctx)
        sctx = gw_server_memory_context(src);
    if (!gw_mem_is_device_range(src, n) || !gw_mem_is_device_range(dst, n))
        return CUDA_ERROR_INVALID_VALUE; /* both ends whole inside allocations the client saw */
    CUresult rc = source_settled(sctx, has_stream, s);
    if (rc != CUDA_SUCCESS || !n)
        return rc;
    return staged(dst, dctx, src, sctx, n);
}
