/* lane_copies: large host-to-device copies, the kind gpuwire sends over copy
 * lanes, checked byte for byte: their order against the calls around them
 * (a memset after a copy wins; a device-to-device copy on the copy's stream
 * sees its bytes), sizes that are not a whole number of chunks, pageable and
 * pinned sources, and several threads copying at once.
 *   lane_copies [MiB per copy, default 37]
 *   lane_copies ready [pinned|none]   page-locked memory ready before any copy, as
 *       the driver's pinning leaves it: every page of a 16 MiB cuMemAllocHost and
 *       of a 16 MiB cuMemHostRegister resident (mincore); then a second's pause
 *       with no copy (the test reads the lanes opened meanwhile from the stats);
 *       "none": only device memory, no page-locked memory
 * "PASS lane_copies" last and exit 0, or "FAIL lane_copies: why" and exit 1. */
#define PROG "lane_copies"
#define _DEFAULT_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "driver_check.h"

#define THREADS 3
#define ROUNDS 3

static CUcontext ctx;
static size_t size;

static uint8_t byte_at(size_t i, uint32_t seed)
{
    uint32_t x = (uint32_t)i * 2654435761u ^ seed;
    return (uint8_t)(x >> 13 ^ x >> 24);
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = byte_at(i, seed);
}

static void expect(const uint8_t *p, size_t n, uint32_t seed, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != byte_at(i, seed))
            FAIL("%s: byte %zu of %zu is 0x%02x, expected 0x%02x", what, i, n, p[i], byte_at(i, seed));
}

static void *copier(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    size_t n = size + 777 * (t + 1);
    CK(cuCtxSetCurrent(ctx));
    CUdeviceptr d;
    CK(cuMemAlloc(&d, n));
    uint8_t *src = malloc(n), *back = malloc(n);
    if (!src || !back)
        FAIL("out of host memory");
    for (uint32_t r = 0; r < ROUNDS; r++) {
        uint32_t seed = 1000 * t + r;
        fill(src, n, seed);
        CK(cuMemcpyHtoD(d, src, n));
        memset(src, 0, n); /* the copy returned: its bytes have left this buffer */
        CK(cuMemcpyDtoH(back, d, n));
        expect(back, n, seed, "a thread's copy");
    }
    CK(cuMemFree(d));
    free(src);
    free(back);
    return NULL;
}

static size_t resident_pages(void *p, size_t n)
{
    size_t pages = (n + 4095) / 4096, in = 0;
    unsigned char *v = malloc(pages);
    if (!v || mincore(p, n, v))
        FAIL("mincore failed");
    for (size_t i = 0; i < pages; i++)
        in += v[i] & 1;
    free(v);
    return in;
}

static int ready(int pinned)
{
    size_t n = 16u << 20, pages = n / 4096;
    CUdevice dev;
    CK(cuInit(0));
    CK(cuDeviceGet(&dev, 0));
    CK(cuCtxCreate(&ctx, NULL, 0, dev));
    CUdeviceptr d;
    CK(cuMemAlloc(&d, n));
    if (pinned) {
        void *h;
        CK(cuMemAllocHost(&h, n));
        size_t in = resident_pages(h, n);
        if (in != pages)
            FAIL("cuMemAllocHost: %zu of %zu pages resident before any use", in, pages);
        void *r = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (r == MAP_FAILED)
            FAIL("mmap failed");
        CK(cuMemHostRegister(r, n, 0));
        in = resident_pages(r, n);
        if (in != pages)
            FAIL("cuMemHostRegister: %zu of %zu pages resident before any use", in, pages);
        printf("page-locked memory resident: %zu + %zu pages\n", pages, pages);
    }
    sleep(1);
    printf("PASS %s\n", PROG);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "ready"))
        return ready(argc < 3 || strcmp(argv[2], "none"));
    size = (argc > 1 ? strtoul(argv[1], NULL, 10) : 37) << 20;
    size += 4097; /* not a whole number of chunks */
    CUdevice dev;
    CK(cuInit(0));
    CK(cuDeviceGet(&dev, 0));
    CK(cuCtxCreate(&ctx, NULL, 0, dev));

    /* pageable: a copy, then a memset over part of it, posted behind it */
    uint8_t *a = malloc(size), *back = malloc(size);
    if (!a || !back)
        FAIL("out of host memory");
    fill(a, size, 7);
    CUdeviceptr da, db, dc;
    CK(cuMemAlloc(&da, size));
    CK(cuMemcpyHtoD(da, a, size));
    size_t mo = 5u << 20, ml = 1u << 20;
    CK(cuMemsetD8(da + mo, 0x7e, ml));
    CK(cuMemcpyDtoH(back, da, size));
    for (size_t i = 0; i < size; i++) {
        uint8_t want = i >= mo && i < mo + ml ? 0x7e : byte_at(i, 7);
        if (back[i] != want)
            FAIL("copy then memset: byte %zu is 0x%02x, expected 0x%02x", i, back[i], want);
    }

    /* pinned, asynchronous on a stream, then a device-to-device copy on that stream */
    uint8_t *pin;
    CUstream s;
    CK(cuMemAllocHost((void **)&pin, size));
    CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CK(cuMemAlloc(&db, size));
    CK(cuMemAlloc(&dc, size));
    fill(pin, size, 8);
    CK(cuMemcpyHtoDAsync(db, pin, size, s));
    CK(cuMemcpyDtoDAsync(dc, db, size, s));
    CK(cuStreamSynchronize(s));
    CK(cuMemcpyDtoH(back, dc, size));
    expect(back, size, 8, "pinned copy, then device-to-device on its stream");

    /* several threads at once, each its own buffer and allocation */
    pthread_t th[THREADS];
    for (unsigned t = 0; t < THREADS; t++)
        if (pthread_create(&th[t], NULL, copier, (void *)(uintptr_t)t))
            FAIL("no thread");
    for (unsigned t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);

    CK(cuStreamDestroy(s));
    CK(cuMemFreeHost(pin));
    CK(cuMemFree(da));
    CK(cuMemFree(db));
    CK(cuMemFree(dc));
    CK(cuCtxDestroy(ctx));
    free(a);
    free(back);
    printf("PASS %s\n", PROG);
    return 0;
}
