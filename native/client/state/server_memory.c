/* Several servers (docs/multi-gpu.md): which server each device allocation
 * the client saw made is on, so a copy goes to the server its memory is on
 * and a copy between two servers' memory is staged through the client
 * (api/cross_server.c). Two machines' GPUs may hand out the same address,
 * and kernel arguments carry raw addresses, so an allocation that overlaps
 * one of another server is refused (cuMemAlloc) rather than let one address
 * name two buffers. Used only with several servers: with one, nothing here
 * runs. */
#include <pthread.h>
#include <stdlib.h>

#include "state.h"

typedef struct range {
    uint64_t base, size;
    int server;
    CUcontext ctx; /* current where it was made: a staged copy reads and writes it there */
} range;

static range *ranges; /* sorted by base */
static size_t n_ranges, cap_ranges;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* first index with base > addr */
static size_t upper(uint64_t addr)
{
    size_t lo = 0, hi = n_ranges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ranges[mid].base <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* whether [base, base + size) overlaps a range of a server other than `server` (lock held) */
static int clashes_locked(uint64_t base, uint64_t size, int server)
{
    size_t i = upper(base);
    for (size_t j = i; j > 0 && ranges[j - 1].base + ranges[j - 1].size > base; j--) /* ranges never nest */
        if (ranges[j - 1].server != server)
            return 1;
    for (size_t j = i; j < n_ranges && ranges[j].base < base + size; j++)
        if (ranges[j].server != server)
            return 1;
    return 0;
}

int gw_server_memory_clashes(uint64_t base, uint64_t size, int server)
{
    if (gw_servers_n <= 1)
        return 0;
    pthread_mutex_lock(&lock);
    int c = clashes_locked(base, size, server);
    pthread_mutex_unlock(&lock);
    return c;
}

int gw_server_memory_add(uint64_t base, uint64_t size, int server)
{
    if (gw_servers_n <= 1 || !base || !size)
        return 0;
    pthread_mutex_lock(&lock);
    size_t i = upper(base);
    int clash = clashes_locked(base, size, server);
    if (!clash && n_ranges == cap_ranges) {
        size_t cap = cap_ranges ? cap_ranges * 2 : 256;
        range *r = realloc(ranges, cap * sizeof *r);
        if (r)
            ranges = r, cap_ranges = cap;
    }
    if (!clash && n_ranges < cap_ranges) {
        for (size_t j = n_ranges; j > i; j--)
            ranges[j] = ranges[j - 1];
        ranges[i] = (range){base, size, server, gw_current_context()};
        n_ranges++;
    }
    pthread_mutex_unlock(&lock);
    return clash ? -1 : 0;
}

void gw_server_memory_remove(uint64_t base)
{
    if (gw_servers_n <= 1)
        return;
    pthread_mutex_lock(&lock);
    size_t i = upper(base);
    if (i > 0 && ranges[i - 1].base == base) {
        for (size_t j = i - 1; j + 1 < n_ranges; j++)
            ranges[j] = ranges[j + 1];
        n_ranges--;
    }
    pthread_mutex_unlock(&lock);
}

int gw_server_of_address(uint64_t addr)
{
    if (gw_servers_n <= 1)
        return 0;
    pthread_mutex_lock(&lock);
    size_t i = upper(addr);
    int k = i > 0 && addr - ranges[i - 1].base < ranges[i - 1].size ? ranges[i - 1].server : -1;
    pthread_mutex_unlock(&lock);
    return k;
}

CUcontext gw_server_memory_context(uint64_t addr)
{
    if (gw_servers_n <= 1)
        return NULL;
    pthread_mutex_lock(&lock);
    size_t i = upper(addr);
    CUcontext c = i > 0 && addr - ranges[i - 1].base < ranges[i - 1].size ? ranges[i - 1].ctx : NULL;
    pthread_mutex_unlock(&lock);
    return c;
}

__attribute__((constructor)) static void server_memory_init(void) { gw_set_address_fn(gw_server_of_address); }

/* A call on memory of server k from a thread whose current context is
 * another server's: it goes to k (gw_route_enter), with the memory's own
 * context made current there for its time, as a driver with unified
 * addressing needs none of the caller's. Returns what gw_memory_server_leave
 * takes back. With one server: nothing. */
int gw_memory_server_enter(uint64_t addr, CUcontext *pushed)
{
    *pushed = NULL;
    if (gw_servers_n <= 1)
        return -1;
    int k = gw_server_of_address(addr);
    if (k >= 0 && k != gw_route_now()) {
        CUcontext c = gw_server_memory_context(addr);
        if (c && cuCtxPushCurrent_v2(c) == CUDA_SUCCESS)
            *pushed = c;
    }
    return gw_route_enter(k);
}

void gw_memory_server_leave(int prev, CUcontext pushed)
{
    if (pushed) {
        CUcontext popped;
        cuCtxPopCurrent_v2(&popped);
    }
    gw_route_leave(prev);
}
