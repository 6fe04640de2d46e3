// mapped_memory: host memory the GPU sees (docs/host-memory.md). Mapped
// allocations, registrations and managed memory used by kernels, written by
// the host between launches, copied to and from; every result checked on the
// host. The flags and pointer attributes are printed for gpu-check to compare
// with the native run.
#define PROG "mapped_memory"
#include "check.h"

#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

__global__ void vector_add(const float *a, const float *b, float *c, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        c[i] = a[i] + b[i];
}

/* long GPU work: about ms milliseconds (the stand-in books the time) */
__global__ void gw_sleep(int ms)
{
    long long start = clock64();
    while (clock64() - start < (long long)ms * 1500000LL)
        ;
}

static void expect_sum(const float *a, const float *b, const float *c, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        if (c[i] != a[i] + b[i])
            FAIL("%s: element %d is %g, want %g", what, i, c[i], a[i] + b[i]);
}

static void add(const float *a, const float *b, float *c, int n)
{
    vector_add<<<(n + 255) / 256, 256>>>(a, b, c, n);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
}

/* "crash": with a mapped range in place, a fault elsewhere is still the
 * program's own: it dies of SIGSEGV, as natively (gpuwire's handler passes
 * faults outside its ranges on). */
static int crash(void)
{
    float *a;
    CK(cudaHostAlloc((void **)&a, 4096, cudaHostAllocMapped));
    a[0] = 1.0f;
    printf("faulting on purpose\n");
    fflush(stdout);
    volatile int *bad = (volatile int *)(uintptr_t)16;
    return *bad;
}

/* "fork": a child forked while mapped memory is stale touches its
 * registered pages and exits: it must not fault (the child has no session of
 * the parent's ranges), and the parent goes on with its own. */
static int forked(void)
{
    const int n = 4096;
    float *own = (float *)aligned_alloc(4096, n * sizeof(float)), *d;
    for (int i = 0; i < n; i++)
        own[i] = 1.0f;
    CK(cudaHostRegister(own, n * sizeof(float), cudaHostRegisterMapped));
    CK(cudaHostGetDevicePointer((void **)&d, own, 0));
    add(d, d, d, n); /* own[i] = 2: the pages are stale in the mirror now */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        volatile float x = own[1]; /* the child's own memory now */
        own[2] = x;
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status))
        FAIL("the forked child ended with status %#x", status);
    if (own[0] != 2.0f || own[n - 1] != 2.0f)
        FAIL("after the fork: %g %g", own[0], own[n - 1]);
    CK(cudaHostUnregister(own));
    free(own);
    printf("PASS mapped_memory fork\n");
    return 0;
}

/* "managed-race", "managed-hung", "managed-synced", "managed-copied",
 * "managed-attached": the device reports no concurrent managed access, so the
 * host touching globally attached managed memory while a kernel may run first
 * waits for the kernels ("race"), and faults if they run on past
 * GPUWIRE_MANAGED_WAIT_S ("hung": a 5 s kernel); after a synchronize or a
 * synchronous copy, or with the memory attached to the host, nothing waits. */
static int managed_touch(const char *how)
{
    const int n = 4096;
    float *m, *a;
    CK(cudaMallocManaged((void **)&m, n * sizeof(float), cudaMemAttachGlobal));
    CK(cudaMallocManaged((void **)&a, n * sizeof(float), cudaMemAttachGlobal));
    for (int i = 0; i < n; i++)
        m[i] = a[i] = 1.0f;
    if (!strcmp(how, "attached")) {
        CK(cudaStreamAttachMemAsync(0, m, 0, cudaMemAttachHost));
        CK(cudaStreamSynchronize(0));
    }
    vector_add<<<(n + 255) / 256, 256>>>(a, a, a, n); /* a kernel on the other allocation */
    CK(cudaGetLastError());
    if (!strcmp(how, "hung"))
        gw_sleep<<<1, 1>>>(5000);
    if (!strcmp(how, "synced"))
        CK(cudaDeviceSynchronize());
    if (!strcmp(how, "copied")) { /* a synchronous copy follows the legacy stream's kernels */
        float *d, back;
        CK(cudaMalloc((void **)&d, sizeof(float)));
        CK(cudaMemcpy(&back, d, sizeof(float), cudaMemcpyDeviceToHost));
        CK(cudaFree(d));
    }
    printf("touching managed memory (%s)\n", how);
    fflush(stdout);
    m[0] = 5.0f;
    CK(cudaDeviceSynchronize());
    if (m[0] != 5.0f || a[0] != 2.0f)
        FAIL("after the kernel: %g %g", m[0], a[0]);
    printf("PASS mapped_memory managed-%s\n", how);
    return 0;
}

/* "two DEV": mapped ranges made with device 0 and with device DEV current
 * (two gpuwire servers: each range on its own server's worker), used by
 * kernels of each in turn, written by the host between launches. */
