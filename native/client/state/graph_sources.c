/* Graphs' host sources: memcpy nodes that copy from this process's host
 * memory (pageable, or page-locked and not mapped) at every launch
 * (docs/protocol.md "Graph host sources"). The worker's node copies from
 * device staging the client names with an id; here each graph and each
 * executable graph keeps its list of (node, staging id, source address,
 * bytes). Instantiating, cloning or adding a graph as a child copies the
 * list (the driver's copy of the node reads the same staging); a launch
 * first posts each source's current bytes into its staging (STAGING_FILL,
 * in stream order before the launch). A staging is freed on the server
 * (STAGING_FREE) once no graph or executable graph lists it any more. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

typedef struct source {
    uint64_t owner;   /* a graph's or an executable graph's id */
    int exec;         /* 1: owner is an executable graph */
    uint64_t node;    /* the node it was added as (0: inside a child graph) */
    uint64_t staging; /* the worker's staging id */
    const uint8_t *src;
    uint64_t n;
} source;

static source *sources; /* under lock */
static size_t count, cap;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ullong next_staging = 1;

/* Pieces this big go straight from the application's buffer into the socket. */
#define DIRECT_BYTES (256u << 10)

uint64_t gw_graph_source_id(void) { return atomic_fetch_add(&next_staging, 1); }

static int push(source s) /* under lock; 0, or -1 if out of memory */
{
    if (count == cap) {
        size_t ncap = cap ? cap * 2 : 16;
        source *grown = realloc(sources, ncap * sizeof *grown);
        if (!grown)
            return -1;
        sources = grown;
        cap = ncap;
    }
    sources[count++] = s;
    return 0;
}

static int staging_listed(uint64_t staging) /* under lock */
{
    for (size_t i = 0; i < count; i++)
        if (sources[i].staging == staging)
            return 1;
    return 0;
}

/* Entries matching (owner, exec) and node removed (owner 0: any owner of
 * that kind; node 0: any node);
 * the stagings nobody lists any more are freed on the server. */
static void drop(uint64_t owner, int exec, uint64_t node)
{
    uint64_t *gone = NULL;
    size_t ngone = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < count;) {
        source *s = &sources[i];
        if ((owner && s->owner != owner) || s->exec != exec || (node && s->node != node)) {
            i++;
            continue;
        }
        uint64_t staging = s->staging;
        sources[i] = sources[--count];
        if (!staging_listed(staging)) {
            uint64_t *more = realloc(gone, (ngone + 1) * sizeof *more);
            if (more) {
                gone = more;
                gone[ngone++] = staging;
            } /* else the staging stays until the session ends */
        }
    }
    pthread_mutex_unlock(&lock);
    for (size_t i = 0; i < ngone; i++) {
        gw_req *q = gw_req_begin(GW_OP_STAGING_FREE);
        gw_put_fields(q, gw_staging_free_req, {.staging = gone[i]});
        gw_req_post(q); /* a failure: the session is ending anyway */
    }
    free(gone);
}

CUresult gw_graph_source_set(uint64_t owner, int exec, CUgraphNode node, uint64_t staging, const void *src,
                             uint64_t n)
{
    if (node)
        drop(owner, exec, (uint64_t)(uintptr_t)node); /* what it read before */
    if (!staging)
        return CUDA_SUCCESS;
    pthread_mutex_lock(&lock);
    int r = push((source){owner, exec, (uint64_t)(uintptr_t)node, staging, src, n});
    pthread_mutex_unlock(&lock);
    return r ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS;
}

/* A graph's (not an exec's) node that reads host memory: a copy of its
 * record, 1; else 0. */
static int node_source(CUgraphNode node, source *out)
{
    int found = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < count && !found; i++)
        if (!sources[i].exec && node && sources[i].node == (uint64_t)(uintptr_t)node) {
            *out = sources[i];
            found = 1;
        }
    pthread_mutex_unlock(&lock);
    return found;
}

