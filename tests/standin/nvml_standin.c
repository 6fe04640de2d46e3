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

#include "../../native/nvml/nvml_extra.h" /* what the pinned nvml.h lacks */

#define SN_API __attribute__((visibility("default")))

#define SN_NAME "gpuwire CPU stand-in"
#define SN_UUID_STEM "GPU-67707577-6972-652d-7374-616e6469" /* bytes "gpuwire-standi", 'n', then p + 1 */
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

/* GPUWIRE_STANDIN_MACHINE=1..9 (tests of several servers): byte 14 is 'n' + the
 * digit, as the driver stand-in's UUIDs (device.c), so two servers' GPUs differ */
static unsigned machine_of(void)
{
    const char *m = getenv("GPUWIRE_STANDIN_MACHINE");
    return m && m[0] >= '1' && m[0] <= '9' && !m[1] ? (unsigned)(m[0] - '0') : 0;
}
static void uuid_of(int p, char out[48]) { snprintf(out, 48, "%s%02x%02x", SN_UUID_STEM, 0x6eu + machine_of(), p + 1); }
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

/* ---- what stock nvidia-smi -q reads (issue 14) ----
 * Fixed values, each distinct so a test sees it arrive; versioned structs
 * check their version as NVML does. Some answer as an H100 does natively:
 * NOT_SUPPORTED (auto boost, driver model) or a refusal (InforomVersion of
 * the power object). */

#define SN_INFOROM_IMAGE "G520.0200.00.05"
#define SN_GSP_FIRMWARE "580.0-standin-gsp"
#define SN_RETIRED_PAGES 3 /* double-bit retired pages; none for single-bit */
#define SN_PDI 0x5354414e44494e31ull /* "STANDIN1" */

/* The usual checks of a getter with one output pointer. */
#define SN_CHECK_OUT(d, out)                                      \
    nvmlReturn_t r = check(d);                                    \
    if (r == NVML_SUCCESS && !(out))                              \
        r = NVML_ERROR_INVALID_ARGUMENT;                          \
    if (r != NVML_SUCCESS)                                        \
        return r

/* ... and of a versioned struct. */
#define SN_CHECK_VERSIONED(d, out, ver)                           \
    SN_CHECK_OUT(d, out);                                         \
    if ((out)->version != (ver))                                  \
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH

#define SN_VALUE_GETTER(fn, type, value)                          \
    SN_API nvmlReturn_t fn(nvmlDevice_t d, type *out)             \
    {                                                             \
        SN_CHECK_OUT(d, out);                                     \
        *out = (value);                                           \
        return NVML_SUCCESS;                                      \
    }

UINT_GETTER(nvmlDeviceGetBoardId, 0x600u + (unsigned)index_of(d))
UINT_GETTER(nvmlDeviceGetModuleId, 1u + (unsigned)index_of(d))
UINT_GETTER(nvmlDeviceGetAccountingBufferSize, 4000)
UINT_GETTER(nvmlDeviceGetGpuMaxPcieLinkGeneration, 5)
UINT_GETTER(nvmlDeviceGetPcieReplayCounter, 3)
SN_VALUE_GETTER(nvmlDeviceGetAccountingMode, nvmlEnableState_t, NVML_FEATURE_DISABLED)
SN_VALUE_GETTER(nvmlDeviceGetRetiredPagesPendingStatus, nvmlEnableState_t, NVML_FEATURE_ENABLED)
SN_VALUE_GETTER(nvmlDeviceGetVirtualizationMode, nvmlGpuVirtualizationMode_t, NVML_GPU_VIRTUALIZATION_MODE_NONE)
SN_VALUE_GETTER(nvmlDeviceGetHostVgpuMode, nvmlHostVgpuMode_t, NVML_HOST_VGPU_MODE_SRIOV)
SN_VALUE_GETTER(nvmlDeviceGetCurrentClocksThrottleReasons, unsigned long long, nvmlClocksThrottleReasonGpuIdle)
SN_VALUE_GETTER(nvmlDeviceGetSupportedClocksThrottleReasons, unsigned long long, nvmlClocksThrottleReasonAll)

SN_API nvmlReturn_t nvmlDeviceValidateInforom(nvmlDevice_t d) { return check(d); }

