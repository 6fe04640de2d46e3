/* nvml-spy: shared declarations of the interposer libnvidia-ml.so.1 (spy.c)
 * and its generated stubs (gen.sh: forward.c, tramps.c). */
#ifndef NVML_SPY_H
#define NVML_SPY_H
#include <stdint.h>

/* Every forwarded function is seen as taking ten integer words (six argument
 * registers, four stack words) and the eight SSE argument registers, and
 * returning one integer word. The SSE registers are passed along as doubles so
 * that the spy's own work between entry and the real call (memcpy, dlsym)
 * cannot lose a floating-point argument; they take no stack room. */
#define SPY_PARAMS uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, \
    uint64_t a6, uint64_t a7, uint64_t a8, uint64_t a9, double x0, double x1, double x2, double x3, \
    double x4, double x5, double x6, double x7
#define SPY_ARGS a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, x0, x1, x2, x3, x4, x5, x6, x7
typedef uint64_t (*spy_fn)(SPY_PARAMS);

/* forward.c */
extern const char *const spy_public_names[];
extern const int spy_public_count;
/* tramps.c: trampoline k serves table k / SPY_SLOTS, slot k % SPY_SLOTS */
extern spy_fn const spy_tramps[];
extern const int spy_tramp_count;

#define SPY_SLOTS 512 /* slots wrapped per table (NVML 580's 6c3efec4 has 270) */

uint64_t spy_public(int idx, SPY_PARAMS);
uint64_t spy_slot(int k, SPY_PARAMS);
#endif
