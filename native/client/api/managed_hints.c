/* Managed memory's hints: cuMemPrefetchAsync and cuMemAdvise, and the
 * attributes cuMemRangeGetAttribute(s) read back. Pages move between the
 * client's mirror and the server at CUDA calls (state/mapped.c), not where a
 * hint says, so the hints change no result: they are checked as the driver
 * checks them (a managed range, a valid location), remembered per range and
 * answered here. The server's GPU migrates on its own faults. */
#include <pthread.h>
#include <string.h>

#include "api.h"

#define MAX_HINTED 256

typedef struct hint {
    uint64_t base;
    int read_mostly;
    CUmemLocation preferred, last_prefetch;
    unsigned accessed_by; /* bit per device ordinal */
} hint;

static hint hints[MAX_HINTED];
static int nhints;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static const CUmemLocation NOWHERE = {CU_MEM_LOCATION_TYPE_INVALID, 0};

/* The managed range holding [p, p+n): its base, or 0. */
static uint64_t managed_base(CUdeviceptr p, size_t n)
{
    uint64_t base = 0;
    unsigned kind = 0;
    if (!n || !gw_mapped_lookup(p, n, &base, &kind, NULL) || kind != GW_MAPPED_MANAGED)
        return 0;
    return base;
}

static hint *hint_of(uint64_t base) /* lock held; NULL if the table is full */
{
    for (int i = 0; i < nhints; i++)
        if (hints[i].base == base)
            return &hints[i];
    if (nhints == MAX_HINTED)
        return NULL;
    hints[nhints] = (hint){base, 0, NOWHERE, NOWHERE, 0};
    return &hints[nhints++];
}

static int location_ok(CUmemLocation l)
{
    int count = 0;
    if (l.type == CU_MEM_LOCATION_TYPE_HOST || l.type == CU_MEM_LOCATION_TYPE_HOST_NUMA ||
        l.type == CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT)
        return 1;
    return l.type == CU_MEM_LOCATION_TYPE_DEVICE && cuDeviceGetCount(&count) == CUDA_SUCCESS && l.id >= 0 &&
           l.id < count;
}

