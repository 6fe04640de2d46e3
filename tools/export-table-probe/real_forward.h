/* GPU-machine probes only: resolve a symbol of the real libcuda.so.1. */
#ifndef GW_PROBE_REAL_FORWARD_H
#define GW_PROBE_REAL_FORWARD_H
void *real_sym(const char *name);
#endif
