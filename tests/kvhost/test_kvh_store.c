/* test_kvh_store.c: the kv-host's allocator, tables and checksums on an in-memory region
 * (kv-host/kvh_store.h, kvh_seqmap.h): allocation order, all-or-nothing, unknown ids,
 * recovery of the same tables, and refusal of corrupted or truncated arenas. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kvh_seqmap.h"
#include "kvh_store.h"
#include "test_util.h"

#define REGION_BYTES (4u << 20)

static const struct nosa_kv_geometry g_geom = {.n_layers = 2, .n_kv_heads = 2, .block_size = 4,
                                               .head_dim = 8, .dtype = NOSA_KV_DTYPE_BF16};

static uint8_t *region_new(void)
{
    void *p = mmap(NULL, REGION_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED, "mmap");
    return p;
}

static void format(uint8_t *base, struct kvh_store *st)
{
    struct kvh_store_plan plan;
    char err[256];
    REQUIRE(kvh_store_plan(REGION_BYTES, &g_geom, 4096, &plan, err, sizeof(err)) == 0, "%s", err);
    REQUIRE(kvh_store_format(base, &plan, &g_geom, st, err, sizeof(err)) == 0, "%s", err);
}

static void test_plan(void)
{
    struct kvh_store_plan plan;
    char err[256];
    CHECK(kvh_store_plan(REGION_BYTES, &g_geom, 4096, &plan, err, sizeof(err)) == 0, "%s", err);
    uint64_t group = nosa_kv_group_bytes(&g_geom);
    CHECK(group == 1024, "group bytes %lu", (unsigned long)group);
    CHECK(plan.blocks_offset % 4096 == 0, "blocks offset %lu aligned",
          (unsigned long)plan.blocks_offset);
    CHECK(plan.blocks_offset + plan.n_groups * group <= REGION_BYTES, "fits");
    /* One more group would not fit. */
    uint64_t owners_end = plan.owners_offset + (plan.n_groups + 1) * sizeof(struct kvh_owner);
    CHECK((owners_end + 4095) / 4096 * 4096 + (plan.n_groups + 1) * group > REGION_BYTES,
          "n_groups %lu is the most that fits", (unsigned long)plan.n_groups);
    CHECK(kvh_store_plan(40000, &g_geom, 4096, &plan, err, sizeof(err)) == -ENOSPC,
          "a tiny arena holds nothing");
    CHECK(strstr(err, "holds no group") != NULL, "err: %s", err);
}

static void check_table(const struct kvh_store *st, uint64_t seq, const uint32_t *want,
                        uint32_t n)
{
    const struct kvh_seq *s = kvh_store_table(st, seq);
    CHECK(s != NULL, "seq %lu exists", (unsigned long)seq);
    if (!s) return;
    CHECK(s->n_groups == n, "seq %lu has %u groups, want %u", (unsigned long)seq, s->n_groups, n);
    for (uint32_t i = 0; i < n && i < s->n_groups; i++)
        CHECK(s->groups[i] == want[i], "seq %lu block %u: group %u, want %u",
              (unsigned long)seq, i, s->groups[i], want[i]);
}

static void test_alloc_free_recover(void)
{
    uint8_t *base = region_new();
    struct kvh_store st;
    format(base, &st);
    char err[256];
    uint64_t total = st.n_groups;
    CHECK(st.n_free == total, "all free");
    CHECK(kvh_store_generation(&st) == 1, "first generation is 1");

    struct kvh_seq_alloc reqs[2] = {{7, 3}, {9, 2}};
    uint32_t first[2], groups[8];
    CHECK(kvh_store_alloc(&st, reqs, 2, first, groups, err, sizeof(err)) == 0, "%s", err);
    CHECK(first[0] == 0 && first[1] == 0, "first indexes %u %u", first[0], first[1]);
    uint32_t want7[4] = {0, 1, 2, 5}, want9[2] = {3, 4};
    for (int i = 0; i < 5; i++) CHECK(groups[i] == (uint32_t)i, "group %d = %u", i, groups[i]);
    struct kvh_seq_alloc more = {7, 1};
    CHECK(kvh_store_alloc(&st, &more, 1, first, groups, err, sizeof(err)) == 0, "%s", err);
    CHECK(first[0] == 3 && groups[0] == 5, "append: first %u group %u", first[0], groups[0]);
    check_table(&st, 7, want7, 4);
    check_table(&st, 9, want9, 2);
    CHECK(st.n_free == total - 6, "free %lu", (unsigned long)st.n_free);

    /* All or nothing. */
    struct kvh_seq_alloc huge[2] = {{11, 1}, {7, (uint32_t)total}};
    CHECK(kvh_store_alloc(&st, huge, 2, first, groups, err, sizeof(err)) == -ENOSPC,
          "no space");
    CHECK(strstr(err, "out of space") != NULL, "err: %s", err);
    CHECK(kvh_store_table(&st, 11) == NULL, "seq 11 not created");
    check_table(&st, 7, want7, 4);
    CHECK(st.n_free == total - 6, "nothing allocated");
    struct kvh_seq_alloc dup[2] = {{12, 1}, {12, 1}};
    CHECK(kvh_store_alloc(&st, dup, 2, first, groups, err, sizeof(err)) == -EINVAL, "dup");
    CHECK(strstr(err, "listed twice") != NULL, "err: %s", err);
    struct kvh_seq_alloc none = {13, 0};
    CHECK(kvh_store_alloc(&st, &none, 1, first, groups, err, sizeof(err)) == 0, "%s", err);
    CHECK(kvh_store_table(&st, 13) == NULL && st.seqs.count == 2, "0 groups creates nothing");

    uint64_t freed = 99, ids[2] = {9, 42};
    CHECK(kvh_store_free(&st, ids, 2, &freed, err, sizeof(err)) == -ENOENT, "unknown id");
    CHECK(strstr(err, "42") != NULL, "err names the id: %s", err);
    check_table(&st, 9, want9, 2);

    /* Recovery serves the same tables. */
    kvh_store_close(&st);
    CHECK(kvh_store_recover(base, REGION_BYTES, &st, err, sizeof(err)) == 0, "%s", err);
    CHECK(kvh_store_generation(&st) == 2, "generation bumped");
    check_table(&st, 7, want7, 4);
    check_table(&st, 9, want9, 2);
    CHECK(st.n_free == total - 6 && st.seqs.count == 2, "counts after recovery");

    CHECK(kvh_store_free(&st, ids, 1, &freed, err, sizeof(err)) == 0, "%s", err);
    CHECK(freed == 2 && st.n_free == total - 4, "freed %lu", (unsigned long)freed);
    CHECK(kvh_store_table(&st, 9) == NULL, "seq 9 gone");
    struct kvh_seq_alloc again = {20, 2};
    CHECK(kvh_store_alloc(&st, &again, 1, first, groups, err, sizeof(err)) == 0, "%s", err);
    CHECK(groups[0] == 4 && groups[1] == 3, "freed groups reused first: %u %u", groups[0],
          groups[1]);
    kvh_store_close(&st);
    munmap(base, REGION_BYTES);
}

