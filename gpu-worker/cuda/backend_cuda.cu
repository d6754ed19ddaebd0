/* backend_cuda.cu: the CUDA backend (nosa_backend_cuda_ops, backend.h).
 *
 * Same semantics as the CPU reference (gpu-worker/cpu/): prefill of n tokens has the result
 * of n single-token steps (computed layer by layer over spans of PREFILL_ROWS tokens of up to
 * PREFILL_LANES prompts: the GEMMs batched, the attention side position by position, the
 * prompts side by side); a decode step runs its sequences as one batch. Per step and layer,
 * on one stream: RMSNorm -> q/k/v GEMM -> RoPE -> eviction scores -> append K/V to the open
 * block + compression -> selection -> delta against the pool -> attention (which reads the
 * misses from the mapped arena into their pool slots as it goes) -> (pool install of
 * completed blocks) -> output GEMM -> MLP.
 * Indices (selection, pool slots, misses) live only on the GPU; the host knows positions,
 * which is enough to size launches and to schedule the write-back of completed blocks.
 *
 * Overlap: the write-back of a completed block to the arena (one cudaMemcpy2DAsync per token
 * and layer, all KV heads, copy engine) runs on a side stream after that layer's attention and
 * overlaps the rest of the step (later layers); the step joins it before returning, so a
 * block is in the arena when the call returns (ARCHITECTURE.md). The delta copy of layer l
 * depends on layer l's selection, which depends on layer l's query, so it cannot start
 * earlier; inside attention, the misses' PCIe reads overlap the hits' attention.
 *
 * Everything is allocated in create(): no cudaMalloc on the decode path. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "argmax.cuh"
#include "attention.cuh"
#include "cuda_common.cuh"
#include "embed.cuh"
#include "evict_cis.cuh"
#include "gemm.cuh"
#include "kv_append.cuh"
#include "pool.cuh"
#include "rmsnorm.cuh"
#include "rope.cuh"
#include "score.cuh"
#include "sample.cuh"
#include "select.cuh"
#include "swiglu.cuh"
#include "writeback.cuh"
#include "kv_resume.cuh"

extern "C" {
#include "backend.h"
#include "backend_cuda.h"
#include "bf16.h"
#include "ops.h"
}

#define REG_CHUNK (64ull << 30) /* cudaHostRegister at most 64 GiB per call */
#define MAX_REG_CHUNKS 64
/* Launch shapes that grow with the context are rounded up to these granules (surplus CTAs
 * find nothing to do), so a decode step's shape, and its CUDA graph, change rarely. */
#define SCORE_KEYS_GRANULE 1024 /* compressed keys of the scoring grid */
#define ATT_ENTRIES_GRANULE 16  /* selected blocks of the attention grid (+ the open one) */
#define GRAPH_AFTER 2           /* capture once a shape has repeated this many steps */
#define BLAS_WORKSPACE (32u << 20) /* cuBLAS workspace: fixed, so graph capture allocates none */
#define MARKS_PER_LAYER 11      /* timing events one layer records (forward()) */
/* Prompt tokens per batched prefill pass (forward_prefill): its GEMMs' row count. */
#define PREFILL_ROWS 64
/* Prompts a prefill round runs side by side (at most; fewer with fewer slots): the rounds'
 * attention side is a chain of small launches whose time barely grows with their width. */
#define PREFILL_LANES 16

/* Phases of nosa_step_stats' time split. The delta copy runs inside attention (attention.cuh)
 * and is timed as attention: copy_s stays 0. */
enum step_phase { PHASE_GEMM, PHASE_SELECT, PHASE_ATTN, N_PHASES };

/* A phase's time between two timing marks (events) of a step. */
struct phase_span {
    int from, to;
    enum step_phase phase;
};

/* What a decode step's launches depend on besides device-side data: equal shapes enqueue
 * identical work, so a graph captured for one replays any other. */
struct step_shape {
    int n, chunk, n_chunks, score_keys, want_logits;
};

struct layer_dev {
    uint16_t *wqkv, *wo, *wgu, *wdown; /* bf16 [out][in] */
    float *bqkv;                       /* NULL without attention bias */
    float *attn_norm, *mlp_norm, *ev_w, *ev_b, *ev_A;
};