int gw_graph_source_owner(CUgraphNode node, uint64_t *graph)
{
    source s;
    if (!node_source(node, &s))
        return 0;
    *graph = s.owner;
    return 1;
}

CUresult gw_graph_sources_copy(uint64_t from, int from_exec, uint64_t to, int to_exec, int keep_nodes)
{
    int failed = 0;
    pthread_mutex_lock(&lock);
    size_t n = count; /* the ones pushed below are not copied again */
    for (size_t i = 0; i < n && !failed; i++) {
        source s = sources[i];
        if (s.owner != from || s.exec != from_exec)
            continue;
        s.owner = to;
        s.exec = to_exec;
        if (!keep_nodes)
            s.node = 0;
        failed = push(s);
    }
    pthread_mutex_unlock(&lock);
    return failed ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS;
}

void gw_graph_sources_release(uint64_t owner, int exec) { drop(owner, exec, 0); }

/* The exec now runs the graph's nodes: its list becomes the graph's (a
 * staging both list stays; one only the exec listed is freed). */
void gw_graph_sources_exec_updated(CUgraphExec e, CUgraph g)
{
    uint64_t exec = (uint64_t)(uintptr_t)e, graph = (uint64_t)(uintptr_t)g;
    drop(exec, 1, 0);
    if (gw_graph_sources_copy(graph, 0, exec, 1, 1) != CUDA_SUCCESS)
        gw_log("cuGraphExecUpdate: out of memory for the graph's host sources: they are not refreshed at launch");
}

int gw_graph_source_of(CUgraphNode node, const void **src, uint64_t *n)
{
    source s;
    if (!node_source(node, &s))
        return 0;
    *src = s.src;
    *n = s.n;
    return 1;
}

int gw_graph_sources_any(uint64_t owner, int exec)
{
    int any = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < count && !any; i++)
        any = sources[i].owner == owner && sources[i].exec == exec;
    pthread_mutex_unlock(&lock);
    return any;
}

CUresult gw_graph_sources_fill(uint64_t exec, CUstream s, int ptsz)
{
    source *mine = NULL;
    size_t n = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < count; i++)
        if (sources[i].owner == exec && sources[i].exec) {
            source *more = realloc(mine, (n + 1) * sizeof *more);
            if (!more) {
                pthread_mutex_unlock(&lock);
                free(mine);
                return CUDA_ERROR_OUT_OF_MEMORY;
            }
            mine = more;
            mine[n++] = sources[i];
        }
    pthread_mutex_unlock(&lock);
    CUresult rc = CUDA_SUCCESS;
    for (size_t i = 0; i < n && rc == CUDA_SUCCESS; i++) {
        const uint8_t *p = mine[i].src;
        /* a delivered copy still on its way into these bytes lands first, as
         * natively the node would read them after it; mapped pages are readable */
        rc = gw_deliveries_settle((uint64_t)(uintptr_t)p, mine[i].n);
        gw_mapped_prepare((uint64_t)(uintptr_t)p, mine[i].n, 0);
        for (uint64_t off = 0; off < mine[i].n && rc == CUDA_SUCCESS; off += GW_COPY_CHUNK) {
            size_t len = mine[i].n - off < GW_COPY_CHUNK ? (size_t)(mine[i].n - off) : GW_COPY_CHUNK;
            gw_req *q = gw_req_begin(GW_OP_STAGING_FILL);
            gw_put_fields(q, gw_staging_fill_req,
                          {.staging = mine[i].staging, .offset = off, .stream = (uint64_t)(uintptr_t)s,
                           .flags = ptsz ? 1u : 0u});
            if (len >= DIRECT_BYTES) {
                rc = gw_req_post_tail(q, p + off, len);
            } else {
                gw_put_raw(q, p + off, len); /* the bytes leave the application's buffer here */
                rc = gw_req_post(q);
            }
        }
    }
    free(mine);
    return rc;
}
