/* test_cpu_pool: the offload pool's eviction order (kv.h), slot by slot, on a pool of 4
 * blocks driven directly through nosa_cpu_kv_gather and nosa_cpu_kv_finish_token:
 * - free slots first, lowest slot first;
 * - then the block not in the current gather with the lowest score; equal scores: the least
 *   recently selected; equal stamps too: the lower slot;
 * - no scores (dense): least recently selected;
 * - a completing block takes a slot not in the step's gather when there is one, even from a
 *   block scoring higher than a gathered one, else the gathered one in the lowest slot;
 * - the read-ahead (nosa_cpu_kv_prefetch): the blocks the pool lacks by descending score
 *   (ties: the lower block) into free slots, then each into the eviction order's slot only
 *   while it scores strictly higher than the block there; never a slot of the step's own
 *   blocks (its gather, or what it read ahead); the bytes are the arena block's. */
#include <string.h>

#include "kv.h"
#include "test_arena.h"
#include "test_util.h"

#define POOL 4
#define N_BLOCKS 16

struct pool_fixture {
    struct nosa_model_config cfg;
    struct nosa_cpu_sel_params sp;
    struct nosa_cpu_kv kv;
    struct test_arena ta;
    uint32_t groups[N_BLOCKS];
    struct nosa_cpu_kv_head *h;
    int bs;
};

static void fixture_init(struct pool_fixture *f)
{
    char err[256];
    memset(f, 0, sizeof(*f));
    REQUIRE(nosa_model_config_builtin("tiny", &f->cfg, err, sizeof err) == 0, "%s", err);
    nosa_cpu_sel_params_init(&f->sp, &f->cfg, NOSA_ATTN_INFLLMV2);
    struct nosa_kv_geometry geom = nosa_model_kv_geometry(&f->cfg);
    f->bs = f->cfg.sparse.block_size;
    REQUIRE(nosa_cpu_kv_init(&f->kv, &geom, &f->sp, 1, 1, N_BLOCKS * f->bs, POOL, err,
                             sizeof err) == 0,
            "kv init: %s", err);
    nosa_cpu_kv_slot_reset(&f->kv, 0);
    test_arena_init(&f->ta, &f->cfg, N_BLOCKS);
    for (int m = 0; m < N_BLOCKS; m++) f->groups[m] = test_arena_alloc_group(&f->ta);
    f->h = nosa_cpu_kv_head_at(&f->kv, 0, 0, 0);
}

static void fixture_free(struct pool_fixture *f)
{
    nosa_cpu_kv_free(&f->kv);
    test_arena_free(&f->ta);
}

/* Gathers sel[0 .. n) with the given scores (NULL: none); checks the hit and transfer counts. */
static void gather(struct pool_fixture *f, const int *sel, int n, const float *score,
                   uint64_t want_hits, const char *what)
{
    const uint8_t *ptrs[POOL];
    uint64_t hits = 0, transferred = 0;
    nosa_cpu_kv_gather(&f->kv, f->h, sel, n, &f->ta.arena, f->groups, 0, 0, score, ptrs, &hits,
                       &transferred);
    CHECK(hits == want_hits && transferred == (uint64_t)n - want_hits,
          "%s: hits %llu transferred %llu, want %llu / %llu", what, (unsigned long long)hits,
          (unsigned long long)transferred, (unsigned long long)want_hits,
          (unsigned long long)((uint64_t)n - want_hits));
    for (int i = 0; i < n; i++) {
        int p = f->h->pool_of[sel[i]];
        CHECK(p >= 0 && ptrs[i] == f->h->blocks + (size_t)p * f->kv.block_bytes,
              "%s: block %d is not local at its slot", what, sel[i]);
    }
}

/* Block m sits in pool slot p (and the pool maps are consistent). */
static void expect_slot(const struct pool_fixture *f, int m, int p, const char *what)
{
    CHECK(f->h->pool_of[m] == p && f->h->block_of[p] == m, "%s: block %d in slot %d (want %d)",
          what, m, f->h->pool_of[m], p);
}

