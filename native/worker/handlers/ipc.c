/* CUDA IPC handles between an application's processes (issue 14: simpleIPC,
 * NCCL between processes). Each client process has a worker of its own on
 * the server, so the driver's 64-byte handles work between two workers as
 * between two processes natively. But workers of different tenants share the
 * machine, and a handle is only bytes: one tenant must not open another's
 * memory or events by guessing or replaying them. So a worker that makes a
 * handle registers it, under the SHA-256 of its bytes, in the server's IPC
 * folder (GPUWIRE_IPC_DIR, created by the server for its own user) with its
 * session's tenant (GPUWIRE_IPC_TENANT); a worker opens only a handle
 * registered by its own tenant. Without that folder nothing opens.
 *
 * The wire is the generated client's (codegen/annotations.txt: @worker). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/sha256.h"
#include "handlers.h"

#define TENANT_MAX 128

static const char *ipc_dir(void)
{
    const char *d = getenv("GPUWIRE_IPC_DIR");
    return d && *d == '/' && strlen(d) < 3000 ? d : NULL;
}

static const char *tenant(void)
{
    const char *t = getenv("GPUWIRE_IPC_TENANT");
    return t && *t && strlen(t) < TENANT_MAX && !strchr(t, '\n') ? t : NULL;
}

static void entry_path(char *out, size_t cap, const char *dir, const void *handle, size_t n)
{
    uint8_t h[32];
    gw_sha256_hash(handle, n, h);
    int k = snprintf(out, cap, "%s/", dir);
    for (int i = 0; i < 32 && k + 2 < (int)cap; i++)
        k += snprintf(out + k, cap - (size_t)k, "%02x", h[i]);
}

/* After the driver made a handle: registered for this session's tenant (the
 * file is replaced whole, so a reader never sees half of it). */
static void register_handle(const void *handle, size_t n)
{
    const char *dir = ipc_dir(), *t = tenant();
    if (!dir || !t)
        return;
    char path[3200], tmp[3300];
    entry_path(path, sizeof path, dir, handle, n);
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        gw_wlog("ipc: cannot register a handle (%s): no other process will open it", strerror(errno));
        return;
    }
    size_t len = strlen(t);
    int ok = write(fd, t, len) == (ssize_t)len;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        gw_wlog("ipc: cannot register a handle: no other process will open it");
    }
}

/* Before opening a handle: 1 if a session of this tenant made it. */
static int may_open(const void *handle, size_t n, const char *what)
{
    const char *dir = ipc_dir(), *t = tenant();
    if (!dir || !t) {
        gw_wlog("ipc: %s refused: this worker has no IPC registry (run under gpuwire server)", what);
        return 0;
    }
    char path[3200], owner[TENANT_MAX + 1];
    entry_path(path, sizeof path, dir, handle, n);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, owner, TENANT_MAX) : -1;
    if (fd >= 0)
        close(fd);
    if (got < 0) {
        gw_wlog("ipc: %s refused: no session of this server made that handle", what);
        return 0;
    }
    owner[got] = '\0';
    if (strcmp(owner, t) != 0) {
        gw_wlog("ipc: %s refused: the handle belongs to another tenant", what);
        return 0;
    }
    return 1;
}

/* The handle argument of an open: exactly one handle's bytes. */
static int read_handle(gw_call *c, void *out, size_t n)
{
    size_t count;
    const void *p = gw_in_array(c, n, &count);
    if (!c->bad && (!p || count != 1))
        gw_call_fail(c, "%s: the handle is not one %zu-byte handle", gw_op_name(c->h.op), n);
    if (c->bad)
        return -1;
    memcpy(out, p, n);
    return 0;
}

void gw_h_cuIpcGetMemHandle(gw_call *c)
{
    size_t n;
    CUipcMemHandle *out = gw_out_array(c, sizeof(CUipcMemHandle), &n);
    CUdeviceptr dptr = (CUdeviceptr)gw_in_u64(c);
    if (!c->bad && (!out || n < 1))
        gw_call_fail(c, "cuIpcGetMemHandle: no room for the handle");
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUipcMemHandle *, CUdeviceptr) = gw_driver_fn(c, GW_OP_cuIpcGetMemHandle);
    if (!fn)
        return;
    CUresult r = fn(out, dptr);
    if (r == CUDA_SUCCESS)
        register_handle(out, sizeof *out);
    gw_reply_result(c, r);
    if (r == CUDA_SUCCESS)
        gw_reply_bytes(c, out, sizeof *out);
}

void gw_h_cuIpcOpenMemHandle_v2(gw_call *c)
{
    size_t n;
    CUdeviceptr *out = gw_out_array(c, sizeof(CUdeviceptr), &n);
    CUipcMemHandle h;
    if (read_handle(c, &h, sizeof h))
        return;
    unsigned flags = (unsigned)gw_in_u64(c);
    if (!c->bad && (!out || n < 1))
        gw_call_fail(c, "cuIpcOpenMemHandle: no room for the address");
    if (!gw_args_ok(c))
        return;
    if (!may_open(&h, sizeof h, "cuIpcOpenMemHandle")) {
        gw_reply_result(c, CUDA_ERROR_INVALID_VALUE);
        return;
    }
    CUresult (*fn)(CUdeviceptr *, CUipcMemHandle, unsigned) = gw_driver_fn(c, GW_OP_cuIpcOpenMemHandle_v2);
    if (!fn)
        return;
    CUresult r = fn(out, h, flags);
    gw_reply_result(c, r);
    if (r == CUDA_SUCCESS)
        gw_reply_bytes(c, out, sizeof *out);
}

void gw_h_cuIpcGetEventHandle(gw_call *c)
{
    size_t n;
    CUipcEventHandle *out = gw_out_array(c, sizeof(CUipcEventHandle), &n);
    CUevent ev = (CUevent)gw_in_handle(c, GW_HT_CUevent);
    if (!c->bad && (!out || n < 1))
        gw_call_fail(c, "cuIpcGetEventHandle: no room for the handle");
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUipcEventHandle *, CUevent) = gw_driver_fn(c, GW_OP_cuIpcGetEventHandle);
    if (!fn)
        return;
    CUresult r = fn(out, ev);
    if (r == CUDA_SUCCESS)
        register_handle(out, sizeof *out);
    gw_reply_result(c, r);
    if (r == CUDA_SUCCESS)
        gw_reply_bytes(c, out, sizeof *out);
}

/* The client names the event (posted when it may be): a refusal surfaces at
 * its thread's next synchronization, as any posted failure does. */
void gw_h_cuIpcOpenEventHandle(gw_call *c)
{
    uint64_t id = gw_in_u64(c);
    CUipcEventHandle h;
    if (read_handle(c, &h, sizeof h) || !gw_args_ok(c))
        return;
    if (!may_open(&h, sizeof h, "cuIpcOpenEventHandle")) {
        gw_reply_result(c, CUDA_ERROR_INVALID_VALUE);
        return;
    }
    CUresult (*fn)(CUevent *, CUipcEventHandle) = gw_driver_fn(c, GW_OP_cuIpcOpenEventHandle);
    if (!fn)
        return;
    CUevent ev = NULL;
    CUresult r = fn(&ev, h);
    gw_reply_result(c, r);
    if (r == CUDA_SUCCESS)
        gw_handle_bind(c, GW_HT_CUevent, id, ev);
}
