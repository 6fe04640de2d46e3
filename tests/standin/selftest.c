/* Self-test of the TEST DOUBLE libgpuwire_standin.so (gpuwire's CPU stand-in driver).
 * Loads the library with dlopen, as the worker does, and exercises device queries,
 * contexts, allocation, every copy and memset, streams and events, module and library
 * loading, a launch of every registered kernel, bad pointers, bad handles, launch limits,
 * sticky faults, per-thread contexts and concurrent use; the virtual memory API (selftest_vmm.h).
 *   standin_selftest path/to/libgpuwire_standin.so [--dump-registry] */
#define _GNU_SOURCE
#include <cuda.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "selftest.h"
#include "selftest_vmm.h"

static const CUdeviceptr BOGUS = 0x10;

static void test_device(void)
{
    int n = -1;
    EXPECT(F(cuDeviceGetCount)(&n), CUDA_ERROR_NOT_INITIALIZED);
    OK(F(cuInit)(0));
    OK(F(cuDeviceGetCount)(&n));
    TRUE(n == 1);
    CUdevice dev;
    OK(F(cuDeviceGet)(&dev, 0));
    EXPECT(F(cuDeviceGet)(&dev, 1), CUDA_ERROR_INVALID_DEVICE);
    EXPECT(F(cuDeviceGet)(&dev, -1), CUDA_ERROR_INVALID_DEVICE);
    char name[64];
    OK(F(cuDeviceGetName)(name, sizeof name, 0));
    TRUE(strcmp(name, "gpuwire CPU stand-in") == 0);
    OK(F(cuDeviceGetName)(name, 5, 0));
    TRUE(strcmp(name, "gpuw") == 0);
    int major, minor, v;
    OK(F(cuDeviceComputeCapability)(&major, &minor, 0));
    TRUE(major == 9 && minor == 0);
    OK(F(cuDeviceGetAttribute)(&v, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 0));
    TRUE(v == 9);
    OK(F(cuDeviceGetAttribute)(&v, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, 0));
    TRUE(v == 1024);
    OK(F(cuDeviceGetAttribute)(&v, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 0));
    TRUE(v == 32);
    for (int a = 1; a < CU_DEVICE_ATTRIBUTE_MAX; a++)
        OK(F(cuDeviceGetAttribute)(&v, (CUdevice_attribute)a, 0));
    EXPECT(F(cuDeviceGetAttribute)(&v, (CUdevice_attribute)0, 0), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuDeviceGetAttribute)(&v, CU_DEVICE_ATTRIBUTE_MAX, 0), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuDeviceGetAttribute)(&v, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 3), CUDA_ERROR_INVALID_DEVICE);
    CUuuid u1, u2;
    OK(F(cuDeviceGetUuid_v2)(&u1, 0));
    OK(F(cuDeviceGetUuid)(&u2, 0));
    TRUE(memcmp(&u1, &u2, sizeof u1) == 0);
    size_t total;
    OK(F(cuDeviceTotalMem_v2)(&total, 0));
    TRUE(total == (size_t)8 << 30);
    OK(F(cuDriverGetVersion)(&v));
    TRUE(v >= 13000);
    const char *s;
    OK(F(cuGetErrorName)(CUDA_ERROR_ILLEGAL_ADDRESS, &s));
    TRUE(strcmp(s, "CUDA_ERROR_ILLEGAL_ADDRESS") == 0);
    OK(F(cuGetErrorString)(CUDA_ERROR_INVALID_VALUE, &s));
    TRUE(strcmp(s, "invalid argument") == 0);
    EXPECT(F(cuGetErrorName)((CUresult)123456, &s), CUDA_ERROR_INVALID_VALUE);
}

static void test_context(void)
{
    CUcontext cur = (CUcontext)1, pc, pc2;
    CUdeviceptr d;
    OK(F(cuCtxGetCurrent)(&cur));
    TRUE(cur == NULL);
    EXPECT(F(cuMemAlloc_v2)(&d, 16), CUDA_ERROR_INVALID_CONTEXT);
    unsigned int flags;
    int active;
    OK(F(cuDevicePrimaryCtxGetState)(0, &flags, &active));
    TRUE(!active);
    OK(F(cuDevicePrimaryCtxRetain)(&pc, 0));
    OK(F(cuDevicePrimaryCtxRetain)(&pc2, 0));
    TRUE(pc == pc2);
    OK(F(cuDevicePrimaryCtxRelease_v2)(0));
    OK(F(cuCtxSetCurrent)(pc));
    OK(F(cuCtxGetCurrent)(&cur));
    TRUE(cur == pc);
    OK(F(cuDevicePrimaryCtxGetState)(0, &flags, &active));
    TRUE(active);
    CUdevice dev = -1;
    OK(F(cuCtxGetDevice)(&dev));
    TRUE(dev == 0);

    /* A created context is pushed, popped, destroyed; its handle then dies. */
    CUcontext c;
    OK(F(cuCtxCreate_v4)(&c, NULL, 0, 0));
    OK(F(cuCtxGetCurrent)(&cur));
    TRUE(cur == c);
    CUcontext popped;
    OK(F(cuCtxPopCurrent_v2)(&popped));
    TRUE(popped == c);
    OK(F(cuCtxGetCurrent)(&cur));
    TRUE(cur == pc);
    OK(F(cuCtxPushCurrent_v2)(c));
    OK(F(cuMemAlloc_v2)(&d, 1000)); /* freed with the context */
    OK(F(cuCtxPopCurrent_v2)(NULL));
    OK(F(cuCtxDestroy_v2)(c));
    EXPECT(F(cuCtxDestroy_v2)(c), CUDA_ERROR_INVALID_CONTEXT);
    EXPECT(F(cuCtxPushCurrent_v2)(c), CUDA_ERROR_INVALID_CONTEXT);
    EXPECT(F(cuCtxSetCurrent)((CUcontext)(uintptr_t)0x1234), CUDA_ERROR_INVALID_CONTEXT);
    EXPECT(F(cuCtxDestroy_v2)(pc), CUDA_ERROR_INVALID_CONTEXT); /* the primary is not destroyable */

    size_t lim;
    OK(F(cuCtxSetLimit)(CU_LIMIT_STACK_SIZE, 4096));
    OK(F(cuCtxGetLimit)(&lim, CU_LIMIT_STACK_SIZE));
    TRUE(lim == 4096);
    EXPECT(F(cuCtxGetLimit)(&lim, (CUlimit)999), CUDA_ERROR_INVALID_VALUE);
    int lo, hi;
    OK(F(cuCtxGetStreamPriorityRange)(&lo, &hi));
    TRUE(lo == 0 && hi == -5);
    unsigned int ver;
    OK(F(cuCtxGetApiVersion)(pc, &ver));
    OK(F(cuCtxSynchronize)());
}

