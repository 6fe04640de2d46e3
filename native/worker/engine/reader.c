/* The reader: the only thread that reads the client's connection. Each frame
 * is checked (size, op) and becomes a job; jobs go to the scheduler a batch
 * at a time, per client thread tag. A copy whose bytes travel on a lane
 * (GW_F_LANE) is joined with the lane's data frame here. A malformed frame,
 * a lost connection or a goodbye ends the session. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../common/session_stats.h"
#include "../../generated/nvml_ops.h"
#include "../handlers/cas_store.h"
#include "engine.h"
#include "internal.h"

static int fd = -1; /* the client's connection */

static int read_all(void *p, size_t n) { return gw_recv_all(fd, p, n, 0); }

/* Buffered reads: posted requests arrive many to a segment, and one recv
 * should deliver them all rather than two system calls per request. */
static uint8_t inbuf[1u << 20];
static size_t in_pos, in_end;

/* GPUWIRE_READER_SPIN_US=N (the server's environment): with the input
 * buffer empty, the reader polls the connection for up to N us before it
 * sleeps in recv. A sleeping reader's wake-up is paid by the frame that ends
 * its sleep, the first of each of the client's bursts (a decoded token's
 * inputs and launch, after the application's own work on the previous
 * logits), and on a virtual machine such a wake-up is costly. The spin costs
 * a core while the client is quiet, at most N us after its last frame.
 * Default: 10000 on a machine of 8 or more cores (with the client's
 * GPUWIRE_SPIN_US, llama.cpp tg128 0.96 of native on an H100 against
 * 0.89-0.93, bench/results.md), else 0. */
#define SPIN_DEFAULT_US 10000
static int64_t spin_ns_cache = -1;
#define spin_ns() gw_spin_setting_ns(&spin_ns_cache, "GPUWIRE_READER_SPIN_US", SPIN_DEFAULT_US, 1000000)

static ssize_t spin_recv(void)
{
    uint64_t ns = spin_ns();
    if (ns) {
        uint64_t until = gw_mono_ns() + ns;
        do {
            ssize_t r = recv(fd, inbuf, sizeof inbuf, MSG_DONTWAIT);
            if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
                return r;
        } while (gw_mono_ns() < until);
    }
    return recv(fd, inbuf, sizeof inbuf, 0);
}

static int read_frame_bytes(void *p, size_t n)
{
    uint8_t *dst = p;
    while (n) {
        if (in_pos == in_end) {
            if (n >= sizeof inbuf / 4) { /* large payload: straight into place */
                if (!gw_prof_on())
                    return read_all(dst, n);
                uint64_t t0 = gw_prof_now();
                int r = read_all(dst, n);
                gw_prof_add_reader(GW_PROF_READ_LARGE, gw_prof_now() - t0);
                return r;
            }
            ssize_t r = spin_recv();
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return -1;
            in_pos = 0;
            in_end = (size_t)r;
        }
        size_t k = in_end - in_pos < n ? in_end - in_pos : n;
        memcpy(dst, inbuf + in_pos, k);
        in_pos += k;
        dst += k;
        n -= k;
    }
    return 0;
}

/* Jobs read but not yet queued: the reader hands a thread several at once
 * while more frames wait in its input buffer. */
typedef struct pending {
    tthread *t;
    job *head, *tail;
    size_t bytes, cost;
    int n;
    uint64_t frames, frame_bytes; /* for the session counters, published per hand-off */
} pending;

static void pending_count(pending *pd)
{
    GW_SSTATS_ADD(requests, pd->frames); /* what the server shows (common/session_stats.h) */
    GW_SSTATS_ADD(bytes_in, pd->frame_bytes);
    pd->frames = pd->frame_bytes = 0;
}

static int pending_flush(pending *pd)
{
    pending_count(pd);
    if (!pd->head)
        return 0;
    int rc = gw_sched_enqueue(pd->t, pd->head, pd->tail, pd->bytes, pd->cost);
    if (rc)
        for (job *j = pd->head, *next; j; j = next) {
            next = j->next;
            gw_job_free(j);
        }
    *pd = (pending){0};
    return rc;
}

static void pending_drop(pending *pd)
{
    pending_count(pd);
    for (job *j = pd->head, *next; j; j = next) {
        next = j->next;
        gw_job_free(j);
    }
    *pd = (pending){0};
}

