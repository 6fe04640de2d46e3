/* GPUWIRE_STATS=FILE: the counters (diag/stats.c) and every layer's figures,
 * written as JSON at exit. The roof of the client: it reads every layer below
 * (the server's answer, content-addressed transfers, NVRTC's cache, module
 * information) and nobody calls it. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../generated/wire_props.h"
#include "../private/export_tables.h"
#include "../state/state.h"
#include "../wire/cas.h"
#include "../diag/stats_counters.h"

__attribute__((destructor)) static void write_stats(void)
{
    const char *path = getenv("GPUWIRE_STATS");
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "w");
    if (!f) {
        gw_log("cannot write GPUWIRE_STATS file %s", path);
        return;
    }
    fprintf(f, "{\"calls\": %llu, \"round_trips\": %llu, \"round_trip_seconds\": %.6f, \"batches_sent\": %llu, "
               "\"batch_send_seconds\": %.6f, \"queue_waits\": %llu, \"queue_wait_seconds\": %.6f, "
               "\"bytes_to_server\": %llu, "
               "\"bytes_from_server\": %llu, \"lanes\": %llu, \"lane_bytes\": %llu, \"replies\": %llu, "
               "\"burst_replies\": %llu,\n",
            (unsigned long long)gw_stats_calls, (unsigned long long)gw_stats_round_trips, gw_stats_rt_ns / 1e9,
            (unsigned long long)gw_stats_sends, gw_stats_send_ns / 1e9, (unsigned long long)gw_stats_queue_waits,
            gw_stats_queue_wait_ns / 1e9, (unsigned long long)gw_stats_to_server,
            (unsigned long long)gw_stats_from_server, (unsigned long long)gw_stats_lanes_open,
            (unsigned long long)gw_stats_lane_bytes, (unsigned long long)gw_stats_replies,
            (unsigned long long)gw_stats_burst_replies);
    const gw_hello_ok *s = gw_server_info();
    fprintf(f, " \"lane_bytes_by_lane\": [");
    for (unsigned k = 0; k < gw_stats_lanes_open && k < GW_LANES_MAX; k++)
        fprintf(f, "%s%llu", k ? ", " : "", (unsigned long long)gw_stats_lane_bytes_by_lane[k]);
    fprintf(f, "],\n");
    fprintf(f, " \"server_driver\": \"%s\",\n \"by_function\": {", s ? s->driver_desc : "");
    const char *sep = "";
    for (unsigned i = 0; i < GW_OP_COUNT; i++) {
        unsigned long long n = gw_stats_by_op[i];
        if (n) {
            fprintf(f, "%s\n  \"%s\": %llu", sep, gw_op_names[i], n);
            sep = ",";
        }
    }
    fprintf(f, "\n },\n \"round_trips_by_function\": {");
    sep = "";
    for (unsigned i = 0; i < 256 + GW_OP_COUNT; i++) {
        unsigned long long n = gw_stats_rt_by_op[i];
        if (!n)
            continue;
        const char *name = i >= 256 ? gw_op_names[i - 256]
                           : gw_control_op_label(i) ? gw_control_op_label(i) : "(control)";
        fprintf(f, "%s\n  \"%s\": %llu", sep, name, n);
        sep = ",";
    }
    fprintf(f, "\n },\n \"round_trip_seconds_by_function\": {");
    sep = "";
    for (unsigned i = 0; i < 256 + GW_OP_COUNT; i++) {
        if (!gw_stats_rt_by_op[i])
            continue;
        const char *name = i >= 256 ? gw_op_names[i - 256]
                           : gw_control_op_label(i) ? gw_control_op_label(i) : "(control)";
        fprintf(f, "%s\n  \"%s\": %.6f", sep, name, gw_stats_rt_ns_by_op[i] / 1e9);
        sep = ",";
    }
    /* bytes_avoided: chunk bytes the server's cache supplied instead of the wire;
     * "landings": deliveries (state/deliveries.c), under their earlier name */
    const gw_cas_figures *cas = &gw_stats_cas;
    fprintf(f, "\n },\n \"cache\": {\"enabled\": %s, \"hits\": %llu, \"misses\": %llu, \"bytes_avoided\": %llu, "
               "\"miss_bytes\": %llu, \"miss_bytes_sent\": %llu,\n  \"image_hits\": %llu, \"image_misses\": %llu, "
               "\"image_bytes_avoided\": %llu, \"image_miss_bytes\": %llu, \"image_miss_bytes_sent\": %llu,\n  "
               "\"images\": %llu, \"image_bytes\": %llu, \"images_inline\": %llu, \"image_inline_bytes\": %llu,\n  "
               "\"hashed_bytes\": %llu, \"hash_seconds\": %.6f, \"memo_bytes\": %llu, \"cold_plain_bytes\": %llu},\n"
               " \"landings\": {\"copies\": %llu, \"bytes\": %llu, \"waits\": %llu},\n",
            gw_cas_on() ? "true" : "false", cas->hits, cas->misses, cas->hit_bytes, cas->miss_bytes, cas->sent_bytes,
            cas->image_hits, cas->image_misses, cas->image_hit_bytes, cas->image_miss_bytes, cas->image_sent_bytes,
            cas->images, cas->image_bytes, cas->images_inline, cas->image_inline_bytes, cas->hashed_bytes,
            cas->hash_ns / 1e9, cas->memo_hit_bytes, cas->cold_plain_bytes, (unsigned long long)gw_stats_delivery_copies,
            (unsigned long long)gw_stats_delivery_bytes, (unsigned long long)gw_stats_delivery_waits);
    /* NVRTC's compile cache, kept on this machine (private/nvrtc_cache.c) */
    gw_compile_cache_figures *cc = gw_compile_cache_stats();
    /* libraries whose kernels the client read from their cubins (state/modules.c) */
    unsigned long long ii[3];
    gw_image_info_figures(ii);
    fprintf(f, " \"image_info\": {\"read\": %llu, \"checked\": %llu, \"differing\": %llu},\n", ii[0], ii[1], ii[2]);
    fprintf(f, " \"compile_cache\": {\"lookups\": %llu, \"hits\": %llu, \"hit_bytes\": %llu, \"stores\": %llu, "
               "\"stored_bytes\": %llu, \"discarded\": %llu, \"evicted\": %llu}\n}\n",
            (unsigned long long)cc->lookups, (unsigned long long)cc->hits, (unsigned long long)cc->hit_bytes,
            (unsigned long long)cc->stores, (unsigned long long)cc->stored_bytes, (unsigned long long)cc->discarded,
            (unsigned long long)cc->evicted);
    fclose(f);
}
