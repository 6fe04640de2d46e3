/* How long is a module image? cuModuleLoadData takes a bare pointer, so the
 * client must find the end itself before the bytes can travel. */
#include <string.h>

#include "state.h"

#define FATBIN_MAGIC 0xBA55ED50u
#define FATBIN_WRAPPER_MAGIC 0x466243B1u

static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* ELF64: the furthest of the section contents and the header tables. */
static size_t elf_size(const uint8_t *p)
{
    if (p[4] != 2) /* ELFCLASS64 only: cubins are 64-bit */
        return 0;
    uint64_t phoff = rd64(p + 0x20), shoff = rd64(p + 0x28);
    uint16_t phentsize = rd16(p + 0x36), phnum = rd16(p + 0x38);
    uint16_t shentsize = rd16(p + 0x3A), shnum = rd16(p + 0x3C);
    uint64_t end = 64;
    if (phoff + (uint64_t)phentsize * phnum > end)
        end = phoff + (uint64_t)phentsize * phnum;
    if (shoff + (uint64_t)shentsize * shnum > end)
        end = shoff + (uint64_t)shentsize * shnum;
    for (unsigned i = 0; i < shnum && shentsize >= 64; i++) {
        const uint8_t *sh = p + shoff + (uint64_t)i * shentsize;
        uint32_t type = rd32(sh + 4);
        uint64_t off = rd64(sh + 0x18), size = rd64(sh + 0x20);
        if (type != 8 /* SHT_NOBITS */ && off + size > end)
            end = off + size;
    }
    return (size_t)end;
}

const void *gw_image_unwrap(const void *image)
{
    const uint8_t *p = image;
    if (p && rd32(p) == FATBIN_WRAPPER_MAGIC) /* __fatBinC_Wrapper_t: {magic, version, data, filename} */
        return *(const void *const *)(p + 8);
    return image;
}

size_t gw_image_size(const void *image)
{
    const uint8_t *p = image;
    if (!p)
        return 0;
    uint32_t magic = rd32(p);
    if (magic == FATBIN_MAGIC)
        return (size_t)rd16(p + 6) + (size_t)rd64(p + 8);
    if (magic == 0x464C457Fu) /* "\x7fELF" */
        return elf_size(p);
    /* PTX or other text: NUL-terminated */
    return strlen((const char *)p) + 1;
}

/* A fatbin's entries (after its 16-byte header, as many bytes as it says):
 * u16 kind (1 PTX, 2 ELF), u16, u32 entry header size, u64 payload size,
 * u32 compressed size, u32, u32 version, u32 arch (sm, e.g. 90), u32 name
 * offset, u32 name size, u64 flags, u64, u64 uncompressed size. Compressed
 * payloads (flags 0x2000 or 0x8000, or an uncompressed size given) are
 * skipped: only plain cubins are read. */
#define ENTRY_MIN 64
#define ENTRY_COMPRESSED 0xA000u

int gw_fatbin_cubins(const void *image, size_t size, gw_fatbin_cubin *out, int max)
{
    const uint8_t *p = image;
    if (!p || size < 16 || rd32(p) != FATBIN_MAGIC)
        return 0;
    uint64_t hs = rd16(p + 6), body = rd64(p + 8);
    if (hs < 16 || hs > size || body > size - hs)
        return 0;
    int n = 0;
    for (uint64_t at = hs, end = hs + body; at + ENTRY_MIN <= end && n < max;) {
        const uint8_t *e = p + at;
        uint32_t ehs = rd32(e + 4);
        uint64_t len = rd64(e + 8);
        if (ehs < ENTRY_MIN || ehs > end - at || len > end - at - ehs)
            break; /* malformed: what was found so far stands */
        const uint8_t *payload = e + ehs;
        int plain = !(rd64(e + 40) & ENTRY_COMPRESSED) && rd64(e + 56) == 0 && rd32(e + 16) == 0;
        if (rd16(e) == 2 && plain && len >= 64 && !memcmp(payload, "\x7f" "ELF", 4)) {
            out[n].elf = payload;
            out[n].size = (size_t)len;
            out[n].arch = rd32(e + 28);
            n++;
        }
        at += ehs + len;
    }
    return n;
}
