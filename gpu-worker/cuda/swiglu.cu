/* swiglu: SiLU-gated MLP activation into the down projection's operand (see swiglu.cuh). */
#include "swiglu.cuh"

static __global__ void swiglu_split_kernel(uint16_t *out, const float *G, int n, int inter)
{
    int i = blockIdx.y;
    const float *hi = G + (size_t)i * 2u * (size_t)inter;
    const float *lo = G + ((size_t)n + i) * 2u * (size_t)inter;
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < inter; j += gridDim.x * blockDim.x) {
        float g = hi[j] + lo[j], u = hi[inter + j] + lo[inter + j];
        float y = g / (1.0f + expf(-g)) * u;
        uint16_t h = cu_f32_to_bf16(y);
        out[(size_t)i * (size_t)inter + j] = h;
        out[((size_t)n + i) * (size_t)inter + j] = cu_f32_to_bf16(y - cu_bf16_to_f32(h));
    }
}

void swiglu_split_launch(uint16_t *out, const float *G, int n, int inter, cudaStream_t s)
{
    int bx = (inter + 255) / 256;
    if (bx > 1024) bx = 1024;
    swiglu_split_kernel<<<dim3(bx, n), 256, 0, s>>>(out, G, n, inter);
}
