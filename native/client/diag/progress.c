/* The status line of long transfers and of a lease waiting in the queue
 * (progress.h). Transfers that follow one another closely (a model's
 * weights, tensor after tensor) count as one: the figures cover everything
 * from the first byte until no transfer has run for IDLE_END_MS. The line
 * is on the terminal only while a transfer runs: between two, the
 * application may print. A thread of its own redraws it, so a transfer
 * blocked in a socket write still shows; it sleeps while nothing is sent. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "diag.h"
#include "env.h"
#include "progress.h"

#define SHOW_AFTER_MS 2000 /* a transfer shorter than this shows nothing */
#define REDRAW_MS 250      /* at most 4 redraws a second */
#define IDLE_END_MS 500    /* no transfer for this long: it is done, the line goes */

int gw_progress_enabled;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake;
static int ticker_running;
static int line_shown; /* something of ours is on the terminal's current line */

static struct {
    int running;             /* transfers begun and not ended */
    uint64_t start_ns;       /* 0: no transfer under way */
    uint64_t last_ns;        /* the last end */
    uint64_t total, done;    /* bytes of the transfers begun; sent or found in the cache */
    uint64_t chunks, hit_chunks, hit_bytes;
} act;

void gw_progress_settings(void)
{
    static const char *const words[] = {"auto", "0", "1", "off", "on", "no", "yes", "false", "true", "force", NULL};
    int i = 0;
    gw_env_word("GPUWIRE_PROGRESS", words, "auto, force or " GW_ENV_BOOL_TEXT, "using the default, auto", &i);
    if (i == 9)
        gw_progress_enabled = 1;
    else if (i == 0 || (i - 1) & 1) /* auto, or on: where stderr is a terminal */
        gw_progress_enabled = isatty(STDERR_FILENO);
    else
        gw_progress_enabled = 0;
}

static void put(const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void clear_locked(void)
{
    if (line_shown)
        put("\r\033[K", 4);
    line_shown = 0;
}

static void show_locked(const char *text)
{
    /* cut to the terminal's width: a line that wraps is not redrawn in place by \r */
    struct winsize ws;
    int width = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20 ? ws.ws_col - 1 - 9 : 250;
    char line[300];
    int n = snprintf(line, sizeof line, "\rgpuwire: %.*s\033[K", width < 250 ? width : 250, text);
    put(line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
    line_shown = 1;
}

static void bytes_text(char *out, size_t cap, double b)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4)
        b /= 1024, u++;
    snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

static void draw_locked(uint64_t now)
{
    double secs = (double)(now - act.start_ns) / 1e9;
    double rate = secs > 0 ? (double)act.done / secs : 0;
    char done[32], total[32], speed[32], hit[32], left[48] = "";
    bytes_text(done, sizeof done, (double)act.done);
    bytes_text(total, sizeof total, (double)act.total);
    bytes_text(speed, sizeof speed, rate);
    bytes_text(hit, sizeof hit, (double)act.hit_bytes);
    if (act.total > act.done && rate > 0) {
        double eta = (double)(act.total - act.done) / rate;
        if (eta < 1)
            snprintf(left, sizeof left, ", <1 s left");
        else if (eta < 120)
            snprintf(left, sizeof left, ", ~%.0f s left", eta);
        else
            snprintf(left, sizeof left, ", ~%.0f min left", eta / 60);
    }
    char text[256], cache[96] = "cache not used"; /* no server cache, GPUWIRE_CACHE=0, small copies */
    if (act.chunks)
        snprintf(cache, sizeof cache, "cache hits %llu of %llu chunks (%s)", (unsigned long long)act.hit_chunks,
                 (unsigned long long)act.chunks, hit);
    snprintf(text, sizeof text, "sent %s of %s, %s/s, %s%s", done, total, speed, cache, left);
    show_locked(text);
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void *ticker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        if (!act.start_ns) {
            pthread_cond_wait(&wake, &lock);
            continue;
        }
        struct timespec due;
        clock_gettime(CLOCK_MONOTONIC, &due);
        due.tv_nsec += REDRAW_MS * 1000000L;
        due.tv_sec += due.tv_nsec / 1000000000L;
        due.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&wake, &lock, &due);
        if (!act.start_ns)
            continue;
        uint64_t now = now_ns();
        if (!act.running && now - act.last_ns >= IDLE_END_MS * 1000000ull) {
            clear_locked(); /* done */
            memset(&act, 0, sizeof act);
        } else if (act.running && now - act.start_ns >= SHOW_AFTER_MS * 1000000ull) {
            draw_locked(now);
        }
    }
    return NULL;
}

static void start_ticker_locked(void)
{
    if (ticker_running)
        return;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wake, &ca);
    pthread_condattr_destroy(&ca);
    ticker_running = gw_start_helper_thread(ticker) == 0;
}

void gw_progress_begin_(uint64_t total)
{
    pthread_mutex_lock(&lock);
    if (!act.start_ns) {
        act.start_ns = now_ns();
        start_ticker_locked();
        if (ticker_running)
            pthread_cond_signal(&wake);
    }
    act.running++;
    act.total += total;
    pthread_mutex_unlock(&lock);
}

void gw_progress_sent_(uint64_t bytes)
{
    pthread_mutex_lock(&lock);
    act.done += bytes;
    pthread_mutex_unlock(&lock);
}

void gw_progress_cache_(uint64_t chunks, uint64_t hit_chunks, uint64_t hit_bytes)
{
    pthread_mutex_lock(&lock);
    act.chunks += chunks;
    act.hit_chunks += hit_chunks;
    act.hit_bytes += hit_bytes;
    act.done += hit_bytes; /* found there: nothing left to send */
    pthread_mutex_unlock(&lock);
}

void gw_progress_end_(void)
{
    pthread_mutex_lock(&lock);
    if (act.running)
        act.running--;
    act.last_ns = now_ns();
    if (!act.running) /* the application's next output must not land on the line: it goes now, */
        clear_locked(); /* and comes back at the next tick if another transfer follows at once */
    if (act.done > act.total) /* a transfer that went another way counted its bytes twice */
        act.done = act.total;
    pthread_mutex_unlock(&lock);
}

int gw_progress_queued(const char *text, int n)
{
    if (!gw_progress_enabled)
        return 0;
    char line[256];
    snprintf(line, sizeof line, "%.*s", n, text);
    for (char *c = line; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    pthread_mutex_lock(&lock);
    show_locked(line);
    pthread_mutex_unlock(&lock);
    return 1;
}

void gw_progress_queue_done(void)
{
    if (!gw_progress_enabled)
        return;
    pthread_mutex_lock(&lock);
    clear_locked();
    pthread_mutex_unlock(&lock);
}

void gw_progress_make_way(void)
{
    if (!gw_progress_enabled)
        return;
    pthread_mutex_lock(&lock);
    clear_locked(); /* redrawn at the next tick */
    pthread_mutex_unlock(&lock);
}

/* A forked child has no ticker and sends nothing of the parent's. */
static void after_fork_child(void)
{
    pthread_mutex_init(&lock, NULL);
    ticker_running = 0;
    line_shown = 0;
    memset(&act, 0, sizeof act);
}

__attribute__((constructor)) static void progress_init(void) { pthread_atfork(NULL, NULL, after_fork_child); }

/* The line does not outlive the process. */
__attribute__((destructor)) static void progress_fini(void)
{
    if (gw_progress_enabled && pthread_mutex_trylock(&lock) == 0) {
        clear_locked();
        pthread_mutex_unlock(&lock);
    }
}
