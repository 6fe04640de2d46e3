/* Asynchronous device-to-host copies into pinned memory, without a wait: the
 * copy is posted (GW_OP_LAND) and its bytes arrive later as GW_OP_LANDED
 * frames, which the worker sends before the reply of any call that could see
 * the copy done (docs/protocol.md). The reply reader writes them straight into
 * the application's buffer. A copy made during a stream capture lands again at
 * every replay of its graph, so its record stays until its memory is freed. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "env.h"

typedef struct landing {
    struct landing *next;
    uint64_t id;
    uint8_t *dst;
    uint64_t n, got;
    int persistent;
} landing;

static landing *landings; /* under lock */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ullong next_id = 1;

int gw_landings_on(void)
{
    static int on = -1;
    if (on < 0) {
        int v = 1;
        gw_env_bool("GPUWIRE_LANDINGS", "using the default, on", &v);
        on = v;
    }
    return on;
}

/* Bytes of copies posted and not landed yet: past this the next copy first
 * synchronizes (reading what landed), so the server never holds more than the
 * half of its budget a well-behaved client may use (worker/landings.c). */
#define PENDING_MAX ((uint64_t)4 << 30)

static uint64_t pending_bytes; /* under lock: what non-persistent landings still await */

CUresult gw_land(int ptsz, void *dst, CUdeviceptr src, size_t n, CUstream s)
{
    pthread_mutex_lock(&lock);
    int over = pending_bytes + n > PENDING_MAX;
    pthread_mutex_unlock(&lock);
    if (over) {
        CUresult rc = cuCtxSynchronize();
        if (rc != CUDA_SUCCESS)
            return rc;
    }
    landing *l = malloc(sizeof *l);
    if (!l)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *l = (landing){.id = atomic_fetch_add(&next_id, 1), .dst = dst, .n = n, .persistent = gw_captures_active()};
    pthread_mutex_lock(&lock);
    l->next = landings;
    landings = l;
    if (!l->persistent)
        pending_bytes += n;
    pthread_mutex_unlock(&lock);
    gw_req *q = gw_req_begin(GW_OP_LAND);
    gw_put_u64(q, l->id);
    gw_put_u64(q, src);
    gw_put_u64(q, n);
    gw_put_u64(q, (uint64_t)(uintptr_t)s);
    gw_put_u32(q, ptsz ? 1u : 0u);
    CUresult rc = gw_req_post(q);
    if (rc == CUDA_SUCCESS)
        gw_stat_landing(n, 0);
    if (rc != CUDA_SUCCESS) {
        uint64_t id = l->id;
        pthread_mutex_lock(&lock);
        for (landing **pp = &landings; *pp; pp = &(*pp)->next)
            if ((*pp)->id == id) {
                landing *dead = *pp;
                *pp = dead->next;
                if (!dead->persistent)
                    pending_bytes -= dead->n - dead->got;
                free(dead);
                break;
            }
        pthread_mutex_unlock(&lock);
    }
    return rc;
}

void *gw_landing_target(uint64_t id, uint64_t off, uint64_t len)
{
    void *dst = NULL;
    pthread_mutex_lock(&lock);
    for (landing *l = landings; l; l = l->next)
        if (l->id == id) {
            if (off <= l->n && len <= l->n - off) /* only inside the copy it asked for */
                dst = l->dst + off;
            break;
        }
    pthread_mutex_unlock(&lock);
    return dst;
}

void gw_landed(uint64_t id, uint64_t len)
{
    pthread_mutex_lock(&lock);
    for (landing **pp = &landings; *pp; pp = &(*pp)->next) {
        landing *l = *pp;
        if (l->id != id)
            continue;
        l->got += len;
        if (!l->persistent)
            pending_bytes -= len;
        if (l->got >= l->n) {
            if (l->persistent) {
                l->got = 0; /* the next replay lands it again */
            } else {
                *pp = l->next;
                free(l);
            }
        }
        break;
    }
    pthread_mutex_unlock(&lock);
}

void gw_landings_forget(uint64_t base, uint64_t size)
{
    /* copies still on their way into this memory arrive first, as freeing pinned
     * memory waits for the GPU natively: the reader then never writes into it */
    gw_landings_settle(base, size);
    pthread_mutex_lock(&lock);
    for (landing **pp = &landings; *pp;) {
        landing *l = *pp;
        uint64_t a = (uint64_t)(uintptr_t)l->dst;
        if (a >= base && a - base < size) {
            *pp = l->next;
            if (!l->persistent)
                pending_bytes -= l->n - l->got;
            free(l);
        } else {
            pp = &l->next;
        }
    }
    pthread_mutex_unlock(&lock);
}

int gw_landings_pending_in(uint64_t addr, uint64_t n)
{
    int pending = 0;
    pthread_mutex_lock(&lock);
    for (landing *l = pending_bytes ? landings : NULL; l && !pending; l = l->next) {
        uint64_t a = (uint64_t)(uintptr_t)l->dst;
        pending = !l->persistent && a < addr + n && addr < a + l->n;
    }
    pthread_mutex_unlock(&lock);
    return pending;
}

CUresult gw_landings_settle(uint64_t addr, uint64_t n)
{
    /* the application may send these bytes on in stream order, after the copy that
     * lands them: natively the GPU reads them after that copy wrote them */
    if (!gw_landings_pending_in(addr, n))
        return CUDA_SUCCESS;
    gw_stat_landing(0, 1);
    return cuCtxSynchronize(); /* its reply comes after every landing queued before it */
}
