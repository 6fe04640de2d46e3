/* The size of a memory-pool attribute's value (cuda.h: int for the reuse
 * flags, cuuint64_t for the byte figures); 0 for an attribute not known here,
 * which then does not travel. Shared by the client and the worker. */
#ifndef GW_MEMPOOL_ATTRS_H
#define GW_MEMPOOL_ATTRS_H

#include <cuda.h>
#include <stddef.h>

static inline size_t gw_pool_attr_size(unsigned a)
{
    switch (a) {
    case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
        return sizeof(int);
    case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
    case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT:
    case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
    case CU_MEMPOOL_ATTR_USED_MEM_CURRENT:
    case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
        return sizeof(cuuint64_t);
    default:
        return 0;
    }
}

#endif
