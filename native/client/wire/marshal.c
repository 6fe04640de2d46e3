/* Marshalling: a request's arguments written into the calling thread's
 * request buffer, a reply's read from its reply buffer (formats in
 * docs/protocol.md). */
#include <stdlib.h>
#include <string.h>

#include "stream.h"
#ifdef GW_NVML_CLIENT
GW_HIDDEN uint64_t gw_nvml_handle_on(uint64_t id, int k); /* native/nvml/servers.c */
#endif

#define NULL_MARKER 0xFFFFFFFFu

__thread gw_req gw_tls_req;
__thread gw_rep gw_tls_rep;
__thread int gw_tls_in_burst; /* this thread holds the connection for a burst (burst.c) */

static const gw_call_hooks *hooks;

void gw_set_call_hooks(const gw_call_hooks *h) { __atomic_store_n(&hooks, h, __ATOMIC_RELEASE); }

/* the registered hook, before the request buffer is touched (it may build requests itself) */
static void before_request(unsigned op)
{
    const gw_call_hooks *h = __atomic_load_n(&hooks, __ATOMIC_ACQUIRE);
    if (h && !gw_tls_in_burst)
        h->before_request(op);
}

static __thread struct {
    gw_req q;
    gw_rep r;
} stash[4];
static __thread int stashed;

int gw_wire_tls_push(void)
{
    if (stashed == 4)
        return -1;
    stash[stashed].q = gw_tls_req;
    stash[stashed].r = gw_tls_rep;
    stashed++;
    memset(&gw_tls_req, 0, sizeof gw_tls_req);
    memset(&gw_tls_rep, 0, sizeof gw_tls_rep);
    return 0;
}

void gw_wire_tls_pop(void)
{
    free(gw_tls_req.buf);
    free(gw_tls_rep.buf);
    stashed--;
    gw_tls_req = stash[stashed].q;
    gw_tls_rep = stash[stashed].r;
}

/* the registered hook, the caller's request and reply kept intact (the
 * reply memo reads the request after the call) */
void gw_after_reply(unsigned op)
{
    const gw_call_hooks *h = __atomic_load_n(&hooks, __ATOMIC_ACQUIRE);
    if (h && !gw_wire_tls_push()) {
        h->after_reply(op);
        gw_wire_tls_pop();
    }
}

static void req_reserve(gw_req *q, size_t more)
{
    if (q->oom || q->len + more <= q->cap)
        return;
    size_t cap = q->cap ? q->cap : 4096;
    while (cap < q->len + more)
        cap *= 2;
    uint8_t *b = realloc(q->buf, cap);
    if (!b) {
        q->oom = 1;
        return;
    }
    q->buf = b;
    q->cap = cap;
}

gw_req *gw_req_begin_quiet(unsigned op)
{
    before_request(op);
    gw_req *q = &gw_tls_req;
    q->len = sizeof(gw_hdr);
    q->op = op;
    q->flags = 0;
    q->oom = 0;
    q->route = -1;
    req_reserve(q, 256);
    return q;
}

gw_req *gw_req_begin(unsigned op)
{
    GW_WIRE_COUNT(call, op);
    return gw_req_begin_quiet(op);
}

void gw_req_set_flags(gw_req *q, unsigned flags) { q->flags = flags; }

void gw_put_raw(gw_req *q, const void *p, size_t n)
{
    req_reserve(q, n);
    if (q->oom)
        return;
    if (n)
        memcpy(q->buf + q->len, p, n);
    q->len += n;
}

void gw_put_u32(gw_req *q, uint32_t v) { gw_put_raw(q, &v, 4); }
void gw_put_u64(gw_req *q, uint64_t v) { gw_put_raw(q, &v, 8); }
void gw_put_f64(gw_req *q, double v) { gw_put_raw(q, &v, 8); }

void gw_put_in(gw_req *q, const void *p, size_t nbytes)
{
    if (!p || nbytes >= NULL_MARKER) {
        gw_put_u32(q, p ? (q->oom = 1, 0) : NULL_MARKER);
        return;
    }
    gw_put_u32(q, (uint32_t)nbytes);
    gw_put_raw(q, p, nbytes);
}

void gw_put_out(gw_req *q, const void *p, size_t count)
{
    if (p && count >= NULL_MARKER)
        q->oom = 1;
    gw_put_u32(q, p ? (uint32_t)count : NULL_MARKER);
}

void gw_put_str(gw_req *q, const char *s)
{
    gw_put_in(q, s, s ? strlen(s) : 0);
}

void gw_put_handles(gw_req *q, void *const *h, size_t n)
{
    if (!h) {
        gw_put_u32(q, NULL_MARKER);
        return;
    }
    gw_put_u32(q, (uint32_t)(n * 8));
    for (size_t i = 0; i < n; i++)
        gw_put_u64(q, (uint64_t)(uintptr_t)h[i]);
}

const void *gw_get_view(gw_rep *r, size_t n)
{
    if (r->short_read || r->len - r->pos < n) {
        r->short_read = 1;
        return NULL;
    }
    const void *p = r->buf + r->pos;
    r->pos += n;
    return p;
}

int gw_get_bytes(gw_rep *r, void *dst, size_t n)
{
    const void *p = gw_get_view(r, n);
    if (!p)
        return -1;
    if (n)
        memcpy(dst, p, n);
    return 0;
}

uint32_t gw_get_u32(gw_rep *r)
{
    uint32_t v = 0;
    gw_get_bytes(r, &v, 4);
    return v;
}

uint64_t gw_get_u64(gw_rep *r)
{
    uint64_t v = 0;
    gw_get_bytes(r, &v, 8);
    return v;
}

void gw_get_handles(gw_rep *r, void **h, size_t n)
{
#ifdef GW_NVML_CLIENT
    for (size_t i = 0; i < n; i++) /* several servers: whose it is (native/nvml/servers.c) */
        h[i] = (void *)(uintptr_t)gw_nvml_handle_on(gw_get_u64(r), r->route);
#else
    for (size_t i = 0; i < n; i++)
        h[i] = (void *)(uintptr_t)gw_handle_on(gw_get_u64(r), r->route); /* several servers: whose it is */
#endif
}

#ifndef GW_NVML_CLIENT
void gw_get_allocation_handles(gw_rep *r, uint64_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++) /* several servers: whose it is */
        h[i] = gw_allocation_handle_on(gw_get_u64(r), r->route);
}
#endif

CUresult gw_rep_status(gw_rep *r, CUresult res)
{
    if (r->short_read) {
        gw_log("short reply from the server; returning CUDA_ERROR_UNKNOWN");
        return CUDA_ERROR_UNKNOWN;
    }
    return res;
}

void gw_rep_end(gw_rep *r) { (void)r; }

const uint8_t *gw_rep_bytes(const gw_rep *r) { return r->buf; }
size_t gw_rep_size(const gw_rep *r) { return r->len; }

const uint8_t *gw_rep_here(const gw_rep *r) { return r->buf + r->pos; }
size_t gw_rep_left(const gw_rep *r) { return r->short_read ? 0 : r->len - r->pos; }

int gw_rep_skip(gw_rep *r, size_t got)
{
    if (!got || got > gw_rep_left(r)) {
        r->short_read = 1;
        return -1;
    }
    r->pos += got;
    return 0;
}

int gw_rep_resume(gw_rep *r, size_t at)
{
    if (!at || at > r->len) { /* a generated decoder returns 0 when the reply is shorter than its fields */
        r->short_read = 1;
        return -1;
    }
    r->pos = at;
    return 0;
}
