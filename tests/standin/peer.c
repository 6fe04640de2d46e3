/* TEST DOUBLE: gpuwire CPU stand-in driver. Peer access between devices: whether two
 * devices can reach each other (every pair of different stand-in devices can, as over
 * NVLink), the link's attributes, enabling and disabling one context's access to another's
 * memory with the driver's error codes, and peer copies (memory is all host memory here, so
 * a peer copy is a checked memmove; on a GPU it stays on the server too).
 *
 * A kernel that reaches memory of another device whose context its own has not enabled
 * faults (CUDA_ERROR_ILLEGAL_ADDRESS), as on a GPU (sd_at, registry.c). */
#include "standin.h"

#include <string.h>

SD_API CUresult cuDeviceCanAccessPeer(int *can, CUdevice dev, CUdevice peer)
{
    if (!can)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sd_check_dev(dev);
    if (r == CUDA_SUCCESS)
        r = sd_check_dev(peer);
    if (r == CUDA_SUCCESS)
        *can = dev != peer; /* a device is not its own peer */
    return r;
}

SD_API CUresult cuDeviceGetP2PAttribute(int *value, CUdevice_P2PAttribute attrib, CUdevice src, CUdevice dst)
{
    if (!value)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sd_check_dev(src);
    if (r == CUDA_SUCCESS)
        r = sd_check_dev(dst);
    if (r == CUDA_SUCCESS && src == dst)
        r = CUDA_ERROR_INVALID_DEVICE; /* the driver asks for two different devices */
    if (r != CUDA_SUCCESS)
        return r;
    switch (attrib) {
    case CU_DEVICE_P2P_ATTRIBUTE_PERFORMANCE_RANK: *value = 0; return CUDA_SUCCESS; /* NVLink: the best rank */
    case CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED:
    case CU_DEVICE_P2P_ATTRIBUTE_NATIVE_ATOMIC_SUPPORTED:
    case CU_DEVICE_P2P_ATTRIBUTE_CUDA_ARRAY_ACCESS_SUPPORTED: *value = 1; return CUDA_SUCCESS;
    case CU_DEVICE_P2P_ATTRIBUTE_ONLY_PARTIAL_NATIVE_ATOMIC_SUPPORTED: *value = 0; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

/* A context handle that may be named: live and, for a primary, retained. Lock held. */
static int ctx_ok(const sd_ctx *c)
{
    return c && sd_obj_live(c, SD_CTX) && (!c->primary || c->retained > 0);
}

static int peer_index(const sd_ctx *c, const sd_ctx *peer)
{
    for (int i = 0; i < c->npeers; i++)
        if (c->peers[i] == peer)
            return i;
    return -1;
}

static void drop_peer(sd_ctx *c, int i)
{
    c->peers[i] = c->peers[--c->npeers];
}

SD_API CUresult cuCtxEnablePeerAccess(CUcontext peer_h, unsigned int flags)
{
    sd_ctx *peer = (sd_ctx *)peer_h;
    if (flags != 0)
        return CUDA_ERROR_INVALID_VALUE; /* no flags are defined */
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && !ctx_ok(peer))
        r = CUDA_ERROR_INVALID_CONTEXT;
    if (r == CUDA_SUCCESS && peer->dev == c->dev)
        r = CUDA_ERROR_INVALID_DEVICE; /* cuDeviceCanAccessPeer says no for one device */
    if (r == CUDA_SUCCESS && peer_index(c, peer) >= 0)
        r = CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED;
    if (r == CUDA_SUCCESS && c->npeers >= SD_MAX_PEERS)
        r = CUDA_ERROR_TOO_MANY_PEERS;
    if (r == CUDA_SUCCESS)
        c->peers[c->npeers++] = peer;
    sd_unlock();
    return r;
}

SD_API CUresult cuCtxDisablePeerAccess(CUcontext peer_h)
{
    sd_ctx *peer = (sd_ctx *)peer_h;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && !ctx_ok(peer))
        r = CUDA_ERROR_INVALID_CONTEXT;
    int i = r == CUDA_SUCCESS ? peer_index(c, peer) : -1;
    if (r == CUDA_SUCCESS && i < 0)
        r = CUDA_ERROR_PEER_ACCESS_NOT_ENABLED;
    if (r == CUDA_SUCCESS)
        drop_peer(c, i);
    sd_unlock();
    return r;
}

int sd_peer_reaches(const sd_ctx *c, const sd_ctx *owner)
{
    return owner->dev == c->dev || peer_index(c, owner) >= 0;
}

static void forget_in(void *obj, void *arg)
{
    sd_ctx *c = obj;
    int i = peer_index(c, arg);
    if (i >= 0)
        drop_peer(c, i);
}

void sd_peer_forget(sd_ctx *c)
{
    c->npeers = 0;
    sd_obj_each(SD_CTX, forget_in, c);
}

/* Both contexts named, live and not faulted; both ranges device memory. Lock held. */
static CUresult peer_copy(CUdeviceptr dst, sd_ctx *dctx, CUdeviceptr src, sd_ctx *sctx, size_t n)
{
    if (!ctx_ok(dctx) || !ctx_ok(sctx))
        return CUDA_ERROR_INVALID_CONTEXT;
    if (dctx->sticky != CUDA_SUCCESS)
        return dctx->sticky;
    if (sctx->sticky != CUDA_SUCCESS)
        return sctx->sticky;
    if (n == 0)
        return CUDA_SUCCESS;
    void *d = sd_dev_range(dst, n), *s = sd_dev_range(src, n);
    if (!d || !s)
        return CUDA_ERROR_INVALID_VALUE;
    memmove(d, s, n);
    return CUDA_SUCCESS;
}

SD_API CUresult cuMemcpyPeer(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    sd_lock();
    CUresult r = peer_copy(dst, (sd_ctx *)dctx, src, (sd_ctx *)sctx, n);
    sd_unlock();
    return r;
}

SD_API CUresult cuMemcpyPeerAsync(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n,
                                  CUstream s)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_stream_check(s, &c); /* the stream runs it at once, in order */
    if (r == CUDA_SUCCESS)
        r = peer_copy(dst, (sd_ctx *)dctx, src, (sd_ctx *)sctx, n);
    sd_unlock();
    return r;
}

SD_API CUresult cuMemcpyPeer_ptds(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n)
{
    return cuMemcpyPeer(dst, dctx, src, sctx, n);
}

SD_API CUresult cuMemcpyPeerAsync_ptsz(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n,
                                       CUstream s)
{
    return cuMemcpyPeerAsync(dst, dctx, src, sctx, n, s);
}
