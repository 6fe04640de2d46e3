/* TEST DOUBLE: gpuwire CPU stand-in driver. Kernel launches: the configuration is checked
 * against the device limits, the parameters (kernelParams or the packed `extra` buffer) are
 * gathered into one buffer laid out as on the GPU, and the kernel's host implementation runs
 * every thread at once, in order. A bad address in a kernel ends the launch and makes the
 * context's CUDA_ERROR_ILLEGAL_ADDRESS sticky, as a GPU fault does. */
#define _POSIX_C_SOURCE 200809L
#include "standin.h"

#include <time.h>

#include <stdlib.h>
#include <string.h>

#define EXTRA_MAX 16 /* entries scanned in an `extra` array before it is called malformed */

static CUresult check_config(const unsigned int g[3], const unsigned int b[3], unsigned int shmem, const sd_func *f)
{
    if (!g[0] || !g[1] || !g[2] || !b[0] || !b[1] || !b[2])
        return CUDA_ERROR_INVALID_VALUE;
    if (b[0] > 1024 || b[1] > 1024 || b[2] > 64)
        return CUDA_ERROR_INVALID_VALUE;
    if ((unsigned long long)b[0] * b[1] * b[2] > SD_MAX_THREADS)
        return CUDA_ERROR_INVALID_VALUE;
    if (g[0] > 2147483647u || g[1] > 65535u || g[2] > 65535u)
        return CUDA_ERROR_INVALID_VALUE;
    if (shmem > (unsigned int)f->max_dyn_shmem)
        return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

/* Packs the parameters into buf (SD_PARAM_BUF bytes). */
static CUresult gather(const sd_kernel_desc *d, void **params, void **extra, unsigned char *buf)
{
    size_t need = sd_params_size(d);
    if (need > SD_PARAM_BUF)
        return CUDA_ERROR_INVALID_VALUE;
    memset(buf, 0, SD_PARAM_BUF);
    if (params && extra)
        return CUDA_ERROR_INVALID_VALUE;
    if (params) {
        for (unsigned int i = 0; i < d->nparams; i++) {
            if (!params[i])
                return CUDA_ERROR_INVALID_VALUE;
            memcpy(buf + d->params[i].offset, params[i], d->params[i].size);
        }
        return CUDA_SUCCESS;
    }
    if (!extra)
        return d->nparams == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    const void *ptr = NULL;
    const size_t *size = NULL;
    for (int i = 0; i < EXTRA_MAX; i += 2) {
        if (extra[i] == CU_LAUNCH_PARAM_END) {
            if (!ptr || !size || *size < need)
                return CUDA_ERROR_INVALID_VALUE;
            memcpy(buf, ptr, need);
            return CUDA_SUCCESS;
        }
        if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER)
            ptr = extra[i + 1];
        else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE)
            size = extra[i + 1];
        else
            return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_ERROR_INVALID_VALUE; /* no CU_LAUNCH_PARAM_END */
}

/* Runs every thread of the grid; stops at the first fault. Lock held. */
static int run(const sd_ctx *c, const sd_kernel_desc *d, const unsigned int g[3], const unsigned int b[3],
               const unsigned char *buf)
{
    sd_exec x;
    memset(&x, 0, sizeof x);
    x.ctx = c;
    x.desc = d;
    x.params = buf;
    memcpy(x.grid, g, sizeof x.grid);
    memcpy(x.block, b, sizeof x.block);
    for (x.bid[2] = 0; x.bid[2] < g[2]; x.bid[2]++)
        for (x.bid[1] = 0; x.bid[1] < g[1]; x.bid[1]++)
            for (x.bid[0] = 0; x.bid[0] < g[0]; x.bid[0]++)
                for (x.tid[2] = 0; x.tid[2] < b[2]; x.tid[2]++)
                    for (x.tid[1] = 0; x.tid[1] < b[1]; x.tid[1]++)
                        for (x.tid[0] = 0; x.tid[0] < b[0]; x.tid[0]++) {
                            d->thread(&x);
                            if (x.fault)
                                return 1;
                        }
    return 0;
}

