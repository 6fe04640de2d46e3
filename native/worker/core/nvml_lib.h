/* The worker's NVML library (nvml_lib.c): the server's libnvidia-ml.so.1 (or
 * the stand-in's), loaded at the first NVML request, with this client's own
 * processes filtered in place of NVML's process queries, and NVML's reply
 * format. The NVML handlers (generated) sit above it. */
#ifndef GW_WORKER_NVML_LIB_H
#define GW_WORKER_NVML_LIB_H

#include <nvml.h>

#include "../../generated/nvml_ops.h"
#include "core.h"

void gw_nvml_set_path(const char *path);            /* --nvml PATH */
void *gw_nvml_fn(gw_call *c, unsigned op);          /* NULL after answering why not */
void gw_nvml_reply(gw_call *c, nvmlReturn_t res);   /* i32 0, then u32 res; outputs follow */

#endif
