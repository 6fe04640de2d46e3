/* The GPUWIRE_* settings the client libraries read, parsed by one set of
 * rules, so that a bad value always gets one line on stderr naming the
 * variable, the value, what is accepted and what happens instead (`then`).
 * src/gpuwire/clientenv.py applies the same rules for `gpuwire run`.
 *
 * Header-only: gpuwire_sample.so is built from sampler.c alone.
 * Each parser returns 0 if the variable is unset or empty, 1 if its value is
 * good (*out written), -1 if it is bad (*out untouched, the line printed):
 * a tuning knob keeps its default, a setting that shapes the session fails it. */
#ifndef GW_ENV_H
#define GW_ENV_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* how a setting's failure ends: the session is not opened */
#ifdef GW_NVML_CLIENT
#define GW_ENV_NO_SESSION "not connecting: NVML calls fail with NVML_ERROR_DRIVER_NOT_LOADED"
#else
#define GW_ENV_NO_SESSION "not connecting: CUDA calls fail with CUDA_ERROR_NO_DEVICE"
#endif

#define GW_ENV_SIZE_UNITS "digits with an optional K, M, G, T (binary) or KB, MB, GB, TB"

static inline void gw_env_complain(const char *name, const char *value, const char *accepted, const char *then)
{
    char shown[81]; /* the value as one printable line */
    size_t n = 0;
    for (; value[n] && n < sizeof shown - 1; n++)
        shown[n] = (unsigned char)value[n] < 0x20 || value[n] == 0x7f ? '?' : value[n];
    shown[n] = 0;
    fprintf(stderr, "gpuwire: %s=%s%s is not valid: expected %s; %s\n", name, shown, value[n] ? "..." : "",
            accepted, then);
}

/* a decimal integer, digits only: no sign, space or base prefix */
static inline int gw_env_parse_u64(const char *s, const char **end, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *end = p;
    *out = v;
    return p == s ? -1 : 0;
}

static inline int gw_env_int(const char *name, unsigned long long lo, unsigned long long hi, const char *then,
                             unsigned long long *out)
{
    const char *v = getenv(name), *end;
    if (!v || !*v)
        return 0;
    uint64_t x;
    if (gw_env_parse_u64(v, &end, &x) || *end || x < lo || x > hi) {
        char accepted[96];
        snprintf(accepted, sizeof accepted, "an integer from %llu to %llu", lo, hi);
        gw_env_complain(name, v, accepted, then);
        return -1;
    }
    *out = x;
    return 1;
}

/* "8G", "512MiB", "4GB" (decimal), "1048576": the units gpuwire's Python side takes */
static inline int gw_env_size(const char *name, uint64_t lo, uint64_t hi, const char *then, uint64_t *out)
{
    static const struct { const char *unit; uint64_t mult; } units[] = {
        {"", 1}, {"b", 1}, {"k", 1ull << 10}, {"m", 1ull << 20}, {"g", 1ull << 30}, {"t", 1ull << 40},
        {"kib", 1ull << 10}, {"mib", 1ull << 20}, {"gib", 1ull << 30}, {"tib", 1ull << 40},
        {"kb", 1000ull}, {"mb", 1000000ull}, {"gb", 1000000000ull}, {"tb", 1000000000000ull}};
    const char *v = getenv(name), *end;
    if (!v || !*v)
        return 0;
    uint64_t x;
    int ok = gw_env_parse_u64(v, &end, &x) == 0;
    if (ok) {
        size_t i = 0, n = sizeof units / sizeof units[0];
        while (i < n && strcasecmp(end, units[i].unit))
            i++;
        ok = i < n && x <= UINT64_MAX / units[i].mult; /* no wrap-around into a small or huge size */
        if (ok)
            x *= units[i].mult;
    }
    if (!ok || x < lo || x > hi) {
        char accepted[160];
        if (hi == UINT64_MAX)
            snprintf(accepted, sizeof accepted, "a size of at least %llu byte%s: " GW_ENV_SIZE_UNITS,
                     (unsigned long long)lo, lo == 1 ? "" : "s");
        else
            snprintf(accepted, sizeof accepted, "a size from %llu to %llu bytes: " GW_ENV_SIZE_UNITS,
                     (unsigned long long)lo, (unsigned long long)hi);
        gw_env_complain(name, v, accepted, then);
        return -1;
    }
    *out = x;
    return 1;
}

/* one of `words` (exact, lower case); *out is its index */
static inline int gw_env_word(const char *name, const char *const *words, const char *accepted, const char *then,
                              int *out)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return 0;
    for (int i = 0; words[i]; i++)
        if (!strcmp(v, words[i])) {
            *out = i;
            return 1;
        }
    gw_env_complain(name, v, accepted, then);
    return -1;
}

#define GW_ENV_BOOL_TEXT "1 or 0 (on/off, yes/no, true/false)"

static inline int gw_env_bool(const char *name, const char *then, int *out)
{
    static const char *const words[] = {"0", "1", "off", "on", "no", "yes", "false", "true", NULL};
    int i, r = gw_env_word(name, words, GW_ENV_BOOL_TEXT, then, &i);
    if (r > 0)
        *out = i & 1;
    return r;
}

#endif
