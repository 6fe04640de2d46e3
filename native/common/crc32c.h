/* CRC-32C (Castagnoli) of a buffer's four quarters, computed together: the
 * read-time check of the worker's cache entries (native/worker/handlers/cas_store.c). Four
 * independent chains keep the CPU's crc32 unit busy (15 GB/s on one core of
 * the dev box; SHA-256 ran at 0.8 GB/s a thread on the H100 host), and the four values
 * together make a 128-bit check. Uses SSE4.2 where cpuid has it, a table
 * otherwise; both give the same values. */
#ifndef GW_CRC32C_H
#define GW_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Quarter k is [k*q, (k+1)*q) with q = n/4 rounded down to 8 bytes; the last
 * quarter runs to n. Each CRC starts at ~0 and ends inverted (standard CRC-32C:
 * gw_crc32c4 of "123456789" gives 0xe3069283 in its last lane). */
void gw_crc32c4(const void *data, size_t n, uint32_t out[4]);

#endif
