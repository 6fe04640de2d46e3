/* Virtual-memory allocations shared between two processes through POSIX file
 * descriptors, as NVIDIA's memMapIPCDrv does it: the parent creates an
 * exportable allocation (cuMemCreate with POSIX_FILE_DESCRIPTOR), maps it,
 * fills it, exports it as an fd and passes the fd with SCM_RIGHTS over a
 * socket pair to a child (this program again, fork + exec); the child
 * imports, maps and sets access, checks the parent's floats with a copy,
 * scales them with a kernel and exits; the parent then reads the child's
 * result, and imports its own fd once more (same process) to read it there
 * too. Through gpuwire each process has a worker of its own on the server
 * and the fd the application passes is the client's stand-in for the
 * driver's (docs/multi-gpu.md).
 *   vmm_ipc                  the parent (runs the child itself)
 *   vmm_ipc child FD         the child: the fd arrives on socket FD
 *   vmm_ipc export PATH      the parent's half alone: serves its fd to each
 *                            process that connects to the Unix socket PATH,
 *                            prints "READY", and on a line on stdin checks
 *                            that an importer scaled the floats
 *   vmm_ipc import PATH      an importer of `export`'s fd (the child's work)
 *   vmm_ipc import PATH forge  through gpuwire: the record of `export`'s fd
 *                            with another id is refused
 *   vmm_ipc forged           fds that are no exported allocation are refused
 *                            (CUDA_ERROR_INVALID_VALUE)
 *   vmm_ipc pool             the same between a parent and a child for a
 *                            memory pool, as streamOrderedAllocationIPC does:
 *                            the pool's fd and an allocation's export data go
 *                            to the child, which imports both, checks and
 *                            scales the floats, frees its import
 *   vmm_ipc pool-child FD    that child
 * Prints "PASS vmm_ipc" last, or "FAIL vmm_ipc: why" and exits 1. */
#define _GNU_SOURCE
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG "vmm_ipc"
#include "driver_check.h"
#include "driver_api_fatbin.h"

static const float FACTOR = 3.0f;

static CUdevice g_dev;
static CUcontext g_ctx;
static size_t g_gran;

static CUmemAllocationProp props(void)
{
    CUmemAllocationProp p;
    memset(&p, 0, sizeof p);
    p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    p.location.id = g_dev;
    p.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    return p;
}

