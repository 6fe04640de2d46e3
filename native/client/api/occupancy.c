/* cuOccupancyMaxPotentialBlockSize(WithFlags), hand-written: the driver may
 * call a function of the application's (blockSizeToDynamicSMemSize: block
 * size -> dynamic shared memory bytes) while it searches, and that function
 * lives in this process. So the client calls it itself, beforehand, for every
 * block size the driver's search may try, and sends the answers as a table;
 * the worker hands its driver a callback that answers from the table
 * (native/worker/handlers/occupancy.c). One round trip, as without a callback.
 *
 * The search (CUDA's cuda_occupancy.h and cudaOccupancyMaxPotentialBlockSize
 * in cuda_runtime.h describe it): the limit is blockSizeLimit, 0 meaning
 * none, lowered to the device's and the function's maximum threads per block;
 * the driver tries the limit, then every multiple of the warp size (32) below
 * it, down to 32, stopping early once a size fills an SM. The table holds
 * every multiple of 32 up to min(blockSizeLimit or 1024, 1024), that bound
 * itself, and the function's own maximum where the client knows it (module
 * information: no question asked) and it is lower and not a multiple of 32.
 * A block size the driver asks that is not in the table is answered from the
 * nearest smaller entry, and the worker warns in its log (the answer may
 * then differ from native's).
 *
 * Format: OCCUPANCY_BLOCK_SIZE in codegen/protocol.txt. */
#include <stdlib.h>

#include "api.h"

#define WARP 32
#define DEVICE_MAX_THREADS 1024 /* every CUDA device's maximum threads per block */
#define OCC_TABLE_MAX GW_OCCUPANCY_TABLE_MAX /* the worker's bound; the client sends at most 34 */

typedef struct occ_table {
    uint32_t n;
    uint32_t block[OCC_TABLE_MAX];
    uint64_t bytes[OCC_TABLE_MAX];
} occ_table;

/* Adds block size b in ascending order (no duplicates). */
static void table_add(occ_table *t, uint32_t b)
{
    uint32_t i = 0;
    while (i < t->n && t->block[i] < b)
        i++;
    if ((i < t->n && t->block[i] == b) || t->n == OCC_TABLE_MAX)
        return;
    for (uint32_t j = t->n; j > i; j--)
        t->block[j] = t->block[j - 1];
    t->block[i] = b;
    t->n++;
}

static void build_table(occ_table *t, CUfunction f, CUoccupancyB2DSize cb, int limit)
{
    uint32_t bound = limit <= 0 || limit > DEVICE_MAX_THREADS ? DEVICE_MAX_THREADS : (uint32_t)limit;
    t->n = 0;
    for (uint32_t b = WARP; b <= bound; b += WARP)
        table_add(t, b);
    table_add(t, bound);
    uint32_t n, *pairs, max_threads = 0;
    if (gw_function_layout((uint64_t)(uintptr_t)f, &n, &pairs, &max_threads)) {
        free(pairs);
        if (max_threads > 0 && max_threads < bound)
            table_add(t, max_threads);
    }
    for (uint32_t i = 0; i < t->n; i++)
        t->bytes[i] = (uint64_t)cb((int)t->block[i]);
}

static CUresult potential_block_size(unsigned op, int *minGridSize, int *blockSize, CUfunction f,
                                     CUoccupancyB2DSize cb, size_t smem, int limit, unsigned flags)
{
    occ_table t = {0};
    if (cb)
        build_table(&t, f, cb, limit);
    gw_req *q = gw_req_begin(op); /* OCCUPANCY_BLOCK_SIZE in codegen/protocol.txt */
    gw_put_fields(q, gw_occupancy_block_size_req,
                  {.function = (uint64_t)(uintptr_t)f, .dynamic_smem = (uint64_t)smem,
                   .block_size_limit = (uint32_t)limit, .flags = flags,
                   .outputs = (minGridSize ? 1u : 0u) | (blockSize ? 2u : 0u), .n = t.n});
    for (uint32_t i = 0; i < t.n; i++) {
        uint8_t wire[GW_OCCUPANCY_BLOCK_SIZE_REQ_ITEM_SIZE];
        gw_occupancy_block_size_req_item it = {.block_size = t.block[i], .smem_bytes = t.bytes[i]};
        gw_put_raw(q, wire, gw_occupancy_block_size_req_item_put(wire, &it));
    }
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        gw_occupancy_block_size_rep rep = {0};
        if (gw_get_fields(r, gw_occupancy_block_size_rep, &rep)) /* 0, or -1 for a short reply */
            rc = CUDA_ERROR_UNKNOWN;
        else if ((rc = (CUresult)rep.result) == CUDA_SUCCESS) {
            if (minGridSize)
                *minGridSize = (int)rep.min_grid_size;
            if (blockSize)
                *blockSize = (int)rep.block_size;
        }
    }
    gw_rep_end(r);
    return rc;
}

CUresult CUDAAPI cuOccupancyMaxPotentialBlockSize(int *minGridSize, int *blockSize, CUfunction func,
                                                  CUoccupancyB2DSize blockSizeToDynamicSMemSize,
                                                  size_t dynamicSMemSize, int blockSizeLimit)
{
    return potential_block_size(GW_OP_cuOccupancyMaxPotentialBlockSize, minGridSize, blockSize, func,
                                blockSizeToDynamicSMemSize, dynamicSMemSize, blockSizeLimit, 0);
}

CUresult CUDAAPI cuOccupancyMaxPotentialBlockSizeWithFlags(int *minGridSize, int *blockSize, CUfunction func,
                                                           CUoccupancyB2DSize blockSizeToDynamicSMemSize,
                                                           size_t dynamicSMemSize, int blockSizeLimit,
                                                           unsigned int flags)
{
    return potential_block_size(GW_OP_cuOccupancyMaxPotentialBlockSizeWithFlags, minGridSize, blockSize, func,
                                blockSizeToDynamicSMemSize, dynamicSMemSize, blockSizeLimit, flags);
}
