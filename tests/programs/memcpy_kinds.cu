// memcpy_kinds: every cudaMemcpyKind, sync and async, 1D, 2D (pitched) and 3D copies.
#define PROG "memcpy_kinds"
#include "check.h"

#include <string.h>

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 131u + seed * 7u + (i >> 8)) & 0xff);
}

static void expect_same(const void *got, const void *want, size_t n, const char *what)
{
    if (memcmp(got, want, n) != 0) {
        const unsigned char *g = (const unsigned char *)got, *w = (const unsigned char *)want;
        size_t i = 0;
        while (g[i] == w[i])
            i++;
        FAIL("%s: byte %zu is %u, expected %u", what, i, g[i], w[i]);
    }
}

/* Round trip through the device with one pair of kinds, synchronously. */
static void one_d(size_t n, cudaMemcpyKind h2d, cudaMemcpyKind d2d, cudaMemcpyKind d2h, const char *what)
{
    unsigned char *src = (unsigned char *)malloc(n), *dst = (unsigned char *)calloc(1, n);
    if (!src || !dst)
        FAIL("host malloc");
    fill(src, n, (unsigned)n);
    void *d1, *d2;
    CK(cudaMalloc(&d1, n));
    CK(cudaMalloc(&d2, n));
    CK(cudaMemcpy(d1, src, n, h2d));
    CK(cudaMemcpy(d2, d1, n, d2d));
    CK(cudaMemcpy(dst, d2, n, d2h));
    expect_same(dst, src, n, what);
    /* A copy into the middle of a buffer, at an odd offset. */
    if (n > 64) {
        CK(cudaMemcpy((char *)d2 + 3, src + 40, n - 50, h2d));
        CK(cudaMemcpy(dst, (char *)d2 + 3, n - 50, d2h));
        expect_same(dst, src + 40, n - 50, what);
    }
    CK(cudaFree(d1));
    CK(cudaFree(d2));
    free(src);
    free(dst);
}

static void async_1d(size_t n, cudaStream_t s)
{
    unsigned char *src = (unsigned char *)malloc(n), *dst = (unsigned char *)calloc(1, n);
    unsigned char *mid = (unsigned char *)calloc(1, n);
    if (!src || !dst || !mid)
        FAIL("host malloc");
    fill(src, n, 99);
    void *d1, *d2;
    CK(cudaMalloc(&d1, n));
    CK(cudaMalloc(&d2, n));
    CK(cudaMemcpyAsync(d1, src, n, cudaMemcpyHostToDevice, s));
    CK(cudaMemcpyAsync(d2, d1, n, cudaMemcpyDeviceToDevice, s));
    CK(cudaMemcpyAsync(dst, d2, n, cudaMemcpyDeviceToHost, s));
    CK(cudaStreamSynchronize(s));
    expect_same(dst, src, n, "async H2D/D2D/D2H");

    memset(dst, 0, n);
    CK(cudaMemcpyAsync(d1, src, n, cudaMemcpyDefault, s));
    CK(cudaMemcpyAsync(d2, d1, n, cudaMemcpyDefault, s));
    CK(cudaMemcpyAsync(dst, d2, n, cudaMemcpyDefault, s));
    CK(cudaMemcpyAsync(mid, src, n, cudaMemcpyHostToHost, s));
    CK(cudaStreamSynchronize(s));
    expect_same(dst, src, n, "async Default");
    expect_same(mid, src, n, "async H2H");
    CK(cudaFree(d1));
    CK(cudaFree(d2));
    free(src);
    free(dst);
    free(mid);
}

