/* test_cuda_kernels: each CUDA op against the CPU reference math (gpu-worker/cpu/ops.h),
 * table-driven over shapes, fresh random inputs per case, outputs poisoned (NaN) first so an
 * unwritten element fails. Error measure: ||out - ref|| / ||ref||. Tolerances:
 * - rmsnorm + bf16 GEMM + combine, swiglu: 1e-5. Weights are bf16-exact on both sides and
 *   the activation goes in as two bf16 terms (hi + lo, ~2^-17 relative), so what remains is
 *   f32 accumulation order (~1e-7 per term, sqrt(K) growth);
 * - rope: 1e-6 (same table, same roundings, no fused multiply-add);
 * - attention: 1e-5 (f32 arithmetic in another order, expf ulps); with some blocks read from
 *   the mapped host arena instead of the pool (offload misses): bit-identical to the run
 *   over the pool, and those blocks installed in their pool slots byte for byte;
 * - query x compressed-key scores (tensor cores, f32 query as bf16 hi + lo): 1e-5 against
 *   double precision (the split keeps ~2^-17 of the query, then f32 accumulation); each
 *   128-key chunk's softmax statistics: the max exactly, the sum of exp within 1e-5 of
 *   double precision over the kernel's own logits (f32 sums of <= 128 terms, expf ulps);
 * - argmax: exact;
 * - sampling (temperature, top-p): exactly the host's nosa_sample_row token on every row (the
 *   rule is integer arithmetic over keys computed by the same correctly rounded operations),
 *   -1 for a NaN row and an all -inf row, temperature-0 rows not written. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

#include "attention.cuh"
#include "argmax.cuh"
#include "gemm.cuh"
#include "rmsnorm.cuh"
#include "rope.cuh"
#include "sample.cuh"
#include "score.cuh"
#include "swiglu.cuh"

extern "C" {
#include "backend.h"
#include "bf16.h"
#include "kv_geometry.h"
#include "ops.h"
}
#include "test_util.h"

#define CK(call)                                                                          \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        REQUIRE(e_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_));             \
    } while (0)

static uint64_t g_rng = 0x1234567887654321ull;
static float frand(void) /* uniform [-1, 1) */
{
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_rng >> 40) * 0x1p-24) * 2.0f - 1.0f;
}
static float bf16_round(float x) { return nosa_bf16_to_f32(nosa_f32_to_bf16(x)); }