struct nosa_backend {
    const struct nosa_model *model;
    struct nosa_backend_config cfg;
    struct nosa_kv_arena arena;
    int have_arena;
    struct nosa_backend_limits limits; /* what each call is checked against */
    uint8_t *arena_dev;              /* the arena as the GPU addresses it */
    void *reg_ptr[MAX_REG_CHUNKS];   /* registrations we own */
    int n_reg;
    /* stream: the step (highest priority); side: write-backs (copy engine); ahead: the
     * read-ahead's copies (lowest priority: they have a whole step to finish). */
    cudaStream_t stream, side, ahead;
    cudaEvent_t ev_main, ev_side, ev_ahead;
    cublasHandle_t blas;
    int hid, qdim, kvdim, qkvdim, inter, vocab, n_heads, n_kv, d, rep, bs, max_n, max_tok;
    int prefill_lanes, prefill_rows; /* forward_prefill's lanes and GEMM rows */
    int att_ctas;    /* attention CTAs resident at once */
    int max_entries; /* block-list entries at most: every block plus the open one */
    int max_chunks;  /* splits of a block list at most (att_part's rows per list) */
    float scale;
    select_params sp;
    cuda_kv kv;
    struct layer_dev *layers; /* host array of device pointers */
    float *tok_embed, *final_norm, *rope_cos, *rope_sin;
    uint16_t *lm_head;
    /* step buffers */
    /* [max_tok] each, one allocation (d_tok, then d_slot, then d_pos); h_info pinned: its
     * upload, [3][max_tok]; ev_info: a prefill round's upload of it */
    int32_t *d_tok, *d_slot, *d_pos, *h_info;
    cudaEvent_t ev_info;
    int32_t *d_argmax, *h_argmax;            /* [max_n] greedy tokens; h_argmax pinned */
    int32_t *d_sampled, *h_sampled;          /* [max_n] sampled tokens; h_sampled pinned */
    struct nosa_row_sampling *d_sampling, *h_sampling; /* [max_n]; h_sampling pinned */
    uint64_t *d_sample_keys;                 /* [max_n][vocab]: the sampling kernel's scratch */
    uint32_t *d_groups, *h_groups;           /* [max_seqs][max_blocks] and its host mirror */
    int *n_known;                            /* [max_seqs] entries of h_groups uploaded */
    float *x, *gout, *qkv, *att, *cis, *logits, *sel_scratch, *att_part, *h_logits;
    uint16_t *xs;
    pool_lists pl;
    unsigned long long *d_stats, *h_stats;
    int *len, *stepped;
    struct nosa_step_stats stats;
    void *blas_ws;
    /* Phase timing (decode): marks[] recorded in stream order, spans[] pairs of marks per
     * phase; rebuilt by each timed forward() (a graph replays the spans of its capture). */
    cudaEvent_t *marks;
    int n_marks_max, n_marks, n_spans, timing, mark_rc;
    struct phase_span *spans, *graph_spans; /* graph_spans: the graph's capture's */
    int n_graph_spans, capturing;
    /* CUDA graph of the decode step (NOSA_CUDA_GRAPHS=0 disables). */
    int use_graphs;
    cudaGraphExec_t graph;
    struct step_shape graph_shape, last_shape;
    int shape_repeats;
    unsigned long graph_launches, graph_captures;
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define CUDA_FREE(p) (void)cudaFree((void *)(p))

static void cuda_destroy(struct nosa_backend *b)
{
    if (!b) return;
    /* Its own device first: a process may destroy backends of several devices from one thread
     * (nosa-bench --devices), and the cuBLAS handle belongs to the device it was made on. Like
     * every call below, teardown goes on whatever it returns (a bad ordinal from a failed create
     * included). */
    (void)cudaSetDevice(b->cfg.device);
    if (b->stream) (void)cudaStreamSynchronize(b->stream);
    if (b->side) (void)cudaStreamSynchronize(b->side);
    if (b->ahead) (void)cudaStreamSynchronize(b->ahead);
    if (b->layers) {
        for (int l = 0; l < b->model->cfg.n_layers; l++) {
            struct layer_dev *L = &b->layers[l];
            CUDA_FREE(L->wqkv), CUDA_FREE(L->wo), CUDA_FREE(L->wgu), CUDA_FREE(L->wdown);
            CUDA_FREE(L->bqkv), CUDA_FREE(L->attn_norm), CUDA_FREE(L->mlp_norm);
            CUDA_FREE(L->ev_w), CUDA_FREE(L->ev_b), CUDA_FREE(L->ev_A);
        }
        free(b->layers);
    }
    CUDA_FREE(b->tok_embed), CUDA_FREE(b->final_norm), CUDA_FREE(b->lm_head);
    CUDA_FREE(b->rope_cos), CUDA_FREE(b->rope_sin);
    CUDA_FREE(b->kv.blocks), CUDA_FREE(b->kv.open), CUDA_FREE(b->kv.pool_of);
    CUDA_FREE(b->kv.block_of), CUDA_FREE(b->kv.stamp), CUDA_FREE(b->kv.slot_score);
    CUDA_FREE(b->kv.ahead);
    CUDA_FREE(b->kv.key_ring);
    CUDA_FREE(b->kv.cis_ring), CUDA_FREE(b->kv.kc), CUDA_FREE(b->kv.ce);
    CUDA_FREE(b->kv.last_sel), CUDA_FREE(b->kv.n_sel);
    CUDA_FREE(b->d_tok), CUDA_FREE(b->d_groups);
    CUDA_FREE(b->x), CUDA_FREE(b->gout), CUDA_FREE(b->qkv), CUDA_FREE(b->att);
    CUDA_FREE(b->cis), CUDA_FREE(b->logits), CUDA_FREE(b->sel_scratch);
    CUDA_FREE(b->att_part), CUDA_FREE(b->xs), CUDA_FREE(b->d_stats), CUDA_FREE(b->d_argmax);
    CUDA_FREE(b->d_sampled), CUDA_FREE(b->d_sampling), CUDA_FREE(b->d_sample_keys);
    CUDA_FREE(b->pl.ptrs), CUDA_FREE(b->pl.n_ent), CUDA_FREE(b->pl.miss_src);
    if (b->h_info) (void)cudaFreeHost(b->h_info);
    if (b->h_logits) (void)cudaFreeHost(b->h_logits);
    if (b->h_argmax) (void)cudaFreeHost(b->h_argmax);
    if (b->h_sampled) (void)cudaFreeHost(b->h_sampled);
    if (b->h_sampling) (void)cudaFreeHost(b->h_sampling);
    if (b->h_stats) (void)cudaFreeHost(b->h_stats);
    for (int i = 0; i < b->n_reg; i++) (void)cudaHostUnregister(b->reg_ptr[i]);
    if (b->graph) (void)cudaGraphExecDestroy(b->graph);
    for (int i = 0; b->marks && i < b->n_marks_max; i++)
        if (b->marks[i]) (void)cudaEventDestroy(b->marks[i]);
    free(b->marks);
    free(b->spans);
    free(b->graph_spans);
    CUDA_FREE(b->blas_ws);
    if (b->blas) (void)cublasDestroy(b->blas);
    if (b->ev_main) (void)cudaEventDestroy(b->ev_main);
    if (b->ev_side) (void)cudaEventDestroy(b->ev_side);
    if (b->ev_ahead) (void)cudaEventDestroy(b->ev_ahead);
    if (b->ev_info) (void)cudaEventDestroy(b->ev_info);
    if (b->stream) (void)cudaStreamDestroy(b->stream);
    if (b->side) (void)cudaStreamDestroy(b->side);
    if (b->ahead) (void)cudaStreamDestroy(b->ahead);
    free(b->h_groups);
    free(b->n_known);
    free(b->len);
    free(b->stepped);
    free(b);
}

/* cudaMalloc of n elements of sz bytes into *p. */
static cudaError_t dev_alloc(void *p, size_t n, size_t sz)
{
    return cudaMalloc((void **)p, (n ? n : 1) * sz);
}

/* A host f32 array (norm weights, biases, A, the RoPE tables) as a weight view. */
static struct nosa_weight f32_view(const float *p)
{
    struct nosa_weight w = {p, NOSA_WEIGHT_F32};
    return w;
}

/* Uploads parts[] of counts[] elements, concatenated (fused weights), as one device tensor of
 * bf16 (bf16 == 1) or f32 elements. A part already of that dtype is copied as its bytes (a
 * bf16 file's weights keep their bits); others convert per element (f32 -> bf16 rounds once,
 * bf16 -> f32 is exact). A part without data is a tensor the model lacks: an error naming
 * what (and the layer, -1 for the model-level tensors). */
static int upload(void *dst_out, int bf16, const struct nosa_weight *parts, const size_t *counts,
                  int n_parts, const char *what, int layer, char *err, size_t errlen)
{
    int rc = 0;
    size_t total = 0;
    for (int i = 0; i < n_parts; i++) {
        if (!parts[i].data) {
            char where[32] = "";
            if (layer >= 0) snprintf(where, sizeof where, "layer %d: ", layer);
            nosa_set_error(err, errlen, "cuda backend: %sweight %s (part %d of %d) is missing "
                           "from the model", where, what, i + 1, n_parts);
            return -EINVAL;
        }
        total += counts[i];
    }
    size_t esz = bf16 ? 2 : 4;
    enum nosa_weight_dtype want = bf16 ? NOSA_WEIGHT_BF16 : NOSA_WEIGHT_F32;
    void *dev = NULL;
    unsigned char *host = (unsigned char *)malloc(total * esz);
    if (!host) {
        nosa_set_error(err, errlen, "cuda backend: out of host memory converting weights");
        return -ENOMEM;
    }
    size_t off = 0;
    for (int i = 0; i < n_parts; i++) {
        if (parts[i].dtype == want) {
            memcpy(host + off * esz, parts[i].data, counts[i] * esz);
            off += counts[i];
            continue;
        }
        for (size_t j = 0; j < counts[i]; j++, off++) {
            float v = nosa_weight_at(parts[i], j);
            if (bf16)
                ((nosa_bf16 *)host)[off] = nosa_f32_to_bf16(v);
            else
                ((float *)host)[off] = v;
        }
    }
    CUDA_CHECK(dev_alloc(&dev, total, esz));
    CUDA_CHECK(cudaMemcpy(dev, host, total * esz, cudaMemcpyHostToDevice));
    *(void **)dst_out = dev;
    dev = NULL;
fail:
    if (dev) CUDA_FREE(dev);
    free(host);
    return rc;
}

/* One host f32 array (the RoPE tables). */
static int upload1(void *dst, int bf16, const float *src, size_t n, char *err, size_t errlen)
{
    struct nosa_weight w = f32_view(src);
    return upload(dst, bf16, &w, &n, 1, "host table", -1, err, errlen);
}

static int upload_weights(struct nosa_backend *b, char *err, size_t errlen)
{
    const struct nosa_model *m = b->model;
    const struct nosa_model_config *mc = &m->cfg;
    size_t hid = (size_t)b->hid, inter = (size_t)b->inter, n_kv = (size_t)b->n_kv;
    size_t n_o = hid * (size_t)b->qdim, n_down = hid * inter;
    size_t n_ev = n_kv * (size_t)b->kvdim, n_vocab = (size_t)b->vocab * hid;
    int rc;
    b->layers = (struct layer_dev *)calloc((size_t)mc->n_layers, sizeof(*b->layers));
    if (!b->layers) return -ENOMEM;
    for (int l = 0; l < mc->n_layers; l++) {
        const struct nosa_layer_weights *w = &m->layers[l];
        struct layer_dev *L = &b->layers[l];
        const struct nosa_weight qkv[3] = {w->wq, w->wk, w->wv};
        size_t qkvn[3] = {(size_t)b->qdim * hid, (size_t)b->kvdim * hid, (size_t)b->kvdim * hid};
        const struct nosa_weight gu[2] = {w->w_gate, w->w_up};
        size_t gun[2] = {inter * hid, inter * hid};
        const struct nosa_weight an = f32_view(w->attn_norm), mn = f32_view(w->mlp_norm);
        const struct nosa_weight ea = f32_view(w->evict_A);
        if ((rc = upload(&L->wqkv, 1, qkv, qkvn, 3, "q/k/v_proj", l, err, errlen)) ||
            (rc = upload(&L->wgu, 1, gu, gun, 2, "gate/up_proj", l, err, errlen)) ||
            (rc = upload(&L->wo, 1, &w->wo, &n_o, 1, "o_proj", l, err, errlen)) ||
            (rc = upload(&L->wdown, 1, &w->w_down, &n_down, 1, "down_proj", l, err, errlen)))
            return rc;
        if (mc->attention_bias) {
            const struct nosa_weight bs[3] = {f32_view(w->bq), f32_view(w->bk), f32_view(w->bv)};
            size_t bn[3] = {(size_t)b->qdim, (size_t)b->kvdim, (size_t)b->kvdim};
            const struct nosa_weight eb = f32_view(w->evict_delta_b);
            if ((rc = upload(&L->bqkv, 0, bs, bn, 3, "q/k/v bias", l, err, errlen)) ||
                (rc = upload(&L->ev_b, 0, &eb, &n_kv, 1, "delta bias", l, err, errlen)))
                return rc;
        }
        if ((rc = upload(&L->attn_norm, 0, &an, &hid, 1, "input_layernorm", l, err, errlen)) ||
            (rc = upload(&L->mlp_norm, 0, &mn, &hid, 1, "post_attention_layernorm", l, err,
                         errlen)) ||
            (rc = upload(&L->ev_w, 0, &w->evict_delta_w, &n_ev, 1, "delta", l, err, errlen)) ||
            (rc = upload(&L->ev_A, 0, &ea, &n_kv, 1, "A", l, err, errlen)))
            return rc;
    }
    const struct nosa_weight fn = f32_view(m->final_norm);
    if ((rc = upload(&b->tok_embed, 0, &m->tok_embed, &n_vocab, 1, "embed_tokens", -1, err,
                     errlen)) ||
        (rc = upload(&b->lm_head, 1, &m->lm_head, &n_vocab, 1, "lm_head", -1, err, errlen)))
        return rc;
    return upload(&b->final_norm, 0, &fn, &hid, 1, "norm", -1, err, errlen);
}

/* Registers the arena (mapped, in chunks of at most 64 GiB, page-aligned outward) and finds
 * the address the GPU uses for it. An arena another backend of this process already
 * registered is used as it is; portable, so that a backend on another device of the same
 * process (nosa-bench --devices) can: without it only the registering device's context sees
 * the memory as pinned and mapped. The registering backend unregisters at destroy, so it must
 * be destroyed last. */
static int register_arena(struct nosa_backend *b, char *err, size_t errlen)
{
    int rc = 0;
    size_t page = 4096;
    size_t bytes = (size_t)b->arena.n_groups * nosa_kv_group_bytes(&b->arena.geom);
    uintptr_t lo = (uintptr_t)b->arena.base / page * page;
    uintptr_t hi = ((uintptr_t)b->arena.base + bytes + page - 1) / page * page;
    int host_ptr_ok = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&host_ptr_ok, cudaDevAttrCanUseHostPointerForRegisteredMem,
                                      b->cfg.device));
    if (!host_ptr_ok && hi - lo > REG_CHUNK) {
        nosa_set_error(err, errlen, "cuda backend: arena of %zu bytes needs several "
                                    "registrations, but this GPU cannot use host pointers of "
                                    "registered memory", bytes);
        return -ENOTSUP;
    }
    for (uintptr_t p = lo; p < hi; p += REG_CHUNK) {
        size_t len = hi - p < REG_CHUNK ? hi - p : REG_CHUNK;
        cudaError_t e =
            cudaHostRegister((void *)p, len, cudaHostRegisterMapped | cudaHostRegisterPortable);
        if (e == cudaErrorHostMemoryAlreadyRegistered) {
            /* Another instance on this arena registered it: it must cover the whole chunk.
             * A range that only overlaps someone's registration (a page shared with other
             * memory) would leave the rest unmapped for the device: refuse it. */
            (void)cudaGetLastError();
            struct cudaPointerAttributes first, last;
            CUDA_CHECK(cudaPointerGetAttributes(&first, (const void *)p));
            CUDA_CHECK(cudaPointerGetAttributes(&last, (const void *)(p + len - 1)));
            if (first.type != cudaMemoryTypeHost || last.type != cudaMemoryTypeHost) {
                nosa_set_error(err, errlen, "cuda backend: the arena's pages [%#lx, %#lx) are "
                               "partly registered by something else (an arena must own its "
                               "pages: page-aligned, nothing else in its first and last page)",
                               (unsigned long)p, (unsigned long)(p + len));
                return -EINVAL;
            }
            continue;
        }
        CUDA_CHECK(e);
        if (b->n_reg == MAX_REG_CHUNKS) {
            nosa_set_error(err, errlen, "cuda backend: arena too large (%zu bytes)", bytes);
            return -E2BIG;
        }
        b->reg_ptr[b->n_reg++] = (void *)p;
    }
    if (host_ptr_ok) {
        b->arena_dev = b->arena.base;
    } else {
        void *dp = NULL;
        CUDA_CHECK(cudaHostGetDevicePointer(&dp, b->arena.base, 0));
        b->arena_dev = (uint8_t *)dp;
    }
    LOG_INFO("cuda", "arena registered bytes=%zu chunks=%d host_pointer=%d", bytes, b->n_reg,
             host_ptr_ok);
