/* The session's opening: HELLO (with the lease the user asked for), then
 * whatever the server answers before the worker is ready: queue progress
 * while an exclusive lease is held by someone else, an auth challenge, and
 * finally HELLO_OK or ERROR. docs/protocol.md and docs/server.md describe it.
 * HELLO_OK may carry the devices (OK_DEVICES: name, memory, UUIDs, bus id),
 * kept here for state/device.c, so start-up asks none of them (issue #20).
 *
 * Environment: GPUWIRE_LEASE=shared|exclusive, GPUWIRE_MEM_CAP=SIZE (8G, 512M),
 * GPUWIRE_NO_WAIT=1|0, GPUWIRE_GPU=N (that GPU) or GPUWIRE_GPUS=N (any N GPUs),
 * GPUWIRE_TOKEN=ID.SECRET or
 * GPUWIRE_TOKEN_FILE=PATH, GPUWIRE_HANDSHAKE_TIMEOUT=SECONDS.
 *
 * Time limits (handshake_limits.c): the first bytes back (the TLS
 * handshake's, or the first frame of a plaintext server: CHALLENGE, QUEUED,
 * HELLO_OK or ERROR) within FIRST_REPLY_MS of connecting, and the whole
 * handshake within GPUWIRE_HANDSHAKE_TIMEOUT (default 10 s), counted again
 * from each QUEUED frame (a queued lease waits as long as it must). Set, that
 * variable also gives the first answer as long: a server whose worker starts
 * slowly can be waited for. Bytes that cannot begin a gpuwire frame end the
 * attempt at once. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../../common/sha256.h"
#include "../../generated/gw_ops.h"
#include "../diag/env.h"
#include "stream.h"
#include "tls.h"
#ifndef GW_NVML_CLIENT
#include "../diag/progress.h"
#endif

#define HANDSHAKE_FRAME_MAX 65535u /* no frame before HELLO_OK is longer: more is not gpuwire */
#define NONCE_SIZE GW_NONCE_SIZE
#define TOKEN_ID_SIZE GW_TOKEN_ID_SIZE

/* Compiled into libnvidia-ml.so.1 too (GW_NVML_CLIENT): that session only
 * asks NVML, so it takes no GPU lease (one would queue behind the same
 * process's libcuda session), and its digest covers NVML's op table. */
#ifdef GW_NVML_CLIENT
#include "../../generated/nvml_ops.h"
#define HELLO_DIGEST (GW_API_DIGEST ^ GW_NVML_API_DIGEST)
#else
#define HELLO_DIGEST GW_API_DIGEST
#endif

/* ENV: the driver's device selection and code handling, which the worker's
 * driver applies as it would here ("NAME=VALUE\0NAME=VALUE", docs/server.md;
 * the names: GW_ENV_FORWARDED_NAMES). A value is cut at the first character
 * the server does not accept (the driver stops reading a device list there
 * too). Returns the record's size, 0 if none. */
static size_t env_record(uint8_t *p)
{
    static const char *const names[] = {GW_ENV_FORWARDED_NAMES};
    char buf[sizeof names / sizeof names[0] * (32 + GW_ENV_VALUE_MAX)];
    size_t n = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (!v || (gw_servers_n > 1 && !strcmp(names[i], "CUDA_VISIBLE_DEVICES")))
            continue; /* several servers: the client applies it to their joined list (servers.c) */
        size_t len = strspn(v, GW_ENV_VALUE_CHARS);
        if (len > GW_ENV_VALUE_MAX)
            len = GW_ENV_VALUE_MAX;
        if (v[len])
            gw_log("%s=%s: using only its first %zu characters", names[i], v, len);
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s=%.*s", n ? "\x01" : "", names[i], (int)len, v);
    }
    for (size_t i = 0; i < n; i++) /* separators: written as \x01 so snprintf could not stop at them */
        if (buf[i] == 1)
            buf[i] = 0;
    return n ? gw_hello_ext_put(p, GW_EXT_ENV, buf, (uint16_t)n) : 0;
}

