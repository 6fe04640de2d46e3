/* NVML in the worker, below the NVML handlers. The library is opened at the
 * first NVML request, so sessions that never ask cost nothing, and a server without NVML still
 * serves CUDA: its NVML requests are answered NVML_ERROR_LIBRARY_NOT_FOUND.
 * Only functions listed in codegen/nvml_annotations.txt have handlers: the
 * setters NVML also has are never reachable from a client. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvml_lib.h"

static const char *nvml_path = "libnvidia-ml.so.1";
static void *syms[GW_NVML_OP_COUNT];
static int loaded; /* 1 opened, -1 failed */
static pthread_once_t once = PTHREAD_ONCE_INIT;

void gw_nvml_set_path(const char *path) { nvml_path = path; }

/* ---- this client's own processes ----
 * NVML names and lists every process of the server; a client may learn only of
 * its own (issue 18, finding 8): this worker, and the other gpuwire workers that
 * serve the same client process (its NVML-only session and its CUDA session).
 * The server gives each worker `--client "PEER pid=P host=H prog=.."`: workers
 * of one client process have the same peer address (ports aside), pid and host.
 * Other pids are answered as NVML answers a pid it cannot see (NOT_FOUND: the
 * same whether the pid exists or not) and left out of process lists, much as
 * NVML inside a container with its own pid namespace shows only its processes. */

static char own_exe[PATH_MAX], own_id[1024];

static void exe_of(pid_t pid, char *out, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t k = readlink(path, out, n - 1); /* only for processes of this user */
    out[k > 0 ? k : 0] = 0;
    char *del = strstr(out, " (deleted)"); /* the worker binary was rebuilt meanwhile */
    if (del && !del[10])
        *del = 0;
}

static size_t field_len(const char *f) { return strcspn(f, " "); }

/* "PEERHOST pid=P host=H" from a worker's --client argument, or "" if it has none. */
static void client_id(pid_t pid, char *id, size_t n)
{
    char path[64], buf[16384];
    id[0] = 0;
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    const char *client = NULL;
    for (size_t i = 0; i < len && !client; i += strlen(buf + i) + 1)
        if (!strcmp(buf + i, "--client") && i + 9 < len)
            client = buf + i + 9;
    if (!client)
        return;
    size_t peer = field_len(client);
    const char *port = memrchr(client, ':', peer);
    const char *p = strstr(client, " pid="), *h = strstr(client, " host="); /* fields hold no spaces */
    if (!port || !p || !h)
        return;
    snprintf(id, n, "%.*s %.*s %.*s", (int)(port - client), client, (int)field_len(p + 1), p + 1,
             (int)field_len(h + 1), h + 1);
}

static int own_process(unsigned pid)
{
    if (pid == (unsigned)getpid())
        return 1;
    if (!own_id[0] || !own_exe[0] || pid == 0 || pid > INT_MAX)
        return 0;
    char exe[PATH_MAX], id[sizeof own_id];
    exe_of((pid_t)pid, exe, sizeof exe);
    if (strcmp(exe, own_exe))
        return 0; /* not a gpuwire worker (or not this user's) */
    client_id((pid_t)pid, id, sizeof id);
    return !strcmp(id, own_id);
}

typedef nvmlReturn_t (*name_fn)(unsigned, char *, unsigned);
typedef gw_nvml_list_fn list_fn;
static name_fn real_name;
static list_fn real_list[GW_NVML_OP_COUNT];

static nvmlReturn_t process_name(unsigned pid, char *name, unsigned length)
{
    if (name && length && !own_process(pid))
        return NVML_ERROR_NOT_FOUND; /* as for a pid that is gone: says nothing of whether it exists */
    return real_name(pid, name, length);
}

/* The device's list, filtered to this client's processes; NVML's count
 * conventions kept (INSUFFICIENT_SIZE with the count needed, SUCCESS with 0). */
nvmlReturn_t gw_nvml_own_list(gw_nvml_list_fn real, size_t elem, nvmlDevice_t dev, unsigned *count, void *infos)
{
    if (!count)
        return real(dev, count, infos);
    if (*count && !infos)
        return NVML_ERROR_INVALID_ARGUMENT; /* as NVML documents it */
    unsigned room = 32, got = 0;
    unsigned char *all = NULL;
    nvmlReturn_t r = NVML_ERROR_INSUFFICIENT_SIZE;
    for (int tries = 0; tries < 8 && r == NVML_ERROR_INSUFFICIENT_SIZE; tries++) {
        unsigned char *more = realloc(all, (size_t)room * elem);
        if (!more) {
            r = NVML_ERROR_MEMORY;
            break;
        }
        all = more;
        got = room;
        r = real(dev, &got, all);
        room = (got > room ? got : room) + 32; /* processes may start meanwhile */
    }
    if (r != NVML_SUCCESS) {
        free(all);
        return r == NVML_ERROR_INSUFFICIENT_SIZE ? NVML_ERROR_UNKNOWN : r;
    }
    unsigned kept = 0;
    for (unsigned i = 0; i < got; i++) {
        unsigned pid;
        memcpy(&pid, all + (size_t)i * elem, sizeof pid); /* pid leads every layout */
        if (own_process(pid))
            memmove(all + (size_t)kept++ * elem, all + (size_t)i * elem, elem);
    }
    unsigned have = *count;
    *count = kept;
    if (kept > have)
        r = NVML_ERROR_INSUFFICIENT_SIZE;
    else if (kept)
        memcpy(infos, all, (size_t)kept * elem);
    free(all);
    return r;
}

