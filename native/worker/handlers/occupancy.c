/* cuOccupancyMaxPotentialBlockSize(WithFlags), hand-written: the
 * application's block-size -> dynamic-shared-memory callback lives in the
 * client, which calls it for every block size the driver's search may try and
 * sends the answers as a table (native/client/api/occupancy.c says which
 * sizes). Here the driver gets a callback of ours that answers from that
 * table, found through a thread-local pointer: the driver calls it on the
 * calling thread, during the call.
 *
 * Format: OCCUPANCY_BLOCK_SIZE in codegen/protocol.txt (function a CUfunction
 * or a CUkernel; flags 0 for the call without flags; n 0: no callback,
 * dynamicSMemSize applies). Block sizes strictly ascending, 1 to
 * OCC_MAX_BLOCK, at most OCC_TABLE_MAX of them; anything else is malformed. */
#include "handlers.h"

#define OCC_TABLE_MAX GW_OCCUPANCY_TABLE_MAX /* entries at most (codegen/protocol.txt; the client sends at most 34) */
#define OCC_MAX_BLOCK 4096 /* a block size above any device's maximum threads per block */

typedef struct occ_table {
    uint32_t n;
    uint32_t block[OCC_TABLE_MAX];
    uint64_t bytes[OCC_TABLE_MAX];
} occ_table;

static _Thread_local const occ_table *current;
static int miss_logged;

/* The driver's question: the table's entry for that block size; a size the
 * client did not compute gets the nearest smaller entry's (the smallest
 * entry's below them all), logged once per worker. */
static size_t CUDA_CB table_smem(int block)
{
    const occ_table *t = current;
    if (!t || !t->n) {
        if (!__atomic_exchange_n(&miss_logged, 1, __ATOMIC_RELAXED))
            gw_wlog("WARN: cuOccupancyMaxPotentialBlockSize: the driver called the size callback outside the "
                    "call's thread: answered 0 bytes");
        return 0;
    }
    uint32_t i = 0;
    while (i + 1 < t->n && t->block[i + 1] <= (uint32_t)block)
        i++;
    if (block <= 0 || t->block[i] != (uint32_t)block) {
        if (!__atomic_exchange_n(&miss_logged, 1, __ATOMIC_RELAXED))
            gw_wlog("WARN: cuOccupancyMaxPotentialBlockSize: the driver asked the size callback about block "
                    "size %d, which the client did not compute: answered with block size %u's %llu bytes "
                    "(logged once)",
                    block, t->block[i], (unsigned long long)t->bytes[i]);
    }
    return (size_t)t->bytes[i];
}

static void potential_block_size(gw_call *c, int with_flags)
{
    const char *name = gw_op_name(c->h.op);
    int is_kernel;
    gw_occupancy_block_size_req q = {0};
    void *f = gw_in_part(c, gw_occupancy_block_size_req, &q) ? gw_function_of(c, q.function, &is_kernel) : NULL;
    uint64_t smem = q.dynamic_smem;
    int limit = (int)q.block_size_limit;
    uint32_t flags = q.flags;
    uint32_t outs = q.outputs;
    uint32_t n = q.n;
    if (!c->bad && !with_flags && flags)
        gw_call_fail(c, "%s: flags 0x%x on the call without flags", name, flags);
    if (!c->bad && outs > 3)
        gw_call_fail(c, "%s: outputs 0x%x (bits 0 and 1 only)", name, outs);
    if (!c->bad && n > OCC_TABLE_MAX)
        gw_call_fail(c, "%s: a table of %u block sizes (at most %d)", name, n, OCC_TABLE_MAX);
    occ_table *t = c->bad ? NULL : gw_scratch(c, sizeof *t);
    if (!c->bad && !t)
        gw_call_fail(c, "%s: out of memory for the block size table", name);
    for (uint32_t i = 0; t && !c->bad && i < n; i++) {
        gw_occupancy_block_size_req_item it = {0};
        if (!gw_in_part(c, gw_occupancy_block_size_req_item, &it))
            break;
        uint32_t b = it.block_size;
        uint64_t bytes = it.smem_bytes;
        if (b == 0 || b > OCC_MAX_BLOCK || (i && b <= t->block[i - 1])) {
            gw_call_fail(c, "%s: block size %u in the table (1 to %d, ascending)", name, b, OCC_MAX_BLOCK);
            break;
        }
        t->block[i] = b;
        t->bytes[i] = bytes;
        t->n = i + 1;
    }
    if (!gw_args_ok(c))
        return;
    void *fn = gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    int grid = 0, block = 0;
    int *pgrid = outs & 1 ? &grid : NULL, *pblock = outs & 2 ? &block : NULL;
    CUoccupancyB2DSize cb = n ? table_smem : NULL;
    CUresult r;
    current = t;
    if (with_flags)
        r = ((CUresult(*)(int *, int *, CUfunction, CUoccupancyB2DSize, size_t, int, unsigned))fn)(
            pgrid, pblock, (CUfunction)f, cb, (size_t)smem, limit, flags);
    else
        r = ((CUresult(*)(int *, int *, CUfunction, CUoccupancyB2DSize, size_t, int))fn)(pgrid, pblock, (CUfunction)f,
                                                                                        cb, (size_t)smem, limit);
    current = NULL;
    if (r == CUDA_SUCCESS)
        gw_reply_first(c, gw_occupancy_block_size_rep,
                       {.result = r, .min_grid_size = (uint32_t)grid, .block_size = (uint32_t)block});
    else
        gw_reply_result(c, r);
}

void gw_h_cuOccupancyMaxPotentialBlockSize(gw_call *c) { potential_block_size(c, 0); }
void gw_h_cuOccupancyMaxPotentialBlockSizeWithFlags(gw_call *c) { potential_block_size(c, 1); }
