/* A wall-clock sampling profiler of the application's main thread, for
 * finding where a slow program's time goes when counters cannot say (time in
 * a library, not in a round trip). GPUWIRE_SAMPLE=FILE turns it on: every
 * GPUWIRE_SAMPLE_US (default 1000) microseconds the main thread records its
 * native backtrace, and at exit FILE gets the functions most often on top of
 * the stack and on it at all, and the most frequent stacks, named by dladdr
 * (library!symbol). A diagnostic: off unless asked for. Needs nothing of
 * the client, so it builds alone too. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "env.h"

/* Also built alone as gpuwire_sample.so, to LD_PRELOAD into a native run for
 * comparison: that copy reads GPUWIRE_PRELOAD_SAMPLE instead. */
#ifndef SAMPLE_ENV
#define SAMPLE_ENV "GPUWIRE_SAMPLE"
#endif

#define DEPTH 24
#define MAX_SAMPLES 40000
#define SKIP 2 /* the handler and the signal trampoline */

typedef struct sample {
    int n;
    void *pc[DEPTH];
} sample;

static sample *ring;
static volatile unsigned long taken;
static const char *out_path;
static long period_us = 1000;

static void on_tick(int sig)
{
    (void)sig;
    sample *s = &ring[taken % MAX_SAMPLES];
    void *buf[DEPTH + SKIP];
    int n = backtrace(buf, DEPTH + SKIP);
    s->n = n > SKIP ? n - SKIP : 0;
    memcpy(s->pc, buf + SKIP, (size_t)s->n * sizeof(void *));
    taken++;
}

static const char *name_of(void *pc, char *buf, size_t len)
{
    Dl_info i;
    if (!dladdr(pc, &i) || !i.dli_fname) {
        snprintf(buf, len, "%p", pc);
        return buf;
    }
    const char *lib = strrchr(i.dli_fname, '/');
    lib = lib ? lib + 1 : i.dli_fname;
    if (i.dli_sname)
        snprintf(buf, len, "%s!%s", lib, i.dli_sname);
    else
        snprintf(buf, len, "%s!+%#lx", lib, (unsigned long)((uintptr_t)pc - (uintptr_t)i.dli_fbase));
    return buf;
}

typedef struct tally {
    char *key;
    unsigned long n;
} tally;

/* open addressing by string; a full table drops new keys (it is a report) */
#define TALLY_CAP 65536u
typedef struct table {
    tally *t;
    size_t n;
} table;