static void test_memory(void)
{
    const size_t n = 100003;
    unsigned char *h = malloc(n), *back = malloc(n);
    TRUE(h && back);
    for (size_t i = 0; i < n; i++)
        h[i] = (unsigned char)(i * 7 + 3);
    CUdeviceptr a, b;
    OK(F(cuMemAlloc_v2)(&a, n));
    OK(F(cuMemAlloc_v2)(&b, n));
    TRUE(a % 512 == 0);
    EXPECT(F(cuMemAlloc_v2)(&a + 0, 0) == CUDA_ERROR_INVALID_VALUE ? CUDA_SUCCESS : CUDA_ERROR_UNKNOWN, CUDA_SUCCESS);
    CUdeviceptr huge;
    EXPECT(F(cuMemAlloc_v2)(&huge, (size_t)9 << 30), CUDA_ERROR_OUT_OF_MEMORY);

    size_t fr, tot;
    OK(F(cuMemGetInfo_v2)(&fr, &tot));
    TRUE(tot == (size_t)8 << 30 && fr < tot);

    OK(F(cuMemcpyHtoD_v2)(a, h, n));
    OK(F(cuMemcpyDtoD_v2)(b, a, n));
    OK(F(cuMemcpyDtoH_v2)(back, b, n));
    TRUE(memcmp(h, back, n) == 0);
    OK(F(cuMemcpy)(a + 1, b, n - 1));
    OK(F(cuMemcpyDtoH_v2)(back, a + 1, n - 1));
    TRUE(memcmp(h, back, n - 1) == 0);

    /* Bad device ranges: unknown, past the end, wrapping, host memory given as device. */
    EXPECT(F(cuMemcpyHtoD_v2)(BOGUS, h, 16), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemcpyDtoH_v2)(back, BOGUS, 16), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemcpyHtoD_v2)(a, h, n + 1), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemcpyHtoD_v2)(a + n, h, 1), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemcpyDtoD_v2)(a, UINT64_MAX - 4, 16), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemcpyDtoD_v2)(a + 8, a, SIZE_MAX), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemcpy)(a, (CUdeviceptr)(uintptr_t)h, 16), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemsetD8_v2)(BOGUS, 0, 1), CUDA_ERROR_INVALID_VALUE);
    OK(F(cuMemcpyHtoD_v2)(BOGUS, h, 0)); /* nothing to move */

    /* Memsets, with alignment rules for 16 and 32 bits. */
    OK(F(cuMemsetD8_v2)(a + 3, 0xab, 10));
    OK(F(cuMemcpyDtoH_v2)(back, a, 16));
    TRUE(back[2] != 0xab && back[3] == 0xab && back[12] == 0xab && back[13] != 0xab);
    OK(F(cuMemsetD16_v2)(a, 0x1234, 5));
    EXPECT(F(cuMemsetD16_v2)(a + 1, 0x1234, 5), CUDA_ERROR_INVALID_VALUE);
    OK(F(cuMemsetD32_v2)(a + 4, 0xdeadbeef, 3));
    EXPECT(F(cuMemsetD32_v2)(a + 2, 1, 1), CUDA_ERROR_INVALID_VALUE);
    uint16_t h16[5];
    uint32_t h32[3];
    OK(F(cuMemcpyDtoH_v2)(h16, a, sizeof h16));
    OK(F(cuMemcpyDtoH_v2)(h32, a + 4, sizeof h32));
    TRUE(h16[0] == 0x1234 && h16[1] == 0x1234 && h32[2] == 0xdeadbeef);
    EXPECT(F(cuMemsetD32_v2)(a + n - 8, 1, 3), CUDA_ERROR_INVALID_VALUE);

    /* Pitched allocation, 2D memset and copies, and a 3D copy. */
    CUdeviceptr p;
    size_t pitch;
    OK(F(cuMemAllocPitch_v2)(&p, &pitch, 300, 10, 4));
    TRUE(pitch >= 300 && pitch % 512 == 0);
    EXPECT(F(cuMemAllocPitch_v2)(&p + 0, &pitch + 0, 300, 10, 3) == CUDA_ERROR_INVALID_VALUE ? CUDA_SUCCESS : CUDA_ERROR_UNKNOWN, CUDA_SUCCESS);
    OK(F(cuMemsetD2D8_v2)(p, pitch, 0, 300, 10));
    OK(F(cuMemsetD2D8_v2)(p + pitch + 5, pitch, 7, 20, 3));
    EXPECT(F(cuMemsetD2D8_v2)(p, pitch, 7, 300, 11), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemsetD2D8_v2)(p, 10, 7, 300, 2), CUDA_ERROR_INVALID_VALUE); /* pitch < width */
    unsigned char rows[10][300];
    CUDA_MEMCPY2D c2;
    memset(&c2, 0, sizeof c2);
    c2.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    c2.srcDevice = p;
    c2.srcPitch = pitch;
    c2.dstMemoryType = CU_MEMORYTYPE_HOST;
    c2.dstHost = rows;
    c2.dstPitch = 300;
    c2.WidthInBytes = 300;
    c2.Height = 10;
    OK(F(cuMemcpy2D_v2)(&c2));
    TRUE(rows[0][5] == 0 && rows[1][4] == 0 && rows[1][5] == 7 && rows[3][24] == 7 && rows[3][25] == 0 && rows[4][5] == 0);
    c2.Height = 11;
    EXPECT(F(cuMemcpy2D_v2)(&c2), CUDA_ERROR_INVALID_VALUE);
    c2.Height = 10;
    c2.srcXInBytes = pitch; /* the box would leave the allocation */
    EXPECT(F(cuMemcpy2D_v2)(&c2), CUDA_ERROR_INVALID_VALUE);
    c2.srcXInBytes = 0;
    c2.srcMemoryType = CU_MEMORYTYPE_ARRAY; /* srcArray is NULL: no array */
    EXPECT(F(cuMemcpy2D_v2)(&c2), CUDA_ERROR_INVALID_HANDLE);

    CUDA_MEMCPY3D c3;
    memset(&c3, 0, sizeof c3);
    unsigned char box[2][3][8], box2[2][3][8];
    for (size_t i = 0; i < sizeof box; i++)
        ((unsigned char *)box)[i] = (unsigned char)i;
    c3.srcMemoryType = CU_MEMORYTYPE_HOST;
    c3.srcHost = box;
    c3.srcPitch = 8;
    c3.srcHeight = 3;
    c3.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    c3.dstDevice = p;
    c3.dstPitch = pitch;
    c3.dstHeight = 5;
    c3.WidthInBytes = 8;
    c3.Height = 3;
    c3.Depth = 2;
    OK(F(cuMemcpy3D_v2)(&c3));
    CUDA_MEMCPY3D r3 = c3;
    r3.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    r3.srcDevice = p;
    r3.srcPitch = pitch;
    r3.srcHeight = 5;
    r3.dstMemoryType = CU_MEMORYTYPE_HOST;
    r3.dstHost = box2;
    r3.dstPitch = 8;
    r3.dstHeight = 3;
    OK(F(cuMemcpy3D_v2)(&r3));
    TRUE(memcmp(box, box2, sizeof box) == 0);
    r3.Depth = 3; /* 3 slices of 5 rows do not fit in 10 rows */
    EXPECT(F(cuMemcpy3D_v2)(&r3), CUDA_ERROR_INVALID_VALUE);

    /* Address range and pointer attributes. */
    CUdeviceptr base;
    size_t size;
    OK(F(cuMemGetAddressRange_v2)(&base, &size, a + 77));
    TRUE(base == a && size == n);
    EXPECT(F(cuMemGetAddressRange_v2)(&base, &size, BOGUS), CUDA_ERROR_NOT_FOUND);
    unsigned int mt = 0;
    OK(F(cuPointerGetAttribute)(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, a + 5));
    TRUE(mt == CU_MEMORYTYPE_DEVICE);
    EXPECT(F(cuPointerGetAttribute)(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, BOGUS), CUDA_ERROR_INVALID_VALUE);
    CUpointer_attribute at[3] = {CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                                 CU_POINTER_ATTRIBUTE_HOST_POINTER};
    int ord = 5;
    void *hp = (void *)1;
    void *data[3] = {&mt, &ord, &hp};
    OK(F(cuPointerGetAttributes)(3, at, data, a));
    TRUE(mt == CU_MEMORYTYPE_DEVICE && ord == 0 && hp == NULL);
    OK(F(cuPointerGetAttributes)(3, at, data, (CUdeviceptr)(uintptr_t)h));
    TRUE(mt == 0);

    /* Frees: interior and unknown pointers are refused, NULL is fine. */
    EXPECT(F(cuMemFree_v2)(a + 8), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemFree_v2)(BOGUS), CUDA_ERROR_INVALID_VALUE);
    OK(F(cuMemFree_v2)(0));
    OK(F(cuMemFree_v2)(a));
    EXPECT(F(cuMemFree_v2)(a), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemcpyHtoD_v2)(a, h, 1), CUDA_ERROR_INVALID_VALUE); /* freed memory is gone */
    OK(F(cuMemFree_v2)(b));
    OK(F(cuMemFree_v2)(p));
    free(h);
    free(back);
}

