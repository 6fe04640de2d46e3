/* TLS for the client's connections to its servers (one per server of
 * GPUWIRE_SERVER), through OpenSSL loaded at run time (see tls.h). Each
 * connection that speaks TLS has an entry of its own in a small table: its
 * socket, its SSL object and its lock. The handshake runs on the non-blocking
 * socket with a deadline; afterwards the socket stays non-blocking and reads
 * and writes take turns on the connection's SSL object under its lock (a reply
 * reader and a sender may run at once). Nothing after the handshake is
 * special: the call stream is the same bytes as without TLS. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../diag/env.h"
#include "stream.h"
#include "tls.h"


/* OpenSSL's ABI constants (stable since 1.1.0) */
enum {
    X_SSL_ERROR_SSL = 1, X_SSL_ERROR_WANT_READ = 2, X_SSL_ERROR_WANT_WRITE = 3, X_SSL_ERROR_SYSCALL = 5,
    X_SSL_ERROR_ZERO_RETURN = 6, X_SSL_VERIFY_PEER = 1, X_SSL_FILETYPE_PEM = 1,
    X_SSL_CTRL_SET_TLSEXT_HOSTNAME = 55, X_TLSEXT_NAMETYPE_host_name = 0, X_SSL_CTRL_SET_MIN_PROTO_VERSION = 123,
    X_TLS1_2_VERSION = 0x0303,
};
#define X_OPENSSL_INIT_NO_ATEXIT 0x00080000ULL
#define X_OPENSSL_INIT_LOAD_SSL_STRINGS 0x00200000ULL
#define X_OPENSSL_INIT_LOAD_CRYPTO_STRINGS 0x00000002ULL

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

/* the OpenSSL functions used, looked up by name */
static struct {
    int (*init_ssl)(uint64_t, const void *);
    int (*openssl_atexit)(void (*)(void));
    const void *(*client_method)(void);
    SSL_CTX *(*ctx_new)(const void *);
    long (*ctx_ctrl)(SSL_CTX *, int, long, void *);
    void (*ctx_set_verify)(SSL_CTX *, int, void *);
    int (*ctx_load_verify)(SSL_CTX *, const char *, const char *);
    int (*ctx_default_verify)(SSL_CTX *);
    int (*ctx_use_chain)(SSL_CTX *, const char *);
    int (*ctx_use_key)(SSL_CTX *, const char *, int);
    int (*ctx_check_key)(const SSL_CTX *);
    SSL *(*ssl_new)(SSL_CTX *);
    int (*set_fd)(SSL *, int);
    int (*set_rfd)(SSL *, int);
    long (*ssl_ctrl)(SSL *, int, long, void *);
    int (*set1_host)(SSL *, const char *);
    void *(*get0_param)(SSL *);
    int (*param_set1_ip_asc)(void *, const char *);
    int (*connect)(SSL *);
    int (*read)(SSL *, void *, int);
    int (*write)(SSL *, const void *, int);
    int (*get_error)(const SSL *, int);
    int (*pending)(const SSL *);
    long (*verify_result)(const SSL *);
    const char *(*verify_string)(long);
    const char *(*version)(const SSL *);
    const void *(*cipher)(const SSL *);
    const char *(*cipher_name)(const void *);
    unsigned long (*err_get)(void);
    void (*err_string)(unsigned long, char *, size_t);
    const char *(*err_reason)(unsigned long);
    void (*err_clear)(void);
    void (*ssl_free)(SSL *);
    void (*ctx_free)(SSL_CTX *);
} ossl;

/* One connection that speaks TLS. An entry is filled while fd is -1 and
 * published by storing fd last (release); a reader finds it by fd (acquire).
 * Lanes are plaintext only (the server grants a TLS session none), so one
 * entry per server is enough. */
struct gw_tls_conn {
    _Atomic int fd;
    SSL *ssl;
    SSL_CTX *ctx;
    pthread_mutex_t lock; /* the reply reader and a sender take turns on ssl */
    int told;             /* an OpenSSL error was logged for this connection */
    char server[300];     /* for messages */
};
#define TLS_CONNS GW_SERVERS_MAX
static gw_tls_conn conns[TLS_CONNS];
_Atomic int gw_tls_open; /* entries in use */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER; /* adding and forgetting entries */
static volatile int tls_closed; /* OpenSSL was cleaned up (exit() in a process that initialised it first) */

