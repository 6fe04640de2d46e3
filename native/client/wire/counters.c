/* The hooks the wire layer counts through: the driver library points them
 * at its GPUWIRE_STATS counters (api/init.c), libnvidia-ml.so.1 at its own
 * (nvml/stats.c). */
#include "stream.h"

const gw_wire_counters *gw_wire_hooks;

void gw_wire_count_with(const gw_wire_counters *c) { gw_wire_hooks = c; }