template <typename T> static T *dev_copy(const std::vector<T> &h)
{
    T *d = NULL;
    CK(cudaMalloc((void **)&d, h.size() * sizeof(T) + 16));
    CK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <typename T> static std::vector<T> host_copy(const T *d, size_t n)
{
    std::vector<T> h(n);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}
static double rel_err(const std::vector<float> &a, const std::vector<float> &ref)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        if (!isfinite(a[i])) return INFINITY;
        num += (a[i] - (double)ref[i]) * (a[i] - (double)ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* RMSNorm -> two-term bf16 -> cuBLAS GEMM -> combine (+bias, +residual). */
static void test_norm_gemm(cublasHandle_t h, int n, int in, int out)
{
    std::vector<float> x(n * in), w(in), W(out * in), bias(out), resid(n * out);
    for (auto &v : x) v = frand() * 2;
    for (auto &v : w) v = 1 + 0.1f * frand();
    for (auto &v : W) v = bf16_round(frand() / sqrtf((float)in));
    for (auto &v : bias) v = frand();
    for (auto &v : resid) v = frand();
    std::vector<uint16_t> Wb(W.size());
    for (size_t i = 0; i < W.size(); i++) Wb[i] = nosa_f32_to_bf16(W[i]);
    float *dx = dev_copy(x), *dw = dev_copy(w), *db = dev_copy(bias), *dy = dev_copy(resid);
    uint16_t *dW = dev_copy(Wb), *dxs;
    float *dG;
    CK(cudaMalloc((void **)&dxs, 2 * n * in * sizeof(uint16_t)));
    CK(cudaMalloc((void **)&dG, 2 * n * out * sizeof(float)));
    rmsnorm_split_launch(dxs, dx, dw, n, in, 1e-6f, 0);
    REQUIRE(gemm_bf16_launch(h, dG, dW, dxs, 2 * n, out, in) == CUBLAS_STATUS_SUCCESS, "gemm");
    combine_launch(dy, out, dG, db, n, out, 1, 0);
    CK(cudaGetLastError());
    std::vector<float> got = host_copy(dy, n * out), ref(n * out), xn(in), yr(out);
    for (int i = 0; i < n; i++) {
        nosa_cpu_rmsnorm(xn.data(), &x[i * in], w.data(), in, 1e-6f);
        nosa_cpu_matvec(yr.data(), W.data(), bias.data(), xn.data(), out, in);
        for (int o = 0; o < out; o++) ref[i * out + o] = resid[i * out + o] + yr[o];
    }
    double e = rel_err(got, ref);
    CHECK(e <= 1e-5, "norm+gemm n=%d in=%d out=%d: rel err %g", n, in, out, e);
    cudaFree(dx), cudaFree(dw), cudaFree(db), cudaFree(dy), cudaFree(dW), cudaFree(dxs);
    cudaFree(dG);
}

static void test_rope(int n, int heads, int d)
{
    int half = d / 2, n_pos = 300;
    std::vector<float> ct(n_pos * half), st(n_pos * half), x(n * heads * d);
    nosa_cpu_rope_table_fill(ct.data(), st.data(), n_pos, d, 10000.0);
    for (auto &v : x) v = frand();
    std::vector<int32_t> pos(n);
    for (auto &p : pos) p = (int32_t)((frand() + 1) * 149);
    float *dx = dev_copy(x), *dc = dev_copy(ct), *ds = dev_copy(st);
    int32_t *dp = dev_copy(pos);
    rope_launch(dx, heads * d, heads, d, dc, ds, dp, n, 0);
    CK(cudaGetLastError());
    std::vector<float> got = host_copy(dx, x.size()), ref = x;
    for (int i = 0; i < n; i++)
        for (int hd = 0; hd < heads; hd++)
            nosa_cpu_rope_apply(&ref[(i * heads + hd) * d], &ct[pos[i] * half],
                                &st[pos[i] * half], d);
    double e = rel_err(got, ref);
    CHECK(e <= 1e-6, "rope n=%d heads=%d d=%d: rel err %g", n, heads, d, e);
    cudaFree(dx), cudaFree(dc), cudaFree(ds), cudaFree(dp);
}

static void test_swiglu(int n, int inter)
{
    std::vector<float> G(2 * n * 2 * inter);
    for (auto &v : G) v = 3 * frand();
    float *dG = dev_copy(G);
    uint16_t *dout;
    CK(cudaMalloc((void **)&dout, 2 * n * inter * sizeof(uint16_t)));
    CK(cudaMemset(dout, 0xff, 2 * n * inter * sizeof(uint16_t)));
    swiglu_split_launch(dout, dG, n, inter, 0);
    CK(cudaGetLastError());
    std::vector<uint16_t> o = host_copy(dout, 2 * n * inter);
    std::vector<float> got(n * inter), ref(n * inter), g(inter), u(inter);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < inter; j++) {
            g[j] = G[i * 2 * inter + j] + G[(n + i) * 2 * inter + j];
            u[j] = G[i * 2 * inter + inter + j] + G[(n + i) * 2 * inter + inter + j];
            got[i * inter + j] = nosa_bf16_to_f32(o[i * inter + j]) +
                                 nosa_bf16_to_f32(o[(n + i) * inter + j]);
        }
        nosa_cpu_swiglu(&ref[i * inter], g.data(), u.data(), inter);
    }
    double e = rel_err(got, ref);
    CHECK(e <= 1e-5, "swiglu n=%d inter=%d: rel err %g", n, inter, e);
    cudaFree(dG), cudaFree(dout);
}

/* Attention over random blocks in the arena format, against softmax(q.k*scale + cis) v;
 * then again with every third selected block a miss (read from registered, mapped host
 * memory, its pool slot poisoned until the kernel installs it). */
