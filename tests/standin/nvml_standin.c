/* TEST DOUBLE: gpuwire's CPU stand-in NVML, libgpuwire_standin_nvml.so. It
 * reports the CPU stand-in driver's fake devices (one, or GPUWIRE_STANDIN_DEVICES
 * of them, read at nvmlInit) as NVML would: in PCI bus order whatever
 * CUDA_VISIBLE_DEVICES says, each with the driver's name, UUID (cuDeviceGetUuid's
 * bytes as NVML spells them), PCI bus id (in NVML's 8-digit-domain form) and
 * memory size (tests/standin/device.c says how device p differs from device 0).
 * Every device lists the same running processes (below).
 * The running processes it lists are the calling process (the worker, which
 * holds the stand-in "GPU") and every other process of the same executable
 * (the server's other workers: other sessions, other tenants), as a shared
 * GPU lists them all. It also serves the slots of NVML's private export table
 * that gpuwire forwards (at the end). Functions it does not export are answered
 * NVML_ERROR_FUNCTION_NOT_FOUND by the worker. */
#define _GNU_SOURCE
#include <nvml.h>
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define SN_API __attribute__((visibility("default")))

#define SN_NAME "gpuwire CPU stand-in"
#define SN_UUID_STEM "GPU-67707577-6972-652d-7374-616e64696e" /* bytes "gpuwire-standin", then p + 1 */
#define SN_TOTAL_MEM (8ull << 30)                              /* device 0's: device p has p % 4 GiB less */
#define SN_MAX_DEVICES 16                                      /* the driver stand-in's SD_MAX_DEVICES */
#define SN_DRIVER_VERSION "580.0-standin"
#define SN_NVML_VERSION "13.580.0-standin"
#define SN_CUDA_VERSION 13000

static struct sn_device { int index; } devices[SN_MAX_DEVICES];
static unsigned ndevices = 1;
static int refcount;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int initialized(void)
{
    pthread_mutex_lock(&lock);
    int n = refcount;
    pthread_mutex_unlock(&lock);
    return n > 0;
}

static nvmlReturn_t check(nvmlDevice_t d)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    for (unsigned i = 0; i < ndevices; i++)
        if (d == (nvmlDevice_t)&devices[i])
            return NVML_SUCCESS;
    return NVML_ERROR_INVALID_ARGUMENT;
}

/* The index of a checked handle. */
static int index_of(nvmlDevice_t d) { return ((struct sn_device *)d)->index; }

static void uuid_of(int p, char out[48]) { snprintf(out, 48, "%s%02x", SN_UUID_STEM, p + 1); }
static void bus_of(int p, char *out, size_t n) { snprintf(out, n, "00000000:%02X:00.0", (unsigned)p & 0xffu); }
static void bus_legacy_of(int p, char *out, size_t n) { snprintf(out, n, "0000:%02X:00.0", (unsigned)p & 0xffu); }
static void serial_of(int p, char out[16]) { snprintf(out, 16, "%013d", p); }
static unsigned long long total_of(int p) { return SN_TOTAL_MEM - (unsigned long long)(p % 4) * (1ull << 30); }

static nvmlReturn_t copy_str(char *dst, unsigned int len, const char *src)
{
    if (!dst)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > len)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return NVML_SUCCESS;
}

/* ---- init ---- */

static nvmlReturn_t init(void)
{
    pthread_mutex_lock(&lock);
    if (refcount++ == 0) {
        const char *n = getenv("GPUWIRE_STANDIN_DEVICES");
        long v = n && *n ? strtol(n, NULL, 10) : 1;
        ndevices = v < 1 ? 1 : v > SN_MAX_DEVICES ? SN_MAX_DEVICES : (unsigned)v;
        for (unsigned i = 0; i < SN_MAX_DEVICES; i++)
            devices[i].index = (int)i;
    }
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

#undef nvmlInit
SN_API nvmlReturn_t nvmlInit(void) { return init(); }
SN_API nvmlReturn_t nvmlInit_v2(void) { return init(); }
SN_API nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void)flags; return init(); }

