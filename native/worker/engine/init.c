/* A worker process's set-up before it serves: the driver loaded, then the
 * wrappers that take the place of some of its entry points (the launch
 * handlers' watch on unloads, graphs' node lists without gpuwire's own
 * nodes, the session's memory cap), and the scheduler
 * told when a write to the client stalls. */
#include "engine.h"
#include "internal.h"

const char *gw_worker_init(const char *drv, unsigned long long mem_cap)
{
    gw_io_on_stall(gw_sched_stalled);
    const char *why = gw_driver_load(drv);
    if (why)
        return why;
    gw_launch_install(gw_driver_table());
    gw_graph_view_install(gw_driver_table());
    if (mem_cap) {
        gw_memcap_install(gw_driver_table(), mem_cap);
        gw_wlog("device memory capped at %llu bytes for this session", mem_cap);
    }
    return NULL;
}
