/* Throwaway fake libcuda.so.1 for probing what cudart asks of the driver.
 * A test tool only: the product never loads it. It implements a few dozen
 * driver calls on the CPU (device memory is host memory, kernels do nothing),
 * serves the export tables from native/client/export_tables.c, logs every
 * call, and hands out a logging NOT_SUPPORTED stub for any other name asked
 * through cuGetProcAddress.
 *
 * Env: FAKE_CUDA_LOG=path  log there instead of stderr
 *      FAKE_DRIVER_VERSION  what cuDriverGetVersion says (default 13000)
 *      FAKE_DENY=hex,...    refuse export tables whose UUID starts so */
#define _GNU_SOURCE
#include <cuda.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../native/client/private/export_tables.h"

/* ------------------------------------------------------------------ log */

static FILE *logf_;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

__attribute__((format(printf, 1, 2))) static void flog(const char *fmt, ...)
{
    pthread_mutex_lock(&log_lock);
    if (logf_ == NULL) {
        const char *p = getenv("FAKE_CUDA_LOG");
        logf_ = p ? fopen(p, "a") : NULL;
        if (logf_ == NULL)
            logf_ = stderr;
    }
    va_list ap;
    va_start(ap, fmt);
    fputs("[fake] ", logf_);
    vfprintf(logf_, fmt, ap);
    fputc('\n', logf_);
    fflush(logf_);
    va_end(ap);
    pthread_mutex_unlock(&log_lock);
}

#define RET(r, ...)                                                                        \
    do {                                                                                   \
        flog(__VA_ARGS__);                                                                 \
        return (r);                                                                        \
    } while (0)

/* --------------------------------------------------------- fake device */

#define NDEV 1
#define CTX_BASE 0x7000u /* opaque context ids: never dereferenced */

static __thread CUcontext ctx_stack[16];
static __thread int ctx_depth; /* ctx_stack[ctx_depth-1] is current */
static int primary_refs[NDEV];

static CUcontext cur_ctx(void) { return ctx_depth ? ctx_stack[ctx_depth - 1] : NULL; }
static CUcontext primary_of(CUdevice d) { return (CUcontext)(uintptr_t)(CTX_BASE + (unsigned)d); }

CUresult cuInit(unsigned flags) { RET(CUDA_SUCCESS, "call cuInit(flags=%u)", flags); }

CUresult cuDriverGetVersion(int *v)
{
    const char *e = getenv("FAKE_DRIVER_VERSION");
    *v = e ? atoi(e) : 13000;
    RET(CUDA_SUCCESS, "call cuDriverGetVersion -> %d", *v);
}

CUresult cuDeviceGetCount(int *n)
{
    *n = NDEV;
    RET(CUDA_SUCCESS, "call cuDeviceGetCount -> %d", *n);
}

CUresult cuDeviceGet(CUdevice *d, int ordinal)
{
    if (ordinal < 0 || ordinal >= NDEV)
        RET(CUDA_ERROR_INVALID_DEVICE, "call cuDeviceGet(%d) -> INVALID_DEVICE", ordinal);
    *d = ordinal;
    RET(CUDA_SUCCESS, "call cuDeviceGet(%d)", ordinal);
}

static CUresult fk_cuDeviceGetName(char *name, int len, CUdevice d)
{
    snprintf(name, (size_t)len, "gpuwire fake device");
    RET(CUDA_SUCCESS, "call cuDeviceGetName(len=%d, dev=%d)", len, d);
}

CUresult cuDeviceGetUuid(CUuuid *u, CUdevice d)
{
    for (int i = 0; i < 16; i++)
        u->bytes[i] = (char)(0xa0 + i + d);
    RET(CUDA_SUCCESS, "call cuDeviceGetUuid(_v2)(dev=%d)", d);
}

static CUresult fk_cuDeviceTotalMem(size_t *b, CUdevice d)
{
    *b = (size_t)80 << 30;
    RET(CUDA_SUCCESS, "call cuDeviceTotalMem_v2(dev=%d)", d);
}

