/* Memory pool attributes, hand-written: a value's size depends on the
 * attribute.
 *
 * Formats: MEMPOOL_GET_ATTRIBUTE, MEMPOOL_SET_ATTRIBUTE in codegen/protocol.txt.
 *   The value is an int for the reuse flags and a cuuint64_t for the
 *   threshold and usage figures (cuda.h); any other attribute is refused with
 *   CUDA_ERROR_INVALID_VALUE before the driver sees it, since its size is
 *   unknown. */
#include <string.h>

#include "../../common/mempool_attrs.h"
#include "handlers.h"

static size_t pool_attr_size(unsigned a) { return gw_pool_attr_size(a); }

static void pool_attr(gw_call *c, int set)
{
    CUmemoryPool pool = NULL;
    uint32_t attr = 0;
    uint64_t v = 0;
    if (set) { /* MEMPOOL_SET_ATTRIBUTE */
        gw_mempool_set_attribute_req q = {0};
        if (gw_in_part(c, gw_mempool_set_attribute_req, &q)) {
            pool = (CUmemoryPool)gw_handle_lookup(c, GW_HT_CUmemoryPool, q.pool);
            attr = q.attribute;
            v = q.value;
        }
    } else { /* MEMPOOL_GET_ATTRIBUTE */
        gw_mempool_get_attribute_req q = {0};
        if (gw_in_part(c, gw_mempool_get_attribute_req, &q)) {
            pool = (CUmemoryPool)gw_handle_lookup(c, GW_HT_CUmemoryPool, q.pool);
            attr = q.attribute;
        }
    }
    if (!gw_args_ok(c))
        return;
    size_t size = pool_attr_size(attr);
    if (!size) {
        gw_wlog("%s: memory pool attribute %u is not known here: CUDA_ERROR_INVALID_VALUE", gw_op_name(c->h.op),
                attr);
        gw_reply_result(c, CUDA_ERROR_INVALID_VALUE);
        return;
    }
    CUresult (*fn)(CUmemoryPool, CUmemPool_attribute, void *) =
        (CUresult(*)(CUmemoryPool, CUmemPool_attribute, void *))gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    union {
        int i;
        cuuint64_t u;
    } val;
    memset(&val, 0, sizeof val);
    if (size == sizeof(int))
        val.i = (int)(int64_t)v;
    else
        val.u = v;
    CUresult r = fn(pool, (CUmemPool_attribute)attr, &val);
    if (!set && r == CUDA_SUCCESS)
        gw_reply_first(c, gw_mempool_get_attribute_rep,
                       {.result = r, .value = size == sizeof(int) ? (uint64_t)(int64_t)val.i : val.u});
    else
        gw_reply_result(c, r);
}

void gw_h_cuMemPoolGetAttribute(gw_call *c) { pool_attr(c, 0); }
void gw_h_cuMemPoolSetAttribute(gw_call *c) { pool_attr(c, 1); }
