/* Module and library loading: the image's bytes go to the worker's staging
 * buffer in posted chunks, then one call loads them there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pthread.h>
#include <stdatomic.h>

#include "../../common/idmap.h"
#include "../diag/env.h"
#include "../diag/progress.h"
#include "../wire/cas.h"
#include "cubin_info.h"
#include "jit_outputs.h"
#include "state.h"

static CUresult stage_upload(const void *data, size_t size);

CUresult gw_stage_upload(const void *data, size_t size)
{
    gw_progress_begin(size); /* the status line of a long transfer (diag/progress.c) */
    CUresult rc = stage_upload(data, size);
    gw_progress_end();
    return rc;
}

static CUresult stage_upload(const void *data, size_t size)
{
    const uint8_t *p = data;
    size_t off = 0;
    gw_cas_figures *st = gw_cas_stats();
    __atomic_fetch_add(&st->images, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&st->image_bytes, size, __ATOMIC_RELAXED);
    /* large images travel by content address: a second start sends almost none (wire/cas_upload.c) */
    if (size >= gw_cas_min_image() && gw_cas_on())
        return gw_cas_stage(data, size);
    __atomic_fetch_add(&st->images_inline, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&st->image_inline_bytes, size, __ATOMIC_RELAXED);
    do {
        size_t len = size - off < GW_COPY_CHUNK ? size - off : GW_COPY_CHUNK;
        gw_req *q = gw_req_begin_quiet(GW_OP_STAGE);
        gw_put_fields(q, gw_stage_req, {.offset = off, .total = size});
        gw_put_raw(q, p + off, len);
        CUresult rc = gw_req_post(q);
        if (rc != CUDA_SUCCESS)
            return rc;
        gw_progress_sent(len);
        off += len;
    } while (off < size);
    return CUDA_SUCCESS;
}

/* MODULE_LOAD's library options (codegen/protocol.txt) */
static void put_library_options(gw_req *q, unsigned n, CUlibraryOption *opts, void **vals)
{
    unsigned keep = 0;
    for (unsigned i = 0; opts && vals && i < n; i++)
        keep += opts[i] == CU_LIBRARY_BINARY_IS_PRESERVED;
    gw_put_fields(q, gw_module_load_req_after_jit, {.m = keep});
    for (unsigned i = 0; opts && vals && i < n; i++)
        if (opts[i] == CU_LIBRARY_BINARY_IS_PRESERVED)
            gw_put_fields(q, gw_module_load_req_library_options_item,
                          {.option = (uint32_t)opts[i], .value = (uint64_t)(uintptr_t)vals[i]});
}

static void *info_from_cubin(const void *image, size_t size);

/* 1: the library options ask nothing a preloaded library lacks ("binary is
 * preserved" only lets the driver keep pointing at the caller's image) */
static int only_preserved(unsigned n, const CUlibraryOption *opts)
{
    for (unsigned i = 0; opts && i < n; i++)
        if (opts[i] != CU_LIBRARY_BINARY_IS_PRESERVED)
            return 0;
    return 1;
}
static void install_from_cubin(uint64_t id, void *parsed);
typedef struct mod_info mod_info;
static void free_info(mod_info *m);
static const char *differences(const mod_info *mine, const mod_info *theirs, int shared_differs);
static void read_wrong(const char *why, uint64_t id);
static void keep_read_layouts(mod_info *theirs, const mod_info *mine);

/* Several servers (wire/servers.h): a library belongs to no context, so it is
 * loaded on every server under one id (GW_ROUTE_ALL), and so are its kernels;
 * whichever server a context of the program is on then has them. Waits for
 * each server's verdict. */
static CUresult load_everywhere(unsigned op, void **handle, const void *image, size_t size, unsigned njit,
                                CUjit_option *jo, void **jv, gw_jit_outs *outs, unsigned nlib, CUlibraryOption *lo,
                                void **lv)
{
    uint64_t id = gw_handle_on(gw_new_handle_id() & ~GW_ROUTE_MASK, GW_ROUTE_ALL);
    CUresult rc = CUDA_SUCCESS;
    for (int k = 0; k < gw_servers_n && rc == CUDA_SUCCESS; k++) {
        int route = gw_route_enter(k);
        rc = gw_stage_upload(image, size);
        if (rc == CUDA_SUCCESS) {
            gw_req *q = gw_req_begin_quiet(op);
            gw_put_fields(q, gw_module_load_req, {.id = id, .image_size = size}); /* MODULE_LOAD */
            gw_jit_put(q, njit, jo, jv, outs);
            put_library_options(q, nlib, lo, lv);
            gw_req_set_flags(q, GW_F_COLLECT);
            gw_rep *r;
            rc = gw_req_call(q, &r);
            if (gw_jit_has_outputs(outs))
                gw_jit_take(r, outs);
            if (rc == CUDA_SUCCESS)
                rc = gw_rep_status(r, rc);
            gw_rep_end(r);
        }
        gw_route_leave(route);
    }
    if (rc == CUDA_SUCCESS)
        *handle = (void *)(uintptr_t)id;
    install_from_cubin(rc == CUDA_SUCCESS ? id : 0, info_from_cubin(image, size));
    return rc;
}

