/* NVML's entry points answered around the session: the init variants (which
 * open this library's own connection first), nvmlErrorString, and the
 * mapping of session failures onto nvmlReturn_t. */
#include <stdatomic.h>

#include "nvml_client.h"

nvmlReturn_t gw_nvml_from_cu(CUresult rc)
{
    switch (rc) {
    case CUDA_SUCCESS: return NVML_SUCCESS;
    case CUDA_ERROR_NOT_INITIALIZED: return NVML_ERROR_UNINITIALIZED;
    case CUDA_ERROR_INVALID_VALUE: return NVML_ERROR_INVALID_ARGUMENT;
    case CUDA_ERROR_INVALID_HANDLE: return NVML_ERROR_INVALID_ARGUMENT; /* unknown handle id */
    case CUDA_ERROR_OUT_OF_MEMORY: return NVML_ERROR_MEMORY;
    case CUDA_ERROR_NOT_SUPPORTED: return NVML_ERROR_NOT_SUPPORTED;
    case CUDA_ERROR_NO_DEVICE: return NVML_ERROR_DRIVER_NOT_LOADED; /* no server: as a machine without driver */
    case CUDA_ERROR_DEVICE_UNAVAILABLE: return NVML_ERROR_GPU_IS_LOST; /* the server went away */
    default: return NVML_ERROR_UNKNOWN;
    }
}

nvmlReturn_t gw_nvml_call(gw_req *q, gw_rep **r)
{
    CUresult rc = gw_nvml_send(q, r);
    if (rc != CUDA_SUCCESS)
        return gw_nvml_from_cu(rc);
    uint32_t code;
    if (gw_get_bytes(*r, &code, 4))
        return NVML_ERROR_UNKNOWN;
    return (nvmlReturn_t)code;
}

nvmlReturn_t gw_nvml_status(gw_rep *r, nvmlReturn_t res)
{
    return gw_rep_status(r, CUDA_SUCCESS) == CUDA_SUCCESS ? res : NVML_ERROR_UNKNOWN;
}

/* The session opens at the first init; the server's NVML keeps the
 * init/shutdown count, as the real library does. */
static nvmlReturn_t open_session(void)
{
    CUresult rc = gw_connect();
    if (rc != CUDA_SUCCESS)
        return gw_nvml_from_cu(rc);
    gw_set_initialized(); /* the transport may carry NVML requests from now on */
    return gw_nvml_servers_open(); /* GPUWIRE_SERVER's further servers (servers.c) */
}

#undef nvmlInit
#undef nvmlInit_v2
nvmlReturn_t DECLDIR nvmlInit(void)
{
    nvmlReturn_t r = open_session();
    return r == NVML_SUCCESS ? gw_nvml_init_all(0, 0) : r;
}

nvmlReturn_t DECLDIR nvmlInit_v2(void)
{
    nvmlReturn_t r = open_session();
    return r == NVML_SUCCESS ? gw_nvml_init_all(1, 0) : r;
}

nvmlReturn_t DECLDIR nvmlInitWithFlags(unsigned int flags)
{
    nvmlReturn_t r = open_session();
    return r == NVML_SUCCESS ? gw_nvml_init_all(2, flags) : r;
}

const DECLDIR char *nvmlErrorString(nvmlReturn_t result)
{
    const char *s = gw_nvml_error_text((int)result);
    return s ? s : "Unknown Error";
}
