/* select.h: NOSA / InfLLM-V2 block selection for one (sequence, layer, KV head), the CPU
 * reference (NOSA.md "Scoring and selection", steps 1-5).
 *
 * Owns the per-head selection state: the compressed keys and compressed eviction scores,
 * maintained incrementally as tokens are appended, with a ring of the last compress_kernel
 * keys and scores (so no earlier KV block has to be local). Blocks are numbered logically
 * from 0; "complete" blocks are those before the current block (the block holding the token
 * being processed), which is always attended from the local open block and never selected.
 * The budgets below therefore count complete blocks: NOSA's 64 = the current block + 63.
 *
 * Definitions (all f32, ascending accumulation order):
 * - compressed key i = mean of the stored (bf16, post-RoPE) keys of tokens
 *   [stride*i, stride*i + kernel), rounded to bf16 (the model's dtype, as NOSA's CompressK
 *   keeps it), emitted when its last token is pushed; compressed
 *   eviction score ce_i = mean of the tokens' cis over the same window.
 * - Bq: for each query head g of the group, p_g = softmax_i(q_g . kc_i * scale) over the
 *   compressed keys so far; s_q = sum_g p_g (g ascending); Bq = nosa_cpu_block_max_pool(s_q).
 * - Be = nosa_cpu_block_max_pool(ce) (query-independent).
 * - Forced blocks: the first sink_blocks and the window_blocks before the current block;
 *   their Bq and Be are +INFINITY.
 * - infllmv2: S = top(budget-1) of Bq. nosa: Sq = top(query_aware-1) of Bq; Be[Sq] = +inf;
 *   S = top(budget-1) of Be. dense: every complete block. Top-k as nosa_cpu_topk (ties: the
 *   lower block wins); S is returned in ascending block order. With no more complete blocks
 *   than budget-1 the sparse modes still score and run the top-k, which takes every block. */
#ifndef NOSA_CPU_SELECT_H
#define NOSA_CPU_SELECT_H

#include "bf16.h"
#include "model.h"

struct nosa_cpu_sel_params {
    enum nosa_attn_mode mode;
    int head_dim;
    int rep;         /* query heads per KV head */
    int block_size;
    int kernel;      /* compress_kernel */
    int stride;      /* compress_stride */
    int units;       /* block_size / stride: compressed keys starting in one block */
    int span;        /* kernel / stride: a compressed key's length in strides */
    int k_total;     /* complete blocks selected: budget_blocks - 1 */
    int k_query;     /* complete blocks of the query-aware share: query_aware_blocks - 1 */
    int sink;
    int window;
    float scale;     /* 1 / sqrt(head_dim) */
};

/* Per (slot, layer, KV head); the arrays are carved by the owner (kv.c). */
struct nosa_cpu_sel_state {
    nosa_bf16 *key_ring; /* [kernel][head_dim]: key of token t at row t % kernel */
    float *cis_ring;     /* [kernel] */
    nosa_bf16 *kc;       /* [max_compressed][head_dim], bf16 like the keys it pools */
    float *ce;           /* [max_compressed] */
    int n_c;             /* compressed keys so far */
};

/* Fills p from a validated model configuration (nosa_model_config_validate). */
void nosa_cpu_sel_params_init(struct nosa_cpu_sel_params *p, const struct nosa_model_config *cfg,
                              enum nosa_attn_mode mode);
/* Compressed keys a context of n_tokens produces. */
int nosa_cpu_sel_compressed_count(const struct nosa_cpu_sel_params *p, int n_tokens);

/* Pushes token pos (pushes come in order 0, 1, 2, ... after a reset: n_c = 0) with its
 * stored key and eviction score; emits a compressed key when a window completes. */
void nosa_cpu_sel_push(const struct nosa_cpu_sel_params *p, struct nosa_cpu_sel_state *s, int pos,
                       const nosa_bf16 *key, float cis);

/* Bq[0 .. n_blocks) for the rep query heads q[rep][head_dim] (forced blocks not yet set).
 * scratch holds 2 * max_compressed floats. */
void nosa_cpu_sel_score_query(const struct nosa_cpu_sel_params *p,
                              const struct nosa_cpu_sel_state *s, const float *q, int n_blocks,
                              float *bq, float *scratch);
/* Be[0 .. n_blocks) (forced blocks not yet set): depends on the eviction scores only. */
void nosa_cpu_sel_score_evict(const struct nosa_cpu_sel_params *p,
                              const struct nosa_cpu_sel_state *s, int n_blocks, float *be);

/* Chooses among the complete blocks [0, n_blocks) per p->mode from bq and be (modified:
 * forced blocks and, for nosa, Sq set to +inf; neither read by dense, be unused unless
 * nosa). Writes S ascending to sel and returns |S|. taken[n_blocks] is scratch. */
int nosa_cpu_sel_choose(const struct nosa_cpu_sel_params *p, int n_blocks, float *bq, float *be,
                        int *sel, unsigned char *taken);

#endif
