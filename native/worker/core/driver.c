/* The driver: the real libcuda (or the CPU stand-in) loaded once per process,
 * its entry points looked up by op, and what the worker tells the client
 * about it in HELLO_OK. Wrappers (memcap.c, the launch handlers' unload
 * watch) take the place of entry points in the table before serving starts. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

static void *driver;
static void *syms[GW_OP_COUNT];

void **gw_driver_table(void) { return syms; }

void *gw_driver_sym(unsigned op)
{
    return op >= 256 && op < 256 + GW_OP_COUNT ? syms[op - 256] : NULL;
}

void *gw_driver_fn(gw_call *c, unsigned op)
{
    void *f = gw_driver_sym(op);
    if (!f) {
        static unsigned char told[GW_OP_COUNT];
        if (op >= 256 && op < 256 + GW_OP_COUNT && !told[op - 256]++)
            gw_wlog("the driver lacks %s: answering CUDA_ERROR_NOT_SUPPORTED", gw_op_name(op));
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
    }
    return f;
}

const char *gw_driver_load(const char *path)
{
    static char why[512];
    driver = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!driver) {
        snprintf(why, sizeof why, "cannot load driver %s: %s", path, dlerror());
        return why;
    }
    for (unsigned i = 0; i < GW_OP_COUNT; i++)
        syms[i] = dlsym(driver, gw_op_names[i]);
    CUresult (*init)(unsigned) = (CUresult(*)(unsigned))syms[GW_OP_cuInit - 256];
    if (!init) {
        snprintf(why, sizeof why, "%s has no cuInit", path);
        return why;
    }
    CUresult rc = init(0);
    if (rc != CUDA_SUCCESS) {
        snprintf(why, sizeof why, "cuInit failed on %s with error %d", path, (int)rc);
        return why;
    }
    return NULL;
}

void gw_driver_describe(gw_hello_ok *ok, const char *path)
{
    CUresult (*ver)(int *) = (CUresult(*)(int *))syms[GW_OP_cuDriverGetVersion - 256];
    CUresult (*count)(int *) = (CUresult(*)(int *))syms[GW_OP_cuDeviceGetCount - 256];
    int v = 0, n = 0;
    if (ver)
        ver(&v);
    if (count)
        count(&n);
    ok->proto_version = GW_PROTO_VERSION;
    ok->driver_version = v;
    ok->device_count = (uint32_t)n;
    const char *(*standin)(void) = (const char *(*)(void))dlsym(driver, "gpuwire_standin_description");
    if (standin)
        snprintf(ok->driver_desc, sizeof ok->driver_desc, "%s", standin());
    else if (strstr(path, "standin"))
        snprintf(ok->driver_desc, sizeof ok->driver_desc, "gpuwire CPU stand-in (test double)");
    if (standin || strstr(path, "standin"))
        ok->flags |= GW_OK_STANDIN; /* the client warns its user: results are not a GPU's */
    else
        snprintf(ok->driver_desc, sizeof ok->driver_desc, "NVIDIA driver, CUDA %d.%d", v / 1000, (v % 1000) / 10);
}

/* The devices as this worker's driver shows them (CUDA_VISIBLE_DEVICES already
 * applied, the memory cap's total included: the same entries the calls use),
 * sent once in HELLO_OK so a program's start-up asks none of it (issue #20).
 * A record whose calls did not all succeed carries that status: the client
 * then asks the driver for it as before, and gets the exact error. Each
 * device's attributes go to attrs (2 * GW_DEVICE_TABLE_ATTRS i32 a device),
 * its attr_count 0 where the driver would not answer DEVICE_ATTRS either. */