SN_API nvmlReturn_t nvmlShutdown(void)
{
    pthread_mutex_lock(&lock);
    nvmlReturn_t r = refcount > 0 ? (refcount--, NVML_SUCCESS) : NVML_ERROR_UNINITIALIZED;
    pthread_mutex_unlock(&lock);
    return r;
}

/* ---- system ---- */

SN_API nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    return initialized() ? copy_str(version, length, SN_DRIVER_VERSION) : NVML_ERROR_UNINITIALIZED;
}

SN_API nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
    return copy_str(version, length, SN_NVML_VERSION); /* works before init, as NVML's does */
}

SN_API nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v)
{
    if (!v)
        return NVML_ERROR_INVALID_ARGUMENT;
    *v = SN_CUDA_VERSION;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { return nvmlSystemGetCudaDriverVersion(v); }

SN_API nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char *name, unsigned int length)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!name || !length)
        return NVML_ERROR_INVALID_ARGUMENT;
    char path[64], comm[256] = "";
    snprintf(path, sizeof path, "/proc/%u/comm", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return NVML_ERROR_NOT_FOUND;
    if (!fgets(comm, sizeof comm, f))
        comm[0] = 0;
    fclose(f);
    comm[strcspn(comm, "\n")] = 0;
    snprintf(name, length, "%s", comm); /* NVML truncates */
    return NVML_SUCCESS;
}

/* ---- enumeration ---- */

SN_API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *count = ndevices;
    return NVML_SUCCESS;
}

#undef nvmlDeviceGetCount
SN_API nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

SN_API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *d)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!d || index >= ndevices)
        return NVML_ERROR_INVALID_ARGUMENT;
    *d = (nvmlDevice_t)&devices[index];
    return NVML_SUCCESS;
}

#undef nvmlDeviceGetHandleByIndex
SN_API nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *d)
{
    return nvmlDeviceGetHandleByIndex_v2(index, d);
}

enum { BY_UUID, BY_SERIAL, BY_BUS };

/* The device whose UUID, serial or PCI bus id (either form) is `key`. */
static nvmlReturn_t by_match(int how, const char *key, nvmlDevice_t *d)
{
    if (!key)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!d)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned p = 0; p < ndevices; p++) {
        char a[48], b[32];
        int hit;
        if (how == BY_UUID)
            uuid_of((int)p, a), hit = strcasecmp(key, a) == 0;
        else if (how == BY_SERIAL)
            serial_of((int)p, a), hit = strcmp(key, a) == 0;
        else
            bus_of((int)p, a, sizeof a), bus_legacy_of((int)p, b, sizeof b), hit = strcasecmp(key, a) == 0 || strcasecmp(key, b) == 0;
        if (hit) {
            *d = (nvmlDevice_t)&devices[p];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

SN_API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *d) { return by_match(BY_UUID, uuid, d); }

SN_API nvmlReturn_t nvmlDeviceGetHandleBySerial(const char *serial, nvmlDevice_t *d)
{
    return by_match(BY_SERIAL, serial, d);
}

SN_API nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *bus, nvmlDevice_t *d)
{
    return by_match(BY_BUS, bus, d);
}

#undef nvmlDeviceGetHandleByPciBusId
SN_API nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char *bus, nvmlDevice_t *d)
{
    return nvmlDeviceGetHandleByPciBusId_v2(bus, d);
}

/* ---- identity ---- */

SN_API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length)
{
    nvmlReturn_t r = check(d);
    if (r != NVML_SUCCESS)
        return r;
    char text[64];
    if (index_of(d) == 0)
        snprintf(text, sizeof text, "%s", SN_NAME);
    else
        snprintf(text, sizeof text, "%s %d", SN_NAME, index_of(d));
    return copy_str(name, length, text);
}

SN_API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int length)
{
    nvmlReturn_t r = check(d);
    char text[48];
    if (r == NVML_SUCCESS)
        uuid_of(index_of(d), text);
    return r == NVML_SUCCESS ? copy_str(uuid, length, text) : r;
}

