/* Dialing the server: GPUWIRE_SERVER's address, a TCP connection with a
 * time limit, and the socket options every connection gets (session, lanes,
 * NVML's). */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../diag/env.h"
#include "stream.h"

#define CONNECT_TIMEOUT_MS 5000

/* GPUWIRE_SERVER as the Python commands read it (gpuwire.server.parse_address):
 * HOST, HOST:PORT, [V6] or [V6]:PORT, port 7750 if none; a host without
 * spaces or control characters, a port from 1 to 65535; -1 if malformed. */
int gw_dial_split(const char *spec, char *host, size_t hostcap, char *port, size_t portcap)
{
    while (isspace((unsigned char)*spec))
        spec++;
    size_t n = strlen(spec);
    while (n && isspace((unsigned char)spec[n - 1]))
        n--;
    const char *h = spec, *p = NULL, *colon = memchr(spec, ':', n);
    size_t hl;
    if (n && spec[0] == '[') {
        const char *end = memchr(spec, ']', n);
        if (!end || (end + 1 < spec + n && end[1] != ':'))
            return -1;
        h = spec + 1, hl = (size_t)(end - h);
        p = end + 1 < spec + n ? end + 2 : NULL;
    } else if (colon && memchr(colon + 1, ':', (size_t)(spec + n - colon - 1))) {
        return -1; /* a bare IPv6 address: its last group would pass for the port */
    } else {
        hl = colon ? (size_t)(colon - spec) : n;
        p = colon ? colon + 1 : NULL;
    }
    size_t pl = p ? (size_t)(spec + n - p) : 0;
    uint64_t num = 7750;
    const char *end = p;
    if (p && (gw_env_parse_u64(p, &end, &num) || end != p + pl))
        return -1;
    if (num < 1 || num > 65535 || hl >= hostcap)
        return -1;
    for (size_t i = 0; i < hl; i++)
        if ((unsigned char)h[i] <= ' ' || h[i] == 0x7f)
            return -1;
    if (hl)
        snprintf(host, hostcap, "%.*s", (int)hl, h);
    else
        snprintf(host, hostcap, "0.0.0.0"); /* ":PORT": this machine, as in Python */
    snprintf(port, portcap, "%u", (unsigned)num);
    return 0;
}

/* A server whose machine vanishes (no FIN, no RST) must not leave the
 * client waiting for ever: keepalive probes an idle connection (30 s idle,
 * then every 10 s, 6 tries) and data unacknowledged for 120 s ends it.
 * Every connection dialed (session, lanes, NVML's) gets these. */
/* Keepalive finds a server whose machine vanished while the client waits for a
 * reply. No TCP_USER_TIMEOUT here: it also fires while the server's window is
 * closed, and the worker stops reading, by design, while a long kernel runs with
 * a full backlog behind it (back-pressure): that must not end the session. */
#define KEEPALIVE_IDLE_S 30
#define KEEPALIVE_INTERVAL_S 10
#define KEEPALIVE_PROBES 6

static void keep_alive(int fd)
{
    int on = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTERVAL_S, cnt = KEEPALIVE_PROBES;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt))
        gw_log("cannot set TCP keepalive on the connection to the server (%s): a vanished server may go "
               "unnoticed", strerror(errno));
}

int gw_dial(const char *host, const char *port, char *why, size_t whycap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
        snprintf(why, whycap, "%s", gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    snprintf(why, whycap, "no address");
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int ok = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
        if (!ok && errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, CONNECT_TIMEOUT_MS) == 1) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
                errno = err;
                ok = err == 0;
            } else {
                errno = ETIMEDOUT;
            }
        }
        if (ok)
            break;
        snprintf(why, whycap, "%s", strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int fl = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &fl, sizeof fl);
        keep_alive(fd);
        /* back to blocking: reads poll only where a timeout matters */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    }
    return fd;
}
/* Where the session's connection went: lanes (lanes.c) dial the same place. */
static char server_host[256], server_port[64];

void gw_dial_remember(const char *host, const char *port)
{
    snprintf(server_host, sizeof server_host, "%s", host);
    snprintf(server_port, sizeof server_port, "%s", port);
}

int gw_io_dial_server(char *why, size_t whycap)
{
    if (!server_host[0]) {
        snprintf(why, whycap, "not connected");
        return -1;
    }
    return gw_dial(server_host, server_port, why, whycap);
}

/* GPUWIRE_SERVER may list several servers, comma-separated (servers.h):
 * entry i into out; the number of entries, or -1 if one is empty, too long,
 * or there are more than GW_SERVERS_MAX. */
int gw_servers_entry(const char *list, int i, char *out, size_t cap)
{
    int n = 0;
    for (const char *p = list;; n++) {
        size_t len = strcspn(p, ",");
        const char *s = p;
        size_t sl = len;
        while (sl && isspace((unsigned char)*s))
            s++, sl--;
        while (sl && isspace((unsigned char)s[sl - 1]))
            sl--;
        if (!sl || sl >= cap || n >= GW_SERVERS_MAX)
            return -1;
        if (n == i)
            snprintf(out, cap, "%.*s", (int)sl, s);
        if (!p[len])
            return n + 1;
        p += len + 1;
    }
}