fail:
    return rc;
}

static int alloc_kv(struct nosa_backend *b, char *err, size_t errlen)
{
    int rc = 0;
    cuda_kv *kv = &b->kv;
    const struct nosa_model_config *mc = &b->model->cfg;
    size_t nh = (size_t)b->cfg.max_seqs * (size_t)mc->n_layers * (size_t)b->n_kv;
    size_t local = kv->offload ? (size_t)kv->pool_blocks : (size_t)kv->max_blocks;
    size_t d = (size_t)b->d;
    CUDA_CHECK(dev_alloc(&kv->blocks, nh * local, kv->block_bytes));
    CUDA_CHECK(dev_alloc(&kv->key_ring, nh * (size_t)kv->kernel * d, sizeof(uint16_t)));
    CUDA_CHECK(dev_alloc(&kv->cis_ring, nh * (size_t)kv->kernel, sizeof(float)));
    CUDA_CHECK(dev_alloc(&kv->kc, nh * (size_t)kv->max_c * d, sizeof(uint16_t)));
    CUDA_CHECK(dev_alloc(&kv->ce, nh * (size_t)kv->max_c, sizeof(float)));
    CUDA_CHECK(dev_alloc(&kv->last_sel, nh * (size_t)kv->max_blocks, sizeof(int32_t)));
    CUDA_CHECK(dev_alloc(&kv->n_sel, nh, sizeof(int32_t)));
    CUDA_CHECK(cudaMemset(kv->n_sel, 0, nh * sizeof(int32_t)));
    if (kv->offload) {
        CUDA_CHECK(dev_alloc(&kv->open, nh, kv->block_bytes));
        CUDA_CHECK(dev_alloc(&kv->pool_of, nh * (size_t)kv->max_blocks, sizeof(int32_t)));
        CUDA_CHECK(dev_alloc(&kv->block_of, nh * local, sizeof(int32_t)));
        CUDA_CHECK(dev_alloc(&kv->stamp, nh * local, sizeof(uint32_t)));
        CUDA_CHECK(dev_alloc(&kv->slot_score, nh * local, sizeof(float)));
        CUDA_CHECK(cudaMemset(kv->pool_of, 0xff, nh * (size_t)kv->max_blocks * sizeof(int32_t)));
        CUDA_CHECK(cudaMemset(kv->block_of, 0xff, nh * local * sizeof(int32_t)));
        CUDA_CHECK(cudaMemset(kv->stamp, 0, nh * local * sizeof(uint32_t)));
        if (kv->prefetch > 0)
            CUDA_CHECK(dev_alloc(&kv->ahead, nh * (size_t)kv->prefetch, sizeof(int32_t)));
    }
fail:
    return rc;
}

static int alloc_step(struct nosa_backend *b, char *err, size_t errlen)
{
    int rc = 0;
    size_t n = (size_t)b->max_n, mb = (size_t)b->kv.max_blocks, nkv = (size_t)b->n_kv;
    /* Rows of the per-token buffers: a decode step's tokens or a prefill pass's. */
    size_t rows = (size_t)b->max_tok;
    size_t wide = (size_t)b->qkvdim; /* gout per row: a layer's GEMMs; the LM head's, decode */
    if ((size_t)2 * b->inter > wide) wide = (size_t)2 * b->inter;
    size_t gout = rows * wide > n * (size_t)b->vocab ? rows * wide : n * (size_t)b->vocab;
    size_t xs_w = (size_t)b->hid;
    if ((size_t)b->qdim > xs_w) xs_w = (size_t)b->qdim;
    if ((size_t)b->inter > xs_w) xs_w = (size_t)b->inter;
    size_t mt = (size_t)b->max_tok;
    CUDA_CHECK(dev_alloc(&b->d_tok, 3 * mt, sizeof(int32_t)));
    b->d_slot = b->d_tok + mt, b->d_pos = b->d_slot + mt;
    CUDA_CHECK(cudaMallocHost((void **)&b->h_info, 3 * mt * sizeof(int32_t)));
    CUDA_CHECK(dev_alloc(&b->d_groups, (size_t)b->cfg.max_seqs * mb, sizeof(uint32_t)));
    CUDA_CHECK(dev_alloc(&b->x, rows * (size_t)b->hid, sizeof(float)));
    CUDA_CHECK(dev_alloc(&b->xs, 2 * rows * xs_w, sizeof(uint16_t)));
    CUDA_CHECK(dev_alloc(&b->gout, 2 * gout, sizeof(float)));
    CUDA_CHECK(dev_alloc(&b->qkv, rows * (size_t)b->qkvdim, sizeof(float)));
    CUDA_CHECK(dev_alloc(&b->att, rows * (size_t)b->qdim, sizeof(float)));
    CUDA_CHECK(dev_alloc(&b->cis, rows * nkv, sizeof(float)));
    CUDA_CHECK(dev_alloc(&b->logits, n * (size_t)b->vocab, sizeof(float)));
    CUDA_CHECK(cudaMallocHost((void **)&b->h_logits, n * (size_t)b->vocab * sizeof(float)));
    CUDA_CHECK(dev_alloc(&b->d_argmax, n, sizeof(int32_t)));
    CUDA_CHECK(cudaMallocHost((void **)&b->h_argmax, n * sizeof(int32_t)));
    CUDA_CHECK(dev_alloc(&b->d_sampled, n, sizeof(int32_t)));
    CUDA_CHECK(cudaMallocHost((void **)&b->h_sampled, n * sizeof(int32_t)));
    CUDA_CHECK(dev_alloc(&b->d_sampling, n, sizeof(struct nosa_row_sampling)));
    CUDA_CHECK(dev_alloc(&b->d_sample_keys, n * (size_t)b->vocab, sizeof(uint64_t)));
    CUDA_CHECK(cudaMallocHost((void **)&b->h_sampling, n * sizeof(struct nosa_row_sampling)));
    CUDA_CHECK(dev_alloc(&b->sel_scratch, n * nkv * b->kv.scratch_stride, sizeof(float)));
    CUDA_CHECK(dev_alloc(&b->att_part,
                         n * nkv * (size_t)b->max_chunks * (size_t)b->rep * (size_t)(b->d + 2),
                         sizeof(float)));
    CUDA_CHECK(dev_alloc(&b->pl.ptrs, n * nkv * (mb + 1), sizeof(uint8_t *)));
    CUDA_CHECK(dev_alloc(&b->pl.n_ent, n * nkv, sizeof(int32_t)));
    CUDA_CHECK(dev_alloc(&b->pl.miss_src, n * nkv * mb, sizeof(uint8_t *)));
    CUDA_CHECK(dev_alloc(&b->d_stats, POOL_STATS * (size_t)b->model->cfg.n_layers,
                         sizeof(unsigned long long)));
    CUDA_CHECK(cudaMallocHost((void **)&b->h_stats, POOL_STATS * (size_t)b->model->cfg.n_layers *
                                                        sizeof(unsigned long long)));
fail:
    return rc;
}

static int alloc_marks(struct nosa_backend *b, char *err, size_t errlen)
{
    int rc = 0;
    b->n_marks_max = b->model->cfg.n_layers * MARKS_PER_LAYER + 2;
    b->marks = (cudaEvent_t *)calloc((size_t)b->n_marks_max, sizeof(*b->marks));
    b->spans = (struct phase_span *)calloc((size_t)b->n_marks_max, sizeof(*b->spans));
    b->graph_spans = (struct phase_span *)calloc((size_t)b->n_marks_max, sizeof(*b->spans));
    if (!b->marks || !b->spans || !b->graph_spans) {
        nosa_set_error(err, errlen, "cuda backend: out of host memory");
        return -ENOMEM;
    }
    for (int i = 0; i < b->n_marks_max; i++) CUDA_CHECK(cudaEventCreate(&b->marks[i]));
fail:
    return rc;
}

