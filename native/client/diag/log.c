/* Client diagnostics: one line each on stderr, prefixed "gpuwire:". */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "diag.h"
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

/* GPUWIRE_TRACE_RT=1: one stderr line per round trip (op, first arguments,
 * time waited), to see which calls still wait and in what order; 2 also
 * every module, kernel and occupancy call (stats.c). */
int gw_trace_rt_level(void)
{
    static int level = -1;
    if (level < 0) {
        unsigned long long v = 0;
        gw_env_int("GPUWIRE_TRACE_RT", 0, 2, "not tracing", &v);
        level = (int)v;
    }
    return level;
}
