/* Module and library loads from the per-thread staging buffer, the staging
 * op itself, and parameter layouts of functions and kernels. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/idmap.h"
#include "jit_outputs.h"
#include "handlers.h"

#define MAX_STAGE (4ull << 30) /* the largest blob a session may stage */
/* All of a session's blobs at once (one per client thread tag, kept until its
 * load): one blob of the largest size still fits, 256 tags no longer take 1 TiB. */
#define STAGE_SESSION_BYTES MAX_STAGE
#define MAX_OPTIONS GW_LIBRARY_OPTIONS_MAX

typedef struct stage {
    uint8_t *buf;
    uint64_t total, filled;
    int refused; /* this blob got no memory: its pieces and its load answer CUDA_ERROR_OUT_OF_MEMORY */
} stage;

static gw_idmap stages; /* client thread tag -> stage */
static pthread_mutex_t stages_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t staged_bytes; /* the sizes of all blobs held, under stages_lock */

/* s's blob replaced by a fresh one of total bytes (zeroed or not), within the
 * session's STAGE_SESSION_BYTES; NULL (s->refused set) if over it or out of memory. */
static uint8_t *stage_alloc(stage *s, uint64_t total, int zeroed)
{
    pthread_mutex_lock(&stages_lock);
    staged_bytes -= s->buf ? s->total : 0;
    free(s->buf);
    s->buf = NULL;
    if (total <= STAGE_SESSION_BYTES - staged_bytes) {
        s->buf = zeroed ? calloc(1, total) : malloc(total);
        if (s->buf)
            staged_bytes += total;
    }
    s->total = total;
    s->filled = 0;
    s->refused = !s->buf;
    pthread_mutex_unlock(&stages_lock);
    return s->buf;
}

static stage *stage_of(uint32_t tid, int create)
{
    pthread_mutex_lock(&stages_lock);
    stage *s = gw_idmap_get(&stages, tid);
    if (!s && create) {
        s = calloc(1, sizeof *s);
        if (s && gw_idmap_put(&stages, tid, s)) {
            free(s);
            s = NULL;
        }
    }
    pthread_mutex_unlock(&stages_lock);
    return s;
}

/* STAGE: u64 offset, u64 total, bytes. Pieces arrive in order; offset 0 starts a blob. */
void gw_op_stage(gw_call *c)
{
    gw_stage_req q = {0};
    gw_in_fields(c, GW_STAGE_REQ_SIZE, gw_stage_req_get(gw_in_next(c), gw_in_left(c), &q));
    uint64_t off = q.offset, total = q.total;
    size_t n = gw_in_left(c);
    const void *src = gw_in_view(c, n);
    if (c->bad)
        return;
    if (total == 0 || total > MAX_STAGE) {
        gw_call_fail(c, "staging blob of %llu bytes", (unsigned long long)total);
        return;
    }
    stage *s = stage_of(c->h.tid, 1);
    if (!s) {
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
        return;
    }
    if (off == 0 && !stage_alloc(s, total, 0)) {
        gw_wlog("staging a %llu-byte image: refused, the session's staged images would pass %llu bytes "
                "(or out of memory)", (unsigned long long)total, (unsigned long long)STAGE_SESSION_BYTES);
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
        return;
    }
    if (s->refused && total == s->total && off < total && n <= total - off) {
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY); /* the rest of a refused blob: its load fails too */
        return;
    }
    if (off != s->filled || total != s->total || n > total - off) {
        gw_call_fail(c, "staging piece at %llu+%zu does not continue the blob (%llu of %llu)",
                     (unsigned long long)off, n, (unsigned long long)s->filled, (unsigned long long)s->total);
        return;
    }
    memcpy(s->buf + off, src, n);
    s->filled += n;
    gw_reply_result(c, CUDA_SUCCESS);
}

const void *gw_staged(uint32_t tid, size_t size)
{
    stage *s = stage_of(tid, 0);
    return s && s->buf && s->total == size && s->filled == size ? s->buf : NULL;
}

/* ---- the staging buffer filled by content address (cas_ops.c) ----
 * Chunks arrive in any order: from the cache, then the misses. The buffer is
 * zeroed and only bytes are counted, so a client that sends a chunk twice and
 * another never gets zeros in its own image, nothing else. */
uint8_t *gw_stage_reset(uint32_t tid, uint64_t total)
{
    stage *s = total && total <= MAX_STAGE ? stage_of(tid, 1) : NULL;
    return s ? stage_alloc(s, total, 1) : NULL;
}