static void test_attention(int n_kv, int rep, int d, int bs, int n_sel, int open_tokens,
                           int chunk)
{
    struct nosa_kv_geometry g = {1, (uint32_t)n_kv, (uint32_t)bs, (uint32_t)d, 1};
    size_t bb = nosa_kv_block_bytes(&g);
    int mb = n_sel + 1, n_ent = n_sel + 1, n_chunks = (n_ent + chunk - 1) / chunk;
    std::vector<uint8_t> blocks(n_kv * mb * bb, 0);
    for (size_t o = 0; o + 1 < blocks.size(); o += 2) {
        uint16_t v = nosa_f32_to_bf16(frand());
        memcpy(&blocks[o], &v, 2);
    }
    for (int hb = 0; hb < n_kv * mb; hb++)
        for (int t = 0; t < bs; t++) {
            float c = frand();
            memcpy(&blocks[hb * bb + nosa_kv_block_bias_offset(&g) + t * 4], &c, 4);
        }
    int qkv_ld = (n_kv * rep + 2 * n_kv) * d;
    std::vector<float> qkv(qkv_ld);
    for (auto &v : qkv) v = 2 * frand();
    uint8_t *dblk = dev_copy(blocks);
    std::vector<const uint8_t *> ptrs(n_kv * mb);
    std::vector<int32_t> ne(n_kv, n_ent), slot(1, 0), pos(1, n_sel * bs + open_tokens - 1);
    for (int h = 0; h < n_kv; h++)
        for (int e = 0; e < mb; e++) ptrs[h * mb + e] = dblk + (h * mb + (mb - 1 - e)) * bb;
    const uint8_t **dptrs = dev_copy(ptrs);
    int32_t *dne = dev_copy(ne), *dslot = dev_copy(slot), *dpos = dev_copy(pos);
    float *dq = dev_copy(qkv), *dout, *dpart;
    CK(cudaMalloc((void **)&dout, n_kv * rep * d * sizeof(float)));
    CK(cudaMemset(dout, 0xff, n_kv * rep * d * sizeof(float)));
    CK(cudaMalloc((void **)&dpart, n_kv * n_chunks * rep * (d + 2) * sizeof(float)));
    cuda_kv kv;
    memset(&kv, 0, sizeof(kv));
    kv.block_bytes = bb, kv.v_off = nosa_kv_block_v_offset(&g);
    kv.bias_off = nosa_kv_block_bias_offset(&g);
    kv.max_blocks = mb - 1, kv.n_layers = 1, kv.n_kv = n_kv, kv.head_dim = d, kv.block_size = bs;
    cuda_step st = {dslot, dpos, 1};
    float scale = 1.0f / sqrtf((float)d);
    int resident = 0;
    CK(attention_init(kv, 0, &resident));
    CHECK(resident > 0, "attention d=%d bs=%d: no CTA fits on an SM", d, bs);
    attention_launch(dout, dpart, dq, qkv_ld, dptrs, NULL, dne, kv, st, rep, scale, chunk,
                     n_chunks, 0);
    CK(cudaGetLastError());
    std::vector<float> got = host_copy(dout, n_kv * rep * d), ref(got.size());
    std::vector<float> lg(mb * bs);
    for (int h = 0; h < n_kv; h++) {
        for (int gq = 0; gq < rep; gq++) {
            const float *q = &qkv[(h * rep + gq) * d];
            int nt = 0;
            for (int e = 0; e < n_ent; e++) {
                const uint8_t *blk = &blocks[(h * mb + (mb - 1 - e)) * bb];
                int ntok = e == n_ent - 1 ? open_tokens : bs;
                for (int t = 0; t < ntok; t++) {
                    float c;
                    memcpy(&c, blk + kv.bias_off + t * 4, 4);
                    lg[nt++] = nosa_cpu_dot_bf16(q, (const nosa_bf16 *)blk + t * d, d) * scale + c;
                }
            }
            nosa_cpu_softmax(lg.data(), nt);
            float *o = &ref[(h * rep + gq) * d];
            for (int x = 0; x < d; x++) o[x] = 0;
            nt = 0;
            for (int e = 0; e < n_ent; e++) {
                const uint8_t *blk = &blocks[(h * mb + (mb - 1 - e)) * bb];
                int ntok = e == n_ent - 1 ? open_tokens : bs;
                for (int t = 0; t < ntok; t++, nt++)
                    for (int x = 0; x < d; x++)
                        o[x] += lg[nt] * nosa_bf16_to_f32(
                                             ((const nosa_bf16 *)(blk + kv.v_off))[t * d + x]);
            }
        }
    }
    double e = rel_err(got, ref);
    CHECK(e <= 1e-5, "attention kv=%d rep=%d d=%d bs=%d sel=%d open=%d chunk=%d: rel err %g",
          n_kv, rep, d, bs, n_sel, open_tokens, chunk, e);

    std::vector<uint8_t> arena(blocks);
    CK(cudaHostRegister(arena.data(), arena.size(), cudaHostRegisterMapped));
    uint8_t *adev;
    CK(cudaHostGetDevicePointer((void **)&adev, arena.data(), 0));
    std::vector<const uint8_t *> miss((size_t)n_kv * kv.max_blocks, NULL);
    int n_miss = 0;
    for (int h = 0; h < n_kv; h++)
        for (int e = 1; e < n_sel; e += 3) {
            size_t k = (size_t)h * mb + (size_t)(mb - 1 - e);
            miss[(size_t)h * kv.max_blocks + e] = adev + k * bb;
            CK(cudaMemset(dblk + k * bb, 0x5a, bb));
            n_miss++;
        }
    const uint8_t **dmiss = dev_copy(miss);
    CK(cudaMemset(dout, 0xff, n_kv * rep * d * sizeof(float)));
    attention_launch(dout, dpart, dq, qkv_ld, dptrs, dmiss, dne, kv, st, rep, scale, chunk,
                     n_chunks, 0);
    CK(cudaGetLastError());
    std::vector<float> fused = host_copy(dout, n_kv * rep * d);
    std::vector<uint8_t> pool = host_copy(dblk, blocks.size());
    CHECK(memcmp(fused.data(), got.data(), got.size() * sizeof(float)) == 0,
          "attention kv=%d sel=%d chunk=%d: %d misses from the arena change the output", n_kv,
          n_sel, chunk, n_miss);
    CHECK(pool == blocks, "attention kv=%d sel=%d chunk=%d: %d misses not installed in the pool",
          n_kv, n_sel, chunk, n_miss);
    CK(cudaHostUnregister(arena.data()));
    cudaFree(dmiss);
    cudaFree(dblk), cudaFree(dptrs), cudaFree(dne), cudaFree(dslot), cudaFree(dpos);
    cudaFree(dq), cudaFree(dout), cudaFree(dpart);
}

