/* Kernel launches: the arguments the application points at are packed into
 * the kernel's parameter buffer layout (offsets and sizes the worker reports
 * once per function) and travel by value; the worker rebuilds kernelParams. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../common/idmap.h"
#include "client.h"

#define MAX_PARAM_BYTES GW_MAX_PARAM_BYTES
#define MAX_LAUNCH_ATTRS 32u

typedef struct layout {
    uint32_t n, total;
    uint32_t max_threads; /* of this function; 0: unknown */
    uint32_t off[];
    /* followed by n sizes */
} layout;

static gw_idmap layouts;
static pthread_mutex_t layouts_lock = PTHREAD_MUTEX_INITIALIZER;

static const uint32_t *sizes_of(const layout *l) { return l->off + l->n; }

/* Layouts are not freed here: a launch on another thread may hold one. It
 * only happens if a layout read from a cubin proved wrong (modules.c). */
void gw_layouts_forget(void)
{
    pthread_mutex_lock(&layouts_lock);
    gw_idmap_clear(&layouts, NULL);
    pthread_mutex_unlock(&layouts_lock);
}

/* The parameter layout of a function or kernel, fetched once. */
static CUresult get_layout(CUfunction f, const layout **out)
{
    uint64_t id = (uint64_t)(uintptr_t)f;
    pthread_mutex_lock(&layouts_lock);
    layout *l = gw_idmap_get(&layouts, id);
    pthread_mutex_unlock(&layouts_lock);
    if (l) {
        *out = l;
        return CUDA_SUCCESS;
    }
    if (!f)
        return CUDA_ERROR_INVALID_HANDLE;
    /* the function's module information, sent by the worker after the load */
    uint32_t n, maxt;
    uint32_t *pairs;
    if (gw_function_layout(id, &n, &pairs, &maxt)) {
        l = malloc(sizeof *l + 2 * sizeof(uint32_t) * n);
        if (!l) {
            free(pairs);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        l->n = n;
        l->total = 0;
        l->max_threads = maxt;
        for (uint32_t i = 0; i < n; i++) {
            l->off[i] = pairs[2 * i];
            l->off[n + i] = pairs[2 * i + 1];
            uint64_t end = (uint64_t)pairs[2 * i] + pairs[2 * i + 1];
            if (end > MAX_PARAM_BYTES) {
                free(l);
                free(pairs);
                return CUDA_ERROR_UNKNOWN;
            }
            if (end > l->total)
                l->total = (uint32_t)end;
        }
        free(pairs);
        goto cache;
    }
    gw_req *q = gw_req_begin_quiet(GW_OP_FUNC_LAYOUT);
    gw_put_u64(q, id);
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        uint32_t n = gw_get_u32(r);
        l = n <= MAX_PARAM_BYTES ? malloc(sizeof *l + 2 * sizeof(uint32_t) * n) : NULL;
        if (!l) {
            rc = CUDA_ERROR_UNKNOWN;
        } else {
            l->n = n;
            l->total = 0;
            for (uint32_t i = 0; i < n; i++) {
                l->off[i] = gw_get_u32(r);
                l->off[n + i] = gw_get_u32(r);
                uint64_t end = (uint64_t)l->off[i] + l->off[n + i];
                if (end > MAX_PARAM_BYTES)
                    rc = CUDA_ERROR_UNKNOWN;
                else if (end > l->total)
                    l->total = (uint32_t)end;
            }
            l->max_threads = gw_get_u32(r);
            rc = gw_rep_status(r, rc);
            if (rc != CUDA_SUCCESS) {
                free(l);
                l = NULL;
            }
        }
    }
    gw_rep_end(r);
    if (rc != CUDA_SUCCESS)
        return rc;
cache:
    pthread_mutex_lock(&layouts_lock);
    layout *old = gw_idmap_get(&layouts, id);
    if (old) {
        free(l);
        l = old;
    } else if (gw_idmap_put(&layouts, id, l)) {
        pthread_mutex_unlock(&layouts_lock);
        free(l);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    pthread_mutex_unlock(&layouts_lock);
    *out = l;
    return CUDA_SUCCESS;
}

/* Pack the arguments into buf (MAX_PARAM_BYTES): from kernelParams (one
 * pointer per parameter) or from the `extra` buffer, which already is the
 * parameter buffer. */
static CUresult pack_args(const layout *l, void **kernelParams, void **extra, uint8_t *buf, uint32_t *nbytes)
{
    if (kernelParams) {
        memset(buf, 0, l->total);
        for (uint32_t i = 0; i < l->n; i++) {
            if (!kernelParams[i])
                return CUDA_ERROR_INVALID_VALUE;
            memcpy(buf + l->off[i], kernelParams[i], sizes_of(l)[i]);
        }
        *nbytes = l->total;
        return CUDA_SUCCESS;
    }
    if (extra) {
        const void *pbuf = NULL;
        size_t size = 0;
        int have_size = 0;
        for (unsigned i = 0; extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
            if (i > 64)
                return CUDA_ERROR_INVALID_VALUE;
            if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER)
                pbuf = extra[i + 1];
            else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE && extra[i + 1]) {
                size = *(const size_t *)extra[i + 1];
                have_size = 1;
            } else
                return CUDA_ERROR_INVALID_VALUE;
        }
        if (!pbuf || !have_size || size < l->total || size > MAX_PARAM_BYTES)
            return CUDA_ERROR_INVALID_VALUE;
        memcpy(buf, pbuf, l->total);
        *nbytes = l->total;
        return CUDA_SUCCESS;
    }
    if (l->n)
        return CUDA_ERROR_INVALID_VALUE;
    *nbytes = 0;
    return CUDA_SUCCESS;
}

