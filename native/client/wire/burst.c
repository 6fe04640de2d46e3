/* Bursts: several waiting requests from one thread, their replies read in
 * order while it holds the connection and the reader role (large
 * device-to-host copies: no round trip between pieces). */
#include <string.h>

#include "stream.h"

static int burst_waited; /* a burst is one round trip, however many replies */
static uint64_t burst_t0;
static unsigned burst_op;
static int burst_failed;

CUresult gw_burst_begin(unsigned op)
{
    if (gw_servers_n > 1 && gw_route_now() != 0) /* several servers: another's (servers.c) */
        return gw_link_burst_begin(gw_route_now(), op);
    gw_req probe = {.op = op, .len = sizeof(gw_hdr)};
    CUresult rc = gw_stream_usable(&probe);
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&gw_conn_lock);
    /* the burst reads its own replies, in order: it holds the reader role
     * throughout and hands other threads' replies on as they come */
    pthread_mutex_lock(&gw_recv_lock);
    while (gw_reader_busy)
        pthread_cond_wait(&gw_recv_cv, &gw_recv_lock);
    gw_reader_busy = 1;
    pthread_mutex_unlock(&gw_recv_lock);
    gw_tls_in_burst = 1;
    burst_waited = 0;
    burst_t0 = gw_now_ns();
    burst_failed = 0;
    burst_op = op;
    return CUDA_SUCCESS;
}

CUresult gw_burst_queue(gw_req *q, uint32_t *seq)
{
    if (gw_link_bursting())
        return gw_link_burst_queue(q, seq);
    *seq = gw_next_seq++;
    return gw_stream_queue_locked(q, *seq) ? CUDA_ERROR_DEVICE_UNAVAILABLE : CUDA_SUCCESS;
}

CUresult gw_burst_reply_into(uint32_t seq, gw_rep **out, void *dst, size_t n, int *placed)
{
    gw_rep *r = &gw_tls_rep;
    r->direct = dst;
    r->direct_len = n;
    r->direct_used = 0;
    CUresult rc = gw_burst_reply(seq, out);
    *placed = r->direct_used;
    r->direct = NULL;
    r->direct_used = 0;
    return rc;
}

CUresult gw_burst_reply(uint32_t seq, gw_rep **out)
{
    gw_rep *r = &gw_tls_rep;
    r->len = r->pos = 0;
    r->short_read = 0;
    *out = r;
    if (gw_link_bursting())
        return gw_link_burst_reply(seq, r);
    int got = 0;
    if (burst_failed || gw_stream_flush_locked())
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    while (!got) {
        if (gw_stream_read_one(seq, r, &got)) {
            burst_failed = 1;
            return CUDA_ERROR_DEVICE_UNAVAILABLE;
        }
    }
    if (!burst_waited++)
        GW_WIRE_COUNT(round_trip, burst_op, gw_now_ns() - burst_t0);
    else
        GW_WIRE_COUNT(burst_reply);
    gw_reply_req rep = {0};
    r->pos = gw_reply_req_get(r->buf, r->len, &rep); /* every reply read holds its result */
    return (CUresult)rep.result;
}

void gw_burst_end(void)
{
    if (gw_link_bursting()) {
        gw_link_burst_end();
        return;
    }
    pthread_mutex_lock(&gw_recv_lock);
    gw_reader_release_locked(burst_failed || gw_conn_lost);
    pthread_mutex_unlock(&gw_recv_lock);
    pthread_mutex_unlock(&gw_conn_lock);
    gw_tls_in_burst = 0;
    gw_after_reply(burst_op);
}

