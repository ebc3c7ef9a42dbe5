/*
 * crc32.c - CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), the checksum
 * zlib.crc32 computes, so both backends store and verify the same values.
 * Slicing by one byte with a table built at first use; the checksum option is
 * off by default, and this costs about a page's copy when it is on.
 */
#include <stddef.h>
#include <stdint.h>

#include "native.h"

static uint32_t crc_table[256];
/* Built once, by zswap_crc32_init() at module import (GIL held): read-only after. */

void zswap_crc32_init(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[n] = c;
	}
}

uint32_t zswap_crc32(const unsigned char *buf, size_t len)
{
	uint32_t c = 0xFFFFFFFFu;

	while (len--)
		c = crc_table[(c ^ *buf++) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}
