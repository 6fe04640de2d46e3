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
