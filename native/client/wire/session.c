/* The session: one connection per process to the server (dialed, secured,
 * opened by the handshake once), the outcome every call checks, and a fresh
 * session for a forked child. With several servers in GPUWIRE_SERVER this is
 * the first one's; servers.c opens the others' once it is open
 * (libnvidia-ml.so.1 uses the first alone). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../generated/gw_ops.h"
#include "../diag/env.h"
#include "pushed_pump.h"
#include "stream.h"
#include "tls.h"

pthread_mutex_t gw_conn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t connect_once = PTHREAD_ONCE_INIT;
int gw_conn_fd = -1;
static CUresult conn_status = CUDA_ERROR_NOT_INITIALIZED; /* outcome of gw_connect */
atomic_int gw_conn_lost;
static gw_hello_ok server_info;
static atomic_int initialized;
static atomic_uint next_tid = 1;
uint32_t gw_next_seq = 1;
static __thread uint32_t tls_tid;
int gw_servers_n = 1;

uint32_t gw_stream_thread_tag(void)
{
    if (!tls_tid)
        tls_tid = atomic_fetch_add(&next_tid, 1);
    return tls_tid;
}

static void do_connect(void)
{
    const char *list = getenv("GPUWIRE_SERVER");
    if (!list || !*list)
        list = "127.0.0.1:7750";
    char first[300];
    int servers = gw_servers_entry(list, 0, first, sizeof first);
    const char *spec = servers > 0 ? first : list;
    char host[256], port[64], why[128];
    if (servers < 0 || gw_dial_split(spec, host, sizeof host, port, sizeof port)) {
        gw_env_complain("GPUWIRE_SERVER", list, "HOST, HOST:PORT or [IPV6]:PORT, port 1 to 65535, default 7750, "
                        "or a comma-separated list of them (up to 8 servers)", GW_ENV_NO_SESSION);
        conn_status = CUDA_ERROR_NO_DEVICE;
        return;
    }
#ifndef GW_NVML_CLIENT
    gw_servers_n = servers; /* before the handshake: it shapes what HELLO asks (handshake.c) */
#endif
    /* settings that shape the session are checked before any connection:
     * a bad one fails it, never falls back to something broader */
    int bad = gw_handshake_settings();
    if (gw_tls_settings() || bad) {
        conn_status = CUDA_ERROR_NO_DEVICE;
        return;
    }
    int fd = gw_dial(host, port, why, sizeof why);
    if (fd < 0 && strstr(why, "reset")) { /* accepted, then closed at once */
        gw_log("the gpuwire server at %s closed the connection at once (%s): it may have too many connections "
               "not yet authenticated (--max-preauth); try again. CUDA calls will fail with "
               "CUDA_ERROR_NO_DEVICE", spec, why);
        conn_status = CUDA_ERROR_NO_DEVICE;
        return;
    }
    if (fd < 0) {
        gw_log("cannot reach the gpuwire server at %s (%s); is `gpuwire server` running there? "
               "CUDA calls will fail with CUDA_ERROR_NO_DEVICE", spec, why);
        conn_status = CUDA_ERROR_NO_DEVICE;
        return;
    }
    gw_handshake_clock_start(); /* the answer's time limits count from here (handshake.c) */
    if (gw_tls_client_start(fd, host, spec)) { /* TLS when it applies (tls.c) */
        conn_status = CUDA_ERROR_NO_DEVICE;
        close(fd);
        return;
    }
    conn_status = gw_handshake(fd, spec, &server_info);
    if (conn_status == CUDA_SUCCESS) {
        gw_conn_fd = fd;
        gw_replies_start_drainer();
        gw_dial_remember(host, port);
#ifndef GW_NVML_CLIENT
        if (gw_servers_n > 1) /* the other servers' sessions (servers.c): all of them, or none */
            conn_status = gw_servers_connect_rest(list);
#endif
    } else {
        gw_tls_forget(fd);
        close(fd);
    }
}

/* A forked child must not share the parent's stream: it starts a session of its own. */
static void after_fork_child(void)
{
    /* answers stay valid in the child: same server, same devices */
    gw_batch_after_fork(); /* threads do not survive fork */
    if (gw_conn_fd >= 0)
        close(gw_conn_fd);
    gw_conn_fd = -1;
    gw_conn_lost = 0;
    conn_status = CUDA_ERROR_NOT_INITIALIZED;
    atomic_store(&initialized, 0);
    pthread_mutex_init(&gw_conn_lock, NULL);
    gw_replies_after_fork(); /* the parent's waiting threads are not in the child */
#ifndef GW_NVML_CLIENT
    gw_servers_after_fork(); /* the other servers' links too: the child opens its own */
#endif
    pthread_once_t fresh = PTHREAD_ONCE_INIT;
    connect_once = fresh;
}

__attribute__((constructor)) static void session_init(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
}

CUresult gw_connect(void)
{
    pthread_once(&connect_once, do_connect);
    return conn_status;
}

int gw_initialized(void) { return atomic_load(&initialized); }
void gw_set_initialized(void) { atomic_store(&initialized, 1); }

static __thread int tls_must_wait;

int gw_may_post(void) { return !tls_must_wait; }
void gw_set_must_wait(int on) { tls_must_wait = on; }

#ifndef GW_NVML_CLIENT
static __thread uint64_t pinned_id; /* several servers: one id for an object made on each (servers.h) */

void gw_pin_next_handle_id(uint64_t id) { pinned_id = id; }
#endif

uint64_t gw_new_handle_id(void)
{
#ifndef GW_NVML_CLIENT
    if (pinned_id) {
        uint64_t id = pinned_id;
        pinned_id = 0;
        return id;
    }
#endif
    static atomic_ullong next = 1;
    uint64_t id = GW_CLIENT_ID_BIT | (atomic_fetch_add(&next, 1) << 3);
#ifndef GW_NVML_CLIENT
    if (gw_servers_n > 1) /* named on the thread's route's server: it carries that server's index */
        id = gw_handle_on(id, gw_route_now());
#endif
    return id;
}

const gw_hello_ok *gw_server_info(void)
{
    if (conn_status != CUDA_SUCCESS)
        return NULL;
#ifndef GW_NVML_CLIENT
    if (gw_servers_n > 1 && gw_route_now() != 0)
        return gw_servers_info(gw_route_now());
#endif
    return &server_info;
}

CUresult gw_stream_usable(const gw_req *q)
{
    if (q->oom)
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (q->len - sizeof(gw_hdr) > GW_MAX_PAYLOAD)
        return CUDA_ERROR_INVALID_VALUE;
    if (q->op != GW_OP_cuInit && !gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (q->op >= GW_OP_FIRST_CALL && gw_pushed_in_host_code()) /* CUDA forbids it: docs/host-functions.md */
        return CUDA_ERROR_NOT_PERMITTED;
    CUresult rc = gw_connect();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (gw_conn_lost)
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    return CUDA_SUCCESS;
}

void gw_stream_lose(const char *what)
{
    if (!gw_conn_lost)
        gw_log("lost the connection to the gpuwire server (%s: %s); "
               "CUDA calls now fail with CUDA_ERROR_DEVICE_UNAVAILABLE", what, strerror(errno));
    gw_conn_lost = 1;
}

void gw_io_lost(const char *what) { gw_stream_lose(what); }
