#include "crc32c.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static uint32_t table[256];

static void make_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc_bytes(uint32_t c, const uint8_t *p, size_t n)
{
    while (n--)
        c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

static void lanes_table(const uint8_t *p, size_t q, size_t n, uint32_t out[4])
{
    for (int k = 0; k < 4; k++)
        out[k] = ~crc_bytes(~0u, p + k * q, k < 3 ? q : n - 3 * q);
}

#if defined(__x86_64__)
__attribute__((target("sse4.2,crc32"))) static void lanes_hw(const uint8_t *p, size_t q, size_t n, uint32_t out[4])
{
    uint64_t c0 = ~0u, c1 = ~0u, c2 = ~0u, c3 = ~0u, w0, w1, w2, w3;
    const uint8_t *a = p, *b = p + q, *c = p + 2 * q, *d = p + 3 * q;
    for (size_t i = 0; i < q; i += 8) { /* memcpy: the buffer need not be aligned */
        memcpy(&w0, a + i, 8), memcpy(&w1, b + i, 8), memcpy(&w2, c + i, 8), memcpy(&w3, d + i, 8);
        c0 = _mm_crc32_u64(c0, w0), c1 = _mm_crc32_u64(c1, w1);
        c2 = _mm_crc32_u64(c2, w2), c3 = _mm_crc32_u64(c3, w3);
    }
    uint32_t last = (uint32_t)c3;
    for (size_t i = 4 * q; i < n; i++)
        last = _mm_crc32_u8(last, p[i]);
    out[0] = ~(uint32_t)c0, out[1] = ~(uint32_t)c1, out[2] = ~(uint32_t)c2, out[3] = ~last;
}
#endif

void gw_crc32c4(const void *data, size_t n, uint32_t out[4])
{
    static int hw = -1;
    size_t q = n / 4 / 8 * 8;
    if (hw < 0) {
        make_table();
#if defined(__x86_64__)
        hw = __builtin_cpu_supports("sse4.2");
#else
        hw = 0;
#endif
    }
#if defined(__x86_64__)
    if (hw) {
        lanes_hw(data, q, n, out);
        return;
    }
#endif
    lanes_table(data, q, n, out);
}
