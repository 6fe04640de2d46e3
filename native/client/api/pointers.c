/* Pointer attributes. Device memory is asked of the server (one request for
 * all attributes); page-locked host memory lives in the client and is
 * answered here. */
#include <string.h>

#include "../../common/pointer_attrs.h"
#include "api.h"

#define MAX_ATTRS 32

/* Answer for client-side pinned memory; 0 if the attribute has no local answer. */
static int local_attr(CUpointer_attribute a, CUdeviceptr ptr, void *out)
{
    uint32_t u = 0;
    uint64_t q = 0;
    switch (a) {
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE: u = CU_MEMORYTYPE_HOST; break;
    case CU_POINTER_ATTRIBUTE_HOST_POINTER: q = ptr; break;
    case CU_POINTER_ATTRIBUTE_CONTEXT: {
        CUcontext c = NULL;
        cuCtxGetCurrent(&c);
        q = (uint64_t)(uintptr_t)c;
        break;
    }
    case CU_POINTER_ATTRIBUTE_IS_MANAGED:
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
    case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
    case CU_POINTER_ATTRIBUTE_IS_GPU_DIRECT_RDMA_CAPABLE:
        break;
    case CU_POINTER_ATTRIBUTE_MAPPED: u = 1; break;
    default:
        return 0;
    }
    memcpy(out, gw_pointer_attr_size(a) == 4 ? (void *)&u : (void *)&q, gw_pointer_attr_size(a));
    return 1;
}

/* POINTER_ATTRIBUTES in codegen/protocol.txt */
static CUresult remote_attrs(unsigned op, int single, unsigned n, const CUpointer_attribute *attrs, void **data,
                             CUdeviceptr ptr)
{
    int k = gw_server_of_address(ptr); /* several servers: asked where the memory is */
    CUcontext pushed;
    int route = gw_memory_server_enter(ptr, &pushed);
    gw_req *q = gw_req_begin_quiet(op);
    gw_put_fields(q, gw_pointer_attributes_req, {.pointer = ptr, .single = (uint32_t)single, .n = n});
    for (unsigned i = 0; i < n; i++)
        gw_put_fields(q, gw_pointer_attributes_req_attributes_item, {.attribute = (uint32_t)attrs[i]});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    for (unsigned i = 0; rc == CUDA_SUCCESS && i < n; i++) {
        gw_pointer_attributes_rep_slots_item slot;
        if (gw_get_part(r, gw_pointer_attributes_rep_slots_item, &slot)) {
            rc = gw_rep_status(r, CUDA_ERROR_UNKNOWN);
            break;
        }
        if (gw_servers_n > 1 && k >= 0 && attrs[i] == CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL) {
            uint32_t dev; /* that server's ordinal: the client's */
            memcpy(&dev, slot.value, sizeof dev);
            dev = (uint32_t)gw_device_of_server(k, (int)dev);
            memcpy(slot.value, &dev, sizeof dev);
        } else if (gw_servers_n > 1 && k > 0 && attrs[i] == CU_POINTER_ATTRIBUTE_CONTEXT) {
            uint64_t c;
            memcpy(&c, slot.value, sizeof c);
            c = gw_handle_on(c, k);
            memcpy(slot.value, &c, sizeof c);
        }
        if (data[i])
            memcpy(data[i], slot.value, gw_pointer_attr_size(attrs[i]));
    }
    gw_rep_end(r);
    gw_memory_server_leave(route, pushed);
    return rc;
}

CUresult CUDAAPI cuPointerGetAttribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr)
{
    gw_stat_call(GW_OP_cuPointerGetAttribute);
    if (!data || !gw_pointer_attr_size(attribute))
        return CUDA_ERROR_INVALID_VALUE;
    if (gw_mem_classify(ptr) == GW_MEM_HOST_PINNED) {
        if (!gw_initialized())
            return CUDA_ERROR_NOT_INITIALIZED;
        return local_attr(attribute, ptr, data) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    }
    return remote_attrs(GW_OP_cuPointerGetAttribute, 1, 1, &attribute, &data, ptr);
}

CUresult CUDAAPI cuPointerGetAttributes(unsigned int numAttributes, CUpointer_attribute *attributes, void **data,
                                        CUdeviceptr ptr)
{
    gw_stat_call(GW_OP_cuPointerGetAttributes);
    if (!attributes || !data || numAttributes > MAX_ATTRS)
        return CUDA_ERROR_INVALID_VALUE;
    for (unsigned i = 0; i < numAttributes; i++)
        if (!gw_pointer_attr_size(attributes[i]))
            return CUDA_ERROR_INVALID_VALUE;
    if (gw_mem_classify(ptr) == GW_MEM_HOST_PINNED) {
        if (!gw_initialized())
            return CUDA_ERROR_NOT_INITIALIZED;
        for (unsigned i = 0; i < numAttributes; i++)
            if (data[i] && !local_attr(attributes[i], ptr, data[i]))
                memset(data[i], 0, gw_pointer_attr_size(attributes[i]));
        return CUDA_SUCCESS;
    }
    return remote_attrs(GW_OP_cuPointerGetAttributes, 0, numAttributes, attributes, data, ptr);
}