/* Stage the image, then post the load under a handle the client names: a
 * load does not wait (a failure surfaces at the next synchronization). The
 * worker then sends the module's functions and their layouts unasked; a
 * library from a bare cubin has them read from the image at once, so its
 * first kernel lookup need not wait for the load (cuDNN loads one per
 * decoded token). A load given JIT outputs (log buffers, the wall time)
 * waits instead: the application reads them when the call returns. */
static CUresult load(unsigned op_counted, unsigned op, void **handle, const void *image, unsigned njit,
                     CUjit_option *jo, void **jv, unsigned nlib, CUlibraryOption *lo, void **lv)
{
    gw_stat_call(op_counted);
    if (!handle || !image)
        return CUDA_ERROR_INVALID_VALUE;
    gw_jit_outs outs;
    if (gw_jit_scan(gw_op_name(op_counted), njit, jo, jv, &outs))
        return CUDA_ERROR_INVALID_VALUE;
    if (!gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    image = gw_image_unwrap(image);
    size_t size = gw_image_size(image);
    if (!size)
        return CUDA_ERROR_INVALID_IMAGE;
    if (op == GW_OP_cuLibraryLoadData && gw_servers_n > 1) /* several servers: a library is on each */
        return load_everywhere(op, handle, image, size, njit, jo, jv, &outs, nlib, lo, lv);
    uint64_t pre_id;
    if (op == GW_OP_cuLibraryLoadData && !njit && only_preserved(nlib, lo) && gw_preload_take(image, &pre_id)) {
        *handle = (void *)(uintptr_t)pre_id; /* loaded at cuInit (preload.c) */
        return CUDA_SUCCESS;
    }
    CUresult rc = gw_stage_upload(image, size);
    if (rc != CUDA_SUCCESS)
        return rc;
    void *parsed = op == GW_OP_cuLibraryLoadData ? info_from_cubin(image, size) : NULL;
    gw_req *q = gw_req_begin_quiet(op);
    uint64_t id = gw_new_handle_id();
    gw_put_fields(q, gw_module_load_req, {.id = id, .image_size = size}); /* MODULE_LOAD */
    gw_jit_put(q, njit, jo, jv, &outs);
    put_library_options(q, nlib, lo, lv);
    if (gw_jit_has_outputs(&outs)) {
        gw_rep *r;
        rc = gw_req_call(q, &r);
        gw_jit_take(r, &outs);
        if (rc == CUDA_SUCCESS)
            rc = gw_rep_status(r, rc);
        gw_rep_end(r);
    } else {
        rc = gw_req_post(q);
    }
    if (rc == CUDA_SUCCESS)
        *handle = (void *)(uintptr_t)id;
    install_from_cubin(rc == CUDA_SUCCESS ? id : 0, parsed);
    return rc;
}

/* A library the client loads of its own accord (preload.c): the same upload
 * and load, but waited for, so a failure is the client's to keep and never a
 * later call's error. */
CUresult gw_library_preload(const void *image, size_t size, uint64_t *id)
{
    CUresult rc = gw_stage_upload(image, size);
    if (rc != CUDA_SUCCESS)
        return rc;
    void *parsed = info_from_cubin(image, size);
    gw_req *q = gw_req_begin_quiet(GW_OP_cuLibraryLoadData);
    *id = gw_new_handle_id();
    gw_put_fields(q, gw_module_load_req, {.id = *id, .image_size = size}); /* MODULE_LOAD */
    gw_jit_outs outs;
    gw_jit_scan("cuLibraryLoadData", 0, NULL, NULL, &outs);
    gw_jit_put(q, 0, NULL, NULL, &outs);
    put_library_options(q, 0, NULL, NULL);
    gw_rep *r;
    rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS)
        rc = gw_rep_status(r, rc);
    gw_rep_end(r);
    install_from_cubin(rc == CUDA_SUCCESS ? *id : 0, parsed);
    return rc;
}

CUresult CUDAAPI cuModuleLoadData(CUmodule *module, const void *image)
{
    return load(GW_OP_cuModuleLoadData, GW_OP_cuModuleLoadData, (void **)module, image, 0, NULL, NULL, 0, NULL, NULL);
}

CUresult CUDAAPI cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions,
                                    CUjit_option *options, void **optionValues)
{
    return load(GW_OP_cuModuleLoadDataEx, GW_OP_cuModuleLoadDataEx, (void **)module, image, numOptions, options, optionValues, 0, NULL, NULL);
}

CUresult CUDAAPI cuModuleLoadFatBinary(CUmodule *module, const void *fatCubin)
{
    return load(GW_OP_cuModuleLoadFatBinary, GW_OP_cuModuleLoadFatBinary, (void **)module, fatCubin, 0, NULL, NULL, 0, NULL, NULL);
}

