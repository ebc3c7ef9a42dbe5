/*
 * crc32.c - CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), the checksum
 * zlib.crc32 computes, so both backends store and verify the same values.
 *
 * "Slicing by 8": eight 256-entry tables let the loop fold eight input bytes per
 * step instead of one, about 1.5 bytes a cycle, so the checksum option costs a
 * small part of a page's compression. No library needed (zlib's headers are not
 * on every machine this builds on).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "native.h"

/* Built once, by zswap_crc32_init() at module import (GIL held): read-only after.
 * crc_table[k][n] is the CRC of byte n followed by k zero bytes. */
static uint32_t crc_table[8][256];

void zswap_crc32_init(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[0][n] = c;
	}
	for (uint32_t n = 0; n < 256; n++)
		for (int k = 1; k < 8; k++)
			crc_table[k][n] = (crc_table[k - 1][n] >> 8) ^
					  crc_table[0][crc_table[k - 1][n] & 0xFF];
}

uint32_t zswap_crc32(const unsigned char *buf, size_t len)
{
	uint32_t c = 0xFFFFFFFFu;

	while (len >= 8) {
		uint32_t lo = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 |
			      (uint32_t)buf[3] << 24;
		uint32_t hi = (uint32_t)buf[4] | (uint32_t)buf[5] << 8 | (uint32_t)buf[6] << 16 |
			      (uint32_t)buf[7] << 24;

		lo ^= c;
		c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
		    crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
		    crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
		    crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
		buf += 8;
		len -= 8;
	}
	while (len--)
		c = crc_table[0][(c ^ *buf++) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}
