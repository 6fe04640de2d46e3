/* gpuwire wire format: shared by the client library and the data-plane worker.
 * docs/protocol.md is the specification; this header is its C form.
 * Everything on the wire is little-endian. Every length read from the wire is
 * checked against the bytes actually received before it is used. */
#ifndef GPUWIRE_WIRE_H
#define GPUWIRE_WIRE_H

#include <stdint.h>
#include <stddef.h>

#define GW_PROTO_VERSION 1u
#define GW_HELLO_MAGIC "GPUWIRE\0"          /* 8 bytes, first thing a client sends */
#define GW_MAX_PAYLOAD (16u * 1024u * 1024u) /* larger payloads are refused */
#define GW_COPY_CHUNK (4u * 1024u * 1024u)   /* bulk copies travel in chunks of this */

/* Every frame starts with this 16-byte header. */
typedef struct gw_hdr {
    uint32_t len;   /* payload bytes that follow, <= GW_MAX_PAYLOAD */
    uint16_t op;    /* GW_OP_* or a generated driver-call id (>= GW_OP_FIRST_CALL) */
    uint16_t flags; /* GW_F_* */
    uint32_t tid;   /* client thread tag: calls with one tag run on one worker thread */
    uint32_t seq;   /* request number; a reply echoes its request's seq */
} gw_hdr;

_Static_assert(sizeof(gw_hdr) == 16, "gw_hdr is 16 bytes on the wire");

/* Control ops. Driver calls use ids from native/generated/gw_ops.h. */
enum {
    GW_OP_HELLO = 1,    /* client -> server: gw_hello + host name + program name */
    GW_OP_HELLO_OK = 2, /* worker -> client: gw_hello_ok */
    GW_OP_ERROR = 3,    /* server/worker -> client: u32 code, then a UTF-8 message; then close */
    GW_OP_REPLY = 4,    /* worker -> client: i32 CUresult, then the call's outputs */
    GW_OP_BYE = 5,      /* client -> worker: orderly end of session */
    GW_OP_FUNC_LAYOUT = 6, /* u64 function/kernel id -> i32 result, u32 n, n x (u32 offset, u32 size) */
    GW_OP_STAGE = 7,    /* u64 offset, u64 total, bytes: append to the thread's staging buffer */
    /* 8..15: session control, answered by the Python server (src/gpuwire/protocol.py) */
    GW_OP_DEVICE_ATTRS = 16, /* u32 device -> i32 result, u32 n, n x (i32 status, i32 value) for attributes 1..n */
    GW_OP_FIRST_CALL = 256
};

/* Frame flags. */
enum {
    GW_F_NOREPLY = 1u << 0, /* the worker sends no reply; a failure is kept for the next GW_F_COLLECT */
    GW_F_COLLECT = 1u << 1, /* the reply carries the first failure of earlier NOREPLY requests, if any */
};

/* Handle ids the client names itself (streams, events, graphs: creating them
 * need not wait) have this bit set and are multiples of 8; the worker's own
 * ids never have it. */
#define GW_CLIENT_ID_BIT (1ull << 62)

/* GW_OP_ERROR codes. */
enum {
    GW_ERR_VERSION = 1,   /* protocol version or API digest mismatch */
    GW_ERR_MALFORMED = 2, /* a frame failed validation */
    GW_ERR_DRIVER = 3,    /* the worker could not load or initialise the driver */
    GW_ERR_REFUSED = 4,   /* the server refused the session (auth, lease, load) */
};

/* HELLO payload (client -> server), followed by host_len bytes of host name and
 * prog_len bytes of program name (neither NUL-terminated). */
typedef struct gw_hello {
    char magic[8];          /* GW_HELLO_MAGIC */
    uint32_t proto_version; /* GW_PROTO_VERSION */
    uint32_t api_digest;    /* GW_API_DIGEST of the client's generated op table */
    uint32_t pid;           /* client process id */
    uint16_t host_len;      /* <= 255 */
    uint16_t prog_len;      /* <= 255 */
} gw_hello;

_Static_assert(sizeof(gw_hello) == 24, "gw_hello is 24 bytes on the wire");

/* HELLO_OK payload (worker -> client). */
typedef struct gw_hello_ok {
    uint32_t proto_version;
    int32_t driver_version; /* what cuDriverGetVersion returns on the server */
    uint32_t device_count;
    uint32_t flags;
    char driver_desc[64];   /* NUL-terminated, e.g. "nvidia 580.159.04" or "gpuwire CPU stand-in" */
} gw_hello_ok;

_Static_assert(sizeof(gw_hello_ok) == 80, "gw_hello_ok is 80 bytes on the wire");

#endif