SN_API nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t d, char *serial, unsigned int length)
{
    nvmlReturn_t r = check(d);
    char text[16];
    if (r == NVML_SUCCESS)
        serial_of(index_of(d), text);
    return r == NVML_SUCCESS ? copy_str(serial, length, text) : r;
}

#define UINT_GETTER(fn, value)                                    \
    SN_API nvmlReturn_t fn(nvmlDevice_t d, unsigned int *out)     \
    {                                                             \
        nvmlReturn_t r = check(d);                                \
        if (r == NVML_SUCCESS && !out)                            \
            r = NVML_ERROR_INVALID_ARGUMENT;                      \
        if (r == NVML_SUCCESS)                                    \
            *out = (value);                                       \
        return r;                                                 \
    }

UINT_GETTER(nvmlDeviceGetIndex, (unsigned)index_of(d))
UINT_GETTER(nvmlDeviceGetMinorNumber, (unsigned)index_of(d))
UINT_GETTER(nvmlDeviceGetArchitecture, NVML_DEVICE_ARCH_HOPPER)
UINT_GETTER(nvmlDeviceGetPowerUsage, 50000)              /* milliwatts */
UINT_GETTER(nvmlDeviceGetPowerManagementLimit, 700000)
UINT_GETTER(nvmlDeviceGetEnforcedPowerLimit, 700000)

SN_API nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t d, int *major, int *minor)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && (!major || !minor))
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS) {
        *major = 9;
        *minor = 0;
    }
    return r;
}

SN_API nvmlReturn_t nvmlDeviceGetBrand(nvmlDevice_t d, nvmlBrandType_t *type)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && !type)
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS)
        *type = NVML_BRAND_NVIDIA;
    return r;
}

/* ---- PCI ---- */

static nvmlReturn_t pci(nvmlDevice_t d, nvmlPciInfo_t *p)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && !p)
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r != NVML_SUCCESS)
        return r;
    memset(p, 0, sizeof *p);
    bus_legacy_of(index_of(d), p->busIdLegacy, sizeof p->busIdLegacy);
    bus_of(index_of(d), p->busId, sizeof p->busId);
    p->bus = (unsigned)index_of(d);
    p->pciDeviceId = 0x233010de; /* an H100's device and vendor ids */
    p->pciSubSystemId = 0x16c110de;
    return NVML_SUCCESS;
}

#undef nvmlDeviceGetPciInfo
SN_API nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t d, nvmlPciInfo_t *p) { return pci(d, p); }
SN_API nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t d, nvmlPciInfo_t *p) { return pci(d, p); }
SN_API nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *p) { return pci(d, p); }

/* ---- memory, utilization, thermals, clocks, modes ---- */

SN_API nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && !m)
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS) {
        m->total = total_of(index_of(d));
        m->used = 0;
        m->free = m->total;
    }
    return r;
}

SN_API nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && !m)
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS && m->version != nvmlMemory_v2)
        r = NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (r == NVML_SUCCESS) {
        m->total = total_of(index_of(d));
        m->reserved = 0;
        m->used = 0;
        m->free = m->total;
    }
    return r;
}

SN_API nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && !u)
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS)
        u->gpu = u->memory = 0;
    return r;
}

SN_API nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, nvmlTemperatureSensors_t sensor, unsigned int *t)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && (!t || sensor != NVML_TEMPERATURE_GPU))
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS)
        *t = 40;
    return r;
}

SN_API nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t d, nvmlTemperature_t *t)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && !t)
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS && t->version != nvmlTemperature_v1)
        r = NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (r == NVML_SUCCESS && t->sensorType != NVML_TEMPERATURE_GPU)
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS)
        t->temperature = 40;
    return r;
}