/* What only this backend refuses; the shared checks are nosa_backend_config_check's. */
static int check_config(const struct nosa_model *model, const struct nosa_backend_config *cfg,
                        char *err, size_t errlen)
{
    /* 16 bytes: the gather kernels read the arena with 16-byte loads. */
    int rc = nosa_backend_config_check(model, cfg, "cuda", 16, err, errlen);
    if (rc) return rc;
    if (cfg->mode == NOSA_ATTN_DENSE && cfg->offload) {
        nosa_set_error(err, errlen,
                       "cuda backend: dense attention with offloaded KV is not implemented "
                       "(docs/CUDA_BACKEND.md); use resident KV (offload = 0) or the cpu "
                       "backend");
        return -EINVAL;
    }
    return 0;
}

static int cuda_create(const struct nosa_model *model, const struct nosa_backend_config *cfg,
                       struct nosa_backend **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!model || !cfg) {
        nosa_set_error(err, errlen, "cuda backend: model and config are required");
        return -EINVAL;
    }
    int rc = check_config(model, cfg, err, errlen);
    if (rc) return rc;
    const struct nosa_model_config *mc = &model->cfg;
    const struct nosa_sparse_config *sc = &mc->sparse;
    int pool = cfg->pool_blocks ? cfg->pool_blocks : 2 * sc->budget_blocks;
    int min_pool = sc->budget_blocks - 1 > 1 ? sc->budget_blocks - 1 : 1;
    if (cfg->offload && pool < min_pool) {
        nosa_set_error(err, errlen, "cuda backend: pool_blocks = %d < %d (one selection)", pool,
                       min_pool);
        return -EINVAL;
    }
    int n_dev = 0;
    float *cos_h = NULL, *sin_h = NULL;
    struct nosa_backend *b = (struct nosa_backend *)calloc(1, sizeof(*b));
    if (!b) return -ENOMEM;
    b->model = model;
    b->cfg = *cfg;
    b->cfg.pool_blocks = cfg->offload ? pool : 0;
    b->cfg.arena = NULL;
    if (cfg->arena) {
        b->arena = *cfg->arena;
        b->have_arena = 1;
    }
    nosa_backend_limits_init(&b->limits, "cuda", model, cfg);
    CUDA_CHECK(cudaGetDeviceCount(&n_dev));
    if (cfg->device < 0 || cfg->device >= n_dev) {
        nosa_set_error(err, errlen, "cuda backend: device %d not present (%d GPUs)", cfg->device,
                       n_dev);
        rc = -ENODEV;
        goto fail;
    }
    CUDA_CHECK(cudaSetDevice(cfg->device));
    b->hid = mc->hidden_size, b->d = mc->head_dim, b->n_heads = mc->n_heads;
    b->n_kv = mc->n_kv_heads, b->rep = mc->n_heads / mc->n_kv_heads;
    b->qdim = mc->n_heads * mc->head_dim, b->kvdim = mc->n_kv_heads * mc->head_dim;
    b->qkvdim = b->qdim + 2 * b->kvdim, b->inter = mc->intermediate_size;
    b->vocab = mc->vocab_size, b->bs = sc->block_size;
    b->max_n = cfg->max_seqs;
    b->prefill_lanes = cfg->max_seqs < PREFILL_LANES ? cfg->max_seqs : PREFILL_LANES;
    b->prefill_rows = PREFILL_ROWS * b->prefill_lanes;
    b->max_tok = b->max_n > b->prefill_rows ? b->max_n : b->prefill_rows;
    b->scale = 1.0f / sqrtf((float)mc->head_dim);
    b->sp = select_params_of(sc, (int)cfg->mode, b->rep, b->scale);
    {
        cuda_kv *kv = &b->kv;
        struct nosa_kv_geometry g = {(uint32_t)mc->n_layers, (uint32_t)mc->n_kv_heads,
                                     (uint32_t)sc->block_size, (uint32_t)mc->head_dim,
                                     NOSA_KV_DTYPE_BF16};
        kv->block_bytes = nosa_kv_block_bytes(&g);
        kv->v_off = nosa_kv_block_v_offset(&g);
        kv->bias_off = nosa_kv_block_bias_offset(&g);
        kv->offload = cfg->offload ? 1 : 0;
        kv->max_blocks = (cfg->max_context + sc->block_size - 1) / sc->block_size;
        kv->pool_blocks = cfg->offload ? pool : 0;
        kv->prefetch = cfg->offload ? cfg->prefetch_blocks : 0;
        kv->kernel = sc->compress_kernel, kv->stride = sc->compress_stride;
        kv->max_c = cfg->max_context < kv->kernel
                        ? 0
                        : (cfg->max_context - kv->kernel) / kv->stride + 1;
        kv->n_layers = mc->n_layers, kv->n_kv = mc->n_kv_heads, kv->head_dim = mc->head_dim;
        kv->block_size = sc->block_size;
        kv->scratch_stride = select_scratch_floats(*kv, b->rep);
    }
    b->max_entries = b->kv.max_blocks + 1;
    b->max_chunks = attention_max_chunks(b->max_entries);
    {
        int smem_max = 0;
        CUDA_CHECK(cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                          cfg->device));
        if (!attention_supported(b->d, b->bs)) {
            nosa_set_error(err, errlen, "cuda backend: head_dim %d / block_size %d is not a shape "
                                        "the attention kernel is built for (head_dim 16, 32, 64, "
                                        "128, 256; block_size a multiple of 8 up to 64, "
                                        "or of 16 up to 128)",
                           b->d, b->bs);
            rc = -ENOTSUP;
            goto fail;
        }
        size_t need = attention_smem_bytes(b->kv);
        if (need > (size_t)smem_max) {
            nosa_set_error(err, errlen, "cuda backend: attention needs %zu bytes of shared "
                                        "memory per CTA, the device has %d", need, smem_max);
            rc = -ENOTSUP;
            goto fail;
        }
        CUDA_CHECK(attention_init(b->kv, cfg->device, &b->att_ctas));
        if (!score_supported(b->d)) {
            nosa_set_error(err, errlen, "cuda backend: head_dim %d is not one the scoring "
                                        "kernel is built for (16, 32, 64, 128, 256)", b->d);
            rc = -ENOTSUP;
            goto fail;
        }
        if (!evict_cis_supported(b->kvdim)) {
            nosa_set_error(err, errlen, "cuda backend: %d KV heads x head_dim %d = %d values "
                                        "per token exceed the eviction-score kernel's shared "
                                        "memory (at most %d)",
                           b->n_kv, b->d, b->kvdim, evict_cis_max_kvdim());
            rc = -ENOTSUP;
            goto fail;
        }
    }
    b->len = (int *)calloc((size_t)cfg->max_seqs, sizeof(int));
    b->stepped = (int *)calloc((size_t)cfg->max_seqs, sizeof(int));
    b->n_known = (int *)calloc((size_t)cfg->max_seqs, sizeof(int));
    b->h_groups = (uint32_t *)calloc((size_t)cfg->max_seqs * (size_t)b->kv.max_blocks,
                                     sizeof(uint32_t));
    if (!b->len || !b->stepped || !b->n_known || !b->h_groups) {
        rc = -ENOMEM;
        nosa_set_error(err, errlen, "cuda backend: out of host memory");
        goto fail;
    }
    {
        int least = 0, greatest = 0;
        CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
        CUDA_CHECK(cudaStreamCreateWithPriority(&b->stream, cudaStreamNonBlocking, greatest));
        CUDA_CHECK(cudaStreamCreateWithPriority(&b->ahead, cudaStreamNonBlocking, least));
    }
    CUDA_CHECK(cudaStreamCreateWithFlags(&b->side, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&b->ev_main, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&b->ev_side, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&b->ev_ahead, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&b->ev_info, cudaEventDisableTiming));
    CUBLAS_CHECK(cublasCreate(&b->blas));
    CUBLAS_CHECK(cublasSetStream(b->blas, b->stream));
    CUDA_CHECK(cudaMalloc(&b->blas_ws, BLAS_WORKSPACE));
    CUBLAS_CHECK(cublasSetWorkspace(b->blas, b->blas_ws, BLAS_WORKSPACE));
    if ((rc = alloc_marks(b, err, errlen))) goto fail;
    {
        const char *g = getenv("NOSA_CUDA_GRAPHS");
        b->use_graphs = !(g && strcmp(g, "0") == 0);
    }
    if ((rc = upload_weights(b, err, errlen))) goto fail;
    cos_h = (float *)malloc((size_t)cfg->max_context * (size_t)(b->d / 2) * sizeof(float));
    sin_h = (float *)malloc((size_t)cfg->max_context * (size_t)(b->d / 2) * sizeof(float));
    if (!cos_h || !sin_h) {
        rc = -ENOMEM;
        nosa_set_error(err, errlen, "cuda backend: out of host memory");
        goto fail;
    }
    nosa_cpu_rope_table_fill(cos_h, sin_h, cfg->max_context, b->d, (double)mc->rope_theta);
    if ((rc = upload1(&b->rope_cos, 0, cos_h, (size_t)cfg->max_context * (size_t)(b->d / 2), err,
                      errlen)))
        goto fail;
    if ((rc = upload1(&b->rope_sin, 0, sin_h, (size_t)cfg->max_context * (size_t)(b->d / 2), err,
                      errlen)))
        goto fail;
    if ((rc = alloc_kv(b, err, errlen))) goto fail;
    if ((rc = alloc_step(b, err, errlen))) goto fail;
    if (b->have_arena && (rc = register_arena(b, err, errlen))) goto fail;
    CUDA_CHECK(cudaDeviceSynchronize());
    b->stats.n_layers = (uint32_t)mc->n_layers;
    LOG_INFO("cuda", "backend created mode=%s offload=%d slots=%d max_context=%d pool_blocks=%d",
             nosa_attn_mode_name(cfg->mode), cfg->offload, cfg->max_seqs, cfg->max_context,
             b->cfg.pool_blocks);
    free(cos_h);
    free(sin_h);
    *out = b;
    return 0;
