/* Copies between the client's bytes (carried in the request or the reply) and
 * device memory. */
#include <stdlib.h>
#include <string.h>

#include "../../generated/wire_props.h"
#include "cas_store.h"
#include "handlers.h"

typedef CUresult (*htod_fn)(CUdeviceptr, const void *, size_t);
typedef CUresult (*htod_async_fn)(CUdeviceptr, const void *, size_t, CUstream);
typedef CUresult (*dtoh_fn)(void *, CUdeviceptr, size_t);
typedef CUresult (*dtoh_async_fn)(void *, CUdeviceptr, size_t, CUstream);
typedef CUresult (*sync_fn)(CUstream);

static int is_async(unsigned op)
{
    return op == GW_OP_cuMemcpyHtoDAsync_v2 || op == GW_OP_cuMemcpyHtoDAsync_v2_ptsz ||
           op == GW_OP_cuMemcpyDtoHAsync_v2 || op == GW_OP_cuMemcpyDtoHAsync_v2_ptsz ||
           op == GW_OP_cuMemcpy2DAsync_v2 || op == GW_OP_cuMemcpy2DAsync_v2_ptsz;
}

/* Device-to-host into worker memory must finish before the bytes are sent. */
static CUresult sync_stream(gw_call *c, CUstream s)
{
    sync_fn f = (sync_fn)gw_driver_sym(gw_op_per_thread(c->h.op) ? GW_OP_cuStreamSynchronize_ptsz : GW_OP_cuStreamSynchronize);
    return f ? f(s) : CUDA_ERROR_NOT_SUPPORTED;
}

/* HTOD: u64 dst, u64 stream id, bytes */
static void htod(gw_call *c)
{
    gw_htod_req q = {0};
    CUstream s = NULL;
    if (gw_in_fields(c, GW_HTOD_REQ_SIZE, gw_htod_req_get(gw_in_next(c), gw_in_left(c), &q)))
        s = gw_handle_lookup(c, GW_HT_CUstream, q.stream);
    CUdeviceptr dst = q.dst;
    size_t n = gw_in_left(c);
    const void *src = gw_in_view(c, n);
    if (!gw_args_ok(c))
        return;
    void *f = gw_driver_fn(c, c->h.op);
    if (!f)
        return;
    CUresult r = is_async(c->h.op) ? ((htod_async_fn)f)(dst, src, n, s) : ((htod_fn)f)(dst, src, n);
    /* a lane's page-locked buffer is not reused before the GPU has read it */
    if (r == CUDA_SUCCESS && is_async(c->h.op))
        gw_pinned_fence(src, !s && gw_op_per_thread(c->h.op) ? CU_STREAM_PER_THREAD : s);
    gw_reply_result(c, r);
    /* a cold upload sent plain: its chunk stored for next time, off this job
     * (the background writer hashes its own copy; skipped while it is behind) */
    if ((c->h.flags & GW_F_STORE) && r == CUDA_SUCCESS && n && n <= GW_COPY_CHUNK && gw_cas_enabled())
        gw_cas_put_later(src, n);
}

static CUresult dtoh_into(gw_call *c, void *f, void *buf, CUdeviceptr src, uint64_t n, CUstream s)
{
    if (!is_async(c->h.op))
        return ((dtoh_fn)f)(buf, src, n);
    CUresult r = ((dtoh_async_fn)f)(buf, src, n, s);
    return r == CUDA_SUCCESS ? sync_stream(c, s) : r;
}

/* A piece whose bytes go on a lane (flag GW_F_LANE; docs/protocol.md "Lanes"):
 * its lane gets exactly one frame, tagged, whatever happens short of a
 * malformed request (which ends the session); the reply carries the result. */
static void dtoh_on_lane(gw_call *c, CUdeviceptr src, uint64_t n, CUstream s, uint32_t k, uint32_t tag)
{
    if (!c->bad && !gw_lane_open(k))
        gw_call_fail(c, "%s: lane %u is not open", gw_op_name(c->h.op), k);
    if (c->bad)
        return;
    uint8_t *buf = NULL;
    CUresult r = c->err;
    void *f = NULL;
    if (gw_args_ok(c)) {
        f = gw_driver_fn(c, c->h.op); /* NULL: answered CUDA_ERROR_NOT_SUPPORTED */
        r = f ? CUDA_SUCCESS : CUDA_ERROR_NOT_SUPPORTED;
    } else if (c->bad) {
        return; /* trailing bytes: the session ends */
    }
    if (f) {
        buf = gw_lane_buffer();
        r = buf ? dtoh_into(c, f, buf, src, n, s) : CUDA_ERROR_OUT_OF_MEMORY;
        if (r != CUDA_SUCCESS)
            gw_reply_result(c, r);
    }
    if (r != CUDA_SUCCESS) {
        free(buf);
        buf = NULL;
    }
    if (gw_lane_put(k, tag, buf, (uint32_t)n) && r == CUDA_SUCCESS)
        gw_reply_result(c, CUDA_ERROR_UNKNOWN); /* the lane broke: its bytes cannot go */
    else if (r == CUDA_SUCCESS)
        gw_reply_result(c, CUDA_SUCCESS);
}