/* A GW_F_LANE copy frame (LANE_HTOD: u64 dst, u64 stream, u32 lane, u32
 * bytes) joined with its lane's next data frame into an ordinary copy job
 * (HTOD: dst, stream, then the bytes); NULL and why if the frame is
 * malformed, the lane is not this session's or it closed (why empty: the
 * session had already broken). */
static job *lane_copy_job(const gw_hdr *h, pending *pd, char *why, size_t whycap)
{
    uint8_t a[GW_LANE_HTOD_REQ_SIZE];
    gw_lane_htod_req q = {0};
    if (gw_op_copy_dir(h->op) != GW_COPY_HTOD || h->len != sizeof a) {
        snprintf(why, whycap, "a lane frame must be a host-to-device copy of %zu bytes (op %u, %u bytes)", sizeof a,
                 h->op, h->len);
        return NULL;
    }
    if (read_frame_bytes(a, sizeof a)) {
        snprintf(why, whycap, "connection lost inside a lane copy frame");
        return NULL;
    }
    if (gw_lane_htod_req_get(a, sizeof a, &q) != sizeof a) { /* cannot be short: its length was checked */
        snprintf(why, whycap, "a lane frame must be a host-to-device copy of %zu bytes (op %u, %u bytes)", sizeof a,
                 h->op, h->len);
        return NULL;
    }
    uint32_t got;
    if (pending_flush(pd)) { /* what was read goes to its thread before waiting for the lane */
        why[0] = 0;          /* the session broke meanwhile: the client was told then */
        return NULL;
    }
    job *j = gw_lane_next(q.lane, &got, why, whycap);
    if (!j)
        return NULL;
    if (got != q.bytes) {
        gw_job_free(j);
        snprintf(why, whycap, "lane %u: a copy of %u bytes, but the lane's next data frame has %u", q.lane, q.bytes,
                 got);
        return NULL;
    }
    j->h = *h;
    j->h.flags &= (uint16_t)~GW_F_LANE;
    /* the lane's bytes were read in after room for the copy's fields (gw_lane_job_alloc) */
    j->h.len = (uint32_t)gw_htod_req_put(j->payload, &(gw_htod_req){.dst = q.dst, .stream = q.stream}) + got;
    return j;
}

/* At a session's end: where the lanes' host-to-device pieces were read to
 * (core/pinned.c), how many deliveries were staged in them (deliveries.c), and
 * how many posted synchronizes were skipped (sync_fold.c). */
static void log_session_counts(void)
{
    unsigned long long pinned, plain, frames;
    gw_pinned_counts(&pinned, &plain, &frames);
    if (pinned || plain)
        gw_wlog("host-to-device pieces on lanes: %llu into page-locked buffers, %llu into ordinary memory", pinned,
                plain);
    if (frames)
        gw_wlog("host-to-device copies on the session's connection read into page-locked buffers: %llu", frames);
    unsigned long long chunked, on_lanes;
    gw_deliveries_counts(&chunked, &on_lanes);
    if (chunked || on_lanes)
        gw_wlog("device-to-host copies delivered from page-locked piece buffers: %llu; on the lanes: %llu", chunked,
                on_lanes);
    unsigned long long skipped = gw_syncs_skipped();
    if (skipped)
        gw_wlog("posted stream synchronizes skipped (stream idle, or a later one covers them): %llu", skipped);
}

static int valid_op(unsigned op)
{
    if (gw_op_is_control(op))
        return !gw_op_needs_cas(op) || gw_cas_enabled();
    if (gw_is_nvml_op(op))
        return gw_nvml_valid_op(op);
    return op >= 256 && op < 256 + GW_OP_COUNT && gw_dispatch[op - 256];
}

