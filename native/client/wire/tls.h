/* TLS for the client's connection to the gpuwire server (docs/server.md,
 * "TLS"). OpenSSL is not a build dependency: libssl.so.3 (or libssl.so.1.1)
 * is dlopen'ed the first time a connection needs TLS. A process without TLS
 * pays one comparison per read or write (gw_tls_fd stays -1).
 *
 * Environment: GPUWIRE_TLS=auto (default: TLS unless the server is on
 * loopback) | 1 | 0, GPUWIRE_TLS_CA=FILE|DIR (else the system's CAs),
 * GPUWIRE_TLS_CERT + GPUWIRE_TLS_KEY (client certificate),
 * GPUWIRE_TLS_SERVER_NAME (name checked instead of GPUWIRE_SERVER's host). */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stddef.h>

#define GW_TLS_HIDDEN __attribute__((visibility("hidden")))

/* The connection that speaks TLS, or -1. */
GW_TLS_HIDDEN extern int gw_tls_fd;

/* Reads and checks the GPUWIRE_TLS* settings before connecting: 0, or -1
 * with a line naming the bad one. */
GW_TLS_HIDDEN int gw_tls_settings(void);

/* Called once the TCP connection to `host` (GPUWIRE_SERVER's host part; `server`
 * is the whole text, for messages) is up: decides whether TLS applies and, if
 * so, performs the TLS handshake. 0: go on (TLS or not); -1: refused, with a
 * message already logged. */
GW_TLS_HIDDEN int gw_tls_client_start(int fd, const char *host, const char *server);

/* I/O on gw_tls_fd: as the plain versions (0 or -1 with errno). */
GW_TLS_HIDDEN int gw_tls_write_all(const void *p, size_t n);
GW_TLS_HIDDEN int gw_tls_read_all(void *p, size_t n, int timeout_ms);

/* Forget the TLS state of fd (before closing it). */
GW_TLS_HIDDEN void gw_tls_forget(int fd);

#endif
