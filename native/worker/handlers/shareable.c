/* POSIX file-descriptor handles of the virtual memory API and of memory
 * pools between a client's processes (cuMemExportToShareableHandle /
 * cuMemImportFromShareableHandle, cuMemPoolExportToShareableHandle /
 * cuMemPoolImportFromShareableHandle, with
 * CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR: NVIDIA's memMapIPCDrv and
 * streamOrderedAllocationIPC, NCCL between processes, JAX's allocator).
 *
 * The driver's fd exists only in the exporting worker; the application holds
 * a stand-in memfd its client made (client/api/shareable.c) naming this
 * server, the exporting session and a random id. The importing worker takes
 * the real fd from the exporting one directly, with SCM_RIGHTS over a Unix
 * socket: each exporting worker listens on <GPUWIRE_FD_DIR>/<session>.sock,
 * where GPUWIRE_FD_DIR is the server's folder for the session's tenant (made
 * by the server, readable by its user alone). That folder is the tenant
 * check: a worker only ever connects inside its own tenant's folder, so an id
 * of another tenant's session, like a forged one, finds no socket or no such
 * id, and the import is CUDA_ERROR_INVALID_VALUE with a log line (the server
 * relays it into its log). The peer's credentials (same user) are checked
 * too. docs/multi-gpu.md says why workers talk directly, not through the
 * server.
 *
 * The exporting worker keeps each exported fd until its session ends (an
 * importer may come at any time; the application's close of its memfd is
 * invisible here), at most EXPORTS_MAX of them.
 *
 * Formats: SHAREABLE_EXPORT, SHAREABLE_IMPORT, SHAREABLE_POOL_EXPORT,
 * SHAREABLE_POOL_IMPORT in codegen/protocol.txt. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../common/sha256.h"
#include "handlers.h"

#define EXPORTS_MAX 4096
#define BROKER_MAGIC 0x31444657475755ull /* the request's first u64: "UWGWFD1" */
#define BROKER_TIMEOUT_S 5               /* an exporting worker that does not answer: give up */

typedef struct exported {
    uint64_t id;
    int fd;
} exported;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static exported g_exports[EXPORTS_MAX];
static size_t g_nexports;
static int g_listen_fd = -1; /* this worker's broker socket, once it exported something */

/* The tenant's broker folder, absolute and short enough for socket paths. */
static const char *fd_dir(void)
{
    const char *d = getenv("GPUWIRE_FD_DIR");
    return d && *d == '/' && strlen(d) < 80 ? d : NULL;
}

/* This session's id as the server named it (GPUWIRE_FD_SESSION: digits), or 0. */
static uint64_t own_session(void)
{
    const char *s = getenv("GPUWIRE_FD_SESSION");
    if (!s || !*s || strlen(s) > 18 || strspn(s, "0123456789") != strlen(s))
        return 0;
    return strtoull(s, NULL, 10);
}

/* Which server a handle was made on: the first 8 bytes of the SHA-256 of its
 * IPC folder's path (a fresh folder every time a server starts), never 0. */
static uint64_t server_tag(void)
{
    const char *d = getenv("GPUWIRE_IPC_DIR");
    if (!d || !*d)
        return 0;
    uint8_t h[32];
    gw_sha256_hash(d, strlen(d), h);
    uint64_t t;
    memcpy(&t, h, sizeof t);
    return t ? t : 1;
}

static int socket_path(struct sockaddr_un *a, uint64_t session)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    const char *d = fd_dir();
    if (!d)
        return -1;
    int n = snprintf(a->sun_path, sizeof a->sun_path, "%s/%llu.sock", d, (unsigned long long)session);
    return n > 0 && (size_t)n < sizeof a->sun_path ? 0 : -1;
}

