/* The worker's NVML library (nvml_lib.c): the server's libnvidia-ml.so.1 (or
 * the stand-in's), loaded at the first NVML request, with this client's own
 * processes filtered in place of NVML's process queries, and NVML's reply
 * format. The NVML handlers (generated) sit above it. */
#ifndef GW_WORKER_NVML_LIB_H
#define GW_WORKER_NVML_LIB_H

#include <nvml.h>

#include "../../nvml/nvml_extra.h"

#include "../../generated/nvml_ops.h"
#include "core.h"

void gw_nvml_set_path(const char *path);            /* --nvml PATH */
void *gw_nvml_fn(gw_call *c, unsigned op);          /* NULL after answering why not */
void gw_nvml_reply(gw_call *c, nvmlReturn_t res);   /* i32 0, then u32 res; outputs follow */
/* A symbol of the NVML library by name (loading it first); *no_library 1 if it could not be loaded. */
void *gw_nvml_lib_sym(const char *name, int *no_library);
/* A process list (elem-byte entries, pid first) with only this client's processes, NVML's count rules kept. */
typedef nvmlReturn_t (*gw_nvml_list_fn)(nvmlDevice_t, unsigned *, void *);
nvmlReturn_t gw_nvml_own_list(gw_nvml_list_fn real, size_t elem, nvmlDevice_t dev, unsigned *count, void *infos);

#endif