/* DTOH: u64 src, u64 n, u64 stream id -> DTOH reply: i32 result, bytes. With
 * GW_F_LANE the fields are LANE_DTOH's: those, then u32 lane, u32 tag. */
static void dtoh(gw_call *c)
{
    int lane = (c->h.flags & GW_F_LANE) != 0;
    gw_lane_dtoh_req q = {0};
    int ok;
    if (lane) {
        ok = gw_in_fields(c, GW_LANE_DTOH_REQ_SIZE, gw_lane_dtoh_req_get(gw_in_next(c), gw_in_left(c), &q));
    } else {
        gw_dtoh_req d = {0};
        ok = gw_in_fields(c, GW_DTOH_REQ_SIZE, gw_dtoh_req_get(gw_in_next(c), gw_in_left(c), &d));
        q.src = d.src, q.n = d.n, q.stream = d.stream;
    }
    CUdeviceptr src = q.src;
    uint64_t n = q.n;
    CUstream s = ok ? gw_handle_lookup(c, GW_HT_CUstream, q.stream) : NULL;
    if (!c->bad && n > GW_COPY_CHUNK)
        gw_call_fail(c, "%s: %llu bytes in one piece is over the chunk size", gw_op_name(c->h.op),
                     (unsigned long long)n);
    if (lane) {
        dtoh_on_lane(c, src, n, s, q.lane, q.tag);
        return;
    }
    if (!gw_args_ok(c))
        return;
    void *f = gw_driver_fn(c, c->h.op);
    if (!f)
        return;
    /* the bytes land straight in the reply, after its fields */
    uint8_t *fields = gw_reply_start(c, GW_DTOH_REP_SIZE);
    if (!fields)
        return;
    gw_dtoh_rep_put(fields, &(gw_dtoh_rep){.result = CUDA_SUCCESS});
    void *buf = gw_reply_reserve(c, n);
    if (!buf) {
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
        return;
    }
    CUresult r = dtoh_into(c, f, buf, src, n, s);
    if (r != CUDA_SUCCESS)
        gw_reply_result(c, r); /* drops the reserved bytes */
}

void gw_h_cuMemcpyHtoD_v2(gw_call *c) { htod(c); }
void gw_h_cuMemcpyHtoD_v2_ptds(gw_call *c) { htod(c); }
void gw_h_cuMemcpyHtoDAsync_v2(gw_call *c) { htod(c); }
void gw_h_cuMemcpyHtoDAsync_v2_ptsz(gw_call *c) { htod(c); }
void gw_h_cuMemcpyDtoH_v2(gw_call *c) { dtoh(c); }
void gw_h_cuMemcpyDtoH_v2_ptds(gw_call *c) { dtoh(c); }
void gw_h_cuMemcpyDtoHAsync_v2(gw_call *c) { dtoh(c); }
void gw_h_cuMemcpyDtoHAsync_v2_ptsz(gw_call *c) { dtoh(c); }

/* One side of a band (MEMCPY_BAND_SIDE in codegen/protocol.txt): an array by
 * its name at x bytes, y, z, or linear memory. */
static void band_side(gw_call *c, CUmemorytype *type, CUdeviceptr *dev, size_t *pitch, CUarray *arr, size_t *x,
                      size_t *y, size_t *z)
{
    gw_memcpy_band_side_req q = {0};
    if (!gw_in_part(c, gw_memcpy_band_side_req, &q))
        return;
    *type = (CUmemorytype)q.memory_type;
    _Static_assert(GW_MEMORYTYPE_ARRAY == CU_MEMORYTYPE_ARRAY, "a band side's array type");
    if (q.memory_type == GW_MEMORYTYPE_ARRAY) {
        gw_memcpy_band_side_req_array a = {0};
        if (!gw_in_part(c, gw_memcpy_band_side_req_array, &a))
            return;
        *arr = (CUarray)gw_handle_lookup(c, GW_HT_CUarray, a.array);
        *pitch = a.pitch;
        *x = a.x;
        *y = a.y;
        *z = a.z;
    } else {
        gw_memcpy_band_side_req_linear l = {0};
        if (!gw_in_part(c, gw_memcpy_band_side_req_linear, &l))
            return;
        *dev = l.address;
        *pitch = l.pitch;
    }
}

/* The 3D copy a 2D band op becomes when a side is an array: only it has a z. */
static unsigned op_3d(unsigned op)
{
    switch (op) {
    case GW_OP_cuMemcpy2D_v2_ptds: case GW_OP_cuMemcpy2DUnaligned_v2_ptds: return GW_OP_cuMemcpy3D_v2_ptds;
    case GW_OP_cuMemcpy2DAsync_v2: return GW_OP_cuMemcpy3DAsync_v2;
    case GW_OP_cuMemcpy2DAsync_v2_ptsz: return GW_OP_cuMemcpy3DAsync_v2_ptsz;
    default: return GW_OP_cuMemcpy3D_v2;
    }
}