static void expect_refused(uint8_t *base, uint64_t bytes, const char *what, const char *needle)
{
    struct kvh_store st;
    char err[256] = "";
    int rc = kvh_store_recover(base, bytes, &st, err, sizeof(err));
    CHECK(rc == -EINVAL, "%s: refused (rc %d)", what, rc);
    CHECK(strstr(err, needle) != NULL, "%s: err '%s' names '%s'", what, err, needle);
}

static void test_corruption(void)
{
    uint8_t *base = region_new();
    struct kvh_store st;
    format(base, &st);
    char err[256];
    struct kvh_seq_alloc req = {1, 4};
    uint32_t first, groups[4];
    REQUIRE(kvh_store_alloc(&st, &req, 1, &first, groups, err, sizeof(err)) == 0, "%s", err);
    uint64_t owners_offset = st.hdr->owners_offset;
    kvh_store_close(&st);

    expect_refused(base, REGION_BYTES - 4096, "truncated", "truncated");
    base[0] ^= 1;
    expect_refused(base, REGION_BYTES, "magic", "bad magic");
    base[0] ^= 1;
    for (size_t off = 8; off < 64; off += 9) {
        base[off] ^= 0x40;
        expect_refused(base, REGION_BYTES, "header byte", "header");
        base[off] ^= 0x40;
    }
    struct kvh_owner *o = (struct kvh_owner *)(base + owners_offset) + 2;
    o->index ^= 1;
    expect_refused(base, REGION_BYTES, "owner record", "owner record of group 2");
    o->index ^= 1;
    struct kvh_state *slots = (struct kvh_state *)(base + sizeof(struct kvh_header));
    slots[0].done_txn ^= 1;
    slots[1].done_txn ^= 1;
    expect_refused(base, REGION_BYTES, "state", "state slots");
    slots[0].done_txn ^= 1;
    slots[1].done_txn ^= 1;
    /* A checksummed but inconsistent table: two records claim logical block 0. */
    o->index = 0;
    o->checksum = kvh_owner_checksum(o);
    expect_refused(base, REGION_BYTES, "duplicate block", "logical block 0");
    o->index = 2;
    o->checksum = kvh_owner_checksum(o);
    CHECK(kvh_store_recover(base, REGION_BYTES, &st, err, sizeof(err)) == 0, "repaired: %s",
          err);
    kvh_store_close(&st);
    munmap(base, REGION_BYTES);
}

static void test_seqmap(void)
{
    struct kvh_seqmap m = {0};
    enum { N = 2000 };
    static int present[N];
    uint64_t rng = 12345;
    for (int step = 0; step < 20000; step++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        int id = (int)((rng >> 33) % N);
        if ((rng >> 20) & 1) {
            struct kvh_seq *s = kvh_seqmap_get_or_insert(&m, (uint64_t)id * 7919);
            REQUIRE(s && kvh_seqmap_reserve(s, 1) == 0, "insert");
            if (!present[id]) s->groups[s->n_groups++] = (uint32_t)id;
            present[id] = 1;
        } else {
            kvh_seqmap_remove(&m, (uint64_t)id * 7919);
            present[id] = 0;
        }
    }
    size_t count = 0;
    for (int id = 0; id < N; id++) {
        const struct kvh_seq *s = kvh_seqmap_find(&m, (uint64_t)id * 7919);
        CHECK(!!s == present[id], "id %d presence", id);
        if (s) CHECK(s->n_groups == 1 && s->groups[0] == (uint32_t)id, "id %d table", id);
        count += present[id];
    }
    CHECK(m.count == count, "count %zu vs %zu", m.count, count);
    kvh_seqmap_free(&m);
}

int main(void)
{
    test_plan();
    test_alloc_free_recover();
    test_corruption();
    test_seqmap();
    return test_report("test_kvh_store");
}
