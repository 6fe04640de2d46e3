/* nvml-spy: shared declarations of the interposer libnvidia-ml.so.1 (spy.c)
 * and its generated stubs (gen.sh: forward.c, tramps.c). */
#ifndef NVML_SPY_H
#define NVML_SPY_H
#include <stdint.h>

/* Every forwarded function is seen as taking ten integer words (six argument
 * registers, four stack words) and returning one. */
typedef uint64_t (*spy_fn)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                           uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);

/* forward.c */
extern const char *const spy_public_names[];
extern const int spy_public_count;
/* tramps.c: trampoline k serves table k / SPY_SLOTS, slot k % SPY_SLOTS */
extern spy_fn const spy_tramps[];
extern const int spy_tramp_count;

#define SPY_SLOTS 256 /* slots wrapped per table */

uint64_t spy_public(int idx, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                    uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8, uint64_t a9);
uint64_t spy_slot(int k, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                  uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8, uint64_t a9);
#endif
