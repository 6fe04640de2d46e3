/* Hashing many chunks at once on a few threads: a large copy's chunks are
 * independent, and one core hashes ~2 GB/s at best. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "sha256.h"

typedef struct job {
    const gw_sha256_item *items;
    size_t count;
    atomic_size_t next; /* the next item to take */
} job;

static void *hash_some(void *arg)
{
    job *j = arg;
    for (size_t i; (i = atomic_fetch_add(&j->next, 1)) < j->count;)
        gw_sha256_hash(j->items[i].data, j->items[i].len, j->items[i].out);
    return NULL;
}

#define MAX_THREADS 32

void gw_sha256_many(const gw_sha256_item *items, size_t count, unsigned threads)
{
    job j = {.items = items, .count = count};
    atomic_init(&j.next, 0);
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (threads > j.count)
        threads = (unsigned)j.count;
    pthread_t t[MAX_THREADS];
    unsigned started = 0;
    sigset_t all, old; /* helpers take no part in the application's signals */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (; started + 1 < threads; started++) /* the calling thread is one of them */
        if (pthread_create(&t[started], NULL, hash_some, &j))
            break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    hash_some(&j);
    for (unsigned i = 0; i < started; i++)
        pthread_join(t[i], NULL);
}