static void test_streams_events(void)
{
    CUstream s, sp;
    OK(F(cuStreamCreate)(&s, CU_STREAM_NON_BLOCKING));
    OK(F(cuStreamCreateWithPriority)(&sp, 0, -100));
    int prio;
    unsigned int fl;
    OK(F(cuStreamGetPriority)(sp, &prio));
    TRUE(prio == -5);
    OK(F(cuStreamGetFlags)(s, &fl));
    TRUE(fl == CU_STREAM_NON_BLOCKING);
    OK(F(cuStreamGetFlags)(NULL, &fl));
    CUcontext sc, cur;
    OK(F(cuStreamGetCtx)(s, &sc));
    OK(F(cuCtxGetCurrent)(&cur));
    TRUE(sc == cur);
    unsigned long long id1, id2;
    OK(F(cuStreamGetId)(s, &id1));
    OK(F(cuStreamGetId)(sp, &id2));
    TRUE(id1 != id2);

    CUdeviceptr d;
    unsigned char buf[64], out[64];
    memset(buf, 9, sizeof buf);
    OK(F(cuMemAlloc_v2)(&d, 64));
    OK(F(cuMemcpyHtoDAsync_v2)(d, buf, 64, s));
    OK(F(cuMemsetD8Async)(d, 4, 8, s));
    OK(F(cuMemcpyDtoDAsync_v2)(d + 32, d, 8, CU_STREAM_LEGACY));
    OK(F(cuMemcpyDtoHAsync_v2)(out, d, 64, CU_STREAM_PER_THREAD));
    OK(F(cuStreamSynchronize)(s));
    TRUE(out[0] == 4 && out[8] == 9 && out[32] == 4 && out[40] == 9);
    OK(FAS(cuMemcpyHtoDAsync_v2, "cuMemcpyHtoDAsync_v2_ptsz")(d, buf, 64, NULL));
    OK(F(cuStreamQuery)(s));

    CUevent e0, e1, nt, never;
    OK(F(cuEventCreate)(&e0, 0));
    OK(F(cuEventCreate)(&e1, CU_EVENT_BLOCKING_SYNC));
    OK(F(cuEventCreate)(&nt, CU_EVENT_DISABLE_TIMING));
    OK(F(cuEventCreate)(&never, 0));
    EXPECT(F(cuEventCreate)(&never + 0, 0x80), CUDA_ERROR_INVALID_VALUE);
    OK(F(cuEventQuery)(never));
    OK(F(cuEventRecord)(e0, s));
    OK(F(cuStreamWaitEvent)(sp, e0, 0));
    OK(F(cuEventRecord)(e1, sp));
    OK(F(cuEventRecord)(nt, sp));
    OK(F(cuEventSynchronize)(e1));
    float ms = -1;
    OK(F(cuEventElapsedTime_v2)(&ms, e0, e1));
    TRUE(ms >= 0);
    OK(F(cuEventElapsedTime)(&ms, e0, e1));
    EXPECT(F(cuEventElapsedTime_v2)(&ms, e0, nt), CUDA_ERROR_INVALID_HANDLE);
    EXPECT(F(cuEventElapsedTime_v2)(&ms, e0, never), CUDA_ERROR_INVALID_HANDLE);

    /* Bad handles. */
    CUstream bs = (CUstream)(uintptr_t)0x5000;
    CUevent be = (CUevent)(uintptr_t)0x6000;
    EXPECT(F(cuStreamSynchronize)(bs), CUDA_ERROR_INVALID_HANDLE);
    EXPECT(F(cuMemcpyHtoDAsync_v2)(d, buf, 4, bs), CUDA_ERROR_INVALID_HANDLE);
    EXPECT(F(cuEventRecord)(be, s), CUDA_ERROR_INVALID_HANDLE);
    EXPECT(F(cuEventRecord)(e0, bs), CUDA_ERROR_INVALID_HANDLE);
    EXPECT(F(cuStreamWaitEvent)(s, be, 0), CUDA_ERROR_INVALID_HANDLE);
    EXPECT(F(cuStreamDestroy_v2)(NULL), CUDA_ERROR_INVALID_HANDLE);
    EXPECT(F(cuEventQuery)((CUevent)s), CUDA_ERROR_INVALID_HANDLE); /* right pointer, wrong kind */

    OK(F(cuEventDestroy_v2)(e0));
    EXPECT(F(cuEventDestroy_v2)(e0), CUDA_ERROR_INVALID_HANDLE);
    OK(F(cuEventDestroy_v2)(e1));
    OK(F(cuEventDestroy)(nt));
    OK(F(cuEventDestroy_v2)(never));
    OK(F(cuStreamDestroy_v2)(s));
    EXPECT(F(cuStreamQuery)(s), CUDA_ERROR_INVALID_HANDLE);
    OK(F(cuStreamDestroy)(sp));
    OK(F(cuMemFree_v2)(d));
}

