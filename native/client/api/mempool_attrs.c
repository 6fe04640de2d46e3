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
    gw_req *q = gw_req_begin(op); /* MEMPOOL_GET_ATTRIBUTE / MEMPOOL_SET_ATTRIBUTE in codegen/protocol.txt */
    if (!set) {
        gw_put_fields(q, gw_mempool_get_attribute_req, {.pool = (uint64_t)(uintptr_t)pool, .attribute = (uint32_t)attr});
    } else {
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
        gw_put_fields(q, gw_mempool_set_attribute_req,
                      {.pool = (uint64_t)(uintptr_t)pool, .attribute = (uint32_t)attr, .value = v});
    }
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS && !set) {
        gw_mempool_get_attribute_rep rep = {0};
        rc = gw_get_fields(r, gw_mempool_get_attribute_rep, &rep) ? gw_rep_status(r, rc) : (CUresult)rep.result;
        uint64_t v = rep.value;
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
