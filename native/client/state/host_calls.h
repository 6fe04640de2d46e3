/* Host functions the worker has the client run (host_calls.c;
 * docs/host-functions.md): the callback ids the wire carries, and the
 * callback thread that runs them. */
#ifndef GW_CLIENT_STATE_HOST_CALLS_H
#define GW_CLIENT_STATE_HOST_CALLS_H

#include "state.h"

enum { GW_HOST_FN = 0, GW_HOST_STREAM_CALLBACK = 1 };

/* The id of a host function (kind GW_HOST_FN: fn(data)) or a stream callback
 * (cb(stream, status, data)); the same function, data and stream share one.
 * once: for one run (a stream's host function outside any capture), forgotten
 * after it; else kept for the process's life (graph nodes run again at every
 * launch). 0: out of memory. */
GW_HIDDEN uint64_t gw_host_callback_id(int kind, CUhostFn fn, CUstreamCallback cb, void *data, CUstream stream,
                                       int once);
/* A once-id whose request never left: it will not run. */
GW_HIDDEN void gw_host_callback_unused(uint64_t id);
/* The function and data of a kept id (host nodes' GetParams); 0, or -1 if unknown. */
GW_HIDDEN int gw_host_callback_of(uint64_t id, CUhostFn *fn, void **data);
/* 1 on the callback thread, while it runs the application's function (CUDA
 * must not be called there). */
GW_HIDDEN int gw_in_host_callback(void);

#endif
