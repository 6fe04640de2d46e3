/* The handshake's time limits and the lines that say one passed or that the
 * other end is no gpuwire server: used by the handshake (handshake.c) and by
 * the TLS handshake before it (tls.c). The first bytes back (the TLS
 * handshake's, or the first frame of a plaintext server) within
 * FIRST_REPLY_MS of connecting, the whole handshake within
 * GPUWIRE_HANDSHAKE_TIMEOUT (default 10 s); set, that variable also gives
 * the first answer as long. */
#include <ctype.h>
#include <stdio.h>
#include <time.h>

#include "../diag/env.h"
#include "stream.h"

#define FIRST_REPLY_MS 5000
#define HANDSHAKE_DEFAULT_S 10

static long limit_ms = HANDSHAKE_DEFAULT_S * 1000L; /* GPUWIRE_HANDSHAKE_TIMEOUT */
static int limit_set;

void gw_handshake_limits_settings(void)
{
    unsigned long long secs = HANDSHAKE_DEFAULT_S;
    limit_set = gw_env_int("GPUWIRE_HANDSHAKE_TIMEOUT", 1, 3600, "using the default, 10", &secs) > 0;
    limit_ms = (long)secs * 1000;
}

static struct timespec first_due, all_due;

static struct timespec after_ms(long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += ms % 1000 * 1000000L;
    t.tv_sec += t.tv_nsec / 1000000000L;
    t.tv_nsec %= 1000000000L;
    return t;
}

static long ms_until(const struct timespec *due)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (due->tv_sec - now.tv_sec) * 1000 + (due->tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? ms : 0;
}

static long first_limit_ms(void) { return limit_set || limit_ms < FIRST_REPLY_MS ? limit_ms : FIRST_REPLY_MS; }

void gw_handshake_clock_start(void)
{
    first_due = after_ms(first_limit_ms());
    all_due = after_ms(limit_ms);
}

void gw_handshake_clock_again(void) { all_due = after_ms(limit_ms); }

int gw_handshake_ms_left(int first)
{
    long a = ms_until(&all_due), f = ms_until(&first_due);
    return (int)(first && f < a ? f : a);
}

void gw_handshake_silent(const char *server, int first)
{
    if (first)
        gw_log("no answer from %s within %ld s of connecting: it is not a gpuwire server, or one too slow to "
               "answer (GPUWIRE_HANDSHAKE_TIMEOUT=SECONDS waits longer)", server, (first_limit_ms() + 999) / 1000);
    else
        gw_log("the server at %s did not complete the handshake within %ld s (GPUWIRE_HANDSHAKE_TIMEOUT=SECONDS "
               "waits longer)", server, (limit_ms + 999) / 1000);
}

void gw_handshake_not_gpuwire(const char *server, const uint8_t *b, size_t n)
{
    char shown[80];
    size_t printable = 0, k = 0;
    while (printable < n && (isprint(b[printable]) || b[printable] == '\r' || b[printable] == '\n' ||
                             b[printable] == '\t'))
        printable++;
    if (printable >= 4 || printable == n) { /* text: its first line */
        for (; k < n && k < 60 && b[k] != '\r' && b[k] != '\n'; k++)
            shown[k] = b[k] == '"' ? '\'' : isprint(b[k]) ? (char)b[k] : ' ';
        shown[k] = 0;
        gw_log("the server at %s is not a gpuwire server: it answered \"%s%s\" (a web or metrics port? a gpuwire "
               "server listens on port 7750 unless told otherwise)", server, shown,
               k < n && b[k] != '\r' && b[k] != '\n' ? "..." : "");
    } else {
        for (size_t at = 0; k < n && k < 8; k++)
            at += (size_t)snprintf(shown + at, sizeof shown - at, "%s%02x", k ? " " : "", b[k]);
        gw_log("the server at %s is not a gpuwire server: it answered bytes %s%s, not a gpuwire frame", server,
               shown, n > 8 ? " ..." : "");
    }
}