/* score_launch over n tokens (each its own slot, position pos[i]: n_c compressed keys) of a
 * head group of rep query heads per KV head, against q . kc * scale in double precision. */
static void test_score(int n_kv, int rep, int d, const std::vector<int> &pos)
{
    int n = (int)pos.size(), kernel = 32, stride = 16, bs = 64, max_c = 0;
    for (int p : pos) max_c = std::max(max_c, (p + 1 - kernel) / stride + 1);
    cuda_kv kv;
    memset(&kv, 0, sizeof(kv));
    kv.n_layers = 1, kv.n_kv = n_kv, kv.head_dim = d, kv.block_size = bs;
    kv.kernel = kernel, kv.stride = stride, kv.max_c = max_c, kv.max_blocks = max_c;
    kv.scratch_stride = select_scratch_floats(kv, rep);
    std::vector<uint16_t> kc((size_t)n * n_kv * max_c * d);
    for (auto &v : kc) v = nosa_f32_to_bf16(frand());
    int qkv_ld = (n_kv * rep + 2 * n_kv) * d;
    std::vector<float> qkv((size_t)n * qkv_ld);
    for (auto &v : qkv) v = 2 * frand();
    std::vector<int32_t> slot(n);
    for (int i = 0; i < n; i++) slot[i] = n - 1 - i; /* slots need not follow the batch */
    uint16_t *dkc = dev_copy(kc);
    float *dq = dev_copy(qkv), *dscr;
    int32_t *dslot = dev_copy(slot), *dpos = dev_copy(std::vector<int32_t>(pos.begin(), pos.end()));
    size_t scr = (size_t)n * n_kv * kv.scratch_stride;
    CK(cudaMalloc((void **)&dscr, scr * sizeof(float)));
    CK(cudaMemset(dscr, 0xff, scr * sizeof(float)));
    kv.kc = dkc;
    cuda_step st = {dslot, dpos, n};
    /* k_total 0: every token with a complete block is one the kernel scores. */
    select_params p = {2 /* nosa */, rep, 0, 0, 1, 1, 4, 4, 1.0f / sqrtf((float)d)};
    score_launch(kv, st, 0, p, dq, qkv_ld, dscr, max_c, 0);
    CK(cudaGetLastError());
    std::vector<float> out = host_copy(dscr, scr), got, ref;
    /* Each chunk's softmax statistics, from the kernel's own logits: the max exactly, the
     * sum of exp(logit - max) against double precision. */
    int max_wrong = 0;
    double sum_err = 0.0;
    for (int i = 0; i < n; i++) {
        int n_c = (pos[i] + 1 - kernel) / stride + 1;
        for (int h = 0; h < n_kv; h++) {
            const float *lg = &out[(size_t)(i * n_kv + h) * kv.scratch_stride];
            const float *stat = lg + select_scratch_stats_offset(kv, rep);
            const uint16_t *k = &kc[(size_t)(slot[i] * n_kv + h) * max_c * d];
            for (int g = 0; g < rep; g++) {
                const float *q = &qkv[(size_t)i * qkv_ld + (size_t)(h * rep + g) * d];
                for (int c = 0; c < n_c; c++) {
                    double acc = 0.0;
                    for (int x = 0; x < d; x++)
                        acc += (double)q[x] * (double)nosa_bf16_to_f32(k[(size_t)c * d + x]);
                    ref.push_back((float)(acc * p.scale));
                    got.push_back(lg[(size_t)g * max_c + c]);
                }
                for (int c0 = 0; c0 < n_c; c0 += SELECT_STAT_KEYS) {
                    int c1 = std::min(n_c, c0 + SELECT_STAT_KEYS);
                    float mx = -INFINITY;
                    for (int c = c0; c < c1; c++) mx = std::max(mx, lg[(size_t)g * max_c + c]);
                    double sum = 0.0;
                    for (int c = c0; c < c1; c++) sum += exp((double)lg[(size_t)g * max_c + c] - mx);
                    const float *cs = stat + 2 * ((size_t)(c0 / SELECT_STAT_KEYS) * rep + g);
                    max_wrong += cs[0] != mx;
                    sum_err = std::max(sum_err, fabs(cs[1] - sum) / sum);
                }
            }
        }
    }
    double e = rel_err(got, ref);
    printf("score kv=%d rep=%d d=%d tokens=%d max_c=%d: rel err %.3g, chunk maxima wrong %d, "
           "chunk sums rel err %.3g\n", n_kv, rep, d, n, max_c, e, max_wrong, sum_err);
    CHECK(e <= 1e-5, "score kv=%d rep=%d d=%d: rel err %g", n_kv, rep, d, e);
    CHECK(max_wrong == 0, "score kv=%d rep=%d d=%d: %d chunk maxima differ", n_kv, rep, d,
          max_wrong);
    CHECK(sum_err <= 1e-5, "score kv=%d rep=%d d=%d: chunk sums rel err %g", n_kv, rep, d,
          sum_err);
    cudaFree(dkc), cudaFree(dq), cudaFree(dscr), cudaFree(dslot), cudaFree(dpos);
}