/* ---- kernels ---- */

static CUdeviceptr dalloc(size_t n)
{
    CUdeviceptr d;
    OK(F(cuMemAlloc_v2)(&d, n));
    OK(F(cuMemsetD8_v2)(d, 0, n));
    return d;
}

static void launch1(CUfunction f, unsigned int grid, unsigned int block, void **params)
{
    OK(F(cuLaunchKernel)(f, grid, 1, 1, block, 1, 1, 0, NULL, params, NULL));
}

static void test_kernels(CUfunction (*get)(const char *))
{
    const int n = 1000;
    float fa[1000], fb[1000], fc[1000];
    for (int i = 0; i < n; i++) {
        fa[i] = (float)i;
        fb[i] = (float)(2 * i) + 0.5f;
    }
    CUdeviceptr a = dalloc(n * 4), b = dalloc(n * 4), c = dalloc(n * 4);
    OK(F(cuMemcpyHtoD_v2)(a, fa, sizeof fa));
    OK(F(cuMemcpyHtoD_v2)(b, fb, sizeof fb));
    int nn = n;

    /* vector_add */
    void *p_va[] = {&a, &b, &c, &nn};
    launch1(get("_Z10vector_addPKfS0_Pfi"), 4, 256, p_va);
    OK(F(cuMemcpyDtoH_v2)(fc, c, sizeof fc));
    for (int i = 0; i < n; i++)
        TRUE(fc[i] == fa[i] + fb[i]);

    /* se_produce then se_consume */
    int base = 7, spins = 3, add = 5;
    int hi[1000];
    void *p_pr[] = {&a, &nn, &base, &spins};
    launch1(get("_Z10se_producePiiii"), 8, 128, p_pr);
    void *p_co[] = {&a, &b, &nn, &add};
    launch1(get("_Z10se_consumePKiPiii"), 8, 128, p_co);
    OK(F(cuMemcpyDtoH_v2)(hi, b, sizeof hi));
    for (int i = 0; i < n; i++) {
        uint32_t v = (uint32_t)(7 + i);
        for (int k = 0; k < 3; k++)
            v = v * 1664525u + 1013904223u;
        TRUE(hi[i] == (int)(v & 0x7fffffff) + 5);
    }

    /* ep_touch */
    void *p_ep[] = {&c, &nn};
    launch1(get("_Z8ep_touchPii"), 1, 1000, p_ep);
    OK(F(cuMemcpyDtoH_v2)(hi, c, sizeof hi));
    TRUE(hi[0] == 1 && hi[999] == 1000);

    /* mm_iota, mm_count_odd */
    CUdeviceptr cnt = dalloc(4);
    void *p_io[] = {&a, &nn};
    launch1(get("_Z7mm_iotaPii"), 8, 128, p_io);
    void *p_cn[] = {&a, &nn, &cnt};
    launch1(get("_Z12mm_count_oddPKiiPj"), 8, 128, p_cn);
    unsigned int count;
    OK(F(cuMemcpyDtoH_v2)(&count, cnt, 4));
    TRUE(count == 500); /* 3i-5 is odd exactly when i is even */

    /* mm_axpy_f, mm_axpy_d */
    float alpha = 2.0f;
    OK(F(cuMemcpyHtoD_v2)(a, fa, sizeof fa));
    OK(F(cuMemcpyHtoD_v2)(b, fb, sizeof fb));
    void *p_af[] = {&alpha, &a, &b, &nn};
    launch1(get("_Z9mm_axpy_ffPKfPfi"), 8, 128, p_af);
    OK(F(cuMemcpyDtoH_v2)(fc, b, sizeof fc));
    TRUE(fc[10] == 2.0f * 10.0f + 20.5f);
    double dx[4] = {1, 2, 3, 4}, dy[4] = {1, 1, 1, 1}, da = -0.5;
    CUdeviceptr ddx = dalloc(32), ddy = dalloc(32);
    int four = 4;
    OK(F(cuMemcpyHtoD_v2)(ddx, dx, 32));
    OK(F(cuMemcpyHtoD_v2)(ddy, dy, 32));
    void *p_ad[] = {&da, &ddx, &ddy, &four};
    launch1(get("_Z9mm_axpy_ddPKdPdi"), 1, 32, p_ad);
    OK(F(cuMemcpyDtoH_v2)(dy, ddy, 32));
    TRUE(dy[0] == 0.5 && dy[3] == -1.0);

    /* mm_mixed: odd sizes and offsets */
    char ch = -7;
    short sh = -12345;
    int in = 123456789;
    double dd = 2.5;
    float ff = -1.25f;
    unsigned char uc = 200;
    CUdeviceptr o6 = dalloc(48);
    void *p_mx[] = {&ch, &sh, &in, &dd, &ff, &uc, &o6};
    launch1(get("_Z8mm_mixedcsidfhPx"), 2, 32, p_mx);
    long long l6[6];
    OK(F(cuMemcpyDtoH_v2)(l6, o6, sizeof l6));
    TRUE(l6[0] == -7 && l6[1] == -12345 && l6[2] == 123456789 && l6[3] == 2500 && l6[4] == -1250 && l6[5] == 200);

    /* mm_apply: struct by value */
    struct {
        int n;
        float scale;
        char tag;
        double offset;
    } mp = {n, 0.5f, 3, 100.25};
    CUdeviceptr res = dalloc(n * 8);
    void *p_ap[] = {&mp, &a, &res};
    launch1(get("_Z8mm_apply9mm_paramsPKfPd"), 8, 128, p_ap);
    double hres[1000];
    OK(F(cuMemcpyDtoH_v2)(hres, res, sizeof hres));
    TRUE(hres[0] == 103.25 && hres[10] == 5.0 + 103.25);

    /* mm_fill<short>, mm_fill<unsigned char> */
    short sv = -300;
    unsigned char uv = 250;
    int ten = 10;
    CUdeviceptr fs = dalloc(20), fu = dalloc(10);
    void *p_fs[] = {&fs, &sv, &ten};
    launch1(get("_Z7mm_fillIsEvPT_S0_i"), 1, 32, p_fs);
    void *p_fu[] = {&fu, &uv, &ten};
    launch1(get("_Z7mm_fillIhEvPT_S0_i"), 1, 32, p_fu);
    short hs[10];
    unsigned char hu[10];
    OK(F(cuMemcpyDtoH_v2)(hs, fs, sizeof hs));
    OK(F(cuMemcpyDtoH_v2)(hu, fu, sizeof hu));
    TRUE(hs[0] == -300 && hs[3] == -297 && hs[4] == -300 && hu[2] == 252 && hu[9] == 251);

    /* da_scale with kernelParams, da_mix with the packed buffer */
    float factor = 3.0f;
    void *p_ds[] = {&a, &factor, &nn};
    launch1(get("da_scale"), 8, 128, p_ds);
    OK(F(cuMemcpyDtoH_v2)(fc, a, sizeof fc));
    TRUE(fc[7] == 21.0f);
    struct {
        int a;
        char b;
        double c;
        CUdeviceptr out;
    } pk = {42, -3, 2.5, o6};
    size_t pks = sizeof pk;
    void *extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &pk, CU_LAUNCH_PARAM_BUFFER_SIZE, &pks, CU_LAUNCH_PARAM_END};
    CUfunction mix = get("da_mix");
    OK(F(cuLaunchKernel)(mix, 1, 1, 1, 6, 1, 1, 0, NULL, NULL, extra));
    OK(F(cuMemcpyDtoH_v2)(l6, o6, sizeof l6));
    TRUE(l6[0] == 42000 - 3 + 25 && l6[5] == 42000 - 3 + 25 + 5);
    size_t small = 20;
    void *extra_small[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &pk, CU_LAUNCH_PARAM_BUFFER_SIZE, &small, CU_LAUNCH_PARAM_END};
    EXPECT(F(cuLaunchKernel)(mix, 1, 1, 1, 6, 1, 1, 0, NULL, NULL, extra_small), CUDA_ERROR_INVALID_VALUE);
    void *extra_bad[] = {(void *)(uintptr_t)0x77, &pk, CU_LAUNCH_PARAM_END};
    EXPECT(F(cuLaunchKernel)(mix, 1, 1, 1, 6, 1, 1, 0, NULL, NULL, extra_bad), CUDA_ERROR_INVALID_VALUE);
    void *extra_noend[16];
    for (int i = 0; i < 16; i += 2) {
        extra_noend[i] = CU_LAUNCH_PARAM_BUFFER_SIZE;
        extra_noend[i + 1] = &pks;
    }
    EXPECT(F(cuLaunchKernel)(mix, 1, 1, 1, 6, 1, 1, 0, NULL, NULL, extra_noend), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuLaunchKernel)(mix, 1, 1, 1, 6, 1, 1, 0, NULL, p_ds, extra), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuLaunchKernel)(mix, 1, 1, 1, 6, 1, 1, 0, NULL, NULL, NULL), CUDA_ERROR_INVALID_VALUE);

    /* cuLaunchKernelEx */
    CUlaunchConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDimX = cfg.gridDimY = cfg.gridDimZ = 1;
    cfg.blockDimX = 6;
    cfg.blockDimY = cfg.blockDimZ = 1;
    OK(F(cuLaunchKernelEx)(&cfg, mix, NULL, extra));

    /* Configuration limits. */
    CUfunction va = get("_Z10vector_addPKfS0_Pfi");
    EXPECT(F(cuLaunchKernel)(va, 1, 1, 1, 1025, 1, 1, 0, NULL, p_va, NULL), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuLaunchKernel)(va, 1, 1, 1, 32, 32, 2, 0, NULL, p_va, NULL), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuLaunchKernel)(va, 1, 1, 1, 1, 1, 65, 0, NULL, p_va, NULL), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuLaunchKernel)(va, 0, 1, 1, 32, 1, 1, 0, NULL, p_va, NULL), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuLaunchKernel)(va, 1, 65536, 1, 32, 1, 1, 0, NULL, p_va, NULL), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuLaunchKernel)(va, 1, 1, 1, 32, 1, 1, 49153, NULL, p_va, NULL), CUDA_ERROR_INVALID_VALUE);
    OK(F(cuFuncSetAttribute)(va, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 100000));
    OK(F(cuLaunchKernel)(va, 1, 1, 1, 32, 1, 1, 49153, NULL, p_va, NULL));
    EXPECT(F(cuLaunchKernel)((CUfunction)(uintptr_t)0x9000, 1, 1, 1, 1, 1, 1, 0, NULL, p_va, NULL), CUDA_ERROR_INVALID_HANDLE);
    EXPECT(F(cuLaunchKernel)(va, 1, 1, 1, 1, 1, 1, 0, (CUstream)(uintptr_t)0x9000, p_va, NULL), CUDA_ERROR_INVALID_HANDLE);
    int attr;
    OK(F(cuFuncGetAttribute)(&attr, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, va));
    TRUE(attr == 1024);
    EXPECT(F(cuFuncGetAttribute)(&attr, (CUfunction_attribute)999, va), CUDA_ERROR_INVALID_VALUE);
    int nb, minGrid, bs;
    OK(F(cuOccupancyMaxActiveBlocksPerMultiprocessor)(&nb, va, 256, 0));
    TRUE(nb == 8);
    OK(F(cuOccupancyMaxPotentialBlockSize)(&minGrid, &bs, va, NULL, 0, 0));
    TRUE(bs == 1024 && minGrid == 264);

    /* Launch-time nothing is checked; only the kernel's own accesses are. A kernel that stays in
     * bounds with a short buffer is fine. */
    CUdeviceptr d8 = dalloc(8);
    int two = 2;
    void *p_ok[] = {&d8, &two};
    launch1(get("_Z8ep_touchPii"), 1, 32, p_ok);
    OK(F(cuCtxSynchronize)());

    CUdeviceptr all[] = {a, b, c, cnt, ddx, ddy, o6, res, fs, fu, d8};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        OK(F(cuMemFree_v2)(all[i]));
}