CUresult CUDAAPI cuLibraryLoadData(CUlibrary *library, const void *code, CUjit_option *jitOptions,
                                   void **jitOptionsValues, unsigned int numJitOptions,
                                   CUlibraryOption *libraryOptions, void **libraryOptionValues,
                                   unsigned int numLibraryOptions)
{
    return load(GW_OP_cuLibraryLoadData, GW_OP_cuLibraryLoadData, (void **)library, code, numJitOptions, jitOptions, jitOptionsValues,
                numLibraryOptions, libraryOptions, libraryOptionValues);
}

/* File loads: the file is on the client, so the client reads it. */
static void *read_file(const char *path, size_t *size)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0; /* PTX files are text: the terminator makes them a string */
        *size = (size_t)n;
    }
    return buf;
}

CUresult CUDAAPI cuModuleLoad(CUmodule *module, const char *fname)
{
    size_t n;
    void *img = read_file(fname, &n);
    if (!img) {
        gw_stat_call(GW_OP_cuModuleLoad);
        return CUDA_ERROR_FILE_NOT_FOUND;
    }
    CUresult rc = load(GW_OP_cuModuleLoad, GW_OP_cuModuleLoadData, (void **)module, img, 0, NULL, NULL, 0, NULL, NULL);
    free(img);
    return rc;
}

CUresult CUDAAPI cuLibraryLoadFromFile(CUlibrary *library, const char *fileName, CUjit_option *jitOptions,
                                       void **jitOptionsValues, unsigned int numJitOptions,
                                       CUlibraryOption *libraryOptions, void **libraryOptionValues,
                                       unsigned int numLibraryOptions)
{
    size_t n;
    void *img = read_file(fileName, &n);
    if (!img) {
        gw_stat_call(GW_OP_cuLibraryLoadFromFile);
        return CUDA_ERROR_FILE_NOT_FOUND;
    }
    CUresult rc = load(GW_OP_cuLibraryLoadFromFile, GW_OP_cuLibraryLoadData, (void **)library, img, numJitOptions, jitOptions,
                       jitOptionsValues, numLibraryOptions, libraryOptions, libraryOptionValues);
    free(img);
    return rc;
}

/* ---- what the client knows of loaded modules ----
 * Each module's (or library's) functions arrive once after its load; a
 * function handle the client named records its module and name, so a launch
 * finds its layout here without asking. */
typedef struct fn_info {
    char *name;
    uint32_t max_threads, n;
    uint32_t *pairs;      /* n x (offset, size) */
    uint32_t shared_hint; /* read from a cubin: its static shared size */
} fn_info;

struct mod_info {
    uint32_t n;
    int from_image; /* read from the cubin by the client; the worker's still to come */
    fn_info *fns;
};

typedef struct fn_meta {
    uint64_t module; /* module or library id */
    char *name;
} fn_meta;

static gw_idmap modules;  /* module id -> mod_info (NULL value: loading, nothing arrived yet) */
static gw_idmap aliases;  /* module id from cuLibraryGetModule -> its library id */
static gw_idmap metas;    /* function/kernel id -> fn_meta */
static pthread_mutex_t info_lock = PTHREAD_MUTEX_INITIALIZER;

