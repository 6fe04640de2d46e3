/* TEST DOUBLE: gpuwire CPU stand-in driver. JIT linking without a linker: an input is
 * checked for the shape of its type (a fat binary's or ELF cubin's magic, PTX text) and
 * copied; cuLinkComplete "links" by returning the first input's bytes, which the stand-in's
 * module loader accepts like any image. The log buffers of cuLinkCreate get one line per
 * input (info) and a line per refused input (error); their size options get the bytes
 * filled and CU_JIT_WALL_TIME 2.5 ms at cuLinkComplete and 0.5 ms more at cuLinkDestroy
 * (cuda.h: the outputs "accumulate data until the CUlinkState is destroyed"), written into
 * cuLinkCreate's arrays later, as the driver does. An input's own options get its lines too. */
#define _POSIX_C_SOURCE 200809L /* strnlen */
#include "standin.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SD_LINK_WALL_MS 2.5f
#define SD_DESTROY_WALL_MS 0.5f

typedef struct sd_link {
    sd_obj h;
    void *first;           /* the first input's bytes: the "linked" image */
    size_t first_size;
    unsigned inputs;
    float wall_ms;         /* accumulated */
    sd_jit_out out;        /* cuLinkCreate's outputs (its arrays outlive the call, as cuda.h requires) */
} sd_link;

/* ---- JIT outputs, shared with the module loader ---- */

CUresult sd_jit_scan(unsigned n, CUjit_option *opts, void **vals, sd_jit_out *o)
{
    memset(o, 0, sizeof *o);
    if (n && (!opts || !vals))
        return CUDA_ERROR_INVALID_VALUE;
    for (unsigned i = 0; i < n; i++) {
        if (opts[i] == CU_JIT_INFO_LOG_BUFFER)
            o->info = vals[i];
        else if (opts[i] == CU_JIT_ERROR_LOG_BUFFER)
            o->err = vals[i];
        else if (opts[i] == CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES)
            o->info_cap = (unsigned)(uintptr_t)vals[i], o->info_size = &vals[i];
        else if (opts[i] == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
            o->err_cap = (unsigned)(uintptr_t)vals[i], o->err_size = &vals[i];
        else if (opts[i] == CU_JIT_WALL_TIME)
            o->wall = &vals[i];
        else if ((unsigned)opts[i] >= (unsigned)CU_JIT_NUM_OPTIONS)
            return CUDA_ERROR_INVALID_VALUE;
    }
    if (o->info && o->info_cap)
        o->info[0] = 0;
    if (o->err && o->err_cap)
        o->err[0] = 0;
    return CUDA_SUCCESS;
}

void sd_jit_log(const sd_jit_out *o, int error, const char *fmt, ...)
{
    char *buf = error ? o->err : o->info;
    size_t cap = error ? o->err_cap : o->info_cap;
    if (!buf || !cap)
        return;
    size_t used = strnlen(buf, cap - 1);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, cap - used, fmt, ap);
    va_end(ap);
}

static void size_back(char *buf, size_t cap, void **slot)
{
    if (buf && cap && slot) {
        size_t n = strnlen(buf, cap);
        *slot = (void *)(uintptr_t)(n ? n + 1 : 0);
    }
}

void sd_jit_done(const sd_jit_out *o, float ms)
{
    size_back(o->info, o->info_cap, o->info_size);
    size_back(o->err, o->err_cap, o->err_size);
    if (o->wall)
        memcpy(o->wall, &ms, sizeof ms); /* "overwrites the option value": a float over the slot */
}

