/* What the generated forwarders of libcuda.so.1 (native/generated/) see:
 * every layer of the client, bottom to top. Hand-written files include
 * their own layer's header instead:
 *   diag/diag.h      log, settings, progress line, helper threads, counters
 *   wire/wire_api.h  requests and replies, session, pushed frames, lanes, cas
 *   state/state.h    contexts, devices, memory, deliveries, modules, layouts
 *   api/api.h        what the hand-written driver calls share
 *   private/         export tables and NVRTC's compile cache (export_tables.h)
 * Calls go downwards only; a lower layer reaches code above it only through
 * what that code registered (pushed frames, counting hooks, context ends).
 * Nothing here is exported. */
#ifndef GW_CLIENT_H
#define GW_CLIENT_H

#include "api/api.h"
#include "private/export_tables.h"

#endif
