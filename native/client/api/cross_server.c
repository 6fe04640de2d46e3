/* Calls that can span two servers (several servers, docs/multi-gpu.md):
 * copies between two servers' device memory (cuMemcpyPeer(Async) between
 * contexts of two servers, cuMemcpyDtoD(Async) and unified cuMemcpy(Async)
 * whose ends are on two servers), a stream waiting for another server's
 * event, peer queries and peer access between two servers' devices, and a
 * stream's device as the client numbers it. With one server each is the
 * generated forwarder after one comparison.
 *
 * Copies between servers pass through the client, pipelined: a reader
 * thread copies chunks from the source server into a ring of host buffers
 * while this thread writes the chunks before them to the destination
 * server, so the two legs overlap (each server has its own connection).
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

/* ---- calls that name two devices or contexts, each maybe of another server ---- */

/* The servers of a stream (NULL and the special streams: the current
 * context's) and of an event; -1 if unknown. */
static int stream_server(CUstream s)
{
    int k = gw_handle_server((uint64_t)(uintptr_t)s);
    return k >= 0 ? k : gw_route_now();
}

/* A stream of one server waiting for an event of another: the client waits
 * for the event (on its server) before it returns, so everything queued on
 * the stream after this call is ordered after the event's work, as CUDA
 * asks; the calling thread is held meanwhile (docs/multi-gpu.md). */
static CUresult wait_across(CUstream s, CUevent e, unsigned flags)
{
    if (flags & ~(unsigned)CU_EVENT_WAIT_EXTERNAL)
        return CUDA_ERROR_INVALID_VALUE;
    CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
    if (cuStreamIsCapturing(s, &st) == CUDA_SUCCESS && st != CU_STREAM_CAPTURE_STATUS_NONE) {
        gw_log("cuStreamWaitEvent: a capturing stream cannot wait for an event of another gpuwire server (a graph "
               "runs on one server); returning CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED");
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    return cuEventSynchronize(e);
}

static int across(CUstream s, CUevent e)
{
    if (gw_servers_n <= 1)
        return 0;
    int ke = gw_handle_server((uint64_t)(uintptr_t)e);
    return ke >= 0 && ke != stream_server(s);
}

CUresult CUDAAPI cuStreamWaitEvent(CUstream s, CUevent e, unsigned int flags)
{
    if (across(s, e))
        return gw_stat_call(GW_OP_cuStreamWaitEvent), wait_across(s, e, flags);
    return gwf_cuStreamWaitEvent(s, e, flags);
}

CUresult CUDAAPI cuStreamWaitEvent_ptsz(CUstream s, CUevent e, unsigned int flags)
{
    if (across(s, e))
        return gw_stat_call(GW_OP_cuStreamWaitEvent_ptsz), wait_across(s, e, flags);
    return gwf_cuStreamWaitEvent_ptsz(s, e, flags);
}

/* Two devices of different servers: valid devices, never peers (no GPU of
 * one machine reaches another's memory). 1 if so (*rc the answer's status). */
static int devices_apart(CUdevice a, CUdevice b, CUresult *rc)
{
    if (gw_servers_n <= 1)
        return 0;
    int ka = gw_device_server((int)a, NULL), kb = gw_device_server((int)b, NULL);
    if (ka < 0 || kb < 0) {
        *rc = CUDA_ERROR_INVALID_DEVICE;
        return 1;
    }
    *rc = CUDA_SUCCESS;
    return ka != kb;
}

CUresult CUDAAPI cuDeviceCanAccessPeer(int *can, CUdevice dev, CUdevice peer)
{
    CUresult rc;
    if (!devices_apart(dev, peer, &rc))
        return gwf_cuDeviceCanAccessPeer(can, dev, peer);
    gw_stat_call(GW_OP_cuDeviceCanAccessPeer);
    if (rc == CUDA_SUCCESS && !can)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        *can = 0;
    return rc;
}

CUresult CUDAAPI cuDeviceGetP2PAttribute(int *value, CUdevice_P2PAttribute attrib, CUdevice src, CUdevice dst)
{
    CUresult rc;
    if (!devices_apart(src, dst, &rc))
        return gwf_cuDeviceGetP2PAttribute(value, attrib, src, dst);
    gw_stat_call(GW_OP_cuDeviceGetP2PAttribute);
    if (rc == CUDA_SUCCESS && !value)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        *value = 0; /* no access, no atomics, no rank: as between two GPUs without a link */
    return rc;
}

/* Peer access between contexts of two servers: never possible. */
static int context_apart(CUcontext peer)
{
    int k = gw_handle_server((uint64_t)(uintptr_t)peer);
    return gw_servers_n > 1 && k >= 0 && k != gw_route_now();
}

CUresult CUDAAPI cuCtxEnablePeerAccess(CUcontext peer, unsigned int flags)
{
    if (!context_apart(peer))
        return gwf_cuCtxEnablePeerAccess(peer, flags);
    gw_stat_call(GW_OP_cuCtxEnablePeerAccess);
    return flags ? CUDA_ERROR_INVALID_VALUE : CUDA_ERROR_PEER_ACCESS_UNSUPPORTED;
}

CUresult CUDAAPI cuCtxDisablePeerAccess(CUcontext peer)
{
    if (!context_apart(peer))
        return gwf_cuCtxDisablePeerAccess(peer);
    gw_stat_call(GW_OP_cuCtxDisablePeerAccess);
    return CUDA_ERROR_PEER_ACCESS_NOT_ENABLED;
}

/* A stream's device, as its server numbers it: the client's ordinal. */
static CUresult stream_device(CUresult rc, CUstream s, CUdevice *dev)
{
    if (rc == CUDA_SUCCESS && dev && gw_servers_n > 1)
        *dev = gw_device_of_server(stream_server(s), (int)*dev);
    return rc;
}

CUresult CUDAAPI cuStreamGetDevice(CUstream s, CUdevice *dev) { return stream_device(gwf_cuStreamGetDevice(s, dev), s, dev); }

CUresult CUDAAPI cuStreamGetDevice_ptsz(CUstream s, CUdevice *dev)
{
    return stream_device(gwf_cuStreamGetDevice_ptsz(s, dev), s, dev);
}

/* Device to device between two servers' memory: staged, as a peer copy. */
static int apart(CUdeviceptr dst, CUdeviceptr src)
{
    if (gw_servers_n <= 1)
        return 0;
    int kd = gw_server_of_address(dst), ks = gw_server_of_address(src);
    return kd >= 0 && ks >= 0 && kd != ks;
}

CUresult CUDAAPI cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    if (apart(dst, src))
        return gw_stat_call(GW_OP_cuMemcpyDtoD_v2), gw_cross_server_copy(dst, NULL, src, NULL, n, 0, NULL);
    return gwf_cuMemcpyDtoD_v2(dst, src, n);
}

