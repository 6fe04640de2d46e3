/* GPU discovery the way Ollama does it (issue 20): libcuda.so.1 and
 * libnvidia-ml.so.1 found with dlopen, nothing linked; cuInit,
 * cuDriverGetVersion, cuDeviceGetCount, per device the compute capability
 * (attributes 75 and 76), name, UUID, total memory, PCI bus id and, in a
 * context of its own, free memory; then NVML: nvmlInit_v2, the system's
 * driver version, each device's memory. Prints what natively and through
 * gpuwire must agree on: free memory as a 5% step of the total (a context's
 * footprint moves it by megabytes). */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define PROG "discover"
#include "prog_fail.h"

typedef int CUresult_t;
typedef struct {
    unsigned long long total, free, used;
} nvml_memory;

static void *sym(void *lib, const char *name)
{
    void *p = dlsym(lib, name);
    if (!p)
        FAIL("%s not found", name);
    return p;
}

#define CALL(fn, ...)                                                  \
    do {                                                               \
        int rc_ = (fn)(__VA_ARGS__);                                   \
        if (rc_ != 0)                                                  \
            FAIL("%s:%d: %s -> %d", __FILE__, __LINE__, #fn, rc_);     \
    } while (0)

int main(void)
{
    void *cu = dlopen("libcuda.so.1", RTLD_NOW);
    if (!cu)
        FAIL("dlopen libcuda.so.1: %s", dlerror());
    int (*init)(unsigned) = sym(cu, "cuInit");
    int (*driver_version)(int *) = sym(cu, "cuDriverGetVersion");
    int (*count)(int *) = sym(cu, "cuDeviceGetCount");
    int (*get)(int *, int) = sym(cu, "cuDeviceGet");
    int (*attr)(int *, int, int) = sym(cu, "cuDeviceGetAttribute");
    int (*name)(char *, int, int) = sym(cu, "cuDeviceGetName");
    int (*uuid)(unsigned char *, int) = sym(cu, "cuDeviceGetUuid_v2");
    int (*total)(size_t *, int) = sym(cu, "cuDeviceTotalMem_v2");
    int (*bus)(char *, int, int) = sym(cu, "cuDeviceGetPCIBusId");
    int (*ctx_create)(void **, void *, unsigned, int) = sym(cu, "cuCtxCreate_v4");
    int (*mem_info)(size_t *, size_t *) = sym(cu, "cuMemGetInfo_v2");
    int (*ctx_destroy)(void *) = sym(cu, "cuCtxDestroy_v2");

    CALL(init, 0);
    int ver = 0, n = 0;
    CALL(driver_version, &ver);
    CALL(count, &n);
    printf("driver API %d, %d device(s)\n", ver, n);
    for (int i = 0; i < n; i++) {
        int dev, major, minor;
        char nm[256], pci[64];
        unsigned char u[16];
        size_t tot, fr, tt;
        void *ctx;
        CALL(get, &dev, i);
        CALL(attr, &major, 75, dev);
        CALL(attr, &minor, 76, dev);
        CALL(name, nm, sizeof nm, dev);
        CALL(uuid, u, dev);
        CALL(total, &tot, dev);
        CALL(bus, pci, sizeof pci, dev);
        CALL(ctx_create, &ctx, NULL, 0, dev);
        CALL(mem_info, &fr, &tt);
        CALL(ctx_destroy, ctx);
        if (tt != tot || fr > tt)
            FAIL("device %d: cuMemGetInfo says %zu free of %zu, cuDeviceTotalMem %zu", i, fr, tt, tot);
        printf("device %d: %s, compute %d.%d, %zu MiB, bus %s, uuid %02x%02x%02x%02x-..., free at least %zu%%\n", i, nm,
               major, minor, tot >> 20, pci, u[0], u[1], u[2], u[3], fr * 20 / tt * 5);
    }

    void *ml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!ml)
        FAIL("dlopen libnvidia-ml.so.1: %s", dlerror());
    int (*nv_init)(void) = sym(ml, "nvmlInit_v2");
    int (*nv_version)(char *, unsigned) = sym(ml, "nvmlSystemGetDriverVersion");
    int (*nv_count)(unsigned *) = sym(ml, "nvmlDeviceGetCount_v2");
    int (*nv_handle)(unsigned, void **) = sym(ml, "nvmlDeviceGetHandleByIndex_v2");
    int (*nv_memory)(void *, nvml_memory *) = sym(ml, "nvmlDeviceGetMemoryInfo");
    int (*nv_shutdown)(void) = sym(ml, "nvmlShutdown");
    CALL(nv_init);
    char v[96];
    unsigned nn = 0;
    CALL(nv_version, v, sizeof v);
    CALL(nv_count, &nn);
    printf("NVML: driver %s, %u device(s)\n", v, nn);
    for (unsigned i = 0; i < nn; i++) {
        void *h;
        nvml_memory m;
        CALL(nv_handle, i, &h);
        CALL(nv_memory, h, &m);
        if (!m.total || m.free > m.total)
            FAIL("NVML device %u: %llu free of %llu", i, m.free, m.total);
        printf("NVML device %u: %llu MiB, free at least %llu%%\n", i, m.total >> 20, m.free * 20 / m.total * 5);
    }
    CALL(nv_shutdown);
    printf("PASS %s\n", PROG);
    return 0;
}