int gw_stage_fill(uint32_t tid, uint64_t off, const void *src, size_t n)
{
    stage *s = stage_of(tid, 0);
    if (!s || !s->buf || off > s->total || n > s->total - off || n > s->total - s->filled)
        return -1;
    if (src)
        memcpy(s->buf + off, src, n);
    s->filled += n;
    return 0;
}

static void release_stage(uint32_t tid)
{
    stage *s = stage_of(tid, 0);
    if (s) {
        pthread_mutex_lock(&stages_lock);
        staged_bytes -= s->buf ? s->total : 0;
        free(s->buf);
        s->buf = NULL;
        s->total = s->filled = 0;
        s->refused = 0;
        pthread_mutex_unlock(&stages_lock);
    }
}

/* The blob of that size was refused memory (its load answers OUT_OF_MEMORY, not malformed). */
static int stage_refused(uint32_t tid, size_t size)
{
    stage *s = stage_of(tid, 0);
    return s && s->refused && s->total == size;
}

/* MODULE_LOAD's library options (codegen/protocol.txt). Only
 * CU_LIBRARY_BINARY_IS_PRESERVED may come: any other value would be a pointer
 * into the client (a function table), which the driver would read here. */
static unsigned read_library_options(gw_call *c, unsigned *opts, void **vals)
{
    gw_module_load_req_after_jit q = {0};
    if (!gw_in_part(c, gw_module_load_req_after_jit, &q))
        return 0;
    uint32_t n = q.m;
    if (n > GW_MODULE_LOAD_REQ_LIBRARY_OPTIONS_MAX) {
        gw_call_fail(c, "%s: %u options", gw_op_name(c->h.op), n);
        return 0;
    }
    for (uint32_t i = 0; i < n && !c->bad; i++) {
        gw_module_load_req_library_options_item it = {0};
        if (!gw_in_part(c, gw_module_load_req_library_options_item, &it))
            break;
        opts[i] = it.option;
        vals[i] = (void *)(uintptr_t)it.value;
        if (opts[i] != CU_LIBRARY_BINARY_IS_PRESERVED)
            gw_call_fail(c, "%s: library option %u cannot travel (its value is not a number)", gw_op_name(c->h.op),
                         opts[i]);
    }
    return n;
}

/* After a load, the module's functions (names, parameter layouts, thread
 * limits) go to the client unasked, so its launches need no round trip per
 * function. Payload: MODULE_INFO's fields, then per function a
 * MODULE_INFO_FUNCTION record and, if the device is given, its
 * MODULE_INFO_ATTRIBUTES (codegen/protocol.txt). */
typedef CUresult (*param_info_fn)(void *, size_t, size_t *, size_t *);

/* Attributes travel for the functions of small bare cubins only: reading
 * them loads the function on the device, which a large library loaded lazily
 * (PyTorch's, cuBLAS's) must not pay for kernels it never runs. */
#define ATTRS_MAX_FUNCTIONS 8