static int serve(void)
{
    uint64_t calls = 0;
    pending pd = {0};
    for (;;) {
        gw_hdr h;
        /* what was read goes to its thread before the reader may wait for more bytes */
        if (in_end - in_pos < sizeof h && pending_flush(&pd)) {
            gw_sched_stop(0);
            return 3;
        }
        if (read_frame_bytes(&h, sizeof h)) {
            pending_drop(&pd);
            if (gw_sched_broken()) {
                gw_sched_stop(0);
                return 3;
            }
            gw_wlog("client disconnected after %llu requests", (unsigned long long)calls);
            gw_sched_stop(0);
            log_session_counts();
            return 0;
        }
        if (h.op == GW_OP_BYE) {
            pending_flush(&pd);
            gw_sched_stop(1);
            if (!gw_sched_broken())
                gw_wlog("client said goodbye after %llu requests", (unsigned long long)calls);
            log_session_counts();
            return 0;
        }
        if (h.len > GW_MAX_PAYLOAD) {
            pending_drop(&pd);
            gw_wlog("closing session: frame of %u bytes is over the %u-byte limit", h.len, GW_MAX_PAYLOAD);
            gw_sched_stop(0);
            gw_send_error(GW_ERR_MALFORMED, "frame over the size limit");
            return 3;
        }
        if (!valid_op(h.op)) {
            pending_drop(&pd);
            gw_wlog("closing session: unknown or unsupported request op %u", h.op);
            gw_sched_stop(0);
            gw_send_error(GW_ERR_MALFORMED, "unknown request op");
            return 3;
        }
        job *j;
        uint32_t wire_len = h.len; /* a lane's bytes are counted as they arrive (core/lanes.c) */
        if ((h.flags & GW_F_LANE) && gw_op_copy_dir(h.op) != GW_COPY_DTOH) { /* device-to-host: handlers/copies.c */
            char why[200];
            j = lane_copy_job(&h, &pd, why, sizeof why);
            if (!j) {
                pending_drop(&pd);
                gw_sched_stop(0);
                if (why[0]) {
                    gw_wlog("closing session: %s", why);
                    gw_send_error(GW_ERR_MALFORMED, why);
                }
                return 3;
            }
            h = j->h;
        } else {
            j = gw_op_copy_dir(h.op) == GW_COPY_HTOD ? gw_htod_job_alloc(h.len) : gw_job_alloc(h.len);
            if (!j) {
                pending_drop(&pd);
                gw_wlog("closing session: out of memory for a %u-byte frame", h.len);
                gw_sched_stop(0);
                return 4;
            }
            j->h = h;
            if (in_end - in_pos < h.len && pending_flush(&pd)) {
                gw_job_free(j);
                gw_sched_stop(0);
                return 3;
            }
            if (read_frame_bytes(j->payload, h.len)) {
                gw_job_free(j);
                pending_drop(&pd);
                gw_wlog("closing session: connection lost inside a %u-byte frame (truncated frame)", h.len);
                gw_sched_stop(0);
                return 3;
            }
        }
        if (h.op == GW_OP_MAPPED_WRITE || h.op == GW_OP_HOST_RETURNED) {
            /* host writes reach the worker's copy now, before any later frame
             * of any thread runs (handlers/mapped.c); a host function's end
             * lets its stream go on, however its job's thread waits (host_calls.c) */
            char why[200];
            int bad = h.op == GW_OP_MAPPED_WRITE ? gw_mapped_write(j->payload, h.len, why, sizeof why)
                                                 : gw_host_returned(j->payload, h.len, why, sizeof why);
            gw_job_free(j);
            if (bad) {
                pending_drop(&pd);
                gw_wlog("closing session: %s", why);
                gw_sched_stop(0);
                gw_send_error(GW_ERR_MALFORMED, why);
                return 3;
            }
            calls++;
            continue;
        }
        calls++;
        GW_TL('R', h.op, h.seq, h.flags);
        pd.frames++;
        pd.frame_bytes += sizeof h + wire_len;
        tthread *t = gw_sched_thread(h.tid);
        if (!t) {
            gw_job_free(j);
            pending_drop(&pd);
            gw_wlog("closing session: more than %d client threads, or no thread for one", MAX_THREADS);
            gw_sched_stop(0);
            gw_send_error(GW_ERR_MALFORMED, "too many client threads");
            return 3;
        }
        if ((pd.head && (pd.t != t || pd.n >= BATCH)) && pending_flush(&pd)) {
            gw_job_free(j);
            gw_sched_stop(0);
            return 3;
        }
        j->next = NULL;
        if (pd.head)
            pd.tail->next = j;
        else
            pd.head = j, pd.t = t;
        pd.tail = j;
        pd.bytes += h.len;
        pd.cost += gw_job_cost(j);
        pd.n++;
    }
}

/* serve()'s status is returned, not exited with: native/fuzz/ drives it in process. */
int gw_worker_serve(int sock)
{
    fd = sock;
    gw_io_set_client(sock);
    in_pos = in_end = 0;
    return serve();
}
