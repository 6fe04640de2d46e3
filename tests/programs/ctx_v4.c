/* ctx_v4: CUDA 13's context entry points, the profiler switches and cooperative
 * launches, as a pure driver-API program. Built twice: linked against libcuda
 * (ctx_v4), and with -DCTX_DLOPEN (ctx_v4_dlopen) finding libcuda.so.1 with
 * dlopen and every entry point with cuGetProcAddress, as Ollama does. */
#include <cuda.h>
#include <cudaProfiler.h>
#include <cudaProfilerTypedefs.h>
#include <cudaTypedefs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef CTX_DLOPEN
#include <dlfcn.h>
#define PROG "ctx_v4_dlopen"
#else
#define PROG "ctx_v4"
#endif

#include "driver_api_fatbin.h" /* generated at build time: da_fatbin[], da_fatbin_len */

/* member, type, symbol when linked, name and version for cuGetProcAddress */
#define API(X)                                                                                       \
    X(Init, PFN_cuInit_v2000, cuInit, "cuInit", 2000)                                                \
    X(GetErrorName, PFN_cuGetErrorName_v6000, cuGetErrorName, "cuGetErrorName", 6000)                \
    X(DeviceGet, PFN_cuDeviceGet_v2000, cuDeviceGet, "cuDeviceGet", 2000)                            \
    X(DeviceGetAttribute, PFN_cuDeviceGetAttribute_v2000, cuDeviceGetAttribute, "cuDeviceGetAttribute", 2000) \
    X(DeviceGetExecAffinitySupport, PFN_cuDeviceGetExecAffinitySupport_v11040,                         \
      cuDeviceGetExecAffinitySupport, "cuDeviceGetExecAffinitySupport", 11040)                         \
    X(PrimaryRetain, PFN_cuDevicePrimaryCtxRetain_v7000, cuDevicePrimaryCtxRetain,                     \
      "cuDevicePrimaryCtxRetain", 7000)                                                              \
    X(PrimaryRelease, PFN_cuDevicePrimaryCtxRelease_v11000, cuDevicePrimaryCtxRelease,                 \
      "cuDevicePrimaryCtxRelease", 11000)                                                            \
    X(CtxCreate, PFN_cuCtxCreate_v12050, cuCtxCreate, "cuCtxCreate", 13000)                          \
    X(CtxDestroy, PFN_cuCtxDestroy_v4000, cuCtxDestroy, "cuCtxDestroy", 13000)                       \
    X(CtxGetCurrent, PFN_cuCtxGetCurrent_v4000, cuCtxGetCurrent, "cuCtxGetCurrent", 13000)           \
    X(CtxSetCurrent, PFN_cuCtxSetCurrent_v4000, cuCtxSetCurrent, "cuCtxSetCurrent", 13000)           \
    X(CtxPushCurrent, PFN_cuCtxPushCurrent_v4000, cuCtxPushCurrent, "cuCtxPushCurrent", 13000)       \
    X(CtxPopCurrent, PFN_cuCtxPopCurrent_v4000, cuCtxPopCurrent, "cuCtxPopCurrent", 13000)           \
    X(CtxGetId, PFN_cuCtxGetId_v12000, cuCtxGetId, "cuCtxGetId", 13000)                              \
    X(CtxGetDevice2, PFN_cuCtxGetDevice_v13000, cuCtxGetDevice_v2, "cuCtxGetDevice", 13000)          \
    X(CtxGetExecAffinity, PFN_cuCtxGetExecAffinity_v11040, cuCtxGetExecAffinity, "cuCtxGetExecAffinity", 13000) \
    X(CtxSynchronize, PFN_cuCtxSynchronize_v2000, cuCtxSynchronize, "cuCtxSynchronize", 2000)        \
    X(CtxSynchronize2, PFN_cuCtxSynchronize_v13000, cuCtxSynchronize_v2, "cuCtxSynchronize", 13000)  \
    X(CtxRecordEvent, PFN_cuCtxRecordEvent_v12050, cuCtxRecordEvent, "cuCtxRecordEvent", 13000)      \
    X(CtxWaitEvent, PFN_cuCtxWaitEvent_v12050, cuCtxWaitEvent, "cuCtxWaitEvent", 13000)              \
    X(EventCreate, PFN_cuEventCreate_v2000, cuEventCreate, "cuEventCreate", 13000)                   \
    X(EventQuery, PFN_cuEventQuery_v2000, cuEventQuery, "cuEventQuery", 13000)                       \
    X(EventSynchronize, PFN_cuEventSynchronize_v2000, cuEventSynchronize, "cuEventSynchronize", 13000) \
    X(EventDestroy, PFN_cuEventDestroy_v4000, cuEventDestroy, "cuEventDestroy", 13000)               \
    X(ModuleLoadData, PFN_cuModuleLoadData_v2000, cuModuleLoadData, "cuModuleLoadData", 13000)       \
    X(ModuleGetFunction, PFN_cuModuleGetFunction_v2000, cuModuleGetFunction, "cuModuleGetFunction", 13000) \
    X(ModuleUnload, PFN_cuModuleUnload_v2000, cuModuleUnload, "cuModuleUnload", 13000)               \
    X(MemAlloc, PFN_cuMemAlloc_v3020, cuMemAlloc, "cuMemAlloc", 13000)                               \
    X(MemFree, PFN_cuMemFree_v3020, cuMemFree, "cuMemFree", 13000)                                   \
    X(MemcpyHtoD, PFN_cuMemcpyHtoD_v3020, cuMemcpyHtoD, "cuMemcpyHtoD", 13000)                       \
    X(MemcpyDtoH, PFN_cuMemcpyDtoH_v3020, cuMemcpyDtoH, "cuMemcpyDtoH", 13000)                       \
    X(LaunchKernel, PFN_cuLaunchKernel_v4000, cuLaunchKernel, "cuLaunchKernel", 13000)               \
    X(LaunchCooperativeKernel, PFN_cuLaunchCooperativeKernel_v9000, cuLaunchCooperativeKernel,       \
      "cuLaunchCooperativeKernel", 13000)                                                            \
    X(LaunchKernelEx, PFN_cuLaunchKernelEx_v11060, cuLaunchKernelEx, "cuLaunchKernelEx", 13000)      \
    X(Occupancy, PFN_cuOccupancyMaxActiveBlocksPerMultiprocessor_v6050,                               \
      cuOccupancyMaxActiveBlocksPerMultiprocessor, "cuOccupancyMaxActiveBlocksPerMultiprocessor", 13000) \
    X(ProfilerStart, PFN_cuProfilerStart_v4000, cuProfilerStart, "cuProfilerStart", 13000)           \
    X(ProfilerStop, PFN_cuProfilerStop_v4000, cuProfilerStop, "cuProfilerStop", 13000)                \
    X(StreamDestroy, PFN_cuStreamDestroy_v4000, cuStreamDestroy, "cuStreamDestroy", 13000)           \
    X(DeviceGetDevResource, PFN_cuDeviceGetDevResource_v12040, cuDeviceGetDevResource,                 \
      "cuDeviceGetDevResource", 13000)                                                               \
    X(CtxGetDevResource, PFN_cuCtxGetDevResource_v12040, cuCtxGetDevResource, "cuCtxGetDevResource", 13000) \
    X(SmSplit, PFN_cuDevSmResourceSplitByCount_v12040, cuDevSmResourceSplitByCount,                    \
      "cuDevSmResourceSplitByCount", 13000)                                                          \
    X(GenerateDesc, PFN_cuDevResourceGenerateDesc_v12040, cuDevResourceGenerateDesc,                   \
      "cuDevResourceGenerateDesc", 13000)                                                            \
    X(GreenCreate, PFN_cuGreenCtxCreate_v12040, cuGreenCtxCreate, "cuGreenCtxCreate", 13000)         \
    X(GreenDestroy, PFN_cuGreenCtxDestroy_v12040, cuGreenCtxDestroy, "cuGreenCtxDestroy", 13000)     \
    X(CtxFromGreen, PFN_cuCtxFromGreenCtx_v12040, cuCtxFromGreenCtx, "cuCtxFromGreenCtx", 13000)     \
    X(GreenGetDevResource, PFN_cuGreenCtxGetDevResource_v12040, cuGreenCtxGetDevResource,              \
      "cuGreenCtxGetDevResource", 13000)                                                             \
    X(GreenStreamCreate, PFN_cuGreenCtxStreamCreate_v12050, cuGreenCtxStreamCreate,                    \
      "cuGreenCtxStreamCreate", 13000)                                                               \
    X(GreenGetId, PFN_cuGreenCtxGetId_v12090, cuGreenCtxGetId, "cuGreenCtxGetId", 13000)             \
    X(StreamGetGreen, PFN_cuStreamGetGreenCtx_v12040, cuStreamGetGreenCtx, "cuStreamGetGreenCtx", 13000) \
    X(GreenRecordEvent, PFN_cuGreenCtxRecordEvent_v12040, cuGreenCtxRecordEvent, "cuGreenCtxRecordEvent", 13000) \
    X(GreenWaitEvent, PFN_cuGreenCtxWaitEvent_v12040, cuGreenCtxWaitEvent, "cuGreenCtxWaitEvent", 13000)