static void push_info(uint64_t id, void *h, int is_library, int bare_cubin)
{
    unsigned cnt = 0;
    void **fns = NULL;
    if (is_library) {
        CUresult (*count)(unsigned *, CUlibrary) = (CUresult(*)(unsigned *, CUlibrary))gw_driver_sym(GW_OP_cuLibraryGetKernelCount);
        CUresult (*list)(CUkernel *, unsigned, CUlibrary) =
            (CUresult(*)(CUkernel *, unsigned, CUlibrary))gw_driver_sym(GW_OP_cuLibraryEnumerateKernels);
        if (!count || !list || count(&cnt, h) != CUDA_SUCCESS || cnt > 1000000)
            return; /* nothing sent: the client asks per lookup instead */
        fns = calloc(cnt ? cnt : 1, sizeof *fns);
        if (!fns || (cnt && list((CUkernel *)fns, cnt, h) != CUDA_SUCCESS)) {
            free(fns);
            return;
        }
    } else {
        CUresult (*count)(unsigned *, CUmodule) = (CUresult(*)(unsigned *, CUmodule))gw_driver_sym(GW_OP_cuModuleGetFunctionCount);
        CUresult (*list)(CUfunction *, unsigned, CUmodule) =
            (CUresult(*)(CUfunction *, unsigned, CUmodule))gw_driver_sym(GW_OP_cuModuleEnumerateFunctions);
        if (!count || !list || count(&cnt, h) != CUDA_SUCCESS || cnt > 1000000)
            return;
        fns = calloc(cnt ? cnt : 1, sizeof *fns);
        if (!fns || (cnt && list((CUfunction *)fns, cnt, h) != CUDA_SUCCESS)) {
            free(fns);
            return;
        }
    }
    CUresult (*name_of)(const char **, void *) =
        (CUresult(*)(const char **, void *))gw_driver_sym(is_library ? GW_OP_cuKernelGetName : GW_OP_cuFuncGetName);
    param_info_fn info = (param_info_fn)gw_driver_sym(is_library ? GW_OP_cuKernelGetParamInfo : GW_OP_cuFuncGetParamInfo);
    CUresult (*fattr)(int *, CUfunction_attribute, CUfunction) =
        (CUresult(*)(int *, CUfunction_attribute, CUfunction))gw_driver_sym(GW_OP_cuFuncGetAttribute);
    CUresult (*kattr)(int *, CUfunction_attribute, CUkernel, CUdevice) =
        (CUresult(*)(int *, CUfunction_attribute, CUkernel, CUdevice))gw_driver_sym(GW_OP_cuKernelGetAttribute);
    CUresult (*ctxdev)(CUdevice *) = (CUresult(*)(CUdevice *))gw_driver_sym(GW_OP_cuCtxGetDevice);
    CUdevice dev = -1;
    if (!bare_cubin || cnt > ATTRS_MAX_FUNCTIONS || !ctxdev || ctxdev(&dev) != CUDA_SUCCESS ||
        (is_library ? !kattr : !fattr))
        dev = -1;
    gw_call out = {0}; /* a reply-shaped buffer: header space, then the payload */
    uint8_t *head = gw_reply_start(&out, GW_MODULE_INFO_REQ_SIZE);
    if (head)
        gw_module_info_req_put(head, &(gw_module_info_req){.module = id, .count = cnt, .device = dev});
    if (!head || !name_of || !info) {
        free(fns);
        free(out.rbuf);
        return;
    }
    for (unsigned i = 0; i < cnt; i++) {
        const char *name = NULL;
        if (name_of(&name, fns[i]) != CUDA_SUCCESS || !name)
            name = "";
        uint16_t nl = (uint16_t)strnlen(name, 4096); /* <= MODULE_NAME_MAX */
        gw_reply_fields(&out, gw_module_info_function_req, {.name_length = nl});
        gw_reply_bytes(&out, name, nl);
        int maxt = 0;
        if (!is_library && fattr)
            fattr(&maxt, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, fns[i]);
        uint32_t offs[1024][2], m = 0; /* <= GW_MODULE_INFO_FUNCTION_REQ_LAYOUT_MAX */
        for (; m < 1024; m++) {
            size_t off, size;
            if (info(fns[i], m, &off, &size) != CUDA_SUCCESS)
                break;
            offs[m][0] = (uint32_t)off;
            offs[m][1] = (uint32_t)size;
        }
        /* No parameter info may mean "none" or "not resolvable yet" (a lazily
         * loaded kernel): the client is told it does not know, and asks at
         * the first launch. */
        gw_reply_fields(&out, gw_module_info_function_req_after_name,
                        {.max_threads = (uint32_t)(maxt > 0 ? maxt : 0), .m = m ? m : 0xFFFFFFFFu});
        for (uint32_t j = 0; j < m; j++)
            gw_reply_fields(&out, gw_module_info_function_req_layout_item, {.offset = offs[j][0], .size = offs[j][1]});
        if (dev >= 0) { /* MODULE_INFO_ATTRIBUTES: the mask of the attributes read, then their values */
            int32_t v[CU_FUNC_ATTRIBUTE_MAX];
            uint32_t mask = 0;
            for (int a = 0; a < CU_FUNC_ATTRIBUTE_MAX; a++) {
                int x = 0;
                CUresult ar = is_library ? kattr(&x, (CUfunction_attribute)a, fns[i], dev)
                                         : fattr(&x, (CUfunction_attribute)a, fns[i]);
                if (ar == CUDA_SUCCESS) {
                    v[a] = x;
                    mask |= 1u << a;
                }
            }
            gw_reply_fields(&out, gw_module_info_attributes_req, {.mask = mask});
            for (int a = 0; a < CU_FUNC_ATTRIBUTE_MAX; a++)
                if (mask >> a & 1)
                    gw_reply_u32(&out, (uint32_t)v[a]);
        }
    }
    free(fns);
    if (!out.bad && out.rlen - sizeof(gw_hdr) <= GW_MAX_PAYLOAD)
        gw_push(GW_OP_MODULE_INFO, out.rbuf + sizeof(gw_hdr), out.rlen - sizeof(gw_hdr));
    free(out.rbuf);
}

/* MODULE_LOAD (codegen/protocol.txt): the JIT options through jit_outputs.c,
 * the JIT outputs in the reply on failures too. */