static CUresult prefetch(CUdeviceptr p, size_t n, CUmemLocation l)
{
    if (!gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    uint64_t base = managed_base(p, n);
    if (!base || !location_ok(l))
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    hint *h = hint_of(base);
    if (h)
        h->last_prefetch = l;
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}

static CUmemLocation of_device(CUdevice d)
{
    CUmemLocation l = {CU_MEM_LOCATION_TYPE_DEVICE, d};
    if (d == CU_DEVICE_CPU)
        l.type = CU_MEM_LOCATION_TYPE_HOST, l.id = 0;
    return l;
}

#undef cuMemPrefetchAsync
#undef cuMemPrefetchAsync_ptsz
#undef cuMemAdvise
CUresult CUDAAPI cuMemPrefetchAsync(CUdeviceptr p, size_t n, CUdevice d, CUstream s);
CUresult CUDAAPI cuMemPrefetchAsync_ptsz(CUdeviceptr p, size_t n, CUdevice d, CUstream s);
CUresult CUDAAPI cuMemAdvise(CUdeviceptr p, size_t n, CUmem_advise advice, CUdevice d);

CUresult CUDAAPI cuMemPrefetchAsync(CUdeviceptr p, size_t n, CUdevice d, CUstream s)
{ (void)s; gw_stat_call(GW_OP_cuMemPrefetchAsync); return prefetch(p, n, of_device(d)); }
CUresult CUDAAPI cuMemPrefetchAsync_ptsz(CUdeviceptr p, size_t n, CUdevice d, CUstream s)
{ (void)s; gw_stat_call(GW_OP_cuMemPrefetchAsync_ptsz); return prefetch(p, n, of_device(d)); }
CUresult CUDAAPI cuMemPrefetchAsync_v2(CUdeviceptr p, size_t n, CUmemLocation l, unsigned int flags, CUstream s)
{ (void)s; gw_stat_call(GW_OP_cuMemPrefetchAsync_v2); return flags ? CUDA_ERROR_INVALID_VALUE : prefetch(p, n, l); }
CUresult CUDAAPI cuMemPrefetchAsync_v2_ptsz(CUdeviceptr p, size_t n, CUmemLocation l, unsigned int flags, CUstream s)
{ (void)s; gw_stat_call(GW_OP_cuMemPrefetchAsync_v2_ptsz); return flags ? CUDA_ERROR_INVALID_VALUE : prefetch(p, n, l); }

static CUresult advise(CUdeviceptr p, size_t n, CUmem_advise advice, CUmemLocation l)
{
    if (!gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    uint64_t base = managed_base(p, n);
    int needs_location = advice == CU_MEM_ADVISE_SET_PREFERRED_LOCATION || advice == CU_MEM_ADVISE_SET_ACCESSED_BY ||
                         advice == CU_MEM_ADVISE_UNSET_ACCESSED_BY;
    if (!base || advice < CU_MEM_ADVISE_SET_READ_MOSTLY || advice > CU_MEM_ADVISE_UNSET_ACCESSED_BY ||
        (needs_location && !location_ok(l)))
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    hint *h = hint_of(base);
    if (h) {
        unsigned bit = l.type == CU_MEM_LOCATION_TYPE_DEVICE && l.id >= 0 && l.id < 32 ? 1u << l.id : 0;
        switch (advice) {
        case CU_MEM_ADVISE_SET_READ_MOSTLY: h->read_mostly = 1; break;
        case CU_MEM_ADVISE_UNSET_READ_MOSTLY: h->read_mostly = 0; break;
        case CU_MEM_ADVISE_SET_PREFERRED_LOCATION: h->preferred = l; break;
        case CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION: h->preferred = NOWHERE; break;
        case CU_MEM_ADVISE_SET_ACCESSED_BY: h->accessed_by |= bit; break;
        case CU_MEM_ADVISE_UNSET_ACCESSED_BY: h->accessed_by &= ~bit; break;
        }
    }
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemAdvise(CUdeviceptr p, size_t n, CUmem_advise advice, CUdevice d)
{ gw_stat_call(GW_OP_cuMemAdvise); return advise(p, n, advice, of_device(d)); }
CUresult CUDAAPI cuMemAdvise_v2(CUdeviceptr p, size_t n, CUmem_advise advice, CUmemLocation l)
{ gw_stat_call(GW_OP_cuMemAdvise_v2); return advise(p, n, advice, l); }

/* A location as the old attributes give it: a device ordinal, CU_DEVICE_CPU or CU_DEVICE_INVALID. */
static int32_t as_device(CUmemLocation l)
{
    if (l.type == CU_MEM_LOCATION_TYPE_DEVICE)
        return l.id;
    return l.type == CU_MEM_LOCATION_TYPE_INVALID ? CU_DEVICE_INVALID : CU_DEVICE_CPU;
}

static CUresult range_attr(void *data, size_t size, CUmem_range_attribute a, const hint *h)
{
    if (!data)
        return CUDA_ERROR_INVALID_VALUE;
    if (a == CU_MEM_RANGE_ATTRIBUTE_ACCESSED_BY) {
        if (size % 4)
            return CUDA_ERROR_INVALID_VALUE;
        int32_t *out = data;
        size_t k = 0;
        for (int d = 0; d < 32 && k < size / 4; d++)
            if (h->accessed_by & (1u << d))
                out[k++] = d;
        for (; k < size / 4; k++)
            out[k] = CU_DEVICE_INVALID;
        return CUDA_SUCCESS;
    }
    if (size != 4)
        return CUDA_ERROR_INVALID_VALUE;
    int32_t v;
    switch (a) {
    case CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY: v = h->read_mostly; break;
    case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION: v = as_device(h->preferred); break;
    case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION: v = as_device(h->last_prefetch); break;
    case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION_TYPE: v = h->preferred.type; break;
    case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION_ID: v = h->preferred.id; break;
    case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_TYPE: v = h->last_prefetch.type; break;
    case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_ID: v = h->last_prefetch.id; break;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
    memcpy(data, &v, 4);
    return CUDA_SUCCESS;
}

/* The range's hints (none: the defaults), copied out under the lock. */
static CUresult hints_for(CUdeviceptr p, size_t n, hint *out)
{
    if (!gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    uint64_t base = managed_base(p, n);
    if (!base)
        return CUDA_ERROR_INVALID_VALUE;
    *out = (hint){base, 0, NOWHERE, NOWHERE, 0};
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nhints; i++)
        if (hints[i].base == base)
            *out = hints[i];
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemRangeGetAttribute(void *data, size_t size, CUmem_range_attribute a, CUdeviceptr p, size_t n)
{
    gw_stat_call(GW_OP_cuMemRangeGetAttribute);
    hint h;
    CUresult rc = hints_for(p, n, &h);
    return rc == CUDA_SUCCESS ? range_attr(data, size, a, &h) : rc;
}

CUresult CUDAAPI cuMemRangeGetAttributes(void **data, size_t *sizes, CUmem_range_attribute *attrs, size_t k,
                                         CUdeviceptr p, size_t n)
{
    gw_stat_call(GW_OP_cuMemRangeGetAttributes);
    if (!data || !sizes || !attrs || !k)
        return CUDA_ERROR_INVALID_VALUE;
    hint h;
    CUresult rc = hints_for(p, n, &h);
    for (size_t i = 0; rc == CUDA_SUCCESS && i < k; i++)
        rc = range_attr(data[i], sizes[i], attrs[i], &h);
    return rc;
}

/* Forwarded; the client notes where the memory is attached now: attached to
 * the host or one stream, the host may touch it while other kernels run
 * (state/mapped.c faults such a touch of globally attached memory). */
CUresult CUDAAPI cuStreamAttachMemAsync(CUstream hStream, CUdeviceptr dptr, size_t length, unsigned int flags)
{
    CUresult rc = gwf_cuStreamAttachMemAsync(hStream, dptr, length, flags);
    if (rc == CUDA_SUCCESS)
        gw_mapped_set_attach(dptr, flags);
    return rc;
}

CUresult CUDAAPI cuStreamAttachMemAsync_ptsz(CUstream hStream, CUdeviceptr dptr, size_t length, unsigned int flags)
{
    CUresult rc = gwf_cuStreamAttachMemAsync_ptsz(hStream, dptr, length, flags);
    if (rc == CUDA_SUCCESS)
        gw_mapped_set_attach(dptr, flags);
    return rc;
}
