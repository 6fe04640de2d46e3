/* cuGetProcAddress and cuGetExportTable, answered in the client. */
#include <string.h>

#include "api.h"
#include "../private/export_tables.h"
#include "../procs.h"

/* The newest variant of `symbol` no newer than cudaVersion; status tells why not. */
static CUresult lookup(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                       CUdriverProcAddressQueryResult *status)
{
    if (!symbol || !pfn)
        return CUDA_ERROR_INVALID_VALUE;
    if (flags & ~(cuuint64_t)(CU_GET_PROC_ADDRESS_LEGACY_STREAM | CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM))
        return CUDA_ERROR_INVALID_VALUE;
    int want_ptds = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
    const gw_proc *best = NULL, *best_ptds = NULL;
    int found = 0;
    for (unsigned i = 0; i < gw_procs_count; i++) {
        const gw_proc *p = &gw_procs[i];
        if (strcmp(p->name, symbol))
            continue;
        found = 1;
        if (p->version > cudaVersion)
            continue;
        const gw_proc **slot = p->ptds ? &best_ptds : &best;
        if (!*slot || (*slot)->version < p->version)
            *slot = p;
    }
    /* a per-thread variant applies only if it is at least as new as the plain one */
    if (want_ptds && best_ptds && (!best || best_ptds->version >= best->version))
        best = best_ptds;
    *pfn = best ? best->fn : NULL;
    if (!best && gw_debug())
        gw_log("cuGetProcAddress(\"%s\", %d): %s", symbol, cudaVersion,
               found ? "no variant that old" : "not a driver function gpuwire knows");
    if (status)
        *status = best ? CU_GET_PROC_ADDRESS_SUCCESS
                       : found ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    return best ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

CUresult CUDAAPI cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                                     CUdriverProcAddressQueryResult *symbolStatus)
{
    gw_stat_call(GW_OP_cuGetProcAddress_v2);
    return lookup(symbol, pfn, cudaVersion, flags, symbolStatus);
}

#undef cuGetProcAddress
CUresult CUDAAPI cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags);
CUresult CUDAAPI cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags)
{
    gw_stat_call(GW_OP_cuGetProcAddress);
    return lookup(symbol, pfn, cudaVersion, flags, NULL);
}

CUresult CUDAAPI cuGetExportTable(const void **ppExportTable, const CUuuid *pExportTableId)
{
    gw_stat_call(GW_OP_cuGetExportTable);
    return gw_export_table_get(ppExportTable, pExportTableId);
}