SN_API nvmlReturn_t nvmlDeviceGetInforomImageVersion(nvmlDevice_t d, char *version, unsigned int length)
{
    nvmlReturn_t r = check(d);
    return r == NVML_SUCCESS ? copy_str(version, length, SN_INFOROM_IMAGE) : r;
}

SN_API nvmlReturn_t nvmlDeviceGetInforomVersion(nvmlDevice_t d, nvmlInforomObject_t object, char *version,
                                                unsigned int length)
{
    nvmlReturn_t r = check(d);
    if (r != NVML_SUCCESS)
        return r;
    switch (object) {
    case NVML_INFOROM_OEM: return copy_str(version, length, "2.1");
    case NVML_INFOROM_ECC: return copy_str(version, length, "7.16");
    case NVML_INFOROM_POWER: return NVML_ERROR_NOT_SUPPORTED;
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
}

/* No length: the caller's buffer holds NVML_GSP_FIRMWARE_VERSION_BUF_SIZE bytes. */
SN_API nvmlReturn_t nvmlDeviceGetGspFirmwareVersion(nvmlDevice_t d, char *version)
{
    nvmlReturn_t r = check(d);
    return r == NVML_SUCCESS ? copy_str(version, NVML_GSP_FIRMWARE_VERSION_BUF_SIZE, SN_GSP_FIRMWARE) : r;
}

SN_API nvmlReturn_t nvmlDeviceGetLastBBXFlushTime(nvmlDevice_t d, unsigned long long *timestamp,
                                                  unsigned long *durationUs)
{
    SN_CHECK_OUT(d, timestamp && durationUs);
    *timestamp = 1765000000000000ull;
    *durationUs = 1234;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetBridgeChipInfo(nvmlDevice_t d, nvmlBridgeChipHierarchy_t *h)
{
    SN_CHECK_OUT(d, h);
    memset(h, 0, sizeof *h);
    h->bridgeCount = 1;
    h->bridgeChipInfo[0].type = NVML_BRIDGE_CHIP_BRO4;
    h->bridgeChipInfo[0].fwVersion = 0x01020304;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetPdi(nvmlDevice_t d, nvmlPdi_t *pdi)
{
    SN_CHECK_VERSIONED(d, pdi, nvmlPdi_v1);
    pdi->value = SN_PDI + (unsigned)index_of(d);
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetCapabilities(nvmlDevice_t d, nvmlDeviceCapabilities_t *caps)
{
    SN_CHECK_VERSIONED(d, caps, nvmlDeviceCapabilities_v1);
    caps->capMask = NVML_DEV_CAP_EGM;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetAddressingMode(nvmlDevice_t d, nvmlDeviceAddressingMode_t *mode)
{
    SN_CHECK_VERSIONED(d, mode, nvmlDeviceAddressingMode_v1);
    mode->value = NVML_DEVICE_ADDRESSING_MODE_HMM;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetC2cModeInfoV(nvmlDevice_t d, nvmlC2cModeInfo_v1_t *info)
{
    SN_CHECK_OUT(d, info);
    info->isC2cEnabled = 0;
    return NVML_SUCCESS;
}

/* v2 and v3 (v3 adds healthSummary at the end): as NVML, an older caller gets the older layout. */
SN_API nvmlReturn_t nvmlDeviceGetGpuFabricInfoV(nvmlDevice_t d, nvmlGpuFabricInfoV_t *info)
{
    SN_CHECK_OUT(d, info);
    if (info->version != nvmlGpuFabricInfo_v3 && info->version != nvmlGpuFabricInfo_v2)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    memset(info->clusterUuid, 0xab, sizeof info->clusterUuid);
    info->status = NVML_SUCCESS;
    info->cliqueId = 7;
    info->state = NVML_GPU_FABRIC_STATE_COMPLETED;
    info->healthMask = 0;
    if (info->version == nvmlGpuFabricInfo_v3)
        info->healthSummary = NVML_GPU_FABRIC_HEALTH_SUMMARY_HEALTHY;
    return NVML_SUCCESS;
}

/* Windows only: as on Linux natively. */
SN_API nvmlReturn_t nvmlDeviceGetDriverModel_v2(nvmlDevice_t d, nvmlDriverModel_t *current, nvmlDriverModel_t *pending)
{
    (void)current, (void)pending;
    nvmlReturn_t r = check(d);
    return r == NVML_SUCCESS ? NVML_ERROR_NOT_SUPPORTED : r;
}

SN_API nvmlReturn_t nvmlDeviceGetAutoBoostedClocksEnabled(nvmlDevice_t d, nvmlEnableState_t *isEnabled,
                                                          nvmlEnableState_t *defaultIsEnabled)
{
    (void)isEnabled, (void)defaultIsEnabled;
    nvmlReturn_t r = check(d);
    return r == NVML_SUCCESS ? NVML_ERROR_NOT_SUPPORTED : r;
}

SN_API nvmlReturn_t nvmlDeviceGetGpuOperationMode(nvmlDevice_t d, nvmlGpuOperationMode_t *current,
                                                  nvmlGpuOperationMode_t *pending)
{
    SN_CHECK_OUT(d, current && pending);
    *current = NVML_GOM_ALL_ON;
    *pending = NVML_GOM_COMPUTE;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetVgpuHeterogeneousMode(nvmlDevice_t d, nvmlVgpuHeterogeneousMode_t *mode)
{
    SN_CHECK_VERSIONED(d, mode, nvmlVgpuHeterogeneousMode_v1);
    mode->mode = 1;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetGridLicensableFeatures_v4(nvmlDevice_t d, nvmlGridLicensableFeatures_t *f)
{
    SN_CHECK_OUT(d, f);
    memset(f, 0, sizeof *f);
    f->isGridLicenseSupported = 1;
    f->licensableFeaturesCount = 1;
    f->gridLicensableFeatures[0].featureCode = NVML_GRID_LICENSE_FEATURE_CODE_COMPUTE;
    snprintf(f->gridLicensableFeatures[0].productName, sizeof f->gridLicensableFeatures[0].productName,
             "standin compute");
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetDramEncryptionMode(nvmlDevice_t d, nvmlDramEncryptionInfo_t *current,
                                                    nvmlDramEncryptionInfo_t *pending)
{
    SN_CHECK_OUT(d, current && pending);
    if (current->version != nvmlDramEncryptionInfo_v1 || pending->version != nvmlDramEncryptionInfo_v1)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    current->encryptionState = NVML_FEATURE_DISABLED;
    pending->encryptionState = NVML_FEATURE_ENABLED;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceWorkloadPowerProfileGetCurrentProfiles(nvmlDevice_t d,
                                                                     nvmlWorkloadPowerProfileCurrentProfiles_t *p)
{
    SN_CHECK_VERSIONED(d, p, nvmlWorkloadPowerProfileCurrentProfiles_v1);
    memset(&p->perfProfilesMask, 0, sizeof p->perfProfilesMask);
    memset(&p->requestedProfilesMask, 0, sizeof p->requestedProfilesMask);
    memset(&p->enforcedProfilesMask, 0, sizeof p->enforcedProfilesMask);
    p->perfProfilesMask.mask[0] = 0x5;
    p->requestedProfilesMask.mask[0] = 0x4;
    p->enforcedProfilesMask.mask[0] = 0x4;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetMarginTemperature(nvmlDevice_t d, nvmlMarginTemperature_t *m)
{
    SN_CHECK_VERSIONED(d, m, nvmlMarginTemperature_v1);
    m->marginTemperature = 47;
    return NVML_SUCCESS;
}

/* Engine utilization: percent and sampling period (microseconds). */
#define SN_UTIL_GETTER(fn, percent)                                                       \
    SN_API nvmlReturn_t fn(nvmlDevice_t d, unsigned int *utilization, unsigned int *period) \
    {                                                                                     \
        SN_CHECK_OUT(d, utilization && period);                                           \
        *utilization = (percent);                                                         \
        *period = 167000;                                                                 \
        return NVML_SUCCESS;                                                              \
    }
SN_UTIL_GETTER(nvmlDeviceGetEncoderUtilization, 3)
SN_UTIL_GETTER(nvmlDeviceGetDecoderUtilization, 4)
SN_UTIL_GETTER(nvmlDeviceGetJpgUtilization, 5)
SN_UTIL_GETTER(nvmlDeviceGetOfaUtilization, 6)

SN_API nvmlReturn_t nvmlDeviceGetEncoderStats(nvmlDevice_t d, unsigned int *sessionCount, unsigned int *averageFps,
                                              unsigned int *averageLatency)
{
    SN_CHECK_OUT(d, sessionCount && averageFps && averageLatency);
    *sessionCount = 2;
    *averageFps = 60;
    *averageLatency = 500;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetFBCStats(nvmlDevice_t d, nvmlFBCStats_t *stats)
{
    SN_CHECK_OUT(d, stats);
    stats->sessionsCount = 1;
    stats->averageFPS = 24;
    stats->averageLatency = 250;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetConfComputeProtectedMemoryUsage(nvmlDevice_t d, nvmlMemory_t *m)
{
    SN_CHECK_OUT(d, m);
    m->total = 1ull << 30;
    m->used = 1ull << 20;
    m->free = m->total - m->used;
    return NVML_SUCCESS;
}

/* Each field answers fieldId * 1000 + scopeId (field 0 is refused, in its entry). */
SN_API nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t d, int valuesCount, nvmlFieldValue_t *values)
{
    SN_CHECK_OUT(d, values || valuesCount == 0);
    if (valuesCount < 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (int i = 0; i < valuesCount; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = 1765000000000000ll;
        v->latencyUsec = 0;
        v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
        v->nvmlReturn = v->fieldId ? NVML_SUCCESS : NVML_ERROR_INVALID_ARGUMENT;
        v->value.ullVal = v->fieldId ? (unsigned long long)v->fieldId * 1000u + v->scopeId : 0;
    }
    return NVML_SUCCESS;
}

/* ---- ECC, retired pages, row remapping, repair ---- */

SN_API nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t d, nvmlMemoryErrorType_t errorType,
                                                nvmlEccCounterType_t counterType, unsigned long long *counts)
{
    SN_CHECK_OUT(d, counts);
    if ((unsigned)errorType >= NVML_MEMORY_ERROR_TYPE_COUNT || (unsigned)counterType >= NVML_ECC_COUNTER_TYPE_COUNT)
        return NVML_ERROR_INVALID_ARGUMENT;
    *counts = 10u * (unsigned)errorType + (unsigned)counterType + 1u;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetMemoryErrorCounter(nvmlDevice_t d, nvmlMemoryErrorType_t errorType,
                                                    nvmlEccCounterType_t counterType,
                                                    nvmlMemoryLocation_t locationType, unsigned long long *count)
{
    SN_CHECK_OUT(d, count);
    if ((unsigned)errorType >= NVML_MEMORY_ERROR_TYPE_COUNT || (unsigned)counterType >= NVML_ECC_COUNTER_TYPE_COUNT ||
        (unsigned)locationType >= NVML_MEMORY_LOCATION_COUNT)
        return NVML_ERROR_INVALID_ARGUMENT;
    *count = 100u * (unsigned)errorType + 10u * (unsigned)counterType + (unsigned)locationType;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetSramEccErrorStatus(nvmlDevice_t d, nvmlEccSramErrorStatus_t *st)
{
    SN_CHECK_VERSIONED(d, st, nvmlEccSramErrorStatus_v1);
    unsigned version = st->version;
    memset(st, 0, sizeof *st);
    st->version = version;
    st->aggregateCor = 5;
    st->volatileCor = 2;
    st->bThresholdExceeded = 0;
    return NVML_SUCCESS;
}

/* Double-bit retirements only, at SN_RETIRED_PAGES addresses 0x1000 apart. */
SN_API nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t d, nvmlPageRetirementCause_t cause, unsigned int *pageCount,
                                              unsigned long long *addresses)
{
    SN_CHECK_OUT(d, pageCount);
    if ((unsigned)cause >= NVML_PAGE_RETIREMENT_CAUSE_COUNT)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned n = cause == NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR ? SN_RETIRED_PAGES : 0;
    unsigned room = *pageCount;
    *pageCount = n;
    if (room < n)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    if (n && !addresses)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < n; i++)
        addresses[i] = 0x1000ull * (i + 1);
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetRowRemapperHistogram(nvmlDevice_t d, nvmlRowRemapperHistogramValues_t *v)
{
    SN_CHECK_OUT(d, v);
    v->max = 2560;
    v->high = 1;
    v->partial = 2;
    v->low = 3;
    v->none = 4;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetRemappedRows_v2(nvmlDevice_t d, nvmlRemappedRowsInfo_v2_t *info)
{
    SN_CHECK_OUT(d, info);
    info->corrActiveRemaps = 1;
    info->corrInactiveRemaps = 2;
    info->uncActiveRemaps = 3;
    info->uncInactiveRemaps = 4;
    info->bPending = 0;
    info->bFailureOccurred = 1;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetUnrepairableMemoryFlag_v1(nvmlDevice_t d, nvmlUnrepairableMemoryStatus_v1_t *st)
{
    SN_CHECK_OUT(d, st);
    st->bUnrepairableMemory = 1;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlDeviceGetRepairStatus(nvmlDevice_t d, nvmlRepairStatus_t *st)
{
    SN_CHECK_VERSIONED(d, st, nvmlRepairStatus_v1);
    st->bChannelRepairPending = 0;
    st->bTpcRepairPending = 1;
    return NVML_SUCCESS;
}

/* ---- NVML's private export table (docs/export-tables.md, "NVML's table") ----
 * The slots gpuwire's worker forwards, so the path is tested end to end: the
 * process lists (NVML_PROCESS_ENTRY_SIZE-byte entries: the device's holders
 * as above, the caller with SN_TABLE_PROC_MEM used, then pid 1, a process no
 * client owns, which the worker must filter out), the host's max PCIe
 * generation (SN_HOST_MAX_PCIE_GEN), the board part number
 * (SN_TABLE_PART_NUMBER) and the sparse operation mode (not supported). Every other word of the table is NULL. GPUWIRE_STANDIN_NVML_TABLE
 * plays an NVML without it: "absent" (no such table) or "short" (a size word
 * that ends before slot 230), for the worker's refusals. */

#define SN_TABLE_WORDS 256
#define SN_TABLE_ENTRY_SIZE 4128 /* u32 pid, u64 used @8, u32 GI @16, u32 CI @20, u64 CC @24, char name[4096] @32 */
#define SN_TABLE_PROC_MEM (64ull << 20)
#define SN_HOST_MAX_PCIE_GEN 5
#define SN_TABLE_PART_NUMBER "2330-885-A1"

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

/* Slot 231: the board part number, as the real table's (device, buf, len). */
static nvmlReturn_t table_part_number(nvmlDevice_t d, char *buf, unsigned len)
{
    nvmlReturn_t r = check(d);
    return r == NVML_SUCCESS ? copy_str(buf, len, SN_TABLE_PART_NUMBER) : r;
}

static const void *sn_table[SN_TABLE_WORDS] = {
    [0] = (const void *)(uintptr_t)(SN_TABLE_WORDS * sizeof(void *)),
    [213] = (const void *)table_processes, [214] = (const void *)table_processes,
    [215] = (const void *)table_processes, [230] = (const void *)table_host_max_pcie_gen,
    [231] = (const void *)table_part_number, [249] = (const void *)table_sparse_mode,
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

/* ---- NVLink and confidential computing (what NCCL reads for its topology) ----
 * One device: no NVLink (NOT_SUPPORTED, as a PCIe card answers). Several: a
 * ring, link 0 to the next device and link 1 to the previous one, both
 * active; links 2 to NVML_NVLINK_MAX_LINKS - 1 exist and are down. */
static nvmlReturn_t nvlink_check(nvmlDevice_t d, unsigned int link, const void *out)
{
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS && (!out || link >= NVML_NVLINK_MAX_LINKS))
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS && ndevices < 2)
        r = NVML_ERROR_NOT_SUPPORTED;
    return r;
}

/* the device at the other end of an active link, else -1 */
static int nvlink_peer(nvmlDevice_t d, unsigned int link)
{
    int p = index_of(d), n = (int)ndevices;
    return link == 0 ? (p + 1) % n : link == 1 ? (p + n - 1) % n : -1;
}

SN_API nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t d, unsigned int link, nvmlEnableState_t *on)
{
    nvmlReturn_t r = nvlink_check(d, link, on);
    if (r == NVML_SUCCESS)
        *on = nvlink_peer(d, link) >= 0 ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    return r;
}

SN_API nvmlReturn_t nvmlDeviceGetNvLinkVersion(nvmlDevice_t d, unsigned int link, unsigned int *version)
{
    nvmlReturn_t r = nvlink_check(d, link, version);
    if (r == NVML_SUCCESS)
        *version = 4;
    return r;
}

SN_API nvmlReturn_t nvmlDeviceGetNvLinkCapability(nvmlDevice_t d, unsigned int link, nvmlNvLinkCapability_t cap,
                                                  unsigned int *result)
{
    nvmlReturn_t r = nvlink_check(d, link, result);
    if (r == NVML_SUCCESS && (unsigned)cap >= NVML_NVLINK_CAP_COUNT)
        r = NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS) /* P2P and its atomics over active links; no SLI bridge */
        *result = nvlink_peer(d, link) >= 0 && cap != NVML_NVLINK_CAP_SLI_BRIDGE;
    return r;
}

static nvmlReturn_t nvlink_remote_pci(nvmlDevice_t d, unsigned int link, nvmlPciInfo_t *pci_out)
{
    nvmlReturn_t r = nvlink_check(d, link, pci_out);
    if (r != NVML_SUCCESS)
        return r;
    int p = nvlink_peer(d, link);
    return p < 0 ? NVML_ERROR_NOT_SUPPORTED : pci((nvmlDevice_t)&devices[p], pci_out);
}

#undef nvmlDeviceGetNvLinkRemotePciInfo
SN_API nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo(nvmlDevice_t d, unsigned int link, nvmlPciInfo_t *p)
{
    return nvlink_remote_pci(d, link, p);
}
SN_API nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t d, unsigned int link, nvmlPciInfo_t *p)
{
    return nvlink_remote_pci(d, link, p);
}

SN_API nvmlReturn_t nvmlDeviceGetNvLinkRemoteDeviceType(nvmlDevice_t d, unsigned int link,
                                                        nvmlIntNvLinkDeviceType_t *type)
{
    nvmlReturn_t r = nvlink_check(d, link, type);
    if (r == NVML_SUCCESS)
        *type = nvlink_peer(d, link) >= 0 ? NVML_NVLINK_DEVICE_TYPE_GPU : NVML_NVLINK_DEVICE_TYPE_UNKNOWN;
    return r;
}

SN_API nvmlReturn_t nvmlDeviceGetNvLinkErrorCounter(nvmlDevice_t d, unsigned int link,
                                                    nvmlNvLinkErrorCounter_t counter, unsigned long long *value)
{
    nvmlReturn_t r = nvlink_check(d, link, value);
    if (r == NVML_SUCCESS)
        *value = 100u * link + (unsigned)counter;
    return r;
}

/* no confidential computing here, as on a machine without it */
SN_API nvmlReturn_t nvmlSystemGetConfComputeSettings(nvmlSystemConfComputeSettings_t *s)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!s)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (s->version != nvmlSystemConfComputeSettings_v1)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    s->environment = NVML_CC_SYSTEM_ENVIRONMENT_UNAVAILABLE;
    s->ccFeature = NVML_CC_SYSTEM_FEATURE_DISABLED;
    s->devToolsMode = NVML_CC_SYSTEM_DEVTOOLS_MODE_OFF;
    s->multiGpuMode = NVML_CC_SYSTEM_MULTIGPU_NONE;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlSystemGetConfComputeState(nvmlConfComputeSystemState_t *s)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!s)
        return NVML_ERROR_INVALID_ARGUMENT;
    s->environment = NVML_CC_SYSTEM_ENVIRONMENT_UNAVAILABLE;
    s->ccFeature = NVML_CC_SYSTEM_FEATURE_DISABLED;
    s->devToolsMode = NVML_CC_SYSTEM_DEVTOOLS_MODE_OFF;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlSystemGetConfComputeCapabilities(nvmlConfComputeSystemCaps_t *c)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!c)
        return NVML_ERROR_INVALID_ARGUMENT;
    c->cpuCaps = NVML_CC_SYSTEM_CPU_CAPS_NONE;
    c->gpusCaps = NVML_CC_SYSTEM_GPUS_CC_NOT_CAPABLE;
    return NVML_SUCCESS;
}

SN_API nvmlReturn_t nvmlSystemGetConfComputeGpusReadyState(unsigned int *ready)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!ready)
        return NVML_ERROR_INVALID_ARGUMENT;
    *ready = NVML_CC_ACCEPTING_CLIENT_REQUESTS_FALSE;
    return NVML_SUCCESS;
}