fail:
    free(cos_h);
    free(sin_h);
    cuda_destroy(b);
    return rc ? rc : -EIO;
}

/* Uploads the entries of slot's block table that the GPU lacks or that changed (in practice
 * the groups of newly allocated blocks): one small copy per block boundary. */
static int sync_groups(struct nosa_backend *b, int slot, const struct nosa_seq_blocks *blocks,
                       int n_after, char *err, size_t errlen)
{
    int rc = 0;
    if (!b->have_arena || !blocks || !blocks->groups) return 0;
    int need = n_after / b->bs;
    if (need > (int)blocks->n_groups) need = (int)blocks->n_groups;
    if (need > b->kv.max_blocks) need = b->kv.max_blocks;
    uint32_t *mirror = b->h_groups + (size_t)slot * (size_t)b->kv.max_blocks;
    int first = 0;
    while (first < need && first < b->n_known[slot] && mirror[first] == blocks->groups[first])
        first++;
    if (first >= need) return 0;
    memcpy(mirror + first, blocks->groups + first, (size_t)(need - first) * sizeof(uint32_t));
    CUDA_CHECK(cudaMemcpyAsync(b->d_groups + (size_t)slot * (size_t)b->kv.max_blocks + first,
                               mirror + first, (size_t)(need - first) * sizeof(uint32_t),
                               cudaMemcpyHostToDevice, b->stream));
    /* The mirror is pageable and reused by the next call: make the copy complete. */
    CUDA_CHECK(cudaStreamSynchronize(b->stream));
    b->n_known[slot] = need;
fail:
    return rc;
}

#define LAUNCHED() CUDA_CHECK_LAUNCH()

static int round_up(int v, int granule, int cap)
{
    v = (v + granule - 1) / granule * granule;
    return v < cap ? v : cap;
}

/* The launch shape of a step of n tokens at positions h_pos. */
static struct step_shape step_shape_of(const struct nosa_backend *b, int n, const int *h_pos,
                                       int want_logits)
{
    int max_sel = 0, max_nc = 0;
    for (int i = 0; i < n; i++) {
        int nb = h_pos[i] / b->bs, end = h_pos[i] + 1;
        int nc = end < b->kv.kernel ? 0 : (end - b->kv.kernel) / b->kv.stride + 1;
        if (nc > max_nc) max_nc = nc;
        int ns = b->sp.mode == NOSA_ATTN_DENSE || nb <= b->sp.k_total ? nb : b->sp.k_total;
        if (ns > max_sel) max_sel = ns;
    }
    struct step_shape sh;
    memset(&sh, 0, sizeof(sh)); /* compared with memcmp */
    sh.n = n;
    /* The open block is added after the rounding: a 64-block budget's lists hold 65
     * entries, and chunks sized for 80 left the last chunk of each what was left (16, 16,
     * 16, 16 and 1 blocks at batch 256), fifteenth session. */
    int ent = round_up(max_sel, ATT_ENTRIES_GRANULE, b->max_entries - 1) + 1;
    sh.chunk = attention_chunk_for(n * b->n_kv, ent, b->att_ctas);
    sh.n_chunks = (ent + sh.chunk - 1) / sh.chunk;
    sh.score_keys = max_nc ? round_up(max_nc, SCORE_KEYS_GRANULE, b->kv.max_c) : 0;
    sh.want_logits = want_logits;
    return sh;
}

/* Records the next timing mark on s; returns its index, -1 when not timing. While a graph is
 * captured the external flag makes the record a node of the graph (timed on every replay);
 * outside a capture that flag is refused. */
static int mark(struct nosa_backend *b, cudaStream_t s, char *err, size_t errlen)
{
    int rc = 0;
    if (!b->timing || b->n_marks == b->n_marks_max) return -1;
    CUDA_CHECK(cudaEventRecordWithFlags(b->marks[b->n_marks], s,
                                        b->capturing ? cudaEventRecordExternal : 0u));
    return b->n_marks++;
fail:
    b->mark_rc = rc; /* forward() returns it */
    return -1;
}

static void span(struct nosa_backend *b, enum step_phase phase, int from, int to)
{
    if (from < 0 || to < 0) return;
    b->spans[b->n_spans].from = from, b->spans[b->n_spans].to = to;
    b->spans[b->n_spans++].phase = phase;
}

/* Phase time of the step just waited for, into b->stats. */
static int collect_phase_times(struct nosa_backend *b, char *err, size_t errlen)
{
    int rc = 0;
    double sum[N_PHASES] = {0};
    for (int k = 0; k < b->n_spans; k++) {
        float ms = 0.0f;
        CUDA_CHECK(cudaEventElapsedTime(&ms, b->marks[b->spans[k].from], b->marks[b->spans[k].to]));
        sum[b->spans[k].phase] += (double)ms * 1e-3;
    }
    b->stats.gemm_s = sum[PHASE_GEMM], b->stats.select_s = sum[PHASE_SELECT];
    b->stats.copy_s = 0.0, b->stats.attn_s = sum[PHASE_ATTN];
fail:
    return rc;
}

/* A GEMM (and its epilogue) between two marks counted as GEMM time. */
#define TIMED_GEMM(stmt)                                                                    \
    do {                                                                                    \
        int m0_ = mark(b, s, err, errlen);                                                  \
        stmt;                                                                               \
        span(b, PHASE_GEMM, m0_, mark(b, s, err, errlen));                                  \
    } while (0)

/* y (row stride ldy) = or += (accumulate) the GEMM of W [out][in] with the split rows of
 * b->xs ([2 * rows][in], hi then lo) + bias: the GEMM into b->gout, then the combine. */
static int gemm_combine(struct nosa_backend *b, float *y, int ldy, const uint16_t *W,
                        const float *bias, int rows, int out, int in, int accumulate, char *err,
                        size_t errlen)
{
    int rc = 0;
    cudaStream_t s = b->stream;
    TIMED_GEMM({
        CUBLAS_CHECK(gemm_bf16_launch(b->blas, b->gout, W, b->xs, 2 * rows, out, in));
        combine_launch(y, ldy, b->gout, bias, rows, out, accumulate, s);
        LAUNCHED();
    });
fail:
    return rc;
}

/* A layer's work before the attention side, over `rows` rows of x (the GEMM's rows; more
 * than st.n in a prefill, whose GEMMs keep one shape): RMSNorm, q/k/v GEMM, then RoPE and the
 * eviction scores of st's tokens (rows r0 .. r0 + st.n - 1). */
static int layer_qkv(struct nosa_backend *b, const struct layer_dev *L, int rows, cuda_step st,
                     int r0, char *err, size_t errlen)
{
    int rc = 0;
    cudaStream_t s = b->stream;
    int qd = b->qdim, kvd = b->kvdim, ld = b->qkvdim;
    float *qkv = b->qkv + (size_t)r0 * (size_t)ld;
    rmsnorm_split_launch(b->xs, b->x, L->attn_norm, rows, b->hid, b->model->cfg.rms_eps, s);
    LAUNCHED();
    if ((rc = gemm_combine(b, b->qkv, ld, L->wqkv, L->bqkv, rows, ld, b->hid, 0, err, errlen)))
        return rc;
    rope_launch(qkv, ld, b->n_heads + b->n_kv, b->d, b->rope_cos, b->rope_sin, st.pos, st.n, s);
    LAUNCHED();
    evict_cis_launch(b->cis + (size_t)r0 * (size_t)b->n_kv, qkv, ld, qd + kvd, L->ev_w, L->ev_b,
                     L->ev_A, st.n, b->n_kv, kvd, s);
    LAUNCHED();
fail:
    return rc;
}

/* The stream for work that may leave the main stream: `to`, forked at the main stream's
 * current point, with side_streams; else the main stream itself. */
static int fork_stream(struct nosa_backend *b, int side_streams, cudaStream_t to,
                       cudaStream_t *out, char *err, size_t errlen)
{
    int rc = 0;
    *out = b->stream;
    if (!side_streams) return 0;
    CUDA_CHECK(cudaEventRecord(b->ev_main, b->stream));
    CUDA_CHECK(cudaStreamWaitEvent(to, b->ev_main, 0));
    *out = to;
fail:
    return rc;
}

/* The main stream waits for what was enqueued on `from` so far (ev: an event of its own). */
static int join_stream(struct nosa_backend *b, cudaStream_t from, cudaEvent_t ev, char *err,
                       size_t errlen)
{
    int rc = 0;
    CUDA_CHECK(cudaEventRecord(ev, from));
    CUDA_CHECK(cudaStreamWaitEvent(b->stream, ev, 0));
fail:
    return rc;
}

/* Layer l's attention side for the tokens of st (distinct slots), whose rows start at row r0
 * of qkv, cis and att: append K/V (+ compression), scoring, selection, delta, attention (the
 * misses' copy inside it), then, unless `may_complete` says no token completes a block, the
 * pool install of completed blocks and their write-back to the arena, then the read-ahead's
 * plan and copies (kv.prefetch). The write-back and the read-ahead's copies go on side
 * streams (`side_streams`, overlapping the rest of the step, which joins them) or in order
 * on the main stream, where a later token of the same slot reuses the open block the
 * write-back reads and the pool the read-ahead fills. */