static void load(gw_call *c, int type)
{
    gw_module_load_req q = {0};
    gw_in_part(c, gw_module_load_req, &q);
    uint64_t id = q.id;
    uint64_t size = q.image_size;
    unsigned lo[MAX_OPTIONS];
    void *lv[MAX_OPTIONS];
    CUjit_option jo[GW_JIT_DRIVER_OPTIONS];
    void *jv[GW_JIT_DRIVER_OPTIONS];
    unsigned nj = 0;
    gw_jit_bufs jb;
    int b = c->bad ? -1 : gw_jit_read(c, &jb, jo, jv, &nj);
    unsigned nl = b == -1 ? 0 : read_library_options(c, lo, lv);
    if (b == -1 || !gw_args_ok(c)) {
        if (b != -1)
            gw_jit_free(&jb);
        return;
    }
    nl = 0; /* "binary is preserved" would let the driver keep pointing into the staging blob, which is freed */
    const void *image = gw_staged(c->h.tid, size);
    if (!image && stage_refused(c->h.tid, size)) {
        release_stage(c->h.tid);
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
        gw_jit_reply(c, NULL, NULL);
        gw_jit_free(&jb);
        return;
    }
    if (!image) {
        gw_jit_free(&jb);
        gw_call_fail(c, "%s: no complete staged image of %llu bytes", gw_op_name(c->h.op), (unsigned long long)size);
        return;
    }
    void *f = gw_driver_fn(c, c->h.op);
    if (!f || b) {
        release_stage(c->h.tid);
        if (f) { /* no memory for a log buffer */
            gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
            gw_jit_reply(c, NULL, NULL);
        }
        gw_jit_free(&jb);
        return;
    }
    void *h = NULL;
    CUresult r;
    switch (c->h.op) {
    case GW_OP_cuModuleLoadData:
        r = ((CUresult(*)(CUmodule *, const void *))f)((CUmodule *)&h, image);
        break;
    case GW_OP_cuModuleLoadFatBinary:
        r = ((CUresult(*)(CUmodule *, const void *))f)((CUmodule *)&h, image);
        break;
    case GW_OP_cuModuleLoadDataEx:
        r = ((CUresult(*)(CUmodule *, const void *, unsigned, CUjit_option *, void **))f)(
            (CUmodule *)&h, image, nj, nj ? jo : NULL, nj ? jv : NULL);
        break;
    default: /* cuLibraryLoadData */
        r = ((CUresult(*)(CUlibrary *, const void *, CUjit_option *, void **, unsigned, CUlibraryOption *, void **,
                          unsigned))f)((CUlibrary *)&h, image, nj ? jo : NULL, nj ? jv : NULL, nj,
                                       (CUlibraryOption *)lo, lv, nl);
        break;
    }
    /* a bare cubin (NVRTC's output: cuDNN compiles one per new shape) */
    int bare_cubin = size >= 4 && !memcmp(image, "\x7f" "ELF", 4);
    release_stage(c->h.tid);
    gw_reply_result(c, r);
    gw_jit_reply(c, &jb, jv);
    gw_jit_free(&jb);
    if (r != CUDA_SUCCESS)
        return;
    gw_handle_bind(c, type, id, h);
    if (!c->bad)
        push_info(id, h, type == GW_HT_CUlibrary, bare_cubin);
}

void gw_h_cuModuleLoadData(gw_call *c) { load(c, GW_HT_CUmodule); }
void gw_h_cuModuleLoadDataEx(gw_call *c) { load(c, GW_HT_CUmodule); }
void gw_h_cuModuleLoadFatBinary(gw_call *c) { load(c, GW_HT_CUmodule); }
void gw_h_cuLibraryLoadData(gw_call *c) { load(c, GW_HT_CUlibrary); }

/* ---- parameter layouts ---- */

typedef CUresult (*param_info_fn)(void *, size_t, size_t *, size_t *);

/* The generated list items are the wire's bytes in memory (no padding, little-endian host). */
_Static_assert(sizeof(gw_func_layout_rep_item) == GW_FUNC_LAYOUT_REP_ITEM_SIZE, "FUNC_LAYOUT item layout");
_Static_assert(sizeof(gw_device_attrs_rep_item) == GW_DEVICE_ATTRS_REP_ITEM_SIZE, "DEVICE_ATTRS item layout");

/* FUNC_LAYOUT: u64 function-or-kernel id -> i32 result, u32 n, n x (u32
 * offset, u32 size), u32 max threads per block (0: unknown) */
