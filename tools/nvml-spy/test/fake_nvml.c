/* A stand-in for the real libnvidia-ml.so.1, for nvml-spy's test: the public
 * names nvmlInit_v2, nvmlShutdown and nvmlSystemGetDriverVersion, and an
 * nvmlInternalGetExportTable that serves one table (a size word, then four
 * functions) for one UUID and NVML_ERROR_NOT_SUPPORTED for any other. */
#include <stdint.h>
#include <string.h>

static int initialized;

int nvmlInit_v2(void) { initialized = 1; return 0; }
int nvmlShutdown(void) { if (!initialized) return 1; initialized = 0; return 0; }
int nvmlSystemGetDriverVersion(char *buf, unsigned len)
{
    if (!buf || len < 10)
        return 2; /* NVML_ERROR_INVALID_ARGUMENT */
    strcpy(buf, "999.01.02");
    return 0;
}

/* slot 1: writes a version word; slot 2: a sum of its six arguments; slot 3:
 * copies a string upper-cased; slot 4: takes eight integer arguments (two on
 * the stack) and a double, and returns the last integer minus the first,
 * scaled */
static int slot_version(uint32_t *out) { *out = 0x1234abcd; return 0; }
static uint64_t slot_sum(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e, uint64_t f)
{
    return a + b + c + d + e + f;
}
static int slot_upper(const char *in, char *out, unsigned cap)
{
    unsigned i = 0;
    for (; in[i] && i + 1 < cap; i++)
        out[i] = (in[i] >= 'a' && in[i] <= 'z') ? in[i] - 32 : in[i];
    out[i] = 0;
    return 0;
}
static long slot_eight(long a, long b, long c, long d, long e, long f, long g, long h, double scale)
{
    (void)b; (void)c; (void)d; (void)e; (void)f; (void)g;
    return (long)((double)(h - a) * scale);
}

static const void *table[5] = {
    (const void *)(uintptr_t)(5 * sizeof(void *)),
    (const void *)slot_version, (const void *)slot_sum, (const void *)slot_upper, (const void *)slot_eight,
};
static const uint8_t table_uuid[16] = {0xa1, 0xb2, 0xc3, 0xd4, 0x01, 0x02, 0x03, 0x04,
                                       0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c};

int nvmlInternalGetExportTable(const void **out, const uint8_t *uuid)
{
    if (!out || !uuid)
        return 2;
    if (memcmp(uuid, table_uuid, 16) != 0) {
        *out = NULL;
        return 3; /* NVML_ERROR_NOT_SUPPORTED */
    }
    *out = table;
    return 0;
}