static void two_d(cudaStream_t s)
{
    const size_t w = 333, h = 17; /* bytes per row, rows: odd on purpose */
    const size_t hpitch = 345;    /* host rows are padded too */
    unsigned char *src = (unsigned char *)malloc(hpitch * h), *dst = (unsigned char *)malloc(hpitch * h);
    if (!src || !dst)
        FAIL("host malloc");
    fill(src, hpitch * h, 5);
    void *d1, *d2;
    size_t p1, p2;
    CK(cudaMallocPitch(&d1, &p1, w, h));
    CK(cudaMallocPitch(&d2, &p2, w + 100, h));
    if (p1 < w || p2 < w + 100)
        FAIL("cudaMallocPitch pitches %zu, %zu too small", p1, p2);
    CK(cudaMemcpy2D(d1, p1, src, hpitch, w, h, cudaMemcpyHostToDevice));
    CK(cudaMemcpy2D(d2, p2, d1, p1, w, h, cudaMemcpyDeviceToDevice));
    memset(dst, 0xee, hpitch * h);
    CK(cudaMemcpy2D(dst, hpitch, d2, p2, w, h, cudaMemcpyDeviceToHost));
    for (size_t r = 0; r < h; r++) {
        expect_same(dst + r * hpitch, src + r * hpitch, w, "2D row");
        for (size_t c = w; c < hpitch; c++)
            if (dst[r * hpitch + c] != 0xee)
                FAIL("2D copy wrote past the row width (row %zu col %zu)", r, c);
    }

    /* 2D async, with Default kind, and a sub-rectangle at an offset. */
    memset(dst, 0, hpitch * h);
    CK(cudaMemcpy2DAsync(d1, p1, src, hpitch, w, h, cudaMemcpyDefault, s));
    CK(cudaMemcpy2DAsync((char *)d2 + p2 + 7, p2, (char *)d1 + 7, p1, 100, h - 1, cudaMemcpyDeviceToDevice, s));
    CK(cudaMemcpy2DAsync(dst, hpitch, (char *)d2 + p2 + 7, p2, 100, h - 1, cudaMemcpyDeviceToHost, s));
    CK(cudaStreamSynchronize(s));
    for (size_t r = 0; r + 1 < h; r++)
        expect_same(dst + r * hpitch, src + r * hpitch + 7, 100, "2D async sub-rectangle");
    CK(cudaFree(d1));
    CK(cudaFree(d2));
    free(src);
    free(dst);
}

static void three_d(void)
{
    const size_t w = 40, h = 9, d = 5; /* width in bytes */
    cudaExtent ext = make_cudaExtent(w, h, d);
    cudaPitchedPtr dev;
    CK(cudaMalloc3D(&dev, ext));
    unsigned char *src = (unsigned char *)malloc(w * h * d), *dst = (unsigned char *)calloc(1, w * h * d);
    if (!src || !dst)
        FAIL("host malloc");
    fill(src, w * h * d, 3);

    cudaMemcpy3DParms up;
    memset(&up, 0, sizeof up);
    up.srcPtr = make_cudaPitchedPtr(src, w, w, h);
    up.dstPtr = dev;
    up.extent = ext;
    up.kind = cudaMemcpyHostToDevice;
    CK(cudaMemcpy3D(&up));

    cudaMemcpy3DParms down;
    memset(&down, 0, sizeof down);
    down.srcPtr = dev;
    down.dstPtr = make_cudaPitchedPtr(dst, w, w, h);
    down.extent = ext;
    down.kind = cudaMemcpyDeviceToHost;
    CK(cudaMemcpy3D(&down));
    expect_same(dst, src, w * h * d, "3D round trip");
    CK(cudaFree(dev.ptr));
    free(src);
    free(dst);
}

int main(void)
{
    const size_t sizes[] = {1, 7, 4096, 1000003, (size_t)9 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        one_d(sizes[i], cudaMemcpyHostToDevice, cudaMemcpyDeviceToDevice, cudaMemcpyDeviceToHost, "explicit kinds");
        one_d(sizes[i], cudaMemcpyDefault, cudaMemcpyDefault, cudaMemcpyDefault, "cudaMemcpyDefault");
    }

    /* Host to host, both explicit and Default. */
    char a[64], b[64];
    memset(a, 'x', sizeof a);
    memset(b, 0, sizeof b);
    CK(cudaMemcpy(b, a, sizeof a, cudaMemcpyHostToHost));
    expect_same(b, a, sizeof a, "H2H");
    memset(b, 0, sizeof b);
    CK(cudaMemcpy(b, a, sizeof a, cudaMemcpyDefault));
    expect_same(b, a, sizeof a, "H2H Default");

    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    async_1d(123457, s);
    async_1d((size_t)5 << 20, s);
    two_d(s);
    three_d();
    CK(cudaStreamDestroy(s));
    CK(cudaDeviceSynchronize());
    PASS();
}
