/* gpuwire-worker: started by `gpuwire server` for one client connection (the
 * server has already read and checked the client's HELLO), or with --probe to
 * report whether a driver works.
 *
 *   gpuwire-worker --fd N --driver PATH [--nvml PATH] [--session ID] [--api-digest D] [--client TEXT]
 *                  [--lane-fd N [--lanes K]] [--stall-timeout SECONDS] [--server-pid PID]
 *   gpuwire-worker --probe --driver PATH
 *
 * HELLO_OK carries the devices as the driver shows them (OK_DEVICES: name,
 * memory, UUIDs, bus id, attributes, loading mode; core/driver.c), so the
 * client's start-up asks none of them (issue #20).
 *
 * Requests are executed in arrival order. Calls from one client thread run on
 * one worker thread, so the driver's per-thread state (current context,
 * per-thread default stream) matches the client's threads.
 *
 * This file is the program: its arguments, the driver probe, the checks and
 * the HELLO_OK answer that open a session; engine/ then serves it, handlers/
 * run its calls, core/ lies under both. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "core/core.h"
#include "core/nvml_lib.h"
#include "engine/engine.h"
#include "handlers/cas_store.h"

static int probe(const char *path)
{
    const char *why = gw_driver_load(path);
    if (why) {
        printf("{\"ok\": false, \"error\": \"");
        for (const char *p = why; *p; p++)
            printf(*p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
        printf("\"}\n");
        return 1;
    }
    gw_hello_ok ok = {0};
    gw_driver_describe(&ok, path);
    printf("{\"ok\": true, \"driver_version\": %d, \"device_count\": %u, \"desc\": \"%s\"}\n", ok.driver_version,
           ok.device_count, ok.driver_desc);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: gpuwire-worker --fd N --driver PATH [--nvml PATH] [--session ID] [--api-digest D]\n"
                    "                      [--client TEXT]\n"
                    "                      [--mem-cap BYTES] [--cache-dir DIR [--cache-max-bytes BYTES]]\n"
                    "                      [--lane-fd N [--lanes K]]   (a Unix socket the server hands lanes on)\n"
                    "                      [--stall-timeout SECONDS]   (end the session when the client reads\n"
                    "                                                   nothing this long; 0: never; default 60)\n"
                    "                      [--server-pid PID]          (exit with that process)\n"
                    "       gpuwire-worker --probe --driver PATH\n");
}

int main(int argc, char **argv)
{
    const char *drv = NULL, *client = "", *session = "-";
    int fd = -1;
    long digest = -1;
    unsigned long long mem_cap = 0, cache_max = 0;
    const char *cache_dir = NULL;
    int do_probe = 0, lane_fd = -1;
    unsigned nlanes = 3;
    long server_pid = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--probe"))
            do_probe = 1;
        else if (!strcmp(a, "--fd") && v)
            fd = atoi(argv[++i]);
        else if (!strcmp(a, "--driver") && v)
            drv = argv[++i];
        else if (!strcmp(a, "--nvml") && v)
            gw_nvml_set_path(argv[++i]);
        else if (!strcmp(a, "--session") && v)
            session = argv[++i];
        else if (!strcmp(a, "--api-digest") && v)
            digest = strtol(argv[++i], NULL, 0);
        else if (!strcmp(a, "--client") && v)
            client = argv[++i];
        else if (!strcmp(a, "--mem-cap") && v)
            mem_cap = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--cache-dir") && v)
            cache_dir = argv[++i];
        else if (!strcmp(a, "--cache-max-bytes") && v)
            cache_max = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--lane-fd") && v)
            lane_fd = atoi(argv[++i]);
        else if (!strcmp(a, "--lanes") && v)
            nlanes = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--stall-timeout") && v) {
            char *end;
            double stall_s = strtod(argv[++i], &end);
            if (*end || !(stall_s >= 0 && stall_s <= 1e6)) { /* NaN fails too */
                fprintf(stderr, "gpuwire-worker: --stall-timeout wants seconds (0..1e6), not %s\n", argv[i]);
                return 2;
            }
            gw_set_stall_seconds(stall_s);
        } else if (!strcmp(a, "--server-pid") && v) {
            char *end;
            server_pid = strtol(argv[++i], &end, 10);
            if (*end || server_pid <= 1) {
                fprintf(stderr, "gpuwire-worker: --server-pid wants a process id, not %s\n", argv[i]);
                return 2;
            }
        } else {
            usage();
            return 2;
        }
    }
    if (!drv || (!do_probe && fd < 0)) {
        usage();
        return 2;
    }
    if (do_probe)
        return probe(drv);
    gw_log_session(session);
    gw_io_set_client(fd);
    if (server_pid) {
        /* A worker must not outlive its server (it would serve on, unknown to the
         * next one). PDEATHSIG fires when the forking *thread* ends: the server
         * forks from the session's thread, which waits for this process to exit
         * (server.py _run_session), so that thread ends only with the server. */
        const char *keep = getenv("GPUWIRE_WORKER_NO_PDEATHSIG"); /* tests of the server's orphan sweep only */
        if (!(keep && !strcmp(keep, "1")))
            prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != (pid_t)server_pid) { /* the server died before the prctl */
            gw_wlog("the server (pid %ld) is gone: exiting", server_pid);
            return 7;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (gw_stall_timeout() > 0 && gw_set_stall_timeout(fd))
        gw_wlog("cannot set the stall timeout on the client's socket: %s", strerror(errno));
    /* libnvidia-ml.so.1 sends the digest of both op tables (native/client/handshake.c) */
    if (digest >= 0 && (uint32_t)digest != GW_API_DIGEST && (uint32_t)digest != (GW_API_DIGEST ^ GW_NVML_API_DIGEST)) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "client and server are different gpuwire builds (API digest 0x%08lx vs 0x%08x): "
                 "use the same gpuwire version on both sides", digest, GW_API_DIGEST);
        gw_wlog("%s", msg);
        gw_send_error(GW_ERR_VERSION, msg);
        return 5;
    }
    const char *why = gw_worker_init(drv, mem_cap);
    if (why) {
        gw_wlog("%s", why);
        gw_send_error(GW_ERR_DRIVER, why);
        return 6;
    }
    gw_hello_ok ok = {0};
    gw_driver_describe(&ok, drv);
    if (cache_dir && gw_cas_open(cache_dir, cache_max) == 0) { /* docs/cache.md */
        gw_cas_zstd_load();
        ok.flags |= GW_OK_CAS | (gw_cas_zstd() ? GW_OK_ZSTD : 0);
    } else if (cache_dir) {
        gw_wlog("cannot use cache folder %s: serving without the content cache", cache_dir);
    }
    gw_lane_grant grant = {0};
    if (lane_fd >= 0 && gw_lanes_start(lane_fd, (uint32_t)strtoul(session, NULL, 10), nlanes, gw_lane_job_alloc, gw_job_free,
                                       &grant) == 0)
        ok.flags |= GW_OK_LANES;
    else if (lane_fd >= 0)
        close(lane_fd);
    /* the devices' names, memory, UUIDs and bus ids come along (OK_DEVICES):
     * the client's start-up asks none of them (issue #20) */
    static gw_device_info devs[GW_HELLO_DEVICES_MAX];
    static int32_t attrs[GW_HELLO_DEVICES_MAX][2 * GW_DEVICE_TABLE_ATTRS];
    unsigned ndev = gw_driver_device_table(devs, GW_HELLO_DEVICES_MAX, &attrs[0][0]);
    if (ndev && ndev == ok.device_count)
        ok.flags |= GW_OK_DEVICES;
    size_t glen = ok.flags & GW_OK_LANES ? sizeof grant : 0, dlen = 0;
    static uint8_t buf[sizeof(gw_hdr) + sizeof ok + sizeof grant + sizeof devs + sizeof attrs];
    memcpy(buf + sizeof(gw_hdr), &ok, sizeof ok);
    memcpy(buf + sizeof(gw_hdr) + sizeof ok, &grant, glen);
    uint8_t *at = buf + sizeof(gw_hdr) + sizeof ok + glen;
    if (ok.flags & GW_OK_DEVICES) {
        memcpy(at, devs, ndev * sizeof *devs);
        dlen = ndev * sizeof *devs;
        for (unsigned i = 0; i < ndev; i++) {
            size_t alen = (size_t)devs[i].attr_count * 2 * sizeof(int32_t);
            memcpy(at + dlen, attrs[i], alen);
            dlen += alen;
        }
    }
    gw_hdr h = {.len = (uint32_t)(sizeof ok + glen + dlen), .op = GW_OP_HELLO_OK};
    memcpy(buf, &h, sizeof h);
    if (gw_send_frame(buf, sizeof h + h.len)) {
        gw_wlog("client went away before the handshake finished");
        return 0;
    }
    gw_wlog("serving %s with %s (driver %d, %u device(s))", client, ok.driver_desc, ok.driver_version,
            ok.device_count);
    gw_stdout_start(); /* device printf output goes to the client, not the server's log */
    int rc = gw_worker_serve(fd);
    gw_cas_drain(60000); /* chunks the background writer still holds are stored before exit (docs/cache.md) */
    gw_cas_report(1);
    gw_prof_report();
    gw_tl_write();
    gw_cas_prof_report(); /* with the profile: where cache hits spent their time */
    fflush(stderr);
    _exit(rc); /* process exit releases every context, allocation and module the client held */
}
