/* TEST DOUBLE: gpuwire CPU stand-in driver. JIT linking without a linker: an input is
 * checked for the shape of its type (a fat binary's or ELF cubin's magic, PTX text) and
 * copied; cuLinkComplete "links" by returning the first input's bytes, which the stand-in's
 * module loader accepts like any image. The log buffers of cuLinkCreate get one line per
 * input (info) and a line per refused input (error). */
#include "standin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sd_link {
    sd_obj h;
    void *first;           /* the first input's bytes: the "linked" image */
    size_t first_size;
    unsigned inputs;
    char *info, *err;      /* the caller's log buffers (NULL: none) */
    size_t info_cap, err_cap;
} sd_link;

static void log_line(char *buf, size_t cap, const char *fmt, const char *name, size_t n)
{
    if (!buf || !cap)
        return;
    size_t used = 0;
    while (used < cap - 1 && buf[used])
        used++;
    snprintf(buf + used, cap - used, fmt, name, n);
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
    for (unsigned i = 0; l && i < n; i++) {
        if (opts[i] == CU_JIT_INFO_LOG_BUFFER)
            l->info = vals[i];
        else if (opts[i] == CU_JIT_ERROR_LOG_BUFFER)
            l->err = vals[i];
        else if (opts[i] == CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES)
            l->info_cap = (unsigned)(uintptr_t)vals[i];
        else if (opts[i] == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
            l->err_cap = (unsigned)(uintptr_t)vals[i];
        else if ((unsigned)opts[i] >= (unsigned)CU_JIT_NUM_OPTIONS)
            r = CUDA_ERROR_INVALID_VALUE;
    }
    if (l && r != CUDA_SUCCESS) {
        sd_obj_del(l);
        free(l);
    } else if (l) {
        if (l->info && l->info_cap)
            l->info[0] = 0;
        if (l->err && l->err_cap)
            l->err[0] = 0;
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
    if (r == CUDA_SUCCESS && !shaped_like(type, data, size)) {
        log_line(l->err, l->err_cap, "stand-in linker: %s is not an input of its type (%zu bytes)\n",
                 name ? name : "(unnamed)", size);
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
        log_line(l->info, l->info_cap, "stand-in linker: added %s (%zu bytes)\n", name ? name : "(unnamed)", size);
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
        log_line(l->err, l->err_cap, "stand-in linker: %s%zu inputs\n", "nothing to link: ", (size_t)0);
        r = CUDA_ERROR_INVALID_VALUE;
    }
    if (r == CUDA_SUCCESS) {
        log_line(l->info, l->info_cap, "stand-in linker: %slinked %zu inputs\n", "", l->inputs);
        *cubin = l->first;
        if (size)
            *size = l->first_size;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuLinkDestroy(CUlinkState state)
{
    sd_lock();
    int live = sd_obj_live(state, SD_LINK);
    if (live)
        sd_obj_del(state);
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