/* The lease this process asks for, read from the environment before it
 * connects (libnvidia-ml.so.1 sends none of it, but refuses bad values alike). */
static struct {
    int mode;           /* -1: the server's default (shared), 0 shared, 1 exclusive */
    uint64_t mem_cap;   /* 0: none asked */
    int no_wait;
    long long gpu;      /* -1: every GPU */
    long long gpus;     /* -1: not asked; else any that many GPUs */
} want;

int gw_handshake_settings(void)
{
    static const char *const modes[] = {"shared", "exclusive", NULL};
    unsigned long long gpu;
    int bad = 0;
    want.mode = -1, want.mem_cap = 0, want.no_wait = 0, want.gpu = -1, want.gpus = -1;
    bad |= gw_env_word("GPUWIRE_LEASE", modes, "shared or exclusive", GW_ENV_NO_SESSION, &want.mode) < 0;
    bad |= gw_env_size("GPUWIRE_MEM_CAP", 1, UINT64_MAX, GW_ENV_NO_SESSION, &want.mem_cap) < 0;
    bad |= gw_env_bool("GPUWIRE_NO_WAIT", GW_ENV_NO_SESSION, &want.no_wait) < 0;
    int r = gw_env_int("GPUWIRE_GPU", 0, 65535, GW_ENV_NO_SESSION, &gpu);
    if (r > 0)
        want.gpu = (long long)gpu;
    bad |= r < 0;
    r = gw_env_int("GPUWIRE_GPUS", 1, 65535, GW_ENV_NO_SESSION, &gpu);
    if (r > 0)
        want.gpus = (long long)gpu;
    bad |= r < 0;
    if (want.gpu >= 0 && want.gpus >= 0) { /* one GPU or a number of them: both would be a guess */
        gw_log("GPUWIRE_GPU=%lld and GPUWIRE_GPUS=%lld are both set: a lease is on one GPU or on any N GPUs, "
               "not both; CUDA calls will fail with CUDA_ERROR_NO_DEVICE", want.gpu, want.gpus);
        bad = 1;
    }
    gw_handshake_limits_settings();
#ifndef GW_NVML_CLIENT
    gw_progress_settings();
#endif
    return bad ? -1 : 0;
}

/* Whether bytes [0, n) can begin a frame a gpuwire server sends before HELLO_OK
 * (little-endian u32 len, u16 op, u16 flags, u32 tid, u32 seq). */
static int plausible(const uint8_t *b, size_t n)
{
    if (n > 2 && b[2])
        return 0; /* len above HANDSHAKE_FRAME_MAX */
    if (n > 3 && b[3])
        return 0;
    if (n > 4 && b[4] != GW_OP_HELLO_OK && b[4] != GW_OP_ERROR && b[4] != GW_OP_QUEUED && b[4] != GW_OP_CHALLENGE)
        return 0;
    if (n > 5 && b[5])
        return 0;
    return 1;
}

/* More of what a server that is not gpuwire sent, for its message (a moment's wait). */
static size_t read_more(int fd, uint8_t *b, size_t n, size_t cap)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    while (n < cap && poll(&pfd, 1, 200) == 1) {
        ssize_t r = recv(fd, b + n, cap - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    return n;
}

/* One frame of the server's answer, under the time limits; the first one read
 * as it arrives, so that bytes of another protocol end the wait at once.
 * 0; or -1 with the one line said (*said) or errno set. */
static int read_answer(int fd, const char *server, int first, gw_hdr *h, uint8_t **payload, int *said)
{
    *payload = NULL;
    *said = 0;
    uint8_t b[256];
    size_t n = 0;
    if (gw_tls_find(fd)) { /* through TLS: the TLS handshake had the first reply's limit */
        first = 0;
        if (gw_io_read_all(fd, b, sizeof *h, gw_handshake_ms_left(0)))
            goto failed;
        n = sizeof *h;
    }
    while (n < sizeof *h) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, gw_handshake_ms_left(first));
        if (pr == 0) {
            errno = ETIMEDOUT;
            goto failed;
        }
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            goto failed;
        }
        ssize_t r = recv(fd, b + n, sizeof *h - n, 0);
        if (r == 0) {
            errno = ECONNRESET;
            goto failed;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            goto failed;
        }
        n += (size_t)r;
        if (!plausible(b, n)) {
            gw_handshake_not_gpuwire(server, b, read_more(fd, b, n, sizeof b));
            *said = 1;
            return -1;
        }
    }
    if (!plausible(b, n)) {
        gw_handshake_not_gpuwire(server, b, n);
        *said = 1;
        return -1;
    }
    memcpy(h, b, sizeof *h);
    *payload = malloc((size_t)h->len + 1);
    if (!*payload)
        return -1;
    if (gw_io_read_all(fd, *payload, h->len, gw_handshake_ms_left(0))) {
        free(*payload);
        *payload = NULL;
        first = 0;
        goto failed;
    }
    (*payload)[h->len] = 0;
    return 0;