static void start(void)
{
    CK(cuInit(0));
    CK(cuDeviceGet(&g_dev, 0));
    CK(cuCtxCreate(&g_ctx, NULL, 0, g_dev));
    int vmm = 0, fd_ok = 0;
    CK(cuDeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, g_dev));
    CK(cuDeviceGetAttribute(&fd_ok, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, g_dev));
    if (!vmm || !fd_ok)
        FAIL("the device reports virtual memory management %d, POSIX fd handles %d", vmm, fd_ok);
    CUmemAllocationProp p = props();
    CK(cuMemGetAllocationGranularity(&g_gran, &p, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
}

static size_t bytes(void) { return 2 * g_gran; }
static int count(void) { return (int)(bytes() / sizeof(float)); }

/* A reservation with handle h mapped over it and read-write access for the device. */
static CUdeviceptr map(CUmemGenericAllocationHandle h)
{
    CUdeviceptr va = 0;
    CK(cuMemAddressReserve(&va, bytes(), 0, 0, 0));
    CK(cuMemMap(va, bytes(), 0, h, 0));
    CUmemAccessDesc a;
    memset(&a, 0, sizeof a);
    a.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    a.location.id = g_dev;
    a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    CK(cuMemSetAccess(va, bytes(), &a, 1));
    return va;
}

static void unmap(CUdeviceptr va)
{
    CK(cuMemUnmap(va, bytes()));
    CK(cuMemAddressFree(va, bytes()));
}

/* Checks every float is i * factor. */
static void check(CUdeviceptr va, float factor, const char *who)
{
    int n = count();
    float *h = malloc(bytes());
    if (!h)
        FAIL("out of memory");
    CK(cuMemcpyDtoH(h, va, bytes()));
    for (int i = 0; i < n; i++)
        if (h[i] != (float)i * factor)
            FAIL("%s: element %d is %g, expected %g", who, i, h[i], (float)i * factor);
    free(h);
}

static void send_fd(int sock, int fd)
{
    char byte = 'F';
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    if (sendmsg(sock, &m, MSG_NOSIGNAL) != 1)
        FAIL("sendmsg of the fd failed");
}

static int recv_fd(int sock)
{
    char byte = 0;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    if (recvmsg(sock, &m, 0) != 1)
        FAIL("no fd arrived");
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (!c || c->cmsg_type != SCM_RIGHTS)
        FAIL("the message carried no fd");
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

/* The importer's work: import, map, check the exporter's floats, scale them. */
static void import_and_scale(int fd)
{
    CUmemGenericAllocationHandle h = 0;
    CK(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
    close(fd);
    CUmemAllocationProp got;
    CK(cuMemGetAllocationPropertiesFromHandle(&got, h));
    if (got.location.type != CU_MEM_LOCATION_TYPE_DEVICE || got.location.id != g_dev)
        FAIL("the imported allocation is on location %d/%d", (int)got.location.type, got.location.id);
    CUdeviceptr va = map(h);
    check(va, 1.0f, "importer, before the kernel");
    CUmodule mod;
    CUfunction f;
    CK(cuModuleLoadData(&mod, da_fatbin));
    CK(cuModuleGetFunction(&f, mod, "da_scale"));
    float factor = FACTOR;
    int n = count();
    void *params[] = {&va, &factor, &n};
    CK(cuLaunchKernel(f, (unsigned)(n + 255) / 256, 1, 1, 256, 1, 1, 0, NULL, params, NULL));
    CK(cuCtxSynchronize());
    unmap(va);
    CK(cuMemRelease(h));
    CK(cuModuleUnload(mod));
    printf("importer: read the exporter's floats and scaled them\n");
}

/* The exporter's allocation, mapped and filled with 0, 1, 2, ...; its fd in *fd. */
static CUdeviceptr export_filled(CUmemGenericAllocationHandle *h, int *fd)
{
    CUmemAllocationProp p = props();
    CK(cuMemCreate(h, bytes(), &p, 0));
    CUdeviceptr va = map(*h);
    int n = count();
    float *host = malloc(bytes());
    if (!host)
        FAIL("out of memory");
    for (int i = 0; i < n; i++)
        host[i] = (float)i;
    CK(cuMemcpyHtoD(va, host, bytes()));
    free(host);
    *fd = -1;
    CK(cuMemExportToShareableHandle(fd, *h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
    if (*fd < 0)
        FAIL("the exported fd is %d", *fd);
    return va;
}

/* The same process imports its own fd: a second mapping of the same bytes. */
static void reimport(int fd, float factor)
{
    CUmemGenericAllocationHandle again = 0;
    CK(cuMemImportFromShareableHandle(&again, (void *)(uintptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
    CUdeviceptr va2 = map(again);
    check(va2, factor, "the exporter's own import");
    unmap(va2);
    CK(cuMemRelease(again));
}

static int parent(const char *self)
{
    CUmemGenericAllocationHandle h;
    int fd;
    CUdeviceptr va = export_filled(&h, &fd);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        FAIL("socketpair");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        FAIL("fork");
    if (pid == 0) { /* a fresh process, as memMapIPCDrv's children are */
        close(sv[0]);
        char arg[16];
        snprintf(arg, sizeof arg, "%d", sv[1]);
        execl(self, self, "child", arg, (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    send_fd(sv[0], fd);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        FAIL("the child failed (status %#x)", status);
    close(sv[0]);
    check(va, FACTOR, "parent, after the child's kernel");
    reimport(fd, FACTOR);
    close(fd);
    unmap(va);
    CK(cuMemRelease(h));
    printf("parent: saw the child's kernel write its allocation\n");
    return 0;
}

static int child(const char *sockarg)
{
    int sock = atoi(sockarg);
    int fd = recv_fd(sock);
    start();
    import_and_scale(fd);
    return 0;
}

/* ---- memory pools: the pool's fd with SCM_RIGHTS, an allocation's 64 bytes of export data beside it ---- */

static void pool_child_work(int fd, const CUmemPoolPtrExportData *data)
{
    CUmemoryPool pool;
    CK(cuMemPoolImportFromShareableHandle(&pool, (void *)(uintptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
    close(fd);
    CUdeviceptr d = 0;
    CUmemPoolPtrExportData copy = *data;
    CK(cuMemPoolImportPointer(&d, pool, &copy));
    check(d, 1.0f, "pool importer, before the kernel");
    CUmodule mod;
    CUfunction f;
    CK(cuModuleLoadData(&mod, da_fatbin));
    CK(cuModuleGetFunction(&f, mod, "da_scale"));
    float factor = FACTOR;
    int n = count();
    void *params[] = {&d, &factor, &n};
    CK(cuLaunchKernel(f, (unsigned)(n + 255) / 256, 1, 1, 256, 1, 1, 0, NULL, params, NULL));
    CK(cuCtxSynchronize());
    CK(cuMemFree(d)); /* an imported pointer is freed where it was imported */
    CK(cuMemPoolDestroy(pool));
    CK(cuModuleUnload(mod));
    printf("pool importer: read the exporter's floats and scaled them\n");
}

static int pool_child(const char *sockarg)
{
    int sock = atoi(sockarg);
    int fd = recv_fd(sock);
    CUmemPoolPtrExportData data;
    if (recv(sock, &data, sizeof data, MSG_WAITALL) != (ssize_t)sizeof data)
        FAIL("the export data did not arrive");
    start();
    pool_child_work(fd, &data);
    return 0;
}

static int pool_parent(const char *self)
{
    int handle_types = 0;
    CK(cuDeviceGetAttribute(&handle_types, CU_DEVICE_ATTRIBUTE_MEMPOOL_SUPPORTED_HANDLE_TYPES, g_dev));
    if (!(handle_types & CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR))
        FAIL("the device's pools offer handle types %#x, no POSIX fd", (unsigned)handle_types);
    CUmemPoolProps pp;
    memset(&pp, 0, sizeof pp);
    pp.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    pp.handleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    pp.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    pp.location.id = g_dev;
    CUmemoryPool pool;
    CK(cuMemPoolCreate(&pool, &pp));
    CUstream s;
    CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CUdeviceptr d = 0;
    CK(cuMemAllocFromPoolAsync(&d, bytes(), pool, s));
    int n = count();
    float *host = malloc(bytes());
    if (!host)
        FAIL("out of memory");
    for (int i = 0; i < n; i++)
        host[i] = (float)i;
    CK(cuMemcpyHtoDAsync(d, host, bytes(), s));
    CK(cuStreamSynchronize(s));
    free(host);
    int fd = -1;
    CK(cuMemPoolExportToShareableHandle(&fd, pool, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
    CUmemPoolPtrExportData data;
    CK(cuMemPoolExportPointer(&data, d));
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        FAIL("socketpair");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        FAIL("fork");
    if (pid == 0) {
        close(sv[0]);
        char arg[16];
        snprintf(arg, sizeof arg, "%d", sv[1]);
        execl(self, self, "pool-child", arg, (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    send_fd(sv[0], fd);
    if (send(sv[0], &data, sizeof data, MSG_NOSIGNAL) != (ssize_t)sizeof data)
        FAIL("send of the export data failed");
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        FAIL("the pool child failed (status %#x)", status);
    close(sv[0]);
    close(fd);
    check(d, FACTOR, "pool parent, after the child's kernel");
    CK(cuMemFreeAsync(d, s));
    CK(cuStreamSynchronize(s));
    CK(cuStreamDestroy(s));
    CK(cuMemPoolDestroy(pool));
    printf("pool parent: saw the child's kernel write its pool allocation\n");
    return 0;
}

static int listen_on(const char *path)
{
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a.sun_path)
        FAIL("socket path too long");
    strcpy(a.sun_path, path);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    unlink(path);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 8) != 0)
        FAIL("cannot listen on %s", path);
    return s;
}

static int exporter(const char *path)
{
    CUmemGenericAllocationHandle h;
    int fd;
    CUdeviceptr va = export_filled(&h, &fd);
    int ls = listen_on(path);
    printf("READY\n");
    fflush(stdout);
    for (;;) { /* hand the fd to every importer until stdin says to check */
        struct pollfd p[2] = {{ls, POLLIN, 0}, {0, POLLIN, 0}};
        if (poll(p, 2, -1) < 0)
            FAIL("poll");
        if (p[1].revents)
            break;
        if (p[0].revents) {
            int s = accept(ls, NULL, NULL);
            if (s >= 0) {
                send_fd(s, fd);
                close(s);
            }
        }
    }
    close(ls);
    unlink(path);
    check(va, FACTOR, "exporter, after the importer's kernel");
    close(fd);
    unmap(va);
    CK(cuMemRelease(h));
    return 0;
}

static void expect_refused(int fd, const char *what, int say);

/* An importer of `export`'s fd; with forge, of the same record with another
 * id (through gpuwire only: a native fd holds no record), which the
 * exporting session's worker must refuse. */
static int importer(const char *path, int forge)
{
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0)
        FAIL("cannot connect to %s", path);
    int fd = recv_fd(s);
    close(s);
    start();
    if (forge) {
        unsigned char rec[32];
        if (pread(fd, rec, sizeof rec, 0) != (ssize_t)sizeof rec || memcmp(rec, "GWSHFD1", 8) != 0)
            FAIL("forge: the fd holds no gpuwire record (not run through gpuwire?)");
        rec[24] ^= 1; /* the id's lowest bit */
        int f = memfd_create("forged-record", 0);
        if (f < 0 || pwrite(f, rec, sizeof rec, 0) != (ssize_t)sizeof rec)
            FAIL("memfd");
        expect_refused(f, "another session's record with a forged id", 1);
        close(f);
        close(fd);
        return 0;
    }
    import_and_scale(fd);
    return 0;
}

/* An import of fd must fail; the error code is printed (say: 1) so that a
 * run through gpuwire is compared with the driver's own. */
static void expect_refused(int fd, const char *what, int say)
{
    CUmemGenericAllocationHandle h = 0;
    CUresult r = cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
    if (r == CUDA_SUCCESS)
        FAIL("%s was imported", what);
    if (say)
        printf("forged: %s refused (%d)\n", what, (int)r);
}

/* Fds that are not an exported allocation. Through gpuwire the exported fd
 * holds gpuwire's record (magic "GWSHFD1", then server, session and id as
 * u64s): the same record with another id must be refused by the worker too
 * (silently here: a native run has no such record, and gpu-check compares
 * the two outputs; the server logs the refusal). */
static int forged(void)
{
    CUmemGenericAllocationHandle h;
    int fd;
    CUdeviceptr va = export_filled(&h, &fd);
    int plain = memfd_create("not-an-allocation", 0);
    if (plain < 0 || ftruncate(plain, (off_t)bytes()) != 0)
        FAIL("memfd");
    expect_refused(plain, "a memfd of the right size", 1);
    close(plain);
    int pipefd[2];
    if (pipe(pipefd) != 0)
        FAIL("pipe");
    expect_refused(pipefd[0], "a pipe", 1);
    close(pipefd[0]);
    close(pipefd[1]);
    unsigned char rec[32];
    if (pread(fd, rec, sizeof rec, 0) == (ssize_t)sizeof rec && !memcmp(rec, "GWSHFD1", 8)) {
        rec[24] ^= 1; /* the id's lowest bit */
        int f = memfd_create("forged-record", 0);
        if (f < 0 || pwrite(f, rec, sizeof rec, 0) != (ssize_t)sizeof rec)
            FAIL("memfd");
        expect_refused(f, "a gpuwire record with a forged id", 0);
        close(f);
    }
    close(fd);
    unmap(va);
    CK(cuMemRelease(h));
    /* the driver's own refusals around it */
    CUmemAllocationProp p = props();
    CUmemGenericAllocationHandle bad;
    if (cuMemCreate(&bad, g_gran + 4096, &p, 0) != CUDA_ERROR_INVALID_VALUE)
        FAIL("cuMemCreate of a size that is not whole granules did not give CUDA_ERROR_INVALID_VALUE");
    int out = -1;
    CK(cuMemCreate(&bad, g_gran, &p, 0));
    if (cuMemExportToShareableHandle(&out, bad, CU_MEM_HANDLE_TYPE_FABRIC, 0) == CUDA_SUCCESS)
        FAIL("a fabric handle was exported");
    CK(cuMemRelease(bad));
    return 0;
}

int main(int argc, char **argv)
{
    int rc;
    if (argc == 3 && !strcmp(argv[1], "child"))
        rc = child(argv[2]);
    else if ((argc == 3 || (argc == 4 && !strcmp(argv[3], "forge"))) && !strcmp(argv[1], "import"))
        rc = importer(argv[2], argc == 4);
    else if (argc == 3 && !strcmp(argv[1], "export")) {
        start();
        rc = exporter(argv[2]);
    } else if (argc == 3 && !strcmp(argv[1], "pool-child")) {
        rc = pool_child(argv[2]);
    } else if (argc == 2 && !strcmp(argv[1], "pool")) {
        start();
        rc = pool_parent("/proc/self/exe");
    } else if (argc == 2 && !strcmp(argv[1], "forged")) {
        start();
        rc = forged();
    } else if (argc == 1) {
        start();
        rc = parent("/proc/self/exe");
    } else {
        FAIL("usage: vmm_ipc [child FD | export PATH | import PATH [forge] | forged | pool | pool-child FD]");
    }
    CK(cuCtxDestroy(g_ctx));
    printf("PASS vmm_ipc\n");
    return rc;
}
