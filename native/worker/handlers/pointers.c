/* Pointer attributes of device memory; handles in the answers become ids. */
#include <string.h>

#include "../../common/pointer_attrs.h"
#include "handlers.h"

#define MAX_ATTRS 32

static void attrs(gw_call *c)
{
    CUdeviceptr ptr = gw_in_u64(c);
    uint32_t single = gw_in_u32(c), n = gw_in_u32(c);
    if (!c->bad && (n > MAX_ATTRS || (single && n != 1)))
        gw_call_fail(c, "%s: %u attributes", gw_op_name(c->h.op), n);
    CUpointer_attribute a[MAX_ATTRS];
    for (uint32_t i = 0; !c->bad && i < n; i++) {
        a[i] = (CUpointer_attribute)gw_in_u32(c);
        if (!gw_pointer_attr_size(a[i]))
            gw_call_fail(c, "%s: unknown attribute %d", gw_op_name(c->h.op), (int)a[i]);
    }
    if (!gw_args_ok(c))
        return;
    void *fn = gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    uint8_t slots[MAX_ATTRS][GW_ATTR_SLOT] = {{0}};
    void *data[MAX_ATTRS];
    for (uint32_t i = 0; i < n; i++)
        data[i] = slots[i];
    CUresult r = single ? ((CUresult(*)(void *, CUpointer_attribute, CUdeviceptr))fn)(data[0], a[0], ptr)
                        : ((CUresult(*)(unsigned, CUpointer_attribute *, void **, CUdeviceptr))fn)(n, a, data, ptr);
    gw_reply_result(c, r);
    if (r != CUDA_SUCCESS)
        return;
    for (uint32_t i = 0; i < n; i++) {
        int type = a[i] == CU_POINTER_ATTRIBUTE_CONTEXT ? GW_HT_CUcontext
                   : a[i] == CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE ? GW_HT_CUmemoryPool : GW_HT_NONE;
        if (type != GW_HT_NONE) {
            void *h;
            memcpy(&h, slots[i], sizeof h);
            uint64_t id = gw_handle_id(type, h);
            memcpy(slots[i], &id, 8);
        }
        gw_reply_bytes(c, slots[i], GW_ATTR_SLOT);
    }
}

void gw_h_cuPointerGetAttribute(gw_call *c) { attrs(c); }
void gw_h_cuPointerGetAttributes(gw_call *c) { attrs(c); }