__attribute__((constructor)) static void conns_init(void)
{
    for (int i = 0; i < TLS_CONNS; i++) {
        atomic_store(&conns[i].fd, -1);
        pthread_mutex_init(&conns[i].lock, NULL);
    }
}

gw_tls_conn *gw_tls_find(int fd)
{
    if (fd < 0)
        return NULL;
    for (int i = 0; i < TLS_CONNS; i++) /* the session's connection, the first filled, is entry 0 */
        if (atomic_load_explicit(&conns[i].fd, memory_order_acquire) == fd)
            return &conns[i];
    return NULL;
}

static const char *load_openssl(void)
{
    static char why[600];
    static const char *const names[] = {"libssl.so.3", "libssl.so.1.1"};
    void *h = NULL;
    char tried[400] = "";
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !h; i++) {
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *e = dlerror();
            snprintf(tried + strlen(tried), sizeof tried - strlen(tried), "%s%s", i ? "; " : "", e ? e : names[i]);
        }
    }
    if (!h) {
        snprintf(why, sizeof why, "TLS needs OpenSSL's libssl.so.3 (or libssl.so.1.1), which could not be loaded "
                                  "(%s): install it (e.g. apt install libssl3), or set GPUWIRE_TLS=0 for a "
                                  "plaintext server on a trusted network", tried);
        return why;
    }
    struct {
        void **slot;
        const char *name;
    } syms[] = {
        {(void **)&ossl.init_ssl, "OPENSSL_init_ssl"},
        {(void **)&ossl.openssl_atexit, "OPENSSL_atexit"},
        {(void **)&ossl.client_method, "TLS_client_method"},
        {(void **)&ossl.ctx_new, "SSL_CTX_new"},
        {(void **)&ossl.ctx_ctrl, "SSL_CTX_ctrl"},
        {(void **)&ossl.ctx_set_verify, "SSL_CTX_set_verify"},
        {(void **)&ossl.ctx_load_verify, "SSL_CTX_load_verify_locations"},
        {(void **)&ossl.ctx_default_verify, "SSL_CTX_set_default_verify_paths"},
        {(void **)&ossl.ctx_use_chain, "SSL_CTX_use_certificate_chain_file"},
        {(void **)&ossl.ctx_use_key, "SSL_CTX_use_PrivateKey_file"},
        {(void **)&ossl.ctx_check_key, "SSL_CTX_check_private_key"},
        {(void **)&ossl.ssl_new, "SSL_new"},
        {(void **)&ossl.set_fd, "SSL_set_fd"},
        {(void **)&ossl.set_rfd, "SSL_set_rfd"},
        {(void **)&ossl.ssl_ctrl, "SSL_ctrl"},
        {(void **)&ossl.set1_host, "SSL_set1_host"},
        {(void **)&ossl.get0_param, "SSL_get0_param"},
        {(void **)&ossl.param_set1_ip_asc, "X509_VERIFY_PARAM_set1_ip_asc"},
        {(void **)&ossl.connect, "SSL_connect"},
        {(void **)&ossl.read, "SSL_read"},
        {(void **)&ossl.write, "SSL_write"},
        {(void **)&ossl.get_error, "SSL_get_error"},
        {(void **)&ossl.pending, "SSL_pending"},
        {(void **)&ossl.verify_result, "SSL_get_verify_result"},
        {(void **)&ossl.verify_string, "X509_verify_cert_error_string"},
        {(void **)&ossl.version, "SSL_get_version"},
        {(void **)&ossl.cipher, "SSL_get_current_cipher"},
        {(void **)&ossl.cipher_name, "SSL_CIPHER_get_name"},
        {(void **)&ossl.err_get, "ERR_get_error"},
        {(void **)&ossl.err_string, "ERR_error_string_n"},
        {(void **)&ossl.err_reason, "ERR_reason_error_string"},
        {(void **)&ossl.err_clear, "ERR_clear_error"},
        {(void **)&ossl.ssl_free, "SSL_free"},
        {(void **)&ossl.ctx_free, "SSL_CTX_free"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(h, syms[i].name); /* libcrypto's come through libssl's dependencies */
        if (!*syms[i].slot) {
            snprintf(why, sizeof why, "the OpenSSL library found lacks %s (OpenSSL 1.1.1 or newer is needed for TLS)",
                     syms[i].name);
            return why;
        }
    }
    /* No cleanup at exit on our account: the transport writes until the very end (its
     * destructor flushes posted calls). If the application initialised OpenSSL first, with
     * a cleanup at exit, the connection is treated as closed from that point on. */
    ossl.init_ssl(X_OPENSSL_INIT_NO_ATEXIT | X_OPENSSL_INIT_LOAD_SSL_STRINGS | X_OPENSSL_INIT_LOAD_CRYPTO_STRINGS,
                  NULL);
    return NULL;
}