static int two(int dev)
{
    const int n = 70000;
    const size_t bytes = (size_t)n * sizeof(float);
    float *a[2], *b[2], *c[2];
    int devs[2] = {0, dev};
    for (int k = 0; k < 2; k++) {
        CK(cudaSetDevice(devs[k]));
        CK(cudaHostAlloc((void **)&a[k], bytes, cudaHostAllocMapped));
        CK(cudaHostAlloc((void **)&b[k], bytes, cudaHostAllocMapped));
        CK(cudaHostAlloc((void **)&c[k], bytes, cudaHostAllocMapped));
    }
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < n; i++) {
                a[k][i] = (float)((i + round * 7 + k) % 1000);
                b[k][i] = (float)((i * 3 + round) % 41) * (k + 1);
            }
        for (int k = 0; k < 2; k++) {
            CK(cudaSetDevice(devs[k]));
            add(a[k], b[k], c[k], n);
        }
        for (int k = 0; k < 2; k++)
            expect_sum(a[k], b[k], c[k], n, k ? "device DEV's range" : "device 0's range");
    }
    for (int k = 0; k < 2; k++) {
        CK(cudaSetDevice(devs[k]));
        CK(cudaFreeHost(a[k]));
        CK(cudaFreeHost(b[k]));
        CK(cudaFreeHost(c[k]));
    }
    printf("two devices' mapped ranges: 3 rounds each, every element checked\n");
    printf("PASS %s\n", PROG);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "two"))
        return two(atoi(argv[2]));
    if (argc > 1 && !strcmp(argv[1], "crash"))
        return crash();
    if (argc > 1 && !strcmp(argv[1], "fork"))
        return forked();
    if (argc > 1 && !strncmp(argv[1], "managed-", 8))
        return managed_touch(argv[1] + 8);
    const int n = 300000; /* not a whole number of pages */
    const size_t bytes = (size_t)n * sizeof(float);
    int can_map = 0;
    CK(cudaDeviceGetAttribute(&can_map, cudaDevAttrCanMapHostMemory, 0));
    printf("can map host memory: %d\n", can_map);

    /* mapped allocations: written by the host, read and written by a kernel */
    float *a, *b, *c, *da, *db, *dc;
    CK(cudaHostAlloc((void **)&a, bytes, cudaHostAllocMapped));
    CK(cudaHostAlloc((void **)&b, bytes, cudaHostAllocMapped));
    CK(cudaHostAlloc((void **)&c, bytes, cudaHostAllocMapped));
    CK(cudaHostGetDevicePointer((void **)&da, a, 0));
    CK(cudaHostGetDevicePointer((void **)&db, b, 0));
    CK(cudaHostGetDevicePointer((void **)&dc, c, 0));
    printf("device pointer is the host pointer: %d\n", da == a && db == b && dc == c);
    for (int i = 0; i < n; i++) {
        a[i] = (float)(i % 1000) * 0.5f;
        b[i] = (float)(i % 37) * 2.0f;
    }
    add(da, db, dc, n);
    expect_sum(a, b, c, n, "mapped, first launch");

    /* the host changes some of a (a few pages only), the kernel sees it */
    for (int i = 0; i < n; i += 4096)
        a[i] = -1.0f - (float)i;
    add(da, db, dc, n);
    expect_sum(a, b, c, n, "mapped, after host writes");

    /* the kernel's output as an input again, with the host reading between */
    float first = c[0];
    add(dc, db, da, n);
    if (a[0] != first + b[0])
        FAIL("mapped, output fed back: %g, want %g", a[0], first + b[0]);

    /* copies with a mapped side, both ways */
    float *dev, *back = (float *)malloc(bytes);
    CK(cudaMalloc((void **)&dev, bytes));
    CK(cudaMemcpy(dev, c, bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(back, dev, bytes, cudaMemcpyDeviceToHost));
    if (memcmp(back, c, bytes))
        FAIL("copy from mapped memory differs");
    CK(cudaMemset(dev, 0, bytes));
    CK(cudaMemcpy(a, dev, bytes, cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++)
        if (a[i] != 0.0f)
            FAIL("copy into mapped memory: element %d is %g", i, a[i]);

    /* a memset of mapped memory through the driver API (as numba does; cudart's
     * cudaMemset synchronizes after it): natively synchronous there, so the
     * host reads its bytes at once, pages it had read before included */
    typedef int (*memset_d8_fn)(unsigned long long, unsigned char, size_t);
    memset_d8_fn memset_d8 = NULL;
    cudaDriverEntryPointQueryResult found;
    CK(cudaGetDriverEntryPointByVersion("cuMemsetD8", (void **)&memset_d8, 3020, cudaEnableDefault, &found));
    volatile unsigned char sum = 0;
    for (size_t i = 0; i < bytes; i += 4096) /* every page read (fetched) before the memset */
        sum += ((volatile unsigned char *)c)[i];
    if (!memset_d8 || memset_d8((unsigned long long)(uintptr_t)dc, 0xab, bytes) != 0)
        FAIL("cuMemsetD8 of mapped memory failed");
    for (size_t i = 0; i < bytes; i++)
        if (((unsigned char *)c)[i] != 0xab)
            FAIL("memset of mapped memory: byte %zu is %#x", i, ((unsigned char *)c)[i]);

    unsigned flags = 0;
    CK(cudaHostGetFlags(&flags, c));
    printf("cudaHostGetFlags of a mapped allocation: %u\n", flags);
    cudaPointerAttributes at;
    CK(cudaPointerGetAttributes(&at, c));
    printf("pointer attributes: type %d, device pointer is it: %d, host pointer is it: %d\n", (int)at.type,
           at.devicePointer == c, at.hostPointer == c);

    /* the program's own memory (whole pages) registered as mapped: its bytes are kept */
    const size_t own_bytes = (bytes + 4095) / 4096 * 4096;
    float *own = (float *)aligned_alloc(4096, own_bytes), *downed;
    for (int i = 0; i < n; i++)
        own[i] = (float)(i % 91);
    CK(cudaHostRegister(own, own_bytes, cudaHostRegisterMapped));
    CK(cudaHostGetDevicePointer((void **)&downed, own, 0));
    add(downed, db, dc, n);
    expect_sum(own, b, c, n, "registered");
    CK(cudaHostUnregister(own));
    own[5] = 7.0f; /* still the program's memory */
    if (own[4] != 4.0f || own[5] != 7.0f)
        FAIL("registered memory after unregistering: %g %g", own[4], own[5]);
    free(own);

    /* page-locked memory allocated without the mapped flag: its device pointer too */
    float *plain, *dplain;
    CK(cudaMallocHost((void **)&plain, bytes));
    for (int i = 0; i < n; i++)
        plain[i] = 3.0f;
    CK(cudaHostGetDevicePointer((void **)&dplain, plain, 0));
    add(dplain, db, dc, n);
    expect_sum(plain, b, c, n, "page-locked, device pointer asked for");
    CK(cudaFreeHost(plain));

    /* small page-locked buffers used as device memory directly, as on UVA
     * (XLA memsets its 8-byte flags): memset, then read by kernels */
    float *tiny_in, *tiny_out;
    CK(cudaMallocHost((void **)&tiny_in, 2 * sizeof(float)));
    CK(cudaMallocHost((void **)&tiny_out, 2 * sizeof(float)));
    CK(cudaMemsetAsync(tiny_in, 0, 2 * sizeof(float), 0));
    CK(cudaMemsetAsync(tiny_out, 0, 2 * sizeof(float), 0));
    CK(cudaDeviceSynchronize());
    tiny_in[0] = 1.5f;
    tiny_in[1] = -2.0f;
    add(tiny_in, tiny_in, tiny_out, 2);
    if (tiny_out[0] != 3.0f || tiny_out[1] != -4.0f)
        FAIL("small page-locked buffers used by a kernel directly: %g %g", tiny_out[0], tiny_out[1]);
    CK(cudaFreeHost(tiny_in));
    CK(cudaFreeHost(tiny_out));

    /* managed memory */
    float *m;
    CK(cudaMallocManaged((void **)&m, bytes));
    for (int i = 0; i < n; i++)
        m[i] = (float)(i % 13);
    add(m, db, dc, n);
    expect_sum(m, b, c, n, "managed input");
    add(db, db, m, n);
    expect_sum(b, b, m, n, "managed output");
    /* hints: accepted and read back; they change no result */
    cudaMemLocation dev0 = {cudaMemLocationTypeDevice, 0}, host = {cudaMemLocationTypeHost, 0};
    CK(cudaMemAdvise(m, bytes, cudaMemAdviseSetReadMostly, dev0));
    CK(cudaMemPrefetchAsync(m, bytes, dev0, 0, 0));
    CK(cudaMemPrefetchAsync(m, bytes, host, 0, 0));
    CK(cudaDeviceSynchronize());
    int read_mostly = -1, last = -9;
    CK(cudaMemRangeGetAttribute(&read_mostly, 4, cudaMemRangeAttributeReadMostly, m, bytes));
    CK(cudaMemRangeGetAttribute(&last, 4, cudaMemRangeAttributeLastPrefetchLocation, m, bytes));
    printf("managed hints: read mostly %d, last prefetch location %d\n", read_mostly, last);
    printf("advice on memory that is not managed: %d\n", (int)cudaMemAdvise(dev, bytes, cudaMemAdviseSetReadMostly, dev0));
    cudaGetLastError();
    expect_sum(b, b, m, n, "managed output after hints");
    CK(cudaFree(m));

    CK(cudaFreeHost(a));
    CK(cudaFreeHost(b));
    CK(cudaFreeHost(c));
    CK(cudaFree(dev));
    free(back);
    printf("PASS mapped_memory\n");
    return 0;
}