static CUmodule g_mod;
static CUlibrary g_lib_h;

static CUfunction from_module(const char *name)
{
    CUfunction f, again;
    OK(F(cuModuleGetFunction)(&f, g_mod, name));
    OK(F(cuModuleGetFunction)(&again, g_mod, name));
    TRUE(f == again);
    return f;
}

/* The CUkernel is passed as a CUfunction, as cudart does with library kernels. */
static CUfunction from_library(const char *name)
{
    CUkernel k;
    OK(F(cuLibraryGetKernel)(&k, g_lib_h, name));
    return (CUfunction)k;
}

static void test_modules(void)
{
    static const unsigned char image[] = "not parsed by the stand-in";
    OK(F(cuModuleLoadData)(&g_mod, image));
    EXPECT(F(cuModuleLoadData)(&g_mod + 0, NULL), CUDA_ERROR_INVALID_VALUE);
    CUfunction f;
    EXPECT(F(cuModuleGetFunction)(&f, g_mod, "no_such_kernel"), CUDA_ERROR_NOT_FOUND);
    EXPECT(F(cuModuleGetFunction)(&f, (CUmodule)(uintptr_t)0x4000, "da_mix"), CUDA_ERROR_INVALID_HANDLE);
    f = from_module("da_mix");
    size_t off, size;
    const size_t want[4][2] = {{0, 4}, {4, 1}, {8, 8}, {16, 8}};
    for (size_t i = 0; i < 4; i++) {
        OK(F(cuFuncGetParamInfo)(f, i, &off, &size));
        TRUE(off == want[i][0] && size == want[i][1]);
    }
    EXPECT(F(cuFuncGetParamInfo)(f, 4, &off, &size), CUDA_ERROR_INVALID_VALUE);
    const char *nm;
    OK(F(cuFuncGetName)(&nm, f));
    TRUE(strcmp(nm, "da_mix") == 0);
    CUmodule owner;
    OK(F(cuFuncGetModule)(&owner, f));
    TRUE(owner == g_mod);
    unsigned int cnt;
    OK(F(cuModuleGetFunctionCount)(&cnt, g_mod));
    TRUE(cnt == 18); /* every kernel the stand-in registers (it serves any image) */
    test_kernels(from_module);

    OK(F(cuLibraryLoadData)(&g_lib_h, image, NULL, NULL, 0, NULL, NULL, 0));
    CUkernel k;
    EXPECT(F(cuLibraryGetKernel)(&k, g_lib_h, "missing"), CUDA_ERROR_NOT_FOUND);
    OK(F(cuLibraryGetKernel)(&k, g_lib_h, "_Z8mm_mixedcsidfhPx"));
    OK(F(cuKernelGetParamInfo)(k, 5, &off, &size));
    TRUE(off == 20 && size == 1);
    CUfunction kf;
    OK(F(cuKernelGetFunction)(&kf, k));
    OK(F(cuFuncGetParamInfo)(kf, 6, &off, &size));
    TRUE(off == 24 && size == 8);
    int attr;
    OK(F(cuKernelGetAttribute)(&attr, CU_FUNC_ATTRIBUTE_NUM_REGS, k, 0));
    OK(F(cuFuncGetAttribute)(&attr, CU_FUNC_ATTRIBUTE_NUM_REGS, (CUfunction)k));
    test_kernels(from_library);
    OK(F(cuLibraryUnload)(g_lib_h));
    EXPECT(F(cuLibraryGetKernel)(&k, g_lib_h, "da_mix"), CUDA_ERROR_INVALID_HANDLE);
    EXPECT(F(cuFuncGetParamInfo)(kf, 0, &off, &size), CUDA_ERROR_INVALID_HANDLE);

    OK(F(cuModuleUnload)(g_mod));
    EXPECT(F(cuModuleUnload)(g_mod), CUDA_ERROR_INVALID_HANDLE);
    EXPECT(F(cuLaunchKernel)(f, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL), CUDA_ERROR_INVALID_HANDLE);
}