unsigned gw_driver_device_table(gw_device_info *out, unsigned max, int32_t *attrs)
{
    CUresult (*attr)(int *, CUdevice_attribute, CUdevice) =
        (CUresult(*)(int *, CUdevice_attribute, CUdevice))syms[GW_OP_cuDeviceGetAttribute - 256];
    CUresult (*count)(int *) = (CUresult(*)(int *))syms[GW_OP_cuDeviceGetCount - 256];
    CUresult (*get)(CUdevice *, int) = (CUresult(*)(CUdevice *, int))syms[GW_OP_cuDeviceGet - 256];
    CUresult (*name)(char *, int, CUdevice) = (CUresult(*)(char *, int, CUdevice))syms[GW_OP_cuDeviceGetName - 256];
    CUresult (*mem)(size_t *, CUdevice) = (CUresult(*)(size_t *, CUdevice))syms[GW_OP_cuDeviceTotalMem_v2 - 256];
    CUresult (*uuid)(CUuuid *, CUdevice) = (CUresult(*)(CUuuid *, CUdevice))syms[GW_OP_cuDeviceGetUuid - 256];
    CUresult (*uuid2)(CUuuid *, CUdevice) = (CUresult(*)(CUuuid *, CUdevice))syms[GW_OP_cuDeviceGetUuid_v2 - 256];
    CUresult (*bus)(char *, int, CUdevice) =
        (CUresult(*)(char *, int, CUdevice))syms[GW_OP_cuDeviceGetPCIBusId - 256];
    CUresult (*mode)(CUmoduleLoadingMode *) = (CUresult(*)(CUmoduleLoadingMode *))syms[GW_OP_cuModuleGetLoadingMode - 256];
    CUmoduleLoadingMode lm = 0;
    if (!mode || mode(&lm) != CUDA_SUCCESS)
        lm = 0;
    int n = 0;
    if (!count || count(&n) != CUDA_SUCCESS || n <= 0)
        return 0;
    if ((unsigned)n > max)
        n = (int)max;
    for (int i = 0; i < n; i++) {
        gw_device_info *d = &out[i];
        memset(d, 0, sizeof *d);
        CUdevice dev = 0;
        size_t total = 0;
        CUuuid u1, u2;
        CUresult r = get && name && mem && uuid && uuid2 && bus ? CUDA_SUCCESS : CUDA_ERROR_NOT_SUPPORTED;
        if (r == CUDA_SUCCESS)
            r = get(&dev, i);
        if (r == CUDA_SUCCESS)
            r = name(d->name, (int)sizeof d->name, dev);
        if (r == CUDA_SUCCESS)
            r = mem(&total, dev);
        if (r == CUDA_SUCCESS)
            r = uuid(&u1, dev);
        if (r == CUDA_SUCCESS)
            r = uuid2(&u2, dev);
        if (r == CUDA_SUCCESS)
            r = bus(d->pci_bus_id, (int)sizeof d->pci_bus_id, dev);
        d->handle = (int32_t)dev;
        d->loading_mode = (uint32_t)lm;
        d->status = (int32_t)r;
        if (r != CUDA_SUCCESS)
            continue;
        d->total_mem = total;
        memcpy(d->uuid, &u1, sizeof d->uuid);
        memcpy(d->uuid_v2, &u2, sizeof d->uuid_v2);
        d->name[sizeof d->name - 1] = 0;
        d->pci_bus_id[sizeof d->pci_bus_id - 1] = 0;
        /* every attribute, as DEVICE_ATTRS answers them (handlers/modules.c) */
        int probe;
        if (!attr || attr(&probe, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, dev) != CUDA_SUCCESS)
            continue;
        int32_t *a = attrs + (size_t)i * 2 * GW_DEVICE_TABLE_ATTRS;
        for (uint32_t k = 1; k <= GW_DEVICE_TABLE_ATTRS; k++) {
            int v = 0;
            CUresult st = attr(&v, (CUdevice_attribute)k, dev);
            a[2 * (k - 1)] = (int32_t)st;
            a[2 * (k - 1) + 1] = st == CUDA_SUCCESS ? v : 0;
        }
        d->attr_count = GW_DEVICE_TABLE_ATTRS;
    }
    return (unsigned)n;
}
