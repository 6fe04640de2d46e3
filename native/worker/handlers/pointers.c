/* Pointer attributes of device memory; handles in the answers become ids. */
#include <string.h>

#include "../../common/pointer_attrs.h"
#include "handlers.h"

#define MAX_ATTRS GW_POINTER_ATTRS_MAX
_Static_assert(GW_POINTER_ATTRIBUTES_REP_SLOTS_ITEM_SIZE == GW_ATTR_SLOT, "a pointer attribute's slot");

/* POINTER_ATTRIBUTES (codegen/protocol.txt) */
static void attrs(gw_call *c)
{
    gw_pointer_attributes_req q = {0};
    gw_in_part(c, gw_pointer_attributes_req, &q);
    CUdeviceptr ptr = q.pointer;
    uint32_t single = q.single, n = q.n;
    if (!c->bad && (n > GW_POINTER_ATTRIBUTES_REQ_ATTRIBUTES_MAX || (single && n != 1)))
        gw_call_fail(c, "%s: %u attributes", gw_op_name(c->h.op), n);
    CUpointer_attribute a[MAX_ATTRS];
    for (uint32_t i = 0; !c->bad && i < n; i++) {
        gw_pointer_attributes_req_attributes_item it = {0};
        gw_in_part(c, gw_pointer_attributes_req_attributes_item, &it);
        a[i] = (CUpointer_attribute)it.attribute;
        if (!c->bad && !gw_pointer_attr_size(a[i]))
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
        gw_pointer_attributes_rep_slots_item it;
        memcpy(it.value, slots[i], sizeof it.value);
        gw_reply_fields(c, gw_pointer_attributes_rep_slots_item, it);
    }
}

void gw_h_cuPointerGetAttribute(gw_call *c) { attrs(c); }
void gw_h_cuPointerGetAttributes(gw_call *c) { attrs(c); }