/* Rows of many exact ties; with n >= 3 row 1 holds a NaN and row 2 is all -inf: both have
 * no token (-1), as nosa_logits_argmax says. */
/* n rows of `vocab` logits of several spreads, each with its own temperature, top_p, seed and
 * index; row 1 holds a NaN, row 2 is all -inf, row 3 has temperature 0 (greedy: untouched). */
static void test_sample(int n, int vocab)
{
    std::vector<float> x((size_t)n * vocab);
    std::vector<nosa_row_sampling> rs(n);
    const float spread[] = {0.05f, 2.0f, 8.0f, 40.0f};
    const float temp[] = {0.25f, 0.7f, 1.0f, 2.0f};
    const float top[] = {0.02f, 0.6f, 0.95f, 1.0f};
    for (int r = 0; r < n; r++) {
        for (int j = 0; j < vocab; j++) {
            float v = spread[r % 4] * frand();
            x[(size_t)r * vocab + j] = r % 5 == 4 ? (float)(int)(v * 3) : v; /* ties */
        }
        rs[r] = nosa_row_sampling{temp[(r / 4) % 4], top[(r / 2) % 4], 1000u + (uint64_t)r,
                                  (uint64_t)(r * 7)};
    }
    if (n >= 4) {
        x[(size_t)vocab + vocab / 2] = NAN;
        for (int j = 0; j < vocab; j++) x[2 * (size_t)vocab + j] = -INFINITY;
        rs[3].temperature = 0.0f;
    }
    float *dx = dev_copy(x);
    nosa_row_sampling *drs = dev_copy(rs);
    int32_t *dout;
    uint64_t *dkeys;
    CK(cudaMalloc((void **)&dout, n * sizeof(int32_t)));
    CK(cudaMalloc((void **)&dkeys, (size_t)n * vocab * sizeof(uint64_t)));
    CK(cudaMemset(dout, 0x7f, n * sizeof(int32_t)));
    sample_launch(dout, dkeys, dx, n, vocab, drs, 0);
    CK(cudaGetLastError());
    std::vector<int32_t> got = host_copy(dout, n);
    std::vector<uint64_t> keys(2 * (size_t)vocab);
    for (int r = 0; r < n; r++) {
        int32_t want = rs[r].temperature == 0.0f ? 0x7f7f7f7f
                                                 : nosa_sample_row(&x[(size_t)r * vocab], vocab,
                                                                   &rs[r], keys.data());
        CHECK(got[r] == want, "sample vocab=%d row %d (T %g, top_p %g): %d, host %d", vocab, r,
              (double)rs[r].temperature, (double)rs[r].top_p, got[r], want);
    }
    cudaFree(dx), cudaFree(drs), cudaFree(dout), cudaFree(dkeys);
}