static void count(table *tb, const char *key)
{
    if (!tb->t && !(tb->t = calloc(TALLY_CAP, sizeof *tb->t)))
        return;
    uint64_t h = 1469598103934665603ull;
    for (const char *c = key; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ull;
    for (size_t i = 0; i < TALLY_CAP; i++) {
        tally *e = &tb->t[(h + i) & (TALLY_CAP - 1)];
        if (!e->key) {
            if (tb->n >= TALLY_CAP / 2 || !(e->key = strdup(key)))
                return;
            e->n = 1;
            tb->n++;
            return;
        }
        if (!strcmp(e->key, key)) {
            e->n++;
            return;
        }
    }
}

static int by_count(const void *a, const void *b)
{
    unsigned long x = ((const tally *)a)->n, y = ((const tally *)b)->n;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void print_top(FILE *f, const char *title, table *tb, unsigned long total, size_t k)
{
    fprintf(f, "%s\n", title);
    if (!tb->t)
        return;
    size_t m = 0;
    for (size_t i = 0; i < TALLY_CAP; i++)
        if (tb->t[i].key)
            tb->t[m++] = tb->t[i];
    qsort(tb->t, m, sizeof *tb->t, by_count);
    for (size_t i = 0; i < m && i < k; i++)
        fprintf(f, "%7lu %5.1f%%  %s\n", tb->t[i].n, 100.0 * tb->t[i].n / (total ? total : 1), tb->t[i].key);
}

/* GPUWIRE_SAMPLE_WATCH=a,b: for each name, how many separate stretches of
 * samples had it on the stack (about how many calls, for calls longer than
 * the sampling period) and their mean length: a count where the library
 * cannot be instrumented. */
static void report_episodes(FILE *f, unsigned long n)
{
    const char *w = getenv("GPUWIRE_SAMPLE_WATCH");
    if (!w || !*w)
        return;
    char *list = strdup(w), *save = NULL, name[512];
    unsigned long first = taken > MAX_SAMPLES ? taken % MAX_SAMPLES : 0;
    for (char *word = strtok_r(list, ",", &save); word; word = strtok_r(NULL, ",", &save)) {
        unsigned long runs = 0, in = 0;
        int was = 0;
        for (unsigned long k = 0; k < n; k++) {
            const sample *s = &ring[(first + k) % MAX_SAMPLES];
            int is = 0;
            for (int d = 0; d < s->n && !is; d++)
                is = strstr(name_of(s->pc[d], name, sizeof name), word) != NULL;
            runs += is && !was;
            in += is;
            was = is;
        }
        fprintf(f, "watch %s: %lu stretches, %lu samples, mean %.1f samples each\n", word, runs, in,
                runs ? (double)in / runs : 0.0);
    }
    free(list);
}

__attribute__((destructor)) static void sampler_report(void)
{
    if (!ring)
        return;
    signal(SIGRTMIN + 5, SIG_IGN);
    unsigned long n = taken < MAX_SAMPLES ? taken : MAX_SAMPLES;
    /* child processes inherit the setting: the process with the most samples
     * (the program itself, as a rule) keeps the file */
    FILE *f = fopen(out_path, "r");
    unsigned long before = 0;
    if (f) {
        if (fscanf(f, "gpuwire sampler: %lu", &before) != 1)
            before = 0;
        fclose(f);
        if (before > n)
            return;
    }
    f = fopen(out_path, "w");
    if (!f)
        return;
    table self = {0}, incl = {0}, stacks = {0};
    char name[512], stack[4096];
    for (unsigned long k = 0; k < n; k++) {
        const sample *s = &ring[k];
        if (!s->n)
            continue;
        count(&self, name_of(s->pc[0], name, sizeof name));
        size_t pos = 0;
        for (int d = 0; d < s->n; d++) {
            const char *nm = name_of(s->pc[d], name, sizeof name);
            int dup = 0; /* a recursive function counts once per sample */
            for (int e = 0; e < d && !dup; e++)
                dup = s->pc[e] == s->pc[d];
            if (!dup)
                count(&incl, nm);
            if (d < 8 && pos < sizeof stack - 1)
                pos += (size_t)snprintf(stack + pos, sizeof stack - pos, "%s%s", d ? " < " : "", nm);
        }
        count(&stacks, stack);
    }
    fprintf(f, "gpuwire sampler: %lu samples of the main thread, one per %ld us\n", n, period_us);
    report_episodes(f, n);
    print_top(f, "== on top of the stack", &self, n, 40);
    print_top(f, "== anywhere on the stack", &incl, n, 60);
    print_top(f, "== stacks (innermost first, 8 frames)", &stacks, n, 25);
    fclose(f);
}

__attribute__((constructor)) static void sampler_start(void)
{
    const char *p = getenv(SAMPLE_ENV);
    if (!p || !*p)
        return;
    ring = calloc(MAX_SAMPLES, sizeof *ring);
    if (!ring)
        return;
    out_path = p;
    void *warm[4];
    backtrace(warm, 4); /* loads the unwinder now, not inside the signal handler */
    unsigned long long period = 1000;
    gw_env_int("GPUWIRE_SAMPLE_US", 100, 1000000, "using the default, 1000", &period);
    long us = period_us = (long)period;
    struct sigaction sa = {.sa_handler = on_tick, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGRTMIN + 5, &sa, NULL);
    struct sigevent ev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGRTMIN + 5};
    ev._sigev_un._tid = (pid_t)syscall(SYS_gettid); /* the thread that loaded the driver: the main one */
    timer_t t;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t) == 0) {
        struct itimerspec it = {.it_interval = {us / 1000000, (us % 1000000) * 1000},
                                .it_value = {us / 1000000, (us % 1000000) * 1000}};
        timer_settime(t, 0, &it, NULL);
        fprintf(stderr, "gpuwire: sampling the main thread every %ld us into %s\n", us, p);
    }
}
