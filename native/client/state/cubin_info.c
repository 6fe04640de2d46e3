/* A bounds-checked reader of NVIDIA cubins (CUDA ELF): the entry kernels and their
 * parameter layouts, so the client can marshal kernelParams without a round trip.
 *
 * Format notes. Each was checked on cubins from nvcc 13.0, NVRTC 13.5, 12.9 and 11.8
 * (sm_75..sm_121), and, for sm_90, against what an H100's driver (580, CUDA 13.0) reports
 * for the same cubins (cuModuleEnumerateFunctions, cuFuncGetParamInfo, cuFuncGetAttribute):
 *  - ELF64 LE, e_machine 190. EI_ABIVERSION 8 (CUDA 13 for every SM; 12.9 from sm_100) keeps
 *    the SM in e_flags bits 8..15 (sm_90: 0x06005a04); ABI 7 (CUDA <= 12, sm < 100) keeps it
 *    in the low byte (sm_90: 0x005a055a). 'a' targets: ABI 7 sets 0x800 (sm_90a 0x005a0d5a),
 *    12.9's ABI 8 sets 0x8 (sm_100a 0x0600640a), CUDA 13 sets neither (sm_90a and sm_90
 *    cubins have equal e_flags). `sm` is the plain number. e_version varies (0x81 up to
 *    CUDA 12, 1 in 13), so it is not checked; unknown ABI versions are refused.
 *  - Entries: symbols STT_FUNC with st_other bit 0x10 (STO_CUDA_ENTRY), defined in a section
 *    named .text.<name>; exactly the set the driver enumerates, local (non-.visible) .entry
 *    included. Names alone are not enough: with -rdc, __device__ functions get .text.<name>
 *    and .nv.info.<name> sections too, but st_other 0. Inlined device functions appear as
 *    local "$kernel$fn" symbols with st_other 0.
 *  - .nv.info.<name>: records {u8 format, u8 attribute, ...}; formats 1..3 are 4-byte records,
 *    format 4 (SVAL) has a u16 size and the payload. Attributes used here:
 *      0x17 KPARAM_INFO (SVAL, 12): u32 index, u16 ordinal, u16 offset, u32 flags, size in bits 18..31
 *      0x45 KPARAM_INFO_V2 (SVAL, 12): u32 index, u16 ordinal, u16 offset, u16 size, u16 flags;
 *           what ptxas writes instead once a kernel's parameters pass ~4 KiB (sizes up to 32 KiB)
 *      0x19 CBANK_PARAM_SIZE (HVAL): u16 in the record's last 2 bytes
 *      0x05 MAX_THREADS (SVAL, 12): u32 x, y, z from __launch_bounds__ (x,1,1) or .maxntid
 *           (.reqntid is a different attribute, 0x10, and the driver ignores it for
 *           CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK too)
 *    and in the global .nv.info: 0x2f REGCOUNT (SVAL, 8): u32 symbol index, u32 registers.
 *    For sm_90+ CUDA 13 leaves the old register field (bits 24..31 of .text.<name>'s sh_info)
 *    0, so REGCOUNT comes first and sh_info is the fallback; where both are set they agree.
 *  - .nv.shared.<name>: the static shared memory, less the 1 KiB reserved window that
 *    linked sm_9x cubins put in front of every kernel's variables (see gw_cubin_parse;
 *    unknown for sm_100 and later).
 * Any inconsistency makes the whole parse fail: a wrong layout is worse than none. */
#include <stdlib.h>
#include <string.h>

#include "cubin_info.h"

#define EM_CUDA 190
#define ET_REL 1
#define ET_EXEC 2
#define SHT_SYMTAB 2
#define SHT_STRTAB 3
#define SHT_NOBITS 8
#define STT_FUNC 2
#define STO_CUDA_ENTRY 0x10
#define SHN_LORESERVE 0xff00

