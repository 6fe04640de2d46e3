/* The worker's log lines: on stderr, which the server relays into its own log,
 * each naming the session it serves. */
#include <stdarg.h>
#include <stdio.h>

#include "core.h"

static const char *session = "-";

void gw_log_session(const char *s) { session = s; }

void gw_wlog(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "worker session=%s: %s\n", session, line);
}