/* Odd devices are the slower ones (an H100 PCIe's boost clock), as the driver stand-in says. */
static unsigned int clock_mhz(nvmlClockType_t type, int max, int p)
{
    switch (type) {
    case NVML_CLOCK_GRAPHICS:
    case NVML_CLOCK_SM: return max && p % 2 == 0 ? 1980 : 1755;
    case NVML_CLOCK_MEM: return 2619;
    case NVML_CLOCK_VIDEO: return max ? 1545 : 1305;
    default: return 0;
    }
}

SN_API nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, nvmlClockType_t type, unsigned int *clock)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && (!clock || !clock_mhz(type, 0, 0)))
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS)
        *clock = clock_mhz(type, 0, index_of(d));
    return r;
}

SN_API nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t d, nvmlClockType_t type, unsigned int *clock)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && (!clock || !clock_mhz(type, 1, 0)))
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS)
        *clock = clock_mhz(type, 1, index_of(d));
    return r;
}

SN_API nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t d, nvmlComputeMode_t *mode)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && !mode)
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS)
        *mode = NVML_COMPUTEMODE_DEFAULT;
    return r;
}

SN_API nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t d, nvmlPstates_t *p)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && !p)
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS)
        *p = NVML_PSTATE_0;
    return r;
}

/* ---- processes: every process running the caller's executable holds the device ---- */

static int same_exe(const char *pid, const char *mine)
{
    char path[300], exe[PATH_MAX];
    snprintf(path, sizeof path, "/proc/%s/exe", pid);
    ssize_t k = readlink(path, exe, sizeof exe - 1); /* fails for other users' processes */
    if (k <= 0)
        return 0;
    exe[k] = 0;
    return !strcmp(exe, mine);
}

/* The caller first, then the others; at most `room` pids, the total returned. */
static unsigned holders(unsigned *pids, unsigned room)
{
    unsigned n = 0, self = (unsigned)getpid();
    if (room)
        pids[0] = self;
    n++;
    char mine[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", mine, sizeof mine - 1);
    DIR *d = k > 0 ? opendir("/proc") : NULL;
    if (!d)
        return n;
    mine[k] = 0;
    for (struct dirent *e; (e = readdir(d));) {
        char *end;
        unsigned long pid = strtoul(e->d_name, &end, 10);
        if (*end || !pid || pid == self || !same_exe(e->d_name, mine))
            continue;
        if (n < room)
            pids[n] = (unsigned)pid;
        n++;
    }
    closedir(d);
    return n;
}

static nvmlReturn_t processes(nvmlDevice_t d, unsigned int *count, void *infos, size_t size)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && !count)
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r != NVML_SUCCESS)
        return r;
    unsigned int have = *count, pids[1024];
    unsigned n = holders(pids, 1024);
    if (n > 1024)
        n = 1024;
    *count = n;
    if (have < n || !infos)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    for (unsigned i = 0; i < n; i++) {
        nvmlProcessInfo_t p;
        memset(&p, 0, sizeof p);
        p.pid = pids[i];
        p.usedGpuMemory = 0;
        p.gpuInstanceId = p.computeInstanceId = 0xFFFFFFFFu;
        memcpy((char *)infos + i * size, &p, size); /* v1 is a prefix of the later layouts */
    }
    return NVML_SUCCESS;
}

#undef nvmlDeviceGetComputeRunningProcesses
SN_API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_v1_t *i)
{
    return processes(d, n, i, sizeof *i);
}

SN_API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_v2_t *i)
{
    return processes(d, n, i, sizeof *i);
}

SN_API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_t *i)
{
    return processes(d, n, i, sizeof *i);
}

/* ---- NVML's private export table (docs/export-tables.md, "NVML's table") ----
 * The slots gpuwire's worker forwards, so the path is tested end to end: the
 * process lists (NVML_PROCESS_ENTRY_SIZE-byte entries: the device's holders
 * as above, the caller with SN_TABLE_PROC_MEM used, then pid 1, a process no
 * client owns, which the worker must filter out), the host's max PCIe
 * generation (SN_HOST_MAX_PCIE_GEN) and the sparse operation mode (not
 * supported). Every other word of the table is NULL. GPUWIRE_STANDIN_NVML_TABLE
 * plays an NVML without it: "absent" (no such table) or "short" (a size word
 * that ends before slot 230), for the worker's refusals. */