static int attr_value(CUdevice_attribute a)
{
    switch (a) {
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: return 64;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: return 2147483647;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: return 65535;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: return 65535;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: return 49152;
    case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: return 65536;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: return 32;
    case CU_DEVICE_ATTRIBUTE_MAX_PITCH: return 2147483647;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: return 65536;
    case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: return 1755000;
    case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT: return 512;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: return 132;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: return 9;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: return 0;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: return 0x1b;
    case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: return 0;
    case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID: return 0;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: return 1;
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: return 1;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: return 2048;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: return 233472;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: return 232448;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR: return 65536;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: return 5120;
    case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: return 2619000;
    case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: return 52428800;
    case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: return 3;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR: return 32;
    case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: return 1;
    default: return 0;
    }
}

CUresult cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d)
{
    *v = attr_value(a);
    RET(CUDA_SUCCESS, "call cuDeviceGetAttribute(attr=%d, dev=%d) -> %d", (int)a, d, *v);
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice d)
{
    if (d < 0 || d >= NDEV)
        return CUDA_ERROR_INVALID_DEVICE;
    primary_refs[d]++;
    *pctx = primary_of(d);
    RET(CUDA_SUCCESS, "call cuDevicePrimaryCtxRetain(dev=%d) -> ctx=%p refs=%d", d,
        (void *)*pctx, primary_refs[d]);
}

CUresult cuDevicePrimaryCtxRelease(CUdevice d)
{
    if (d < 0 || d >= NDEV)
        return CUDA_ERROR_INVALID_DEVICE;
    if (primary_refs[d] > 0 && --primary_refs[d] == 0)
        gw_export_tables_context_destroyed(primary_of(d));
    RET(CUDA_SUCCESS, "call cuDevicePrimaryCtxRelease_v2(dev=%d) refs=%d", d, primary_refs[d]);
}

CUresult cuDevicePrimaryCtxReset(CUdevice d)
{
    if (d < 0 || d >= NDEV)
        return CUDA_ERROR_INVALID_DEVICE;
    flog("call cuDevicePrimaryCtxReset_v2(dev=%d): running CLS destructors", d);
    gw_export_tables_context_destroyed(primary_of(d));
    primary_refs[d] = 0;
    return CUDA_SUCCESS;
}

static CUresult fk_cuDevicePrimaryCtxGetState(CUdevice d, unsigned *flags, int *active)
{
    *flags = 0;
    *active = primary_refs[d] > 0;
    RET(CUDA_SUCCESS, "call cuDevicePrimaryCtxGetState(dev=%d) -> active=%d", d, *active);
}

static CUresult fk_cuDevicePrimaryCtxSetFlags(CUdevice d, unsigned flags)
{
    RET(CUDA_SUCCESS, "call cuDevicePrimaryCtxSetFlags_v2(dev=%d, flags=%#x)", d, flags);
}

CUresult cuCtxGetCurrent(CUcontext *pctx)
{
    *pctx = cur_ctx();
    RET(CUDA_SUCCESS, "call cuCtxGetCurrent -> %p", (void *)*pctx);
}

static CUresult fk_cuCtxSetCurrent(CUcontext c)
{
    if (c == NULL) {
        if (ctx_depth)
            ctx_depth--;
    } else if (ctx_depth) {
        ctx_stack[ctx_depth - 1] = c;
    } else {
        ctx_stack[ctx_depth++] = c;
    }
    RET(CUDA_SUCCESS, "call cuCtxSetCurrent(%p)", (void *)c);
}

static CUresult fk_cuCtxPushCurrent(CUcontext c)
{
    if (ctx_depth == 16)
        return CUDA_ERROR_INVALID_VALUE;
    ctx_stack[ctx_depth++] = c;
    RET(CUDA_SUCCESS, "call cuCtxPushCurrent_v2(%p)", (void *)c);
}

static CUresult fk_cuCtxPopCurrent(CUcontext *pc)
{
    CUcontext c = ctx_depth ? ctx_stack[--ctx_depth] : NULL;
    if (pc)
        *pc = c;
    RET(CUDA_SUCCESS, "call cuCtxPopCurrent_v2 -> %p", (void *)c);
}

