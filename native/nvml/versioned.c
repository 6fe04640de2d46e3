/* NVML getters whose struct has grown across versions, where the caller's
 * `version` (NVML_STRUCT_VERSION: the struct's size in the low 24 bits) may
 * name an older, smaller one. The generated forwarder moves the newest
 * struct whole; here a smaller caller's struct is widened into a local one
 * for the trip and only the caller's own bytes are written back, so an older
 * caller is never written past its struct (the real NVML, seeing the older
 * version, fills the older layout). */
#include <string.h>

#include "nvml_client.h"

#define VERSION_SIZE(v) ((size_t)((v) & 0xFFFFFFu))

nvmlReturn_t DECLDIR nvmlDeviceGetGpuFabricInfoV(nvmlDevice_t device, nvmlGpuFabricInfoV_t *gpuFabricInfo)
{
    if (!gpuFabricInfo || VERSION_SIZE(gpuFabricInfo->version) >= sizeof *gpuFabricInfo)
        return gwf_nvmlDeviceGetGpuFabricInfoV(device, gpuFabricInfo);
    size_t size = VERSION_SIZE(gpuFabricInfo->version);
    if (size < sizeof gpuFabricInfo->version)
        size = sizeof gpuFabricInfo->version; /* the version word itself is there: NVML will refuse it */
    nvmlGpuFabricInfoV_t whole;
    memset(&whole, 0, sizeof whole);
    memcpy(&whole, gpuFabricInfo, size);
    nvmlReturn_t res = gwf_nvmlDeviceGetGpuFabricInfoV(device, &whole);
    if (res == NVML_SUCCESS)
        memcpy(gpuFabricInfo, &whole, size);
    return res;
}
