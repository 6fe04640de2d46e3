/* JIT linking: cuLinkCreate, cuLinkAddData (cuLinkAddFile arrives as it: the
 * client reads the file), cuLinkComplete, cuLinkDestroy, old and _v2 names.
 *
 * Options: u32 n (<= 64), n x (u32 option, u64 value). Only options whose value
 * is a number reach the driver. The log buffers are the worker's own: the
 * client sends CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES / CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
 * (cuLinkCreate only) with its buffer's size, the worker allocates that much
 * (at most 1 MiB) and hands the driver its own buffer; every other option kind
 * (pointers, outputs) is refused with CUDA_ERROR_INVALID_VALUE: a client
 * pointer never reaches the driver.
 *
 * Requests (after the op's header):
 *   cuLinkCreate*:  options                        reply: result, logs, [u64 link id]
 *   cuLinkAddData*: u64 link id, u32 input type, u64 size (the staged blob),
 *                   str name, options              reply: result, logs
 *   cuLinkComplete: u64 link id, u64 offset        reply: result, logs, [u64 total, u64 n, n bytes]
 *                   offset 0 runs the link; later offsets fetch the rest of
 *                   the cubin in pieces of at most 8 MiB
 *   cuLinkDestroy:  u64 link id                    reply: result
 * logs: u32 n, n bytes of the info log text, u32 m, m bytes of the error log
 * text (what the driver has written so far; 0 without a buffer). They travel
 * on failures too. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../common/idmap.h"
#include "../common/jit_options.h"
#include "worker.h"

#define LINK_MAX_OPTIONS 64u
#define LINK_MAX_LOG (1u << 20)
#define LINK_PIECE (8u << 20)

typedef struct link_rec {
    CUlinkState state;
    unsigned n;                              /* options given to cuLinkCreate (kept: the driver writes outputs there) */
    CUjit_option opts[LINK_MAX_OPTIONS + 2];
    void *vals[LINK_MAX_OPTIONS + 2];
    char *info, *err;                        /* the worker's log buffers (NULL: none asked for) */
    size_t info_cap, err_cap;
    const void *cubin;                       /* owned by the driver's link state */
    size_t cubin_size;
} link_rec;

static gw_idmap links;                       /* link id -> link_rec */
/* One link call at a time: a record is never freed under another thread's call. */
static pthread_mutex_t links_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct wire_opts {
    uint32_t n;
    uint32_t opt[LINK_MAX_OPTIONS];
    uint64_t val[LINK_MAX_OPTIONS];
} wire_opts;

static void read_opts(gw_call *c, wire_opts *w)
{
    w->n = gw_in_u32(c);
    if (c->bad)
        return;
    if (w->n > LINK_MAX_OPTIONS) {
        gw_call_fail(c, "%s: %u JIT options, more than %u", gw_op_name(c->h.op), w->n, LINK_MAX_OPTIONS);
        w->n = 0;
        return;
    }
    for (uint32_t i = 0; i < w->n && !c->bad; i++) {
        w->opt[i] = gw_in_u32(c);
        w->val[i] = gw_in_u64(c);
    }
}

/* The numeric options of w into opts/vals; 0, or -1 (logged) on an option
 * kind that may not travel. With r set, the log size options make its buffers. */
static int build_opts(gw_call *c, const wire_opts *w, link_rec *r, CUjit_option *opts, void **vals, unsigned *n)
{
    *n = 0;
    for (uint32_t i = 0; i < w->n; i++) {
        unsigned o = w->opt[i];
        if (gw_jit_numeric_option(o)) {
            opts[*n] = (CUjit_option)o;
            vals[(*n)++] = (void *)(uintptr_t)w->val[i];
            continue;
        }
        int info = o == CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, err = o == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES;
        if (r && (info || err)) {
            char **buf = info ? &r->info : &r->err;
            size_t *cap = info ? &r->info_cap : &r->err_cap;
            if (*buf) {
                gw_wlog("%s: log buffer size given twice: refused", gw_op_name(c->h.op));
                return -1;
            }
            uint64_t size = w->val[i];
            if (size == 0)
                continue; /* no room: no log */
            if (size > LINK_MAX_LOG)
                size = LINK_MAX_LOG; /* the client copies at most what it has room for */
            *buf = calloc(1, (size_t)size);
            if (!*buf)
                return -2;
            *cap = (size_t)size;
            opts[*n] = info ? CU_JIT_INFO_LOG_BUFFER : CU_JIT_ERROR_LOG_BUFFER;
            vals[(*n)++] = *buf;
            opts[*n] = (CUjit_option)o;
            vals[(*n)++] = (void *)(uintptr_t)size;
            continue;
        }
        gw_wlog("%s: JIT option %u (a pointer, an output or unknown) is not forwarded: CUDA_ERROR_INVALID_VALUE",
                gw_op_name(c->h.op), o);
        return -1;
    }
    return 0;
}

