/* NVML declarations gpuwire needs that the pinned nvml.h (nvidia-nvml-dev
 * 13.0.87, scripts/setup) lacks: two getters stock `nvidia-smi -q` calls on
 * driver 580 (issue 14). Layouts as NVIDIA's later nvml.h (13.4) declares
 * them. Each block stands aside when the nvml.h in use has it already: a
 * macro from the same release marks it. Included after <nvml.h> by the
 * client library, the worker and the stand-in; codegen/gen_nvml.py reads the
 * prototypes here as it reads nvml.h's. */
#ifndef GW_NVML_EXTRA_H
#define GW_NVML_EXTRA_H

#include <nvml.h>

/* Driver 580: row remapping with inactive remaps counted. */
#ifndef NVML_FI_DEV_REMAPPED_ROWS_COR_INACTIVE
typedef struct nvmlRemappedRowsInfo_v2_t {
    unsigned int corrActiveRemaps;
    unsigned int corrInactiveRemaps;
    unsigned int uncActiveRemaps;
    unsigned int uncInactiveRemaps;
    unsigned int bPending;
    unsigned int bFailureOccurred;
} nvmlRemappedRowsInfo_v2_t;
nvmlReturn_t DECLDIR nvmlDeviceGetRemappedRows_v2(nvmlDevice_t device, nvmlRemappedRowsInfo_v2_t *info);
#endif

/* Driver 590's header (580 exports it): whether the GPU has unrepairable memory. */
#ifndef NVML_INIT_FLAG_FORCE_INIT
typedef struct {
    unsigned int bUnrepairableMemory;
} nvmlUnrepairableMemoryStatus_v1_t;
nvmlReturn_t DECLDIR nvmlDeviceGetUnrepairableMemoryFlag_v1(nvmlDevice_t device,
                                                            nvmlUnrepairableMemoryStatus_v1_t *unrepairableMemoryStatus);
#endif

#endif
