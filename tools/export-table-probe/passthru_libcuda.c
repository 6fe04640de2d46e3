/* GPU-machine probe: a libcuda.so.1 that hands every driver entry point of
 * the real driver to cudart unchanged, EXCEPT the export tables, which come
 * from native/client/export_tables.c. Proves real cudart runs on a real GPU
 * with gpuwire's tables. Test tool only. */
#define _GNU_SOURCE
#include <cuda.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "../../native/client/private/export_tables.h"
#include "real_forward.h"

/* PASSTHRU_SPY=<32 hex digits>: serve the REAL driver's table of that UUID
 * (PASSTHRU_REAL_ALL=1: and the real driver's for every other UUID too)
 * behind a spy that logs each slot call (six integer arguments, the result,
 * and the first words behind pointer-looking arguments after the call). */
typedef uintptr_t (*raw_fn)(uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t);
static const uintptr_t *spied;

static void dump_after(const char *what, uintptr_t a)
{
    if (a > 0x10000 && (a & 7) == 0) {
        const uintptr_t *p = (const uintptr_t *)a;
        fprintf(stderr, "spy   %s %#lx -> [%#lx %#lx %#lx %#lx %#lx %#lx %#lx %#lx]\n", what, (unsigned long)a,
                (unsigned long)p[0], (unsigned long)p[1], (unsigned long)p[2], (unsigned long)p[3],
                (unsigned long)p[4], (unsigned long)p[5], (unsigned long)p[6], (unsigned long)p[7]);
    }
}

/* can 48 bytes at p be read? (write() to a pipe fails with EFAULT if not) */
static int readable(const void *p, size_t n)
{
    int fd[2];
    if (pipe(fd))
        return 0;
    int ok = write(fd[1], p, n) == (ssize_t)n;
    close(fd[0]);
    close(fd[1]);
    return ok;
}

static uintptr_t spy_call(int n, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d,
                          uintptr_t e, uintptr_t f)
{
    if (a > 0x10000 && (a & 7) == 0)
        dump_after("arg0 before", a);
    if (b > 0x10000 && (b & 7) == 0)
        dump_after("arg1 before", b);
    if (c > 0x10000 && (c & 7) == 0)
        dump_after("arg2 before", c);
    uintptr_t r = ((raw_fn)spied[n])(a, b, c, d, e, f);
    fprintf(stderr, "spy slot %d(%#lx, %#lx, %#lx, %#lx, %#lx) -> %#lx\n", n, (unsigned long)a,
            (unsigned long)b, (unsigned long)c, (unsigned long)d, (unsigned long)e,
            (unsigned long)r);
    dump_after("arg0", a);
    dump_after("arg1", b);
    dump_after("arg2", c);
    if (r == 0 && n % 10 == 3 && c > 0x10000 && (c & 7) == 0) { /* a lookup's out-pointer: the text behind it */
        uintptr_t out = *(const uintptr_t *)c;
        if (out > 0x10000 && readable((const void *)out, 48)) {
            dump_after("*arg2", out & ~(uintptr_t)7);
            const unsigned char *t = (const unsigned char *)out;
            char shown[49];
            for (int i = 0; i < 48; i++)
                shown[i] = t[i] >= 32 && t[i] < 127 ? (char)t[i] : '.';
            shown[48] = 0;
            fprintf(stderr, "spy   *arg2 text \"%s\"\n", shown);
        }
    }
    if (d > 0x10000 && (d & 3) == 0)
        fprintf(stderr, "spy   arg3 %#lx -> u32 %u\n", (unsigned long)d, *(const unsigned *)d);
    return r;
}

#define SPY1(a, b)                                                                        \
    static uintptr_t spy_##a##b(uintptr_t p, uintptr_t q, uintptr_t r, uintptr_t s,         \
                                uintptr_t t, uintptr_t u)                                 \
    {                                                                                     \
        return spy_call(a * 10 + b, p, q, r, s, t, u);                                    \
    }
#define SPY10(a) SPY1(a, 0) SPY1(a, 1) SPY1(a, 2) SPY1(a, 3) SPY1(a, 4) SPY1(a, 5) \
    SPY1(a, 6) SPY1(a, 7) SPY1(a, 8) SPY1(a, 9)
SPY10(0) SPY10(1) SPY10(2) SPY10(3) SPY10(4) SPY10(5) SPY10(6) SPY10(7) SPY10(8) SPY10(9)
#undef SPY1
#define SPY1(a, b) (void *)spy_##a##b,
static void *const spies[100] = {SPY10(0) SPY10(1) SPY10(2) SPY10(3) SPY10(4) SPY10(5)
                                     SPY10(6) SPY10(7) SPY10(8) SPY10(9)};
static const void *spy_table[100];

CUresult cuGetExportTable(const void **pp, const CUuuid *id)
{
    const char *want = getenv("PASSTHRU_SPY");
    char hex[33];
    for (int i = 0; id && i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)id->bytes[i]);
    if (want && id && pp && strcasecmp(want, hex) == 0) {
        typedef CUresult (*get_t)(const void **, const CUuuid *);
        CUresult r = ((get_t)real_sym("cuGetExportTable"))((const void **)&spied, id);
        if (r != CUDA_SUCCESS)
            return r;
        size_t n = (spied[0] % 8 == 0 && spied[0] / 8 <= 100) ? spied[0] / 8 : 0;
        fprintf(stderr, "spy serving real table %s (%zu slots)\n", hex, n);
        spy_table[0] = (const void *)spied[0];
        for (size_t i = 1; i < n; i++)
            spy_table[i] = spied[i] ? spies[i] : NULL;
        *pp = spy_table;
        return CUDA_SUCCESS;
    }
    if (getenv("PASSTHRU_REAL_ALL")) { /* every other table the real driver's too: native behaviour */
        typedef CUresult (*get_t)(const void **, const CUuuid *);
        return ((get_t)real_sym("cuGetExportTable"))(pp, id);
    }
    return gw_export_table_get(pp, id);
}

CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int ver, cuuint64_t flags,
                             CUdriverProcAddressQueryResult *st)
{
    typedef CUresult (*gpa_t)(const char *, void **, int, cuuint64_t,
                              CUdriverProcAddressQueryResult *);
    static gpa_t real;
    if (real == NULL)
        real = (gpa_t)real_sym("cuGetProcAddress_v2");
    if (symbol && strcmp(symbol, "cuGetExportTable") == 0) {
        *pfn = (void *)cuGetExportTable;
        if (st)
            *st = CU_GET_PROC_ADDRESS_SUCCESS;
        return CUDA_SUCCESS;
    }
    if (symbol && strcmp(symbol, "cuGetProcAddress") == 0) {
        *pfn = (void *)cuGetProcAddress_v2;
        if (st)
            *st = CU_GET_PROC_ADDRESS_SUCCESS;
        return CUDA_SUCCESS;
    }
    return real(symbol, pfn, ver, flags, st);
}

#undef cuGetProcAddress
CUresult cuGetProcAddress(const char *symbol, void **pfn, int ver, cuuint64_t flags)
{
    return cuGetProcAddress_v2(symbol, pfn, ver, flags, NULL);
}
