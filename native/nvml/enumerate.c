/* NVML's device list over several gpuwire servers (servers.c): init and
 * shutdown reach every server; the count is the sum of theirs; index i is
 * server 0's devices first, then server 1's, each server's in its own NVML
 * order (PCI bus order), as the CUDA device list is joined (docs/multi-gpu.md);
 * a handle looked up by UUID, serial or PCI bus id is the first server's
 * that knows it. With one server each wrapper is the generated forwarder. */
#include <pthread.h>

#include "nvml_client.h"

typedef nvmlReturn_t (*count_fn)(unsigned int *);
typedef nvmlReturn_t (*by_index_fn)(unsigned int, nvmlDevice_t *);
typedef nvmlReturn_t (*by_text_fn)(const char *, nvmlDevice_t *);

/* Server k's device count into *n. */
static nvmlReturn_t count_on(int k, count_fn fn, unsigned *n)
{
    int prev = gw_nvml_route_enter(k);
    nvmlReturn_t res = fn(n);
    gw_nvml_route_leave(prev);
    return res;
}

/* Server k's count as the joined indices use it: asked once per init (NVML's
 * device count does not change while it is initialised), so an index costs
 * one round trip, not one per server. */
static pthread_mutex_t counts_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned counts[GW_NVML_SERVERS_MAX];
static unsigned counts_known; /* bit k: counts[k] holds server k's */

static nvmlReturn_t index_count(int k, unsigned *n)
{
    pthread_mutex_lock(&counts_lock);
    int known = (counts_known >> k) & 1u;
    *n = counts[k];
    pthread_mutex_unlock(&counts_lock);
    if (known)
        return NVML_SUCCESS;
    nvmlReturn_t res = count_on(k, gwf_nvmlDeviceGetCount_v2, n);
    if (res == NVML_SUCCESS) {
        pthread_mutex_lock(&counts_lock);
        counts[k] = *n;
        counts_known |= 1u << k;
        pthread_mutex_unlock(&counts_lock);
    }
    return res;
}

static void forget_counts(void)
{
    pthread_mutex_lock(&counts_lock);
    counts_known = 0;
    pthread_mutex_unlock(&counts_lock);
}

/* Every server in turn; the first failure is the answer (a server that is
 * down makes NVML as unusable as a missing driver would). */
static nvmlReturn_t on_each(nvmlReturn_t (*fn)(void))
{
    nvmlReturn_t res = NVML_SUCCESS;
    for (int k = 0; k < gw_nvml_servers() && res == NVML_SUCCESS; k++) {
        int prev = gw_nvml_route_enter(k);
        res = fn();
        gw_nvml_route_leave(prev);
    }
    return res;
}

static nvmlReturn_t init_legacy(void) { return gwf_nvmlInit(); }
static nvmlReturn_t init_v2(void) { return gwf_nvmlInit_v2(); }
static unsigned init_flags;
static nvmlReturn_t init_with_flags(void) { return gwf_nvmlInitWithFlags(init_flags); }

nvmlReturn_t gw_nvml_init_all(int variant, unsigned int flags)
{
    forget_counts();
    if (variant == 2) {
        init_flags = flags; /* one init at a time in practice; the flags are the same for every server */
        return on_each(init_with_flags);
    }
    return on_each(variant == 1 ? init_v2 : init_legacy);
}

#undef nvmlShutdown
nvmlReturn_t DECLDIR nvmlShutdown(void)
{
    /* every server's count goes down; server 0's answer is NVML's (UNINITIALIZED when never initialised) */
    forget_counts();
    nvmlReturn_t first = gwf_nvmlShutdown();
    for (int k = 1; k < gw_nvml_servers(); k++) {
        int prev = gw_nvml_route_enter(k);
        (void)gwf_nvmlShutdown();
        gw_nvml_route_leave(prev);
    }
    return first;
}

static nvmlReturn_t joined_count(count_fn fn, unsigned int *deviceCount)
{
    if (gw_nvml_servers() == 1 || !deviceCount)
        return fn(deviceCount);
    unsigned total = 0;
    for (int k = 0; k < gw_nvml_servers(); k++) {
        unsigned n = 0;
        nvmlReturn_t res = count_on(k, fn, &n);
        if (res != NVML_SUCCESS)
            return res;
        total += n;
    }
    *deviceCount = total;
    return NVML_SUCCESS;
}

#undef nvmlDeviceGetCount
nvmlReturn_t DECLDIR nvmlDeviceGetCount(unsigned int *deviceCount)
{
    return joined_count(gwf_nvmlDeviceGetCount, deviceCount);
}