/* FNV-1a over the module id, then the name */
static uint64_t code_of(uint64_t module, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ module;
    for (const char *s = name; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

uint64_t gw_fn_identity(uint64_t handle)
{
    uint64_t h = handle;
    pthread_mutex_lock(&info_lock);
    fn_meta *m = gw_idmap_get(&metas, handle);
    if (m && m->name) {
        /* a library's module (cuLibraryGetModule) holds the library's code */
        uint64_t lib = (uint64_t)(uintptr_t)gw_idmap_get(&aliases, m->module);
        h = code_of(lib ? lib : m->module, m->name);
    }
    pthread_mutex_unlock(&info_lock);
    return h;
}

/* A function's attribute values, when the worker sent them (dev >= 0):
 * MODULE_INFO_ATTRIBUTES, then an i32 per bit set. 0, or -1 if malformed. */
static int take_attrs(const uint8_t *p, size_t len, size_t *pos, int32_t dev, uint64_t module, const char *name,
                      int *shared_differs)
{
    if (dev < 0)
        return 0;
    gw_module_info_attributes_req a;
    size_t got = gw_module_info_attributes_req_get(p + *pos, len - *pos, &a);
    if (!got)
        return -1;
    *pos += got;
    uint32_t mask = a.mask;
    if (mask >> CU_FUNC_ATTRIBUTE_MAX)
        return -1;
    int32_t vals[CU_FUNC_ATTRIBUTE_MAX] = {0};
    for (int a = 0; a < CU_FUNC_ATTRIBUTE_MAX; a++) {
        if (!(mask >> a & 1))
            continue;
        if (len - *pos < 4)
            return -1;
        memcpy(&vals[a], p + *pos, 4);
        *pos += 4;
    }
    if (name && gw_attrs_loaded(code_of(module, name), dev, mask, vals))
        *shared_differs = 1;
    return 0;
}

static void module_info_arrived(const uint8_t *p, size_t len)
{
    gw_module_info_req head;
    size_t pos = gw_module_info_req_get(p, len, &head);
    if (!pos)
        goto bad;
    /* then count MODULE_INFO_FUNCTION records (codegen/protocol.txt) */
    uint64_t id = head.module;
    uint32_t cnt = head.count;
    int32_t dev = head.device;
    int shared_differs = 0;
    if (cnt > len / 10)
        goto bad;
    mod_info *m = calloc(1, sizeof *m);
    if (!m)
        return;
    m->fns = calloc(cnt ? cnt : 1, sizeof *m->fns);
    if (!m->fns) {
        free(m);
        return;
    }
    for (; m->n < cnt; m->n++) {
        fn_info *f = &m->fns[m->n];
        gw_module_info_function_req fh;
        size_t got = gw_module_info_function_req_get(p + pos, len - pos, &fh);
        if (!got)
            goto bad_m;
        pos += got;
        uint16_t nl = fh.name_length; /* <= GW_MODULE_INFO_FUNCTION_REQ_NAME_MAX: a u16 */
        if (len - pos < nl)
            goto bad_m;
        f->name = strndup((const char *)p + pos, nl);
        pos += nl;
        gw_module_info_function_req_after_name an;
        if (!(got = gw_module_info_function_req_after_name_get(p + pos, len - pos, &an)))
            goto bad_m;
        pos += got;
        f->max_threads = an.max_threads;
        uint32_t np = an.m;
        if (np == 0xFFFFFFFFu) { /* layout unknown to the worker for now */
            f->n = np;
            f->pairs = NULL;
            if (!f->name || take_attrs(p, len, &pos, dev, id, f->name, &shared_differs))
                goto bad_m;
            continue;
        }
        size_t isz = GW_MODULE_INFO_FUNCTION_REQ_LAYOUT_ITEM_SIZE;
        if (np > GW_MODULE_INFO_FUNCTION_REQ_LAYOUT_MAX || len - pos < (size_t)np * isz)
            goto bad_m;
        gw_module_info_function_req_layout_item *items = malloc((size_t)np * sizeof *items + 1);
        f->pairs = malloc((size_t)np * 8 + 1);
        if (!f->name || !f->pairs || !items || !gw_module_info_function_req_layout_get(p + pos, len - pos, np, items)) {
            free(items);
            goto bad_m;
        }
        for (uint32_t j = 0; j < np; j++) {
            f->pairs[2 * j] = items[j].offset;
            f->pairs[2 * j + 1] = items[j].size;
        }
        free(items);
        pos += np * isz;
        f->n = np;
        if (take_attrs(p, len, &pos, dev, id, f->name, &shared_differs))
            goto bad_m;
    }
    pthread_mutex_lock(&info_lock);
    mod_info *old = gw_idmap_get(&modules, id);
    if (gw_idmap_put(&modules, id, m))
        old = m; /* out of memory: keep what was there, drop this */
    const char *why = old && old != m && old->from_image ? differences(old, m, shared_differs) : NULL;
    if (old && old != m && old->from_image && !why)
        keep_read_layouts(m, old);
    pthread_mutex_unlock(&info_lock);
    if (why)
        read_wrong(why, id);
    free_info(old);
    return;
bad_m:
    for (uint32_t i = 0; i <= m->n && i < cnt; i++) {
        free(m->fns[i].name);
        free(m->fns[i].pairs);
    }
    free(m->fns);
    free(m);
bad:
    gw_log("ignoring malformed module information from the server");
}

static const fn_info *find_fn(const mod_info *m, const char *name);

/* The worker's information replaces what the client read from the image; a
 * layout the worker could not tell (a lazily loaded kernel) stays the one read,
 * which agreed with everything the worker did tell. Call with info_lock held. */
static void keep_read_layouts(mod_info *theirs, const mod_info *mine)
{
    for (uint32_t i = 0; i < theirs->n; i++) {
        fn_info *f = &theirs->fns[i];
        const fn_info *a = f->n == 0xFFFFFFFFu ? find_fn(mine, f->name) : NULL;
        if (!a || a->n == 0xFFFFFFFFu)
            continue;
        uint32_t *pairs = malloc((size_t)a->n * 8 + 1);
        if (!pairs)
            continue;
        if (a->n)
            memcpy(pairs, a->pairs, (size_t)a->n * 8);
        free(f->pairs);
        f->pairs = pairs;
        f->n = a->n;
    }
}

static void free_info(mod_info *m)
{
    for (uint32_t i = 0; m && i < m->n; i++) {
        free(m->fns[i].name);
        free(m->fns[i].pairs);
    }
    if (m)
        free(m->fns);
    free(m);
}

/* ---- a library's functions read from its cubin (cubin_info.c) ---- */

static atomic_ullong images_read, images_checked, images_differing;

void gw_image_info_figures(unsigned long long out[3])
{
    out[0] = atomic_load(&images_read);
    out[1] = atomic_load(&images_checked);
    out[2] = atomic_load(&images_differing);
}

/* Whether a cubin for sm_<sm> runs on the current device as it is: the same
 * major version, a minor one no higher (else the driver refuses the load, or
 * would pick other code than this one). Without a current context (the
 * program's fatbins preloaded at cuInit, preload.c) device 0, whose
 * attributes came with the handshake. */
static int runs_here(uint32_t sm)
{
    int dev = gw_current_device(), major = 0, minor = 0;
    if (dev < 0)
        dev = 0;
    if (cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev) != CUDA_SUCCESS ||
        cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev) != CUDA_SUCCESS)
        return 0;
    return sm / 10 == (uint32_t)major && sm % 10 <= (uint32_t)minor;
}