/* The most informative queued OpenSSL error (the last one), or "". */
static const char *ssl_reason(char *buf, size_t cap)
{
    unsigned long e, last = 0;
    while ((e = ossl.err_get()))
        last = e;
    buf[0] = 0;
    if (last) {
        const char *r = ossl.err_reason(last);
        if (r)
            snprintf(buf, cap, "%s", r);
        else
            ossl.err_string(last, buf, cap);
    }
    return buf;
}

/* A hint for the reasons users meet. */
static const char *hint_for(const char *reason)
{
    if (strstr(reason, "certificate required"))
        return " (the server requires a client certificate: set GPUWIRE_TLS_CERT and GPUWIRE_TLS_KEY, "
               "or gpuwire run --tls-cert FILE --tls-key FILE)";
    if (strstr(reason, "unknown ca") || strstr(reason, "bad certificate") || strstr(reason, "certificate unknown"))
        return " (the server did not accept this client's certificate)";
    if (strstr(reason, "wrong version number") || strstr(reason, "packet length too long") ||
        strstr(reason, "record layer failure") || strstr(reason, "http request"))
        return " (the server does not speak TLS on this port: is it started with --tls-cert? For a plaintext "
               "server on a trusted network set GPUWIRE_TLS=0 or use gpuwire run --no-tls)";
    return "";
}

static int peer_is_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len))
        return 0;
    if (ss.ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return ss.ss_family == AF_UNIX;
}

static void at_exit(void) { tls_closed = 1; }

static void after_fork_child(void)
{
    /* the child opens its own sessions; the parent's SSL state is not ours to touch */
    for (int i = 0; i < TLS_CONNS; i++) {
        atomic_store(&conns[i].fd, -1);
        conns[i].ssl = NULL;
        conns[i].ctx = NULL;
        pthread_mutex_init(&conns[i].lock, NULL);
    }
    atomic_store(&gw_tls_open, 0);
    pthread_mutex_init(&table_lock, NULL);
}

__attribute__((constructor)) static void tls_init(void) { pthread_atfork(NULL, NULL, after_fork_child); }

/* Client certificate, CA and hostname settings; NULL or why not. */
static const char *configure(SSL_CTX *ctx, SSL **out, int fd, const char *host)
{
    static char why[700];
    char reason[256];
    ossl.ctx_ctrl(ctx, X_SSL_CTRL_SET_MIN_PROTO_VERSION, X_TLS1_2_VERSION, NULL);
    ossl.ctx_set_verify(ctx, X_SSL_VERIFY_PEER, NULL);
    const char *ca = getenv("GPUWIRE_TLS_CA");
    if (ca && *ca) {
        struct stat st;
        int dir = stat(ca, &st) == 0 && S_ISDIR(st.st_mode);
        if (ossl.ctx_load_verify(ctx, dir ? NULL : ca, dir ? ca : NULL) != 1) {
            snprintf(why, sizeof why, "cannot use GPUWIRE_TLS_CA=%s as the certificate authority: %s", ca,
                     ssl_reason(reason, sizeof reason));
            return why;
        }
    } else if (ossl.ctx_default_verify(ctx) != 1) {
        snprintf(why, sizeof why, "cannot load the system's certificate authorities: %s",
                 ssl_reason(reason, sizeof reason));
        return why;
    }
    const char *cert = getenv("GPUWIRE_TLS_CERT"), *key = getenv("GPUWIRE_TLS_KEY");
    if (cert && *cert) { /* a key without a certificate was refused by gw_tls_settings */
        if (!key || !*key)
            key = cert; /* key and certificate in one file */
        if (ossl.ctx_use_chain(ctx, cert) != 1) {
            snprintf(why, sizeof why, "cannot use client certificate GPUWIRE_TLS_CERT=%s: %s", cert,
                     ssl_reason(reason, sizeof reason));
            return why;
        }
        if (ossl.ctx_use_key(ctx, key, X_SSL_FILETYPE_PEM) != 1 || ossl.ctx_check_key(ctx) != 1) {
            snprintf(why, sizeof why, "cannot use client key GPUWIRE_TLS_KEY=%s: %s", key,
                     ssl_reason(reason, sizeof reason));
            return why;
        }
    }
    SSL *s = ossl.ssl_new(ctx);
    if (!s || ossl.set_fd(s, fd) != 1)
        return "out of memory for the TLS connection";
    const char *name = getenv("GPUWIRE_TLS_SERVER_NAME");
    if (!name || !*name)
        name = host;
    unsigned char addr[16];
    int is_ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
    int ok = is_ip ? ossl.param_set1_ip_asc(ossl.get0_param(s), name) == 1 : ossl.set1_host(s, name) == 1;
    if (!is_ip)
        ossl.ssl_ctrl(s, X_SSL_CTRL_SET_TLSEXT_HOSTNAME, X_TLSEXT_NAMETYPE_host_name, (void *)name);
    *out = s;
    if (!ok) {
        snprintf(why, sizeof why, "cannot check the server's certificate against the name %s", name);
        return why;
    }
    return NULL;
}

