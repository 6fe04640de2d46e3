/* Internal API of gpuwire's client libnvidia-ml.so.1. It links the driver
 * client's wire layer (native/client/wire/, with native/client/diag/log.c and
 * helpers.c beneath it: its own copies of the statics, so its own connection
 * and session), counts through the wire's hooks (stats.c), and adds NVML's
 * way of answering. Nothing here is exported. */
#ifndef GW_NVML_CLIENT_H
#define GW_NVML_CLIENT_H

#include <nvml.h>

#include "nvml_extra.h"

#include "../client/wire/wire_api.h"
#include "../generated/gw_ops.h"
#include "../generated/nvml_ops.h"
#include "../generated/nvml_client_generated.h"

/* Send and wait. A reply carries i32 0 then u32 nvmlReturn_t and the outputs;
 * a failure of the session itself (no server, lost connection, refused
 * handle) is turned into the nvmlReturn_t the real NVML would give nearest. */
GW_HIDDEN nvmlReturn_t gw_nvml_call(gw_req *q, gw_rep **r);
GW_HIDDEN nvmlReturn_t gw_nvml_status(gw_rep *r, nvmlReturn_t res); /* NVML_ERROR_UNKNOWN if short */
GW_HIDDEN nvmlReturn_t gw_nvml_from_cu(CUresult rc);

int gw_nvml_unsupported(unsigned op); /* the generated stubs */
const char *gw_nvml_error_text(int code); /* generated */

#endif