#define OWN_LIST(op, type)                                                                              \
    static nvmlReturn_t own_##op(nvmlDevice_t d, unsigned *n, void *i)                                  \
    {                                                                                                   \
        return gw_nvml_own_list(real_list[GW_NVML_OP_##op - GW_NVML_OP_FIRST], sizeof(type), d, n, i);   \
    }
OWN_LIST(nvmlDeviceGetComputeRunningProcesses, nvmlProcessInfo_v1_t)
OWN_LIST(nvmlDeviceGetComputeRunningProcesses_v2, nvmlProcessInfo_v2_t)
OWN_LIST(nvmlDeviceGetComputeRunningProcesses_v3, nvmlProcessInfo_t)
OWN_LIST(nvmlDeviceGetGraphicsRunningProcesses_v3, nvmlProcessInfo_t)
OWN_LIST(nvmlDeviceGetMPSComputeRunningProcesses_v3, nvmlProcessInfo_t)

static void install_process_filters(void)
{
    exe_of(getpid(), own_exe, sizeof own_exe);
    client_id(getpid(), own_id, sizeof own_id);
    struct { unsigned op; list_fn fn; } lists[] = {
        {GW_NVML_OP_nvmlDeviceGetComputeRunningProcesses, own_nvmlDeviceGetComputeRunningProcesses},
        {GW_NVML_OP_nvmlDeviceGetComputeRunningProcesses_v2, own_nvmlDeviceGetComputeRunningProcesses_v2},
        {GW_NVML_OP_nvmlDeviceGetComputeRunningProcesses_v3, own_nvmlDeviceGetComputeRunningProcesses_v3},
        {GW_NVML_OP_nvmlDeviceGetGraphicsRunningProcesses_v3, own_nvmlDeviceGetGraphicsRunningProcesses_v3},
        {GW_NVML_OP_nvmlDeviceGetMPSComputeRunningProcesses_v3, own_nvmlDeviceGetMPSComputeRunningProcesses_v3},
    };
    for (size_t k = 0; k < sizeof lists / sizeof lists[0]; k++) {
        unsigned i = lists[k].op - GW_NVML_OP_FIRST;
        real_list[i] = (list_fn)syms[i];
        if (syms[i]) /* one NVML lacks stays FUNCTION_NOT_FOUND */
            syms[i] = (void *)lists[k].fn;
    }
    unsigned i = GW_NVML_OP_nvmlSystemGetProcessName - GW_NVML_OP_FIRST;
    real_name = (name_fn)syms[i];
    if (syms[i])
        syms[i] = (void *)process_name;
}

static void *lib;

static void load(void)
{
    lib = dlopen(nvml_path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        gw_wlog("cannot load NVML %s: %s; NVML requests are answered NVML_ERROR_LIBRARY_NOT_FOUND", nvml_path,
                dlerror());
        loaded = -1;
        return;
    }
    for (unsigned i = 0; i < GW_NVML_OP_COUNT; i++)
        syms[i] = dlsym(lib, gw_nvml_op_names[i]);
    install_process_filters();
    loaded = 1;
    gw_wlog("loaded NVML %s", nvml_path);
}

void *gw_nvml_lib_sym(const char *name, int *no_library)
{
    pthread_once(&once, load);
    *no_library = loaded < 0;
    return loaded > 0 ? dlsym(lib, name) : NULL;
}

void gw_nvml_reply(gw_call *c, nvmlReturn_t res)
{
    gw_reply_result(c, CUDA_SUCCESS);
    gw_reply_u32(c, (uint32_t)res);
}

void *gw_nvml_fn(gw_call *c, unsigned op)
{
    pthread_once(&once, load);
    if (loaded < 0) {
        gw_nvml_reply(c, NVML_ERROR_LIBRARY_NOT_FOUND);
        return NULL;
    }
    void *f = gw_is_nvml_op(op) ? syms[op - GW_NVML_OP_FIRST] : NULL;
    if (!f) {
        static unsigned char told[GW_NVML_OP_COUNT];
        if (gw_is_nvml_op(op) && !told[op - GW_NVML_OP_FIRST]++)
            gw_wlog("NVML lacks %s: answering NVML_ERROR_FUNCTION_NOT_FOUND", gw_nvml_op_name(op));
        gw_nvml_reply(c, NVML_ERROR_FUNCTION_NOT_FOUND);
    }
    return f;
}