static CUresult put_args(gw_req *q, const layout *l, void **kernelParams, void **extra)
{
    uint8_t buf[MAX_PARAM_BYTES];
    uint32_t n;
    CUresult rc = pack_args(l, kernelParams, extra, buf, &n);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_put_u32(q, n);
    gw_put_raw(q, buf, n);
    return CUDA_SUCCESS;
}

/* For graph kernel nodes (graph_nodes.c): as a launch packs them. */
CUresult gw_pack_args(CUfunction f, void **kernelParams, void **extra, uint8_t *buf, uint32_t *nbytes)
{
    if (kernelParams && extra)
        return CUDA_ERROR_INVALID_VALUE;
    const layout *l;
    CUresult rc = get_layout(f, &l);
    if (rc != CUDA_SUCCESS)
        return rc;
    return pack_args(l, kernelParams, extra, buf, nbytes);
}

static void put_config(gw_req *q, CUfunction f, const uint32_t dims[7], CUstream s, const CUlaunchAttribute *attrs,
                       unsigned nattrs)
{
    gw_put_u64(q, (uint64_t)(uintptr_t)f);
    gw_put_raw(q, dims, 7 * sizeof(uint32_t));
    gw_put_u64(q, (uint64_t)(uintptr_t)s);
    gw_put_u32(q, nattrs);
    if (nattrs)
        gw_put_raw(q, attrs, nattrs * sizeof *attrs); /* handles inside are gpuwire ids already */
}

/* What the driver refuses at once, refused here at once: launches are posted
 * without waiting, so anything found later surfaces at the next sync point. */
