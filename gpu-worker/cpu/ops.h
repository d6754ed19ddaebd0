/* ops.h: the kernel-sized pieces of the CPU reference backend, in plain f32 C (weight
 * matrices are read as they are stored, f32 or bf16).
 *
 * Every function here accumulates in one fixed order (ascending index, f32), so a result
 * depends only on its inputs: never on batch composition, on where a KV block lives, or on
 * how a prompt was chunked. The CUDA backend is checked against these definitions, and the
 * known-answer tests in tests/cpu/ check them against double precision. */
#ifndef NOSA_CPU_OPS_H
#define NOSA_CPU_OPS_H

#include <stddef.h>

#include "bf16.h"
#include "model.h"

/* y[i] = (x[i] * r) * w[i], r = 1 / sqrtf(sum(x^2) / n + eps) (Llama RMSNorm). y may be x. */
void nosa_cpu_rmsnorm(float *y, const float *x, const float *w, int n, float eps);

/* y[o] = sum_i W[o*in + i] * x[i] (+ b[o] when b is not NULL): the Hugging Face [out][in]
 * layout, W f32 or bf16 (read in place; bf16 -> f32 is exact, so both dtypes give the same
 * products in the same order). y must not alias x. */
void nosa_cpu_matvec_weight(float *y, struct nosa_weight W, const float *b, const float *x,
                            int out, int in);
/* nosa_cpu_matvec_weight of an f32 matrix. */
void nosa_cpu_matvec(float *y, const float *W, const float *b, const float *x, int out, int in);

/* sum_i a[i] * b[i] in ascending i. */
float nosa_cpu_dot(const float *a, const float *b, int n);
/* sum_i a[i] * float(b[i]): a query against a stored bf16 key. */
float nosa_cpu_dot_bf16(const float *a, const nosa_bf16 *b, int n);

/* RoPE tables: cos/sin[pos * (head_dim/2) + i] of the angle pos * theta^(-2i/head_dim),
 * computed in double and rounded once to f32, for pos in [0, n_pos). The tables are an
 * exact definition the CUDA backend can share (it uploads the same numbers). */
void nosa_cpu_rope_table_fill(float *cos_t, float *sin_t, int n_pos, int head_dim, double theta);
/* Rotates one head vector x[head_dim] in place for one position, Hugging Face Llama
 * "rotate_half" convention: pairs are (i, i + head_dim/2), not adjacent elements:
 *   x'[i]        = x[i] * cos_i - x[i+h] * sin_i
 *   x'[i + h]    = x[i+h] * cos_i + x[i] * sin_i     (h = head_dim / 2)
 * cos_row/sin_row are the table rows of that position. */
void nosa_cpu_rope_apply(float *x, const float *cos_row, const float *sin_row, int head_dim);

/* Numerically safe softmax in place: x[i] = exp(x[i] - max) / sum, sum accumulated in
 * ascending i. n >= 1. */
void nosa_cpu_softmax(float *x, int n);

/* softplus(x) = log(1 + exp(x)), without overflow for large |x|. */
float nosa_cpu_softplus(float x);

/* SwiGLU: out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)). out may alias gate. */
void nosa_cpu_swiglu(float *out, const float *gate, const float *up, int n);

/* Max-pools per-compressed-key scores s[0 .. n_c) to block scores out[0 .. n_blocks): block
 * m takes the maximum over the compressed keys that overlap it, units [u*m - (r-1),
 * u*m + u - 1] clipped to [0, n_c), where u = block_size / stride compressed keys start in
 * a block and r = kernel / stride is a compressed key's length in strides. At the reference
 * 64/32/16 (u = 4, r = 2) this is NOSA's window 5, stride 4, padding 1. A block with no
 * compressed key yet gets -INFINITY. */
void nosa_cpu_block_max_pool(float *out, int n_blocks, const float *s, int n_c, int u, int r);

/* Writes to sel[0 .. k) the indices of the k largest scores of score[0 .. n) (k <= n), in
 * ascending index order. Order: a higher score wins; equal scores: the lower index wins (so
 * the choice is total and deterministic, +INFINITY included). taken[n] is scratch. */
void nosa_cpu_topk(int *sel, int k, const float *score, int n, unsigned char *taken);

#endif