/* GPUWIRE_CUBIN_KEEP=DIR: every cubin the client reads is written there, to
 * check the reading against the driver (scripts/cubin-check.py). */
static void keep_cubin(const void *image, size_t size)
{
    const char *dir = getenv("GPUWIRE_CUBIN_KEEP");
    if (!dir || !*dir)
        return;
    static atomic_uint n;
    char path[4096];
    snprintf(path, sizeof path, "%s/%d-%u.cubin", dir, (int)getpid(), atomic_fetch_add(&n, 1));
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(image, 1, size, f);
        fclose(f);
    }
}

static void *info_from_elf(const void *image, size_t size);

/* The functions of a bare cubin for this device, or of a fatbin's one cubin
 * that runs here (unpacked if compressed: fatbin.c), or NULL (anything else: the worker's information is
 * awaited as before). A fatbin's kernels are loaded lazily on the server, so
 * the worker cannot tell their layouts until each first runs: read here, the
 * first launch of each needs no round trip (that one fell between the events
 * a program times its first launch with). GPUWIRE_CUBIN_INFO=0 turns it off. */
static void *info_from_cubin(const void *image, size_t size)
{
    static int off = -1;
    if (off < 0) {
        int on = 1;
        gw_env_bool("GPUWIRE_CUBIN_INFO", "using the default, on", &on);
        off = !on;
    }
    if (off || size < 4)
        return NULL;
    if (!memcmp(image, "\x7f" "ELF", 4))
        return info_from_elf(image, size);
    gw_fatbin_cubin cubins[2];
    int n = gw_fatbin_cubins(image, size, runs_here, cubins, 2);
    /* two that could run: which the driver takes is its choice */
    void *m = n == 1 ? info_from_elf(cubins[0].elf, cubins[0].size) : NULL;
    gw_fatbin_cubins_free(cubins, n);
    return m;
}

static void *info_from_elf(const void *image, size_t size)
{
    gw_cubin_info ci;
    if (gw_cubin_parse(image, size, &ci) != 0)
        return NULL;
    keep_cubin(image, size);
    mod_info *m = runs_here(ci.sm) ? calloc(1, sizeof *m) : NULL;
    if (m && !(m->fns = calloc(ci.n ? ci.n : 1, sizeof *m->fns))) {
        free(m);
        m = NULL;
    }
    for (uint32_t i = 0; m && i < ci.n; i++) {
        fn_info *f = &m->fns[m->n++];
        f->name = ci.k[i].name; /* taken over */
        ci.k[i].name = NULL;
        f->n = ci.k[i].nparams;
        f->pairs = ci.k[i].pairs;
        ci.k[i].pairs = NULL;
        f->max_threads = 0; /* a library kernel's: unknown, as the worker sends it */
        f->shared_hint = ci.k[i].static_shared;
        if (!f->name || (f->n && !f->pairs)) {
            free_info(m);
            m = NULL;
        }
    }
    gw_cubin_free(&ci);
    if (m)
        m->from_image = 1;
    return m;
}

static void install_from_cubin(uint64_t id, void *parsed)
{
    mod_info *m = parsed;
    if (!m)
        return;
    if (!id) {
        free_info(m);
        return;
    }
    for (uint32_t i = 0; i < m->n; i++)
        if (m->fns[i].shared_hint != UINT32_MAX)
            gw_attrs_shared_hint(code_of(id, m->fns[i].name), m->fns[i].shared_hint);
    pthread_mutex_lock(&info_lock);
    mod_info *theirs = gw_idmap_get(&modules, id);
    int put = !theirs && !gw_idmap_put(&modules, id, m);
    /* the worker's came first (a load the client waited for, as the preload's):
     * the layouts it could not tell are filled from this reading if the rest agrees */
    const char *why = theirs ? differences(m, theirs, 0) : NULL;
    if (theirs && !why)
        keep_read_layouts(theirs, m);
    pthread_mutex_unlock(&info_lock);
    if (why)
        read_wrong(why, id);
    if (!put)
        free_info(m);
    else
        atomic_fetch_add(&images_read, 1);
}