static void test_argmax(int n, int vocab)
{
    std::vector<float> x(n * vocab);
    for (auto &v : x) v = (float)(int)(frand() * 50); /* many exact ties */
    if (n >= 3) {
        x[vocab + vocab / 3] = NAN;
        for (int j = 0; j < vocab; j++) x[2 * vocab + j] = -INFINITY;
    }
    float *dx = dev_copy(x);
    int32_t *dout;
    CK(cudaMalloc((void **)&dout, n * sizeof(int32_t)));
    argmax_launch(dout, dx, n, vocab, 0);
    CK(cudaGetLastError());
    std::vector<int32_t> got = host_copy(dout, n);
    for (int i = 0; i < n; i++) {
        int b = 0;
        for (int j = 1; j < vocab; j++)
            if (x[i * vocab + j] > x[i * vocab + b]) b = j;
        if (n >= 3 && (i == 1 || i == 2)) b = -1;
        CHECK(got[i] == b && got[i] == nosa_logits_argmax(&x[i * vocab], vocab),
              "argmax row %d: %d vs %d", i, got[i], b);
    }
    cudaFree(dx), cudaFree(dout);
}

int main(void)
{
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("test_cuda_kernels: skipped: no CUDA GPU visible\n");
        return TEST_SKIP_EXIT;
    }
    cublasHandle_t h;
    REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
    static const int gemm_cases[][3] = {{1, 64, 96}, {3, 64, 512}, {16, 2048, 2560}, {5, 128, 7}};
    for (auto &c : gemm_cases) test_norm_gemm(h, c[0], c[1], c[2]);
    static const int rope_cases[][3] = {{1, 6, 16}, {4, 18, 128}, {2, 3, 64}};
    for (auto &c : rope_cases) test_rope(c[0], c[1], c[2]);
    static const int swiglu_cases[][2] = {{1, 128}, {7, 8192}, {2, 33}};
    for (auto &c : swiglu_cases) test_swiglu(c[0], c[1]);
    /* n_kv, rep, d, bs, n_sel, open tokens, chunk (blocks per split) */
    /* The tiny model's shape, the 1B shape with 1-, 4- and 16-block chunks, an open block
     * alone, two query-head groups (rep 12) with a half 16-token tile (bs 24, one warp per
     * CTA), head_dim 256, 128-token blocks; 22 and 41 chunks (the combine's padded weights
     * past a multiple of 8, and a second 32-chunk pass of its warp); open blocks that end in
     * the first warp's share of the tokens, at its end and one past it (bs 16, 64, 128: the
     * second warp with no key, or one). */
    static const int att_cases[][7] = {
        {2, 2, 16, 8, 9, 3, 32}, {2, 2, 16, 8, 9, 8, 2},    {2, 8, 128, 64, 63, 1, 4},
        {2, 8, 128, 64, 64, 37, 16}, {1, 4, 64, 16, 0, 5, 1}, {3, 1, 32, 8, 20, 7, 3},
        {2, 4, 128, 64, 10, 64, 1}, {1, 12, 64, 24, 7, 13, 2}, {1, 3, 256, 16, 5, 9, 3},
        {2, 8, 128, 128, 9, 100, 4}, {2, 8, 128, 64, 64, 20, 3}, {2, 8, 128, 64, 40, 9, 1},
        {2, 8, 128, 64, 20, 32, 4}, {2, 8, 128, 64, 20, 33, 4}, {1, 4, 64, 16, 6, 8, 2},
        {1, 4, 64, 16, 6, 9, 2},    {2, 8, 128, 128, 5, 64, 2}, {2, 8, 128, 128, 5, 65, 1},
        {1, 16, 128, 64, 0, 3, 1}};
    for (auto &c : att_cases) test_attention(c[0], c[1], c[2], c[3], c[4], c[5], c[6]);
    /* The split the backend picks for the 1B shape's 65-entry lists (2 KV heads: batch 1,
     * 16, 32, 48, 64, 128, 256) with 528 CTAs resident (an H200's), and for a list of one
     * entry: exact values, as measured in bench/RESULTS.md (fifteenth session). */
    static const int split_cases[][4] = {{2, 65, 528, 4},    {32, 65, 528, 5},  {64, 65, 528, 4},
                                         {96, 65, 528, 4},   {128, 65, 528, 4}, {256, 65, 528, 7},
                                         {512, 65, 528, 13}, {1, 1, 528, 4}};
    for (auto &c : split_cases) {
        int chunk = attention_chunk_for(c[0], c[1], c[2]);
        CHECK(chunk == c[3], "attention_chunk_for(%d lists, %d entries, %d CTAs) = %d, want %d",
              c[0], c[1], c[2], chunk, c[3]);
    }
    /* The 1B group (rep 8, d 128), the tiny model's (d 16: the one head size with 8-byte key
     * loads), two head groups, key counts off the CTA's 128-key tiling, a token with only 5
     * compressed keys, head_dim 256. */
    test_score(2, 8, 128, {2047, 70001, 1234});
    test_score(2, 2, 16, {255, 4000});
    test_score(1, 16, 64, {3000, 95});
    test_score(3, 4, 32, {100, 600});
    test_score(1, 4, 256, {900, 77});
    test_argmax(5, 512);
    test_argmax(2, 73448);
    test_sample(24, 512);
    test_sample(40, 73448);
    test_sample(6, 3);
    cublasDestroy(h);
    return test_report("test_cuda_kernels");
}