static void set_timeouts(int s)
{
    struct timeval tv = {BROKER_TIMEOUT_S, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* A duplicate of the fd exported under id, or -1. */
static int dup_exported(uint64_t id)
{
    int fd = -1;
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < g_nexports && id; i++)
        if (g_exports[i].id == id) {
            fd = fcntl(g_exports[i].fd, F_DUPFD_CLOEXEC, 0);
            break;
        }
    pthread_mutex_unlock(&g_lock);
    return fd;
}

/* One importer's request: u64 magic, u64 id -> one status byte (0: the fd
 * rides along with SCM_RIGHTS; 1: no such id here; 2: refused). */
static void serve_one(int s)
{
    set_timeouts(s);
    struct ucred cred;
    socklen_t len = sizeof cred;
    uint64_t req[2];
    unsigned char status = 2;
    int fd = -1;
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != geteuid()) {
        gw_wlog("fd broker: a process of another user asked for a handle: refused");
    } else if (recv(s, req, sizeof req, MSG_WAITALL) != (ssize_t)sizeof req || req[0] != BROKER_MAGIC) {
        gw_wlog("fd broker: a malformed request (pid %d): refused", (int)cred.pid);
    } else if ((fd = dup_exported(req[1])) < 0) {
        status = 1;
        gw_wlog("fd broker: worker pid %d asked for handle id %016llx, which this session never exported: refused",
                (int)cred.pid, (unsigned long long)req[1]);
    } else {
        status = 0;
    }
    struct iovec iov = {&status, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        m.msg_control = ctl.buf;
        m.msg_controllen = sizeof ctl.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    if (sendmsg(s, &m, MSG_NOSIGNAL) != 1)
        gw_wlog("fd broker: could not answer an importer: %s", strerror(errno));
    if (fd >= 0)
        close(fd);
}

static void *broker_thread(void *arg)
{
    int ls = (int)(intptr_t)arg;
    for (;;) {
        int s = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (s < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            gw_wlog("fd broker: accept failed (%s): no more handles leave this session", strerror(errno));
            return NULL;
        }
        serve_one(s);
        close(s);
    }
}

/* This worker's socket and the thread that answers on it, once. Lock held. */
static int start_broker(void)
{
    if (g_listen_fd >= 0)
        return 0;
    struct sockaddr_un a;
    uint64_t sess = own_session();
    if (!sess || socket_path(&a, sess) != 0) {
        gw_wlog("fd broker: no tenant folder or session (GPUWIRE_FD_DIR, GPUWIRE_FD_SESSION; run under gpuwire "
                "server): file-descriptor handles are not offered");
        return -1;
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    unlink(a.sun_path); /* left by nothing alive: session ids are not reused while the server runs */
    pthread_t t;
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 64) != 0 ||
        pthread_create(&t, NULL, broker_thread, (void *)(intptr_t)s) != 0) {
        gw_wlog("fd broker: cannot listen on %s: %s", a.sun_path, strerror(errno));
        close(s);
        return -1;
    }
    pthread_detach(t);
    g_listen_fd = s;
    return 0;
}

/* The broker is ready to hand out this session's fds: 0, or -1 after answering. */
static int broker_ready(gw_call *c)
{
    pthread_mutex_lock(&g_lock);
    int ready = server_tag() && start_broker() == 0;
    pthread_mutex_unlock(&g_lock);
    if (!ready)
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
    return ready ? 0 : -1;
}

/* The driver's fd kept under a fresh random id, answered as SHAREABLE_EXPORT's
 * reply (the pool's is the same); the fd is closed if it cannot be kept. */
static void keep_and_reply(gw_call *c, int fd)
{
    uint64_t id = 0;
    while (!id)
        if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id)
            id = 0;
    pthread_mutex_lock(&g_lock);
    int kept = g_nexports < EXPORTS_MAX;
    if (kept)
        g_exports[g_nexports++] = (exported){id, fd};
    pthread_mutex_unlock(&g_lock);
    if (!kept) {
        gw_wlog("%s: %d exported handles are kept already: CUDA_ERROR_OUT_OF_MEMORY", gw_op_name(c->h.op),
                EXPORTS_MAX);
        close(fd);
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
        return;
    }
    gw_reply_first(c, gw_shareable_export_rep,
                   {.result = CUDA_SUCCESS, .server = server_tag(), .session = own_session(), .id = id});
}

void gw_h_cuMemExportToShareableHandle(gw_call *c)
{
    gw_shareable_export_req q = {0};
    gw_in_part(c, gw_shareable_export_req, &q);
    if (!gw_args_ok(c))
        return;
    if (q.handle_type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) {
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED); /* the client never sends another type */
        return;
    }
    CUresult (*fn)(void *, CUmemGenericAllocationHandle, CUmemAllocationHandleType, unsigned long long) =
        gw_driver_fn(c, c->h.op);
    if (!fn || broker_ready(c))
        return;
    int fd = -1;
    CUresult r = fn(&fd, (CUmemGenericAllocationHandle)q.handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, q.flags);
    if (r != CUDA_SUCCESS)
        gw_reply_result(c, r);
    else
        keep_and_reply(c, fd);
}