static int layer_attend(struct nosa_backend *b, int l, cuda_step st, int r0,
                        const struct step_shape *sh, int may_complete, int side_streams,
                        char *err, size_t errlen)
{
    int rc = 0;
    cudaStream_t s = b->stream;
    int qd = b->qdim, kvd = b->kvdim, ld = b->qkvdim;
    const float *qkv = b->qkv + (size_t)r0 * (size_t)ld;
    int m_sel, m_att;
    kv_append_launch(b->kv, st, l, qkv, ld, qd, qd + kvd, b->cis + (size_t)r0 * (size_t)b->n_kv,
                     s);
    LAUNCHED();
    m_sel = mark(b, s, err, errlen);
    score_launch(b->kv, st, l, b->sp, qkv, ld, b->sel_scratch, sh->score_keys, s);
    LAUNCHED();
    select_launch(b->kv, st, l, b->sp, b->sel_scratch, s);
    LAUNCHED();
    pool_delta_launch(b->kv, st, l, b->pl, b->arena_dev, b->d_groups, b->kv.max_blocks,
                      b->sel_scratch, b->sp.rep, b->d_stats, s);
    LAUNCHED();
    m_att = mark(b, s, err, errlen);
    span(b, PHASE_SELECT, m_sel, m_att);
    attention_launch(b->att + (size_t)r0 * (size_t)qd, b->att_part, qkv, ld, b->pl.ptrs,
                     b->kv.offload ? b->pl.miss_src : NULL, b->pl.n_ent, b->kv, st, b->rep,
                     b->scale, sh->chunk, sh->n_chunks, s);
    LAUNCHED();
    span(b, PHASE_ATTN, m_att, mark(b, s, err, errlen));
    if (may_complete && b->kv.offload) {
        pool_complete_launch(b->kv, st, l, s);
        LAUNCHED();
    }
    if (may_complete && b->have_arena) {
        /* A no-op for tokens whose block stays open. */
        cudaStream_t ws;
        if ((rc = fork_stream(b, side_streams, b->side, &ws, err, errlen))) return rc;
        writeback_launch(b->kv, st, l, b->arena_dev, b->d_groups, b->kv.max_blocks, ws);
        LAUNCHED();
    }
    if (b->kv.prefetch > 0) {
        /* The plan reads this layer's scores from the scratch the next layer's scoring
         * overwrites, so it stays on the main stream; the copies only fill the slots it
         * chose, which nothing touches before this layer's next pool_delta. */
        pool_prefetch_plan_launch(b->kv, st, l, b->sel_scratch, b->sp.rep, b->d_stats, s);
        LAUNCHED();
        cudaStream_t ps;
        if ((rc = fork_stream(b, side_streams, b->ahead, &ps, err, errlen))) return rc;
        pool_prefetch_copy_launch(b->kv, st, l, b->arena_dev, b->d_groups, b->kv.max_blocks, ps);
        LAUNCHED();
    }
fail:
    return rc;
}

/* A layer's work after the attention side, over `rows` rows: O GEMM (+ residual), RMSNorm,
 * MLP (+ residual). */
static int layer_mlp(struct nosa_backend *b, const struct layer_dev *L, int rows, char *err,
                     size_t errlen)
{
    int rc = 0;
    cudaStream_t s = b->stream;
    split_launch(b->xs, b->att, rows, b->qdim, s);
    LAUNCHED();
    if ((rc = gemm_combine(b, b->x, b->hid, L->wo, NULL, rows, b->hid, b->qdim, 1, err, errlen)))
        return rc;
    rmsnorm_split_launch(b->xs, b->x, L->mlp_norm, rows, b->hid, b->model->cfg.rms_eps, s);
    LAUNCHED();
    TIMED_GEMM(CUBLAS_CHECK(gemm_bf16_launch(b->blas, b->gout, L->wgu, b->xs, 2 * rows,
                                             2 * b->inter, b->hid)));
    swiglu_split_launch(b->xs, b->gout, rows, b->inter, s);
    LAUNCHED();
    rc = gemm_combine(b, b->x, b->hid, L->wdown, NULL, rows, b->hid, b->inter, 1, err, errlen);
fail:
    return rc;
}

/* Final norm and LM head of n rows of x from row r0, into b->logits rows out_row ..
 * out_row + n - 1. */
static int lm_head(struct nosa_backend *b, int r0, int n, int out_row, char *err, size_t errlen)
{
    int rc = 0;
    cudaStream_t s = b->stream;
    rmsnorm_split_launch(b->xs, b->x + (size_t)r0 * (size_t)b->hid, b->final_norm, n, b->hid,
                         b->model->cfg.rms_eps, s);
    LAUNCHED();
    rc = gemm_combine(b, b->logits + (size_t)out_row * (size_t)b->vocab, b->vocab, b->lm_head,
                      NULL, n, b->vocab, b->hid, 0, err, errlen);
fail:
    return rc;
}

/* One forward pass of n tokens (token i of slot d_slot[i] at position d_pos[i], distinct
 * slots) of launch shape sh. Logits of every token go to b->logits when
 * sh.want_logits. Enqueued on b->stream; nothing is waited for and nothing here depends on
 * host-side per-token data, so the whole call can be captured as a graph. */
static int forward(struct nosa_backend *b, const struct step_shape *sh, char *err, size_t errlen)
{
    int rc = 0;
    cudaStream_t s = b->stream;
    int n = sh->n;
    cuda_step st = {b->d_slot, b->d_pos, n};
    if (b->timing) b->n_marks = 0, b->n_spans = 0, b->mark_rc = 0;

    embed_launch(b->x, b->tok_embed, b->d_tok, n, b->hid, s);
    LAUNCHED();
    for (int l = 0; l < b->model->cfg.n_layers; l++) {
        const struct layer_dev *L = &b->layers[l];
        if ((rc = layer_qkv(b, L, n, st, 0, err, errlen)) ||
            (rc = layer_attend(b, l, st, 0, sh, 1, 1, err, errlen)) ||
            (rc = layer_mlp(b, L, n, err, errlen)))
            return rc;
    }
    /* The next step's append reuses the open blocks the write-back reads. */
    if (b->have_arena && (rc = join_stream(b, b->side, b->ev_side, err, errlen))) return rc;
    if (sh->want_logits && (rc = lm_head(b, 0, n, 0, err, errlen))) return rc;
    /* The next step's pool_delta of each layer needs its read-ahead in the pool; joined
     * last, so the last layers' copies overlap the LM head. */
    if (b->kv.prefetch > 0 && (rc = join_stream(b, b->ahead, b->ev_ahead, err, errlen)))
        return rc;
    rc = b->mark_rc;
fail:
    return rc;
}

/* One sequence's part of a prefill round: positions [from, to) of its slot, inside one
 * PREFILL_ROWS-aligned span; tokens[0] is position from's. logits_row: the row of b->logits
 * that gets the last position's logits, -1 for none. */
struct prefill_piece {
    int slot, from, to, logits_row;
    const int32_t *tokens;
};

/* One prefill round of up to prefill_lanes pieces (distinct slots), with the definition's
 * result: that of single-token steps, each token seeing the state the tokens before it left.
 * Layer by layer, the GEMMs, norms and MLP take every piece's tokens at once, while the
 * attention side runs span position by span position, the pieces' tokens at that position
 * side by side (distinct slots, as in a decode step). The GEMMs always have prefill_rows
 * rows (PREFILL_ROWS positions x prefill_lanes): span position r holds rows [r * lanes,
 * r * lanes + count[r]), the other rows are filler that no kept row depends on, so a token's
 * arithmetic depends neither on where its prompt was cut nor on which prompts share the
 * round. */
