/* Reading pushed frames for a thread that waits for them but for no reply of
 * its own (pushed_pump.c): the host-function runner (state/host_calls.c). */
#ifndef GW_CLIENT_WIRE_PUSHED_PUMP_H
#define GW_CLIENT_WIRE_PUSHED_PUMP_H

#include "wire_api.h"

/* Waits up to timeout_ms for wake_fd or the session's stream to be readable;
 * when the stream is and no other thread reads it, reads one frame as the
 * reader (a pushed frame goes to its handler, a reply to its waiter).
 * 0, or -1 when the stream is lost (nothing more will come). */
GW_HIDDEN int gw_pushed_pump(int wake_fd, int timeout_ms);
/* The calling thread runs host code where the device's work just reached it
 * (running 1), or has finished (0). At the start what a layer above keeps of
 * device-visible memory is made current, as after a round trip (the
 * registered after_reply hook); meanwhile the thread's driver calls are
 * refused with CUDA_ERROR_NOT_PERMITTED (the stream waits for this code: a
 * call could wait behind it forever), gpuwire's own control ops still go. */
GW_HIDDEN void gw_pushed_host_code(int running);
GW_HIDDEN int gw_pushed_in_host_code(void);

#endif
