/* TEST DOUBLE: gpuwire CPU stand-in driver. The global lock, cuInit, versions, and the
 * live-object table that every handle arriving from the network is checked against. */
#define _GNU_SOURCE
#include "standin.h"

#include <pthread.h>
#include <stdlib.h>

static pthread_mutex_t g_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static int g_init;

void sd_lock(void) { pthread_mutex_lock(&g_lock); }
void sd_unlock(void) { pthread_mutex_unlock(&g_lock); }
int sd_initialized(void) { return g_init; }

/* Live objects: an open-addressing hash set keyed by address (handles come from the
 * network, so lookups must never dereference an unknown pointer). */
static void **g_set;
static size_t g_cap, g_used; /* g_used counts live entries and tombstones */
#define TOMB ((void *)1)

static size_t slot_of(const void *p, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)p;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (size_t)h & (cap - 1);
}

static int grow(void)
{
    size_t ncap = g_cap ? g_cap * 2 : 256;
    void **n = calloc(ncap, sizeof *n);
    if (!n)
        return -1;
    size_t used = 0;
    for (size_t i = 0; i < g_cap; i++) {
        void *p = g_set[i];
        if (!p || p == TOMB)
            continue;
        size_t j = slot_of(p, ncap);
        while (n[j])
            j = (j + 1) & (ncap - 1);
        n[j] = p;
        used++;
    }
    free(g_set);
    g_set = n;
    g_cap = ncap;
    g_used = used;
    return 0;
}

int sd_obj_add(void *obj)
{
    if ((g_used + 1) * 2 > g_cap && grow() != 0)
        return -1;
    size_t j = slot_of(obj, g_cap);
    while (g_set[j] && g_set[j] != TOMB)
        j = (j + 1) & (g_cap - 1);
    if (!g_set[j])
        g_used++;
    g_set[j] = obj;
    return 0;
}

static size_t find_slot(const void *p)
{
    if (!g_cap || !p || p == TOMB)
        return (size_t)-1;
    size_t j = slot_of(p, g_cap);
    for (size_t n = 0; n < g_cap && g_set[j]; n++) {
        if (g_set[j] == p)
            return j;
        j = (j + 1) & (g_cap - 1);
    }
    return (size_t)-1;
}

void sd_obj_del(void *obj)
{
    size_t j = find_slot(obj);
    if (j != (size_t)-1)
        g_set[j] = TOMB;
}

int sd_obj_live(const void *h, int kind)
{
    if (find_slot(h) == (size_t)-1)
        return 0;
    return ((const sd_obj *)h)->kind == kind; /* only read once h is known to be ours */
}

void sd_obj_each(int kind, void (*fn)(void *obj, void *arg), void *arg)
{
    for (size_t i = 0; i < g_cap; i++) {
        void *p = g_set[i];
        if (p && p != TOMB && ((sd_obj *)p)->kind == kind)
            fn(p, arg);
    }
}

unsigned long long sd_next_id(void)
{
    static unsigned long long next = 1;
    return next++;
}

SD_API CUresult cuInit(unsigned int flags)
{
    if (flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    if (!g_init)
        sd_devices_setup(); /* read once, as the driver reads its environment once */
    CUresult r = sd_dev_count() > 0 ? CUDA_SUCCESS : CUDA_ERROR_NO_DEVICE;
    if (r == CUDA_SUCCESS)
        g_init = 1;
    sd_unlock();
    return r;
}

SD_API CUresult cuDriverGetVersion(int *version)
{
    if (!version)
        return CUDA_ERROR_INVALID_VALUE;
    *version = SD_DRIVER_VERSION;
    return CUDA_SUCCESS;
}
