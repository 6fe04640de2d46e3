/* NVML in the worker. The library is opened at the first NVML request, so
 * sessions that never ask cost nothing, and a server without NVML still
 * serves CUDA: its NVML requests are answered NVML_ERROR_LIBRARY_NOT_FOUND.
 * Only functions listed in codegen/nvml_annotations.txt have handlers: the
 * setters NVML also has are never reachable from a client. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>

#include "nvml.h"

static const char *nvml_path = "libnvidia-ml.so.1";
static void *syms[GW_NVML_OP_COUNT];
static int loaded; /* 1 opened, -1 failed */
static pthread_once_t once = PTHREAD_ONCE_INIT;

void gw_nvml_set_path(const char *path) { nvml_path = path; }

static void load(void)
{
    void *lib = dlopen(nvml_path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        gw_wlog("cannot load NVML %s: %s; NVML requests are answered NVML_ERROR_LIBRARY_NOT_FOUND", nvml_path,
                dlerror());
        loaded = -1;
        return;
    }
    for (unsigned i = 0; i < GW_NVML_OP_COUNT; i++)
        syms[i] = dlsym(lib, gw_nvml_op_names[i]);
    loaded = 1;
    gw_wlog("loaded NVML %s", nvml_path);
}

void gw_nvml_reply(gw_call *c, nvmlReturn_t res)
{
    gw_reply_result(c, CUDA_SUCCESS);
    gw_reply_u32(c, (uint32_t)res);
}

void *gw_nvml_fn(gw_call *c, unsigned op)
{
    pthread_once(&once, load);
    if (loaded < 0) {
        gw_nvml_reply(c, NVML_ERROR_LIBRARY_NOT_FOUND);
        return NULL;
    }
    void *f = gw_is_nvml_op(op) ? syms[op - GW_NVML_OP_FIRST] : NULL;
    if (!f) {
        static unsigned char told[GW_NVML_OP_COUNT];
        if (gw_is_nvml_op(op) && !told[op - GW_NVML_OP_FIRST]++)
            gw_wlog("NVML lacks %s: answering NVML_ERROR_FUNCTION_NOT_FOUND", gw_nvml_op_name(op));
        gw_nvml_reply(c, NVML_ERROR_FUNCTION_NOT_FOUND);
    }
    return f;
}

int gw_nvml_valid_op(unsigned op)
{
    return gw_is_nvml_op(op) && gw_nvml_dispatch[op - GW_NVML_OP_FIRST];
}

void gw_nvml_run(gw_call *c) { gw_nvml_dispatch[c->h.op - GW_NVML_OP_FIRST](c); }