failed:
    if (errno == ETIMEDOUT) {
        gw_handshake_silent(server, first);
        *said = 1;
    }
    return -1;
}

/* ---- the stand-in's warning: once per process ----
 * libcuda.so.1 and libnvidia-ml.so.1 each carry this code and open a session of
 * their own, and share no memory (libnvidia-ml.so.1 exports NVML's names only):
 * the first of them to bind an abstract Unix socket named after this process
 * (pid and start time) prints the line; the socket, closed on exec, keeps the
 * name taken for the process's life. */
static int claim_standin_warning(void)
{
    static atomic_int claimed;
    if (atomic_exchange(&claimed, 1))
        return 0;
    unsigned long long started = 0; /* field 22 of /proc/self/stat: the name is not reused by a later process */
    char stat[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        size_t n = fread(stat, 1, sizeof stat - 1, f);
        stat[n] = 0;
        fclose(f);
        const char *p = strrchr(stat, ')');
        for (int field = 2; p && *p && field < 22; p++)
            field += *p == ' ';
        if (p)
            started = strtoull(p, NULL, 10);
    }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int len = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "gpuwire-standin-warned-%ld-%llu", (long)getpid(),
                       started);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 1;
    if (bind(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len)) == 0)
        return 1; /* fd kept */
    int taken = errno == EADDRINUSE;
    close(fd);
    return !taken;
}

static void warn_standin(const char *server)
{
    if (claim_standin_warning())
        gw_log("the server at %s serves the CPU stand-in driver (a test double), not a GPU: results are not a "
               "GPU's", server);
}

/* Extension records for the HELLO, from gw_handshake_settings. */
static size_t lease_records(uint8_t *p)
{
#ifdef GW_NVML_CLIENT
    uint8_t nvml_only = 1;
    return gw_hello_ext_put(p, GW_EXT_NVML, &nvml_only, 1);
#endif
    size_t n = 0;
    if (want.mode >= 0) {
        uint8_t mode = (uint8_t)want.mode;
        n += gw_hello_ext_put(p + n, GW_EXT_LEASE_MODE, &mode, 1);
    }
    if (want.mem_cap)
        n += gw_hello_ext_put(p + n, GW_EXT_MEM_CAP, &want.mem_cap, 8);
    if (want.no_wait) {
        uint8_t one = 1;
        n += gw_hello_ext_put(p + n, GW_EXT_NO_WAIT, &one, 1);
    }
    if (want.gpu >= 0) {
        uint32_t gpu = (uint32_t)want.gpu;
        n += gw_hello_ext_put(p + n, GW_EXT_GPU, &gpu, 4);
    }
    if (want.gpus >= 0) {
        uint32_t count = (uint32_t)want.gpus;
        n += gw_hello_ext_put(p + n, GW_EXT_GPU_COUNT, &count, 4);
    }
    return n + env_record(p + n);
}

