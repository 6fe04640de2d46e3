/* The dispatcher: a job's op names its handler. Control ops (below 256) by
 * one table here, driver calls by the generated table (gw_dispatch), NVML
 * calls by the generated NVML table (gw_nvml_dispatch). The reader has
 * checked that the op has a handler (valid_op in reader.c). */
#include "../handlers/nvml.h"
#include "internal.h"

static const gw_handler control[] = {
    [GW_OP_FUNC_LAYOUT] = gw_op_func_layout,
    [GW_OP_STAGE] = gw_op_stage,
    [GW_OP_DEVICE_ATTRS] = gw_op_device_attrs,
    [GW_OP_CAS_REFS] = gw_op_cas_refs,
    [GW_OP_CAS_DATA] = gw_op_cas_data,
    [GW_OP_DELIVER] = gw_op_deliver,
    [GW_OP_MAPPED_MAP] = gw_op_mapped_map,
    [GW_OP_MAPPED_UNMAP] = gw_op_mapped_unmap,
    [GW_OP_MAPPED_READ] = gw_op_mapped_read,
    [GW_OP_STAGING_FILL] = gw_op_staging_fill, [GW_OP_STAGING_FREE] = gw_op_staging_free,
    [GW_OP_NVML_TABLE_CALL] = gw_op_nvml_table_call,
};

void gw_dispatch_run(gw_call *c)
{
    unsigned op = c->h.op;
    if (op < sizeof control / sizeof control[0] && control[op])
        control[op](c);
    else if (gw_is_nvml_op(op))
        gw_nvml_dispatch[op - GW_NVML_OP_FIRST](c);
    else
        gw_dispatch[op - 256](c);
}

int gw_nvml_valid_op(unsigned op)
{
    return gw_is_nvml_op(op) && gw_nvml_dispatch[op - GW_NVML_OP_FIRST];
}