/* The worker's information for a library the client read from its cubin: the
 * two must agree (names, layouts, static shared size). Returns what differs,
 * NULL if nothing; call with info_lock held. */
static const char *differences(const mod_info *mine, const mod_info *theirs, int shared_differs)
{
    atomic_fetch_add(&images_checked, 1);
    if (mine->n != theirs->n)
        return "the number of kernels";
    for (uint32_t i = 0; i < mine->n; i++) {
        const fn_info *a = &mine->fns[i], *b = find_fn(theirs, a->name);
        if (!b)
            return "a kernel's name";
        if (b->n != 0xFFFFFFFFu && (a->n != b->n || (a->n && memcmp(a->pairs, b->pairs, a->n * 8))))
            return "a parameter layout";
    }
    return shared_differs ? "a static shared memory size" : NULL;
}

/* A difference is a bug in the reading: said once, counted (GPUWIRE_STATS
 * image_info), and the worker's information is used from now on, also by
 * launches that kept a layout. */
static void read_wrong(const char *why, uint64_t id)
{
    atomic_fetch_add(&images_differing, 1);
    static atomic_int said;
    if (!atomic_exchange(&said, 1))
        gw_log("%s read from a cubin differs from the driver's (library %llx); using the driver's", why,
               (unsigned long long)id);
    gw_layouts_forget();
}

/* The module information of `module` (following a library-module alias); call with info_lock held. */
static mod_info *info_of(uint64_t module)
{
    uint64_t lib = (uint64_t)(uintptr_t)gw_idmap_get(&aliases, module);
    return gw_idmap_get(&modules, lib ? lib : module);
}

static const fn_info *find_fn(const mod_info *m, const char *name)
{
    for (uint32_t i = 0; m && i < m->n; i++)
        if (!strcmp(m->fns[i].name, name))
            return &m->fns[i];
    return NULL;
}

int gw_function_layout(uint64_t fid, uint32_t *n, uint32_t **pairs, uint32_t *max_threads)
{
    int found = 0;
    pthread_mutex_lock(&info_lock);
    fn_meta *meta = gw_idmap_get(&metas, fid);
    const fn_info *f = meta ? find_fn(info_of(meta->module), meta->name) : NULL;
    if (f && f->n == 0xFFFFFFFFu)
        f = NULL; /* known name, unknown layout */
    /* a copy: the module's information may be replaced (the worker's after
     * the client's own reading) once the lock is let go */
    uint32_t *copy = f ? malloc((size_t)f->n * 8 + 8) : NULL;
    if (copy) {
        if (f->n)
            memcpy(copy, f->pairs, (size_t)f->n * 8);
        *n = f->n;
        *pairs = copy;
        *max_threads = f->max_threads;
        found = 1;
    }
    pthread_mutex_unlock(&info_lock);
    return found;
}

static void remember(uint64_t fid, uint64_t module, const char *name)
{
    fn_meta *meta = malloc(sizeof *meta);
    if (!meta)
        return;
    meta->module = module;
    meta->name = strdup(name);
    pthread_mutex_lock(&info_lock);
    fn_meta *old = gw_idmap_get(&metas, fid);
    if (meta->name && !gw_idmap_put(&metas, fid, meta))
        meta = NULL;
    pthread_mutex_unlock(&info_lock);
    if (meta) {
        free(meta->name);
        free(meta);
    }
    (void)old; /* ids are never reused */
}

/* Lookups the driver answers with the same handle every time: a kernel's
 * function in a context (cudart asks before each occupancy query), a
 * module's function and a library's kernel by name, a library's module in a
 * context. Answered here after the first time, so a program that looks up
 * per launch neither grows the worker's handle table nor defeats the memo of
 * unchanging answers with a fresh handle each time (HF generate: one round
 * trip a token on the H100 before). Forgotten whenever a context ends or a
 * module or library is unloaded. */
typedef struct lookup {
    struct lookup *next;
    unsigned kind;
    uint64_t parent, ctx, handle;
    char name[];
} lookup;
enum { LK_KERNEL_FN = 1, LK_MODULE_FN, LK_LIBRARY_KERNEL, LK_LIBRARY_MODULE };
static gw_idmap lookups; /* hash -> lookup list, under info_lock */

static uint64_t lookup_hash(unsigned kind, uint64_t parent, uint64_t ctx, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ kind; /* FNV-1a */
    const uint64_t words[2] = {parent, ctx};
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 8; i++)
            h = (h ^ ((words[w] >> (8 * i)) & 0xff)) * 1099511628211ull;
    for (const char *c = name; c && *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ull;
    return h ? h : 1;
}