static CUresult fk_cuCtxGetDevice(CUdevice *d)
{
    CUcontext c = cur_ctx();
    if (c == NULL)
        RET(CUDA_ERROR_INVALID_CONTEXT, "call cuCtxGetDevice -> INVALID_CONTEXT");
    *d = (CUdevice)((uintptr_t)c - CTX_BASE);
    RET(CUDA_SUCCESS, "call cuCtxGetDevice -> %d", *d);
}

static CUresult fk_cuCtxSynchronize(void) { RET(CUDA_SUCCESS, "call cuCtxSynchronize"); }

static CUresult fk_cuCtxGetStreamPriorityRange(int *lo, int *hi)
{
    if (lo)
        *lo = 0;
    if (hi)
        *hi = -5;
    RET(CUDA_SUCCESS, "call cuCtxGetStreamPriorityRange");
}

static CUresult fk_cuCtxGetFlags(unsigned *f)
{
    *f = 0;
    RET(CUDA_SUCCESS, "call cuCtxGetFlags");
}

static CUresult fk_cuCtxGetApiVersion(CUcontext c, unsigned *v)
{
    *v = 3020;
    RET(CUDA_SUCCESS, "call cuCtxGetApiVersion(%p) -> %u", (void *)c, *v);
}

static CUresult fk_cuCtxGetLimit(size_t *v, CUlimit l)
{
    *v = (l == CU_LIMIT_STACK_SIZE) ? 1024 : (l == CU_LIMIT_PRINTF_FIFO_SIZE) ? 1 << 20 : 0;
    RET(CUDA_SUCCESS, "call cuCtxGetLimit(%d)", (int)l);
}

/* ------------------------------------------------------------- memory */

