/* Self-test of the TEST DOUBLE's several devices (libgpuwire_standin.so with
 * GPUWIRE_STANDIN_DEVICES): enumeration, CUDA_VISIBLE_DEVICES (index and UUID forms, the
 * list ending at the first bad entry) and CUDA_DEVICE_ORDER, per-device memory and pointer
 * attributes, peer access and its error codes, peer copies. The driver reads its
 * environment once, at cuInit, so each setting runs in a child process of its own.
 *   standin_selftest_devices path/to/libgpuwire_standin.so */
#define _GNU_SOURCE
#include <cuda.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "selftest.h"

static const char *g_path;

/* UUID text of physical device p (bytes "gpuwire-standin" then p + 1). */
static void uuid_text(int p, char out[41])
{
    snprintf(out, 41, "GPU-67707577-6972-652d-7374-616e64696e%02x", p + 1);
}

/* The physical device behind ordinal d, read back from its PCI bus id. */
static int phys_of(CUdevice d)
{
    char bus[32];
    OK(F(cuDeviceGetPCIBusId)(bus, sizeof bus, d));
    unsigned dom, b, s, f;
    TRUE(sscanf(bus, "%x:%x:%x.%x", &dom, &b, &s, &f) == 4);
    CUuuid u;
    OK(F(cuDeviceGetUuid_v2)(&u, d));
    TRUE((unsigned char)u.bytes[15] == b + 1); /* UUID and bus id name the same device */
    return (int)b;
}

/* cuInit under the given environment; then the visible devices must be `want` (physical ids). */
static void expect_visible(const int *want, int n)
{
    OK(F(cuInit)(0));
    int count = -1;
    OK(F(cuDeviceGetCount)(&count));
    TRUE(count == n);
    for (int d = 0; d < n; d++) {
        if (phys_of(d) != want[d])
            printf("FAIL standin_selftest_devices: ordinal %d is device %d, expected %d\n", d, phys_of(d), want[d]);
        TRUE(phys_of(d) == want[d]);
    }
    CUdevice dev;
    EXPECT(F(cuDeviceGet)(&dev, n), CUDA_ERROR_INVALID_DEVICE);
}

static void case_default(void)
{
    expect_visible((int[]){0}, 1);
    char name[64];
    OK(F(cuDeviceGetName)(name, sizeof name, 0));
    TRUE(strcmp(name, "gpuwire CPU stand-in") == 0);
}

static void case_fastest_first(void)
{
    expect_visible((int[]){0, 2, 1, 3}, 4); /* odd devices are the slower ones */
    int fast, slow;
    OK(F(cuDeviceGetAttribute)(&fast, CU_DEVICE_ATTRIBUTE_CLOCK_RATE, 1));
    OK(F(cuDeviceGetAttribute)(&slow, CU_DEVICE_ATTRIBUTE_CLOCK_RATE, 2));
    TRUE(fast > slow);
    char name[64];
    OK(F(cuDeviceGetName)(name, sizeof name, 1));
    TRUE(strcmp(name, "gpuwire CPU stand-in 2") == 0);
    size_t total;
    OK(F(cuDeviceTotalMem_v2)(&total, 3));
    TRUE(total == (size_t)5 << 30);
}

static void case_pci_order(void) { expect_visible((int[]){0, 1, 2, 3}, 4); }

static void case_mask(void)
{
    char u1[41];
    uuid_text(1, u1);
    char mask[128];
    snprintf(mask, sizeof mask, "2, %s,7,0", u1); /* 7 does not exist: 0 after it is not seen */
    setenv("CUDA_VISIBLE_DEVICES", mask, 1);
    expect_visible((int[]){2, 1}, 2);
}

static void case_uuid_prefix(void)
{
    setenv("CUDA_VISIBLE_DEVICES", "GPU-67707577-6972-652d-7374-616e64696e03,GPU-6770", 1); /* ambiguous prefix ends it */
    expect_visible((int[]){2}, 1);
}

static void case_none(void)
{
    setenv("CUDA_VISIBLE_DEVICES", "-1", 1);
    EXPECT(F(cuInit)(0), CUDA_ERROR_NO_DEVICE);
}

