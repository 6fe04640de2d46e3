/* Which outputs a cuStreamGetCaptureInfo call asked for (the application's
 * non-NULL pointers): the u32 after the stream in its request (docs/protocol.md). */
#ifndef GW_CAPTURE_INFO_H
#define GW_CAPTURE_INFO_H

enum {
    GW_CAPINFO_ID = 1u << 0,
    GW_CAPINFO_GRAPH = 1u << 1,
    GW_CAPINFO_DEPS = 1u << 2,
    GW_CAPINFO_EDGES = 1u << 3,
    GW_CAPINFO_COUNT = 1u << 4,
    GW_CAPINFO_ALL = (1u << 5) - 1,
};

#endif
