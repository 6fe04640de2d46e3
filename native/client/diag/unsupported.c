/* What the generated stubs of every driver entry point gpuwire does not
 * forward return, and the line they log once. */
#include <cuda.h>
#include <stdatomic.h>

#include "../../generated/gw_ops.h"
#include "diag.h"

/* Every driver entry point gpuwire does not forward lands here: a clear error,
 * and its name once per process so nothing fails silently. */
int gw_unsupported(unsigned op)
{
    static atomic_uchar seen[GW_OP_COUNT];
    gw_stat_call(op);
    if (op >= 256 && op < 256 + GW_OP_COUNT && !atomic_exchange(&seen[op - 256], 1))
        gw_log("%s is not supported by gpuwire yet: returning CUDA_ERROR_NOT_SUPPORTED", gw_op_name(op));
    return CUDA_ERROR_NOT_SUPPORTED;
}
