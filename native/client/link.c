/* JIT linking (wire format: native/worker/link.c). Options whose value is a
 * number travel; the application's log buffers stay here: the worker links
 * with buffers of its own and sends their text back after every link call
 * (failures included), which is copied into the buffers given to cuLinkCreate.
 * cuLinkAddFile reads the file here (the path names a file on this machine)
 * and sends its bytes. The cubin cuLinkComplete returns is kept here, owned by
 * the link state, until cuLinkDestroy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "../common/idmap.h"
#include "../common/jit_options.h"
#include "client.h"

#define LINK_MAX_OPTIONS 64u
#define LINK_MAX_CUBIN (4ull << 30)

typedef struct link_rec {
    void **vals;             /* the application's option values (valid for the link's life) */
    char *info, *err;        /* its log buffers, or NULL */
    size_t info_size, err_size;
    int info_size_idx, err_size_idx; /* where their sizes were given (-1: nowhere) */
    void *cubin;             /* what cuLinkComplete returned last */
    size_t cubin_size;
} link_rec;

static gw_idmap links; /* link id -> link_rec */
static pthread_mutex_t links_lock = PTHREAD_MUTEX_INITIALIZER;

static int is_log_option(CUjit_option o)
{
    return o == CU_JIT_INFO_LOG_BUFFER || o == CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES || o == CU_JIT_ERROR_LOG_BUFFER ||
           o == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES;
}

/* How many of the options travel as numbers; -1 (logged) for a kind that cannot
 * travel at all (log buffers are neither: the callers handle them). */
static int count_numeric_options(const char *fn, unsigned n, const CUjit_option *opts)
{
    int keep = 0;
    for (unsigned i = 0; i < n; i++) {
        if (gw_jit_numeric_option(opts[i])) {
            keep++;
        } else if (!is_log_option(opts[i])) {
            gw_log("%s: JIT option %d is not forwarded (its value is a pointer or an output): "
                   "CUDA_ERROR_INVALID_VALUE", fn, (int)opts[i]);
            return -1;
        }
    }
    return keep;
}

static void put_numbers(gw_req *q, unsigned n, const CUjit_option *opts, void **vals)
{
    for (unsigned i = 0; i < n; i++)
        if (gw_jit_numeric_option(opts[i])) {
            gw_put_u32(q, (uint32_t)opts[i]);
            gw_put_u64(q, (uint64_t)(uintptr_t)vals[i]);
        }
}

/* Options that travel as numbers; -1 (logged) for any other kind. */
static int put_numeric_options(gw_req *q, const char *fn, unsigned n, const CUjit_option *opts, void **vals)
{
    int keep = count_numeric_options(fn, n, opts);
    if (keep < 0)
        return -1;
    gw_put_u32(q, (uint32_t)keep);
    put_numbers(q, n, opts, vals);
    return 0;
}

static void copy_log(gw_rep *r, char *dst, size_t size, void **vals, int size_idx)
{
    uint32_t n = gw_get_u32(r);
    const char *text = gw_get_view(r, n);
    if (!text || !dst || !size)
        return;
    size_t k = n < size - 1 ? n : size - 1;
    memcpy(dst, text, k);
    dst[k] = 0;
    if (vals && size_idx >= 0)
        vals[size_idx] = (void *)(uintptr_t)(n ? k + 1 : 0); /* bytes filled, as the driver reports */
}

/* The logs that follow a link reply's result, into the application's buffers. */
static void take_logs(gw_rep *r, link_rec *l)
{
    if (!l) {
        gw_get_view(r, gw_get_u32(r));
        gw_get_view(r, gw_get_u32(r));
        return;
    }
    copy_log(r, l->info, l->info_size, l->vals, l->info_size_idx);
    copy_log(r, l->err, l->err_size, l->vals, l->err_size_idx);
}

