/* ops.c: the kernel-sized pieces of the CPU reference backend (see ops.h for the exact
 * definitions). Plain loops, f32, ascending accumulation order; no allocation. */
#include "ops.h"

#include <math.h>
#include <string.h>

void nosa_cpu_rmsnorm(float *y, const float *x, const float *w, int n, float eps)
{
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) y[i] = (x[i] * r) * w[i];
}

float nosa_cpu_dot(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

float nosa_cpu_dot_bf16(const float *a, const nosa_bf16 *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * nosa_bf16_to_f32(b[i]);
    return s;
}

void nosa_cpu_matvec_weight(float *y, struct nosa_weight W, const float *b, const float *x,
                            int out, int in)
{
    for (int o = 0; o < out; o++) {
        size_t row = (size_t)o * (size_t)in;
        /* x[i] * W[i] == W[i] * x[i] exactly: the f32 and bf16 sums are the same sequence. */
        float s = W.dtype == NOSA_WEIGHT_BF16
                      ? nosa_cpu_dot_bf16(x, (const nosa_bf16 *)W.data + row, in)
                      : nosa_cpu_dot((const float *)W.data + row, x, in);
        y[o] = b ? s + b[o] : s;
    }
}

void nosa_cpu_matvec(float *y, const float *W, const float *b, const float *x, int out, int in)
{
    nosa_cpu_matvec_weight(y, (struct nosa_weight){W, NOSA_WEIGHT_F32}, b, x, out, in);
}

void nosa_cpu_rope_table_fill(float *cos_t, float *sin_t, int n_pos, int head_dim, double theta)
{
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        double inv_freq = pow(theta, -2.0 * (double)i / (double)head_dim);
        for (int p = 0; p < n_pos; p++) {
            double a = (double)p * inv_freq;
            cos_t[(size_t)p * (size_t)half + (size_t)i] = (float)cos(a);
            sin_t[(size_t)p * (size_t)half + (size_t)i] = (float)sin(a);
        }
    }
}

void nosa_cpu_rope_apply(float *x, const float *cos_row, const float *sin_row, int head_dim)
{
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * cos_row[i] - b * sin_row[i];
        x[i + half] = b * cos_row[i] + a * sin_row[i];
    }
}

void nosa_cpu_softmax(float *x, int n)
{
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

float nosa_cpu_softplus(float x)
{
    /* log(1 + e^x) = max(x, 0) + log1p(e^-|x|): exp never overflows. */
    return (x > 0.0f ? x : 0.0f) + log1pf(expf(-fabsf(x)));
}

void nosa_cpu_swiglu(float *out, const float *gate, const float *up, int n)
{
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void nosa_cpu_block_max_pool(float *out, int n_blocks, const float *s, int n_c, int u, int r)
{
    for (int m = 0; m < n_blocks; m++) {
        int lo = u * m - (r - 1), hi = u * m + u - 1; /* inclusive */
        if (lo < 0) lo = 0;
        if (hi > n_c - 1) hi = n_c - 1;
        float mx = -INFINITY;
        for (int i = lo; i <= hi; i++)
            if (s[i] > mx) mx = s[i];
        out[m] = mx;
    }
}

void nosa_cpu_topk(int *sel, int k, const float *score, int n, unsigned char *taken)
{
    memset(taken, 0, (size_t)n);
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            if (taken[i]) continue;
            /* Strictly greater only: on a tie the earlier (lower) index stays best. */
            if (best < 0 || score[i] > score[best]) best = i;
        }
        taken[best] = 1;
    }
    int c = 0;
    for (int i = 0; i < n && c < k; i++)
        if (taken[i]) sel[c++] = i;
}
