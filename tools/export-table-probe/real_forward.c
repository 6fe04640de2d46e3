/* GPU-machine probes only: the public driver calls export_tables.c makes,
 * forwarded to the real libcuda.so.1 (opened by absolute path so that a
 * gpuwire or fake libcuda on the search path cannot answer instead). */
#define _GNU_SOURCE
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include "real_forward.h"

void *real_sym(const char *name)
{
    static void *h;
    if (h == NULL) {
        const char *p = getenv("REAL_LIBCUDA");
        const char *cands[] = {p, "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib64/libcuda.so.1",
                               "/usr/local/nvidia/lib64/libcuda.so.1", "/usr/lib/wsl/lib/libcuda.so.1"};
        for (size_t i = 0; h == NULL && i < sizeof cands / sizeof cands[0]; i++)
            if (cands[i])
                h = dlopen(cands[i], RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) {
            fprintf(stderr, "real_forward: cannot open the real libcuda.so.1 (set REAL_LIBCUDA)\n");
            exit(2);
        }
    }
    void *f = dlsym(h, name);
    if (f == NULL) {
        fprintf(stderr, "real_forward: real driver lacks %s\n", name);
        exit(2);
    }
    return f;
}

#define STR_(x) #x
#define STR(x) STR_(x) /* expand cuda.h's _v2 renames first */

#define FWD(ret, name, params, args)                                            \
    ret name params                                                              \
    {                                                                            \
        static ret(*fwd_) params;                                                 \
        if (fwd_ == NULL)                                                        \
            fwd_ = (ret(*) params)real_sym(STR(name));                                \
        return fwd_ args;                                                        \
    }

FWD(CUresult, cuModuleLoadData, (CUmodule * m, const void *img), (m, img))
FWD(CUresult, cuDevicePrimaryCtxRetain, (CUcontext * c, CUdevice d), (c, d))
FWD(CUresult, cuDevicePrimaryCtxRelease, (CUdevice d), (d))
FWD(CUresult, cuCtxGetCurrent, (CUcontext * c), (c))
FWD(CUresult, cuDeviceGetCount, (int *n), (n))
FWD(CUresult, cuDeviceGet, (CUdevice * d, int o), (d, o))
FWD(CUresult, cuDeviceGetUuid, (CUuuid * u, CUdevice d), (u, d))
FWD(CUresult, cuDeviceGetAttribute, (int *v, CUdevice_attribute a, CUdevice d), (v, a, d))
FWD(CUresult, cuDriverGetVersion, (int *v), (v))
FWD(CUresult, cuInit, (unsigned f), (f))
/* the tools tables' calls (21318c60 in export_tables.c, 6e163fbe in tools_module_table.c) */
FWD(CUresult, cuCtxGetId, (CUcontext c, unsigned long long *id), (c, id))
FWD(CUresult, cuCtxGetDevice, (CUdevice * d), (d))
FWD(CUresult, cuCtxPushCurrent, (CUcontext c), (c))
FWD(CUresult, cuCtxPopCurrent, (CUcontext * c), (c))
FWD(CUresult, cuStreamGetId, (CUstream s, unsigned long long *id), (s, id))
FWD(CUresult, cuModuleGetFunctionCount, (unsigned int *n, CUmodule m), (n, m))
FWD(CUresult, cuModuleEnumerateFunctions, (CUfunction * f, unsigned int n, CUmodule m), (f, n, m))