#define SN_TABLE_WORDS 256
#define SN_TABLE_ENTRY_SIZE 4128 /* u32 pid, u64 used @8, u32 GI @16, u32 CI @20, u64 CC @24, char name[4096] @32 */
#define SN_TABLE_PROC_MEM (64ull << 20)
#define SN_HOST_MAX_PCIE_GEN 5

static void table_entry(unsigned char *e, unsigned pid, unsigned long long used)
{
    memset(e, 0, SN_TABLE_ENTRY_SIZE);
    unsigned none = 0xFFFFFFFFu;
    memcpy(e, &pid, 4);
    memcpy(e + 8, &used, 8);
    memcpy(e + 16, &none, 4);
    memcpy(e + 20, &none, 4);
    char path[64];
    snprintf(path, sizeof path, "/proc/%u/exe", pid);
    ssize_t k = readlink(path, (char *)e + 32, 4095); /* empty for a process of another user */
    if (k < 0)
        e[32] = 0;
}

static nvmlReturn_t table_processes(nvmlDevice_t d, unsigned *count, unsigned char *entries)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && (!count || (*count && !entries)))
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r != NVML_SUCCESS)
        return r;
    unsigned pids[1024];
    unsigned n = holders(pids, 1023);
    if (n > 1023)
        n = 1023;
    pids[n++] = 1;
    unsigned have = *count;
    *count = n;
    if (have < n)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    for (unsigned i = 0; i < n; i++)
        table_entry(entries + (size_t)i * SN_TABLE_ENTRY_SIZE, pids[i], i == 0 ? SN_TABLE_PROC_MEM : 0);
    return NVML_SUCCESS;
}

static nvmlReturn_t table_host_max_pcie_gen(nvmlDevice_t d, unsigned *gen)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && !gen)
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS)
        *gen = SN_HOST_MAX_PCIE_GEN;
    return r;
}

static nvmlReturn_t table_sparse_mode(nvmlDevice_t d, unsigned *mode)
{
    (void)mode; /* never written, as by an NVML without the mode */
    nvmlReturn_t r = check(d);
    return r == NVML_SUCCESS ? NVML_ERROR_NOT_SUPPORTED : r;
}

static const void *sn_table[SN_TABLE_WORDS] = {
    [0] = (const void *)(uintptr_t)(SN_TABLE_WORDS * sizeof(void *)),
    [213] = (const void *)table_processes, [214] = (const void *)table_processes,
    [215] = (const void *)table_processes, [230] = (const void *)table_host_max_pcie_gen,
    [249] = (const void *)table_sparse_mode,
};

/* 6c3efec4-8fc9-4e6c-a327-ee696e12f7c4 as it lies in memory */
static const unsigned char sn_table_id[16] = {0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e,
                                              0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7, 0xc4};

/* The same words with a size that ends at slot 223, for GPUWIRE_STANDIN_NVML_TABLE=short. */
static const void *sn_short_table[SN_TABLE_WORDS];

SN_API nvmlReturn_t nvmlInternalGetExportTable(const void **out, const unsigned char *id)
{
    if (!out || !id)
        return NVML_ERROR_INVALID_ARGUMENT;
    const char *how = getenv("GPUWIRE_STANDIN_NVML_TABLE");
    if (memcmp(id, sn_table_id, sizeof sn_table_id) || (how && !strcmp(how, "absent"))) {
        *out = NULL;
        return NVML_ERROR_NOT_SUPPORTED;
    }
    if (how && !strcmp(how, "short")) {
        memcpy(sn_short_table, sn_table, sizeof sn_table);
        sn_short_table[0] = (const void *)(uintptr_t)(224 * sizeof(void *));
        *out = sn_short_table;
        return NVML_SUCCESS;
    }
    *out = sn_table;
    return NVML_SUCCESS;
}
