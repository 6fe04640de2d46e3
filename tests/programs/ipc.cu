// CUDA IPC between two processes of one application, as NVIDIA's simpleIPC
// does it: the parent fills device memory, hands its cudaIpcMemHandle_t to a
// child process (this program again, the handle in hex on its command line),
// the child opens it, checks the parent's bytes, writes its own and closes
// it; the parent then sees the child's bytes in its allocation. Through
// gpuwire each process has a worker of its own on the server, so the handle
// travels between two workers as it would between two processes natively.
//   ipc            the parent (runs the child itself)
//   ipc child HEX  the child
//   ipc export     the parent's half alone: prints "HANDLE <hex>", waits for a
//                  line on stdin (a child run meanwhile by whoever tests), then
//                  checks the child's bytes (tests/e2e/test_ipc.py: tenants)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG "ipc"
#include "check.h"

static const size_t N = 1 << 18; // ints: 1 MiB

static void to_hex(const cudaIpcMemHandle_t *h, char *out)
{
    const unsigned char *b = (const unsigned char *)h;
    for (size_t i = 0; i < sizeof *h; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static int from_hex(const char *s, cudaIpcMemHandle_t *h)
{
    unsigned char *b = (unsigned char *)h;
    if (strlen(s) != 2 * sizeof *h)
        return -1;
    for (size_t i = 0; i < sizeof *h; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        b[i] = (unsigned char)v;
    }
    return 0;
}

static int child(const char *hex)
{
    cudaIpcMemHandle_t h;
    if (from_hex(hex, &h))
        FAIL("child: bad handle text");
    int *d = NULL;
    CK(cudaIpcOpenMemHandle((void **)&d, h, cudaIpcMemLazyEnablePeerAccess));
    int *host = (int *)malloc(N * sizeof(int));
    CK(cudaMemcpy(host, d, N * sizeof(int), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < N; i++)
        if (host[i] != (int)(i * 3 + 1))
            FAIL("child: element %zu is %d, the parent wrote %d", i, host[i], (int)(i * 3 + 1));
    for (size_t i = 0; i < N; i++)
        host[i] = (int)(N - i);
    CK(cudaMemcpy(d, host, N * sizeof(int), cudaMemcpyHostToDevice));
    CK(cudaDeviceSynchronize());
    CK(cudaIpcCloseMemHandle(d));
    free(host);
    printf("child: read the parent's bytes and wrote its own\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "child"))
        return child(argv[2]);
    int export_only = argc == 2 && !strcmp(argv[1], "export");
    int *d = NULL;
    CK(cudaMalloc((void **)&d, N * sizeof(int)));
    int *host = (int *)malloc(N * sizeof(int));
    for (size_t i = 0; i < N; i++)
        host[i] = (int)(i * 3 + 1);
    CK(cudaMemcpy(d, host, N * sizeof(int), cudaMemcpyHostToDevice));
    cudaIpcMemHandle_t h;
    CK(cudaIpcGetMemHandle(&h, d));
    // a process cannot open its own handle
    int *self = NULL;
    if (cudaIpcOpenMemHandle((void **)&self, h, cudaIpcMemLazyEnablePeerAccess) == cudaSuccess)
        FAIL("the process that made the handle could open it");
    cudaGetLastError();
    char hex[2 * sizeof h + 1];
    to_hex(&h, hex);
    fflush(stdout);
    if (export_only) {
        printf("HANDLE %s\n", hex);
        fflush(stdout);
        char line[16];
        if (!fgets(line, sizeof line, stdin))
            FAIL("export: no line on stdin");
    } else {
        pid_t pid = fork();
        if (pid == 0) { // a fresh process, as simpleIPC starts its children
            execl("/proc/self/exe", argv[0], "child", hex, (char *)NULL);
            _exit(127);
        }
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            FAIL("the child failed (status %d)", st);
    }
    CK(cudaMemcpy(host, d, N * sizeof(int), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < N; i++)
        if (host[i] != (int)(N - i))
            FAIL("element %zu is %d after the child wrote %d", i, host[i], (int)(N - i));
    printf("parent: the child's bytes are in the parent's allocation\n");
    CK(cudaFree(d));
    free(host);
    PASS();
}
