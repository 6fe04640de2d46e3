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