static int read_token(char *out, size_t cap)
{
    const char *v = getenv("GPUWIRE_TOKEN");
    if (v && *v) {
        snprintf(out, cap, "%s", v);
    } else {
        const char *path = getenv("GPUWIRE_TOKEN_FILE");
        FILE *f = path && *path ? fopen(path, "r") : NULL;
        if (!f) {
            if (path && *path) /* say so: "set GPUWIRE_TOKEN" would mislead */
                gw_log("cannot read GPUWIRE_TOKEN_FILE=%s: %s", path, strerror(errno));
            return -1;
        }
        if (!fgets(out, (int)cap, f))
            out[0] = 0;
        fclose(f);
    }
    /* trim whitespace, as the server does */
    char *s = out;
    while (isspace((unsigned char)*s))
        s++;
    memmove(out, s, strlen(s) + 1);
    size_t n = strlen(out);
    while (n && isspace((unsigned char)out[n - 1]))
        out[--n] = 0;
    return n ? 0 : -1;
}

/* PROOF: the token's 16-character id, then HMAC-SHA256(SHA-256(token), nonce || label). */
static int answer_challenge(int fd, const char *server, const uint8_t *nonce)
{
    char token[256];
    if (read_token(token, sizeof token)) {
        gw_log("the server at %s requires a token: set GPUWIRE_TOKEN (or GPUWIRE_TOKEN_FILE) to one made "
               "by `gpuwire token create` on the server", server);
        return -1;
    }
    const char *dot = strchr(token, '.');
    if (!dot || dot - token != TOKEN_ID_SIZE) {
        gw_log("GPUWIRE_TOKEN is malformed: expected 16 hex digits, '.', 64 hex digits");
        return -1;
    }
    uint8_t key[32], msg[NONCE_SIZE + 15], frame[sizeof(gw_hdr) + GW_PROOF_REQ_SIZE];
    gw_proof_req proof;
    gw_sha256_hash(token, strlen(token), key);
    memcpy(msg, nonce, NONCE_SIZE);
    memcpy(msg + NONCE_SIZE, "gpuwire-auth-v1", 15);
    memcpy(proof.token_id, token, TOKEN_ID_SIZE);
    gw_hmac_sha256(key, sizeof key, msg, sizeof msg, proof.mac);
    gw_hdr h = {.len = GW_PROOF_REQ_SIZE, .op = GW_OP_PROOF};
    memcpy(frame, &h, sizeof h);
    gw_proof_req_put(frame + sizeof h, &proof);
    memset(token, 0, sizeof token);
    memset(key, 0, sizeof key);
    return gw_io_write_all(fd, frame, sizeof frame);
}

static void sanitize(char *s)
{
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
            *s = '?';
}

static gw_lane_grant lane_grant;
static int lanes_granted;

const gw_lane_grant *gw_handshake_lanes(void) { return lanes_granted ? &lane_grant : NULL; }

/* The devices HELLO_OK carried (OK_DEVICES): state/device.c answers the
 * device queries of a program's start-up from them (issue #20). One table
 * per server (several servers: servers.c joins them into one list). */
typedef struct hello_devices {
    gw_device_info devices[GW_HELLO_DEVICES_MAX];
    const int32_t *attrs[GW_HELLO_DEVICES_MAX]; /* attr_count (status, value) pairs each */
    uint8_t *attr_bytes;
    unsigned n;
} hello_devices;
static hello_devices tables[GW_SERVERS_MAX];

const gw_device_info *gw_hello_device(int k, int i)
{
    const hello_devices *t = &tables[k];
    return i >= 0 && (unsigned)i < t->n ? &t->devices[i] : NULL;
}

const int32_t *gw_hello_device_attrs(int k, int i)
{
    const hello_devices *t = &tables[k];
    return i >= 0 && (unsigned)i < t->n && t->devices[i].attr_count ? t->attrs[i] : NULL;
}

int gw_hello_device_count(int k) { return tables[k].n ? (int)tables[k].n : -1; }

#ifndef GW_NVML_CLIENT
const gw_device_info *gw_handshake_device(int ordinal)
{
    return gw_servers_n > 1 ? gw_servers_device(ordinal) : gw_hello_device(0, ordinal);
}