/* A band of rows (MEMCPY2D_BAND): host sides are packed (pitch = width) here. */
static void copy2d(gw_call *c)
{
    gw_memcpy2d_band_req q = {0};
    CUstream s = gw_in_part(c, gw_memcpy2d_band_req, &q) ? gw_handle_lookup(c, GW_HT_CUstream, q.stream) : NULL;
    CUDA_MEMCPY3D m = {0};
    band_side(c, &m.srcMemoryType, &m.srcDevice, &m.srcPitch, &m.srcArray, &m.srcXInBytes, &m.srcY, &m.srcZ);
    band_side(c, &m.dstMemoryType, &m.dstDevice, &m.dstPitch, &m.dstArray, &m.dstXInBytes, &m.dstY, &m.dstZ);
    gw_memcpy2d_band_req_after_dst wr = {0};
    gw_in_part(c, gw_memcpy2d_band_req_after_dst, &wr);
    m.WidthInBytes = wr.width;
    m.Height = wr.rows;
    m.Depth = 1;
    m.srcHeight = m.dstHeight = m.Height;
    if (c->bad)
        return;
    int sh = m.srcMemoryType == CU_MEMORYTYPE_HOST, dh = m.dstMemoryType == CU_MEMORYTYPE_HOST;
    int sa = m.srcMemoryType == CU_MEMORYTYPE_ARRAY, da = m.dstMemoryType == CU_MEMORYTYPE_ARRAY;
    if ((!sh && !sa && m.srcMemoryType != CU_MEMORYTYPE_DEVICE) ||
        (!dh && !da && m.dstMemoryType != CU_MEMORYTYPE_DEVICE) || (sh && dh)) {
        gw_call_fail(c, "%s: memory types %u -> %u", gw_op_name(c->h.op), m.srcMemoryType, m.dstMemoryType);
        return;
    }
    uint64_t bytes = m.WidthInBytes * m.Height;
    if (m.Height && (bytes / m.Height != m.WidthInBytes || bytes > GW_COPY_CHUNK)) {
        gw_call_fail(c, "%s: band of %llu x %llu bytes is over the chunk size", gw_op_name(c->h.op),
                     (unsigned long long)m.WidthInBytes, (unsigned long long)m.Height);
        return;
    }
    if (sh) {
        const void *src = gw_in_view(c, bytes);
        void *aligned = src ? gw_scratch(c, bytes) : NULL;
        if (aligned)
            memcpy(aligned, src, bytes);
        m.srcHost = aligned;
        m.srcPitch = m.WidthInBytes;
    }
    void *dst = NULL;
    if (dh) {
        dst = gw_scratch(c, bytes);
        m.dstHost = dst;
        m.dstPitch = m.WidthInBytes;
    }
    if (!gw_args_ok(c))
        return;
    if ((sh && !m.srcHost) || (dh && !dst)) {
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
        return;
    }
    CUresult r;
    if (sa || da) {
        void *f = gw_driver_fn(c, op_3d(c->h.op));
        if (!f)
            return;
        if (is_async(c->h.op)) {
            r = ((CUresult(*)(const CUDA_MEMCPY3D *, CUstream))f)(&m, s);
            if (r == CUDA_SUCCESS && dh)
                r = sync_stream(c, s);
        } else {
            r = ((CUresult(*)(const CUDA_MEMCPY3D *))f)(&m);
        }
    } else { /* the 2D call, as before arrays: its own checks on the real driver */
        CUDA_MEMCPY2D m2 = {0};
        m2.srcMemoryType = m.srcMemoryType;
        m2.srcHost = m.srcHost;
        m2.srcDevice = m.srcDevice;
        m2.srcPitch = m.srcPitch;
        m2.dstMemoryType = m.dstMemoryType;
        m2.dstHost = m.dstHost;
        m2.dstDevice = m.dstDevice;
        m2.dstPitch = m.dstPitch;
        m2.WidthInBytes = m.WidthInBytes;
        m2.Height = m.Height;
        void *f = gw_driver_fn(c, c->h.op);
        if (!f)
            return;
        if (is_async(c->h.op)) {
            r = ((CUresult(*)(const CUDA_MEMCPY2D *, CUstream))f)(&m2, s);
            if (r == CUDA_SUCCESS && dh)
                r = sync_stream(c, s);
        } else {
            r = ((CUresult(*)(const CUDA_MEMCPY2D *))f)(&m2);
        }
    }
    gw_reply_result(c, r);
    if (r == CUDA_SUCCESS && dh)
        gw_reply_bytes(c, dst, bytes);
}

void gw_h_cuMemcpy2D_v2(gw_call *c) { copy2d(c); }
void gw_h_cuMemcpy2D_v2_ptds(gw_call *c) { copy2d(c); }
void gw_h_cuMemcpy2DUnaligned_v2(gw_call *c) { copy2d(c); }
void gw_h_cuMemcpy2DUnaligned_v2_ptds(gw_call *c) { copy2d(c); }
void gw_h_cuMemcpy2DAsync_v2(gw_call *c) { copy2d(c); }
void gw_h_cuMemcpy2DAsync_v2_ptsz(gw_call *c) { copy2d(c); }