static uint64_t lookup_get(unsigned kind, uint64_t parent, uint64_t ctx, const char *name)
{
    uint64_t found = 0;
    pthread_mutex_lock(&info_lock);
    for (lookup *l = gw_idmap_get(&lookups, lookup_hash(kind, parent, ctx, name)); l && !found; l = l->next)
        if (l->kind == kind && l->parent == parent && l->ctx == ctx && !strcmp(l->name, name ? name : ""))
            found = l->handle;
    pthread_mutex_unlock(&info_lock);
    return found;
}

static void lookup_put(unsigned kind, uint64_t parent, uint64_t ctx, const char *name, uint64_t handle)
{
    size_t n = name ? strlen(name) : 0;
    lookup *l = n < 4096 ? malloc(sizeof *l + n + 1) : NULL;
    if (!l)
        return;
    uint64_t h = lookup_hash(kind, parent, ctx, name);
    l->kind = kind, l->parent = parent, l->ctx = ctx, l->handle = handle;
    memcpy(l->name, name ? name : "", n + 1);
    pthread_mutex_lock(&info_lock);
    l->next = gw_idmap_get(&lookups, h);
    if (gw_idmap_put(&lookups, h, l))
        free(l);
    pthread_mutex_unlock(&info_lock);
}

static void free_lookups(void *v)
{
    for (lookup *l = v, *n; l; l = n) {
        n = l->next;
        free(l);
    }
}

void gw_kernel_functions_forget(void)
{
    pthread_mutex_lock(&info_lock);
    gw_idmap_clear(&lookups, free_lookups);
    pthread_mutex_unlock(&info_lock);
}

/* 1: the module's information is here and lacks the name; 0: it has it;
 * -1: nothing has arrived yet. */
static int lookup_state(uint64_t module, const char *name)
{
    pthread_mutex_lock(&info_lock);
    mod_info *m = info_of(module);
    int state = !m ? -1 : !find_fn(m, name);
    if (state == 1 && m->from_image)
        state = -1; /* not in what the client read: the driver decides */
    pthread_mutex_unlock(&info_lock);
    return state;
}

/* A lookup in a module whose information has not arrived yet waits for the
 * server's answer once (which brings the information along): a missing name
 * is then refused at once, as natively, and later lookups cost nothing. */
CUresult CUDAAPI cuLibraryGetKernel(CUkernel *pKernel, CUlibrary library, const char *name)
{
    uint64_t known = pKernel && name ? lookup_get(LK_LIBRARY_KERNEL, (uint64_t)(uintptr_t)library, 0, name) : 0;
    if (known) {
        gw_stat_call(GW_OP_cuLibraryGetKernel);
        *pKernel = (CUkernel)(uintptr_t)known;
        return CUDA_SUCCESS;
    }
    int state = name ? lookup_state((uint64_t)(uintptr_t)library, name) : 0;
    if (state == 1) {
        gw_stat_call(GW_OP_cuLibraryGetKernel);
        return CUDA_ERROR_NOT_FOUND;
    }
    gw_set_must_wait(state == -1);
    CUresult rc;
    if (gw_handle_everywhere((uint64_t)(uintptr_t)library)) { /* several servers: the kernel on each too */
        uint64_t id = gw_handle_on(gw_new_handle_id() & ~GW_ROUTE_MASK, GW_ROUTE_ALL);
        rc = CUDA_SUCCESS;
        for (int k = 0; k < gw_servers_n && rc == CUDA_SUCCESS; k++) {
            int route = gw_route_enter(k);
            gw_pin_next_handle_id(id);
            rc = gwf_cuLibraryGetKernel(pKernel, library, name);
            gw_route_leave(route);
        }
    } else {
        rc = gwf_cuLibraryGetKernel(pKernel, library, name);
    }
    gw_set_must_wait(0);
    if (rc == CUDA_SUCCESS && name) {
        remember((uint64_t)(uintptr_t)*pKernel, (uint64_t)(uintptr_t)library, name);
        lookup_put(LK_LIBRARY_KERNEL, (uint64_t)(uintptr_t)library, 0, name, (uint64_t)(uintptr_t)*pKernel);
    }
    return rc;
}

CUresult CUDAAPI cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
    uint64_t known = hfunc && name ? lookup_get(LK_MODULE_FN, (uint64_t)(uintptr_t)hmod, 0, name) : 0;
    if (known) {
        gw_stat_call(GW_OP_cuModuleGetFunction);
        *hfunc = (CUfunction)(uintptr_t)known;
        return CUDA_SUCCESS;
    }
    int state = name ? lookup_state((uint64_t)(uintptr_t)hmod, name) : 0;
    if (state == 1) {
        gw_stat_call(GW_OP_cuModuleGetFunction);
        return CUDA_ERROR_NOT_FOUND;
    }
    gw_set_must_wait(state == -1);
    CUresult rc = gwf_cuModuleGetFunction(hfunc, hmod, name);
    gw_set_must_wait(0);
    if (rc == CUDA_SUCCESS && name) {
        remember((uint64_t)(uintptr_t)*hfunc, (uint64_t)(uintptr_t)hmod, name);
        lookup_put(LK_MODULE_FN, (uint64_t)(uintptr_t)hmod, 0, name, (uint64_t)(uintptr_t)*hfunc);
    }
    return rc;
}

