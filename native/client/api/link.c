/* JIT linking (wire format: native/worker/link.c). Options whose value is a
 * number travel; the application's log buffers, log sizes and wall time stay
 * here (client/jit_outputs.c): the worker links with buffers of its own and
 * after every link call (failures included) sends what the driver wrote into
 * them, which is copied into what the application gave cuLinkCreate (the
 * driver writes those during cuLinkAddData and cuLinkComplete, so the link
 * state remembers them) and, for one input's own options, into those.
 * Every link call waits for its reply. cuLinkAddFile reads the file here (the
 * path names a file on this machine) and sends its bytes. The cubin
 * cuLinkComplete returns is kept here, owned by the link state, until
 * cuLinkDestroy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "../../common/idmap.h"
#include "../state/jit_outputs.h"
#include "api.h"

#define LINK_MAX_CUBIN (4ull << 30)

typedef struct link_rec {
    gw_jit_outs outs;        /* the outputs given to cuLinkCreate (valid for the link's life, says cuda.h) */
    void *cubin;             /* what cuLinkComplete returned last */
    size_t cubin_size;
} link_rec;

static gw_idmap links; /* link id -> link_rec */
static pthread_mutex_t links_lock = PTHREAD_MUTEX_INITIALIZER;

static CUresult link_create(unsigned op, unsigned int n, CUjit_option *opts, void **vals, CUlinkState *out)
{
    const char *fn = gw_op_name(op);
    if (!out || (n && (!opts || !vals)))
        return CUDA_ERROR_INVALID_VALUE;
    link_rec *l = calloc(1, sizeof *l);
    if (!l)
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (gw_jit_scan(fn, n, opts, vals, &l->outs)) {
        free(l);
        return CUDA_ERROR_INVALID_VALUE;
    }
    gw_req *q = gw_req_begin(op); /* LINK_CREATE in codegen/protocol.txt */
    gw_jit_put(q, n, opts, vals, &l->outs);
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    gw_jit_take(r, &l->outs);
    gw_link_create_rep_after_jit after = {0};
    if (rc == CUDA_SUCCESS)
        gw_get_part(r, gw_link_create_rep_after_jit, &after); /* short: the status below says so */
    uint64_t id = after.link;
    if (rc == CUDA_SUCCESS) /* a failure's code stands even without its outputs (a driver that lacks the call) */
        rc = gw_rep_status(r, rc);
    gw_rep_end(r);
    if (rc == CUDA_SUCCESS && !id)
        rc = CUDA_ERROR_UNKNOWN;
    if (rc == CUDA_SUCCESS) {
        pthread_mutex_lock(&links_lock);
        if (gw_idmap_put(&links, id, l))
            rc = CUDA_ERROR_OUT_OF_MEMORY; /* the worker's state lives on until the session ends */
        pthread_mutex_unlock(&links_lock);
    }
    if (rc != CUDA_SUCCESS) {
        free(l);
        return rc;
    }
    *out = (CUlinkState)(uintptr_t)id;
    return CUDA_SUCCESS;
}

/* Reads a reply's link outputs into the link's buffers (if the client knows the link). */
static void logs_for(gw_rep *r, CUlinkState state)
{
    pthread_mutex_lock(&links_lock);
    link_rec *l = state ? gw_idmap_get(&links, (uint64_t)(uintptr_t)state) : NULL;
    gw_jit_take(r, l ? &l->outs : NULL);
    pthread_mutex_unlock(&links_lock);
}