const int32_t *gw_handshake_device_attrs(int ordinal)
{
    return gw_servers_n > 1 ? gw_servers_device_attrs(ordinal) : gw_hello_device_attrs(0, ordinal);
}

int gw_handshake_device_count(void) { return gw_servers_n > 1 ? gw_servers_device_count() : gw_hello_device_count(0); }
#else
const gw_device_info *gw_handshake_device(int ordinal) { return gw_hello_device(0, ordinal); }
const int32_t *gw_handshake_device_attrs(int ordinal) { return gw_hello_device_attrs(0, ordinal); }
int gw_handshake_device_count(void) { return gw_hello_device_count(0); }
#endif

/* HELLO_OK's device records and their attributes (at: where they start) into
 * t; kept only if the lengths agree to the byte. */
static void keep_devices(hello_devices *t, const uint8_t *p, size_t len, size_t at, unsigned n)
{
    gw_device_info *devices = t->devices;
    if (n == 0 || n > GW_HELLO_DEVICES_MAX || len < at || (len - at) / sizeof(gw_device_info) < n)
        return;
    memcpy(devices, p + at, n * sizeof(gw_device_info));
    size_t need = 0;
    for (unsigned i = 0; i < n; i++) {
        devices[i].name[sizeof devices[i].name - 1] = 0;
        devices[i].pci_bus_id[sizeof devices[i].pci_bus_id - 1] = 0;
        if (devices[i].attr_count > 4096)
            return;
        need += (size_t)devices[i].attr_count * 2 * sizeof(int32_t);
    }
    at += n * sizeof(gw_device_info);
    if (len - at != need)
        return;
    free(t->attr_bytes);
    t->attr_bytes = need ? malloc(need) : NULL;
    if (need && !t->attr_bytes)
        return;
    if (need)
        memcpy(t->attr_bytes, p + at, need);
    size_t off = 0;
    for (unsigned i = 0; i < n; i++) {
        t->attrs[i] = (const int32_t *)(t->attr_bytes + off);
        off += (size_t)devices[i].attr_count * 2 * sizeof(int32_t);
    }
    t->n = n;
}

/* The server closed the connection before answering the HELLO (the client
 * sees a reset where the HELLO was still unread there): the likely causes. */
static void closed_at_once(const char *server)
{
    gw_log("no handshake answer from %s: the server closed the connection (it may have too many "
           "connections not yet authenticated, --max-preauth: try again; or it is not a gpuwire "
           "server)", server);
}


CUresult gw_handshake(int fd, const char *server, gw_hello_ok *info) { return gw_handshake_with(fd, server, info, 0); }