CUresult CUDAAPI cuKernelGetFunction(CUfunction *pFunc, CUkernel kernel)
{
    uint64_t ctx = (uint64_t)(uintptr_t)gw_current_context(), kid = (uint64_t)(uintptr_t)kernel;
    uint64_t known = pFunc && ctx && kid ? lookup_get(LK_KERNEL_FN, kid, ctx, NULL) : 0;
    if (known) {
        gw_stat_call(GW_OP_cuKernelGetFunction);
        *pFunc = (CUfunction)(uintptr_t)known;
        return CUDA_SUCCESS;
    }
    CUresult rc = gwf_cuKernelGetFunction(pFunc, kernel);
    if (rc == CUDA_SUCCESS && ctx && kid)
        lookup_put(LK_KERNEL_FN, kid, ctx, NULL, (uint64_t)(uintptr_t)*pFunc);
    if (rc == CUDA_SUCCESS) {
        pthread_mutex_lock(&info_lock);
        fn_meta *k = gw_idmap_get(&metas, (uint64_t)(uintptr_t)kernel);
        uint64_t module = k ? k->module : 0;
        char *name = k && k->name ? strdup(k->name) : NULL;
        pthread_mutex_unlock(&info_lock);
        if (name)
            remember((uint64_t)(uintptr_t)*pFunc, module, name);
        free(name);
    }
    return rc;
}

CUresult CUDAAPI cuLibraryGetModule(CUmodule *pMod, CUlibrary library)
{
    uint64_t ctx = (uint64_t)(uintptr_t)gw_current_context(), lib = (uint64_t)(uintptr_t)library;
    uint64_t known = pMod && ctx && lib ? lookup_get(LK_LIBRARY_MODULE, lib, ctx, NULL) : 0;
    if (known) {
        gw_stat_call(GW_OP_cuLibraryGetModule);
        *pMod = (CUmodule)(uintptr_t)known;
        return CUDA_SUCCESS;
    }
    CUresult rc = gwf_cuLibraryGetModule(pMod, library);
    if (rc == CUDA_SUCCESS && ctx && lib)
        lookup_put(LK_LIBRARY_MODULE, lib, ctx, NULL, (uint64_t)(uintptr_t)*pMod);
    if (rc == CUDA_SUCCESS) {
        pthread_mutex_lock(&info_lock);
        gw_idmap_put(&aliases, (uint64_t)(uintptr_t)*pMod, (void *)(uintptr_t)library);
        pthread_mutex_unlock(&info_lock);
    }
    return rc;
}

static void forget_module(uint64_t id)
{
    pthread_mutex_lock(&info_lock);
    mod_info *m = gw_idmap_del(&modules, id);
    pthread_mutex_unlock(&info_lock);
    free_info(m);
}

CUresult CUDAAPI cuModuleUnload(CUmodule hmod)
{
    CUresult rc = gwf_cuModuleUnload(hmod);
    if (rc == CUDA_SUCCESS) {
        forget_module((uint64_t)(uintptr_t)hmod);
        gw_kernel_functions_forget(); /* its functions are gone */
    }
    return rc;
}

CUresult CUDAAPI cuLibraryUnload(CUlibrary library)
{
    CUresult rc = CUDA_SUCCESS;
    if (gw_handle_everywhere((uint64_t)(uintptr_t)library)) { /* several servers: loaded on each */
        for (int k = 0; k < gw_servers_n && rc == CUDA_SUCCESS; k++) {
            int route = gw_route_enter(k);
            rc = gwf_cuLibraryUnload(library);
            gw_route_leave(route);
        }
    } else {
        rc = gwf_cuLibraryUnload(library);
    }
    if (rc == CUDA_SUCCESS) {
        forget_module((uint64_t)(uintptr_t)library);
        gw_kernel_functions_forget(); /* its kernels' functions are gone */
    }
    return rc;
}

/* A GW_OP_MODULE_INFO frame (pushed.c): a loaded module's functions, sent
 * unasked after the load; kept. */
static int module_info_frame(uint32_t len)
{
    uint8_t *info = malloc(len ? len : 1);
    if (!info || gw_pushed_read(info, len)) {
        free(info);
        return -1;
    }
    if (gw_servers_n > 1 && len >= 16) { /* several servers: the sender's device ordinal made the client's */
        int32_t dev;
        memcpy(&dev, info + 12, 4); /* u64 module, u32 count, i32 device */
        if (dev >= 0) {
            dev = gw_device_of_server(gw_pushed_server(), dev); /* a hidden device: -1, its attributes not kept */
            memcpy(info + 12, &dev, 4);
        }
    }
    module_info_arrived(info, len);
    free(info);
    return 0;
}

__attribute__((constructor)) static void modules_init(void)
{
    gw_on_pushed(GW_OP_MODULE_INFO, module_info_frame);
}
