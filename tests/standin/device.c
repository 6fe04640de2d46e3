/* TEST DOUBLE: gpuwire CPU stand-in driver. The fake devices: how many there are
 * (GPUWIRE_STANDIN_DEVICES, default 1), which of them a process sees and in what
 * order (CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER, read at cuInit as the real
 * driver reads them), and each one's name, UUID, PCI bus id, memory size and an
 * H100-like value for every CUdevice_attribute.
 *
 * A CUdevice is a visible ordinal; sd_dev_phys() gives the "physical" device
 * behind it (its position in PCI bus order), which fixes its identity. Physical
 * device p: UUID bytes "gpuwire-standin" then p + 1; PCI bus p; 8 GiB less p % 4
 * GiB; odd p run a slower clock (an H100 PCIe's), so CUDA_DEVICE_ORDER=
 * FASTEST_FIRST (the default) and PCI_BUS_ID differ once there are 3 or more. */
#include "standin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_phys_count = 1;      /* devices the stand-in has */
static int g_vis[SD_MAX_DEVICES]; /* visible ordinal -> physical device */
static int g_vis_count;

static int phys_clock_khz(int p) { return p % 2 ? 1755000 : 1980000; }

int sd_dev_phys(CUdevice dev) { return dev >= 0 && dev < g_vis_count ? g_vis[dev] : 0; }

int sd_dev_count(void) { return g_vis_count; }

size_t sd_dev_total_mem(CUdevice dev)
{
    return SD_TOTAL_MEM - (size_t)(sd_dev_phys(dev) % 4) * ((size_t)1 << 30);
}

void sd_phys_uuid(int p, unsigned char out[16])
{
    static const char fixed[15] = {'g', 'p', 'u', 'w', 'i', 'r', 'e', '-', 's', 't', 'a', 'n', 'd', 'i', 'n'};
    memcpy(out, fixed, sizeof fixed);
    out[15] = (unsigned char)(p + 1);
    const char *m = getenv("GPUWIRE_STANDIN_MACHINE"); /* 1..9: another machine's GPUs (tests of several servers) */
    if (m && *m >= '1' && *m <= '9' && !m[1])
        out[14] = (unsigned char)('n' + (*m - '0'));
}

/* "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi -L spells a UUID. */
static void phys_uuid_text(int p, char out[41])
{
    unsigned char u[16];
    sd_phys_uuid(p, u);
    int n = sprintf(out, "GPU-");
    for (int i = 0; i < 16; i++)
        n += sprintf(out + n, "%s%02x", i == 4 || i == 6 || i == 8 || i == 10 ? "-" : "", u[i]);
}

/* The physical device a CUDA_VISIBLE_DEVICES entry names, or -1: an index into
 * the ordered list, or a UUID given whole or by a unique prefix ("GPU-" included). */
static int entry_device(const char *tok, size_t len, const int *order)
{
    char t[64];
    while (len && (*tok == ' ' || *tok == '\t'))
        tok++, len--;
    while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= sizeof t)
        return -1;
    memcpy(t, tok, len);
    t[len] = 0;
    char *end;
    long i = strtol(t, &end, 10);
    if (*end == 0)
        return i >= 0 && i < g_phys_count ? order[i] : -1;
    if (strncmp(t, "GPU-", 4) != 0 || len == 4)
        return -1; /* MIG ids and anything else: no such device here */
    int found = -1;
    for (int p = 0; p < g_phys_count; p++) {
        char u[41];
        phys_uuid_text(p, u);
        if (strncmp(u, t, len) == 0) {
            if (found >= 0)
                return -1; /* a prefix two devices share names neither */
            found = p;
        }
    }
    return found;
}

/* Called by cuInit: the device count and the visible list. The list ends at the
 * first entry that names no device (or one already listed), as the driver reads it. */