/* A kernel touching a bad address faults its context for good; other contexts go on. */
static void test_sticky(void)
{
    CUcontext prim, c;
    OK(F(cuCtxGetCurrent)(&prim));
    OK(F(cuCtxCreate_v4)(&c, NULL, 0, 0));
    CUmodule m;
    CUfunction f;
    OK(F(cuModuleLoadData)(&m, "x"));
    OK(F(cuModuleGetFunction)(&f, m, "_Z8ep_touchPii"));
    CUdeviceptr good = dalloc(64), bad = BOGUS;
    int n = 32;
    void *p_bad[] = {&bad, &n};
    OK(F(cuLaunchKernel)(f, 1, 1, 1, 32, 1, 1, 0, NULL, p_bad, NULL)); /* launches fine */
    EXPECT(F(cuCtxSynchronize)(), CUDA_ERROR_ILLEGAL_ADDRESS);
    CUdeviceptr d;
    EXPECT(F(cuMemAlloc_v2)(&d, 16), CUDA_ERROR_ILLEGAL_ADDRESS);
    EXPECT(F(cuMemcpyHtoD_v2)(good, &n, 4), CUDA_ERROR_ILLEGAL_ADDRESS);
    EXPECT(F(cuStreamSynchronize)(NULL), CUDA_ERROR_ILLEGAL_ADDRESS);
    EXPECT(F(cuCtxSynchronize)(), CUDA_ERROR_ILLEGAL_ADDRESS);

    /* A kernel running off the end of a real allocation faults the same way. */
    OK(F(cuCtxPopCurrent_v2)(NULL));
    OK(F(cuCtxSetCurrent)(prim));
    OK(F(cuCtxSynchronize)());
    OK(F(cuCtxDestroy_v2)(c));

    CUmodule pm;
    OK(F(cuModuleLoadData)(&pm, "x"));
    OK(F(cuModuleGetFunction)(&f, pm, "_Z8ep_touchPii"));
    CUdeviceptr shortbuf = dalloc(16);
    int many = 100;
    void *p_over[] = {&shortbuf, &many};
    OK(F(cuLaunchKernel)(f, 1, 1, 1, 128, 1, 1, 0, NULL, p_over, NULL));
    EXPECT(F(cuCtxSynchronize)(), CUDA_ERROR_ILLEGAL_ADDRESS);
    int first[4];
    EXPECT(F(cuMemcpyDtoH_v2)(first, shortbuf, 16), CUDA_ERROR_ILLEGAL_ADDRESS);

    /* Resetting the primary context clears the fault and everything it held. */
    OK(F(cuDevicePrimaryCtxReset_v2)(0));
    EXPECT(F(cuMemAlloc_v2)(&d, 16), CUDA_ERROR_CONTEXT_IS_DESTROYED);
    CUcontext again;
    OK(F(cuDevicePrimaryCtxRetain)(&again, 0));
    TRUE(again == prim);
    EXPECT(F(cuMemFree_v2)(shortbuf), CUDA_ERROR_INVALID_VALUE); /* freed by the reset */
    EXPECT(F(cuModuleUnload)(pm), CUDA_ERROR_INVALID_HANDLE);
    OK(F(cuMemAlloc_v2)(&d, 16));
    OK(F(cuMemFree_v2)(d));
}