/* A cooperative grid must be resident all at once: at most what the SMs hold. */
static CUresult check_cooperative(const unsigned int g[3], const unsigned int b[3], unsigned int shmem,
                                  const sd_func *f)
{
    unsigned long long blocks = (unsigned long long)g[0] * g[1] * g[2];
    int per_sm = sd_blocks_per_sm(f, (int)(b[0] * b[1] * b[2]), shmem);
    return blocks > (unsigned long long)per_sm * SD_SM_COUNT ? CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE
                                                            : CUDA_SUCCESS;
}

static CUresult launch(CUfunction f, const unsigned int g[3], const unsigned int b[3], unsigned int shmem,
                       CUstream s, void **params, void **extra, int cooperative)
{
    static unsigned char buf[SD_PARAM_BUF]; /* guarded by the global lock */
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_stream_check(s, &c);
    sd_func *fn = NULL;
    if (r == CUDA_SUCCESS && !(fn = sd_func_check(f)))
        r = CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        fn->unloaded = 0; /* a launch loads a lazily loaded function */
    if (r == CUDA_SUCCESS)
        r = check_config(g, b, shmem, fn);
    if (r == CUDA_SUCCESS && cooperative)
        r = check_cooperative(g, b, shmem, fn);
    if (r == CUDA_SUCCESS)
        r = gather(fn->desc, params, extra, buf);
    if (r == CUDA_SUCCESS && !strcmp(fn->desc->name, "_Z8gw_sleepi")) {
        /* long GPU work: booked, not run; synchronizations wait for it (sd_wait_busy) */
        int32_t ms;
        memcpy(&ms, buf, 4);
        const char *cap = getenv("GPUWIRE_STANDIN_SLEEP_CAP_MS"); /* the fuzz harness bounds it */
        if (cap && ms > atoi(cap))
            ms = atoi(cap);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double t = now.tv_sec + now.tv_nsec * 1e-9;
        c->busy_until = (c->busy_until > t ? c->busy_until : t) + (ms > 0 ? ms : 0) / 1000.0;
    } else if (r == CUDA_SUCCESS && !fn->desc->thread) {
        r = CUDA_ERROR_NOT_SUPPORTED; /* a library's own kernel (foreign.c): no host implementation */
    } else if (r == CUDA_SUCCESS && run(c, fn->desc, g, b, buf)) {
        sd_ctx_fault(c, CUDA_ERROR_ILLEGAL_ADDRESS); /* the launch itself succeeded */
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                               unsigned int by, unsigned int bz, unsigned int shmem, CUstream s, void **params,
                               void **extra)
{
    const unsigned int g[3] = {gx, gy, gz}, b[3] = {bx, by, bz};
    return launch(f, g, b, shmem, s, params, extra, 0);
}

SD_API CUresult cuLaunchKernelEx(const CUlaunchConfig *cfg, CUfunction f, void **params, void **extra)
{
    if (!cfg || (cfg->numAttrs && !cfg->attrs))
        return CUDA_ERROR_INVALID_VALUE;
    int cooperative = 0;
    for (unsigned int i = 0; i < cfg->numAttrs; i++)
        if (cfg->attrs[i].id == CU_LAUNCH_ATTRIBUTE_COOPERATIVE)
            cooperative = cfg->attrs[i].value.cooperative != 0;
    const unsigned int g[3] = {cfg->gridDimX, cfg->gridDimY, cfg->gridDimZ};
    const unsigned int b[3] = {cfg->blockDimX, cfg->blockDimY, cfg->blockDimZ};
    return launch(f, g, b, cfg->sharedMemBytes, cfg->hStream, params, extra, cooperative);
}

/* Threads run one after another, so a kernel that waits on the whole grid
 * (grid.sync()) cannot run here; the project's kernels do not. */
SD_API CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                          unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem,
                                          CUstream s, void **params)
{
    const unsigned int g[3] = {gx, gy, gz}, b[3] = {bx, by, bz};
    return launch(f, g, b, shmem, s, params, NULL, 1);
}
