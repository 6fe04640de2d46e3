/* segv-report: an LD_PRELOAD library for diagnostics on the GPU machine. On a
 * fatal signal (SEGV, BUS, ILL, FPE, ABRT) it writes the faulting address and
 * the native stack to stderr, one frame a line as "segv-report: #N MODULE
 * +0xOFFSET SYMBOL", so tools/crash-diag can turn the offsets into source lines
 * with addr2line there, then lets the signal end the process as it would have.
 * Handlers installed later (Python's faulthandler, gpuwire's mapped memory)
 * chain to it. Build: cc -shared -fPIC -O1 -g -o segv-report.so tools/segv-report.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(const char *s) { ssize_t w = write(2, s, strlen(s)); (void)w; }

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    char line[512];
    snprintf(line, sizeof line, "segv-report: signal %d (code %d) at address %p, pid %d\n", sig, si->si_code,
             si->si_addr, (int)getpid());
    say(line);
    void *pcs[64];
    int n = backtrace(pcs, 64);
    for (int i = 0; i < n; i++) {
        Dl_info d;
        if (dladdr(pcs[i], &d) && d.dli_fname) {
            /* #0 is this handler, #1 the signal's return trampoline, #2 the
             * faulting instruction itself; from #3 on a return address, which
             * points past its call: one byte back names the call's line */
            uintptr_t off = (uintptr_t)pcs[i] - (uintptr_t)d.dli_fbase - (i > 2 ? 1 : 0);
            snprintf(line, sizeof line, "segv-report: #%d %s +0x%lx %s\n", i, d.dli_fname, (unsigned long)off,
                     d.dli_sname ? d.dli_sname : "?");
        } else {
            snprintf(line, sizeof line, "segv-report: #%d %p\n", i, pcs[i]);
        }
        say(line);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

__attribute__((constructor)) static void install(void)
{
    static char alt[1 << 16];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    sigaltstack(&ss, NULL);
    void *warm[1];
    backtrace(warm, 1); /* loads the unwinder now, not inside the handler */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}