#undef nvmlDeviceGetCount_v2
nvmlReturn_t DECLDIR nvmlDeviceGetCount_v2(unsigned int *deviceCount)
{
    return joined_count(gwf_nvmlDeviceGetCount_v2, deviceCount);
}

/* The server of joined index i and its index there; NVML_ERROR_INVALID_ARGUMENT past the end. */
static nvmlReturn_t locate(unsigned i, int *server, unsigned *local)
{
    for (int k = 0; k < gw_nvml_servers(); k++) {
        unsigned n = 0;
        nvmlReturn_t res = index_count(k, &n);
        if (res != NVML_SUCCESS)
            return res;
        if (i < n) {
            *server = k, *local = i;
            return NVML_SUCCESS;
        }
        i -= n;
    }
    return NVML_ERROR_INVALID_ARGUMENT; /* as NVML answers an index past its count */
}

static nvmlReturn_t joined_by_index(by_index_fn fn, unsigned int index, nvmlDevice_t *device)
{
    if (gw_nvml_servers() == 1)
        return fn(index, device);
    int k;
    unsigned local;
    nvmlReturn_t res = locate(index, &k, &local);
    if (res != NVML_SUCCESS)
        return res;
    int prev = gw_nvml_route_enter(k);
    res = fn(local, device); /* the handle comes back carrying k (gw_get_handles) */
    gw_nvml_route_leave(prev);
    return res;
}

#undef nvmlDeviceGetHandleByIndex
nvmlReturn_t DECLDIR nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device)
{
    return joined_by_index(gwf_nvmlDeviceGetHandleByIndex, index, device);
}

#undef nvmlDeviceGetHandleByIndex_v2
nvmlReturn_t DECLDIR nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    return joined_by_index(gwf_nvmlDeviceGetHandleByIndex_v2, index, device);
}

/* The first server whose NVML finds it; NOT_FOUND only if none does. */
static nvmlReturn_t joined_by_text(by_text_fn fn, const char *text, nvmlDevice_t *device)
{
    if (gw_nvml_servers() == 1)
        return fn(text, device);
    nvmlReturn_t res = NVML_ERROR_NOT_FOUND;
    for (int k = 0; k < gw_nvml_servers(); k++) {
        int prev = gw_nvml_route_enter(k);
        res = fn(text, device);
        gw_nvml_route_leave(prev);
        if (res != NVML_ERROR_NOT_FOUND)
            return res; /* found, or a verdict on the text itself (INVALID_ARGUMENT) */
    }
    return res;
}

#undef nvmlDeviceGetHandleByUUID
nvmlReturn_t DECLDIR nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    return joined_by_text(gwf_nvmlDeviceGetHandleByUUID, uuid, device);
}

#undef nvmlDeviceGetHandleBySerial
nvmlReturn_t DECLDIR nvmlDeviceGetHandleBySerial(const char *serial, nvmlDevice_t *device)
{
    return joined_by_text(gwf_nvmlDeviceGetHandleBySerial, serial, device);
}

#undef nvmlDeviceGetHandleByPciBusId
nvmlReturn_t DECLDIR nvmlDeviceGetHandleByPciBusId(const char *pciBusId, nvmlDevice_t *device)
{
    return joined_by_text(gwf_nvmlDeviceGetHandleByPciBusId, pciBusId, device);
}

#undef nvmlDeviceGetHandleByPciBusId_v2
nvmlReturn_t DECLDIR nvmlDeviceGetHandleByPciBusId_v2(const char *pciBusId, nvmlDevice_t *device)
{
    return joined_by_text(gwf_nvmlDeviceGetHandleByPciBusId_v2, pciBusId, device);
}

/* The server's index, plus the devices of the servers before it. */
#undef nvmlDeviceGetIndex
nvmlReturn_t DECLDIR nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    nvmlReturn_t res = gwf_nvmlDeviceGetIndex(device, index);
    int k = gw_nvml_handle_server((uint64_t)(uintptr_t)device);
    if (res != NVML_SUCCESS || !index || gw_nvml_servers() == 1 || k >= gw_nvml_servers())
        return res;
    for (int before = 0; before < k; before++) {
        unsigned n = 0;
        res = index_count(before, &n);
        if (res != NVML_SUCCESS)
            return res;
        *index += n;
    }
    return NVML_SUCCESS;
}

__attribute__((constructor)) static void enumerate_init(void)
{
    pthread_atfork(NULL, NULL, forget_counts); /* a child's sessions are new ones */
}
