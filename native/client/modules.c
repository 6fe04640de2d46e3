/* Module and library loading: the image's bytes go to the worker's staging
 * buffer in posted chunks, then one call loads them there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

CUresult gw_stage_upload(const void *data, size_t size)
{
    const uint8_t *p = data;
    size_t off = 0;
    do {
        size_t len = size - off < GW_COPY_CHUNK ? size - off : GW_COPY_CHUNK;
        gw_req *q = gw_req_begin_quiet(GW_OP_STAGE);
        gw_put_u64(q, off);
        gw_put_u64(q, size);
        gw_put_raw(q, p + off, len);
        CUresult rc = gw_req_post(q);
        if (rc != CUDA_SUCCESS)
            return rc;
        off += len;
    } while (off < size);
    return CUDA_SUCCESS;
}

/* JIT options whose value is a plain number travel; log buffers stay behind
 * (the log is not remoted: its size options read back 0). */
static int jit_option_travels(CUjit_option o)
{
    switch (o) {
    case CU_JIT_MAX_REGISTERS:
    case CU_JIT_THREADS_PER_BLOCK:
    case CU_JIT_OPTIMIZATION_LEVEL:
    case CU_JIT_TARGET_FROM_CUCONTEXT:
    case CU_JIT_TARGET:
    case CU_JIT_FALLBACK_STRATEGY:
    case CU_JIT_GENERATE_DEBUG_INFO:
    case CU_JIT_LOG_VERBOSE:
    case CU_JIT_GENERATE_LINE_INFO:
    case CU_JIT_CACHE_MODE:
    case CU_JIT_POSITION_INDEPENDENT_CODE:
    case CU_JIT_MIN_CTA_PER_SM:
    case CU_JIT_MAX_THREADS_PER_BLOCK:
    case CU_JIT_OVERRIDE_DIRECTIVE_VALUES:
        return 1;
    default:
        return 0;
    }
}

static void put_jit_options(gw_req *q, unsigned n, CUjit_option *opts, void **vals)
{
    unsigned keep = 0;
    for (unsigned i = 0; opts && vals && i < n; i++)
        keep += jit_option_travels(opts[i]);
    gw_put_u32(q, keep);
    for (unsigned i = 0; opts && vals && i < n; i++) {
        if (jit_option_travels(opts[i])) {
            gw_put_u32(q, (uint32_t)opts[i]);
            gw_put_u64(q, (uint64_t)(uintptr_t)vals[i]);
        } else if (opts[i] == CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES || opts[i] == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES) {
            vals[i] = NULL;
        }
    }
}

static void put_library_options(gw_req *q, unsigned n, CUlibraryOption *opts, void **vals)
{
    unsigned keep = 0;
    for (unsigned i = 0; opts && vals && i < n; i++)
        keep += opts[i] == CU_LIBRARY_BINARY_IS_PRESERVED;
    gw_put_u32(q, keep);
    for (unsigned i = 0; opts && vals && i < n; i++)
        if (opts[i] == CU_LIBRARY_BINARY_IS_PRESERVED) {
            gw_put_u32(q, (uint32_t)opts[i]);
            gw_put_u64(q, (uint64_t)(uintptr_t)vals[i]);
        }
}

/* Stage the image, then ask for the load; the reply carries the new handle. */
static CUresult load(unsigned op_counted, unsigned op, void **handle, const void *image, unsigned njit, CUjit_option *jo, void **jv,
                     unsigned nlib, CUlibraryOption *lo, void **lv)
{
    gw_stat_call(op_counted);
    if (!handle || !image)
        return CUDA_ERROR_INVALID_VALUE;
    if (!gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    image = gw_image_unwrap(image);
    size_t size = gw_image_size(image);
    if (!size)
        return CUDA_ERROR_INVALID_IMAGE;
    CUresult rc = gw_stage_upload(image, size);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin_quiet(op);
    gw_req_set_flags(q, GW_F_COLLECT);
    gw_put_u64(q, size);
    put_jit_options(q, njit, jo, jv);
    put_library_options(q, nlib, lo, lv);
    gw_rep *r;
    rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        gw_get_handles(r, handle, 1);
        rc = gw_rep_status(r, rc);
    }
    gw_rep_end(r);
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
