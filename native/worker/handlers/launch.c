/* Kernel launches: the packed parameter buffer is checked against the
 * function's layout and turned back into kernelParams. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/idmap.h"

#include "handlers.h"

#define MAX_PARAM_BYTES GW_MAX_PARAM_BYTES
#define MAX_LAUNCH_ATTRS 32u

typedef CUresult (*param_info_fn)(void *, size_t, size_t *, size_t *);

/* Parameter offsets per real function, asked of the driver once. An unload
 * can free a function and a later load put another at the same address, so
 * entries from before the last unload are asked again. */
typedef struct layout {
    uint32_t n, end;
    uint64_t generation;
    uint32_t off[]; /* n offsets, then n sizes */
} layout;

static gw_idmap layouts;
static pthread_mutex_t layouts_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t generation; /* unloads so far */
static void *real_module_unload, *real_library_unload;

static CUresult module_unload(CUmodule m)
{
    CUresult r = ((CUresult(*)(CUmodule))real_module_unload)(m);
    pthread_mutex_lock(&layouts_lock);
    generation++;
    pthread_mutex_unlock(&layouts_lock);
    return r;
}

static CUresult library_unload(CUlibrary l)
{
    CUresult r = ((CUresult(*)(CUlibrary))real_library_unload)(l);
    pthread_mutex_lock(&layouts_lock);
    generation++;
    pthread_mutex_unlock(&layouts_lock);
    return r;
}

void gw_launch_install(void **syms)
{
    real_module_unload = syms[GW_OP_cuModuleUnload - 256];
    real_library_unload = syms[GW_OP_cuLibraryUnload - 256];
    if (real_module_unload)
        syms[GW_OP_cuModuleUnload - 256] = (void *)module_unload;
    if (real_library_unload)
        syms[GW_OP_cuLibraryUnload - 256] = (void *)library_unload;
}

/* f's parameter offsets (and sizes, if asked for), copied into offs and sizes
 * (n of them, the last parameter ending at *end) while the lock is held, so an
 * entry replaced after an unload can be freed at once: no caller keeps a
 * pointer to it. 0, or -1 if unknown. */
int gw_param_layout(void *f, int is_kernel, uint32_t *offs, uint32_t *sizes, uint32_t *n_out, uint32_t *end_out)
{
    uint64_t key = (uint64_t)(uintptr_t)f;
    pthread_mutex_lock(&layouts_lock);
    layout *l = gw_idmap_get(&layouts, key);
    uint64_t gen = generation;
    int hit = l && l->generation == gen;
    if (hit) {
        *n_out = l->n;
        *end_out = l->end;
        memcpy(offs, l->off, l->n * sizeof(uint32_t));
        if (sizes)
            memcpy(sizes, l->off + l->n, l->n * sizeof(uint32_t));
    }
    pthread_mutex_unlock(&layouts_lock);
    if (hit)
        return 0;
    param_info_fn info = (param_info_fn)gw_driver_sym(is_kernel ? GW_OP_cuKernelGetParamInfo : GW_OP_cuFuncGetParamInfo);
    if (!info)
        return -1;
    /* not thread-local: a thread's static TLS comes out of its (small) stack */
    uint32_t *szs = sizes ? sizes : malloc(MAX_PARAM_BYTES / 4 * sizeof *szs);
    if (!szs)
        return -1;
    uint32_t n = 0, end = 0;
    for (; n < MAX_PARAM_BYTES / 4; n++) {
        size_t off, size;
        if (info(f, n, &off, &size) != CUDA_SUCCESS)
            break;
        offs[n] = (uint32_t)off;
        szs[n] = (uint32_t)size;
        if (off + size > end)
            end = (uint32_t)(off + size);
    }
    *n_out = n;
    *end_out = end;
    l = malloc(sizeof *l + 2 * n * sizeof(uint32_t));
    if (l) {
        l->n = n;
        l->end = end;
        l->generation = gen;
        memcpy(l->off, offs, n * sizeof(uint32_t));
        memcpy(l->off + n, szs, n * sizeof(uint32_t));
    }
    if (szs != sizes)
        free(szs);
    if (!l)
        return 0; /* not cached; this caller has its copy */
    pthread_mutex_lock(&layouts_lock);
    layout *old = gw_idmap_get(&layouts, key);
    if (gw_idmap_put(&layouts, key, l))
        free(l);
    else
        free(old);
    pthread_mutex_unlock(&layouts_lock);
    return 0;
}