static void case_peers(void)
{
    expect_visible((int[]){0, 1}, 2);
    int can = -1, v = -1;
    OK(F(cuDeviceCanAccessPeer)(&can, 0, 1));
    TRUE(can == 1);
    OK(F(cuDeviceCanAccessPeer)(&can, 1, 1));
    TRUE(can == 0);
    EXPECT(F(cuDeviceCanAccessPeer)(&can, 0, 2), CUDA_ERROR_INVALID_DEVICE);
    OK(F(cuDeviceGetP2PAttribute)(&v, CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED, 0, 1));
    TRUE(v == 1);
    EXPECT(F(cuDeviceGetP2PAttribute)(&v, CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED, 1, 1), CUDA_ERROR_INVALID_DEVICE);
    EXPECT(F(cuDeviceGetP2PAttribute)(&v, (CUdevice_P2PAttribute)99, 0, 1), CUDA_ERROR_INVALID_VALUE);

    CUcontext p0, p1;
    OK(F(cuDevicePrimaryCtxRetain)(&p0, 0));
    OK(F(cuDevicePrimaryCtxRetain)(&p1, 1));
    TRUE(p0 != p1);
    const size_t n = 1 << 16;
    CUdeviceptr a0, a1;
    OK(F(cuCtxSetCurrent)(p1));
    OK(F(cuMemAlloc_v2)(&a1, n));
    size_t free1, total1;
    OK(F(cuMemGetInfo_v2)(&free1, &total1));
    TRUE(total1 == (size_t)7 << 30 && total1 - free1 == n);
    OK(F(cuCtxSetCurrent)(p0));
    OK(F(cuMemAlloc_v2)(&a0, n));
    size_t free0, total0;
    OK(F(cuMemGetInfo_v2)(&free0, &total0));
    TRUE(total0 == (size_t)8 << 30 && total0 - free0 == n);
    unsigned ord = 9;
    OK(F(cuPointerGetAttribute)(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, a1));
    TRUE(ord == 1);
    OK(F(cuPointerGetAttribute)(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, a0));
    TRUE(ord == 0);
    CUcontext owner = NULL;
    OK(F(cuPointerGetAttribute)(&owner, CU_POINTER_ATTRIBUTE_CONTEXT, a1));
    TRUE(owner == p1);

    /* enabling and disabling, current context p0 */
    OK(F(cuCtxEnablePeerAccess)(p1, 0));
    EXPECT(F(cuCtxEnablePeerAccess)(p1, 0), CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED);
    EXPECT(F(cuCtxEnablePeerAccess)(p0, 0), CUDA_ERROR_INVALID_DEVICE);
    EXPECT(F(cuCtxEnablePeerAccess)(p1, 1), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuCtxEnablePeerAccess)((CUcontext)(uintptr_t)0x1000, 0), CUDA_ERROR_INVALID_CONTEXT);
    OK(F(cuCtxDisablePeerAccess)(p1));
    EXPECT(F(cuCtxDisablePeerAccess)(p1), CUDA_ERROR_PEER_ACCESS_NOT_ENABLED);
    OK(F(cuCtxEnablePeerAccess)(p1, 0));
    /* p1 released to nothing: the mapping goes with it */
    OK(F(cuDevicePrimaryCtxRelease_v2)(1));
    OK(F(cuDevicePrimaryCtxRetain)(&p1, 1));
    EXPECT(F(cuCtxDisablePeerAccess)(p1), CUDA_ERROR_PEER_ACCESS_NOT_ENABLED);
    OK(F(cuCtxSetCurrent)(p1));
    OK(F(cuMemAlloc_v2)(&a1, n)); /* the old a1 went with the context */
    OK(F(cuCtxSetCurrent)(p0));

    /* peer copies, data checked */
    unsigned char *src = malloc(n), *back = malloc(n);
    TRUE(src && back);
    for (size_t i = 0; i < n; i++)
        src[i] = (unsigned char)(i * 7 + 3);
    OK(F(cuMemcpyHtoD_v2)(a0, src, n));
    OK(F(cuMemcpyPeer)(a1, p1, a0, p0, n));
    memset(back, 0, n);
    OK(F(cuMemcpyDtoH_v2)(back, a1, n));
    TRUE(memcmp(src, back, n) == 0);
    OK(F(cuMemsetD8_v2)(a0, 0, n));
    OK(F(cuMemcpyPeerAsync)(a0 + 16, p0, a1, p1, n - 16, NULL));
    OK(F(cuMemcpyDtoH_v2)(back, a0, n));
    TRUE(back[0] == 0 && memcmp(back + 16, src, n - 16) == 0);
    EXPECT(F(cuMemcpyPeer)(a1, p1, a0, p0, n + 1), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemcpyPeer)(a1, (CUcontext)(uintptr_t)0x1000, a0, p0, n), CUDA_ERROR_INVALID_CONTEXT);
    free(src);
    free(back);

    /* a kernel of device 0 reaching device 1's memory faults unless its context enabled access */
    float ones[4] = {1, 1, 1, 1};
    OK(F(cuMemcpyHtoD_v2)(a1, ones, sizeof ones));
    for (int enable = 0; enable < 2; enable++) {
        CUcontext k;
        OK(F(cuCtxCreate_v4)(&k, NULL, 0, 0));
        if (enable)
            OK(F(cuCtxEnablePeerAccess)(p1, 0));
        CUmodule m;
        CUfunction f;
        OK(F(cuModuleLoadData)(&m, "x"));
        OK(F(cuModuleGetFunction)(&f, m, "da_scale"));
        float factor = 2.0f;
        int count = 4;
        void *args[] = {&a1, &factor, &count};
        OK(F(cuLaunchKernel)(f, 1, 1, 1, 4, 1, 1, 0, NULL, args, NULL));
        EXPECT(F(cuCtxSynchronize)(), enable ? CUDA_SUCCESS : CUDA_ERROR_ILLEGAL_ADDRESS);
        OK(F(cuCtxDestroy_v2)(k));
    }
    OK(F(cuCtxSetCurrent)(p0));
    float got[4];
    OK(F(cuMemcpyDtoH_v2)(got, a1, sizeof got));
    TRUE(got[0] == 2.0f && got[3] == 2.0f); /* scaled once: by the launch with access */

    /* a created context on device 1 */
    CUcontext c;
    OK(F(cuCtxCreate_v4)(&c, NULL, 0, 1));
    CUdevice d = -1;
    OK(F(cuCtxGetDevice)(&d));
    TRUE(d == 1);
    OK(F(cuCtxDestroy_v2)(c));
    OK(F(cuDeviceGetByPCIBusId)(&d, "0000:01:00.0"));
    TRUE(d == 1);
    EXPECT(F(cuDeviceGetByPCIBusId)(&d, "0000:05:00.0"), CUDA_ERROR_INVALID_DEVICE);
    OK(F(cuDeviceGetByPCIBusId)(&d, "00000000:00:00.0")); /* NVML's 8-digit domain */
    TRUE(d == 0);
    EXPECT(F(cuDeviceGetByPCIBusId)(&d, "0000:01:00.0x"), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuDeviceGetByPCIBusId)(&d, "0000:999999999999:00.0"), CUDA_ERROR_INVALID_VALUE);
}