static CUresult fk_cuMemAlloc(CUdeviceptr *p, size_t n)
{
    void *m = calloc(1, n ? n : 1);
    if (m == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *p = (CUdeviceptr)(uintptr_t)m;
    RET(CUDA_SUCCESS, "call cuMemAlloc_v2(%zu) -> %#llx", n, (unsigned long long)*p);
}

static CUresult fk_cuMemFree(CUdeviceptr p)
{
    free((void *)(uintptr_t)p);
    RET(CUDA_SUCCESS, "call cuMemFree_v2(%#llx)", (unsigned long long)p);
}

static CUresult fk_cuMemGetInfo(size_t *fr, size_t *tot)
{
    *fr = (size_t)79 << 30;
    *tot = (size_t)80 << 30;
    RET(CUDA_SUCCESS, "call cuMemGetInfo_v2");
}

static CUresult fk_cuMemcpyHtoD(CUdeviceptr d, const void *h, size_t n)
{
    memcpy((void *)(uintptr_t)d, h, n);
    RET(CUDA_SUCCESS, "call cuMemcpyHtoD_v2(%#llx, %p, %zu)", (unsigned long long)d, h, n);
}

static CUresult fk_cuMemcpyDtoH(void *h, CUdeviceptr d, size_t n)
{
    memcpy(h, (void *)(uintptr_t)d, n);
    RET(CUDA_SUCCESS, "call cuMemcpyDtoH_v2(%p, %#llx, %zu)", h, (unsigned long long)d, n);
}

static CUresult fk_cuMemcpyHtoDAsync(CUdeviceptr d, const void *h, size_t n, CUstream s)
{
    memcpy((void *)(uintptr_t)d, h, n);
    RET(CUDA_SUCCESS, "call cuMemcpyHtoDAsync_v2(%#llx, %p, %zu, stream=%p)",
        (unsigned long long)d, h, n, (void *)s);
}

static CUresult fk_cuMemcpyDtoHAsync(void *h, CUdeviceptr d, size_t n, CUstream s)
{
    memcpy(h, (void *)(uintptr_t)d, n);
    RET(CUDA_SUCCESS, "call cuMemcpyDtoHAsync_v2(%p, %#llx, %zu, stream=%p)", h,
        (unsigned long long)d, n, (void *)s);
}

static CUresult fk_cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    memcpy((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n);
    RET(CUDA_SUCCESS, "call cuMemcpy(%#llx, %#llx, %zu)", (unsigned long long)dst,
        (unsigned long long)src, n);
}

static CUresult fk_cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{
    memcpy((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n);
    RET(CUDA_SUCCESS, "call cuMemcpyAsync(%#llx, %#llx, %zu, stream=%p)",
        (unsigned long long)dst, (unsigned long long)src, n, (void *)s);
}

static CUresult fk_cuPointerGetAttribute(void *data, CUpointer_attribute a, CUdeviceptr p)
{
    (void)data;
    RET(CUDA_ERROR_NOT_SUPPORTED, "call cuPointerGetAttribute(attr=%d, %#llx) -> NOT_SUPPORTED",
        (int)a, (unsigned long long)p);
}

/* ----------------------------------------------------- streams, events */

static CUresult fk_cuStreamSynchronize(CUstream s)
{
    RET(CUDA_SUCCESS, "call cuStreamSynchronize(%p)", (void *)s);
}

static CUresult fk_cuStreamCreate(CUstream *s, unsigned f)
{
    static uintptr_t next = 0x5000;
    *s = (CUstream)next++;
    RET(CUDA_SUCCESS, "call cuStreamCreate(flags=%#x) -> %p", f, (void *)*s);
}

static CUresult fk_cuStreamCreateWithPriority(CUstream *s, unsigned f, int prio)
{
    flog("call cuStreamCreateWithPriority(prio=%d)", prio);
    return fk_cuStreamCreate(s, f);
}

static CUresult fk_cuStreamDestroy(CUstream s) { RET(CUDA_SUCCESS, "call cuStreamDestroy_v2(%p)", (void *)s); }

static CUresult fk_cuGetErrorString(CUresult e, const char **s)
{
    *s = "fake error";
    RET(CUDA_SUCCESS, "call cuGetErrorString(%d)", (int)e);
}

static CUresult fk_cuGetErrorName(CUresult e, const char **s)
{
    *s = "CUDA_ERROR_FAKE";
    RET(CUDA_SUCCESS, "call cuGetErrorName(%d)", (int)e);
}

/* ---------------------------------------------------------- modules */

static uintptr_t next_handle = 0x9000;

static void describe_image(const char *what, const void *img)
{
    uint32_t w[4];
    memcpy(w, img, sizeof w);
    flog("  %s image %p: words %#x %#x %#x %#x", what, img, w[0], w[1], w[2], w[3]);
}

CUresult cuModuleLoadData(CUmodule *m, const void *img)
{
    describe_image("cuModuleLoadData", img);
    *m = (CUmodule)next_handle++;
    RET(CUDA_SUCCESS, "call cuModuleLoadData(%p) -> %p", img, (void *)*m);
}

static CUresult fk_cuModuleLoadDataEx(CUmodule *m, const void *img, unsigned n, CUjit_option *o,
                                      void **v)
{
    (void)o;
    (void)v;
    describe_image("cuModuleLoadDataEx", img);
    *m = (CUmodule)next_handle++;
    RET(CUDA_SUCCESS, "call cuModuleLoadDataEx(%p, nopts=%u) -> %p", img, n, (void *)*m);
}

static CUresult fk_cuModuleLoadFatBinary(CUmodule *m, const void *img)
{
    describe_image("cuModuleLoadFatBinary", img);
    *m = (CUmodule)next_handle++;
    RET(CUDA_SUCCESS, "call cuModuleLoadFatBinary(%p) -> %p", img, (void *)*m);
}

static CUresult fk_cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name)
{
    *f = (CUfunction)next_handle++;
    RET(CUDA_SUCCESS, "call cuModuleGetFunction(%p, \"%s\") -> %p", (void *)m, name, (void *)*f);
}

static CUresult fk_cuModuleGetLoadingMode(CUmoduleLoadingMode *m)
{
    *m = CU_MODULE_LAZY_LOADING;
    RET(CUDA_SUCCESS, "call cuModuleGetLoadingMode -> LAZY");
}

static CUresult fk_cuModuleUnload(CUmodule m) { RET(CUDA_SUCCESS, "call cuModuleUnload(%p)", (void *)m); }

static CUresult fk_cuLibraryLoadData(CUlibrary *l, const void *code, CUjit_option *jo, void **jv,
                                     unsigned njo, CUlibraryOption *lo, void **lv, unsigned nlo)
{
    describe_image("cuLibraryLoadData", code);
    for (unsigned i = 0; i < njo; i++)
        flog("  jit option %d = %p", (int)jo[i], jv[i]);
    for (unsigned i = 0; i < nlo; i++)
        flog("  library option %d = %p", (int)lo[i], lv ? lv[i] : NULL);
    *l = (CUlibrary)next_handle++;
    RET(CUDA_SUCCESS, "call cuLibraryLoadData(code=%p, njit=%u, nlib=%u) -> %p", code, njo, nlo,
        (void *)*l);
}

static CUresult fk_cuLibraryUnload(CUlibrary l) { RET(CUDA_SUCCESS, "call cuLibraryUnload(%p)", (void *)l); }

static CUresult fk_cuLibraryGetKernel(CUkernel *k, CUlibrary l, const char *name)
{
    *k = (CUkernel)next_handle++;
    RET(CUDA_SUCCESS, "call cuLibraryGetKernel(%p, \"%s\") -> %p", (void *)l, name, (void *)*k);
}

static CUresult fk_cuLibraryGetModule(CUmodule *m, CUlibrary l)
{
    *m = (CUmodule)next_handle++;
    RET(CUDA_SUCCESS, "call cuLibraryGetModule(%p) -> %p", (void *)l, (void *)*m);
}

static CUresult fk_cuKernelGetFunction(CUfunction *f, CUkernel k)
{
    *f = (CUfunction)next_handle++;
    RET(CUDA_SUCCESS, "call cuKernelGetFunction(%p) -> %p", (void *)k, (void *)*f);
}

static CUresult fk_cuKernelGetAttribute(int *v, CUfunction_attribute a, CUkernel k, CUdevice d)
{
    *v = (a == CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK) ? 1024 : 0;
    RET(CUDA_SUCCESS, "call cuKernelGetAttribute(attr=%d, %p, dev=%d)", (int)a, (void *)k, d);
}

static CUresult fk_cuFuncGetAttribute(int *v, CUfunction_attribute a, CUfunction f)
{
    *v = (a == CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK) ? 1024 : 0;
    RET(CUDA_SUCCESS, "call cuFuncGetAttribute(attr=%d, %p)", (int)a, (void *)f);
}

static CUresult fk_cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                                  unsigned bx, unsigned by, unsigned bz, unsigned shm,
                                  CUstream s, void **params, void **extra)
{
    RET(CUDA_SUCCESS,
        "call cuLaunchKernel(f=%p, grid=%u,%u,%u, block=%u,%u,%u, shm=%u, stream=%p, "
        "params=%p, extra=%p)",
        (void *)f, gx, gy, gz, bx, by, bz, shm, (void *)s, (void *)params, (void *)extra);
}