static void reply_log(gw_call *c, const char *buf, size_t cap)
{
    uint32_t n = buf ? (uint32_t)strnlen(buf, cap) : 0;
    gw_reply_u32(c, n);
    gw_reply_bytes(c, buf, n);
}

static void reply_logs(gw_call *c, const link_rec *r)
{
    reply_log(c, r ? r->info : NULL, r ? r->info_cap : 0);
    reply_log(c, r ? r->err : NULL, r ? r->err_cap : 0);
}

static void rec_free(link_rec *r)
{
    if (r) {
        free(r->info);
        free(r->err);
        free(r);
    }
}

/* The record of a link id; answers CUDA_ERROR_INVALID_HANDLE (logged) if unknown. Lock held. */
static link_rec *rec_of(gw_call *c, uint64_t id)
{
    link_rec *r = id ? gw_idmap_get(&links, id) : NULL;
    int found;
    void *real = gw_handle_real(GW_HT_CUlinkState, id, &found);
    if (!r || !found || real != (void *)r->state) {
        gw_wlog("%s: unknown link state id 0x%llx", gw_op_name(c->h.op), (unsigned long long)id);
        return NULL;
    }
    return r;
}

static void link_create(gw_call *c)
{
    wire_opts w;
    read_opts(c, &w);
    if (!gw_args_ok(c))
        return;
    typedef CUresult (*create_fn)(unsigned, CUjit_option *, void **, CUlinkState *);
    create_fn fn = (create_fn)gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    link_rec *r = calloc(1, sizeof *r);
    if (!r) {
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
        reply_logs(c, NULL);
        return;
    }
    int b = build_opts(c, &w, r, r->opts, r->vals, &r->n);
    if (b) {
        gw_reply_result(c, b == -2 ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_ERROR_INVALID_VALUE);
        reply_logs(c, NULL);
        rec_free(r);
        return;
    }
    pthread_mutex_lock(&links_lock);
    CUresult res = fn(r->n, r->n ? r->opts : NULL, r->n ? r->vals : NULL, &r->state);
    uint64_t id = 0;
    if (res == CUDA_SUCCESS) {
        id = gw_handle_id(GW_HT_CUlinkState, r->state);
        if (!id || gw_idmap_put(&links, id, r)) {
            CUresult (*destroy)(CUlinkState) = (CUresult(*)(CUlinkState))gw_driver_sym(GW_OP_cuLinkDestroy);
            if (id)
                gw_handle_forget(c, GW_HT_CUlinkState, id);
            if (destroy)
                destroy(r->state);
            res = CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    gw_reply_result(c, res);
    reply_logs(c, r);
    if (res == CUDA_SUCCESS)
        gw_reply_bytes(c, &id, 8);
    else
        rec_free(r);
    pthread_mutex_unlock(&links_lock);
}

void gw_h_cuLinkCreate(gw_call *c) { link_create(c); }
void gw_h_cuLinkCreate_v2(gw_call *c) { link_create(c); }

static void link_add(gw_call *c)
{
    uint64_t id = gw_in_u64(c);
    uint32_t type = gw_in_u32(c);
    uint64_t size = gw_in_u64(c);
    const char *name = gw_in_str(c);
    wire_opts w;
    read_opts(c, &w);
    if (!gw_args_ok(c))
        return;
    const void *data = size ? gw_staged(c->h.tid, (size_t)size) : NULL;
    if (!data) {
        gw_call_fail(c, "%s: no complete staged input of %llu bytes", gw_op_name(c->h.op), (unsigned long long)size);
        return;
    }
    typedef CUresult (*add_fn)(CUlinkState, CUjitInputType, void *, size_t, const char *, unsigned, CUjit_option *,
                               void **);
    /* cuLinkAddFile's bytes were read by the client: the driver gets them as data */
    unsigned op = c->h.op == GW_OP_cuLinkAddFile ? GW_OP_cuLinkAddData
                  : c->h.op == GW_OP_cuLinkAddFile_v2 ? GW_OP_cuLinkAddData_v2 : c->h.op;
    add_fn fn = (add_fn)gw_driver_fn(c, op);
    if (!fn)
        return;
    pthread_mutex_lock(&links_lock);
    link_rec *r = rec_of(c, id);
    CUjit_option opts[LINK_MAX_OPTIONS];
    void *vals[LINK_MAX_OPTIONS];
    unsigned n = 0;
    CUresult res;
    if (!r)
        res = CUDA_ERROR_INVALID_HANDLE;
    else if (build_opts(c, &w, NULL, opts, vals, &n))
        res = CUDA_ERROR_INVALID_VALUE;
    else
        res = fn(r->state, (CUjitInputType)type, (void *)data, (size_t)size, name, n, n ? opts : NULL,
                 n ? vals : NULL);
    gw_reply_result(c, res);
    reply_logs(c, r);
    pthread_mutex_unlock(&links_lock);
}

void gw_h_cuLinkAddData(gw_call *c) { link_add(c); }
void gw_h_cuLinkAddData_v2(gw_call *c) { link_add(c); }
void gw_h_cuLinkAddFile(gw_call *c) { link_add(c); }
void gw_h_cuLinkAddFile_v2(gw_call *c) { link_add(c); }

void gw_h_cuLinkComplete(gw_call *c)
{
    uint64_t id = gw_in_u64(c);
    uint64_t off = gw_in_u64(c);
    if (!gw_args_ok(c))
        return;
    void *fn = gw_driver_fn(c, GW_OP_cuLinkComplete);
    if (!fn)
        return;
    pthread_mutex_lock(&links_lock);
    link_rec *r = rec_of(c, id);
    CUresult res = CUDA_SUCCESS;
    if (!r) {
        res = CUDA_ERROR_INVALID_HANDLE;
    } else if (off == 0) {
        void *cubin = NULL;
        size_t size = 0;
        res = ((CUresult(*)(CUlinkState, void **, size_t *))fn)(r->state, &cubin, &size);
        if (res == CUDA_SUCCESS && (!cubin || !size))
            res = CUDA_ERROR_INVALID_IMAGE;
        r->cubin = res == CUDA_SUCCESS ? cubin : NULL;
        r->cubin_size = res == CUDA_SUCCESS ? size : 0;
    } else if (!r->cubin || off >= r->cubin_size) {
        gw_wlog("cuLinkComplete: piece at %llu of a cubin of %zu bytes", (unsigned long long)off,
                r->cubin ? r->cubin_size : 0);
        res = CUDA_ERROR_INVALID_VALUE;
    }
    gw_reply_result(c, res);
    reply_logs(c, r);
    if (res == CUDA_SUCCESS) {
        uint64_t total = r->cubin_size, n = total - off < LINK_PIECE ? total - off : LINK_PIECE;
        gw_reply_bytes(c, &total, 8);
        gw_reply_bytes(c, &n, 8);
        gw_reply_bytes(c, (const uint8_t *)r->cubin + off, (size_t)n);
    }
    pthread_mutex_unlock(&links_lock);
}

void gw_h_cuLinkDestroy(gw_call *c)
{
    uint64_t id = gw_in_u64(c);
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUlinkState) = (CUresult(*)(CUlinkState))gw_driver_fn(c, GW_OP_cuLinkDestroy);
    if (!fn)
        return;
    pthread_mutex_lock(&links_lock);
    link_rec *r = rec_of(c, id);
    CUresult res = r ? fn(r->state) : CUDA_ERROR_INVALID_HANDLE;
    if (res == CUDA_SUCCESS) {
        gw_idmap_del(&links, id);
        gw_handle_forget(c, GW_HT_CUlinkState, id);
        rec_free(r);
    }
    gw_reply_result(c, res);
    pthread_mutex_unlock(&links_lock);
}
