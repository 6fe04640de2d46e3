/* The session's handle table. The client only ever sees ids; an id names one
 * real driver object of one type, so a forged or stale id is refused instead
 * of reaching the driver. */
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <unistd.h>

#include "../../common/idmap.h"
#include "core.h"

typedef struct entry {
    int type;
    void *real;
} entry;

#define FIRST_ID 0x10000ull

static gw_idmap by_id;                /* id -> entry */
static gw_idmap by_real[GW_HT_COUNT]; /* real pointer -> id, per type */
/* Ids start at a point fixed per server (its machine's boot id and its
 * pid): a client using several servers never gets the same id from two of
 * them (docs/multi-gpu.md), while every worker of one server counts alike,
 * as a forked client expects (it keeps its parent's primary contexts). */
static uint64_t next_id;

static uint64_t first_id(void)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)getppid(); /* FNV-1a over the boot id */
    char boot[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(boot, sizeof boot, f))
            boot[0] = 0;
        fclose(f);
    }
    for (const char *c = boot; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ull;
    h ^= h >> 29;
    return FIRST_ID + ((h & 0x0fffffffu) << 20); /* below 2^49: never CLIENT_ID_BIT */
}
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int compatible(int want, int have)
{
    /* cuLaunchKernel and friends take a CUkernel where a CUfunction is asked for */
    return want == have || (want == GW_HT_CUfunction && have == GW_HT_CUkernel);
}

void *gw_handle_real(int type, uint64_t id, int *found)
{
    *found = 1;
    if (id == 0)
        return NULL;
    if (type == GW_HT_CUstream && (id == (uint64_t)(uintptr_t)CU_STREAM_LEGACY ||
                                   id == (uint64_t)(uintptr_t)CU_STREAM_PER_THREAD))
        return (void *)(uintptr_t)id;
    pthread_mutex_lock(&lock);
    entry *e = gw_idmap_get(&by_id, id);
    void *real = e && compatible(type, e->type) ? e->real : NULL;
    *found = e && compatible(type, e->type);
    pthread_mutex_unlock(&lock);
    return real;
}

void *gw_handle_lookup(gw_call *c, int type, uint64_t id)
{
    int found;
    void *real = gw_handle_real(type, id, &found);
    if (!found && c->err == CUDA_SUCCESS) {
        c->err = type == GW_HT_CUcontext ? CUDA_ERROR_INVALID_CONTEXT : CUDA_ERROR_INVALID_HANDLE;
        gw_wlog("%s: unknown %s id 0x%llx", gw_op_name(c->h.op), gw_handle_type_names[type], (unsigned long long)id);
    }
    return real;
}

void *gw_in_handle(gw_call *c, int type)
{
    uint64_t id = gw_in_u64(c);
    return c->bad ? NULL : gw_handle_lookup(c, type, id);
}

uint64_t gw_handle_id(int type, void *real)
{
    if (!real)
        return 0;
    pthread_mutex_lock(&lock);
    if (!next_id)
        next_id = first_id();
    uint64_t id = (uint64_t)(uintptr_t)gw_idmap_get(&by_real[type], (uint64_t)(uintptr_t)real);
    if (!id) {
        entry *e = malloc(sizeof *e);
        if (e) {
            e->type = type;
            e->real = real;
            id = next_id;
            next_id += 8;
            if (gw_idmap_put(&by_id, id, e) || gw_idmap_put(&by_real[type], (uint64_t)(uintptr_t)real,
                                                            (void *)(uintptr_t)id)) {
                gw_idmap_del(&by_id, id);
                free(e);
                id = 0;
            }
        }
    }
    pthread_mutex_unlock(&lock);
    return id;
}

void gw_handle_forget(gw_call *c, int type, uint64_t id)
{
    (void)c;
    pthread_mutex_lock(&lock);
    entry *e = gw_idmap_get(&by_id, id);
    if (e && e->type == type) {
        gw_idmap_del(&by_id, id);
        gw_idmap_del(&by_real[type], (uint64_t)(uintptr_t)e->real);
        free(e);
    }
    pthread_mutex_unlock(&lock);
}

/* Bind an id the client chose (GW_CLIENT_ID_BIT set) to a new real handle.
 * A forged or reused id is a protocol violation. */
void gw_handle_bind(gw_call *c, int type, uint64_t id, void *real)
{
    if (!(id & GW_CLIENT_ID_BIT) || (id & 7) || !real) {
        gw_call_fail(c, "%s: client-named id 0x%llx is not in the client's id space", gw_op_name(c->h.op),
                     (unsigned long long)id);
        return;
    }
    pthread_mutex_lock(&lock);
    int taken = gw_idmap_get(&by_id, id) != NULL;
    entry *e = taken ? NULL : malloc(sizeof *e);
    if (e) {
        e->type = type;
        e->real = real;
        if (gw_idmap_put(&by_id, id, e)) {
            free(e);
            e = NULL;
        } else {
            gw_idmap_put(&by_real[type], (uint64_t)(uintptr_t)real, (void *)(uintptr_t)id);
        }
    }
    pthread_mutex_unlock(&lock);
    if (taken)
        gw_call_fail(c, "%s: client-named id 0x%llx is already in use", gw_op_name(c->h.op), (unsigned long long)id);
}