/* ---- threads: each has its own current context; many threads at once are safe ---- */

static CUcontext g_prim;

static void *no_ctx_thread(void *arg)
{
    (void)arg;
    CUcontext cur = (CUcontext)1;
    CUdeviceptr d;
    if (F(cuCtxGetCurrent)(&cur) != CUDA_SUCCESS || cur != NULL)
        return (void *)1;
    if (F(cuMemAlloc_v2)(&d, 16) != CUDA_ERROR_INVALID_CONTEXT)
        return (void *)2;
    return NULL;
}

static void *worker_thread(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    if (F(cuCtxSetCurrent)(g_prim) != CUDA_SUCCESS)
        return (void *)1;
    unsigned char h[4096], back[4096];
    for (int it = 0; it < 300; it++) {
        CUdeviceptr d;
        memset(h, (int)(id * 31 + (uintptr_t)it), sizeof h);
        if (F(cuMemAlloc_v2)(&d, sizeof h) != CUDA_SUCCESS)
            return (void *)2;
        if (F(cuMemcpyHtoD_v2)(d, h, sizeof h) != CUDA_SUCCESS ||
            F(cuMemcpyDtoH_v2)(back, d, sizeof back) != CUDA_SUCCESS || memcmp(h, back, sizeof h) != 0)
            return (void *)3;
        if (F(cuMemFree_v2)(d) != CUDA_SUCCESS)
            return (void *)4;
    }
    return NULL;
}

