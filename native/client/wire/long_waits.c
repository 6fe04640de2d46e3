/* Long waits named on the client. A thread that has waited
 * GPUWIRE_WAIT_NOTICE_S seconds (default 60; 0: never) for the answer to a
 * call gets one line naming the call, again each time its wait doubles, and
 * one when the answer comes. The wait itself is not cut short: a kernel may
 * run that long, and the wait is the application's, as it would be natively
 * (a server that is gone ends it: dial.c's keepalive, the session's loss).
 * What the line gives is where a program that looks hung stands, and where
 * to look next (`gpuwire status` names the call the server runs).
 *
 * One watcher thread, started with the first waited call, looks once a
 * second at the oldest waiter (replies.c); with nothing waiting it costs a
 * wake-up a second. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "../../generated/gw_ops.h"
#include "../diag/env.h"
#include "stream.h"

static unsigned long long notice_s = 60;
static pthread_once_t started = PTHREAD_ONCE_INIT;

static const char *op_text(unsigned op) { return op >= GW_OP_FIRST_CALL ? gw_op_name(op) : "a control request"; }

static void *watch(void *arg)
{
    (void)arg;
    uint32_t seq = 0;      /* the waiter last named */
    uint64_t next_s = 0;   /* its age that earns the next line */
    for (;;) {
        struct timespec pause = {1, 0};
        nanosleep(&pause, NULL);
        uint64_t t0;
        unsigned op;
        uint32_t s;
        if (!gw_replies_oldest(&t0, &op, &s))
            continue;
        uint64_t age_s = (gw_now_ns() - t0) / 1000000000ull;
        if (s != seq) {
            seq = s;
            next_s = notice_s;
        }
        if (age_s < next_s)
            continue;
        if (!gw_replies_mark_noticed(s))
            continue; /* answered meanwhile */
        if (next_s == notice_s)
            gw_log("%s has waited %llu s for its answer from the gpuwire server: a kernel or copy still running "
                   "there, or a server that is stuck (`gpuwire status` names the call it runs); still waiting",
                   op_text(op), (unsigned long long)age_s);
        else
            gw_log("%s has waited %llu s for its answer; still waiting", op_text(op), (unsigned long long)age_s);
        next_s = age_s * 2;
    }
    return NULL;
}

static void start(void)
{
    unsigned long long v;
    if (gw_env_int("GPUWIRE_WAIT_NOTICE_S", 0, 86400, "using 60", &v) > 0)
        notice_s = v;
    if (notice_s)
        (void)gw_start_helper_thread(watch);
}

void gw_long_waits_start(void) { pthread_once(&started, start); }

void gw_long_waits_after_fork(void)
{
    pthread_once_t fresh = PTHREAD_ONCE_INIT; /* threads do not survive fork */
    started = fresh;
}

void gw_long_wait_ended(unsigned op, uint64_t t0)
{
    gw_log("%s answered after %.1f s", op_text(op), (gw_now_ns() - t0) / 1e9);
}