static int tls_mode = -1; /* from gw_tls_settings: -1 auto, 0 off, 1 on */

int gw_tls_settings(void)
{
    static const char *const modes[] = {"auto", "0", "1", "off", "on", "no", "yes", "false", "true", NULL};
    int i = 0, bad = gw_env_word("GPUWIRE_TLS", modes, "auto, " GW_ENV_BOOL_TEXT, GW_ENV_NO_SESSION, &i) < 0;
    tls_mode = i ? (i - 1) & 1 : -1;
    /* files named are checked even where TLS does not apply (loopback): a
     * typo must not pass unseen until the server moves */
    static const char *const files[] = {"GPUWIRE_TLS_CA", "GPUWIRE_TLS_CERT", "GPUWIRE_TLS_KEY"};
    for (int k = 0; k < 3; k++) {
        const char *v = getenv(files[k]);
        if (v && *v && access(v, R_OK)) {
            gw_env_complain(files[k], v, k ? "a readable file" : "a readable file or folder", GW_ENV_NO_SESSION);
            bad = 1;
        }
    }
    const char *cert = getenv("GPUWIRE_TLS_CERT"), *key = getenv("GPUWIRE_TLS_KEY");
    if ((!cert || !*cert) && key && *key) {
        gw_log("GPUWIRE_TLS_KEY is set without GPUWIRE_TLS_CERT; %s", GW_ENV_NO_SESSION);
        bad = 1;
    }
    return bad ? -1 : 0;
}

static void closed_early(const char *server, const char *why)
{
    gw_log("TLS handshake with %s failed: %s (the server closed the connection: it may have too many connections "
           "not yet authenticated (--max-preauth; try again), have no TLS certificate (--tls-cert), or require a "
           "client certificate)", server, why);
}

