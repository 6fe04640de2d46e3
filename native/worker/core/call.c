/* Decoding one request and building its reply. Every read is bounded by the
 * bytes the frame really carried. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"

#define NULL_MARKER 0xFFFFFFFFu
#define MAX_STR 65536u

/* The first failure of a call is kept: bad 1 malformed, 2 stuck (scheduler.c) */
static void fail_as(gw_call *c, int bad, const char *fmt, va_list ap)
{
    if (c->bad)
        return;
    c->bad = bad;
    vsnprintf(c->why, sizeof c->why, fmt, ap);
}

void gw_call_fail(gw_call *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_as(c, 1, fmt, ap);
    va_end(ap);
}

void gw_call_stuck(gw_call *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_as(c, 2, fmt, ap);
    va_end(ap);
}

int gw_stuck_seconds(void)
{
    static int s = -1;
    if (s < 0) {
        const char *v = getenv("GPUWIRE_WORKER_STUCK_S");
        char *end = NULL;
        long n = v && *v ? strtol(v, &end, 10) : 300;
        s = v && *v && (*end || n < 0 || n > 86400) ? 300 : (int)n;
    }
    return s;
}

int gw_cond_wait_bounded(pthread_cond_t *cv, pthread_mutex_t *m, struct timespec *deadline)
{
    int limit = gw_stuck_seconds();
    if (!limit)
        return pthread_cond_wait(cv, m);
    if (!deadline->tv_sec && !deadline->tv_nsec) {
        clock_gettime(CLOCK_REALTIME, deadline); /* the clock of a default condition variable */
        deadline->tv_sec += limit;
    }
    return pthread_cond_timedwait(cv, m, deadline);
}

const void *gw_in_view(gw_call *c, size_t n)
{
    if (c->bad)
        return NULL;
    if (c->len - c->pos < n) {
        gw_call_fail(c, "%s: request truncated (needs %zu more bytes, has %zu)", gw_op_name(c->h.op), n,
                     c->len - c->pos);
        return NULL;
    }
    const void *v = c->p + c->pos;
    c->pos += n;
    return v;
}

size_t gw_in_left(const gw_call *c) { return c->bad ? 0 : c->len - c->pos; }

const uint8_t *gw_in_next(const gw_call *c) { return c->p + c->pos; }

int gw_in_fields(gw_call *c, size_t size, size_t got)
{
    if (c->bad)
        return 0;
    size_t left = c->len - c->pos;
    if (got && got <= left) {
        c->pos += got;
        return 1;
    }
    if (size > left)
        gw_in_view(c, size); /* fails: the request is truncated */
    else
        gw_call_fail(c, "%s: fields not decoded (%zu of %zu bytes)", gw_op_name(c->h.op), got, left);
    return 0;
}

int gw_in_part_sized(gw_call *c, size_t (*field_size)(unsigned), size_t got)
{
    if (c->bad)
        return 0;
    size_t left = c->len - c->pos;
    if (got && got <= left) {
        c->pos += got;
        return 1;
    }
    for (unsigned i = 0; field_size(i); i++) { /* consumes the fields that are there, fails at the first cut */
        if (!gw_in_view(c, field_size(i)))
            return 0;
    }
    gw_call_fail(c, "%s: fields not decoded (%zu of %zu bytes)", gw_op_name(c->h.op), got, left);
    return 0;
}

uint32_t gw_in_u32(gw_call *c)
{
    uint32_t v = 0;
    const void *p = gw_in_view(c, 4);
    if (p)
        memcpy(&v, p, 4);
    return v;
}

uint64_t gw_in_u64(gw_call *c)
{
    uint64_t v = 0;
    const void *p = gw_in_view(c, 8);
    if (p)
        memcpy(&v, p, 8);
    return v;
}

double gw_in_f64(gw_call *c)
{
    double v = 0;
    const void *p = gw_in_view(c, 8);
    if (p)
        memcpy(&v, p, 8);
    return v;
}

void *gw_scratch(gw_call *c, size_t n)
{
    if (c->nallocs == c->capallocs) {
        size_t cap = c->capallocs ? c->capallocs * 2 : 8;
        void **a = realloc(c->allocs, cap * sizeof *a);
        if (!a)
            return NULL;
        c->allocs = a;
        c->capallocs = cap;
    }
    void *p = calloc(1, n ? n : 1);
    if (p)
        c->allocs[c->nallocs++] = p;
    return p;
}

const char *gw_in_str(gw_call *c)
{
    uint32_t n = gw_in_u32(c);
    if (c->bad || n == NULL_MARKER)
        return NULL;
    if (n > MAX_STR) {
        gw_call_fail(c, "%s: string of %u bytes is over the limit", gw_op_name(c->h.op), n);
        return NULL;
    }
    const void *src = gw_in_view(c, n);
    char *s = src ? gw_scratch(c, (size_t)n + 1) : NULL;
    if (!s)
        return NULL;
    memcpy(s, src, n);
    if (memchr(s, 0, n)) {
        gw_call_fail(c, "%s: string with an embedded NUL", gw_op_name(c->h.op));
        return NULL;
    }
    return s;
}

