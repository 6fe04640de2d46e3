// memset: cudaMemset, cudaMemsetAsync and cudaMemset2D on odd sizes and offsets.
#define PROG "memset"
#include "check.h"

#include <string.h>

static void expect_bytes(const unsigned char *p, size_t from, size_t to, unsigned char v, const char *what)
{
    for (size_t i = from; i < to; i++)
        if (p[i] != v)
            FAIL("%s: byte %zu is 0x%02x, expected 0x%02x", what, i, p[i], v);
}

int main(void)
{
    const size_t n = 100003;
    unsigned char *h = (unsigned char *)malloc(n);
    if (!h)
        FAIL("host malloc");
    unsigned char *d;
    CK(cudaMalloc(&d, n));

    CK(cudaMemset(d, 0xab, n));
    CK(cudaMemset(d + 5, 0x11, 1));    /* one byte */
    CK(cudaMemset(d + 13, 0x22, 4097)); /* odd length at an odd offset */
    CK(cudaMemset(d + n - 3, 0x33, 3)); /* the tail */
    CK(cudaMemset(d + 200, 0x44, 0));   /* zero bytes: no effect, no error */
    CK(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost));
    expect_bytes(h, 0, 5, 0xab, "head");
    expect_bytes(h, 5, 6, 0x11, "one byte");
    expect_bytes(h, 6, 13, 0xab, "gap");
    expect_bytes(h, 13, 13 + 4097, 0x22, "odd run");
    expect_bytes(h, 13 + 4097, n - 3, 0xab, "middle");
    expect_bytes(h, n - 3, n, 0x33, "tail");

    /* Only the low byte of the value counts. */
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    CK(cudaMemsetAsync(d, 0x1234 + 0x100, n, s));
    CK(cudaMemsetAsync(d + 77, 0x7f, 999, s));
    CK(cudaStreamSynchronize(s));
    CK(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost));
    expect_bytes(h, 0, 77, 0x34, "async low byte");
    expect_bytes(h, 77, 77 + 999, 0x7f, "async run");
    expect_bytes(h, 77 + 999, n, 0x34, "async rest");

    /* 2D: a rectangle inside a pitched allocation leaves the rest alone. */
    const size_t w = 301, rows = 13;
    unsigned char *p;
    size_t pitch;
    CK(cudaMallocPitch(&p, &pitch, w, rows));
    CK(cudaMemset2D(p, pitch, 0x00, w, rows));
    CK(cudaMemset2D(p + pitch * 2 + 9, pitch, 0x5a, 123, 7));
    unsigned char *h2 = (unsigned char *)malloc(pitch * rows);
    if (!h2)
        FAIL("host malloc");
    CK(cudaMemcpy2D(h2, pitch, p, pitch, w, rows, cudaMemcpyDeviceToHost));
    for (size_t r = 0; r < rows; r++) {
        int in = r >= 2 && r < 9;
        expect_bytes(h2 + r * pitch, 0, in ? 9 : w, 0, "2D outside");
        if (in) {
            expect_bytes(h2 + r * pitch, 9, 9 + 123, 0x5a, "2D inside");
            expect_bytes(h2 + r * pitch, 9 + 123, w, 0, "2D right of rectangle");
        }
    }
    CK(cudaMemset2DAsync(p, pitch, 0xc3, w, rows, s));
    CK(cudaStreamSynchronize(s));
    CK(cudaMemcpy2D(h2, pitch, p, pitch, w, rows, cudaMemcpyDeviceToHost));
    for (size_t r = 0; r < rows; r++)
        expect_bytes(h2 + r * pitch, 0, w, 0xc3, "2D async");

    CK(cudaStreamDestroy(s));
    CK(cudaFree(p));
    CK(cudaFree(d));
    free(h);
    free(h2);
    PASS();
}