static CUresult link_create(unsigned op, unsigned int n, CUjit_option *opts, void **vals, CUlinkState *out)
{
    const char *fn = gw_op_name(op);
    if (!out || (n && (!opts || !vals)))
        return CUDA_ERROR_INVALID_VALUE;
    if (n > LINK_MAX_OPTIONS) {
        gw_log("%s: %u JIT options, more than %u", fn, n, LINK_MAX_OPTIONS);
        return CUDA_ERROR_INVALID_VALUE;
    }
    link_rec *l = calloc(1, sizeof *l);
    if (!l)
        return CUDA_ERROR_OUT_OF_MEMORY;
    l->vals = vals;
    l->info_size_idx = l->err_size_idx = -1;
    for (unsigned i = 0; i < n; i++) {
        if (opts[i] == CU_JIT_INFO_LOG_BUFFER)
            l->info = vals[i];
        else if (opts[i] == CU_JIT_ERROR_LOG_BUFFER)
            l->err = vals[i];
        else if (opts[i] == CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES)
            l->info_size = (unsigned)(uintptr_t)vals[i], l->info_size_idx = (int)i;
        else if (opts[i] == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
            l->err_size = (unsigned)(uintptr_t)vals[i], l->err_size_idx = (int)i;
    }
    if (!l->info)
        l->info_size = 0;
    if (!l->err)
        l->err_size = 0;
    /* the numbers, then a size option per log buffer asked for: the worker's own buffer of that size */
    unsigned nlogs = (l->info_size > 0) + (l->err_size > 0);
    int keep = count_numeric_options(fn, n, opts);
    if (keep < 0) {
        free(l);
        return CUDA_ERROR_INVALID_VALUE;
    }
    gw_req *q = gw_req_begin(op);
    gw_put_u32(q, (uint32_t)keep + nlogs);
    put_numbers(q, n, opts, vals);
    if (l->info_size) {
        gw_put_u32(q, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES);
        gw_put_u64(q, l->info_size);
    }
    if (l->err_size) {
        gw_put_u32(q, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES);
        gw_put_u64(q, l->err_size);
    }
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    take_logs(r, l);
    uint64_t id = rc == CUDA_SUCCESS ? gw_get_u64(r) : 0;
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

/* Reads a reply's logs into the link's buffers (if the client knows the link). */
static void logs_for(gw_rep *r, CUlinkState state)
{
    pthread_mutex_lock(&links_lock);
    link_rec *l = state ? gw_idmap_get(&links, (uint64_t)(uintptr_t)state) : NULL;
    take_logs(r, l);
    pthread_mutex_unlock(&links_lock);
}

static CUresult link_add(unsigned op, CUlinkState state, CUjitInputType type, const void *data, size_t size,
                         const char *name, unsigned int n, CUjit_option *opts, void **vals)
{
    const char *fn = gw_op_name(op);
    if (!state || !data || !size || (n && (!opts || !vals)))
        return CUDA_ERROR_INVALID_VALUE;
    if (n > LINK_MAX_OPTIONS) {
        gw_log("%s: %u JIT options, more than %u", fn, n, LINK_MAX_OPTIONS);
        return CUDA_ERROR_INVALID_VALUE;
    }
    for (unsigned i = 0; i < n; i++)
        if (!gw_jit_numeric_option(opts[i])) {
            gw_log("%s: JIT option %d is not forwarded for one input (log buffers belong to cuLinkCreate; "
                   "pointers and outputs do not travel): CUDA_ERROR_INVALID_VALUE", fn, (int)opts[i]);
            return CUDA_ERROR_INVALID_VALUE;
        }
    if (!gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    CUresult rc = gw_stage_upload(data, size);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin(op);
    gw_put_u64(q, (uint64_t)(uintptr_t)state);
    gw_put_u32(q, (uint32_t)type);
    gw_put_u64(q, size);
    gw_put_str(q, name);
    put_numeric_options(q, fn, n, opts, vals);
    gw_rep *r;
    rc = gw_req_call(q, &r);
    logs_for(r, state);
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
        gw_put_u64(q, (uint64_t)(uintptr_t)state);
        gw_put_u64(q, have);
        gw_rep *r;
        rc = gw_req_call(q, &r);
        logs_for(r, state);
        if (rc == CUDA_SUCCESS) {
            uint64_t t = gw_get_u64(r), n = gw_get_u64(r);
            const void *piece = gw_get_view(r, (size_t)n);
            rc = gw_rep_status(r, rc);
            if (rc == CUDA_SUCCESS && (!t || t > LINK_MAX_CUBIN || (have && t != total) || !n || n > t - have)) {
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
    gw_req *q = gw_req_begin(GW_OP_cuLinkDestroy);
    gw_put_u64(q, (uint64_t)(uintptr_t)state);
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
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