static int forward_prefill(struct nosa_backend *b, const struct prefill_piece *pc, int n_pc,
                           char *err, size_t errlen)
{
    int rc = 0;
    cudaStream_t s = b->stream;
    int lanes = b->prefill_lanes, rows = b->prefill_rows;
    int count[PREFILL_ROWS] = {0}, completes[PREFILL_ROWS] = {0};
    struct step_shape sh[PREFILL_ROWS];
    size_t mt = (size_t)b->max_tok;
    int32_t *ht = b->h_info, *hs = ht + mt, *hp = hs + mt;
    /* The previous round's upload of h_info must have happened before it is refilled. */
    CUDA_CHECK(cudaEventSynchronize(b->ev_info));
    memset(b->h_info, 0, 3 * mt * sizeof(int32_t));
    for (int k = 0; k < n_pc; k++) {
        for (int p = pc[k].from; p < pc[k].to; p++) {
            int r = p % PREFILL_ROWS, row = r * lanes + count[r]++;
            ht[row] = pc[k].tokens[p - pc[k].from], hs[row] = pc[k].slot, hp[row] = p;
            completes[r] |= (p + 1) % b->bs == 0;
        }
    }
    for (int r = 0; r < PREFILL_ROWS; r++)
        if (count[r]) sh[r] = step_shape_of(b, count[r], hp + r * lanes, 0);
    CUDA_CHECK(cudaMemcpyAsync(b->d_tok, b->h_info, 3 * mt * sizeof(int32_t),
                               cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaEventRecord(b->ev_info, s));
    CUDA_CHECK(cudaMemsetAsync(b->att, 0, (size_t)rows * b->qdim * sizeof(float), s));
    embed_launch(b->x, b->tok_embed, b->d_tok, rows, b->hid, s);
    LAUNCHED();
    for (int l = 0; l < b->model->cfg.n_layers; l++) {
        const struct layer_dev *L = &b->layers[l];
        cuda_step all = {b->d_slot, b->d_pos, rows};
        if ((rc = layer_qkv(b, L, rows, all, 0, err, errlen))) return rc;
        for (int r = 0; r < PREFILL_ROWS; r++) {
            if (!count[r]) continue;
            cuda_step at = {b->d_slot + r * lanes, b->d_pos + r * lanes, count[r]};
            if ((rc = layer_attend(b, l, at, r * lanes, &sh[r], completes[r], 0, err, errlen)))
                return rc;
        }
        if ((rc = layer_mlp(b, L, rows, err, errlen))) return rc;
    }
    for (int k = 0; k < n_pc; k++) {
        if (pc[k].logits_row < 0) continue;
        int last = pc[k].to - 1, r = last % PREFILL_ROWS, row = r * lanes;
        while (hs[row] != pc[k].slot || hp[row] != last) row++;
        if ((rc = lm_head(b, row, 1, pc[k].logits_row, err, errlen))) return rc;
    }
fail:
    return rc;
}

/* The decode step's forward pass: replayed from a graph when one was captured for its
 * shape, captured once a shape has repeated GRAPH_AFTER times, else enqueued directly. */
static int forward_decode(struct nosa_backend *b, const struct step_shape *sh, char *err,
                          size_t errlen)
{
    int rc = 0;
    cudaGraph_t g = NULL;
    int capturing = 0;
    if (!b->use_graphs) return forward(b, sh, err, errlen);
    if (b->graph && memcmp(&b->graph_shape, sh, sizeof(*sh)) == 0) {
        /* The marks the graph records are those of its capture. */
        memcpy(b->spans, b->graph_spans, (size_t)b->n_graph_spans * sizeof(*b->spans));
        b->n_spans = b->n_graph_spans;
        CUDA_CHECK(cudaGraphLaunch(b->graph, b->stream));
        b->graph_launches++;
        return 0;
    }
    b->shape_repeats = memcmp(&b->last_shape, sh, sizeof(*sh)) == 0 ? b->shape_repeats + 1 : 0;
    b->last_shape = *sh;
    if (b->shape_repeats < GRAPH_AFTER) return forward(b, sh, err, errlen);
    if (b->graph) {
        CUDA_CHECK(cudaGraphExecDestroy(b->graph));
        b->graph = NULL;
    }
    CUDA_CHECK(cudaStreamBeginCapture(b->stream, cudaStreamCaptureModeThreadLocal));
    capturing = b->capturing = 1;
    if ((rc = forward(b, sh, err, errlen))) goto fail;
    capturing = b->capturing = 0;
    CUDA_CHECK(cudaStreamEndCapture(b->stream, &g));
    CUDA_CHECK(cudaGraphInstantiate(&b->graph, g, 0));
    b->graph_shape = *sh;
    memcpy(b->graph_spans, b->spans, (size_t)b->n_spans * sizeof(*b->spans));
    b->n_graph_spans = b->n_spans;
    b->graph_captures++;
    CUDA_CHECK(cudaGraphLaunch(b->graph, b->stream));
    b->graph_launches++;
fail:
    b->capturing = 0;
    if (capturing) {
        /* End the broken capture so the stream is usable; its error is already in err. */
        cudaGraph_t broken = NULL;
        (void)cudaStreamEndCapture(b->stream, &broken);
        if (broken) (void)cudaGraphDestroy(broken);
        (void)cudaGetLastError();
    }
    if (g) (void)cudaGraphDestroy(g);
    return rc;
}

/* Bytes a call writes to the arena per layer when `completes` blocks complete: one block per
 * KV head each (every layer writes the same). */
static uint64_t layer_d2h_bytes(const struct nosa_backend *b, uint64_t completes)
{
    if (!b->have_arena) return 0;
    return completes * (uint64_t)b->n_kv * (uint64_t)b->kv.block_bytes;
}

static int stats_begin(struct nosa_backend *b, char *err, size_t errlen)
{
    int rc = 0;
    memset(&b->stats, 0, sizeof(b->stats));
    b->stats.n_layers = (uint32_t)b->model->cfg.n_layers;
    b->stats.seconds = now_seconds();
    CUDA_CHECK(cudaMemsetAsync(b->d_stats, 0,
                               POOL_STATS * (size_t)b->model->cfg.n_layers *
                                   sizeof(unsigned long long),
                               b->stream));
fail:
    return rc;
}

/* The next run [*from, return) of consecutive rows of [*from, n) whose logits out wants;
 * *from is moved to the run's first row (n when none is left). */
static int wanted_logit_run(const struct nosa_decode_out *out, int n, int *from)
{
    int i = *from;
    while (i < n && out->want_logits && !out->want_logits[i]) i++;
    int j = i;
    while (j < n && (!out->want_logits || out->want_logits[j])) j++;
    *from = i;
    return j;
}

/* Whether out asks for any of the n rows to be drawn (temperature > 0): only then are the
 * rows' sampling parameters copied up, the sampling kernel launched and its tokens copied
 * back (the engine passes sampling for greedy rows too). */
static int rows_drawn(const struct nosa_decode_out *out, int n)
{
    if (!out || !out->sampling || !out->sampled) return 0;
    for (int i = 0; i < n; i++)
        if (out->sampling[i].temperature > 0.0f) return 1;
    return 0;
}

/* Copies back what out asks for of the n rows (the argmax kernel, when wanted, was enqueued
 * after the forward pass) and the stats, waits for the step; layer_d2h: each layer's bytes
 * written to the arena (layer_d2h_bytes). */
static int finish_call(struct nosa_backend *b, int n, const struct nosa_decode_out *out,
                       uint64_t layer_d2h, char *err, size_t errlen)
{
    int rc = 0, drawn = rows_drawn(out, n);
    int L = b->model->cfg.n_layers;
    size_t row = (size_t)b->vocab;
    if (out && out->logits)
        for (int i = 0, j; (j = wanted_logit_run(out, n, &i)) > i; i = j)
            CUDA_CHECK(cudaMemcpyAsync(b->h_logits + i * row, b->logits + i * row,
                                       (size_t)(j - i) * row * sizeof(float),
                                       cudaMemcpyDeviceToHost, b->stream));
    if (out && out->argmax)
        CUDA_CHECK(cudaMemcpyAsync(b->h_argmax, b->d_argmax, (size_t)n * sizeof(int32_t),
                                   cudaMemcpyDeviceToHost, b->stream));
    if (drawn)
        CUDA_CHECK(cudaMemcpyAsync(b->h_sampled, b->d_sampled, (size_t)n * sizeof(int32_t),
                                   cudaMemcpyDeviceToHost, b->stream));
    CUDA_CHECK(cudaMemcpyAsync(b->h_stats, b->d_stats,
                               POOL_STATS * (size_t)L * sizeof(unsigned long long),
                               cudaMemcpyDeviceToHost, b->stream));
    CUDA_CHECK(cudaStreamSynchronize(b->stream));
    if (out && out->logits)
        for (int i = 0, j; (j = wanted_logit_run(out, n, &i)) > i; i = j)
            memcpy(out->logits + i * row, b->h_logits + i * row,
                   (size_t)(j - i) * row * sizeof(float));
    if (out && out->argmax) memcpy(out->argmax, b->h_argmax, (size_t)n * sizeof(int32_t));
    if (drawn)
        for (int i = 0; i < n; i++)
            if (out->sampling[i].temperature > 0.0f) out->sampled[i] = b->h_sampled[i];
    for (int l = 0; l < L; l++) {
        struct nosa_layer_stats *ls = &b->stats.layer[l];
        const unsigned long long *c = b->h_stats + POOL_STATS * l;
        ls->selected = c[0], ls->transferred = c[1], ls->hits = c[2], ls->prefetched = c[3];
        ls->bytes_h2d = (ls->transferred + ls->prefetched) * b->kv.block_bytes;
        ls->bytes_d2h = layer_d2h;
        b->stats.blocks_selected += ls->selected;
        b->stats.blocks_transferred += ls->transferred;
        b->stats.block_hits += ls->hits;
        b->stats.blocks_prefetched += ls->prefetched;
        b->stats.bytes_h2d += ls->bytes_h2d;
        b->stats.bytes_d2h += ls->bytes_d2h;
    }
    if (b->timing && (rc = collect_phase_times(b, err, errlen))) goto fail;
    b->stats.seconds = now_seconds() - b->stats.seconds;
fail:
    return rc;
}

/* The requests in groups of prefill_lanes, each group in rounds of one aligned span per
 * request (forward_prefill). Not timed by phase: the split describes decode steps. */
static int cuda_prefill(struct nosa_backend *b, const struct nosa_prefill_req *reqs, int n_reqs,
                        char *err, size_t errlen)
{
    int rc = nosa_backend_check_prefill(&b->limits, b->len, reqs, n_reqs, err, errlen);
    if (rc) return rc;
    size_t row = (size_t)b->vocab;
    uint64_t tokens = 0, completes = 0;
    CUDA_CHECK(cudaSetDevice(b->cfg.device));
    for (int k = 0; k < n_reqs; k++) {
        const struct nosa_prefill_req *r = &reqs[k];
        if ((rc = sync_groups(b, r->slot, r->blocks, b->len[r->slot] + r->n, err, errlen)))
            return rc;
        tokens += (uint64_t)r->n;
        completes += (uint64_t)((b->len[r->slot] + r->n) / b->bs - b->len[r->slot] / b->bs);
    }
    if ((rc = stats_begin(b, err, errlen))) return rc;
    b->timing = 0;
    for (int g = 0; g < n_reqs; g += b->prefill_lanes) {
        int n_g = n_reqs - g < b->prefill_lanes ? n_reqs - g : b->prefill_lanes;
        int done[PREFILL_LANES] = {0};
        for (;;) {
            struct prefill_piece pc[PREFILL_LANES];
            int n_pc = 0;
            for (int k = 0; k < n_g; k++) {
                const struct nosa_prefill_req *r = &reqs[g + k];
                if (done[k] == r->n) continue;
                int from = b->len[r->slot] + done[k];
                int m = PREFILL_ROWS - from % PREFILL_ROWS;
                if (m > r->n - done[k]) m = r->n - done[k];
                done[k] += m;
                pc[n_pc++] = (struct prefill_piece){r->slot, from, from + m,
                                                    done[k] == r->n && r->logits ? g + k : -1,
                                                    r->tokens + done[k] - m};
            }
            if (n_pc == 0) break;
            if ((rc = forward_prefill(b, pc, n_pc, err, errlen))) return rc;
        }
    }
    for (int k = 0; k < n_reqs; k++)
        if (reqs[k].logits)
            CUDA_CHECK(cudaMemcpyAsync(b->h_logits + k * row, b->logits + k * row,
                                       row * sizeof(float), cudaMemcpyDeviceToHost, b->stream));
    b->stats.tokens = tokens;
    if ((rc = finish_call(b, n_reqs, NULL, layer_d2h_bytes(b, completes), err, errlen)))
        return rc;
    for (int k = 0; k < n_reqs; k++) {
        const struct nosa_prefill_req *r = &reqs[k];
        if (r->logits) memcpy(r->logits, b->h_logits + k * row, row * sizeof(float));
        b->len[r->slot] += r->n;
        b->stepped[r->slot] = 1;
    }
fail:
    return rc;
}

static int cuda_decode(struct nosa_backend *b, int n, const int *slots, const int32_t *tokens,
                       const struct nosa_seq_blocks *blocks, const struct nosa_decode_out *out,
                       char *err, size_t errlen)
{
    int rc = 0, drawn = 0;
    if (n < 1 || n > b->cfg.max_seqs || !slots || !tokens) {
        nosa_set_error(err, errlen, "cuda backend: decode of %d sequences (1 .. %d)", n,
                       b->cfg.max_seqs);
        return -EINVAL;
    }
    int32_t *ht = b->h_info, *hs = ht + b->max_tok, *hp = hs + b->max_tok;
    for (int i = 0; i < n; i++) {
        if ((rc = nosa_backend_check_append(&b->limits, slots[i], b->len, tokens + i,
                                            1, blocks ? blocks + i : NULL, err, errlen)))
            return rc;
        for (int j = 0; j < i; j++) {
            if (slots[j] == slots[i]) {
                nosa_set_error(err, errlen, "cuda backend: slot %d appears twice in one step",
                               slots[i]);
                return -EINVAL;
            }
        }
    }
    CUDA_CHECK(cudaSetDevice(b->cfg.device));
    for (int i = 0; i < n; i++) {
        if ((rc = sync_groups(b, slots[i], blocks ? blocks + i : NULL, b->len[slots[i]] + 1, err,
                              errlen)))
            return rc;
        ht[i] = tokens[i], hs[i] = slots[i], hp[i] = b->len[slots[i]];
    }
    CUDA_CHECK(cudaMemcpyAsync(b->d_tok, ht, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice,
                               b->stream));
    CUDA_CHECK(cudaMemcpyAsync(b->d_slot, hs, (size_t)n * sizeof(int32_t),
                               cudaMemcpyHostToDevice, b->stream));
    CUDA_CHECK(cudaMemcpyAsync(b->d_pos, hp, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice,
                               b->stream));
    if ((rc = stats_begin(b, err, errlen))) return rc;
    b->timing = 1;
    drawn = rows_drawn(out, n);
    {
        struct step_shape sh = step_shape_of(b, n, hp,
                                             out && (out->logits || out->argmax || drawn));
        if ((rc = forward_decode(b, &sh, err, errlen))) return rc;
    }
    if (out && out->argmax) {
        argmax_launch(b->d_argmax, b->logits, n, b->vocab, b->stream);
        CUDA_CHECK_LAUNCH();
    }
    if (drawn) {
        memcpy(b->h_sampling, out->sampling, (size_t)n * sizeof(*b->h_sampling));
        CUDA_CHECK(cudaMemcpyAsync(b->d_sampling, b->h_sampling,
                                   (size_t)n * sizeof(*b->h_sampling), cudaMemcpyHostToDevice,
                                   b->stream));
        sample_launch(b->d_sampled, b->d_sample_keys, b->logits, n, b->vocab, b->d_sampling,
                      b->stream);
        CUDA_CHECK_LAUNCH();
    }
    b->stats.tokens = (uint64_t)n;
    {
        uint64_t completes = 0;
        for (int i = 0; i < n; i++) completes += (hp[i] + 1) % b->bs == 0;
        if ((rc = finish_call(b, n, out, layer_d2h_bytes(b, completes), err, errlen))) return rc;
    }
    for (int i = 0; i < n; i++) {
        b->len[slots[i]]++;
        b->stepped[slots[i]] = 1;
    }
fail:
    return rc;
}

/* Empties the slot's selection state and pool (device), stream-ordered. */
static int reset_slot_state(struct nosa_backend *b, int slot, char *err, size_t errlen)
{
    int rc = 0;
    cuda_kv *kv = &b->kv;
    size_t nh = (size_t)b->model->cfg.n_layers * (size_t)b->n_kv, ih0 = (size_t)slot * nh;
    CUDA_CHECK(cudaMemsetAsync(kv->n_sel + ih0, 0, nh * sizeof(int32_t), b->stream));
    if (kv->offload) {
        size_t mb = (size_t)kv->max_blocks, pb = (size_t)kv->pool_blocks;
        CUDA_CHECK(cudaMemsetAsync(kv->pool_of + ih0 * mb, 0xff, nh * mb * sizeof(int32_t),
                                   b->stream));
        CUDA_CHECK(cudaMemsetAsync(kv->block_of + ih0 * pb, 0xff, nh * pb * sizeof(int32_t),
                                   b->stream));
        CUDA_CHECK(cudaMemsetAsync(kv->stamp + ih0 * pb, 0, nh * pb * sizeof(uint32_t),
                                   b->stream));
    }
    b->len[slot] = 0;
    b->stepped[slot] = 0;
    b->n_known[slot] = 0;
fail:
    return rc;
}

static int cuda_seq_reset(struct nosa_backend *b, int slot, char *err, size_t errlen)
{
    int rc = nosa_backend_check_slot(&b->limits, slot, err, errlen);
    if (rc) return rc;
    CUDA_CHECK(cudaSetDevice(b->cfg.device));
    rc = reset_slot_state(b, slot, err, errlen);
fail:
    return rc;
}

static int cuda_seq_resume(struct nosa_backend *b, int slot, const struct nosa_seq_blocks *blocks,
                           uint32_t n_blocks, char *err, size_t errlen)
{
    int rc = nosa_backend_check_slot(&b->limits, slot, err, errlen);
    if (rc) return rc;
    if (!b->have_arena) {
        nosa_set_error(err, errlen, "cuda backend: seq_resume needs a host arena");
        return -EINVAL;
    }
    if (n_blocks > (uint32_t)(b->cfg.max_context / b->bs)) {
        nosa_set_error(err, errlen, "cuda backend: resuming %u blocks exceeds max_context %d",
                       n_blocks, b->cfg.max_context);
        return -ENOSPC;
    }
    if ((rc = nosa_backend_check_blocks(&b->limits, slot, (int)n_blocks * b->bs, blocks, err,
                                        errlen)))
        return rc;
    CUDA_CHECK(cudaSetDevice(b->cfg.device));
    if ((rc = reset_slot_state(b, slot, err, errlen))) return rc;
    if ((rc = sync_groups(b, slot, blocks, (int)n_blocks * b->bs, err, errlen))) return rc;
    kv_resume_launch(b->kv, slot, (int)n_blocks, b->arena_dev,
                     b->d_groups + (size_t)slot * (size_t)b->kv.max_blocks, b->stream);
    LAUNCHED();
    CUDA_CHECK(cudaStreamSynchronize(b->stream));
    b->len[slot] = (int)n_blocks * b->bs;
fail:
    return rc;
}

static int cuda_last_selection(const struct nosa_backend *b, int slot, int layer, int kv_head,
                               int32_t *out, int cap)
{
    if (slot < 0 || slot >= b->cfg.max_seqs || layer < 0 || layer >= b->model->cfg.n_layers ||
        kv_head < 0 || kv_head >= b->n_kv)
        return -EINVAL;
    size_t ih = ((size_t)slot * (size_t)b->model->cfg.n_layers + (size_t)layer) *
                    (size_t)b->n_kv + (size_t)kv_head;
    int32_t n = 0;
    if (cudaSetDevice(b->cfg.device) != cudaSuccess ||
        cudaStreamSynchronize(b->stream) != cudaSuccess ||
        cudaMemcpy(&n, b->kv.n_sel + ih, sizeof(n), cudaMemcpyDeviceToHost) != cudaSuccess)
        return -EIO;
    if (n > cap) return -ENOSPC;
    if (n > 0 && cudaMemcpy(out, b->kv.last_sel + ih * (size_t)b->kv.max_blocks,
                            (size_t)n * sizeof(int32_t), cudaMemcpyDeviceToHost) != cudaSuccess)
        return -EIO;
    return n;
}

static void cuda_stats(const struct nosa_backend *b, struct nosa_step_stats *out)
{
    *out = b->stats;
}

extern "C" void nosa_backend_cuda_graph_counts(const struct nosa_backend *b,
                                               unsigned long *captures, unsigned long *launches)
{
    *captures = b->graph_captures;
    *launches = b->graph_launches;
}

extern "C" const struct nosa_backend_ops nosa_backend_cuda_ops = {
    "cuda",
    cuda_create,
    cuda_destroy,
    cuda_seq_reset,
    cuda_prefill,
    cuda_decode,
    cuda_seq_resume,
    cuda_last_selection,
    cuda_stats,
    PREFILL_LANES,
};
