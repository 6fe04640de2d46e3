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
/* Host code is about to run where the device's work just reached it: what
 * a layer above keeps of device-visible memory is made current, as after a
 * round trip (the registered after_reply hook). */
GW_HIDDEN void gw_pushed_host_code_runs(void);

#endif
