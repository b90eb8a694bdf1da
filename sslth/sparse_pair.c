/* The sparse pair kernel of sslth (sslth/sparse_kernel.py explains what it computes and why
   its arithmetic is the one the sparse certificate assumes). C99 with GNU vector types. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#define TILE 32

/* 0 when the buffers index inside the pair's shapes, else 1 */
static int check(int64_t d_in, int64_t height, const int32_t *inputs, int64_t weight_units,
                 int64_t units, const int32_t *starts, const int32_t *rows, int64_t entries) {
    if (weight_units > units || starts[0] != 0 || starts[units] != entries) return 1;
    for (int64_t h = 0; h < units; h++) if (starts[h + 1] < starts[h]) return 1;
    for (int64_t h = 0; h < weight_units; h++) if (inputs[h] < 0 || inputs[h] >= d_in) return 1;
    for (int64_t e = 0; e < entries; e++) if (rows[e] < 0 || rows[e] >= height) return 1;
    return 0;
}

/* vectors of 32 bytes (4 doubles or 8 floats; two SSE registers without AVX), unaligned */
typedef double vdouble __attribute__((vector_size(32), aligned(8)));
typedef float vfloat __attribute__((vector_size(32), aligned(4)));

#define DENSE(NAME, T, A, V)                                                                 \
int NAME(const T *x, int64_t n, int64_t d_in, int64_t d_out, const int32_t *inputs,          \
         int64_t weight_units, const T *scales, int64_t units, const int32_t *starts,        \
         const int32_t *rows, const T *values, int64_t entries, T *out) {                    \
    enum { LANES = sizeof(V) / sizeof(A), VECTORS = TILE / LANES };                          \
    if (check(d_in, d_out, inputs, weight_units, units, starts, rows, entries)) return 1;    \
    V *restrict acc = (V *)malloc(sizeof(V) * (size_t)(d_out * VECTORS));                    \
    if (!acc) return 2;                                                                      \
    for (int64_t n0 = 0; n0 < n; n0 += TILE) {                                               \
        int64_t count = n - n0 < TILE ? n - n0 : TILE;                                       \
        memset(acc, 0, sizeof(V) * (size_t)(d_out * VECTORS));                               \
        for (int64_t h = 0; h < units; h++) {                                                \
            A lane[TILE];                                                                    \
            V hidden[VECTORS];                                                               \
            A a = (A)scales[h];                                                              \
            for (int64_t b = 0; b < TILE; b++) {                                             \
                A value = h >= weight_units ? a                                              \
                          : b < count ? a * (A)x[(n0 + b) * d_in + inputs[h]] : (A)0;        \
                lane[b] = value < 0 ? (A)0 : value;                                          \
            }                                                                                \
            memcpy(hidden, lane, sizeof(lane));                                              \
            for (int32_t e = starts[h]; e < starts[h + 1]; e++) {                            \
                A v = (A)values[e];                                                          \
                V *restrict row = acc + (int64_t)rows[e] * VECTORS;                          \
                for (int k = 0; k < VECTORS; k++) row[k] += v * hidden[k];                   \
            }                                                                                \
        }                                                                                    \
        const A *lanes = (const A *)acc;                                                     \
        for (int64_t b = 0; b < count; b++)                                                  \
            for (int64_t i = 0; i < d_out; i++)                                              \
                out[(n0 + b) * d_out + i] = (T)lanes[i * TILE + b];                         \
    }                                                                                        \
    free(acc);                                                                               \
    return 0;                                                                                \
}

/* first o in [0, limit) with o * stride + offset >= 0, and one past the last with < size */
static void span(int64_t offset, int64_t stride, int64_t size, int64_t limit, int64_t *lo,
                 int64_t *hi) {
    int64_t first = 0, last = limit;
    while (first < limit && first * stride + offset < 0) first++;
    while (last > first && (last - 1) * stride + offset >= size) last--;
    *lo = first;
    *hi = last;
}