/* An input array: u32 byte length (or the NULL marker), then the bytes, copied
 * so the driver sees aligned memory. */
void *gw_in_array(gw_call *c, size_t esz, size_t *n)
{
    *n = 0;
    uint32_t bytes = gw_in_u32(c);
    if (c->bad || bytes == NULL_MARKER)
        return NULL;
    if (bytes > GW_MAX_PAYLOAD || (esz && bytes % esz)) {
        gw_call_fail(c, "%s: input array of %u bytes does not fit elements of %zu", gw_op_name(c->h.op), bytes, esz);
        return NULL;
    }
    const void *src = gw_in_view(c, bytes);
    void *dst = src ? gw_scratch(c, bytes) : NULL;
    if (!dst)
        return NULL;
    memcpy(dst, src, bytes);
    *n = esz ? bytes / esz : bytes;
    return dst;
}

void *gw_in_handles(gw_call *c, int type, size_t *n)
{
    *n = 0;
    uint32_t bytes = gw_in_u32(c);
    if (c->bad || bytes == NULL_MARKER)
        return NULL;
    if (bytes > GW_MAX_PAYLOAD || bytes % 8) {
        gw_call_fail(c, "%s: handle array of %u bytes", gw_op_name(c->h.op), bytes);
        return NULL;
    }
    size_t cnt = bytes / 8;
    void **out = gw_scratch(c, cnt * sizeof(void *));
    for (size_t i = 0; out && i < cnt; i++) {
        uint64_t id = gw_in_u64(c);
        out[i] = gw_handle_lookup(c, type, id);
    }
    *n = cnt;
    return out;
}

/* An output array: u32 element count (or the NULL marker); zeroed scratch. */
void *gw_out_array(gw_call *c, size_t esz, size_t *n)
{
    *n = 0;
    uint32_t cnt = gw_in_u32(c);
    if (c->bad || cnt == NULL_MARKER)
        return NULL;
    if ((uint64_t)cnt * esz > GW_MAX_PAYLOAD - 64) {
        gw_call_fail(c, "%s: output of %u x %zu bytes is over the limit", gw_op_name(c->h.op), cnt, esz);
        return NULL;
    }
    *n = cnt;
    return gw_scratch(c, (size_t)cnt * esz);
}

int gw_args_ok(gw_call *c)
{
    if (c->bad)
        return 0;
    if (c->pos != c->len) {
        gw_call_fail(c, "%s: %zu unexpected trailing bytes", gw_op_name(c->h.op), c->len - c->pos);
        return 0;
    }
    if (c->err != CUDA_SUCCESS) {
        gw_reply_result(c, c->err);
        return 0;
    }
    return 1;
}

static void reply_put(gw_call *c, const void *p, size_t n)
{
    if (c->rlen + n > c->rcap) {
        size_t cap = c->rcap ? c->rcap : 256;
        while (cap < c->rlen + n)
            cap *= 2;
        uint8_t *b = realloc(c->rbuf, cap);
        if (!b) {
            gw_call_fail(c, "out of memory building a reply");
            return;
        }
        c->rbuf = b;
        c->rcap = cap;
    }
    memcpy(c->rbuf + c->rlen, p, n);
    c->rlen += n;
}

void gw_reply_result(gw_call *c, CUresult r)
{
    uint8_t *p = gw_reply_start(c, GW_REPLY_REQ_SIZE);
    if (p)
        gw_reply_req_put(p, &(gw_reply_req){.result = (int32_t)r});
}

void gw_reply_bytes(gw_call *c, const void *p, size_t n)
{
    if (n)
        reply_put(c, p, n);
}

void gw_reply_u32(gw_call *c, uint32_t v) { reply_put(c, &v, 4); }

void *gw_reply_reserve(gw_call *c, size_t n)
{
    if (c->rlen + n > c->rcap) {
        size_t cap = c->rcap ? c->rcap : 256;
        while (cap < c->rlen + n)
            cap *= 2;
        uint8_t *b = realloc(c->rbuf, cap);
        if (!b)
            return NULL;
        c->rbuf = b;
        c->rcap = cap;
    }
    void *p = c->rbuf + c->rlen;
    c->rlen += n;
    return p;
}

uint8_t *gw_reply_start(gw_call *c, size_t n)
{
    c->rlen = sizeof(gw_hdr);
    uint8_t *p = gw_reply_reserve(c, n);
    if (!p) {
        gw_call_fail(c, "out of memory building a reply");
        return NULL;
    }
    c->replied = 1;
    return p;
}

void gw_reply_handles(gw_call *c, int type, void **h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t id = gw_handle_id(type, h[i]);
        reply_put(c, &id, 8);
    }
}