static struct {
#define MEMBER(m, type, sym, name, ver) type m;
    API(MEMBER)
#undef MEMBER
} d;

#define FAIL(...)                                                        \
    do {                                                                 \
        printf("FAIL %s: ", PROG);                                       \
        printf(__VA_ARGS__);                                             \
        printf("\n");                                                    \
        fflush(stdout);                                                  \
        exit(1);                                                         \
    } while (0)

static const char *err_name(CUresult r)
{
    const char *n = NULL;
    if (d.GetErrorName)
        d.GetErrorName(r, &n);
    return n ? n : "?";
}

#define CK(call)                                                                             \
    do {                                                                                     \
        CUresult ck_r_ = (call);                                                             \
        if (ck_r_ != CUDA_SUCCESS)                                                           \
            FAIL("line %d: %s -> %d (%s)", __LINE__, #call, (int)ck_r_, err_name(ck_r_));    \
    } while (0)

static void load_api(void)
{
#ifdef CTX_DLOPEN
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        FAIL("dlopen libcuda.so.1: %s", dlerror());
    PFN_cuGetProcAddress_v12000 gpa = (PFN_cuGetProcAddress_v12000)dlsym(lib, "cuGetProcAddress_v2");
    if (!gpa)
        FAIL("libcuda.so.1 has no cuGetProcAddress_v2");
    CUdriverProcAddressQueryResult st;
#define LOOKUP(m, type, sym, name, ver)                                                          \
    CK(gpa(name, (void **)&d.m, ver, CU_GET_PROC_ADDRESS_DEFAULT, &st));                         \
    if (st != CU_GET_PROC_ADDRESS_SUCCESS || !d.m)                                               \
        FAIL("cuGetProcAddress(%s, %d) found nothing (status %d)", name, ver, (int)st);
    API(LOOKUP)
#undef LOOKUP
    /* as cudart asks, with its own version: the newest entry point at or below it */
    void *create = NULL;
    CK(gpa("cuCtxCreate", &create, 12080, CU_GET_PROC_ADDRESS_DEFAULT, &st));
    if (create != (void *)d.CtxCreate)
        FAIL("cuCtxCreate for CUDA 12.8 is not the one for CUDA 13 (both are cuCtxCreate_v4)");
#else
#define LINK(m, type, sym, name, ver) d.m = sym;
    API(LINK)
#undef LINK
#endif
}

static CUcontext current(void)
{
    CUcontext c = (CUcontext)1;
    CK(d.CtxGetCurrent(&c));
    return c;
}

static unsigned long long ctx_id(CUcontext c)
{
    unsigned long long id = 0;
    CK(d.CtxGetId(c, &id));
    return id;
}

/* Green contexts: a group of SMs split off the device, a green context on it,
 * used as a context, a stream of its own and an event recorded for it. */
static void green_contexts(CUdevice dev, CUcontext outer)
{
    CUdevResource all, part, rest, got;
    CK(d.DeviceGetDevResource(dev, &all, CU_DEV_RESOURCE_TYPE_SM));
    unsigned int groups = 0;
    CK(d.SmSplit(NULL, &groups, &all, NULL, 0, 8));
    if (groups < 1 || all.sm.smCount < 16)
        FAIL("%u SMs split into %u groups of 8 or more", all.sm.smCount, groups);
    unsigned int one = 1;
    CK(d.SmSplit(&part, &one, &all, &rest, 0, 8));
    if (one != 1 || part.type != CU_DEV_RESOURCE_TYPE_SM || part.sm.smCount < 8 ||
        part.sm.smCount + rest.sm.smCount != all.sm.smCount)
        FAIL("one group of %u SMs leaves %u of %u", part.sm.smCount, rest.sm.smCount, all.sm.smCount);
    CUdevResourceDesc desc;
    CK(d.GenerateDesc(&desc, &part, 1));
    CUgreenCtx g;
    CK(d.GreenCreate(&g, desc, dev, CU_GREEN_CTX_DEFAULT_STREAM));
    if (current() != outer)
        FAIL("creating a green context changed the current context");
    CK(d.GreenGetDevResource(g, &got, CU_DEV_RESOURCE_TYPE_SM));
    if (got.sm.smCount != part.sm.smCount)
        FAIL("the green context has %u SMs, it was given %u", got.sm.smCount, part.sm.smCount);
    unsigned long long gid = 0;
    CK(d.GreenGetId(g, &gid));
    CUcontext gc;
    CK(d.CtxFromGreen(&gc, g));
    CK(d.CtxPushCurrent(gc));
    if (current() != gc)
        FAIL("the green context's context is not current after a push");
    CK(d.CtxGetDevResource(gc, &got, CU_DEV_RESOURCE_TYPE_SM));
    if (got.sm.smCount != part.sm.smCount)
        FAIL("the green context's context has %u SMs, expected %u", got.sm.smCount, part.sm.smCount);
    CUstream gs;
    CK(d.GreenStreamCreate(&gs, g, CU_STREAM_NON_BLOCKING, 0));
    CUgreenCtx back = NULL;
    CK(d.StreamGetGreen(gs, &back));
    if (back != g)
        FAIL("cuStreamGetGreenCtx gives %p, the stream was made in %p", (void *)back, (void *)g);
    CUevent ev;
    CK(d.EventCreate(&ev, CU_EVENT_DEFAULT));
    CK(d.GreenRecordEvent(g, ev));
    CK(d.GreenWaitEvent(g, ev));
    CK(d.EventSynchronize(ev));
    CK(d.EventDestroy(ev));
    CK(d.StreamDestroy(gs));
    CUcontext popped;
    CK(d.CtxPopCurrent(&popped));
    if (popped != gc || current() != outer)
        FAIL("popping the green context's context did not bring the outer one back");
    CK(d.GreenDestroy(g));
}

int main(void)
{
    load_api();
    CK(d.Init(0));
    CUdevice dev;
    CK(d.DeviceGet(&dev, 0));

    /* the primary context, retained but never made current here */
    CUcontext primary;
    CK(d.PrimaryRetain(&primary, dev));
    unsigned long long primary_id = ctx_id(primary);

    /* cuCtxCreate as CUDA 13's samples call it: a zeroed parameter block */
    CUctxCreateParams none;
    memset(&none, 0, sizeof none);
    CUcontext ctx;
    CK(d.CtxCreate(&ctx, &none, 0, dev));
    if (current() != ctx)
        FAIL("the new context is not current");
    CUdevice got = -1;
    CK(d.CtxGetDevice2(&got, ctx));
    if (got != dev)
        FAIL("cuCtxGetDevice_v2 says device %d, expected %d", got, dev);
    unsigned long long id1 = ctx_id(ctx);
    if (id1 == primary_id)
        FAIL("a created context has the primary context's id %llu", id1);
    if (ctx_id(NULL) != id1 || ctx_id(ctx) != id1)
        FAIL("cuCtxGetId of the current context changed");

    /* a second context, with NULL parameters: its own id, also through NULL */
    CUcontext ctx2;
    CK(d.CtxCreate(&ctx2, NULL, 0, dev));
    unsigned long long id2 = ctx_id(NULL);
    if (current() != ctx2 || id2 == id1 || id2 == primary_id || ctx_id(ctx2) != id2)
        FAIL("second context: current %p (expected %p), id %llu (first %llu, primary %llu)", (void *)current(),
             (void *)ctx2, id2, id1, primary_id);
    CUcontext popped = NULL;
    CK(d.CtxPopCurrent(&popped));
    if (popped != ctx2 || current() != ctx || ctx_id(NULL) != id1)
        FAIL("popping the second context did not bring the first back");
    CK(d.CtxPushCurrent(ctx2));
    CK(d.CtxDestroy(ctx2)); /* current: it is popped */
    if (current() != ctx)
        FAIL("destroying the current context did not pop it");
    unsigned long long gone = 0;
    if (d.CtxGetId(ctx2, &gone) == CUDA_SUCCESS)
        FAIL("cuCtxGetId of a destroyed context succeeded: %llu (it had %llu)", gone, id2);

    /* execution affinity travels by value: ask for fewer SMs and read it back */
    int sms = 0, affinity = 0;
    CK(d.DeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev));
    CK(d.DeviceGetExecAffinitySupport(&affinity, CU_EXEC_AFFINITY_TYPE_SM_COUNT, dev));
    if (affinity) {
        CUexecAffinityParam aff;
        memset(&aff, 0, sizeof aff);
        aff.type = CU_EXEC_AFFINITY_TYPE_SM_COUNT;
        aff.param.smCount.val = 8;
        CUctxCreateParams with;
        memset(&with, 0, sizeof with);
        with.execAffinityParams = &aff;
        with.numExecAffinityParams = 1;
        CUcontext actx;
        CK(d.CtxCreate(&actx, &with, 0, dev));
        CUexecAffinityParam back;
        memset(&back, 0, sizeof back);
        CK(d.CtxGetExecAffinity(&back, CU_EXEC_AFFINITY_TYPE_SM_COUNT));
        if (back.param.smCount.val < 8 || back.param.smCount.val >= (unsigned)sms)
            FAIL("a context limited to 8 SMs reports %u of %d", back.param.smCount.val, sms);
        CK(d.CtxDestroy(actx));
    }
    /* CIG parameters name graphics objects of this process: refused, nothing pushed
     * (an unknown type and no data, so that the real driver refuses them too, unread) */
    CUctxCigParam cig = {(CUcigDataType)0, NULL};
    CUctxCreateParams with_cig;
    memset(&with_cig, 0, sizeof with_cig);
    with_cig.cigParams = &cig;
    CUcontext nope = NULL;
    if (d.CtxCreate(&nope, &with_cig, 0, dev) == CUDA_SUCCESS)
        FAIL("a context sharing a made-up CIG blob was created");
    if (current() != ctx)
        FAIL("a refused context creation changed the current context");

    /* work in the context, then an event recorded for the whole context */
    CUmodule mod;
    CK(d.ModuleLoadData(&mod, da_fatbin));
    CUfunction fscale;
    CK(d.ModuleGetFunction(&fscale, mod, "da_scale"));
    const int n = 5000, threads = 128, blocks = (n + threads - 1) / threads;
    float *h = malloc(n * sizeof(float));
    if (!h)
        FAIL("host malloc");
    for (int i = 0; i < n; i++)
        h[i] = (float)i;
    CUdeviceptr dp;
    CK(d.MemAlloc(&dp, n * sizeof(float)));
    CK(d.MemcpyHtoD(dp, h, n * sizeof(float)));
    float factor = 2.0f;
    int nn = n;
    void *params[] = {&dp, &factor, &nn};
    CK(d.LaunchKernel(fscale, blocks, 1, 1, threads, 1, 1, 0, NULL, params, NULL));
    CUevent ev;
    CK(d.EventCreate(&ev, CU_EVENT_DEFAULT));
    CK(d.CtxRecordEvent(ctx, ev));
    CK(d.CtxWaitEvent(ctx, ev));
    CK(d.EventSynchronize(ev));
    CK(d.EventQuery(ev));

    green_contexts(dev, ctx);

    /* the profiler switches cudaProfilerStart/Stop call */
    CK(d.ProfilerStart());
    CK(d.ProfilerStop());

    /* cooperative launches: the plain entry point and the launch attribute */
    int coop = 0, per_sm = 0;
    CK(d.DeviceGetAttribute(&coop, CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH, dev));
    if (!coop)
        FAIL("the device does not report cooperative launches");
    CK(d.Occupancy(&per_sm, fscale, threads, 0));
    if (per_sm < 1 || blocks > per_sm * sms)
        FAIL("%d blocks of %d threads do not fit (%d per SM, %d SMs)", blocks, threads, per_sm, sms);
    CK(d.LaunchCooperativeKernel(fscale, blocks, 1, 1, threads, 1, 1, 0, NULL, params));
    CUlaunchAttribute attr;
    memset(&attr, 0, sizeof attr);
    attr.id = CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
    attr.value.cooperative = 1;
    CUlaunchConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDimX = blocks;
    cfg.gridDimY = cfg.gridDimZ = 1;
    cfg.blockDimX = threads;
    cfg.blockDimY = cfg.blockDimZ = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    CK(d.LaunchKernelEx(&cfg, fscale, params, NULL));
    CK(d.CtxSynchronize2(ctx));
    CK(d.MemcpyDtoH(h, dp, n * sizeof(float)));
    for (int i = 0; i < n; i++)
        if (h[i] != (float)i * 8.0f)
            FAIL("element %d is %f after three launches doubling it, expected %f", i, h[i], (float)i * 8.0f);

    /* a grid larger than the device holds at once: refused by the launch, or
     * (launches are posted through gpuwire) at the next synchronization */
    CUresult r = d.LaunchCooperativeKernel(fscale, per_sm * sms + 1, 1, 1, threads, 1, 1, 0, NULL, params);
    if (r == CUDA_SUCCESS)
        r = d.CtxSynchronize();
    if (r != CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE)
        FAIL("an oversized cooperative grid gave %d (%s), expected CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE", (int)r,
             err_name(r));
    CK(d.CtxSynchronize()); /* not a sticky error */

    CK(d.EventDestroy(ev));
    CK(d.MemFree(dp));
    CK(d.ModuleUnload(mod));
    CK(d.CtxDestroy(ctx));
    if (current() != NULL)
        FAIL("no context should be current after the last one is destroyed");
    if (ctx_id(primary) != primary_id)
        FAIL("the primary context's id changed");
    CK(d.PrimaryRelease(dev));
    free(h);
    printf("PASS %s\n", PROG);
    return 0;
}
