/* Stream captures under way in the process: they all begin and end through
 * the client (api/launch.c), so while none is, no stream is capturing and
 * the client answers so itself. */
#include <stdatomic.h>

#include "state.h"

static atomic_int captures;

int gw_captures_active(void) { return atomic_load(&captures) > 0; }

void gw_capture_began(void) { atomic_fetch_add(&captures, 1); }

/* Ending is counted whatever the outcome: a failed end still ends the capture
 * (and an end without a begin leaves the count where it was). */
void gw_capture_ended(void)
{
    int n = atomic_load(&captures);
    while (n > 0 && !atomic_compare_exchange_weak(&captures, &n, n - 1))
        ;
}
