/* gpuwire client: the driver's private "export tables" (cuGetExportTable).
 *
 * cudart, cuBLAS and cuDNN fetch UUID-keyed tables of function pointers from
 * the driver. gpuwire serves them entirely in the client: every slot either
 * answers locally (context-local storage, tool hooks, the integrity check) or
 * is expressed through public driver calls (cuModuleLoadData, ...), which in
 * the client library are gpuwire's own forwarding implementations.
 * docs/export-tables.md describes each table, its slots and how they were
 * established.
 *
 * Environment: GPUWIRE_DEBUG set -> an unknown table UUID is reported once on
 * stderr; GPUWIRE_DEBUG=2 (or higher) -> every table lookup and slot call is
 * traced on stderr. */
#ifndef GPUWIRE_EXPORT_TABLES_H
#define GPUWIRE_EXPORT_TABLES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <cuda.h>

/* cuGetExportTable's implementation. Known UUID: *ppExportTable = the table,
 * CUDA_SUCCESS. Unknown UUID: *ppExportTable = NULL, CUDA_ERROR_INVALID_VALUE
 * (what the real driver answers, see the doc). NULL arguments:
 * CUDA_ERROR_INVALID_VALUE. Thread-safe; tables are static and never move. */
CUresult gw_export_table_get(const void **ppExportTable, const CUuuid *pExportTableId);

/* The driver's compile cache (table da9151d3, nvrtc_cache.c): NVRTC's
 * compiled PTX and cubins kept in a folder on the client. Figures for
 * GPUWIRE_STATS. */
typedef struct gw_compile_cache_figures {
    atomic_ullong lookups, hits, hit_bytes, stores, stored_bytes, discarded, evicted;
} gw_compile_cache_figures;
gw_compile_cache_figures *gw_compile_cache_stats(void);
extern const void *const gw_compile_cache_table[7];

/* The tools' module table (6e163fbe, tools_module_table.c), which cuFFT 13 asks for. */
extern const void *const gw_tools_module_table[];

/* Call when a context is about to be destroyed (cuCtxDestroy, the primary
 * context's last cuDevicePrimaryCtxRelease, cuDevicePrimaryCtxReset), BEFORE
 * its handle can be reused: runs the destructors cudart registered for that
 * context through context-local storage, as the driver does, and forgets the
 * context's entries. Destructors run without any gpuwire lock held, so they
 * may call back into the driver API. Safe for a context with no entries. */
void gw_export_tables_context_destroyed(CUcontext ctx);

/* Optional hook, defined (strongly) elsewhere in the client if it can name a
 * device's primary context without creating it (gpuwire names handles on the
 * client). CUDART_INTERFACE slot 2 asks for the primary context's handle of a
 * device without activating it; with the hook absent it falls back to
 * cuDevicePrimaryCtxRetain + cuDevicePrimaryCtxRelease, which makes the server
 * create (and drop) the real context. Return CUDA_SUCCESS and the handle. */
CUresult gw_primary_ctx_handle(CUdevice dev, CUcontext *pctx) __attribute__((weak));

/* The integrity-check digest (INTEGRITY_CHECK slot 1), exposed for tests.
 * It is HMAC-MD2 over the fields below followed by one record per device. */
typedef struct gw_integrity_device {
    CUuuid uuid;
    int32_t pci_domain;
    int32_t pci_bus;
    int32_t pci_device;
} gw_integrity_device;

void gw_export_integrity_digest(uint32_t version, uint64_t unix_seconds,
                                uint32_t driver_version, uint32_t pid, uint32_t thread,
                                const void *cudart_table, const void *integrity_table,
                                const void *check_fn, const gw_integrity_device *devs,
                                size_t ndevs, uint64_t out[2]);

#endif
