/* Preloading the program's own kernels. The CUDA runtime loads a program's
 * fatbins lazily, at the first launch of one of their kernels, so natively a
 * program that times its first kernel with events (NVIDIA's samples do)
 * measures the driver's load too, about half a millisecond. Through gpuwire
 * that load is the image's upload, the server's cache lookup and the lookups'
 * round trips, several milliseconds between the start event and the kernel.
 *
 * So at cuInit a helper thread finds the fatbins the main executable
 * registers (its .nvFatBinSegment section: the runtime's wrappers, each
 * pointing at a fatbin), uploads them and loads each as a library under a
 * name the client chooses, waiting for each answer itself (a failure stays
 * here: the application never asked for that load). When the application's
 * cuLibraryLoadData names one of those fatbins, it gets the loaded library at
 * once, with its functions already known to the client; only its first use
 * in a context costs what the driver's own lazy loading costs. Libraries the
 * program links (libtorch_cuda, libggml-cuda: gigabytes of kernels, loaded
 * outside any timing) are left to load as before. GPUWIRE_PRELOAD=0: off. */
#define _GNU_SOURCE
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../diag/diag.h"
#include "../diag/env.h"
#include "state.h"

#define PRELOAD_MAX 64                     /* fatbins of one program */
#define PRELOAD_BYTES ((size_t)64 << 20)   /* all of them together */
#define WRAPPER_MAGIC 0x466243B1u

enum { PENDING, READY, FAILED, TAKEN };

typedef struct preloaded {
    const void *image; /* the fatbin, as the runtime will name it */
    size_t size;
    uint64_t id;       /* the library's client-named handle, once READY */
    int state;
} preloaded;

static preloaded pre[PRELOAD_MAX];
static int npre;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;

/* the main executable's load bias (0 unless it is position-independent) */
static int first_object(struct dl_phdr_info *info, size_t size, void *out)
{
    (void)size;
    *(ElfW(Addr) *)out = info->dlpi_addr;
    return 1; /* the first object is the program */
}

/* The address and size of the program's .nvFatBinSegment, read from its
 * file's section headers (sections are not mapped as such). 0 if none. */
static int fatbin_segment(uintptr_t *addr, size_t *size)
{
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int found = 0;
    Elf64_Ehdr eh;
    if (pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
        eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_shentsize == sizeof(Elf64_Shdr) && eh.e_shnum &&
        eh.e_shnum < 4096 && eh.e_shstrndx < eh.e_shnum) {
        Elf64_Shdr *sh = malloc((size_t)eh.e_shnum * sizeof *sh);
        size_t shbytes = (size_t)eh.e_shnum * sizeof *sh;
        if (sh && pread(fd, sh, shbytes, (off_t)eh.e_shoff) == (ssize_t)shbytes) {
            Elf64_Shdr *strs = &sh[eh.e_shstrndx];
            char *names = strs->sh_size < (1u << 20) ? malloc(strs->sh_size + 1) : NULL;
            if (names && pread(fd, names, strs->sh_size, (off_t)strs->sh_offset) == (ssize_t)strs->sh_size) {
                names[strs->sh_size] = 0;
                for (unsigned i = 0; i < eh.e_shnum && !found; i++)
                    if (sh[i].sh_name < strs->sh_size && !strcmp(names + sh[i].sh_name, ".nvFatBinSegment") &&
                        sh[i].sh_addr && sh[i].sh_size) {
                        ElfW(Addr) bias = 0;
                        dl_iterate_phdr(first_object, &bias);
                        *addr = (uintptr_t)(bias + sh[i].sh_addr);
                        *size = sh[i].sh_size;
                        found = 1;
                    }
            }
            free(names);
        }
        free(sh);
    }
    close(fd);
    return found;
}

/* Upload and load one fatbin, waiting for the answer (modules.c). */
static void *preloader(void *arg)
{
    (void)arg;
    gw_mark_background_thread();
    for (int i = 0; i < npre; i++) {
        uint64_t id = 0;
        CUresult rc = gw_library_preload(pre[i].image, pre[i].size, &id);
        pthread_mutex_lock(&lock);
        pre[i].state = rc == CUDA_SUCCESS ? READY : FAILED;
        pre[i].id = id;
        pthread_cond_broadcast(&done_cv);
        pthread_mutex_unlock(&lock);
        if (rc != CUDA_SUCCESS && gw_debug())
            gw_log("preloading the program's fatbin %d of %d: %d (loaded on first use instead)", i + 1, npre, rc);
    }
    return NULL;
}

void gw_preload_start(void)
{
    int on = 1;
    gw_env_bool("GPUWIRE_PRELOAD", "using the default, on", &on);
    uintptr_t seg;
    size_t seg_size;
    if (!on || gw_servers_n > 1 || !fatbin_segment(&seg, &seg_size)) /* several servers: libraries load on each */
        return;
    size_t total = 0;
    pthread_mutex_lock(&lock);
    /* each wrapper: u32 magic, u32 version, pointer to the fatbin, pointer (file name or prelinked list) */
    for (size_t off = 0; off + 24 <= seg_size && npre < PRELOAD_MAX; off += 24) {
        const uint8_t *w = (const uint8_t *)seg + off;
        uint32_t magic;
        memcpy(&magic, w, 4);
        if (magic != WRAPPER_MAGIC)
            continue;
        const void *image = gw_image_unwrap(w);
        size_t size = image ? gw_image_size(image) : 0;
        if (!size || total + size > PRELOAD_BYTES)
            continue;
        total += size;
        pre[npre++] = (preloaded){.image = image, .size = size, .state = PENDING};
    }
    int n = npre;
    pthread_mutex_unlock(&lock);
    if (n && gw_start_helper_thread(preloader) != 0) {
        pthread_mutex_lock(&lock);
        npre = 0;
        pthread_mutex_unlock(&lock);
    }
}

/* The application's cuLibraryLoadData of a preloaded fatbin (no JIT options):
 * 1 and *id its library (waiting for the preload if it is still on its way),
 * or 0: load it as usual. Each preload serves one load. */
int gw_preload_take(const void *image, uint64_t *id)
{
    int taken = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < npre; i++) {
        if (pre[i].image != image)
            continue;
        while (pre[i].state == PENDING)
            pthread_cond_wait(&done_cv, &lock);
        if (pre[i].state == READY) {
            pre[i].state = TAKEN;
            *id = pre[i].id;
            taken = 1;
        }
        break;
    }
    pthread_mutex_unlock(&lock);
    return taken;
}

/* A forked child has no preloader thread and a session of its own: it loads as usual. */
static void after_fork_child(void)
{
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&done_cv, NULL);
    npre = 0;
}

__attribute__((constructor)) static void preload_init(void) { pthread_atfork(NULL, NULL, after_fork_child); }
