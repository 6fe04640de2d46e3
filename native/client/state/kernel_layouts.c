/* Kernel parameter layouts: the offsets and sizes of a function's
 * parameters (from its module's information, else asked of the worker once
 * per function), and the application's arguments packed into that layout,
 * as launches and graph kernel nodes send them. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/idmap.h"
#include "state.h"

#define MAX_PARAM_BYTES GW_MAX_PARAM_BYTES

typedef gw_layout layout;

static gw_idmap layouts;
static pthread_mutex_t layouts_lock = PTHREAD_MUTEX_INITIALIZER;

static const uint32_t *sizes_of(const layout *l) { return l->off + l->n; }

/* Layouts are not freed here: a launch on another thread may hold one. It
 * only happens if a layout read from a cubin proved wrong (state/modules.c). */
void gw_layouts_forget(void)
{
    pthread_mutex_lock(&layouts_lock);
    gw_idmap_clear(&layouts, NULL);
    pthread_mutex_unlock(&layouts_lock);
}

/* The parameter layout of a function or kernel, fetched once. */
CUresult gw_layout_of(CUfunction f, const gw_layout **out)
{
    uint64_t id = (uint64_t)(uintptr_t)f;
    pthread_mutex_lock(&layouts_lock);
    layout *l = gw_idmap_get(&layouts, id);
    pthread_mutex_unlock(&layouts_lock);
    if (l) {
        *out = l;
        return CUDA_SUCCESS;
    }
    if (!f)
        return CUDA_ERROR_INVALID_HANDLE;
    /* the function's module information, sent by the worker after the load */
    uint32_t n, maxt;
    uint32_t *pairs;
    if (gw_function_layout(id, &n, &pairs, &maxt)) {
        l = malloc(sizeof *l + 2 * sizeof(uint32_t) * n);
        if (!l) {
            free(pairs);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        l->n = n;
        l->total = 0;
        l->max_threads = maxt;
        for (uint32_t i = 0; i < n; i++) {
            l->off[i] = pairs[2 * i];
            l->off[n + i] = pairs[2 * i + 1];
            uint64_t end = (uint64_t)pairs[2 * i] + pairs[2 * i + 1];
            if (end > MAX_PARAM_BYTES) {
                free(l);
                free(pairs);
                return CUDA_ERROR_UNKNOWN;
            }
            if (end > l->total)
                l->total = (uint32_t)end;
        }
        free(pairs);
        goto cache;
    }
    gw_req *q = gw_req_begin_quiet(GW_OP_FUNC_LAYOUT);
    gw_put_fields(q, gw_func_layout_req, {.function = id});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        gw_func_layout_rep rep = {0};
        gw_get_fields(r, gw_func_layout_rep, &rep); /* short: n stays 0, and the status below says so */
        uint32_t n = rep.n;
        l = n <= MAX_PARAM_BYTES ? malloc(sizeof *l + 2 * sizeof(uint32_t) * n) : NULL;
        if (!l) {
            rc = CUDA_ERROR_UNKNOWN;
        } else {
            l->n = n;
            l->total = 0;
            for (uint32_t i = 0; i < n; i++) { /* the list's items */
                gw_func_layout_rep_item it = {0};
                const void *wire = gw_get_view(r, GW_FUNC_LAYOUT_REP_ITEM_SIZE);
                if (wire) /* short: zeros, and the status below says so */
                    gw_func_layout_rep_item_get(wire, GW_FUNC_LAYOUT_REP_ITEM_SIZE, &it);
                l->off[i] = it.offset;
                l->off[n + i] = it.size;
                uint64_t end = (uint64_t)l->off[i] + l->off[n + i];
                if (end > MAX_PARAM_BYTES)
                    rc = CUDA_ERROR_UNKNOWN;
                else if (end > l->total)
                    l->total = (uint32_t)end;
            }
            l->max_threads = gw_get_u32(r);
            rc = gw_rep_status(r, rc);
            if (rc != CUDA_SUCCESS) {
                free(l);
                l = NULL;
            }
        }
    }
    gw_rep_end(r);
    if (rc != CUDA_SUCCESS)
        return rc;
cache:
    pthread_mutex_lock(&layouts_lock);
    layout *old = gw_idmap_get(&layouts, id);
    if (old) {
        free(l);
        l = old;
    } else if (gw_idmap_put(&layouts, id, l)) {
        pthread_mutex_unlock(&layouts_lock);
        free(l);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    pthread_mutex_unlock(&layouts_lock);
    *out = l;
    return CUDA_SUCCESS;
}

/* Pack the arguments into buf (MAX_PARAM_BYTES): from kernelParams (one
 * pointer per parameter) or from the `extra` buffer, which already is the
 * parameter buffer. */
CUresult gw_layout_pack(const gw_layout *l, void **kernelParams, void **extra, uint8_t *buf, uint32_t *nbytes)
{
    if (kernelParams) {
        memset(buf, 0, l->total);
        for (uint32_t i = 0; i < l->n; i++) {
            if (!kernelParams[i])
                return CUDA_ERROR_INVALID_VALUE;
            memcpy(buf + l->off[i], kernelParams[i], sizes_of(l)[i]);
        }
        *nbytes = l->total;
        return CUDA_SUCCESS;
    }
    if (extra) {
        const void *pbuf = NULL;
        size_t size = 0;
        int have_size = 0;
        for (unsigned i = 0; extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
            if (i > 64)
                return CUDA_ERROR_INVALID_VALUE;
            if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER)
                pbuf = extra[i + 1];
            else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE && extra[i + 1]) {
                size = *(const size_t *)extra[i + 1];
                have_size = 1;
            } else
                return CUDA_ERROR_INVALID_VALUE;
        }
        if (!pbuf || !have_size || size < l->total || size > MAX_PARAM_BYTES)
            return CUDA_ERROR_INVALID_VALUE;
        memcpy(buf, pbuf, l->total);
        *nbytes = l->total;
        return CUDA_SUCCESS;
    }
    if (l->n)
        return CUDA_ERROR_INVALID_VALUE;
    *nbytes = 0;
    return CUDA_SUCCESS;
}

/* For graph kernel nodes (api/graph_nodes.c): as a launch packs them. */
CUresult gw_pack_args(CUfunction f, void **kernelParams, void **extra, uint8_t *buf, uint32_t *nbytes)
{
    if (kernelParams && extra)
        return CUDA_ERROR_INVALID_VALUE;
    const layout *l;
    CUresult rc = gw_layout_of(f, &l);
    if (rc != CUDA_SUCCESS)
        return rc;
    rc = gw_layout_pack(l, kernelParams, extra, buf, nbytes);
    if (rc == CUDA_SUCCESS) /* a graph's kernel dereferences them at each launch (arg_pointers.c) */
        gw_args_map_pinned(l, buf, *nbytes);
    return rc;
}
