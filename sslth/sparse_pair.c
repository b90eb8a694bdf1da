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

/* Dense pairs read x transposed, (d_in, n): a unit's inputs for a tile are contiguous. */
#define DENSE(NAME, T, A, V, VECTORS_)                                                       \
int NAME(const T *x, int64_t n, int64_t d_in, int64_t d_out, const int32_t *inputs,          \
         int64_t weight_units, const T *scales, int64_t units, const int32_t *starts,        \
         const int32_t *rows, const T *values, int64_t entries, T *out) {                    \
    enum { LANES = sizeof(V) / sizeof(A), VECTORS = VECTORS_, WIDTH = VECTORS * LANES };     \
    if (check(d_in, d_out, inputs, weight_units, units, starts, rows, entries)) return 1;    \
    V *restrict acc = (V *)malloc(sizeof(V) * (size_t)(d_out * VECTORS));                    \
    if (!acc) return 2;                                                                      \
    for (int64_t n0 = 0; n0 < n; n0 += WIDTH) {                                              \
        int64_t count = n - n0 < WIDTH ? n - n0 : WIDTH;                                     \
        memset(acc, 0, sizeof(V) * (size_t)(d_out * VECTORS));                               \
        for (int64_t h = 0; h < units; h++) {                                                \
            A lane[WIDTH];                                                                   \
            V hidden[VECTORS];                                                               \
            A a = (A)scales[h];                                                              \
            for (int64_t b = 0; b < WIDTH; b++) {                                            \
                A value = h >= weight_units ? a                                              \
                          : b < count ? a * (A)x[inputs[h] * n + n0 + b] : (A)0;            \
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
                out[(n0 + b) * d_out + i] = (T)lanes[i * WIDTH + b];                        \
    }                                                                                        \
    free(acc);                                                                               \
    return 0;                                                                                \
}

/* Row-grouped layout of a dense pair, for larger batches: units are taken GROUP at a time (a
   group's hidden values for SUPER inputs stay in cache); within a group the kept entries are
   sorted by output row, so each row's partial sum over the group is held in registers for a
   tile of VR vectors and added to the row's accumulator once. Built from the CSC buffers at
   each call (a counting sort, O(entries)): nothing is cached between calls. x is (d_in, pitch),
   transposed, with pitch a multiple of SUPER and zeros after the n inputs. */
#define GROUP 64
#define SUPER 128
#define VR 8 /* vectors per tile of the row-grouped layout */

typedef struct { int64_t *offsets; uint8_t *local; void *values; } grouped;

/* values are float (size 4) or double; the sorted copy is in the accumulation type (wide:
   double) */
static int group_rows(int64_t d_out, int64_t units, const int32_t *starts, const int32_t *rows,
                      const void *values, size_t size, int wide, grouped *g) {
    int64_t groups = (units + GROUP - 1) / GROUP, entries = starts[units];
    g->offsets = (int64_t *)calloc((size_t)(groups * d_out + 1), sizeof(int64_t));
    int64_t *cursor = (int64_t *)malloc(sizeof(int64_t) * (size_t)(groups * d_out + 1));
    g->local = (uint8_t *)malloc((size_t)entries + 1);
    g->values = malloc((wide ? sizeof(double) : sizeof(float)) * (size_t)(entries + 1));
    if (!g->offsets || !cursor || !g->local || !g->values) { free(cursor); return 2; }
    for (int64_t h = 0; h < units; h++)
        for (int32_t e = starts[h]; e < starts[h + 1]; e++)
            g->offsets[(h / GROUP) * d_out + rows[e] + 1]++;
    for (int64_t q = 0; q < groups * d_out; q++) g->offsets[q + 1] += g->offsets[q];
    memcpy(cursor, g->offsets, sizeof(int64_t) * (size_t)(groups * d_out + 1));
    for (int64_t h = 0; h < units; h++)
        for (int32_t e = starts[h]; e < starts[h + 1]; e++) {
            int64_t to = cursor[(h / GROUP) * d_out + rows[e]]++;
            g->local[to] = (uint8_t)(h % GROUP);
            double value = size == sizeof(float) ? (double)((const float *)values)[e]
                                                 : ((const double *)values)[e];
            if (wide) ((double *)g->values)[to] = value;
            else ((float *)g->values)[to] = (float)value; /* a float value, as it was */
        }
    free(cursor);
    return 0;
}

#define DENSE_ROWS(NAME, T, A, V)                                                            \
int NAME(const T *x, int64_t n, int64_t pitch, int64_t d_in, int64_t d_out,                  \
         const int32_t *inputs,                                                              \
         int64_t weight_units, const T *scales, int64_t units, const int32_t *starts,        \
         const int32_t *rows, const T *values, int64_t entries, T *out) {                    \
    enum { LANES = sizeof(V) / sizeof(A), RT = VR * LANES, TILES = SUPER / RT };              \
    if (check(d_in, d_out, inputs, weight_units, units, starts, rows, entries)) return 1;    \
    grouped g = {NULL, NULL, NULL};                                                          \
    V *restrict acc = (V *)malloc(sizeof(V) * (size_t)(d_out * SUPER / LANES));              \
    V *restrict hidden = (V *)malloc(sizeof(V) * (size_t)(GROUP * SUPER / LANES));           \
    int failed = !acc || !hidden                                                             \
        || group_rows(d_out, units, starts, rows, values, sizeof(T), sizeof(A) == 8, &g);    \
    const A *sorted = failed ? NULL : (const A *)g.values;                                   \
    for (int64_t s0 = 0; !failed && s0 < n; s0 += SUPER) {                                   \
        int64_t count = n - s0 < SUPER ? n - s0 : SUPER, tiles = (count + RT - 1) / RT;      \
        memset(acc, 0, sizeof(V) * (size_t)(d_out * SUPER / LANES));                         \
        for (int64_t u0 = 0; u0 < units; u0 += GROUP) {                                      \
            int64_t width = units - u0 < GROUP ? units - u0 : GROUP;                         \
            for (int64_t u = 0; u < width; u++) {                                            \
                int64_t h = u0 + u;                                                          \
                A a = (A)scales[h], constant = a < 0 ? (A)0 : a;                             \
                const T *inputs_ = h < weight_units ? x + inputs[h] * pitch + s0 : NULL;     \
                for (int64_t t = 0; t < tiles; t++) {                                        \
                    A lane[RT];                                                              \
                    if (inputs_)                                                             \
                        for (int64_t b = 0; b < RT; b++) {                                   \
                            A value = a * (A)inputs_[t * RT + b];                            \
                            lane[b] = value < 0 ? (A)0 : value;                              \
                        }                                                                    \
                    else                                                                     \
                        for (int64_t b = 0; b < RT; b++) lane[b] = constant;                 \
                    memcpy(hidden + (t * GROUP + u) * VR, lane, sizeof(lane));               \
                }                                                                            \
            }                                                                                \
            const int64_t *offsets = g.offsets + (u0 / GROUP) * d_out;                       \
            for (int64_t r = 0; r < d_out; r++) {                                            \
                int64_t e0 = offsets[r], e1 = offsets[r + 1];                                \
                if (e0 == e1) continue;                                                      \
                for (int64_t t = 0; t < tiles; t++) {                                        \
                    V s[VR] = {0}; /* VR independent sums: FMA latency is hidden */         \
                    const V *slice = hidden + t * GROUP * VR;                                \
                    for (int64_t e = e0; e < e1; e++) {                                      \
                        A v = sorted[e];                                                     \
                        const V *hv = slice + (int64_t)g.local[e] * VR;                      \
                        for (int k = 0; k < VR; k++) s[k] += v * hv[k];                      \
                    }                                                                        \
                    V *a = acc + (r * TILES + t) * VR;                                       \
                    for (int k = 0; k < VR; k++) a[k] += s[k];                               \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        const A *lanes = (const A *)acc;                                                     \
        for (int64_t b = 0; b < count; b++)                                                  \
            for (int64_t i = 0; i < d_out; i++)                                              \
                out[(s0 + b) * d_out + i] = (T)lanes[i * SUPER + b];                         \
    }                                                                                        \
    free(g.offsets);                                                                         \
    free(g.local);                                                                           \
    free(g.values);                                                                          \
    free(acc);                                                                               \
    free(hidden);                                                                            \
    return failed ? 2 : 0;                                                                   \
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

/* tiles of 32 inputs, and of one vector (4 or 8 inputs) for a few inputs */
DENSE(dense_f32_f64, float, double, vdouble, 8)
DENSE(dense_f32_f32, float, float, vfloat, 4)
DENSE(dense_f64_f64, double, double, vdouble, 8)
DENSE(one_f32_f64, float, double, vdouble, 1)
DENSE(one_f32_f32, float, float, vfloat, 1)
DENSE(one_f64_f64, double, double, vdouble, 1)
DENSE_ROWS(rows_f32_f64, float, double, vdouble)
DENSE_ROWS(rows_f32_f32, float, float, vfloat)
DENSE_ROWS(rows_f64_f64, double, double, vdouble)
CONV(conv_f32_f64, float, double, vdouble)
CONV(conv_f32_f32, float, float, vfloat)
CONV(conv_f64_f64, double, double, vdouble)
