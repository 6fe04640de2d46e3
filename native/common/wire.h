/* gpuwire wire format: shared by the client library and the data-plane worker.
 * docs/protocol.md is the specification; this header is its C form.
 * Everything on the wire is little-endian. Every length read from the wire is
 * checked against the bytes actually received before it is used. */
#ifndef GPUWIRE_WIRE_H
#define GPUWIRE_WIRE_H

#include <stdint.h>
#include <stddef.h>

#define GW_PROTO_VERSION 2u
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
    /* 8..15: session control by the Python server (docs/server.md) */
    GW_OP_QUEUED = 8,    /* server -> client: u32 position, u32 waiting, u32 waited_ms, UTF-8 line */
    GW_OP_CHALLENGE = 9, /* server -> client: GW_NONCE_SIZE-byte nonce */
    GW_OP_PROOF = 10,    /* client -> server: token id, HMAC-SHA256 (GW_PROOF_SIZE bytes) */
    GW_OP_STATUS = 11,   /* status probe answer (JSON), then echo frames */
    GW_OP_LANE = 12,     /* a bulk lane (docs/protocol.md "Lanes"): client -> server gw_lane_hello on a new
                            connection; worker -> client the lane's acceptance (len 0, seq = lane); then
                            client -> worker host-to-device data frames (seq counts from 0 per lane) and
                            worker -> client device-to-host pieces (seq = the client's tag) */
    GW_OP_DEVICE_ATTRS = 16, /* u32 device -> i32 result, u32 n, n x (i32 status, i32 value) for attributes 1..n */
    GW_OP_MODULE_INFO = 17,  /* worker -> client, unasked, after a load: its functions' names and layouts */
    GW_OP_CAS_REFS = 18, /* content addresses of a copy's or an image's chunks -> the ones the cache lacks (docs/cache.md) */
    GW_OP_CAS_DATA = 19, /* the bytes of one chunk the cache lacked: used, and stored under the worker's own hash */
    GW_OP_STDOUT = 20,   /* worker -> client, unasked: bytes the driver wrote to stdout (device printf), to print */
    GW_OP_LAND = 21,     /* u64 landing id, u64 src, u64 n, u64 stream, u32 flags (1: per-thread stream):
                          an asynchronous device-to-host copy into the client's pinned memory (posted) */
    GW_OP_LANDED = 22,   /* worker -> client, unasked: u64 landing id, u64 offset, bytes of that copy */
    GW_OP_FIRST_CALL = 256
};
#define GW_OP_DELIVER GW_OP_LAND /* the names decided in issue #17 (deliveries) */
#define GW_OP_DELIVERED GW_OP_LANDED

/* Frame flags. */
enum {
    GW_F_NOREPLY = 1u << 0, /* the worker sends no reply; a failure is kept for the next GW_F_COLLECT */
    GW_F_COLLECT = 1u << 1, /* the reply carries the first failure of earlier NOREPLY requests, if any */
    GW_F_LANE = 1u << 2,    /* a copy whose bytes travel on a lane: host-to-device, u64 dst, u64 stream id,
                               u32 lane, u32 bytes (the lane's next data frame); device-to-host, the usual
                               fields then u32 lane, u32 tag (the piece comes back on the lane) */
};

/* Handle ids the client names itself (streams, events, graphs: creating them
 * need not wait) have this bit set and are multiples of 8; the worker's own
 * ids never have it. */
#define GW_CLIENT_ID_BIT ((uint64_t)1 << 62)

/* On a HELLO frame only: extension records (u16 type, u16 len, value) follow
 * the program name. */
#define GW_F_HELLO_EXT (1u << 8)
enum {
    GW_EXT_LEASE_MODE = 1,  /* u8: 0 shared, 1 exclusive */
    GW_EXT_MEM_CAP = 2,     /* u64 bytes, 0 = none */
    GW_EXT_TOKEN_PROOF = 3, /* reserved */
    GW_EXT_NO_WAIT = 4,     /* u8: 1 = refuse at once instead of queueing */
    GW_EXT_STATUS_PROBE = 5, /* u8: 1 = status probe, no worker */
    GW_EXT_GPU = 6,         /* u32: the GPU the lease is on */
    GW_EXT_ENV = 7,         /* "NAME=VALUE\0NAME=VALUE" (no final NUL): the client's CUDA_VISIBLE_DEVICES
                               and CUDA_DEVICE_ORDER, applied to the worker's driver */
    GW_EXT_NVML = 8,        /* u8 1: an NVML-only session (libnvidia-ml.so.1): no GPU lease */
    GW_EXT_CRITICAL = 0x8000, /* unknown types with this bit are refused, others skipped */
};
#define GW_HELLO_EXT_MAX 1024
#define GW_NONCE_SIZE 32
#define GW_TOKEN_ID_SIZE 16
#define GW_MAC_SIZE 32
#define GW_PROOF_SIZE 48
#define GW_QUEUED_TEXT_MAX 512

/* Content-addressed transfers (docs/cache.md). */
#define GW_CAS_MAX_REFS 4096u /* chunk references in one CAS_REFS request */
enum {
    GW_CAS_TARGET_COPY = 1,  /* a host-to-device copy: u32 copy op, u64 dst, u64 stream id */
    GW_CAS_TARGET_STAGE = 2, /* the thread's staging buffer (module images): u64 total (REFS) or u64 offset (DATA) */
};
enum {
    GW_CAS_CODEC_NONE = 0,
    GW_CAS_CODEC_ZSTD = 1,
};
/* gw_hello_ok.flags */
enum {
    GW_OK_CAS = 1u << 0,  /* the worker has a content cache: CAS ops are served */
    GW_OK_ZSTD = 1u << 1, /* the worker decompresses GW_CAS_CODEC_ZSTD */
    GW_OK_LANES = 1u << 2, /* a gw_lane_grant follows gw_hello_ok: bulk bytes may come on extra connections */
    GW_OK_STANDIN = 1u << 3, /* the worker serves the CPU stand-in driver (a test double), not a GPU */
};

/* Lanes: extra connections that carry large copies' bytes, both ways, beside the
 * session's own, so a large copy is not held to what one TCP stream moves.
 * The worker grants them in HELLO_OK; the client dials the server again and
 * says which session and lane (gw_lane_hello); the server hands the socket to
 * that session's worker, which checks the token. */
#define GW_LANES_MAX 8u
#define GW_LANE_TOKEN_SIZE 16
typedef struct gw_lane_grant {
    uint32_t session;                   /* the server's session id */
    uint32_t lanes;                     /* how many lanes the worker takes, <= GW_LANES_MAX */
    uint8_t token[GW_LANE_TOKEN_SIZE];  /* random, this session's: proves a lane belongs to it */
} gw_lane_grant;
_Static_assert(sizeof(gw_lane_grant) == 24, "gw_lane_grant is 24 bytes on the wire");

typedef struct gw_lane_hello {
    char magic[8];                      /* GW_HELLO_MAGIC */
    uint32_t session;
    uint32_t lane;                      /* 0 .. lanes-1 */
    uint8_t token[GW_LANE_TOKEN_SIZE];
} gw_lane_hello;
_Static_assert(sizeof(gw_lane_hello) == 32, "gw_lane_hello is 32 bytes on the wire");

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