static CUresult link_add(unsigned op, CUlinkState state, CUjitInputType type, const void *data, size_t size,
                         const char *name, unsigned int n, CUjit_option *opts, void **vals)
{
    const char *fn = gw_op_name(op);
    if (!state || !data || !size || (n && (!opts || !vals)))
        return CUDA_ERROR_INVALID_VALUE;
    gw_jit_outs own; /* this input's own outputs, if it has any */
    if (gw_jit_scan(fn, n, opts, vals, &own))
        return CUDA_ERROR_INVALID_VALUE;
    if (!gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    CUresult rc = gw_stage_upload(data, size);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin(op); /* LINK_ADD */
    gw_put_fields(q, gw_link_add_req, {.link = (uint64_t)(uintptr_t)state, .input_type = (uint32_t)type, .size = size});
    gw_put_str(q, name);
    gw_jit_put(q, n, opts, vals, &own);
    gw_rep *r;
    rc = gw_req_call(q, &r);
    logs_for(r, state);
    gw_jit_take(r, &own);
    if (rc == CUDA_SUCCESS)
        rc = gw_rep_status(r, rc);
    gw_rep_end(r);
    return rc;
}

/* The whole file at path; NULL with *rc set if it cannot be read. A PTX file
 * gets a terminating NUL, as PTX text in memory has. */
static void *read_file(const char *path, CUjitInputType type, size_t *size, CUresult *rc)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        gw_log("cuLinkAddFile: cannot open %s", path);
        *rc = CUDA_ERROR_FILE_NOT_FOUND;
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    *rc = CUDA_SUCCESS;
    while (buf) {
        if (len + 1 >= cap) {
            if (cap >= (4ull << 30)) {
                *rc = CUDA_ERROR_INVALID_VALUE;
                break;
            }
            uint8_t *b = realloc(buf, cap * 2);
            if (!b)
                break;
            buf = b;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f))
                *rc = CUDA_ERROR_FILE_NOT_FOUND;
            break;
        }
    }
    fclose(f);
    if (!buf || *rc != CUDA_SUCCESS || !len) {
        if (*rc == CUDA_SUCCESS)
            *rc = buf ? CUDA_ERROR_INVALID_IMAGE : CUDA_ERROR_OUT_OF_MEMORY;
        free(buf);
        return NULL;
    }
    if (type == CU_JIT_INPUT_PTX)
        buf[len++] = 0;
    *size = len;
    return buf;
}

static CUresult link_add_file(unsigned op, CUlinkState state, CUjitInputType type, const char *path, unsigned int n,
                              CUjit_option *opts, void **vals)
{
    if (!state || !path)
        return CUDA_ERROR_INVALID_VALUE;
    size_t size = 0;
    CUresult rc;
    void *data = read_file(path, type, &size, &rc);
    if (!data)
        return rc;
    rc = link_add(op, state, type, data, size, path, n, opts, vals);
    free(data);
    return rc;
}

#undef cuLinkCreate
#undef cuLinkAddData
#undef cuLinkAddFile
CUresult CUDAAPI cuLinkCreate(unsigned int numOptions, CUjit_option *options, void **optionValues, CUlinkState *stateOut);
CUresult CUDAAPI cuLinkAddData(CUlinkState state, CUjitInputType type, void *data, size_t size, const char *name,
                               unsigned int numOptions, CUjit_option *options, void **optionValues);
CUresult CUDAAPI cuLinkAddFile(CUlinkState state, CUjitInputType type, const char *path, unsigned int numOptions,
                               CUjit_option *options, void **optionValues);

CUresult CUDAAPI cuLinkCreate(unsigned int numOptions, CUjit_option *options, void **optionValues, CUlinkState *stateOut)
{
    return link_create(GW_OP_cuLinkCreate, numOptions, options, optionValues, stateOut);
}

CUresult CUDAAPI cuLinkCreate_v2(unsigned int numOptions, CUjit_option *options, void **optionValues,
                                 CUlinkState *stateOut)
{
    return link_create(GW_OP_cuLinkCreate_v2, numOptions, options, optionValues, stateOut);
}

CUresult CUDAAPI cuLinkAddData(CUlinkState state, CUjitInputType type, void *data, size_t size, const char *name,
                               unsigned int numOptions, CUjit_option *options, void **optionValues)
{
    return link_add(GW_OP_cuLinkAddData, state, type, data, size, name, numOptions, options, optionValues);
}

CUresult CUDAAPI cuLinkAddData_v2(CUlinkState state, CUjitInputType type, void *data, size_t size, const char *name,
                                  unsigned int numOptions, CUjit_option *options, void **optionValues)
{
    return link_add(GW_OP_cuLinkAddData_v2, state, type, data, size, name, numOptions, options, optionValues);
}

