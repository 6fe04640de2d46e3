/* TLS for the client's connections to its gpuwire servers (docs/server.md,
 * "TLS"; every server of GPUWIRE_SERVER, docs/multi-gpu.md). OpenSSL is not a
 * build dependency: libssl.so.3 (or libssl.so.1.1) is dlopen'ed the first
 * time a connection needs TLS. A process without TLS pays one comparison per
 * read or write (gw_tls_open stays 0); with TLS, a lookup of at most
 * GW_SERVERS_MAX entries, the session's connection first.
 *
 * Environment: GPUWIRE_TLS=auto (default: TLS unless the server is on
 * loopback) | 1 | 0, GPUWIRE_TLS_CA=FILE|DIR (else the system's CAs),
 * GPUWIRE_TLS_CERT + GPUWIRE_TLS_KEY (client certificate),
 * GPUWIRE_TLS_SERVER_NAME (name checked instead of GPUWIRE_SERVER's host). */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stdatomic.h>
#include <stddef.h>

#define GW_TLS_HIDDEN __attribute__((visibility("hidden")))

/* One connection's TLS state (tls.c). */
typedef struct gw_tls_conn gw_tls_conn;

/* How many connections speak TLS now (0: none, the plain path). */
GW_TLS_HIDDEN extern _Atomic int gw_tls_open;

/* The TLS state of connection fd, or NULL if it does not speak TLS. */
GW_TLS_HIDDEN gw_tls_conn *gw_tls_find(int fd);

/* gw_tls_find for the I/O paths: a single load while no connection speaks TLS. */
static inline gw_tls_conn *gw_tls_of(int fd)
{
    if (__builtin_expect(!atomic_load_explicit(&gw_tls_open, memory_order_relaxed), 1))
        return NULL;
    return gw_tls_find(fd);
}

/* Reads and checks the GPUWIRE_TLS* settings before connecting: 0, or -1
 * with a line naming the bad one. */
GW_TLS_HIDDEN int gw_tls_settings(void);

/* Called once the TCP connection to `host` (GPUWIRE_SERVER's host part; `server`
 * is the whole text, for messages) is up: decides whether TLS applies and, if
 * so, performs the TLS handshake. 0: go on (TLS or not); -1: refused, with a
 * message already logged. */
GW_TLS_HIDDEN int gw_tls_client_start(int fd, const char *host, const char *server);

/* I/O on a TLS connection (from gw_tls_of): as the plain versions (0 or -1 with errno). */
GW_TLS_HIDDEN int gw_tls_write_all(gw_tls_conn *c, const void *p, size_t n);
GW_TLS_HIDDEN int gw_tls_read_all(gw_tls_conn *c, void *p, size_t n, int timeout_ms);

/* Whether bytes already decrypted wait in OpenSSL's buffer: a frame there
 * makes no poll() on the socket wake (gw_io_poll_in). */
GW_TLS_HIDDEN int gw_tls_buffered(gw_tls_conn *c);

/* Forget the TLS state of fd and free it (before closing fd; nothing else may
 * use fd meanwhile). No-op for a connection without TLS. */
GW_TLS_HIDDEN void gw_tls_forget(int fd);

#endif
