/* cuGraphDebugDotPrint: the path the application gave is on the client's
 * machine, so the driver writes a private temporary file here, whose bytes go
 * back and which is removed at once.
 *
 * Format: GRAPH_DEBUG_DOT_PRINT in codegen/protocol.txt. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handlers.h"

#define DOT_MAX GW_GRAPH_DEBUG_DOT_PRINT_REP_DOT_MAX /* room for the reply's header and result */

void gw_h_cuGraphDebugDotPrint(gw_call *c)
{
    gw_graph_debug_dot_print_req q = {0};
    CUgraph g = NULL;
    if (gw_in_part(c, gw_graph_debug_dot_print_req, &q))
        g = (CUgraph)gw_handle_lookup(c, GW_HT_CUgraph, q.graph);
    unsigned int flags = q.flags;
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUgraph, const char *, unsigned int) =
        (CUresult(*)(CUgraph, const char *, unsigned int))gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/gpuwire-dot-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        gw_wlog("cuGraphDebugDotPrint: no temporary file in %s", dir && *dir ? dir : "/tmp");
        gw_reply_result(c, CUDA_ERROR_OPERATING_SYSTEM);
        return;
    }
    CUresult r = fn(g, path, flags);
    struct stat st;
    char *buf = NULL;
    size_t n = 0;
    if (r == CUDA_SUCCESS) {
        /* the driver may have replaced the file: read it by name */
        int rfd = open(path, O_RDONLY);
        if (rfd < 0 || fstat(rfd, &st) || st.st_size > DOT_MAX || !(buf = gw_scratch(c, (size_t)st.st_size + 1)))
            r = rfd < 0 ? CUDA_ERROR_OPERATING_SYSTEM : CUDA_ERROR_OUT_OF_MEMORY;
        while (r == CUDA_SUCCESS && n < (size_t)st.st_size) {
            ssize_t k = read(rfd, buf + n, (size_t)st.st_size - n);
            if (k <= 0)
                break;
            n += (size_t)k;
        }
        if (rfd >= 0)
            close(rfd);
    }
    close(fd);
    unlink(path);
    if (r == CUDA_SUCCESS) {
        gw_reply_first(c, gw_graph_debug_dot_print_rep, {.result = r, .n = (uint32_t)n});
        gw_reply_bytes(c, buf, n);
    } else {
        gw_reply_result(c, r);
    }
}