/* A function id that may name a CUkernel or a CUfunction (as cuLaunchKernel
 * takes either): the real handle, *is_kernel set when it is a kernel. */
void *gw_function_of(gw_call *c, uint64_t fid, int *is_kernel)
{
    int found;
    *is_kernel = 0;
    if (c->bad)
        return NULL;
    void *f = gw_handle_real(GW_HT_CUkernel, fid, &found);
    if (found && f) {
        *is_kernel = 1;
        return f;
    }
    return gw_handle_lookup(c, GW_HT_CUfunction, fid);
}

/* The packed parameter buffer (nbytes, already bounded by the caller) turned
 * into kernelParams for f, following the layout the driver reports; the
 * pointers and the bytes are the calling thread's until its next call here. */
CUresult gw_kernel_params(gw_call *c, void *f, int is_kernel, const uint8_t *params, uint32_t nbytes, void ***kp_out)
{
    static _Thread_local uint32_t offs[MAX_PARAM_BYTES / 4];
    static _Thread_local uint8_t buf[MAX_PARAM_BYTES] __attribute__((aligned(16)));
    static _Thread_local void *kp[MAX_PARAM_BYTES / 4 + 1];
    uint32_t n = 0, end = 0;
    if (gw_param_layout(f, is_kernel, offs, NULL, &n, &end))
        return CUDA_ERROR_NOT_SUPPORTED;
    if (end > nbytes) {
        gw_wlog("%s: %u parameter bytes sent, the function's layout needs %u", gw_op_name(c->h.op), nbytes, end);
        return CUDA_ERROR_INVALID_VALUE;
    }
    memcpy(buf, params, nbytes);
    for (uint32_t i = 0; i < n; i++)
        kp[i] = buf + offs[i];
    *kp_out = kp;
    return CUDA_SUCCESS;
}

typedef struct config {
    void *f;
    int is_kernel;
    uint32_t dims[7]; /* grid x y z, block x y z, shared memory bytes */
    CUstream s;
    uint32_t nattrs;
    CUlaunchAttribute attrs[MAX_LAUNCH_ATTRS];
} config;

/* LAUNCH_CONFIG (codegen/protocol.txt) */
static void read_config(gw_call *c, config *k)
{
    gw_launch_config_req q;
    memset(k, 0, sizeof *k);
    if (!gw_in_part(c, gw_launch_config_req, &q))
        return;
    k->f = gw_function_of(c, q.function, &k->is_kernel);
    memcpy(k->dims, q.dims, sizeof k->dims);
    k->s = gw_handle_lookup(c, GW_HT_CUstream, q.stream);
    k->nattrs = q.attr_count;
    if (k->nattrs > GW_LAUNCH_CONFIG_REQ_ATTRS_MAX)
        gw_call_fail(c, "%s: %u launch attributes", gw_op_name(c->h.op), k->nattrs);
    size_t bytes = (size_t)k->nattrs * GW_LAUNCH_CONFIG_REQ_ATTRS_ITEM_SIZE;
    const void *ap = c->bad ? NULL : gw_in_view(c, bytes);
    gw_launch_config_req_attrs_item items[GW_LAUNCH_CONFIG_REQ_ATTRS_MAX];
    if (ap && !gw_launch_config_req_attrs_get(ap, bytes, k->nattrs, items))
        gw_call_fail(c, "%s: launch attributes not decoded", gw_op_name(c->h.op)); /* cannot happen: checked above */
    for (uint32_t i = 0; ap && !c->bad && i < k->nattrs; i++) { /* event handles inside attributes are ids */
        CUlaunchAttribute *a = &k->attrs[i];
        *a = items[i].attr;
        if (a->id == CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT)
            a->value.programmaticEvent.event =
                gw_handle_lookup(c, GW_HT_CUevent, (uint64_t)(uintptr_t)a->value.programmaticEvent.event);
        else if (a->id == CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT)
            a->value.launchCompletionEvent.event =
                gw_handle_lookup(c, GW_HT_CUevent, (uint64_t)(uintptr_t)a->value.launchCompletionEvent.event);
    }
}

