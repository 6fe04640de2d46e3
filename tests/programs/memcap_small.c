/* memcap_small: what a device allocation really costs, as the driver's free
 * memory (cuMemGetInfo) shows it. On the GPU machine, run natively, it measures
 * the granularity gpuwire's memory cap charges (native/worker/memcap.c:
 * GW_MEMCAP_ALIGN, GW_MEMCAP_PAGE); through gpuwire under a cap it shows the
 * cap's view (tests/e2e/test_memcap.py).
 *   memcap_small [COUNT [SIZE [KIND [EVERY]]]]
 *     COUNT blocks (default 4096) of SIZE bytes (default 1), allocated until one
 *     fails; KIND alloc (default), pitch, async, vmm or all; free memory read
 *     after every EVERY-th allocation (default 1; 0: only before and after).
 * Per kind: the first changes of free memory ("step" lines), then
 *   RESULT kind=K size=S asked=N done=D stop=RC free_before=F charged=C per_alloc=C/D stride_min=B
 *          returned=R
 * (charged: free memory before minus after the allocations; returned: what
 * freeing them gave back). A kind the driver lacks prints RESULT kind=K
 * unsupported=RC. "PASS memcap_small" last and exit 0, or "FAIL ..." and 1. */
#define PROG "memcap_small"
#include <stdint.h>
#include <string.h>

#include "driver_check.h"

#define STEPS_SHOWN 16

static size_t count = 4096, size = 1, every = 1;
static CUdevice dev;

static size_t free_now(CUstream s)
{
    size_t f, t;
    if (s)
        CK(cuStreamSynchronize(s)); /* async allocations have happened */
    CK(cuMemGetInfo(&f, &t));
    return f;
}

/* One kind: alloc(&addr) returns the driver's result; release(addr) frees it. */
typedef CUresult (*alloc_fn)(uint64_t *addr, CUstream s);
typedef void (*free_fn)(uint64_t addr, CUstream s);

static void measure(const char *kind, alloc_fn alloc, free_fn release, CUstream s)
{
    uint64_t *addrs = malloc(count * sizeof *addrs);
    if (!addrs)
        FAIL("out of host memory");
    size_t before = free_now(s), last = before, done = 0, steps = 0;
    CUresult stop = CUDA_SUCCESS;
    while (done < count) {
        stop = alloc(&addrs[done], s);
        if (stop != CUDA_SUCCESS)
            break;
        done++;
        if (every && done % every == 0) {
            size_t f = free_now(s);
            if (f != last && steps++ < STEPS_SHOWN)
                printf("step kind=%s alloc=%zu free_delta=%lld\n", kind, done, (long long)last - (long long)f);
            last = f;
        }
    }
    if (done == 0 && stop != CUDA_ERROR_OUT_OF_MEMORY) {
        printf("RESULT kind=%s unsupported=%d\n", kind, (int)stop);
        free(addrs);
        return;
    }
    size_t after = free_now(s);
    uint64_t stride = 0;
    for (size_t i = 1; i < done; i++) {
        uint64_t d = addrs[i] > addrs[i - 1] ? addrs[i] - addrs[i - 1] : addrs[i - 1] - addrs[i];
        if (d && (!stride || d < stride))
            stride = d;
    }
    for (size_t i = 0; i < done; i++)
        release(addrs[i], s);
    size_t freed = free_now(s);
    long long charged = (long long)before - (long long)after;
    printf("RESULT kind=%s size=%zu asked=%zu done=%zu stop=%d free_before=%zu charged=%lld per_alloc=%.1f "
           "stride_min=%llu returned=%lld\n",
           kind, size, count, done, (int)stop, before, charged, done ? (double)charged / (double)done : 0.0,
           (unsigned long long)stride, (long long)freed - (long long)after);
    fflush(stdout);
    free(addrs);
}

static CUresult a_alloc(uint64_t *a, CUstream s)
{
    CUdeviceptr p;
    (void)s;
    CUresult r = cuMemAlloc(&p, size);
    *a = p;
    return r;
}
static void f_alloc(uint64_t a, CUstream s)
{
    (void)s;
    CK(cuMemFree((CUdeviceptr)a));
}

static CUresult a_pitch(uint64_t *a, CUstream s)
{
    CUdeviceptr p;
    size_t pitch;
    (void)s;
    CUresult r = cuMemAllocPitch(&p, &pitch, size, 1, 4);
    *a = p;
    return r;
}

static CUresult a_async(uint64_t *a, CUstream s)
{
    CUdeviceptr p;
    CUresult r = cuMemAllocAsync(&p, size, s);
    *a = p;
    return r;
}
static void f_async(uint64_t a, CUstream s) { CK(cuMemFreeAsync((CUdeviceptr)a, s)); }

static size_t vmm_size;
static CUresult a_vmm(uint64_t *a, CUstream s)
{
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = dev;
    CUmemGenericAllocationHandle h = 0;
    (void)s;
    CUresult r = cuMemCreate(&h, vmm_size, &prop, 0);
    *a = (uint64_t)h;
    return r;
}
static void f_vmm(uint64_t a, CUstream s)
{
    (void)s;
    CK(cuMemRelease((CUmemGenericAllocationHandle)a));
}

static void vmm(void)
{
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = dev;
    size_t min = 0, rec = 0;
    CUresult r = cuMemGetAllocationGranularity(&min, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
    if (r != CUDA_SUCCESS) {
        printf("RESULT kind=vmm unsupported=%d\n", (int)r);
        return;
    }
    CK(cuMemGetAllocationGranularity(&rec, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
    printf("granularity vmm_minimum=%zu vmm_recommended=%zu\n", min, rec);
    vmm_size = (size + min - 1) / min * min; /* cuMemCreate takes whole granules only */
    measure("vmm", a_vmm, f_vmm, NULL);
}

int main(int argc, char **argv)
{
    const char *kind = "alloc";
    if (argc > 1)
        count = strtoull(argv[1], NULL, 0);
    if (argc > 2)
        size = strtoull(argv[2], NULL, 0);
    if (argc > 3)
        kind = argv[3];
    if (argc > 4)
        every = strtoull(argv[4], NULL, 0);
    if (!count || !size)
        FAIL("usage: memcap_small [COUNT [SIZE [alloc|pitch|async|vmm|all [EVERY]]]]");
    CK(cuInit(0));
    CK(cuDeviceGet(&dev, 0));
    CUcontext ctx;
    CK(cuCtxCreate(&ctx, NULL, 0, dev));
    int all = !strcmp(kind, "all");
    if (all || !strcmp(kind, "alloc"))
        measure("alloc", a_alloc, f_alloc, NULL);
    if (all || !strcmp(kind, "pitch"))
        measure("pitch", a_pitch, f_alloc, NULL);
    if (all || !strcmp(kind, "async")) {
        CUstream s;
        CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
        measure("async", a_async, f_async, s);
        CK(cuStreamDestroy(s));
    }
    if (all || !strcmp(kind, "vmm"))
        vmm();
    CK(cuCtxDestroy(ctx));
    printf("PASS %s\n", PROG);
    return 0;
}
