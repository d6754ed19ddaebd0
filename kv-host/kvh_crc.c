/* kvh_crc.c: CRC-32C for the arena's checksums (kvh_layout.h). Table-driven, built once. */
#include "kvh_layout.h"

#include <pthread.h>

static uint32_t g_crc32c_table[256];
static pthread_once_t g_crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
        g_crc32c_table[i] = c;
    }
}

static uint32_t crc32c_update(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) crc = g_crc32c_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return crc;
}

uint32_t kvh_crc32c(const void *data, size_t len)
{
    pthread_once(&g_crc32c_once, crc32c_table_init);
    return ~crc32c_update(~0u, data, len);
}

uint32_t kvh_journal_checksum(const struct kvh_journal *j)
{
    pthread_once(&g_crc32c_once, crc32c_table_init);
    uint32_t crc = crc32c_update(~0u, j, offsetof(struct kvh_journal, checksum));
    uint32_t n = j->n_ids <= KVH_JOURNAL_MAX_IDS ? j->n_ids : KVH_JOURNAL_MAX_IDS;
    return ~crc32c_update(crc, j->ids, n * sizeof(j->ids[0]));
}
