/* The NVML handlers (generated: native/generated/nvml_worker_dispatch.c) on
 * the worker's NVML library (core/nvml_lib.h). */
#ifndef GW_WORKER_NVML_H
#define GW_WORKER_NVML_H

#include "../core/nvml_lib.h"
#include "handlers.h"

extern const gw_handler gw_nvml_dispatch[GW_NVML_OP_COUNT]; /* generated */

#endif