#define CONV(NAME, T, A, V)                                                                  \
int NAME(const T *x, int64_t n, int64_t d_in, int64_t d_out, const int64_t *geometry,        \
         const int32_t *inputs, int64_t weight_units, const T *scales, int64_t units,         \
         const int32_t *starts, const int32_t *rows, const T *values, int64_t entries, T *out) { \
    enum { LANES = sizeof(V) / sizeof(A), VECTORS = TILE / LANES };                          \
    int64_t H = geometry[0], W = geometry[1], OH = geometry[2], OW = geometry[3];             \
    int64_t KH = geometry[4], KW = geometry[5], SY = geometry[6], SX = geometry[7];           \
    int64_t PY = geometry[8], PX = geometry[9], DY = geometry[10], DX = geometry[11];         \
    int64_t taps = KH * KW, in_size = H * W, out_size = OH * OW;                              \
    if (check(d_in, d_out * taps, inputs, weight_units, units, starts, rows, entries)) return 1; \
    V *restrict acc = (V *)malloc(sizeof(V) * (size_t)(d_out * out_size * VECTORS));         \
    V *restrict hidden = (V *)malloc(sizeof(V) * (size_t)(in_size * VECTORS));               \
    int64_t *spans = (int64_t *)malloc(sizeof(int64_t) * (size_t)(6 * taps));                \
    if (!acc || !hidden || !spans) { free(acc); free(hidden); free(spans); return 2; }       \
    for (int64_t t = 0; t < taps; t++) {                                                     \
        int64_t *s = spans + 6 * t, ky = t / KW, kx = t % KW;                                \
        s[4] = ky * DY - PY; s[5] = kx * DX - PX;                                             \
        span(s[4], SY, H, OH, s, s + 1);                                                     \
        span(s[5], SX, W, OW, s + 2, s + 3);                                                 \
    }                                                                                        \
    for (int64_t n0 = 0; n0 < n; n0 += TILE) {                                               \
        int64_t count = n - n0 < TILE ? n - n0 : TILE;                                       \
        memset(acc, 0, sizeof(V) * (size_t)(d_out * out_size * VECTORS));                    \
        for (int64_t h = 0; h < units; h++) {                                                \
            A a = (A)scales[h];                                                              \
            for (int64_t p = 0; p < in_size; p++) {                                          \
                A lane[TILE];                                                                \
                for (int64_t b = 0; b < TILE; b++) {                                         \
                    A value = h >= weight_units ? a : b < count                              \
                        ? a * (A)x[((n0 + b) * d_in + inputs[h]) * in_size + p] : (A)0;      \
                    lane[b] = value < 0 ? (A)0 : value;                                      \
                }                                                                            \
                memcpy(hidden + p * VECTORS, lane, sizeof(lane));                            \
            }                                                                                \
            for (int32_t e = starts[h]; e < starts[h + 1]; e++) {                            \
                A v = (A)values[e];                                                          \
                int64_t i = rows[e] / taps;                                                  \
                const int64_t *s = spans + 6 * (rows[e] % taps);                             \
                for (int64_t oy = s[0]; oy < s[1]; oy++)                                     \
                    for (int64_t ox = s[2]; ox < s[3]; ox++) {                               \
                        V *restrict row = acc + ((i * OH + oy) * OW + ox) * VECTORS;         \
                        const V *source =                                                    \
                            hidden + ((oy * SY + s[4]) * W + ox * SX + s[5]) * VECTORS;      \
                        for (int k = 0; k < VECTORS; k++) row[k] += v * source[k];           \
                    }                                                                        \
            }                                                                                \
        }                                                                                    \
        const A *lanes = (const A *)acc;                                                     \
        for (int64_t b = 0; b < count; b++)                                                  \
            for (int64_t q = 0; q < d_out * out_size; q++)                                   \
                out[(n0 + b) * d_out * out_size + q] = (T)lanes[q * TILE + b];               \
    }                                                                                        \
    free(acc);                                                                               \
    free(hidden);                                                                            \
    free(spans);                                                                             \
    return 0;                                                                                \
}

DENSE(dense_f32_f64, float, double, vdouble)
DENSE(dense_f32_f32, float, float, vfloat)
DENSE(dense_f64_f64, double, double, vdouble)
CONV(conv_f32_f64, float, double, vdouble)
CONV(conv_f32_f32, float, float, vfloat)
CONV(conv_f64_f64, double, double, vdouble)
