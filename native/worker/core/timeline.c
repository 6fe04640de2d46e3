/* The worker's timeline, for finding where a waited call's time goes on the
 * server (issue 20's decode gap): with GPUWIRE_WORKER_TIMELINE=DIR in the
 * server's environment, frames read, jobs started and ended, replies sent,
 * and deliveries' host functions and sends are stamped (CLOCK_MONOTONIC ns)
 * into a ring holding the session's last TL_EVENTS events, written to
 * DIR/timeline-PID.txt when the session ends (tools/timeline-report reads it).
 * Off, each stamp costs one branch. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../generated/wire_props.h"
#include "core.h"

#define TL_EVENTS (1u << 18)

typedef struct tl_event {
    uint64_t ns;
    uint32_t seq;
    uint16_t op;
    char kind;
    uint8_t flags;
} tl_event;

static int enabled = -1;
static const char *dir;
static tl_event *ring;
static atomic_uint next;

int gw_tl_on(void)
{
    if (enabled < 0) {
        dir = getenv("GPUWIRE_WORKER_TIMELINE");
        enabled = dir && *dir && (ring = calloc(TL_EVENTS, sizeof *ring)) != NULL;
    }
    return enabled;
}

void gw_tl_stamp(char kind, unsigned op, uint32_t seq, unsigned flags)
{
    if (!gw_tl_on())
        return;
    unsigned i = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) % TL_EVENTS;
    ring[i] = (tl_event){gw_prof_now(), seq, (uint16_t)op, kind, (uint8_t)flags};
}

void gw_tl_write(void)
{
    if (gw_tl_on() <= 0)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/timeline-%d.txt", dir, (int)getpid());
    FILE *f = fopen(path, "w");
    if (!f) {
        gw_wlog("timeline: cannot write %s", path);
        return;
    }
    unsigned n = atomic_load(&next), first = n > TL_EVENTS ? n - TL_EVENTS : 0;
    fprintf(f, "# gpuwire worker timeline: ns kind op seq flags (kinds: R read, S start, E end, W reply "
               "sent, H delivery host function, D delivery sent, P delivery by event sent)%s\n",
            first ? "; the ring overflowed, the oldest events are gone" : "");
    for (unsigned k = first; k < n; k++) {
        const tl_event *e = &ring[k % TL_EVENTS];
        const char *name = e->op >= 256 ? gw_op_name(e->op) : gw_control_op_label(e->op);
        fprintf(f, "%llu %c %s %u %u\n", (unsigned long long)e->ns, e->kind, name ? name : "-", e->seq,
                e->flags);
    }
    fclose(f);
    gw_wlog("timeline: %u events in %s", n - first, path);
}