CUresult CUDAAPI cuMemcpyDtoD_v2_ptds(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    if (apart(dst, src))
        return gw_stat_call(GW_OP_cuMemcpyDtoD_v2_ptds), gw_cross_server_copy(dst, NULL, src, NULL, n, 0, NULL);
    return gwf_cuMemcpyDtoD_v2_ptds(dst, src, n);
}

CUresult CUDAAPI cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{
    if (apart(dst, src))
        return gw_stat_call(GW_OP_cuMemcpyDtoDAsync_v2), gw_cross_server_copy(dst, NULL, src, NULL, n, 1, s);
    return gwf_cuMemcpyDtoDAsync_v2(dst, src, n, s);
}

CUresult CUDAAPI cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{
    if (apart(dst, src))
        return gw_stat_call(GW_OP_cuMemcpyDtoDAsync_v2_ptsz), gw_cross_server_copy(dst, NULL, src, NULL, n, 1, s);
    return gwf_cuMemcpyDtoDAsync_v2_ptsz(dst, src, n, s);
}

/* Several servers: each server's driver reads the bus id (in list order);
 * the first that has such a device, shown to the program, answers. Two
 * machines' GPUs can sit at the same bus id: the earlier server's wins. */
CUresult CUDAAPI cuDeviceGetByPCIBusId(CUdevice *dev, const char *busid)
{
    if (gw_servers_n <= 1 || !dev || !busid)
        return gwf_cuDeviceGetByPCIBusId(dev, busid);
    CUresult first = CUDA_ERROR_INVALID_DEVICE;
    for (int k = 0; k < gw_servers_n; k++) {
        int route = gw_route_enter(k);
        CUdevice local = -1;
        CUresult rc = gwf_cuDeviceGetByPCIBusId(&local, busid);
        gw_route_leave(route);
        int mine = rc == CUDA_SUCCESS ? gw_device_of_server(k, (int)local) : -1;
        if (mine >= 0) {
            *dev = mine;
            return CUDA_SUCCESS;
        }
        if (k == 0 && rc != CUDA_SUCCESS)
            first = rc; /* a malformed id: the first server's verdict */
    }
    return first;
}
