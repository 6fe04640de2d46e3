/* cuMemPoolGet/SetAttribute: every value travels as a u64, its size known
 * per attribute (common/mempool_attrs.h). */
#include <string.h>

#include "../../common/mempool_attrs.h"
#include "api.h"

static size_t pool_attr_size(unsigned a) { return gw_pool_attr_size(a); }

static CUresult pool_attr(unsigned op, CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
    size_t size = pool_attr_size(attr);
    if (!value)
        return CUDA_ERROR_INVALID_VALUE;
    if (!size) {
        gw_log("%s: memory pool attribute %d is not forwarded (its value's size is unknown): "
               "CUDA_ERROR_INVALID_VALUE", gw_op_name(op), (int)attr);
        return CUDA_ERROR_INVALID_VALUE;
    }
    int set = op == GW_OP_cuMemPoolSetAttribute;
    gw_req *q = gw_req_begin(op);
    gw_put_u64(q, (uint64_t)(uintptr_t)pool);
    gw_put_u32(q, (uint32_t)attr);
    if (set) {
        uint64_t v;
        if (size == sizeof(int)) {
            int i;
            memcpy(&i, value, sizeof i);
            v = (uint64_t)(int64_t)i;
        } else {
            cuuint64_t u;
            memcpy(&u, value, sizeof u);
            v = u;
        }
        gw_put_u64(q, v);
    }
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS && !set) {
        uint64_t v = gw_get_u64(r);
        rc = gw_rep_status(r, rc);
        if (rc == CUDA_SUCCESS) {
            if (size == sizeof(int)) {
                int i = (int)(int64_t)v;
                memcpy(value, &i, sizeof i);
            } else {
                cuuint64_t u = v;
                memcpy(value, &u, sizeof u);
            }
        }
    }
    gw_rep_end(r);
    return rc;
}

CUresult CUDAAPI cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
    return pool_attr(GW_OP_cuMemPoolGetAttribute, pool, attr, value);
}

CUresult CUDAAPI cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
    return pool_attr(GW_OP_cuMemPoolSetAttribute, pool, attr, value);
}
