/* The worker's NVML side: the server's libnvidia-ml.so.1 (or the stand-in's),
 * loaded at the first NVML request, and NVML's reply format. */
#ifndef GW_WORKER_NVML_H
#define GW_WORKER_NVML_H

#include <nvml.h>

#include "../generated/nvml_ops.h"
#include "worker.h"

extern const gw_handler gw_nvml_dispatch[GW_NVML_OP_COUNT]; /* generated */

void gw_nvml_set_path(const char *path);            /* --nvml PATH */
void *gw_nvml_fn(gw_call *c, unsigned op);          /* NULL after answering why not */
void gw_nvml_reply(gw_call *c, nvmlReturn_t res);   /* i32 0, then u32 res; outputs follow */
int gw_nvml_valid_op(unsigned op);
void gw_nvml_run(gw_call *c);

#endif