void sd_devices_setup(void)
{
    const char *n = getenv("GPUWIRE_STANDIN_DEVICES");
    g_phys_count = 1;
    if (n && *n) {
        long v = strtol(n, NULL, 10);
        g_phys_count = v < 1 ? 1 : v > SD_MAX_DEVICES ? SD_MAX_DEVICES : (int)v;
    }
    int order[SD_MAX_DEVICES];
    for (int p = 0; p < g_phys_count; p++)
        order[p] = p;
    const char *how = getenv("CUDA_DEVICE_ORDER");
    if (!how || strcmp(how, "PCI_BUS_ID") != 0) { /* FASTEST_FIRST: faster clock first, PCI order among equals */
        for (int i = 1; i < g_phys_count; i++)
            for (int j = i; j > 0 && phys_clock_khz(order[j]) > phys_clock_khz(order[j - 1]); j--) {
                int t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
    }
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    g_vis_count = 0;
    if (!vis) {
        for (int p = 0; p < g_phys_count; p++)
            g_vis[g_vis_count++] = order[p];
        return;
    }
    for (const char *s = vis; g_vis_count < SD_MAX_DEVICES;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        int p = entry_device(s, len, order);
        for (int k = 0; p >= 0 && k < g_vis_count; k++)
            if (g_vis[k] == p)
                p = -1;
        if (p < 0)
            break;
        g_vis[g_vis_count++] = p;
        if (!comma)
            break;
        s = comma + 1;
    }
}

CUresult sd_check_dev(CUdevice dev)
{
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    return dev >= 0 && dev < g_vis_count ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

SD_API CUresult cuDeviceGetCount(int *count)
{
    if (!count)
        return CUDA_ERROR_INVALID_VALUE;
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    *count = g_vis_count;
    return CUDA_SUCCESS;
}

SD_API CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
    if (!device)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sd_check_dev(ordinal);
    if (r == CUDA_SUCCESS)
        *device = ordinal;
    return r;
}

static void copy_text(char *dst, int len, const char *src)
{
    size_t n = strlen(src);
    if (n >= (size_t)len)
        n = (size_t)len - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

SD_API CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
{
    if (!name || len <= 0)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sd_check_dev(dev);
    if (r != CUDA_SUCCESS)
        return r;
    char text[64];
    int p = sd_dev_phys(dev);
    if (p == 0)
        snprintf(text, sizeof text, "%s", SD_DEVICE_NAME); /* the name a one-device stand-in always had */
    else
        snprintf(text, sizeof text, "%s %d", SD_DEVICE_NAME, p);
    copy_text(name, len, text);
    return CUDA_SUCCESS;
}

SD_API CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev)
{
    if (!uuid)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sd_check_dev(dev);
    if (r == CUDA_SUCCESS)
        sd_phys_uuid(sd_dev_phys(dev), (unsigned char *)uuid->bytes);
    return r;
}

SD_API CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
    if (!bytes)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sd_check_dev(dev);
    if (r == CUDA_SUCCESS)
        *bytes = sd_dev_total_mem(dev);
    return r;
}

SD_API CUresult cuDeviceComputeCapability(int *major, int *minor, CUdevice dev)
{
    if (!major || !minor)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sd_check_dev(dev);
    if (r == CUDA_SUCCESS) {
        *major = 9;
        *minor = 0;
    }
    return r;
}

SD_API CUresult cuDeviceGetPCIBusId(char *busid, int len, CUdevice dev)
{
    if (!busid || len <= 0)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sd_check_dev(dev);
    if (r != CUDA_SUCCESS)
        return r;
    char id[16];
    snprintf(id, sizeof id, "0000:%02x:00.0", (unsigned)sd_dev_phys(dev) & 0xffu);
    copy_text(busid, len, id);
    return CUDA_SUCCESS;
}

