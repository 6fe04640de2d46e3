#include "idmap.h"

#include <stdlib.h>

#define DELETED UINT64_MAX

static size_t slot(uint64_t key, size_t cap)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (size_t)key & (cap - 1);
}

void *gw_idmap_get(const gw_idmap *m, uint64_t key)
{
    if (!m->cap || key == 0 || key == DELETED)
        return NULL;
    for (size_t i = slot(key, m->cap), n = 0; n < m->cap; i = (i + 1) & (m->cap - 1), n++) {
        if (m->keys[i] == key)
            return m->vals[i];
        if (m->keys[i] == 0)
            return NULL;
    }
    return NULL;
}

static int grow(gw_idmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    if (m->live * 4 < m->cap)
        cap = m->cap; /* mostly tombstones: rehash in place size */
    uint64_t *keys = calloc(cap, sizeof *keys);
    void **vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        uint64_t k = m->keys[i];
        if (k && k != DELETED) {
            size_t j = slot(k, cap);
            while (keys[j])
                j = (j + 1) & (cap - 1);
            keys[j] = k;
            vals[j] = m->vals[i];
        }
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    m->used = m->live;
    return 0;
}

int gw_idmap_put(gw_idmap *m, uint64_t key, void *val)
{
    if (key == 0 || key == DELETED)
        return -1;
    if ((m->used + 1) * 4 >= m->cap * 3 && grow(m))
        return -1;
    size_t tomb = (size_t)-1;
    for (size_t i = slot(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key) {
            m->vals[i] = val;
            return 0;
        }
        if (m->keys[i] == DELETED && tomb == (size_t)-1)
            tomb = i;
        if (m->keys[i] == 0) {
            if (tomb != (size_t)-1)
                i = tomb;
            else
                m->used++;
            m->keys[i] = key;
            m->vals[i] = val;
            m->live++;
            return 0;
        }
    }
}

void *gw_idmap_del(gw_idmap *m, uint64_t key)
{
    if (!m->cap || key == 0 || key == DELETED)
        return NULL;
    for (size_t i = slot(key, m->cap), n = 0; n < m->cap; i = (i + 1) & (m->cap - 1), n++) {
        if (m->keys[i] == key) {
            void *v = m->vals[i];
            m->keys[i] = DELETED;
            m->vals[i] = NULL;
            m->live--;
            return v;
        }
        if (m->keys[i] == 0)
            return NULL;
    }
    return NULL;
}

void gw_idmap_clear(gw_idmap *m, void (*free_val)(void *))
{
    for (size_t i = 0; free_val && i < m->cap; i++)
        if (m->keys[i] && m->keys[i] != DELETED)
            free_val(m->vals[i]);
    free(m->keys);
    free(m->vals);
    *m = (gw_idmap){0};
}