SD_API CUresult cuLinkCreate_v2(unsigned int n, CUjit_option *opts, void **vals, CUlinkState *out)
{
    if (!out || (n && (!opts || !vals)))
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    sd_link *l = NULL;
    if (r == CUDA_SUCCESS && (!(l = calloc(1, sizeof *l)) || (l->h.kind = SD_LINK, sd_obj_add(l)))) {
        free(l);
        l = NULL;
        r = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (l)
        r = sd_jit_scan(n, opts, vals, &l->out);
    if (l && r != CUDA_SUCCESS) {
        sd_obj_del(l);
        free(l);
    } else if (l) {
        *out = (CUlinkState)l;
    }
    sd_unlock();
    return r;
}

static int shaped_like(CUjitInputType type, const unsigned char *p, size_t n)
{
    switch (type) {
    case CU_JIT_INPUT_CUBIN:
        return n >= 4 && memcmp(p, "\177ELF", 4) == 0;
    case CU_JIT_INPUT_FATBINARY:
        return n >= 4 && p[0] == 0x50 && p[1] == 0xed && p[2] == 0x55 && p[3] == 0xba;
    case CU_JIT_INPUT_PTX:
        return memchr(p, 0, n) != NULL; /* NUL-terminated text */
    case CU_JIT_INPUT_OBJECT:
    case CU_JIT_INPUT_LIBRARY:
    case CU_JIT_INPUT_NVVM:
        return 1;
    default:
        return 0;
    }
}

SD_API CUresult cuLinkAddData_v2(CUlinkState state, CUjitInputType type, void *data, size_t size, const char *name,
                                 unsigned int n, CUjit_option *opts, void **vals)
{
    if (!data || !size || (n && (!opts || !vals)))
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(state, SD_LINK) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    sd_link *l = (sd_link *)state;
    sd_jit_out own;
    if (r == CUDA_SUCCESS)
        r = sd_jit_scan(n, opts, vals, &own);
    const char *what = name ? name : "(unnamed)";
    if (r == CUDA_SUCCESS && !shaped_like(type, data, size)) {
        sd_jit_log(&l->out, 1, "stand-in linker: %s is not an input of its type (%zu bytes)\n", what, size);
        sd_jit_log(&own, 1, "stand-in linker: %s is not an input of its type (%zu bytes)\n", what, size);
        r = CUDA_ERROR_INVALID_IMAGE;
    }
    if (r == CUDA_SUCCESS && !l->first) {
        if (!(l->first = malloc(size)))
            r = CUDA_ERROR_OUT_OF_MEMORY;
        else {
            memcpy(l->first, data, size);
            l->first_size = size;
        }
    }
    if (r == CUDA_SUCCESS) {
        l->inputs++;
        sd_jit_log(&l->out, 0, "stand-in linker: added %s (%zu bytes)\n", what, size);
        sd_jit_log(&own, 0, "stand-in linker: added %s (%zu bytes)\n", what, size);
    }
    if (r != CUDA_ERROR_INVALID_HANDLE) {
        sd_jit_done(&l->out, 0.0f);
        sd_jit_done(&own, 0.0f);
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuLinkComplete(CUlinkState state, void **cubin, size_t *size)
{
    if (!cubin)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(state, SD_LINK) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    sd_link *l = (sd_link *)state;
    if (r == CUDA_SUCCESS && !l->first) {
        sd_jit_log(&l->out, 1, "stand-in linker: nothing to link: 0 inputs\n");
        r = CUDA_ERROR_INVALID_VALUE;
    }
    if (r == CUDA_SUCCESS) {
        sd_jit_log(&l->out, 0, "stand-in linker: linked %u inputs\n", l->inputs);
        *cubin = l->first;
        if (size)
            *size = l->first_size;
    }
    if (r != CUDA_ERROR_INVALID_HANDLE)
        sd_jit_done(&l->out, l->wall_ms += SD_LINK_WALL_MS);
    sd_unlock();
    return r;
}

SD_API CUresult cuLinkDestroy(CUlinkState state)
{
    sd_lock();
    int live = sd_obj_live(state, SD_LINK);
    if (live) {
        sd_link *l = (sd_link *)state;
        sd_jit_done(&l->out, l->wall_ms += SD_DESTROY_WALL_MS);
        sd_obj_del(state);
    }
    sd_unlock();
    if (!live)
        return CUDA_ERROR_INVALID_HANDLE;
    free(((sd_link *)state)->first);
    free(state);
    return CUDA_SUCCESS;
}

/* The names older applications link against: same prototypes. */
#undef cuLinkCreate
#undef cuLinkAddData
SD_API CUresult cuLinkCreate(unsigned int n, CUjit_option *opts, void **vals, CUlinkState *out);
SD_API CUresult cuLinkAddData(CUlinkState state, CUjitInputType type, void *data, size_t size, const char *name,
                              unsigned int n, CUjit_option *opts, void **vals);

SD_API CUresult cuLinkCreate(unsigned int n, CUjit_option *opts, void **vals, CUlinkState *out)
{
    return cuLinkCreate_v2(n, opts, vals, out);
}

SD_API CUresult cuLinkAddData(CUlinkState state, CUjitInputType type, void *data, size_t size, const char *name,
                              unsigned int n, CUjit_option *opts, void **vals)
{
    return cuLinkAddData_v2(state, type, data, size, name, n, opts, vals);
}