void gw_h_cuMemPoolExportToShareableHandle(gw_call *c)
{
    gw_shareable_pool_export_req q = {0};
    CUmemoryPool pool = NULL;
    if (gw_in_part(c, gw_shareable_pool_export_req, &q))
        pool = (CUmemoryPool)gw_handle_lookup(c, GW_HT_CUmemoryPool, q.pool);
    if (!gw_args_ok(c))
        return;
    if (q.handle_type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) {
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
        return;
    }
    CUresult (*fn)(void *, CUmemoryPool, CUmemAllocationHandleType, unsigned long long) = gw_driver_fn(c, c->h.op);
    if (!fn || broker_ready(c))
        return;
    int fd = -1;
    CUresult r = fn(&fd, pool, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, q.flags);
    if (r != CUDA_SUCCESS)
        gw_reply_result(c, r);
    else
        keep_and_reply(c, fd);
}

/* The real fd behind (session, id), from this worker or the exporting one; -1
 * after logging why not. */
static int fetch_fd(uint64_t session, uint64_t id)
{
    if (session == own_session()) {
        int fd = dup_exported(id);
        if (fd < 0)
            gw_wlog("import of a shareable handle refused: this session never exported handle id %016llx",
                    (unsigned long long)id);
        return fd;
    }
    struct sockaddr_un a;
    if (!session || socket_path(&a, session) != 0) {
        gw_wlog("import of a shareable handle refused: no tenant folder (run under gpuwire server)");
        return -1;
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    set_timeouts(s);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        gw_wlog("import of a shareable handle refused: no live session %llu of this tenant exported handles "
                "(another tenant's, ended, or forged)", (unsigned long long)session);
        close(s);
        return -1;
    }
    uint64_t req[2] = {BROKER_MAGIC, id};
    unsigned char status = 2;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {&status, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    int fd = -1;
    if (send(s, req, sizeof req, MSG_NOSIGNAL) == (ssize_t)sizeof req && recvmsg(s, &m, MSG_CMSG_CLOEXEC) == 1) {
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
            if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS && h->cmsg_len == CMSG_LEN(sizeof(int))) {
                memcpy(&fd, CMSG_DATA(h), sizeof fd);
                break;
            }
    }
    close(s);
    if (status != 0 || fd < 0) {
        if (fd >= 0)
            close(fd);
        gw_wlog("import of a shareable handle refused: session %llu of this tenant has no handle id %016llx",
                (unsigned long long)session, (unsigned long long)id);
        return -1;
    }
    return fd;
}

/* The real fd a record names, for an import: -1 after answering
 * CUDA_ERROR_INVALID_VALUE (another server's, another tenant's, forged). */
static int record_fd(gw_call *c, uint64_t server, uint64_t session, uint64_t id)
{
    uint64_t tag = server_tag();
    int fd = -1;
    if (!tag || server != tag)
        gw_wlog("%s refused: the handle was made on another server (or this one before it restarted)",
                gw_op_name(c->h.op));
    else
        fd = fetch_fd(session, id);
    if (fd < 0)
        gw_reply_result(c, CUDA_ERROR_INVALID_VALUE);
    return fd;
}

void gw_h_cuMemImportFromShareableHandle(gw_call *c)
{
    gw_shareable_import_req q = {0};
    gw_in_part(c, gw_shareable_import_req, &q);
    if (!gw_args_ok(c))
        return;
    if (q.handle_type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) {
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
        return;
    }
    CUresult (*fn)(CUmemGenericAllocationHandle *, void *, CUmemAllocationHandleType) = gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    int fd = record_fd(c, q.server, q.session, q.id);
    if (fd < 0)
        return;
    CUmemGenericAllocationHandle h = 0;
    CUresult r = fn(&h, (void *)(intptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
    close(fd); /* the driver keeps what it needs, as an application may close its fd after importing */
    if (r == CUDA_SUCCESS)
        gw_reply_first(c, gw_shareable_import_rep, {.result = r, .handle = (uint64_t)h});
    else
        gw_reply_result(c, r);
}

void gw_h_cuMemPoolImportFromShareableHandle(gw_call *c)
{
    gw_shareable_pool_import_req q = {0};
    gw_in_part(c, gw_shareable_pool_import_req, &q);
    if (!gw_args_ok(c))
        return;
    if (q.handle_type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) {
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
        return;
    }
    CUresult (*fn)(CUmemoryPool *, void *, CUmemAllocationHandleType, unsigned long long) = gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    int fd = record_fd(c, q.server, q.session, q.id);
    if (fd < 0)
        return;
    CUmemoryPool pool = NULL;
    CUresult r = fn(&pool, (void *)(intptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, q.flags);
    close(fd);
    if (r == CUDA_SUCCESS) /* named by the worker, as cuMemPoolCreate's pools are */
        gw_reply_first(c, gw_shareable_pool_import_rep, {.result = r, .pool = gw_handle_id(GW_HT_CUmemoryPool, pool)});
    else
        gw_reply_result(c, r);
}
