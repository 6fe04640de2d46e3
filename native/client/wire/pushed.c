/* Frames the worker sends unasked, and the registry that hands each to the
 * code above that wants it: the wire layer knows their ops and sizes, never
 * what they mean. An op nobody registered is read and dropped (an NVML
 * session gets none of these). */
#include <errno.h>
#include <string.h>

#include "stream.h"

static struct pushed {
    unsigned op;
    uint32_t min_len; /* a shorter frame is malformed */
    gw_pushed_fn fn;
} pushed[] = {
    {GW_OP_MODULE_INFO, 0, NULL},                   /* a loaded module's functions (state/modules.c) */
    {GW_OP_DELIVERED, GW_DELIVERED_REQ_SIZE, NULL}, /* a piece of a delivered copy (state/deliveries.c) */
    {GW_OP_STDOUT, 0, NULL},                        /* device printf output (api/device_printf.c) */
    {GW_OP_HOST_CALL, GW_HOST_CALL_REQ_SIZE, NULL}, /* a host function to run (state/host_calls.c) */
};

#define N_PUSHED (sizeof pushed / sizeof pushed[0])

void gw_on_pushed(unsigned op, gw_pushed_fn fn)
{
    for (size_t i = 0; i < N_PUSHED; i++)
        if (pushed[i].op == op)
            pushed[i].fn = fn;
}

/* a frame another server's link read whole (servers.c): its handler reads from here */
static __thread const uint8_t *from_buf;
static __thread size_t from_left;

int gw_pushed_read(void *dst, size_t n)
{
    if (!from_buf)
        return gw_io_read_all(gw_conn_fd, dst, n, -1);
    if (n > from_left)
        return -1;
    memcpy(dst, from_buf, n);
    from_buf += n, from_left -= n;
    return 0;
}

int gw_pushed_dispatch_bytes(const gw_hdr *h, const uint8_t *payload)
{
    from_buf = payload, from_left = h->len;
    int rc = gw_pushed_dispatch(h);
    from_buf = NULL, from_left = 0;
    return rc;
}

int gw_pushed_discard(size_t len)
{
    uint8_t piece[16384];
    while (len) {
        size_t k = len < sizeof piece ? len : sizeof piece;
        if (gw_pushed_read(piece, k))
            return -1;
        len -= k;
    }
    return 0;
}

int gw_pushed_dispatch(const gw_hdr *h)
{
    for (size_t i = 0; i < N_PUSHED; i++) {
        const struct pushed *p = &pushed[i];
        if (h->op != p->op || h->len < p->min_len || h->len > GW_MAX_PAYLOAD)
            continue;
        if (p->fn ? p->fn(h->len) : gw_pushed_discard(h->len)) {
            if (!from_buf) /* a link's frame: the link decides (servers.c) */
                gw_stream_lose("receive");
            return -1;
        }
        GW_WIRE_COUNT(bytes, 0, sizeof *h + h->len);
        return 1;
    }
    return 0;
}
