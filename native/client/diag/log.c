/* Client diagnostics: one line each on stderr, prefixed "gpuwire:". */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "client.h"
#include "env.h"
#ifndef GW_NVML_CLIENT
#include "progress.h"
#endif

int gw_debug_level(void)
{
    static int cached = -1;
    if (cached < 0) {
        unsigned long long v = 0;
        gw_env_int("GPUWIRE_DEBUG", 0, 9, "no debugging output", &v);
        cached = (int)v;
    }
    return cached;
}

int gw_debug(void) { return gw_debug_level() > 0; }

void gw_log(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
#ifndef GW_NVML_CLIENT
    gw_progress_make_way(); /* a status line on the terminal goes first */
#endif
    fprintf(stderr, "gpuwire: %s\n", line);
}

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