static CUresult fk_cuLaunchKernelEx(const CUlaunchConfig *c, CUfunction f, void **params,
                                    void **extra)
{
    flog("call cuLaunchKernelEx(f=%p, grid=%u,%u,%u, block=%u,%u,%u, shm=%u, stream=%p, "
         "nattrs=%u, params=%p, extra=%p)",
         (void *)f, c->gridDimX, c->gridDimY, c->gridDimZ, c->blockDimX, c->blockDimY,
         c->blockDimZ, c->sharedMemBytes, (void *)c->hStream, c->numAttrs, (void *)params,
         (void *)extra);
    for (unsigned i = 0; i < c->numAttrs; i++)
        flog("  launch attr id=%d", (int)c->attrs[i].id);
    return CUDA_SUCCESS;
}

/* ---------------------------------------------------- logging stubs */

#define NSTUBS 600
static const char *stub_names[NSTUBS];
static int nstubs;

static CUresult stub_hit(int i)
{
    RET(CUDA_ERROR_NOT_SUPPORTED, "call %s -> NOT_SUPPORTED (stub)",
        (i < nstubs && stub_names[i]) ? stub_names[i] : "?");
}

#define S1(a, b, c) \
    static CUresult stub_##a##b##c(void) { return stub_hit(a * 100 + b * 10 + c); }
