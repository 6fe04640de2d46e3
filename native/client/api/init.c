/* Entry points answered in the client or around the session: cuInit,
 * cuDriverGetVersion, error names and strings. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

const char *gw_error_name(int code); /* generated */

CUresult CUDAAPI cuInit(unsigned int Flags)
{
    CUresult rc = gw_connect();
    if (rc != CUDA_SUCCESS) {
        gw_stat_call(GW_OP_cuInit);
        return rc;
    }
    rc = gwf_cuInit(Flags);
    if (rc == CUDA_SUCCESS && !gw_initialized()) {
        gw_set_initialized();
        gw_preload_start(); /* the program's own kernels, while it starts (state/preload.c) */
    }
    return rc;
}

/* The server's driver version, learnt at the handshake: no round trip. Like
 * the real driver it works before cuInit. */
CUresult CUDAAPI cuDriverGetVersion(int *driverVersion)
{
    gw_stat_call(GW_OP_cuDriverGetVersion);
    if (!driverVersion)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = gw_connect();
    if (rc != CUDA_SUCCESS) {
        /* no server: report the version this client was built for, as a driver
         * without devices would, so the application can still start and print cuInit's error */
        *driverVersion = CUDA_VERSION;
        return CUDA_SUCCESS;
    }
    *driverVersion = gw_server_info()->driver_version;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGetErrorName(CUresult error, const char **pStr)
{
    gw_stat_call(GW_OP_cuGetErrorName);
    if (!pStr)
        return CUDA_ERROR_INVALID_VALUE;
    *pStr = gw_error_name((int)error);
    return *pStr ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* The driver's own wording, asked of the server once per code and kept. */
#define MAX_CODE 1024
static const char *strings[MAX_CODE];
static pthread_mutex_t strings_lock = PTHREAD_MUTEX_INITIALIZER;

CUresult CUDAAPI cuGetErrorString(CUresult error, const char **pStr)
{
    if (!pStr)
        return CUDA_ERROR_INVALID_VALUE;
    const char *name = gw_error_name((int)error);
    if (!name) {
        gw_stat_call(GW_OP_cuGetErrorString);
        *pStr = NULL;
        return CUDA_ERROR_INVALID_VALUE;
    }
    unsigned code = (unsigned)error;
    pthread_mutex_lock(&strings_lock);
    const char *s = code < MAX_CODE ? strings[code] : NULL;
    pthread_mutex_unlock(&strings_lock);
    if (s) {
        gw_stat_call(GW_OP_cuGetErrorString);
        *pStr = s;
        return CUDA_SUCCESS;
    }
    CUresult rc = CUDA_ERROR_NOT_INITIALIZED;
    if (gw_initialized()) {
        gw_req *q = gw_req_begin(GW_OP_cuGetErrorString);
        gw_put_fields(q, gw_get_error_string_req, {.code = (uint64_t)error});
        gw_rep *r;
        rc = gw_req_call(q, &r);
        gw_get_error_string_rep rep = {0};
        if (rc == CUDA_SUCCESS && !gw_get_fields(r, gw_get_error_string_rep, &rep)) {
            uint32_t n = rep.length;
            const char *text = n < 4096 ? gw_get_view(r, n) : NULL;
            s = text ? strndup(text, n) : NULL;
        }
        gw_rep_end(r);
    }
    if (!s)
        s = name; /* no server to ask: the error's name is the best text we have */
    else if (code < MAX_CODE) {
        pthread_mutex_lock(&strings_lock);
        if (!strings[code])
            strings[code] = s;
        else
            s = strings[code];
        pthread_mutex_unlock(&strings_lock);
    }
    *pStr = s;
    return CUDA_SUCCESS;
}

/* The wire layer counts requests, round trips, bytes and waits through
 * hooks: this library's are the GPUWIRE_STATS counters (diag/stats.c). */
static const gw_wire_counters stat_counters = {
    .call = gw_stat_call, .round_trip = gw_stat_round_trip, .send = gw_stat_send,
    .queue_wait = gw_stat_queue_wait, .bytes = gw_stat_bytes, .lanes = gw_stat_lanes,
    .reply = gw_stat_reply, .burst_reply = gw_stat_burst_reply, .lane_piece = gw_stat_lane_piece,
};

__attribute__((constructor)) static void counters_init(void) { gw_wire_count_with(&stat_counters); }