static void test_eviction_order(void)
{
    struct pool_fixture f;
    fixture_init(&f);

    static const int g1[] = {0, 1, 2, 3};
    gather(&f, g1, 4, NULL, 0, "fill");
    for (int m = 0; m < 4; m++) expect_slot(&f, m, m, "free slots in order");

    /* Blocks 1 and 2 score lowest, equally, with equal stamps: the lower slot goes. */
    static const int g2[] = {0, 4};
    static const float s2[N_BLOCKS] = {0.5f, 0.2f, 0.2f, 0.9f};
    gather(&f, g2, 2, s2, 1, "score tie, stamp tie");
    expect_slot(&f, 4, 1, "score tie, stamp tie");
    CHECK(f.h->pool_of[1] == -1, "evicted block 1 still mapped");

    /* The lowest score goes, though block 0 was selected more recently than 2 and 3. */
    static const int g3[] = {4, 5};
    static const float s3[N_BLOCKS] = {0.3f, 0.0f, 0.5f, 0.9f};
    gather(&f, g3, 2, s3, 1, "lowest score");
    expect_slot(&f, 5, 0, "lowest score");

    /* Blocks 3 (selected by g1) and 5 (by g3) score equally: the least recent, 3, goes. */
    static const int g4[] = {2, 10};
    static const float s4[N_BLOCKS] = {0.0f, 0.0f, 0.0f, 0.5f, 0.6f, 0.5f};
    gather(&f, g4, 2, s4, 1, "score tie");
    expect_slot(&f, 10, 3, "score tie");

    /* No scores: LRU among 4 (g3), 2 and 10 (g4). */
    static const int g5[] = {5, 6};
    gather(&f, g5, 2, NULL, 1, "no scores");
    expect_slot(&f, 6, 1, "no scores");

    /* A block completes: 2 and 10 are outside the step's gather {5, 6}; 10 scores lower and
     * goes, though 6 (gathered) scores lower still. */
    static const float s6[N_BLOCKS] = {0.0f, 0.0f, 0.3f, 0.0f, 0.0f, 0.05f, 0.0f, 0.0f,
                                       0.0f, 0.0f, 0.1f};
    nosa_cpu_kv_finish_token(&f.kv, f.h, 8 * f.bs - 1, NULL, 0, 0, 0, s6);
    expect_slot(&f, 7, 3, "completion, a free choice");

    /* Every pool block in the gather: the completion takes the lowest slot, whatever the
     * scores. */
    static const int g7[] = {2, 5, 6, 7};
    gather(&f, g7, 4, NULL, 4, "all hits");
    static const float s7[N_BLOCKS] = {0.0f, 0.0f, 0.9f, 0.0f, 0.0f, 0.4f, 0.3f, 0.35f};
    nosa_cpu_kv_finish_token(&f.kv, f.h, 9 * f.bs - 1, NULL, 0, 0, 0, s7);
    expect_slot(&f, 8, 0, "completion, all gathered");
    CHECK(f.h->pool_of[5] == -1, "evicted block 5 still mapped");

    fixture_free(&f);
}

/* Reads up to x of blocks [0, n_blocks) ahead with the given scores; checks the count. */
static void prefetch(struct pool_fixture *f, int n_blocks, int x, const float *score, int want,
                     const char *what)
{
    int n = nosa_cpu_kv_prefetch(&f->kv, f->h, n_blocks, x, &f->ta.arena, f->groups, 0, 0,
                                 score);
    CHECK(n == want, "%s: read %d blocks ahead, want %d", what, n, want);
}

static void test_prefetch_order(void)
{
    struct pool_fixture f;
    fixture_init(&f);
    const float inf = __builtin_inff();
    size_t bb = f.kv.block_bytes;
    for (int m = 0; m < 8; m++)
        memset(nosa_cpu_kv_arena_block(&f.ta.arena, f.groups[m], 0, 0), 0x40 + m, bb);

    /* Two slots free after the gather: 5 (0.7), then 3 and 4 tie at 0.5 and the lower, 3,
     * goes first; 4 finds only the step's own blocks and stops the read. */
    static const int g1[] = {0, 1};
    gather(&f, g1, 2, NULL, 0, "fill two");
    static const float s1[N_BLOCKS] = {0.9f, 0.8f, 0.1f, 0.5f, 0.5f, 0.7f, 0.2f, 0.3f};
    prefetch(&f, 8, 3, s1, 2, "free slots");
    expect_slot(&f, 5, 2, "read ahead into a free slot");
    expect_slot(&f, 3, 3, "score tie: the lower block");
    CHECK(f.h->pool_of[4] == -1, "block 4 read though no slot is free");
    CHECK(memcmp(f.h->blocks + 2 * bb, nosa_cpu_kv_arena_block(&f.ta.arena, f.groups[5], 0, 0),
                 bb) == 0,
          "slot 2 does not hold block 5's bytes");

    /* Outside the gather {0, 5}: 1 (0.1) and 3 (0.15). 4 (0.6) takes 1's slot, then 2 (0.2)
     * outranks 3 and takes its slot. */
    static const int g2[] = {0, 5};
    gather(&f, g2, 2, NULL, 2, "two hits");
    static const float s2[N_BLOCKS] = {inf, 0.1f, 0.2f, 0.15f, 0.6f, 0.7f, 0.05f, 0.0f};
    prefetch(&f, 8, 2, s2, 2, "evicting");
    expect_slot(&f, 4, 1, "the best absent block replaces the lowest");
    expect_slot(&f, 2, 3, "the next replaces the next lowest");
    CHECK(f.h->pool_of[1] == -1 && f.h->pool_of[3] == -1, "evicted blocks still mapped");

    /* The best absent block, 3 (0.4), only ties the lowest outside the gather {0, 4} (block
     * 2, 0.4): nothing is read. */
    static const int g3[] = {0, 4};
    gather(&f, g3, 2, NULL, 2, "two hits again");
    static const float s3[N_BLOCKS] = {inf, 0.1f, 0.4f, 0.4f, 0.9f, 0.5f, 0.0f, 0.0f};
    prefetch(&f, 8, 2, s3, 0, "a tie does not evict");
    expect_slot(&f, 2, 3, "a tie does not evict");

    /* Only complete blocks count: with n_blocks 2 every one is pooled. */
    prefetch(&f, 2, 2, s3, 0, "nothing absent");
    fixture_free(&f);
}

int main(void)
{
    test_eviction_order();
    test_prefetch_order();
    return test_report("test_cpu_pool");
}