#define S10(a, b) S1(a, b, 0) S1(a, b, 1) S1(a, b, 2) S1(a, b, 3) S1(a, b, 4) \
    S1(a, b, 5) S1(a, b, 6) S1(a, b, 7) S1(a, b, 8) S1(a, b, 9)
#define S100(a) S10(a, 0) S10(a, 1) S10(a, 2) S10(a, 3) S10(a, 4) \
    S10(a, 5) S10(a, 6) S10(a, 7) S10(a, 8) S10(a, 9)
S100(0) S100(1) S100(2) S100(3) S100(4) S100(5)
#undef S1
#define S1(a, b, c) (void *)stub_##a##b##c,
static void *const stubs[NSTUBS] = {S100(0) S100(1) S100(2) S100(3) S100(4) S100(5)};

/* --------------------------------------------------- cuGetProcAddress */

CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int ver, cuuint64_t flags,
                             CUdriverProcAddressQueryResult *st);
CUresult cuGetExportTable(const void **pp, const CUuuid *id);

#define FN(n, f) {n, (void *)f}
static const struct {
    const char *name;
    void *fn;
} impls[] = {
    FN("cuInit", cuInit),
    FN("cuDriverGetVersion", cuDriverGetVersion),
    FN("cuGetProcAddress", cuGetProcAddress_v2),
    FN("cuGetExportTable", cuGetExportTable),
    FN("cuDeviceGetCount", cuDeviceGetCount),
    FN("cuDeviceGet", cuDeviceGet),
    FN("cuDeviceGetName", fk_cuDeviceGetName),
    FN("cuDeviceGetUuid", cuDeviceGetUuid),
    FN("cuDeviceTotalMem", fk_cuDeviceTotalMem),
    FN("cuDeviceGetAttribute", cuDeviceGetAttribute),
    FN("cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain),
    FN("cuDevicePrimaryCtxRelease", cuDevicePrimaryCtxRelease),
    FN("cuDevicePrimaryCtxReset", cuDevicePrimaryCtxReset),
    FN("cuDevicePrimaryCtxGetState", fk_cuDevicePrimaryCtxGetState),
    FN("cuDevicePrimaryCtxSetFlags", fk_cuDevicePrimaryCtxSetFlags),
    FN("cuCtxGetCurrent", cuCtxGetCurrent),
    FN("cuCtxSetCurrent", fk_cuCtxSetCurrent),
    FN("cuCtxPushCurrent", fk_cuCtxPushCurrent),
    FN("cuCtxPopCurrent", fk_cuCtxPopCurrent),
    FN("cuCtxGetDevice", fk_cuCtxGetDevice),
    FN("cuCtxSynchronize", fk_cuCtxSynchronize),
    FN("cuCtxGetStreamPriorityRange", fk_cuCtxGetStreamPriorityRange),
    FN("cuCtxGetFlags", fk_cuCtxGetFlags),
    FN("cuCtxGetLimit", fk_cuCtxGetLimit),
    FN("cuCtxGetApiVersion", fk_cuCtxGetApiVersion),
    FN("cuMemAlloc", fk_cuMemAlloc),
    FN("cuMemFree", fk_cuMemFree),
    FN("cuMemGetInfo", fk_cuMemGetInfo),
    FN("cuMemcpyHtoD", fk_cuMemcpyHtoD),
    FN("cuMemcpyDtoH", fk_cuMemcpyDtoH),
    FN("cuMemcpyHtoDAsync", fk_cuMemcpyHtoDAsync),
    FN("cuMemcpyDtoHAsync", fk_cuMemcpyDtoHAsync),
    FN("cuMemcpy", fk_cuMemcpy),
    FN("cuMemcpyAsync", fk_cuMemcpyAsync),
    FN("cuPointerGetAttribute", fk_cuPointerGetAttribute),
    FN("cuStreamSynchronize", fk_cuStreamSynchronize),
    FN("cuStreamCreate", fk_cuStreamCreate),
    FN("cuStreamCreateWithPriority", fk_cuStreamCreateWithPriority),
    FN("cuStreamDestroy", fk_cuStreamDestroy),
    FN("cuGetErrorString", fk_cuGetErrorString),
    FN("cuGetErrorName", fk_cuGetErrorName),
    FN("cuModuleLoadData", cuModuleLoadData),
    FN("cuModuleLoadDataEx", fk_cuModuleLoadDataEx),
    FN("cuModuleLoadFatBinary", fk_cuModuleLoadFatBinary),
    FN("cuModuleGetFunction", fk_cuModuleGetFunction),
    FN("cuModuleUnload", fk_cuModuleUnload),
    FN("cuModuleGetLoadingMode", fk_cuModuleGetLoadingMode),
    FN("cuLibraryLoadData", fk_cuLibraryLoadData),
    FN("cuLibraryUnload", fk_cuLibraryUnload),
    FN("cuLibraryGetKernel", fk_cuLibraryGetKernel),
    FN("cuLibraryGetModule", fk_cuLibraryGetModule),
    FN("cuKernelGetFunction", fk_cuKernelGetFunction),
    FN("cuKernelGetAttribute", fk_cuKernelGetAttribute),
    FN("cuFuncGetAttribute", fk_cuFuncGetAttribute),
    FN("cuLaunchKernel", fk_cuLaunchKernel),
    FN("cuLaunchKernelEx", fk_cuLaunchKernelEx),
};

static pthread_mutex_t stub_lock = PTHREAD_MUTEX_INITIALIZER;

static void *stub_for(const char *name)
{
    void *r = NULL;
    pthread_mutex_lock(&stub_lock);
    for (int i = 0; i < nstubs; i++)
        if (strcmp(stub_names[i], name) == 0)
            r = stubs[i];
    if (r == NULL && nstubs < NSTUBS) {
        stub_names[nstubs] = strdup(name);
        r = stubs[nstubs++];
    }
    pthread_mutex_unlock(&stub_lock);
    return r;
}

CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int ver, cuuint64_t flags,
                             CUdriverProcAddressQueryResult *st)
{
    if (symbol == NULL || pfn == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    void *fn = NULL;
    for (size_t i = 0; i < sizeof impls / sizeof impls[0]; i++)
        if (strcmp(impls[i].name, symbol) == 0)
            fn = impls[i].fn;
    const char *kind = fn ? "impl" : *symbol ? "stub" : "none";
    if (fn == NULL && *symbol)
        fn = stub_for(symbol);
    *pfn = fn;
    if (st)
        *st = fn ? CU_GET_PROC_ADDRESS_SUCCESS : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    flog("getproc %s ver=%d flags=%llu -> %s", symbol, ver, (unsigned long long)flags, kind);
    return fn ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

#undef cuGetProcAddress
CUresult cuGetProcAddress(const char *symbol, void **pfn, int ver, cuuint64_t flags)
{
    flog("(legacy cuGetProcAddress)");
    return cuGetProcAddress_v2(symbol, pfn, ver, flags, NULL);
}

/* --------------------------------------------------- cuGetExportTable */

static int denied(const CUuuid *id)
{
    const char *deny = getenv("FAKE_DENY");
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)id->bytes[i]);
    while (deny && *deny) {
        size_t n = strcspn(deny, ",");
        if (n > 0 && n <= 32 && strncasecmp(hex, deny, n) == 0)
            return 1;
        deny += n + (deny[n] == ',');
    }
    return 0;
}

CUresult cuGetExportTable(const void **pp, const CUuuid *id)
{
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)id->bytes[i]);
    if (denied(id)) {
        *pp = NULL;
        RET(CUDA_ERROR_INVALID_VALUE, "exporttable %s -> denied (INVALID_VALUE)", hex);
    }
    CUresult r = gw_export_table_get(pp, id);
    RET(r, "exporttable %s -> %d %p", hex, (int)r, *pp);
}