static CUresult check_config(const layout *l, const uint32_t d[7])
{
    int dev = gw_current_device();
    const int *lim = dev < 0 ? NULL : gw_device_launch_limits(dev);
    if (!lim)
        return CUDA_SUCCESS; /* context unknown here: the server checks it */
    for (int i = 0; i < 6; i++) {
        if (d[i] == 0)
            return CUDA_ERROR_INVALID_VALUE;
        if (lim[i] >= 0 && d[i] > (uint32_t)lim[i])
            return CUDA_ERROR_INVALID_VALUE;
    }
    uint64_t threads = (uint64_t)d[3] * d[4] * d[5];
    if (lim[6] >= 0 && threads > (uint64_t)lim[6])
        return CUDA_ERROR_INVALID_VALUE;
    if (l->max_threads && threads > l->max_threads)
        return CUDA_ERROR_INVALID_VALUE;
    if (lim[7] >= 0 && d[6] > (uint32_t)lim[7])
        return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

static CUresult launch(unsigned op, CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                       unsigned bz, unsigned shmem, CUstream s, void **kernelParams, void **extra,
                       const CUlaunchAttribute *attrs, unsigned nattrs)
{
    gw_stat_call(op);
    if (kernelParams && extra)
        return CUDA_ERROR_INVALID_VALUE;
    if (nattrs > MAX_LAUNCH_ATTRS || (nattrs && !attrs))
        return CUDA_ERROR_INVALID_VALUE;
    const layout *l;
    CUresult rc = get_layout(f, &l);
    if (rc != CUDA_SUCCESS)
        return rc;
    uint32_t dims[7] = {gx, gy, gz, bx, by, bz, shmem};
    rc = check_config(l, dims);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin_quiet(op);
    put_config(q, f, dims, s, attrs, nattrs);
    rc = put_args(q, l, kernelParams, extra);
    if (rc != CUDA_SUCCESS)
        return rc;
    return gw_req_post(q);
}

CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                                unsigned int by, unsigned int bz, unsigned int shmem, CUstream s,
                                void **kernelParams, void **extra)
{
    return launch(GW_OP_cuLaunchKernel, f, gx, gy, gz, bx, by, bz, shmem, s, kernelParams, extra, NULL, 0);
}

CUresult CUDAAPI cuLaunchKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                     unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem,
                                     CUstream s, void **kernelParams, void **extra)
{
    return launch(GW_OP_cuLaunchKernel_ptsz, f, gx, gy, gz, bx, by, bz, shmem, s, kernelParams, extra, NULL, 0);
}

CUresult CUDAAPI cuLaunchCooperativeKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                           unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem,
                                           CUstream s, void **kernelParams)
{
    return launch(GW_OP_cuLaunchCooperativeKernel, f, gx, gy, gz, bx, by, bz, shmem, s, kernelParams, NULL, NULL, 0);
}

CUresult CUDAAPI cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                                unsigned int bx, unsigned int by, unsigned int bz,
                                                unsigned int shmem, CUstream s, void **kernelParams)
{
    return launch(GW_OP_cuLaunchCooperativeKernel_ptsz, f, gx, gy, gz, bx, by, bz, shmem, s, kernelParams, NULL,
                  NULL, 0);
}

CUresult CUDAAPI cuLaunchKernelEx(const CUlaunchConfig *c, CUfunction f, void **kernelParams, void **extra)
{
    if (!c)
        return CUDA_ERROR_INVALID_VALUE;
    return launch(GW_OP_cuLaunchKernelEx, f, c->gridDimX, c->gridDimY, c->gridDimZ, c->blockDimX, c->blockDimY,
                  c->blockDimZ, c->sharedMemBytes, c->hStream, kernelParams, extra, c->attrs, c->numAttrs);
}

CUresult CUDAAPI cuLaunchKernelEx_ptsz(const CUlaunchConfig *c, CUfunction f, void **kernelParams, void **extra)
{
    if (!c)
        return CUDA_ERROR_INVALID_VALUE;
    return launch(GW_OP_cuLaunchKernelEx_ptsz, f, c->gridDimX, c->gridDimY, c->gridDimZ, c->blockDimX,
                  c->blockDimY, c->blockDimZ, c->sharedMemBytes, c->hStream, kernelParams, extra, c->attrs,
                  c->numAttrs);
}

