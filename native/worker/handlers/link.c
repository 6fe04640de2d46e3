/* JIT linking: cuLinkCreate, cuLinkAddData (cuLinkAddFile arrives as it: the
 * client reads the file), cuLinkComplete, cuLinkDestroy, old and _v2 names.
 *
 * Options: as jit_outputs.c reads them (common/jit_options.h): numbers reach
 * the driver as they are; a log size option gets a buffer of the worker's own
 * of that size (at most 1 MiB), CU_JIT_WALL_TIME a slot; anything else ends
 * the session: a client pointer never reaches the driver. cuLinkCreate's
 * arrays are kept with the link, as the driver writes its logs, their sizes
 * and the wall time there during the later calls.
 *
 * Formats: LINK_CREATE, LINK_ADD, LINK_COMPLETE, LINK_DESTROY in
 * codegen/protocol.txt. Every reply carries the JIT outputs of cuLinkCreate's
 * options as they stand (empty for an unknown link), on failures too;
 * cuLinkAddData's its own input's after them. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/idmap.h"
#include "jit_outputs.h"

#define LINK_PIECE GW_LINK_COMPLETE_REP_CUBIN_MAX

typedef struct link_rec {
    CUlinkState state;
    unsigned n;                              /* options given to cuLinkCreate (kept: the driver writes outputs there) */
    CUjit_option opts[GW_JIT_DRIVER_OPTIONS];
    void *vals[GW_JIT_DRIVER_OPTIONS];
    gw_jit_bufs bufs;
    const void *cubin;                       /* owned by the driver's link state */
    size_t cubin_size;
} link_rec;

static gw_idmap links;                       /* link id -> link_rec */
/* One link call at a time: a record is never freed under another thread's call. */
static pthread_mutex_t links_lock = PTHREAD_MUTEX_INITIALIZER;

static void reply_logs(gw_call *c, const link_rec *r)
{
    gw_jit_reply(c, r ? &r->bufs : NULL, r ? r->vals : NULL);
}

static void rec_free(link_rec *r)
{
    if (r) {
        gw_jit_free(&r->bufs);
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
    link_rec *r = calloc(1, sizeof *r);
    if (!r) {
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
        reply_logs(c, NULL);
        return;
    }
    int b = gw_jit_read(c, &r->bufs, r->opts, r->vals, &r->n);
    typedef CUresult (*create_fn)(unsigned, CUjit_option *, void **, CUlinkState *);
    create_fn fn = b == -1 || !gw_args_ok(c) ? NULL : (create_fn)gw_driver_fn(c, c->h.op);
    if (!fn || b) {
        if (fn) { /* -2: no memory for a log buffer */
            gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
            reply_logs(c, NULL);
        }
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
        gw_reply_fields(c, gw_link_create_rep_after_jit, {.link = id});
    else
        rec_free(r);
    pthread_mutex_unlock(&links_lock);
}

void gw_h_cuLinkCreate(gw_call *c) { link_create(c); }
void gw_h_cuLinkCreate_v2(gw_call *c) { link_create(c); }

static void link_add(gw_call *c)
{
    gw_link_add_req q = {0};
    gw_in_part(c, gw_link_add_req, &q);
    uint64_t id = q.link;
    uint32_t type = q.input_type;
    uint64_t size = q.size;
    const char *name = gw_in_str(c);
    gw_jit_bufs own; /* this input's own outputs */
    CUjit_option opts[GW_JIT_DRIVER_OPTIONS];
    void *vals[GW_JIT_DRIVER_OPTIONS];
    unsigned n = 0;
    int b = c->bad ? -1 : gw_jit_read(c, &own, opts, vals, &n);
    if (b == -1 || !gw_args_ok(c)) {
        if (b != -1)
            gw_jit_free(&own);
        return;
    }
    const void *data = size ? gw_staged(c->h.tid, (size_t)size) : NULL;
    if (!data) {
        gw_jit_free(&own);
        gw_call_fail(c, "%s: no complete staged input of %llu bytes", gw_op_name(c->h.op), (unsigned long long)size);
        return;
    }
    typedef CUresult (*add_fn)(CUlinkState, CUjitInputType, void *, size_t, const char *, unsigned, CUjit_option *,
                               void **);
    /* cuLinkAddFile's bytes were read by the client: the driver gets them as data */
    unsigned op = c->h.op == GW_OP_cuLinkAddFile ? GW_OP_cuLinkAddData
                  : c->h.op == GW_OP_cuLinkAddFile_v2 ? GW_OP_cuLinkAddData_v2 : c->h.op;
    add_fn fn = (add_fn)gw_driver_fn(c, op);
    if (!fn) {
        gw_jit_free(&own);
        return;
    }
    pthread_mutex_lock(&links_lock);
    link_rec *r = rec_of(c, id);
    CUresult res;
    if (!r)
        res = CUDA_ERROR_INVALID_HANDLE;
    else if (b)
        res = CUDA_ERROR_OUT_OF_MEMORY;
    else
        res = fn(r->state, (CUjitInputType)type, (void *)data, (size_t)size, name, n, n ? opts : NULL,
                 n ? vals : NULL);
    gw_reply_result(c, res);
    reply_logs(c, r);
    gw_jit_reply(c, b ? NULL : &own, vals);
    pthread_mutex_unlock(&links_lock);
    gw_jit_free(&own);
}

void gw_h_cuLinkAddData(gw_call *c) { link_add(c); }
void gw_h_cuLinkAddData_v2(gw_call *c) { link_add(c); }
void gw_h_cuLinkAddFile(gw_call *c) { link_add(c); }
void gw_h_cuLinkAddFile_v2(gw_call *c) { link_add(c); }

void gw_h_cuLinkComplete(gw_call *c)
{
    gw_link_complete_req q = {0};
    gw_in_part(c, gw_link_complete_req, &q);
    uint64_t id = q.link;
    uint64_t off = q.offset;
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
        gw_reply_fields(c, gw_link_complete_rep_after_jit, {.cubin_size = total, .n = n});
        gw_reply_bytes(c, (const uint8_t *)r->cubin + off, (size_t)n);
    }
    pthread_mutex_unlock(&links_lock);
}

void gw_h_cuLinkDestroy(gw_call *c)
{
    gw_link_destroy_req q = {0};
    gw_in_part(c, gw_link_destroy_req, &q);
    uint64_t id = q.link;
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUlinkState) = (CUresult(*)(CUlinkState))gw_driver_fn(c, GW_OP_cuLinkDestroy);
    if (!fn)
        return;
    pthread_mutex_lock(&links_lock);
    link_rec *r = rec_of(c, id);
    CUresult res = r ? fn(r->state) : CUDA_ERROR_INVALID_HANDLE;
    gw_reply_result(c, res);
    reply_logs(c, r); /* cuda.h: the outputs "accumulate data until the CUlinkState is destroyed" */
    if (res == CUDA_SUCCESS) {
        gw_idmap_del(&links, id);
        gw_handle_forget(c, GW_HT_CUlinkState, id);
        rec_free(r);
    }
    pthread_mutex_unlock(&links_lock);
}