void gw_op_func_layout(gw_call *c)
{
    gw_func_layout_req q = {0};
    gw_in_fields(c, GW_FUNC_LAYOUT_REQ_SIZE, gw_func_layout_req_get(gw_in_next(c), gw_in_left(c), &q));
    uint64_t id = q.function;
    if (!gw_args_ok(c))
        return;
    int is_kernel = 0, found;
    void *f = gw_handle_real(GW_HT_CUkernel, id, &found);
    if (found && f)
        is_kernel = 1;
    else
        f = gw_handle_real(GW_HT_CUfunction, id, &found);
    if (!found || !f) {
        gw_reply_result(c, CUDA_ERROR_INVALID_HANDLE);
        return;
    }
    param_info_fn info = (param_info_fn)gw_driver_sym(is_kernel ? GW_OP_cuKernelGetParamInfo : GW_OP_cuFuncGetParamInfo);
    if (!info) {
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
        return;
    }
    gw_func_layout_rep_item items[4096];
    uint32_t n = 0;
    for (; n < 4096; n++) {
        size_t off, size;
        if (info(f, n, &off, &size) != CUDA_SUCCESS)
            break;
        items[n] = (gw_func_layout_rep_item){.offset = (uint32_t)off, .size = (uint32_t)size};
    }
    /* the most threads a block of this function may have, so the client can
     * refuse a bad launch at once, as the driver would */
    int max_threads = 0;
    if (is_kernel) {
        CUresult (*ctxdev)(CUdevice *) = (CUresult(*)(CUdevice *))gw_driver_sym(GW_OP_cuCtxGetDevice);
        CUresult (*kattr)(int *, CUfunction_attribute, CUkernel, CUdevice) =
            (CUresult(*)(int *, CUfunction_attribute, CUkernel, CUdevice))gw_driver_sym(GW_OP_cuKernelGetAttribute);
        CUdevice dev;
        if (ctxdev && kattr && ctxdev(&dev) == CUDA_SUCCESS)
            kattr(&max_threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f, dev);
    } else {
        CUresult (*fattr)(int *, CUfunction_attribute, CUfunction) =
            (CUresult(*)(int *, CUfunction_attribute, CUfunction))gw_driver_sym(GW_OP_cuFuncGetAttribute);
        if (fattr)
            fattr(&max_threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f);
    }
    uint8_t *fields = gw_reply_start(c, GW_FUNC_LAYOUT_REP_SIZE);
    if (!fields)
        return;
    gw_func_layout_rep_put(fields, &(gw_func_layout_rep){.result = CUDA_SUCCESS, .n = n});
    gw_reply_bytes(c, items, (size_t)n * GW_FUNC_LAYOUT_REP_ITEM_SIZE);
    /* after the list: no codec for a field that follows one (hand-written) */
    gw_reply_u32(c, (uint32_t)(max_threads > 0 ? max_threads : 0));
}

/* ---- device attributes, all at once ---- */

/* DEVICE_ATTRS: u32 device -> i32 result, u32 n, n x (i32 status, i32 value) for attributes 1..n */
void gw_op_device_attrs(gw_call *c)
{
    gw_device_attrs_req q = {0};
    gw_in_fields(c, GW_DEVICE_ATTRS_REQ_SIZE, gw_device_attrs_req_get(gw_in_next(c), gw_in_left(c), &q));
    CUdevice dev = (CUdevice)q.device;
    if (!gw_args_ok(c))
        return;
    CUresult (*get)(int *, CUdevice_attribute, CUdevice) =
        (CUresult(*)(int *, CUdevice_attribute, CUdevice))gw_driver_sym(GW_OP_cuDeviceGetAttribute);
    if (!get) {
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
        return;
    }
    int probe;
    CUresult r = get(&probe, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, dev);
    if (r != CUDA_SUCCESS) {
        gw_reply_result(c, r);
        return;
    }
    uint32_t n = CU_DEVICE_ATTRIBUTE_MAX - 1;
    uint8_t *fields = gw_reply_start(c, GW_DEVICE_ATTRS_REP_SIZE);
    if (!fields)
        return;
    gw_device_attrs_rep_put(fields, &(gw_device_attrs_rep){.result = CUDA_SUCCESS, .n = n});
    for (uint32_t a = 1; a <= n; a++) {
        int v = 0;
        CUresult st = get(&v, (CUdevice_attribute)a, dev);
        gw_device_attrs_rep_item it = {.status = (int32_t)st, .value = st == CUDA_SUCCESS ? v : 0};
        gw_reply_bytes(c, &it, GW_DEVICE_ATTRS_REP_ITEM_SIZE);
    }
}