#define EIFMT_SVAL 4
#define EIATTR_MAX_THREADS 0x05
#define EIATTR_KPARAM_INFO 0x17
#define EIATTR_CBANK_PARAM_SIZE 0x19
#define EIATTR_REGCOUNT 0x2f
#define EIATTR_KPARAM_INFO_V2 0x45

/* one cubin is far below 4 GiB (fatbins of many are not, but those are not ELF): a larger
 * computed extent means garbage headers */
#define MAX_EXTENT ((uint64_t)1 << 32)

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* [off, off+len) lies within n bytes, without overflow */
static int fits(uint64_t n, uint64_t off, uint64_t len) { return off <= n && len <= n - off; }

typedef struct {
    const char *name;
    uint32_t type, link, info;
    uint64_t off, size;
} sec_t;

typedef struct {
    const char *name;
    uint32_t idx;
} sec_ref;

typedef struct {
    const uint8_t *p;
    uint16_t shnum;
    sec_t *sec;
    sec_ref *by_name; /* sections sorted by name, for lookups of ".prefix.<kernel>" */
} elf_t;

/* The extent of an ELF whose size the caller does not know: the furthest of the header
 * tables, section contents and segment contents. The headers themselves must be readable. */
static uint64_t elf_extent(const uint8_t *p)
{
    uint64_t phoff = rd64(p + 0x20), shoff = rd64(p + 0x28);
    uint16_t phentsize = rd16(p + 0x36), phnum = rd16(p + 0x38);
    uint16_t shentsize = rd16(p + 0x3A), shnum = rd16(p + 0x3C);
    uint64_t end = 64;
    if (shentsize != 64 || (phnum && phentsize != 56) || shoff > MAX_EXTENT || phoff > MAX_EXTENT)
        return 0;
    if (phnum && phoff + (uint64_t)phentsize * phnum > end)
        end = phoff + (uint64_t)phentsize * phnum;
    if (shoff + (uint64_t)shentsize * shnum > end)
        end = shoff + (uint64_t)shentsize * shnum;
    for (unsigned i = 0; i < shnum; i++) {
        const uint8_t *sh = p + shoff + (uint64_t)i * 64;
        uint64_t off = rd64(sh + 0x18), size = rd64(sh + 0x20);
        if (rd32(sh + 4) == SHT_NOBITS)
            continue;
        if (off > MAX_EXTENT || size > MAX_EXTENT)
            return 0;
        if (off + size > end)
            end = off + size;
    }
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *ph = p + phoff + (uint64_t)i * 56;
        uint64_t off = rd64(ph + 0x08), filesz = rd64(ph + 0x20);
        if (off > MAX_EXTENT || filesz > MAX_EXTENT)
            return 0;
        if (off + filesz > end)
            end = off + filesz;
    }
    return end > MAX_EXTENT ? 0 : end;
}

/* A NUL-terminated string at `off` inside string table section s, or NULL. */
static const char *str_at(const elf_t *e, const sec_t *s, uint64_t off)
{
    if (s->type != SHT_STRTAB || off >= s->size)
        return NULL;
    const char *base = (const char *)e->p + s->off;
    return memchr(base + off, 0, s->size - off) ? base + off : NULL;
}