static CUlaunchConfig launch_config(config *k)
{
    CUlaunchConfig cfg = {k->dims[0], k->dims[1], k->dims[2], k->dims[3], k->dims[4], k->dims[5], k->dims[6],
                          k->s, k->nattrs ? k->attrs : NULL, k->nattrs};
    return cfg;
}

/* LAUNCH: the configuration, then the packed parameters */
static void launch(gw_call *c)
{
    config k;
    read_config(c, &k);
    void *f = k.f;
    int is_kernel = k.is_kernel;
    uint32_t *dims = k.dims;
    CUstream s = k.s;
    gw_launch_req_after_config a = {0};
    gw_in_part(c, gw_launch_req_after_config, &a);
    uint32_t nbytes = a.param_bytes;
    if (!c->bad && nbytes > GW_LAUNCH_REQ_PARAMS_MAX)
        gw_call_fail(c, "%s: %u parameter bytes", gw_op_name(c->h.op), nbytes);
    const uint8_t *params = c->bad ? NULL : gw_in_view(c, nbytes);
    if (!gw_args_ok(c))
        return;
    /* rebuild kernelParams from the layout the driver reports for this function */
    void **kp;
    CUresult pr = gw_kernel_params(c, f, is_kernel, params, nbytes, &kp);
    if (pr != CUDA_SUCCESS) {
        gw_reply_result(c, pr);
        return;
    }
    void *fn = gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    CUresult r;
    unsigned op = c->h.op;
    if (op == GW_OP_cuLaunchKernelEx || op == GW_OP_cuLaunchKernelEx_ptsz) {
        CUlaunchConfig cfg = launch_config(&k);
        r = ((CUresult(*)(const CUlaunchConfig *, CUfunction, void **, void **))fn)(&cfg, f, kp, NULL);
    } else if (op == GW_OP_cuLaunchCooperativeKernel || op == GW_OP_cuLaunchCooperativeKernel_ptsz) {
        r = ((CUresult(*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                          void **))fn)(f, dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], s, kp);
    } else {
        r = ((CUresult(*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                          void **, void **))fn)(f, dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], s, kp,
                                                NULL);
    }
    gw_reply_result(c, r);
}

void gw_h_cuLaunchKernel(gw_call *c) { launch(c); }
void gw_h_cuLaunchKernel_ptsz(gw_call *c) { launch(c); }
void gw_h_cuLaunchKernelEx(gw_call *c) { launch(c); }
void gw_h_cuLaunchKernelEx_ptsz(gw_call *c) { launch(c); }
void gw_h_cuLaunchCooperativeKernel(gw_call *c) { launch(c); }
void gw_h_cuLaunchCooperativeKernel_ptsz(gw_call *c) { launch(c); }

/* cuOccupancyMaxActiveClusters / MaxPotentialClusterSize: config -> i32 */
static void cluster_query(gw_call *c)
{
    config k;
    read_config(c, &k);
    if (!gw_args_ok(c))
        return;
    void *fn = gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    CUlaunchConfig cfg = launch_config(&k);
    int n = 0;
    CUresult r = ((CUresult(*)(int *, CUfunction, const CUlaunchConfig *))fn)(&n, k.f, &cfg);
    gw_reply_result(c, r);
    if (r == CUDA_SUCCESS)
        gw_reply_u32(c, (uint32_t)n);
}

void gw_h_cuOccupancyMaxActiveClusters(gw_call *c) { cluster_query(c); }
void gw_h_cuOccupancyMaxPotentialClusterSize(gw_call *c) { cluster_query(c); }