int gw_tls_client_start(int fd, const char *host, const char *server)
{
    int want = tls_mode < 0 ? !peer_is_loopback(fd) : tls_mode;
    if (!want)
        return 0;
    const char *why = load_openssl();
    if (why) {
        gw_log("cannot connect to %s with TLS: %s", server, why);
        return -1;
    }
    ossl.err_clear();
    SSL_CTX *ctx = ossl.ctx_new(ossl.client_method());
    SSL *s = NULL;
    why = ctx ? configure(ctx, &s, fd, host) : "cannot create a TLS context";
    if (why) {
        gw_log("cannot connect to %s with TLS: %s", server, why);
        if (s)
            ossl.ssl_free(s);
        if (ctx)
            ossl.ctx_free(ctx);
        return -1;
    }
    /* handshake on the non-blocking socket, so it cannot outlast its deadline */
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    /* the handshake's limits (handshake.c): the first bytes back soon, all of it in time.
     * OpenSSL reads from an empty socket pair until the first bytes are here, so that they
     * can be looked at first: another protocol's answer is named as such (handshake.c),
     * not as OpenSSL's "wrong version number". */
    int answered = 0, rc, held[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, held) == 0 &&
        ossl.set_rfd(s, held[0]) != 1) {
        close(held[0]), close(held[1]);
        held[0] = held[1] = -1;
    }
    for (;;) {
        rc = ossl.connect(s);
        if (rc == 1)
            break;
        int e = ossl.get_error(s, rc);
        if (e != X_SSL_ERROR_WANT_READ && e != X_SSL_ERROR_WANT_WRITE) {
            char reason[256];
            int saved = errno;
            ssl_reason(reason, sizeof reason);
            long vr = ossl.verify_result(s);
            if (vr != 0)
                gw_log("TLS: the certificate of %s is not trusted: %s (set GPUWIRE_TLS_CA, or gpuwire run "
                       "--tls-ca FILE, to the CA that signed it; GPUWIRE_TLS_SERVER_NAME if it names the server "
                       "differently)", server, ossl.verify_string(vr));
            else if (reason[0])
                gw_log("TLS handshake with %s failed: %s%s", server, reason, hint_for(reason));
            else
                closed_early(server, e == X_SSL_ERROR_SYSCALL && saved ? strerror(saved) : "connection closed");
            if (held[0] >= 0)
                close(held[0]), close(held[1]);
            fcntl(fd, F_SETFL, fl);
            ossl.ssl_free(s), ossl.ctx_free(ctx);
            return -1;
        }
        int left = gw_handshake_ms_left(!answered);
        struct pollfd pfd = {.fd = fd, .events = e == X_SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
        int pr = left ? poll(&pfd, 1, left) : 0;
        if (pr == 0) {
            gw_handshake_silent(server, !answered);
            if (held[0] >= 0)
                close(held[0]), close(held[1]);
            fcntl(fd, F_SETFL, fl);
            ossl.ssl_free(s), ossl.ctx_free(ctx);
            return -1;
        }
        if (pr > 0 && !answered && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
            /* the first bytes back: a TLS record (handshake 0x16 or alert 0x15, version 3.x),
             * or another protocol's answer */
            uint8_t peek[128];
            ssize_t got = recv(fd, peek, sizeof peek, MSG_PEEK);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got <= 0) /* closed: said here, as OpenSSL would answer with an alert into a closed socket */
                closed_early(server, got ? strerror(errno) : "connection closed");
            else if ((peek[0] != 0x16 && peek[0] != 0x15) || (got > 1 && peek[1] != 3))
                gw_handshake_not_gpuwire(server, peek, (size_t)got);
            if (got <= 0 || (peek[0] != 0x16 && peek[0] != 0x15) || (got > 1 && peek[1] != 3)) {
                if (held[0] >= 0)
                    close(held[0]), close(held[1]);
                fcntl(fd, F_SETFL, fl);
                ossl.ssl_free(s), ossl.ctx_free(ctx);
                return -1;
            }
            answered = 1; /* bytes, an end or an error: OpenSSL reads them now */
            if (held[0] >= 0) {
                ossl.set_rfd(s, fd);
                close(held[0]), close(held[1]);
                held[0] = held[1] = -1;
            }
        }
        if (pr < 0 && errno != EINTR) {
            gw_log("TLS handshake with %s failed: %s", server, strerror(errno));
            if (held[0] >= 0)
                close(held[0]), close(held[1]);
            fcntl(fd, F_SETFL, fl);
            ossl.ssl_free(s), ossl.ctx_free(ctx);
            return -1;
        }
    }
    /* the socket stays non-blocking: see gw_tls_read_all */
    pthread_mutex_lock(&table_lock);
    gw_tls_conn *c = NULL;
    for (int i = 0; i < TLS_CONNS && !c; i++)
        if (atomic_load(&conns[i].fd) < 0)
            c = &conns[i];
    if (!c) { /* cannot happen: one entry per server, and a forgotten one is free again */
        pthread_mutex_unlock(&table_lock);
        gw_log("cannot connect to %s with TLS: more TLS connections than servers", server);
        fcntl(fd, F_SETFL, fl);
        ossl.ssl_free(s), ossl.ctx_free(ctx);
        return -1;
    }
    c->ssl = s;
    c->ctx = ctx;
    c->told = 0;
    snprintf(c->server, sizeof c->server, "%s", server);
    atomic_store_explicit(&c->fd, fd, memory_order_release);
    atomic_fetch_add(&gw_tls_open, 1);
    pthread_mutex_unlock(&table_lock);
    static int registered;
    if (!registered++)
        ossl.openssl_atexit(at_exit); /* called from OPENSSL_cleanup, if it ever runs */
    if (gw_debug())
        gw_log("TLS to %s: %s, %s", server, ossl.version(s), ossl.cipher_name(ossl.cipher(s)));
    return 0;
}