/* "[domain:]bus:device.function" in hex, as cuDeviceGetByPCIBusId takes it. */
SD_API CUresult cuDeviceGetByPCIBusId(CUdevice *dev, const char *busid)
{
    if (!dev || !busid)
        return CUDA_ERROR_INVALID_VALUE;
    if (!sd_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    unsigned dom = 0, bus = 0, slot = 0, fn = 0;
    char tail;
    /* field widths bound every number (the text came from the network) */
    if (sscanf(busid, "%8x:%2x:%2x.%1x%c", &dom, &bus, &slot, &fn, &tail) != 4) {
        dom = 0;
        if (sscanf(busid, "%2x:%2x.%1x%c", &bus, &slot, &fn, &tail) != 3)
            return CUDA_ERROR_INVALID_VALUE;
    }
    for (int d = 0; d < g_vis_count; d++)
        if (dom == 0 && slot == 0 && fn == 0 && bus == (unsigned)sd_dev_phys(d)) {
            *dev = d;
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_INVALID_DEVICE;
}

/* Values of an H100 SXM where a number is needed; features the stand-in cannot offer
 * (managed/mapped memory, interop) read 0 so applications steer around; the virtual memory
 * API and memory pools, with their file-descriptor handles, are there (vmm.c, mempool.c). */
static int attr_value(int a, int phys)
{
    switch (a) {
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: return 64;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: return 2147483647;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: return 65535;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: return 65535;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: return 49152;
    case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: return 65536;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: return 32;
    case CU_DEVICE_ATTRIBUTE_MAX_PITCH: return 2147483647;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: return 65536;
    case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: return phys_clock_khz(phys);
    case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT: return 512;
    case CU_DEVICE_ATTRIBUTE_GPU_OVERLAP: return 1;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: return SD_SM_COUNT;
    case CU_DEVICE_ATTRIBUTE_KERNEL_EXEC_TIMEOUT: return 0;
    case CU_DEVICE_ATTRIBUTE_INTEGRATED: return 0;
    case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY: return 0;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_MODE: return CU_COMPUTEMODE_DEFAULT;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_WIDTH: return 131072;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_WIDTH: return 131072;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_HEIGHT: return 65536;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_WIDTH: return 16384;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_HEIGHT: return 16384;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_DEPTH: return 16384;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LAYERED_WIDTH: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LAYERED_HEIGHT: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LAYERED_LAYERS: return 2048;
    case CU_DEVICE_ATTRIBUTE_SURFACE_ALIGNMENT: return 512;
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: return 1;
    case CU_DEVICE_ATTRIBUTE_ECC_ENABLED: return 1;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: return phys & 0xff;
    case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: return 0;
    case CU_DEVICE_ATTRIBUTE_TCC_DRIVER: return 0;
    case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: return 2619000;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: return 5120;
    case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: return 52428800;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: return 2048;
    case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: return 3;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: return 1;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_LAYERED_WIDTH: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_LAYERED_LAYERS: return 2048;
    case CU_DEVICE_ATTRIBUTE_CAN_TEX2D_GATHER: return 1;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_GATHER_WIDTH: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_GATHER_HEIGHT: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_WIDTH_ALTERNATE: return 8192;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_HEIGHT_ALTERNATE: return 8192;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_DEPTH_ALTERNATE: return 32768;
    case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID: return 0;
    case CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT: return 32;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURECUBEMAP_WIDTH: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURECUBEMAP_LAYERED_WIDTH: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURECUBEMAP_LAYERED_LAYERS: return 2046;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE1D_WIDTH: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_WIDTH: return 131072;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_HEIGHT: return 65536;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE3D_WIDTH: return 16384;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE3D_HEIGHT: return 16384;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE3D_DEPTH: return 16384;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE1D_LAYERED_WIDTH: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE1D_LAYERED_LAYERS: return 2048;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_LAYERED_WIDTH: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_LAYERED_HEIGHT: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_LAYERED_LAYERS: return 2048;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACECUBEMAP_WIDTH: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACECUBEMAP_LAYERED_WIDTH: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACECUBEMAP_LAYERED_LAYERS: return 2046;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_LINEAR_WIDTH: return 268435456;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LINEAR_WIDTH: return 131072;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LINEAR_HEIGHT: return 65000;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LINEAR_PITCH: return 2097120;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_MIPMAPPED_WIDTH: return 32768;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_MIPMAPPED_HEIGHT: return 32768;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: return 9;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: return 0;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_MIPMAPPED_WIDTH: return 32768;
    case CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: return 233472;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR: return 65536;
    case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY: return 0;
    case CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD: return 0;
    case CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD_GROUP_ID: return 0;
    case CU_DEVICE_ATTRIBUTE_HOST_NATIVE_ATOMIC_SUPPORTED: return 0;
    case CU_DEVICE_ATTRIBUTE_SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO: return 2;
    case CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS: return 0;
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS: return 0;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM: return 0;
    case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH: return 1;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: return (int)SD_SHMEM_OPTIN;
    case CU_DEVICE_ATTRIBUTE_CAN_FLUSH_REMOTE_WRITES: return 0;
    case CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED: return 0;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR: return 32;
    case CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE: return 32768000;
    case CU_DEVICE_ATTRIBUTE_MAX_ACCESS_POLICY_WINDOW_SIZE: return 134213632;
    case CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK: return 1024;
    case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: return 1; /* mempool.c */
    case CU_DEVICE_ATTRIBUTE_MEMPOOL_SUPPORTED_HANDLE_TYPES: return CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED: return 1; /* vmm.c */
    case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH: return 1;
    case CU_DEVICE_ATTRIBUTE_MEM_SYNC_DOMAIN_COUNT: return 4;
    case CU_DEVICE_ATTRIBUTE_NUMA_CONFIG: return CU_DEVICE_NUMA_CONFIG_NONE;
    case CU_DEVICE_ATTRIBUTE_NUMA_ID: return -1;
    case CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID: return -1;
    default: return 0; /* every other attribute: the feature is absent */
    }
}

SD_API CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
    if (!pi)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sd_check_dev(dev);
    if (r != CUDA_SUCCESS)
        return r;
    if ((int)attrib < 1 || (int)attrib >= (int)CU_DEVICE_ATTRIBUTE_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    *pi = attr_value((int)attrib, sd_dev_phys(dev));
    return CUDA_SUCCESS;
}