/* Cluster occupancy queries take a launch configuration too. */
static CUresult cluster_query(unsigned op, int *out, CUfunction f, const CUlaunchConfig *c)
{
    gw_stat_call(op);
    if (!out || !c || c->numAttrs > MAX_LAUNCH_ATTRS || (c->numAttrs && !c->attrs))
        return CUDA_ERROR_INVALID_VALUE;
    gw_req *q = gw_req_begin_quiet(op);
    uint32_t dims[7] = {c->gridDimX, c->gridDimY, c->gridDimZ, c->blockDimX, c->blockDimY, c->blockDimZ,
                        c->sharedMemBytes};
    put_config(q, f, dims, c->hStream, c->attrs, c->numAttrs);
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        *out = (int)gw_get_u32(r);
        rc = gw_rep_status(r, rc);
    }
    gw_rep_end(r);
    return rc;
}

CUresult CUDAAPI cuOccupancyMaxActiveClusters(int *numClusters, CUfunction func, const CUlaunchConfig *config)
{ return cluster_query(GW_OP_cuOccupancyMaxActiveClusters, numClusters, func, config); }
CUresult CUDAAPI cuOccupancyMaxPotentialClusterSize(int *clusterSize, CUfunction func, const CUlaunchConfig *config)
{ return cluster_query(GW_OP_cuOccupancyMaxPotentialClusterSize, clusterSize, func, config); }

/* ---- stream capture: while no capture is under way anywhere in the process
 * (they all begin and end through the client), no stream is capturing ---- */

static atomic_int captures;

int gw_captures_active(void) { return atomic_load(&captures) > 0; }

CUresult CUDAAPI cuStreamBeginCapture_v2(CUstream s, CUstreamCaptureMode mode)
{
    CUresult rc = gwf_cuStreamBeginCapture_v2(s, mode);
    if (rc == CUDA_SUCCESS)
        atomic_fetch_add(&captures, 1);
    return rc;
}

CUresult CUDAAPI cuStreamBeginCapture_v2_ptsz(CUstream s, CUstreamCaptureMode mode)
{
    CUresult rc = gwf_cuStreamBeginCapture_v2_ptsz(s, mode);
    if (rc == CUDA_SUCCESS)
        atomic_fetch_add(&captures, 1);
    return rc;
}

/* Ending is counted whatever the outcome: a failed end still ends the capture
 * (and an end without a begin leaves the count where it was). */
static void capture_ended(void)
{
    int n = atomic_load(&captures);
    while (n > 0 && !atomic_compare_exchange_weak(&captures, &n, n - 1))
        ;
}

CUresult CUDAAPI cuStreamEndCapture(CUstream s, CUgraph *g)
{
    CUresult rc = gwf_cuStreamEndCapture(s, g);
    capture_ended();
    return rc;
}

CUresult CUDAAPI cuStreamEndCapture_ptsz(CUstream s, CUgraph *g)
{
    CUresult rc = gwf_cuStreamEndCapture_ptsz(s, g);
    capture_ended();
    return rc;
}

static CUresult is_capturing(unsigned op, int ptsz, CUstream s, CUstreamCaptureStatus *st)
{
    if (st && !atomic_load(&captures) && gw_initialized()) {
        gw_stat_call(op);
        *st = CU_STREAM_CAPTURE_STATUS_NONE;
        return CUDA_SUCCESS;
    }
    return ptsz ? gwf_cuStreamIsCapturing_ptsz(s, st) : gwf_cuStreamIsCapturing(s, st);
}

CUresult CUDAAPI cuStreamIsCapturing(CUstream s, CUstreamCaptureStatus *st)
{ return is_capturing(GW_OP_cuStreamIsCapturing, 0, s, st); }
CUresult CUDAAPI cuStreamIsCapturing_ptsz(CUstream s, CUstreamCaptureStatus *st)
{ return is_capturing(GW_OP_cuStreamIsCapturing_ptsz, 1, s, st); }