/* An SSL_read/SSL_write failure as errno, with OpenSSL's reason logged once. */
static int fail(gw_tls_conn *c, int rc, const char *what)
{
    int saved = errno;
    int e = ossl.get_error(c->ssl, rc);
    char reason[256];
    ssl_reason(reason, sizeof reason);
    if (e == X_SSL_ERROR_ZERO_RETURN || (e == X_SSL_ERROR_SYSCALL && !saved) ||
        (e == X_SSL_ERROR_SSL && strstr(reason, "unexpected eof"))) {
        errno = ECONNRESET;
        return -1;
    }
    if (e == X_SSL_ERROR_SYSCALL) {
        errno = saved;
        return -1;
    }
    if (!c->told++)
        gw_log("TLS error %s %s: %s%s", what, c->server, reason[0] ? reason : "unknown", hint_for(reason));
    errno = EPROTO;
    return -1;
}

/* After the handshake the socket stays non-blocking: the thread reading
 * replies and a thread sending requests (batch.c and replies.c let both run at once)
 * take turns on the connection's SSL object under its lock, and neither holds it
 * while it waits for the network. */
static int wait_fd(int fd, int want, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = want == X_SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
    for (;;) {
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr > 0)
            return 0;
        if (pr == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR)
            return -1;
    }
}

int gw_tls_write_all(gw_tls_conn *c, const void *p, size_t n)
{
    const uint8_t *b = p;
    if (tls_closed)
        return 0; /* exit() is past OpenSSL's cleanup: nothing waits on these bytes any more */
    while (n) {
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        pthread_mutex_lock(&c->lock);
        ossl.err_clear();
        int w = ossl.write(c->ssl, b, chunk); /* a retry passes the same bytes, as OpenSSL requires */
        int e = w > 0 ? 0 : ossl.get_error(c->ssl, w);
        if (w <= 0 && e != X_SSL_ERROR_WANT_WRITE && e != X_SSL_ERROR_WANT_READ) {
            int rc = fail(c, w, "sending to");
            pthread_mutex_unlock(&c->lock);
            return rc;
        }
        pthread_mutex_unlock(&c->lock);
        if (w <= 0) {
            if (wait_fd(atomic_load(&c->fd), e, -1))
                return -1;
            continue;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int gw_tls_read_all(gw_tls_conn *c, void *p, size_t n, int timeout_ms)
{
    uint8_t *b = p;
    if (tls_closed) {
        errno = ECONNRESET;
        return -1;
    }
    while (n) {
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        pthread_mutex_lock(&c->lock);
        ossl.err_clear();
        int r = ossl.read(c->ssl, b, chunk);
        int e = r > 0 ? 0 : ossl.get_error(c->ssl, r);
        if (r <= 0 && e != X_SSL_ERROR_WANT_READ && e != X_SSL_ERROR_WANT_WRITE) {
            int rc = fail(c, r, "receiving from");
            pthread_mutex_unlock(&c->lock);
            return rc;
        }
        pthread_mutex_unlock(&c->lock);
        if (r <= 0) {
            if (wait_fd(atomic_load(&c->fd), e, timeout_ms))
                return -1;
            continue;
        }
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

int gw_tls_buffered(gw_tls_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int n = tls_closed ? 0 : ossl.pending(c->ssl);
    pthread_mutex_unlock(&c->lock);
    return n > 0;
}

void gw_tls_forget(int fd)
{
    if (fd < 0 || !atomic_load(&gw_tls_open))
        return;
    pthread_mutex_lock(&table_lock);
    gw_tls_conn *c = gw_tls_find(fd);
    if (c) {
        /* called before the socket is closed, when nobody reads or writes it any more */
        atomic_store_explicit(&c->fd, -1, memory_order_release);
        atomic_fetch_sub(&gw_tls_open, 1);
        if (!tls_closed) { /* past OpenSSL's cleanup its objects are gone already */
            ossl.ssl_free(c->ssl);
            ossl.ctx_free(c->ctx);
        }
        c->ssl = NULL;
        c->ctx = NULL;
    }
    pthread_mutex_unlock(&table_lock);
}
