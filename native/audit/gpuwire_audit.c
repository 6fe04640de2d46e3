/* gpuwire's LD_AUDIT module: every search for the NVIDIA driver libraries
 * (libcuda.so*, libnvidia-ml.so*), whether by bare name, soname or absolute
 * path, from DT_NEEDED or dlopen, is answered with gpuwire's own library of
 * the same SONAME from $GPUWIRE_LIBDIR. The real driver never loads. Plain C,
 * libc only: it runs inside the dynamic loader before anything else. */
#define _GNU_SOURCE
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char cuda_path[4096], nvml_path[4096];

unsigned int la_version(unsigned int version)
{
    /* Speak whatever version the loader offers, down to 1 (glibc 2.31-2.39
     * offer 1 or 2; the callbacks used here exist in both). */
    const char *dir = getenv("GPUWIRE_LIBDIR");
    if (dir && *dir) {
        snprintf(cuda_path, sizeof cuda_path, "%s/libcuda.so.1", dir);
        snprintf(nvml_path, sizeof nvml_path, "%s/libnvidia-ml.so.1", dir);
    }
    return version < LAV_CURRENT ? version : LAV_CURRENT;
}

static const char *base_name(const char *name)
{
    const char *slash = strrchr(name, '/');
    return slash ? slash + 1 : name;
}

static int is_lib(const char *base, const char *stem)
{
    size_t n = strlen(stem);
    return strncmp(base, stem, n) == 0 && (base[n] == 0 || base[n] == '.');
}

char *la_objsearch(const char *name, uintptr_t *cookie, unsigned int flag)
{
    (void)cookie;
    (void)flag;
    const char *base = base_name(name);
    const char *ours = NULL;
    if (is_lib(base, "libcuda.so"))
        ours = cuda_path;
    else if (is_lib(base, "libnvidia-ml.so"))
        ours = nvml_path;
    if (!ours)
        return (char *)name;
    if (!ours[0] || strcmp(name, ours) == 0)
        return (char *)(ours[0] ? ours : NULL);
    /* Our file missing (e.g. no NVML shim yet): refuse the search rather than
     * let the real driver load. */
    return access(ours, R_OK) == 0 ? (char *)ours : NULL;
}
