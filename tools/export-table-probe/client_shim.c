/* The two client-library functions gpuwire's export tables call besides the
 * driver API (native/client/private/ includes ../state/state.h): enough for
 * the probe's own libcuda builds (fake, passthru, real_tables), which carry
 * the tables without the rest of the client. Test tool only. */
#include <stdlib.h>
#include <cuda.h>

/* GPUWIRE_DEBUG, as the client reads it: a number 0..9 (unset: 0). */
int gw_debug_level(void)
{
    const char *s = getenv("GPUWIRE_DEBUG");
    int v = s ? atoi(s) : 0;
    return v < 0 ? 0 : v > 9 ? 9 : v;
}

/* The client tells the tables of a context's end; the probes never destroy
 * contexts behind the tables' back, so nothing is registered. */
void gw_on_context_ending(void (*fn)(CUcontext ctx))
{
    (void)fn;
}