/* Runs one case in a child with GPUWIRE_STANDIN_DEVICES = devices (0: unset) and the order. */
static int run_case(const char *what, void (*fn)(void), int devices, const char *order)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        unsetenv("CUDA_VISIBLE_DEVICES");
        unsetenv("CUDA_DEVICE_ORDER");
        unsetenv("GPUWIRE_STANDIN_DEVICES");
        if (devices) {
            char v[16];
            snprintf(v, sizeof v, "%d", devices);
            setenv("GPUWIRE_STANDIN_DEVICES", v, 1);
        }
        if (order)
            setenv("CUDA_DEVICE_ORDER", order, 1);
        g_lib = dlopen(g_path, RTLD_NOW | RTLD_LOCAL);
        if (!g_lib) {
            printf("FAIL standin_selftest_devices: %s\n", dlerror());
            exit(1);
        }
        fn();
        printf("  %s: %d checks\n", what, g_checks);
        exit(0);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        printf("FAIL standin_selftest_devices: case %s\n", what);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s path/to/libgpuwire_standin.so\n", argv[0]);
        return 2;
    }
    g_path = argv[1];
    int bad = 0;
    bad += run_case("default: one device", case_default, 0, NULL);
    bad += run_case("4 devices, fastest first", case_fastest_first, 4, NULL);
    bad += run_case("4 devices, PCI order", case_pci_order, 4, "PCI_BUS_ID");
    bad += run_case("mask: index, UUID, bad entry", case_mask, 4, "PCI_BUS_ID");
    bad += run_case("mask: UUID prefixes", case_uuid_prefix, 4, "PCI_BUS_ID");
    bad += run_case("mask: no device", case_none, 2, NULL);
    bad += run_case("peers", case_peers, 2, "PCI_BUS_ID");
    if (bad)
        return 1;
    printf("PASS standin_selftest_devices\n");
    return 0;
}