/* name order, then index: a total order, so equal names end up next to each other */
static int cmp_ref(const void *a, const void *b)
{
    const sec_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

/* strcmp(name, prefix + suffix) without building the string */
static int cmp_joined(const char *name, const char *prefix, const char *suffix)
{
    size_t lp = strlen(prefix);
    int c = strncmp(name, prefix, lp);
    return c ? c : strcmp(name + lp, suffix); /* c == 0: name has all of prefix */
}

/* The index of the one section named prefix+suffix: 0 if none, -1 if several. */
static long find_sec(const elf_t *e, const char *prefix, const char *suffix)
{
    size_t lo = 0, hi = e->shnum;
    while (lo < hi) { /* first index whose name is >= the key */
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_joined(e->by_name[mid].name, prefix, suffix) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo >= e->shnum || cmp_joined(e->by_name[lo].name, prefix, suffix) != 0)
        return 0;
    if (lo + 1 < e->shnum && cmp_joined(e->by_name[lo + 1].name, prefix, suffix) == 0)
        return -1;
    return (long)e->by_name[lo].idx;
}

/* Walks the attribute records of an .nv.info section, calling fn for each; -1 on a malformed
 * record or when fn refuses. Zero bytes between records are skipped as padding. */
typedef int (*attr_fn)(void *ctx, uint8_t fmt, uint8_t attr, const uint8_t *rec, const uint8_t *payload,
                       uint32_t plen);

static int walk_attrs(const elf_t *e, const sec_t *s, attr_fn fn, void *ctx)
{
    const uint8_t *b = e->p + s->off;
    uint64_t n = s->size, i = 0;
    while (i < n) {
        if (b[i] == 0) {
            i++;
            continue;
        }
        if (!fits(n, i, 4))
            return -1;
        uint8_t fmt = b[i], attr = b[i + 1];
        if (fmt == EIFMT_SVAL) {
            uint32_t plen = rd16(b + i + 2);
            if (!fits(n, i + 4, plen))
                return -1;
            if (fn(ctx, fmt, attr, b + i, b + i + 4, plen) < 0)
                return -1;
            i += 4 + (uint64_t)plen;
        } else if (fmt >= 1 && fmt <= 3) { /* NVAL, BVAL, HVAL: fixed 4-byte records */
            if (fn(ctx, fmt, attr, b + i, NULL, 0) < 0)
                return -1;
            i += 4;
        } else {
            return -1;
        }
    }
    return 0;
}

/* ---- the global .nv.info: registers per function symbol ---- */

typedef struct {
    uint32_t nsyms;
    uint16_t *regs; /* per symbol index; 0xffff: not recorded */
} regs_ctx;

static int regs_attr(void *ctx, uint8_t fmt, uint8_t attr, const uint8_t *rec, const uint8_t *pl, uint32_t plen)
{
    regs_ctx *r = ctx;
    (void)rec;
    if (attr != EIATTR_REGCOUNT)
        return 0;
    if (fmt != EIFMT_SVAL || plen != 8)
        return -1;
    uint32_t sym = rd32(pl), val = rd32(pl + 4);
    if (sym >= r->nsyms || val > 255)
        return -1;
    if (r->regs[sym] != 0xffff && r->regs[sym] != val)
        return -1;
    r->regs[sym] = (uint16_t)val;
    return 0;
}

/* ---- a kernel's .nv.info.<name> ---- */

typedef struct {
    uint32_t n, cap;
    uint32_t (*p)[3]; /* ordinal, offset, size */
    int have_cbank, have_maxt;
    uint32_t cbank;
    uint64_t maxt;
} kinfo_ctx;

static int kinfo_attr(void *ctx, uint8_t fmt, uint8_t attr, const uint8_t *rec, const uint8_t *pl, uint32_t plen)
{
    kinfo_ctx *k = ctx;
    switch (attr) {
    case EIATTR_KPARAM_INFO:
    case EIATTR_KPARAM_INFO_V2:
        if (fmt != EIFMT_SVAL || plen != 12)
            return -1;
        if (k->n == k->cap) {
            uint32_t cap = k->cap ? k->cap * 2 : 16;
            void *np = realloc(k->p, (size_t)cap * sizeof *k->p);
            if (!np)
                return -1;
            k->p = np;
            k->cap = cap;
        }
        k->p[k->n][0] = rd16(pl + 4);
        k->p[k->n][1] = rd16(pl + 6);
        /* V1 packs the size into bits 18..31 of its flags word (so < 16 KiB); V2, used
         * once a kernel's parameters pass that, keeps it as a plain u16 */
        k->p[k->n][2] = attr == EIATTR_KPARAM_INFO ? rd32(pl + 8) >> 18 : rd16(pl + 8);
        k->n++;
        return 0;
    case EIATTR_CBANK_PARAM_SIZE: {
        if (fmt != 3)
            return -1;
        uint32_t v = rd16(rec + 2);
        if (k->have_cbank && k->cbank != v)
            return -1;
        k->have_cbank = 1;
        k->cbank = v;
        return 0;
    }
    case EIATTR_MAX_THREADS: {
        if (fmt != EIFMT_SVAL || plen != 12)
            return -1;
        uint64_t t = (uint64_t)rd32(pl) * rd32(pl + 4);
        if (t > UINT32_MAX || (t *= rd32(pl + 8)) > UINT32_MAX)
            return -1;
        if (k->have_maxt && k->maxt != t)
            return -1;
        k->have_maxt = 1;
        k->maxt = t;
        return 0;
    }
    default:
        return 0;
    }
}

/* Fills kern's layout from .nv.info.<name>; -1 if it is missing or inconsistent. */
static int read_kernel(const elf_t *e, const char *name, gw_cubin_kernel *kern)
{
    long si = find_sec(e, ".nv.info.", name);
    if (si <= 0)
        return -1;
    kinfo_ctx k = {0};
    int rc = -1;
    if (walk_attrs(e, &e->sec[si], kinfo_attr, &k) < 0)
        goto out;
    /* ordinals 0..n-1, each exactly once; laid out in order without overlap */
    uint32_t *pairs = NULL;
    if (k.n) {
        pairs = calloc(k.n, 2 * sizeof *pairs);
        unsigned char *seen = calloc(k.n, 1);
        if (!pairs || !seen) {
            free(pairs);
            free(seen);
            goto out;
        }
        int bad = 0;
        for (uint32_t i = 0; i < k.n && !bad; i++) {
            uint32_t ord = k.p[i][0];
            if (ord >= k.n || seen[ord])
                bad = 1;
            else {
                seen[ord] = 1;
                pairs[2 * ord] = k.p[i][1];
                pairs[2 * ord + 1] = k.p[i][2];
            }
        }
        free(seen);
        uint64_t end = 0;
        for (uint32_t i = 0; i < k.n && !bad; i++) {
            if (pairs[2 * i] < end)
                bad = 1;
            end = (uint64_t)pairs[2 * i] + pairs[2 * i + 1];
        }
        /* ptxas sets CBANK_PARAM_SIZE to exactly the last parameter's end (no tail padding,
         * even after a char); anything else means records are missing or wrong */
        if (bad || (k.have_cbank && end != k.cbank)) {
            free(pairs);
            goto out;
        }
        kern->param_bytes = (uint32_t)end;
    }
    if (k.have_cbank) {
        if (!k.n && k.cbank) /* a parameter space without a single parameter record */
            goto out;
        kern->param_bytes = k.cbank;
    }
    kern->nparams = k.n;
    kern->pairs = pairs;
    kern->max_threads = k.have_maxt ? (uint32_t)k.maxt : 0;
    rc = 0;
out:
    free(k.p);
    return rc;
}

static void zero(gw_cubin_info *out) { memset(out, 0, sizeof *out); }

__attribute__((visibility("hidden"))) void gw_cubin_free(gw_cubin_info *info)
{
    if (!info)
        return;
    for (uint32_t i = 0; i < info->n && info->k; i++) {
        free(info->k[i].name);
        free(info->k[i].pairs);
    }
    free(info->k);
    zero(info);
}

__attribute__((visibility("hidden"))) int gw_cubin_parse(const void *image, size_t size, gw_cubin_info *out)
{
    if (!out)
        return -1;
    zero(out);
    const uint8_t *p = image;
    if (!p)
        return -1;
    uint64_t n = size;
    if (n == 0) {
        /* The caller vouches for a whole ELF; still, byte by byte, so that a short text
         * (PTX, a NUL-terminated string) is read no further than its first byte. */
        static const uint8_t ident[7] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
        for (int i = 0; i < 7; i++)
            if (p[i] != ident[i])
                return -1;
        if (rd16(p + 0x12) != EM_CUDA)
            return -1;
        n = elf_extent(p);
        if (n == 0)
            return -1;
    }
    if (n < 64 || memcmp(p, "\x7f" "ELF\x02\x01\x01", 7) != 0) /* ELFCLASS64, ELFDATA2LSB, EV_CURRENT */
        return -1;
    uint8_t abiver = p[8];
    uint32_t flags = rd32(p + 0x30);
    /* e_version is not checked: ptxas <= 12 writes 0x81 there, 13 writes 1 */
    if (rd16(p + 0x12) != EM_CUDA || rd16(p + 0x34) != 64 || abiver > 8)
        return -1;
    uint16_t etype = rd16(p + 0x10);
    uint32_t sm = abiver >= 8 ? (flags >> 8) & 0xff : flags & 0xff;
    if (etype != ET_REL && etype != ET_EXEC) /* -rdc output is ET_REL; the driver loads both */
        return -1;
    if (sm == 0)
        return -1;

    uint64_t shoff = rd64(p + 0x28), phoff = rd64(p + 0x20);
    uint16_t shentsize = rd16(p + 0x3A), shnum = rd16(p + 0x3C), shstrndx = rd16(p + 0x3E);
    uint16_t phentsize = rd16(p + 0x36), phnum = rd16(p + 0x38);
    /* no extended numbering (shnum 0 / SHN_XINDEX): cubins never need it */
    if (shentsize != 64 || shnum == 0 || shstrndx == 0 || shstrndx >= shnum || !fits(n, shoff, (uint64_t)shnum * 64))
        return -1;
    if (phnum && (phentsize != 56 || !fits(n, phoff, (uint64_t)phnum * 56)))
        return -1;
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *ph = p + phoff + (uint64_t)i * 56;
        if (!fits(n, rd64(ph + 0x08), rd64(ph + 0x20)))
            return -1;
    }

    elf_t e = {.p = p, .shnum = shnum};
    gw_cubin_info info = {.sm = sm};
    regs_ctx regs = {0};
    unsigned char *text_used = NULL;
    int rc = -1;
    e.sec = calloc(shnum, sizeof *e.sec);
    e.by_name = calloc(shnum, sizeof *e.by_name);
    if (!e.sec || !e.by_name)
        goto out;
    for (unsigned i = 0; i < shnum; i++) {
        const uint8_t *sh = p + shoff + (uint64_t)i * 64;
        sec_t *s = &e.sec[i];
        s->type = rd32(sh + 4);
        s->off = rd64(sh + 0x18);
        s->size = rd64(sh + 0x20);
        s->link = rd32(sh + 0x28);
        s->info = rd32(sh + 0x2C);
        /* every section with contents must be inside the image: a truncated cubin is refused */
        if (i && s->type != SHT_NOBITS && !fits(n, s->off, s->size))
            goto out;
    }
    if (e.sec[shstrndx].type != SHT_STRTAB)
        goto out;
    for (unsigned i = 0; i < shnum; i++) {
        e.sec[i].name = i ? str_at(&e, &e.sec[shstrndx], rd32(p + shoff + (uint64_t)i * 64)) : "";
        if (!e.sec[i].name)
            goto out;
        e.by_name[i].name = e.sec[i].name;
        e.by_name[i].idx = i;
    }
    qsort(e.by_name, shnum, sizeof *e.by_name, cmp_ref);

    /* the one symbol table and its strings */
    long symi = 0;
    for (unsigned i = 1; i < shnum; i++)
        if (e.sec[i].type == SHT_SYMTAB) {
            if (symi)
                goto out;
            symi = i;
        }
    if (!symi)
        goto out;
    const sec_t *symtab = &e.sec[symi];
    if (symtab->size % 24 || symtab->link == 0 || symtab->link >= shnum || e.sec[symtab->link].type != SHT_STRTAB)
        goto out;
    const sec_t *strtab = &e.sec[symtab->link];
    uint32_t nsyms = (uint32_t)(symtab->size / 24);
    if (symtab->size / 24 > UINT32_MAX)
        goto out;

    /* registers from the global .nv.info, if there is one */
    long gi = find_sec(&e, ".nv.info", "");
    if (gi < 0)
        goto out;
    regs.nsyms = nsyms;
    regs.regs = malloc((size_t)nsyms * sizeof *regs.regs + 1);
    if (!regs.regs)
        goto out;
    memset(regs.regs, 0xff, (size_t)nsyms * sizeof *regs.regs);
    if (gi > 0 && walk_attrs(&e, &e.sec[gi], regs_attr, &regs) < 0)
        goto out;

    /* Static shared memory as the driver reports it (CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES): in a
     * linked (ET_EXEC) cubin for sm_9x, every .nv.shared.<name> starts with a 1 KiB reserved
     * window. Checked against the H100's driver (scripts/cubin-check.py) on NVRTC 13 cubins,
     * which have no .nv.reservedSmem.cap symbol, and on cuBLAS's CUDA 12 ones, which have it
     * with value 0 yet the same 1 KiB window: so the symbol is not the window's size. For
     * sm_100 and later the window is unchecked: the size is left unknown (UINT32_MAX). */
    uint64_t window = 0;
    int shared_known = 1;
    if (etype == ET_EXEC && sm >= 90) {
        if (sm >= 100)
            shared_known = 0;
        else
            window = 1024;
    }

    /* entries: STT_FUNC with STO_CUDA_ENTRY, defined in their own .text.<name> */
    uint32_t nent = 0;
    for (uint32_t i = 1; i < nsyms; i++) {
        const uint8_t *st = p + symtab->off + (uint64_t)i * 24;
        if ((st[4] & 0xf) == STT_FUNC && (st[5] & STO_CUDA_ENTRY))
            nent++;
    }
    text_used = calloc(shnum, 1);
    if (!text_used)
        goto out;
    if (nent) {
        info.k = calloc(nent, sizeof *info.k);
        if (!info.k)
            goto out;
    }
    for (uint32_t i = 1; i < nsyms; i++) {
        const uint8_t *st = p + symtab->off + (uint64_t)i * 24;
        if (!((st[4] & 0xf) == STT_FUNC && (st[5] & STO_CUDA_ENTRY)))
            continue;
        const char *name = str_at(&e, strtab, rd32(st));
        uint16_t shndx = rd16(st + 6);
        if (!name || !*name || shndx == 0 || shndx >= shnum || shndx >= SHN_LORESERVE)
            goto out;
        if (cmp_joined(e.sec[shndx].name, ".text.", name) != 0 || find_sec(&e, ".text.", name) != shndx)
            goto out;
        if (text_used[shndx]++) /* two entry symbols of one name (so one .text): ambiguous */
            goto out;
        gw_cubin_kernel *kern = &info.k[info.n];
        kern->name = dup_str(name);
        if (!kern->name)
            goto out;
        info.n++;
        if (read_kernel(&e, name, kern) < 0)
            goto out;
        long shi = find_sec(&e, ".nv.shared.", name);
        if (shi < 0 || (shi > 0 && e.sec[shi].size > UINT32_MAX))
            goto out;
        if (shared_known && shi > 0 && e.sec[shi].size < window)
            goto out;
        kern->static_shared = !shared_known ? UINT32_MAX : shi > 0 ? (uint32_t)(e.sec[shi].size - window) : 0;
        uint32_t old = e.sec[shndx].info >> 24; /* pre-CUDA-13 home of the register count */
        if (regs.regs[i] != 0xffff) {
            if (old && old != regs.regs[i])
                goto out;
            kern->num_regs = regs.regs[i];
        } else {
            kern->num_regs = old;
        }
    }
    *out = info;
    info.k = NULL;
    info.n = 0;
    rc = 0;
out:
    gw_cubin_free(&info);
    free(regs.regs);
    free(text_used);
    free(e.sec);
    free(e.by_name);
    return rc;
}
