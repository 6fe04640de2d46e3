/* How fast can this machine verify and read cache entries? SHA-256 on one
 * thread and on N (gw_sha256_many over 4 MiB items), and read() of 4 MiB
 * pieces of a page-cached file into a reused buffer on N threads: the
 * stages of the worker's cache-hit pipeline (native/worker/handlers/cas_ops.c).
 * Built and run by tests/gpu/gpu-all cachediag:
 *   cc -O2 -pthread -Inative/common tools/cache-speed.c native/common/sha256*.c -o cache-speed
 *   ./cache-speed FILE THREADS */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sha256.h"

#define PIECE (4u << 20)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

typedef struct reader {
    const char *path;
    off_t from, to;
} reader;

static void *read_some(void *arg)
{
    reader *r = arg;
    int fd = open(r->path, O_RDONLY);
    char *buf = malloc(PIECE);
    memset(buf, 1, PIECE);
    for (off_t o = r->from; fd >= 0 && o < r->to; o += PIECE)
        if (pread(fd, buf, PIECE, o) <= 0)
            break;
    free(buf);
    if (fd >= 0)
        close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: cache-speed FILE THREADS\n");
        return 2;
    }
    unsigned threads = (unsigned)atoi(argv[2]);
    size_t total = (size_t)1 << 30;
    uint8_t *data = malloc(total), out[32];
    memset(data, 7, total);
    double t = now();
    gw_sha256_hash(data, 256u << 20, out);
    printf("sha256 (%s), 1 thread: %.2f GB/s\n", gw_sha256_impl(), (256u << 20) / (now() - t) / 1e9);
    size_t n = total / PIECE;
    gw_sha256_item *items = calloc(n, sizeof *items);
    uint8_t *outs = malloc(n * 32);
    for (size_t i = 0; i < n; i++)
        items[i] = (gw_sha256_item){data + i * PIECE, PIECE, outs + i * 32};
    t = now();
    gw_sha256_many(items, n, threads);
    printf("sha256, %u threads: %.2f GB/s\n", threads, total / (now() - t) / 1e9);
    int fd = open(argv[1], O_RDONLY);
    off_t size = fd >= 0 ? lseek(fd, 0, SEEK_END) : 0;
    if (fd >= 0)
        close(fd);
    if (size > (off_t)total)
        size = (off_t)total;
    for (unsigned k = 0; k < 2; k++) { /* the first pass may fill the page cache */
        pthread_t th[64];
        reader rs[64];
        unsigned m = threads > 64 ? 64 : threads;
        off_t share = (size / m / PIECE + 1) * PIECE;
        t = now();
        for (unsigned i = 0; i < m; i++) {
            rs[i] = (reader){argv[1], i * share, (i + 1) * share < size ? (i + 1) * share : size};
            pthread_create(&th[i], NULL, read_some, &rs[i]);
        }
        for (unsigned i = 0; i < m; i++)
            pthread_join(th[i], NULL);
        printf("read %s, %u threads, pass %u: %.2f GB/s\n", argv[1], m, k + 1, size / (now() - t) / 1e9);
    }
    return 0;
}