CUresult gw_handshake_with(int fd, const char *server, gw_hello_ok *info, int k)
{
    if (k == 0)
        lanes_granted = 0;
    tables[k].n = 0;
    char host[256] = "", prog[256] = "";
    gethostname(host, sizeof host - 1);
    FILE *comm = fopen("/proc/self/comm", "r");
    if (comm) {
        if (fgets(prog, sizeof prog, comm))
            prog[strcspn(prog, "\n")] = 0;
        fclose(comm);
    }
    size_t hl = strnlen(host, 255), pl = strnlen(prog, 255), el;
    uint8_t msg[sizeof(gw_hdr) + sizeof(gw_hello) + 512 + GW_HELLO_EXT_MAX];
    el = lease_records(msg + sizeof(gw_hdr) + sizeof(gw_hello) + hl + pl);
    gw_hello hello = {.proto_version = GW_PROTO_VERSION, .api_digest = HELLO_DIGEST,
                      .pid = (uint32_t)getpid(), .host_len = (uint16_t)hl, .prog_len = (uint16_t)pl};
    memcpy(hello.magic, GW_HELLO_MAGIC, 8);
    gw_hdr h = {.len = (uint32_t)(sizeof hello + hl + pl + el), .op = GW_OP_HELLO,
                .flags = el ? GW_F_HELLO_EXT : 0};
    memcpy(msg, &h, sizeof h);
    memcpy(msg + sizeof h, &hello, sizeof hello);
    memcpy(msg + sizeof h + sizeof hello, host, hl);
    memcpy(msg + sizeof h + sizeof hello + hl, prog, pl);
    if (gw_io_write_all(fd, msg, sizeof h + h.len)) {
        if (errno == ECONNRESET || errno == EPIPE) /* closed at once, before the HELLO was read */
            closed_at_once(server);
        else
            gw_log("lost the connection to %s during the handshake: %s", server, strerror(errno));
        return CUDA_ERROR_NO_DEVICE;
    }
    for (int first = 1;; first = 0) {
        uint8_t *p;
        int said;
        if (read_answer(fd, server, first, &h, &p, &said)) {
#ifndef GW_NVML_CLIENT
            gw_progress_queue_done();
#endif
            if (said)
                ;
            else if (errno == ECONNRESET)
                closed_at_once(server);
            else
                gw_log("no handshake answer from %s: %s", server, strerror(errno));
            return CUDA_ERROR_NO_DEVICE;
        }
        CUresult rc = CUDA_ERROR_NO_DEVICE;
        int done = 1;
        size_t at;
        gw_error_req error;
        gw_queued_req queued;
        gw_challenge_req challenge;
        if (h.op == GW_OP_HELLO_OK && h.len >= sizeof(gw_hello_ok)) {
            memcpy(info, p, sizeof *info);
            info->driver_desc[sizeof info->driver_desc - 1] = 0;
            sanitize(info->driver_desc);
            if (k == 0 && (info->flags & GW_OK_LANES) && h.len >= sizeof(gw_hello_ok) + sizeof lane_grant) {
                memcpy(&lane_grant, p + sizeof(gw_hello_ok), sizeof lane_grant);
                lanes_granted = lane_grant.lanes > 0 && lane_grant.lanes <= GW_LANES_MAX;
            }
            if (info->flags & GW_OK_DEVICES)
                keep_devices(&tables[k], p, h.len, sizeof(gw_hello_ok) + (info->flags & GW_OK_LANES ? sizeof lane_grant : 0),
                             info->device_count);
            if (info->proto_version != GW_PROTO_VERSION)
                gw_log("server %s speaks protocol %u, this client %u", server, info->proto_version, GW_PROTO_VERSION);
            else
                rc = CUDA_SUCCESS;
            if (gw_debug())
                gw_log("connected to %s: %s, driver %d, %u device(s)", server, info->driver_desc,
                       info->driver_version, info->device_count);
            if (rc == CUDA_SUCCESS && (info->flags & GW_OK_STANDIN))
                warn_standin(server);
        } else if (h.op == GW_OP_ERROR && (at = gw_error_req_get(p, h.len, &error))) {
            gw_log("server %s refused the session: %.*s", server, (int)(h.len - at), (const char *)p + at);
        } else if (h.op == GW_OP_QUEUED && (at = gw_queued_req_get(p, h.len, &queued))) {
            const char *text = (const char *)p + at; /* where it stands is in the server's line */
            int n = (int)(h.len - at);
            if (n >= 9 && !strncmp(text, "gpuwire: ", 9)) /* gw_log adds the prefix */
                text += 9, n -= 9;
#ifndef GW_NVML_CLIENT
            if (!gw_progress_queued(text, n)) /* on a terminal: one line, redrawn */
#endif
                gw_log("%.*s", n, text); /* the server's own wording */
            gw_handshake_clock_again(); /* still waiting in the queue: the limit counts again */
            done = 0;
        } else if (h.op == GW_OP_CHALLENGE && h.len == GW_CHALLENGE_REQ_SIZE &&
                   gw_challenge_req_get(p, h.len, &challenge)) {
            done = answer_challenge(fd, server, challenge.nonce) != 0;
        } else {
            gw_log("unexpected handshake answer from %s (op %u)", server, h.op);
        }
        free(p);
#ifndef GW_NVML_CLIENT
        if (done || h.op != GW_OP_QUEUED)
            gw_progress_queue_done();
#endif
        if (done)
            return rc;
    }
}
