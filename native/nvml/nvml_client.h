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

/* ---- several servers (servers.c, enumerate.c; docs/multi-gpu.md) ---- */
#define GW_NVML_SERVERS_MAX 8 /* GW_SERVERS_MAX */
/* Request q to its server (its handles', else the thread's route, else
 * server 0); a request naming two servers' devices is CUDA_ERROR_NOT_SUPPORTED. */
GW_HIDDEN CUresult gw_nvml_send(gw_req *q, gw_rep **r);
GW_HIDDEN nvmlReturn_t gw_nvml_servers_open(void); /* the links to servers 1.., at nvmlInit */
GW_HIDDEN int gw_nvml_servers(void);                /* how many (1 before nvmlInit or with one) */
GW_HIDDEN int gw_nvml_route_enter(int k);           /* this thread's requests without handles go to k */
GW_HIDDEN void gw_nvml_route_leave(int prev);
GW_HIDDEN int gw_nvml_handle_server(uint64_t h);    /* the server a handle the application holds is from */
GW_HIDDEN uint64_t gw_nvml_handle_on(uint64_t id, int k); /* a worker's id from server k, as handed out */
GW_HIDDEN void gw_put_handle(gw_req *q, uint64_t h); /* a handle argument: routes q, sends the worker's id */
/* nvmlInit (0), nvmlInit_v2 (1) or nvmlInitWithFlags (2) on every server */
GW_HIDDEN nvmlReturn_t gw_nvml_init_all(int variant, unsigned int flags);

int gw_nvml_unsupported(unsigned op); /* the generated stubs */
const char *gw_nvml_error_text(int code); /* generated */

#endif