static void test_threads(void)
{
    OK(F(cuCtxGetCurrent)(&g_prim));
    pthread_t t[5];
    void *ret;
    TRUE(pthread_create(&t[0], NULL, no_ctx_thread, NULL) == 0);
    TRUE(pthread_join(t[0], &ret) == 0 && ret == NULL);
    for (uintptr_t i = 0; i < 5; i++)
        TRUE(pthread_create(&t[i], NULL, worker_thread, (void *)i) == 0);
    for (int i = 0; i < 5; i++) {
        TRUE(pthread_join(t[i], &ret) == 0);
        TRUE(ret == NULL);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s libgpuwire_standin.so [--dump-registry]\n", argv[0]);
        return 2;
    }
    g_lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!g_lib) {
        printf("FAIL standin_selftest: %s\n", dlerror());
        return 1;
    }
    if (argc > 2 && strcmp(argv[2], "--dump-registry") == 0) {
        size_t (*dump)(char *, size_t) = (size_t (*)(char *, size_t))sym("gpuwire_standin_registry_dump");
        size_t need = dump(NULL, 0);
        char *buf = malloc(need);
        if (!buf)
            return 1;
        dump(buf, need);
        fputs(buf, stdout);
        free(buf);
        return 0;
    }
    test_device();
    test_context();
    test_memory();
    test_vmm();
    test_pool_ipc();
    test_streams_events();
    test_modules();
    test_sticky();
    test_threads();
    /* Unimplemented entry points are simply absent. */
    TRUE(dlsym(g_lib, "cuMemAdvise_v2") == NULL);
    TRUE(dlsym(g_lib, "cuIpcOpenEventHandle") == NULL);
    printf("standin_selftest: %d checks\n", g_checks);
    printf("PASS standin_selftest\n");
    return 0;
}
