/* bf16.h: bfloat16 <-> float, round to nearest even, NaN kept quiet. Header-only: it is on
 * every hot path of the CPU backend and of the arena block format. */
#ifndef NOSA_BF16_H
#define NOSA_BF16_H

#include <stdint.h>
#include <string.h>

typedef uint16_t nosa_bf16;

static inline float nosa_bf16_to_f32(nosa_bf16 h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static inline nosa_bf16 nosa_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u) return (nosa_bf16)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (nosa_bf16)(u >> 16);
}

#endif
