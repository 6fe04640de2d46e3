/* A small open-addressing hash map from 64-bit keys (never 0) to pointers.
 * Not thread-safe: owners lock around it. */
#ifndef GW_IDMAP_H
#define GW_IDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_idmap {
    uint64_t *keys; /* 0: empty, UINT64_MAX: deleted */
    void **vals;
    size_t cap, used, live;
} gw_idmap;

void *gw_idmap_get(const gw_idmap *m, uint64_t key);
int gw_idmap_put(gw_idmap *m, uint64_t key, void *val); /* 0 ok, -1 out of memory */
void *gw_idmap_del(gw_idmap *m, uint64_t key);          /* returns the value removed */
void gw_idmap_clear(gw_idmap *m, void (*free_val)(void *)); /* empties it; free_val (if any) on each value */

#endif