CUresult CUDAAPI cuLinkAddFile(CUlinkState state, CUjitInputType type, const char *path, unsigned int numOptions,
                               CUjit_option *options, void **optionValues)
{
    return link_add_file(GW_OP_cuLinkAddFile, state, type, path, numOptions, options, optionValues);
}

CUresult CUDAAPI cuLinkAddFile_v2(CUlinkState state, CUjitInputType type, const char *path, unsigned int numOptions,
                                  CUjit_option *options, void **optionValues)
{
    return link_add_file(GW_OP_cuLinkAddFile_v2, state, type, path, numOptions, options, optionValues);
}

CUresult CUDAAPI cuLinkComplete(CUlinkState state, void **cubinOut, size_t *sizeOut)
{
    if (!state || !cubinOut)
        return CUDA_ERROR_INVALID_VALUE;
    uint8_t *cubin = NULL;
    uint64_t total = 0, have = 0;
    CUresult rc = CUDA_SUCCESS;
    do {
        gw_req *q = have ? gw_req_begin_quiet(GW_OP_cuLinkComplete) : gw_req_begin(GW_OP_cuLinkComplete);
        gw_put_fields(q, gw_link_complete_req, {.link = (uint64_t)(uintptr_t)state, .offset = have}); /* LINK_COMPLETE */
        gw_rep *r;
        rc = gw_req_call(q, &r);
        logs_for(r, state);
        if (rc == CUDA_SUCCESS) {
            gw_link_complete_rep_after_jit after = {0};
            gw_get_part(r, gw_link_complete_rep_after_jit, &after); /* short: the status below says so */
            uint64_t t = after.cubin_size, n = after.n;
            const void *piece = n <= GW_LINK_COMPLETE_REP_CUBIN_MAX ? gw_get_view(r, (size_t)n) : NULL;
            rc = gw_rep_status(r, rc);
            if (rc == CUDA_SUCCESS && (!t || t > LINK_MAX_CUBIN || (have && t != total) || !n || n > t - have || !piece)) {
                gw_log("cuLinkComplete: a piece of %llu bytes at %llu of %llu does not fit the cubin",
                       (unsigned long long)n, (unsigned long long)have, (unsigned long long)t);
                rc = CUDA_ERROR_UNKNOWN;
            }
            if (rc == CUDA_SUCCESS && !have) {
                total = t;
                if (!(cubin = malloc((size_t)total)))
                    rc = CUDA_ERROR_OUT_OF_MEMORY;
            }
            if (rc == CUDA_SUCCESS) {
                memcpy(cubin + have, piece, (size_t)n);
                have += n;
            }
        }
        gw_rep_end(r);
    } while (rc == CUDA_SUCCESS && have < total);
    if (rc != CUDA_SUCCESS) {
        free(cubin);
        return rc;
    }
    pthread_mutex_lock(&links_lock);
    link_rec *l = gw_idmap_get(&links, (uint64_t)(uintptr_t)state);
    if (l) {
        free(l->cubin); /* a second completion replaces the first image, as it does in the driver */
        l->cubin = cubin;
        l->cubin_size = (size_t)total;
    }
    pthread_mutex_unlock(&links_lock);
    if (!l) {
        free(cubin);
        return CUDA_ERROR_INVALID_HANDLE;
    }
    *cubinOut = cubin;
    if (sizeOut)
        *sizeOut = (size_t)total;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuLinkDestroy(CUlinkState state)
{
    gw_req *q = gw_req_begin(GW_OP_cuLinkDestroy); /* LINK_DESTROY */
    gw_put_fields(q, gw_link_destroy_req, {.link = (uint64_t)(uintptr_t)state});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    logs_for(r, state); /* the driver may write its outputs a last time */
    gw_rep_end(r);
    if (rc == CUDA_SUCCESS) {
        pthread_mutex_lock(&links_lock);
        link_rec *l = state ? gw_idmap_del(&links, (uint64_t)(uintptr_t)state) : NULL;
        pthread_mutex_unlock(&links_lock);
        if (l) {
            free(l->cubin);
            free(l);
        }
    }
    return rc;
}
