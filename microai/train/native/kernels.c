/* Single-threaded float32 kernels on channels-last (N, H, W, C) tensors for sharded training
 * (microai.train.native): convolution with stride 1 (forward, input and kernel gradients), max pooling
 * with the stride equal to the window, and QAT's fake quantization of the slices of a batch.
 *
 * Every output element is one sum in a fixed order (a convolution's output: bias, then the kernel's
 * taps (kh, kw, ci) in order; a kernel gradient: the positions (n, oh, ow) in order), each term added
 * with a fused multiply-add; 3 x 3 convolutions of 8 input channels or more, and 1 x 3 ones of 16 or
 * more, run Winograd's algorithm (output and kernel gradient; the input gradient is a convolution too),
 * a fixed sequence of operations per channel and tile too. The vector width and blocking below only
 * decide how many of those computations run side by side, so the bits are the same on every machine
 * with FMA, whatever it vectorises with. */
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

#if defined(__x86_64__) && !defined(__FMA__)
#error "MicroAI's training kernels need FMA (x86-64-v3: Haswell, Zen or later)"
#endif

#ifdef __AVX512F__
#define VL 16 /* output channels per vector */
#else
#define VL 8
#endif
#define B 8  /* output positions per block of conv_forward: B accumulators */
#define CB_MAX 12 /* the widest block of conv_backward_weight (block_width): that many accumulators */
typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VL * sizeof(int32_t))));

static inline vf load(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline vf load_part(const float *p, int n) {
    vf v = {0};
    memcpy(&v, p, (size_t)n * sizeof(float));
    return v;
}

static inline void store_part(float *p, vf v, int n) { memcpy(p, &v, (size_t)n * sizeof(float)); }

static inline void store(float *p, vf v, int lanes) {
    if (lanes == VL) memcpy(p, &v, sizeof v);
    else store_part(p, v, lanes);
}

/* PyTorch's relu: +0 for v < 0, v otherwise (NaN and -0 kept) */
static inline vf relu_of(vf v) { return (vf)((vi)v & ~(v < 0)); }

/* The largest |v| of the vectors a convolution writes (the lanes it stores), and whether one held a NaN:
 * max_abs of its output, taken as it is written */
typedef struct {
    vf best;
    vi nan;
} peak_t;

static inline void peak_add(peak_t *peak, vf v, int lanes) {
    vf a = (vf)((vi)v & 0x7fffffff);
    if (lanes < VL) {
        vi stored;
        for (int l = 0; l < VL; l++) stored[l] = l < lanes ? -1 : 0;
        a = (vf)((vi)a & stored);
    }
    const vi more = a > peak->best;
    peak->best = (vf)(((vi)a & more) | ((vi)peak->best & ~more));
    peak->nan |= a != a;
}

static double peak_value(const peak_t *peak) {
    float m = 0.0f;
    int nan = 0;
    for (int l = 0; l < VL; l++) {
        m = peak->best[l] > m ? peak->best[l] : m;
        nan |= peak->nan[l] != 0;
    }
    return nan ? NAN : m;
}

/* into = the peak of the values of both */
static void peak_merge(peak_t *into, const peak_t *from) {
    const vi more = from->best > into->best;
    into->best = (vf)(((vi)from->best & more) | ((vi)into->best & ~more));
    into->nan |= from->nan;
}

/* A convolution's output vector written (its first `lanes` floats): through relu_of if relu, into `peak` if
 * measure (a local of the caller, written back at its end: through a pointer that float stores may alias,
 * it would be reloaded at every store) */
static inline void put(float *p, vf v, int lanes, int relu, int measure, peak_t *peak) {
    if (relu) v = relu_of(v);
    if (measure) peak_add(peak, v, lanes);
    store(p, v, lanes);
}

/* The first `lanes` floats at p, zeros after (a full vector without the stack copy of load_part, whose
 * reload stalls store forwarding) */
static inline vf load_lanes(const float *p, int lanes) { return lanes == VL ? load(p) : load_part(p, lanes); }

/* Winograd's algorithm F(4, 3) along the columns, and along the rows too for 3 x 3 kernels (F(4 x 4, 3 x 3)):
 * each tile of outputs (4 x 4; 1 x 4 for 1 x 3 kernels) from the tile of inputs that covers it (6 x 6;
 * 1 x 6), with V = B^T d B (the input tile transformed, per input channel), U = G g G^T (the kernel
 * transformed, per channel pair), M[xi] = sum_ci V[xi, ci] U[xi, ci] (ci in order) and the output tile =
 * bias + A^T M A: 36 products per channel pair and 16 outputs instead of 144 (3 x 3), 6 per 4 outputs
 * instead of 12 (1 x 3); interpolation points 0, 1, -1, 2, -2 and infinity. Every step is a fixed sequence
 * of operations per channel: the bits do not depend on the vector width. */
#define WINOGRAD_MIN_C 8     /* 3 x 3: fewer input channels, the transforms cost more than they save */
#define WINOGRAD_1D_MIN_C 16 /* 1 x 3 likewise */
#define WA 6                 /* inputs per side of a tile */
#define WM 4                 /* outputs per side of a tile */
#define WT 8                 /* tiles per block of the product: WT accumulators */

/* d[i * s], i < WA, set to B^T d */
static inline void winograd_b(vf *d, int s) {
    const vf d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
    d[0] = 4.0f * (d0 - d2) + (d4 - d2);
    d[s] = (d3 + d4) - 4.0f * (d1 + d2);
    d[2 * s] = (d4 - d3) + 4.0f * (d1 - d2);
    d[3 * s] = (d4 - d2) + 2.0f * (d3 - d1);
    d[4 * s] = (d4 - d2) - 2.0f * (d3 - d1);
    d[5 * s] = 4.0f * (d1 - d3) + (d5 - d3);
}

/* g[i * s], i < WA, set to G g of its first 3 */
static inline void winograd_g(vf *g, int s) {
    const vf g0 = g[0], g1 = g[s], g2 = g[2 * s];
    g[0] = g0 * 0.25f;
    g[s] = (g0 + g1 + g2) * (-1.0f / 6);
    g[2 * s] = (g0 - g1 + g2) * (-1.0f / 6);
    g[3 * s] = g0 * (1.0f / 24) + g1 * (1.0f / 12) + g2 * (1.0f / 6);
    g[4 * s] = g0 * (1.0f / 24) - g1 * (1.0f / 12) + g2 * (1.0f / 6);
    g[5 * s] = g2;
}

/* m[i * s], i < WM, set to A^T m of the WA */
static inline void winograd_a(vf *m, int s) {
    const vf m0 = m[0], m5 = m[5 * s];
    const vf p12 = m[s] + m[2 * s], n12 = m[s] - m[2 * s], p34 = m[3 * s] + m[4 * s], n34 = m[3 * s] - m[4 * s];
    m[0] = m0 + p12 + p34;
    m[s] = n12 + 2.0f * n34;
    m[2 * s] = p12 + 4.0f * p34;
    m[3 * s] = n12 + 8.0f * n34 + m5;
}

/* The kernel gradient by the same algorithm: over the tiles, sum_tiles (A dy A^T)[xi] (B^T d B)[xi] per
 * channel pair is M, and the gradient is G^T M G (the transposes of the output and kernel transforms:
 * the gradient of y = A^T (U V) A with respect to g, U = G g G^T). */

/* e[i * s], i < WA, set to A e of its first WM (A^T's transpose) */
static inline void winograd_at(vf *e, int s) {
    const vf y0 = e[0], y1 = e[s], y2 = e[2 * s], y3 = e[3 * s];
    const vf even = y0 + y2, odd = y1 + y3, even4 = y0 + 4.0f * y2, odd4 = y1 + 4.0f * y3;
    e[s] = even + odd;
    e[2 * s] = even - odd;
    e[3 * s] = even4 + 2.0f * odd4;
    e[4 * s] = even4 - 2.0f * odd4;
    e[5 * s] = y3;
}

/* m[i * s], i < 3, set to G^T m of the WA (G's transpose) */
static inline void winograd_gt(vf *m, int s) {
    const vf p12 = (m[s] + m[2 * s]) * (-1.0f / 6), n12 = (m[s] - m[2 * s]) * (-1.0f / 6);
    const vf p34 = m[3 * s] + m[4 * s], n34 = m[3 * s] - m[4 * s], m0 = m[0], m5 = m[5 * s];
    m[0] = m0 * 0.25f + p12 + p34 * (1.0f / 24);
    m[s] = n12 + n34 * (1.0f / 12);
    m[2 * s] = p12 + p34 * (1.0f / 6) + m5;
}

/* Bit i set where 0 <= first + i < size, i < count */
static inline int inside(int first, int count, int size) {
    int bits = 0;
    for (int i = 0; i < count; i++) bits |= (first + i >= 0 && first + i < size) << i;
    return bits;
}

/* Tile rows: WA inputs and WM outputs for 3 x 3 kernels (KH = 3), one of each for 1 x 3 ones */
#define TILE_ROWS(KH) ((KH) == 3 ? WA : 1)
#define OUT_ROWS(KH) ((KH) == 3 ? WM : 1)

/* B^T d B of the tile d[r][s] = p[r * rs + s * cs] (the first `lanes` channels; zero where bit r of rows or
 * bit s of cols is clear) into v[xi * stride], xi = r * WA + s: WA x WA values for 3 x 3 kernels (columns
 * transformed first), 1 x WA for 1 x 3 ones */
static inline __attribute__((always_inline)) void winograd_input(const float *p, size_t rs, size_t cs, int rows,
                                                                 int cols, int lanes, float *v, size_t stride,
                                                                 const int KH) {
    const int ah = TILE_ROWS(KH);
    vf d[WA * WA];
    for (int r = 0; r < ah; r++)
        for (int s = 0; s < WA; s++)
            d[r * WA + s] = rows >> r & cols >> s & 1 ? load_lanes(p + r * rs + s * cs, lanes) : (vf){0};
    if (ah > 1)
        for (int s = 0; s < WA; s++) winograd_b(d + s, WA);
    for (int r = 0; r < ah; r++) winograd_b(d + r * WA, 1);
    for (int xi = 0; xi < ah * WA; xi++) memcpy(v + xi * stride, &d[xi], sizeof(vf));
}

/* winograd_input of every channel of the tile whose first input is (ih0, iw0) in xn[H, W, C] (zero
 * outside it) into v[xi * stride + ci] */
static inline __attribute__((always_inline)) void winograd_tile(const float *xn, int H, int W, int C, int ih0,
                                                                int iw0, float *v, size_t stride, const int KH) {
    const int rows = inside(ih0, TILE_ROWS(KH), H), cols = inside(iw0, WA, W);
    const float *p = xn + ((ptrdiff_t)ih0 * W + iw0) * C; /* (outside xn where rows or cols say so) */
    for (int c0 = 0; c0 < C; c0 += VL)
        winograd_input(p + c0, (size_t)W * C, C, rows, cols, C - c0 < VL ? C - c0 : VL, v + c0, stride, KH);
}

/* M[t, xi, co] = sum_ci V[xi, t, ci] U[xi, ci, co] (ci in order) for a block's WT tiles, each tile's values
 * together for its output transform (a function of its own: inlined in winograd, its tile offsets ran out
 * of registers) */
static __attribute__((noinline)) void winograd_products(float *M, const float *V, const float *U, int XI, int C,
                                                        int CV, int CP) {
    for (int xi = 0; xi < XI; xi++)
        for (int c0 = 0; c0 < CP; c0 += VL) {
            vf acc[WT] = {{0}};
            const float *v = V + (size_t)xi * WT * CV, *u = U + (size_t)xi * C * CP + c0;
            for (int ci = 0; ci < C; ci++) {
                const vf uv = load(u + (size_t)ci * CP);
                for (int t = 0; t < WT; t++) acc[t] += v[(size_t)t * CV + ci] * uv;
            }
            for (int t = 0; t < WT; t++) memcpy(M + ((size_t)t * XI + xi) * CP + c0, &acc[t], sizeof(vf));
        }
}

/* conv_forward by Winograd's algorithm (see above) for KH x 3 kernels, KH = 3 or 1; w packed (KH, 3, C, CP) */
static inline __attribute__((always_inline)) int winograd(const float *x, int N, int H, int W, int C, const float *w,
                                                          const float *bias, int ph, int pw, float *y, int Co,
                                                          int relu, peak_t *peak, const int KH) {
    const int ah = TILE_ROWS(KH), mh = OUT_ROWS(KH), XI = ah * WA;
    const int OH = H + 2 * ph - KH + 1, OW = W + 2 * pw - 2, CP = (Co + VL - 1) / VL * VL, CV = (C + VL - 1) / VL * VL;
    const int TH = (OH + mh - 1) / mh, TW = (OW + WM - 1) / WM;
    float *U = aligned_alloc(sizeof(vf), sizeof(float) * XI * (size_t)C * CP);
    float *V = aligned_alloc(sizeof(vf), sizeof(float) * XI * WT * (size_t)CV);
    float *M = aligned_alloc(sizeof(vf), sizeof(float) * XI * WT * (size_t)CP);
    if (!U || !V || !M) {
        free(U);
        free(V);
        free(M);
        return -1;
    }
    memset(V, 0, sizeof(float) * XI * WT * (size_t)CV); /* the tiles the last block does not have */
    peak_t pk = {{0}, {0}};
    for (int ci = 0; ci < C; ci++)
        for (int c0 = 0; c0 < CP; c0 += VL) {
            vf g[WA * WA];
            for (int r = 0; r < KH; r++)
                for (int s = 0; s < 3; s++) g[r * WA + s] = load(w + ((size_t)(r * 3 + s) * C + ci) * CP + c0);
            if (ah > 1)
                for (int s = 0; s < 3; s++) winograd_g(g + s, WA);
            for (int r = 0; r < ah; r++) winograd_g(g + r * WA, 1);
            for (int xi = 0; xi < XI; xi++) memcpy(U + ((size_t)xi * C + ci) * CP + c0, &g[xi], sizeof(vf));
        }
    const int tiles = N * TH * TW; /* tile k: example k / (TH TW), tile row k / TW % TH, column k % TW */
    for (int k0 = 0; k0 < tiles; k0 += WT) {
        const int nt = tiles - k0 < WT ? tiles - k0 : WT;
        for (int t = 0; t < nt; t++) { /* V[xi][t][CV] */
            const int k = k0 + t, n = k / (TH * TW), ti = k / TW % TH, tj = k % TW;
            winograd_tile(x + (size_t)n * H * W * C, H, W, C, mh * ti - ph, WM * tj - pw, V + (size_t)t * CV,
                          (size_t)WT * CV, KH);
        }
        winograd_products(M, V, U, XI, C, CV, CP);
        for (int t = 0; t < nt; t++) {
            const int k = k0 + t, n = k / (TH * TW), oh0 = mh * (k / TW % TH), ow0 = WM * (k % TW);
            for (int c0 = 0; c0 < Co; c0 += VL) {
                const int lanes = Co - c0 < VL ? Co - c0 : VL;
                const vf b0 = !bias ? (vf){0} : load_lanes(bias + c0, lanes);
                vf m[WA * WA];
                for (int xi = 0; xi < XI; xi++) m[xi] = load(M + ((size_t)t * XI + xi) * CP + c0);
                if (ah > 1)
                    for (int s = 0; s < WA; s++) winograd_a(m + s, WA);
                for (int r = 0; r < mh; r++) winograd_a(m + r * WA, 1);
                for (int i = 0; i < mh && oh0 + i < OH; i++)
                    for (int j = 0; j < WM && ow0 + j < OW; j++)
                        put(y + ((size_t)(n * OH + oh0 + i) * OW + ow0 + j) * Co + c0, b0 + m[i * WA + j], lanes,
                            relu, peak != NULL, &pk);
            }
        }
    }
    free(U);
    free(V);
    free(M);
    if (peak) *peak = pk;
    return 0;
}

/* y[n, oh, ow, co] = bias[co] + sum_{kh, kw, ci} x[n, oh + kh - ph, ow + kw - pw, ci] * w[kh, kw, ci, co]
 * (x zero outside), for oh < OH = H + 2 ph - KH + 1, ow < OW likewise. w is packed (KH, KW, C, CP) with
 * CP = Co rounded up to VL, zeros beyond Co; bias[Co] or NULL; relu: y = relu_of(y) as it is written;
 * peak (or NULL) is set to the peak of the outputs written. Returns -1 when out of memory. (Accumulators are
 * indexed by constants only, so that they stay in registers.) */
static int conv_packed(const float *x, int N, int H, int W, int C, const float *w, const float *bias, int KH,
                       int KW, int ph, int pw, float *y, int Co, int relu, peak_t *peak) {
    if (KH == 3 && KW == 3 && C >= WINOGRAD_MIN_C)
        return winograd(x, N, H, W, C, w, bias, ph, pw, y, Co, relu, peak, 3);
    if (KH == 1 && KW == 3 && C >= WINOGRAD_1D_MIN_C)
        return winograd(x, N, H, W, C, w, bias, ph, pw, y, Co, relu, peak, 1);
    const int OH = H + 2 * ph - KH + 1, OW = W + 2 * pw - KW + 1, CP = (Co + VL - 1) / VL * VL;
    const int span = B + KW - 1; /* input columns of a block of B outputs */
    /* The blocks that meet the padding (all but the inner ones, when there is padding or a last partial
     * block) read the KH input rows of their output row copied once between zeros: pw columns before,
     * pw + B after */
    const int at_padding = pw > 0 || OW % B, PW = W + 2 * pw + B;
    float *padded = at_padding ? calloc((size_t)KH * PW * C, sizeof(float)) : NULL;
    if (at_padding && !padded) return -1;
    peak_t pk = {{0}, {0}};
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < OH; oh++) {
            for (int kh = 0; kh < KH && at_padding; kh++) {
                const int ih = oh + kh - ph;
                if (ih >= 0 && ih < H)
                    memcpy(padded + ((size_t)kh * PW + pw) * C, x + ((size_t)(n * H + ih) * W) * C,
                           sizeof(float) * W * C);
            }
            for (int c0 = 0; c0 < Co; c0 += VL) {
                const int lanes = Co - c0 < VL ? Co - c0 : VL;
                const vf b0 = !bias ? (vf){0} : load_lanes(bias + c0, lanes);
                for (int ow0 = 0; ow0 < OW; ow0 += B) {
                    const int nb = OW - ow0 < B ? OW - ow0 : B;
                    vf acc[B];
                    for (int j = 0; j < B; j++) acc[j] = b0;
                    for (int kh = 0; kh < KH; kh++) {
                        const int ih = oh + kh - ph;
                        if (ih < 0 || ih >= H) continue;
                        /* the taps (kw, ci) of output ow0 + j: KW * C consecutive floats, m = kw * C + ci from
                         * input column ow0 + j - pw */
                        const int iw0 = ow0 - pw;
                        const float *xp = iw0 >= 0 && iw0 + span <= W ? x + ((size_t)(n * H + ih) * W + iw0) * C
                                                                      : padded + ((size_t)kh * PW + ow0) * C;
                        const float *wk = w + (size_t)kh * KW * C * CP + c0;
                        for (int m = 0; m < KW * C; m++) {
                            const vf wv = load(wk + (size_t)m * CP);
                            for (int j = 0; j < B; j++) acc[j] += xp[j * C + m] * wv;
                        }
                    }
                    float *out = y + ((size_t)(n * OH + oh) * OW + ow0) * Co + c0;
                    for (int j = 0; j < B; j++)
                        if (j < nb) put(out + (size_t)j * Co, acc[j], lanes, relu, peak != NULL, &pk);
                }
            }
        }
    free(padded);
    if (peak) *peak = pk;
    return 0;
}

/* Packs PyTorch's w[co, ci, kh, kw] (at w + co * s0 + ci * s1 + kh * s2 + kw * s3: any memory format)
 * for conv_packed: (KH, KW, Ci, CP) with CP = Co rounded up to VL, zeros beyond Co; transposed (for
 * the input gradient, a forward convolution of dy): (KH, KW, Co, CiP) of the kernel flipped in space,
 * wt[kh, kw, co, ci] = w[co, ci, KH - 1 - kh, KW - 1 - kw]. */
static void pack_kernel(const float *w, int64_t s0, int64_t s1, int64_t s2, int64_t s3, int Co, int Ci, int KH, int KW,
                        int transposed, float *out) {
    const int outer = transposed ? Co : Ci, inner = transposed ? Ci : Co;
    const int P = (inner + VL - 1) / VL * VL;
    memset(out, 0, sizeof(float) * (size_t)KH * KW * outer * P);
    for (int co = 0; co < Co; co++)
        for (int ci = 0; ci < Ci; ci++)
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++) {
                    const float v = w[co * s0 + ci * s1 + kh * s2 + kw * s3];
                    if (transposed)
                        out[(((size_t)(KH - 1 - kh) * KW + (KW - 1 - kw)) * Co + co) * P + ci] = v;
                    else
                        out[(((size_t)kh * KW + kw) * Ci + ci) * P + co] = v;
                }
}

typedef struct {
    const float *x, *packed, *bias;
    const int *edges;
    int H, W, C, KH, KW, ph, pw, OH, OW, Co, relu, bias_stride, pieces;
    float *y;
    peak_t *peaks; /* one per task, or NULL */
    atomic_int failed;
} forward_job;

/* Task `task` of conv_forward: the examples of piece task % pieces (of as many equal ones) of part
 * task / pieces */
static void forward_task(void *context, int task) {
    forward_job *j = context;
    const int p = task / j->pieces, k = task % j->pieces, first = j->edges[p], n = j->edges[p + 1] - first;
    const int n0 = first + n * k / j->pieces, n1 = first + n * (k + 1) / j->pieces;
    peak_t *peak = j->peaks ? j->peaks + task : NULL;
    if (peak) *peak = (peak_t){{0}, {0}};
    if (n1 > n0 && conv_packed(j->x + (size_t)n0 * j->H * j->W * j->C, n1 - n0, j->H, j->W, j->C, j->packed,
                               j->bias ? j->bias + (size_t)p * j->bias_stride : NULL, j->KH, j->KW, j->ph, j->pw,
                               j->y + (size_t)n0 * j->OH * j->OW * j->Co, j->Co, j->relu, peak))
        atomic_store(&j->failed, 1);
}

/* A convolution of x[N, H, W, C] with PyTorch's kernel w[co, ci, kh, kw] (strides s0..s3, packed here; see
 * conv_packed): transposed, the input gradient's, of x = dy by the kernel flipped in space with co and ci
 * swapped (C = its co, Co = its ci). The examples edges[p] <= n < edges[p + 1] of part p < parts take
 * the bias at bias + p * bias_stride (bias_stride 0: one bias; bias NULL: none); N = edges[parts].
 * relu: the outputs go through PyTorch's relu. peaks (or NULL): peaks[p] = max|y| over part p as written
 * (NaN when it holds a NaN, as max_abs_slices). With kernel threads, the parts (cut into pieces when there
 * are fewer parts than threads) run side by side: each output is computed alone, the same either way.
 * Returns -1 when out of memory. */
int conv_forward(const float *x, int H, int W, int C, const float *w, int64_t s0, int64_t s1, int64_t s2, int64_t s3,
                 int transposed, const float *bias, int bias_stride, const int *edges, int parts, int KH, int KW,
                 int ph, int pw, float *y, int Co, int relu, double *peaks) {
    const int OH = H + 2 * ph - KH + 1, OW = W + 2 * pw - KW + 1, CP = (Co + VL - 1) / VL * VL;
    float *packed = aligned_alloc(sizeof(vf), sizeof(float) * (size_t)KH * KW * C * CP);
    if (!packed) return -1;
    pack_kernel(w, s0, s1, s2, s3, transposed ? C : Co, transposed ? Co : C, KH, KW, transposed, packed);
    const int threads = kernel_threads(), pieces = parts >= threads ? 1 : (threads + parts - 1) / parts;
    peak_t found[parts * pieces];
    forward_job job = {x, packed, bias, edges, H, W, C, KH, KW, ph, pw, OH, OW, Co, relu, bias_stride, pieces, y,
                       peaks ? found : NULL, 0};
    run_tasks(forward_task, &job, parts * pieces, 2.0 * edges[parts] * OH * OW * Co * KH * KW * C);
    free(packed);
    if (atomic_load(&job.failed)) return -1;
    for (int p = 0; p < parts && peaks; p++) {
        for (int k = 1; k < pieces; k++) peak_merge(&found[p * pieces], &found[p * pieces + k]);
        peaks[p] = peak_value(&found[p * pieces]);
    }
    return 0;
}

#define WTG 16 /* tiles per block of the kernel gradient's products */
#define CIB 8  /* input channels per block of them: CIB accumulators */

/* M[xi, ci, co] += V[xi, t, ci] E[xi, t, co] for the block's tiles t < nt in order (ci < CV, co < CP: the
 * transforms write whole vectors, zero beyond C and Co) */
static void winograd_weight_products(float *M, const float *V, const float *E, int nt, int XI, int CV, int CP) {
    for (int xi = 0; xi < XI; xi++)
        for (int c0 = 0; c0 < CP; c0 += VL)
            for (int ci0 = 0; ci0 < CV; ci0 += CIB) {
                float *m = M + ((size_t)xi * CV + ci0) * CP + c0;
                const float *v = V + (size_t)xi * WTG * CV + ci0, *e = E + (size_t)xi * WTG * CP + c0;
                vf acc[CIB];
                for (int j = 0; j < CIB; j++) acc[j] = load(m + (size_t)j * CP);
                for (int t = 0; t < nt; t++) {
                    const vf ev = load(e + (size_t)t * CP);
                    for (int j = 0; j < CIB; j++) acc[j] += v[(size_t)t * CV + j] * ev;
                }
                for (int j = 0; j < CIB; j++) memcpy(m + (size_t)j * CP, &acc[j], sizeof(vf));
            }
}

/* E[xi * WTG * CP + co] = (A dy A^T)[xi] of the output gradient's tile (ti, tj) of example n (zero outside
 * OH x OW), for the Co channels */
static inline __attribute__((always_inline)) void winograd_output_grad(const float *dy, int n, int ti, int tj,
                                                                       int OH, int OW, int Co, float *E,
                                                                       int CP, const int KH) {
    const int ah = TILE_ROWS(KH), mh = OUT_ROWS(KH);
    for (int c0 = 0; c0 < Co; c0 += VL) {
        const int lanes = Co - c0 < VL ? Co - c0 : VL;
        vf e[WA * WA];
        for (int i = 0; i < mh; i++)
            for (int j = 0; j < WM; j++) {
                const int oh = mh * ti + i, ow = WM * tj + j;
                e[i * WA + j] = oh < OH && ow < OW
                    ? load_lanes(dy + ((size_t)(n * OH + oh) * OW + ow) * Co + c0, lanes) : (vf){0};
            }
        for (int i = 0; i < mh; i++) winograd_at(e + i * WA, 1);
        if (ah > 1)
            for (int j = 0; j < WA; j++) winograd_at(e + j, WA);
        for (int xi = 0; xi < ah * WA; xi++) memcpy(E + (size_t)xi * WTG * CP + c0, &e[xi], sizeof(vf));
    }
}

/* The kernel gradient of a KH x 3 convolution (KH = 3 or 1) by Winograd's algorithm (see
 * winograd_at): for each shard, M[xi, ci, co] = the sum over its tiles (n, tile row, tile column in order)
 * of V[xi, ci] E[xi, co], V = B^T d B of the input tile and E = A dy A^T of the output gradient's, then
 * dw = G^T M G, added to the shards before as conv_backward_weight does. Returns -1 when out of memory. */
static inline __attribute__((always_inline)) int winograd_weight(const float *x, int H, int W, int C, const float *dy,
                                                                 int Co, int ph, int pw, const int *edges,
                                                                 int shards, float *dw, const int KH) {
    const int ah = TILE_ROWS(KH), mh = OUT_ROWS(KH), XI = ah * WA;
    const int OH = H + 2 * ph - KH + 1, OW = W + 2 * pw - 2, CP = (Co + VL - 1) / VL * VL;
    const int CV = (C + VL - 1) / VL * VL, TH = (OH + mh - 1) / mh, TW = (OW + WM - 1) / WM;
    float *V = aligned_alloc(sizeof(vf), sizeof(float) * XI * WTG * (size_t)CV);
    float *E = aligned_alloc(sizeof(vf), sizeof(float) * XI * WTG * (size_t)CP);
    float *M = aligned_alloc(sizeof(vf), sizeof(float) * XI * (size_t)CV * CP);
    if (!V || !E || !M) {
        free(V);
        free(E);
        free(M);
        return -1;
    }
    for (int shard = 0; shard < shards; shard++) {
        memset(M, 0, sizeof(float) * XI * (size_t)CV * CP);
        int nt = 0;
        for (int n = edges[shard]; n < edges[shard + 1]; n++)
            for (int ti = 0; ti < TH; ti++)
                for (int tj = 0; tj < TW; tj++) {
                    winograd_tile(x + (size_t)n * H * W * C, H, W, C, mh * ti - ph, WM * tj - pw,
                                  V + (size_t)nt * CV, (size_t)WTG * CV, KH);
                    winograd_output_grad(dy, n, ti, tj, OH, OW, Co, E + (size_t)nt * CP, CP, KH);
                    if (++nt == WTG) {
                        winograd_weight_products(M, V, E, nt, XI, CV, CP);
                        nt = 0;
                    }
                }
        winograd_weight_products(M, V, E, nt, XI, CV, CP);
        for (int ci = 0; ci < C; ci++)
            for (int c0 = 0; c0 < Co; c0 += VL) {
                vf m[WA * WA];
                for (int xi = 0; xi < XI; xi++) m[xi] = load(M + ((size_t)xi * CV + ci) * CP + c0);
                for (int r = 0; r < ah; r++) winograd_gt(m + r * WA, 1);
                if (ah > 1)
                    for (int s = 0; s < 3; s++) winograd_gt(m + s, WA);
                for (int l = 0; l < VL && c0 + l < Co; l++)
                    for (int kh = 0; kh < KH; kh++)
                        for (int kw = 0; kw < 3; kw++) {
                            float *to = dw + (((size_t)(c0 + l) * C + ci) * KH + kh) * 3 + kw;
                            *to = shard ? *to + m[kh * WA + kw][l] : m[kh * WA + kw][l];
                        }
            }
    }
    free(V);
    free(E);
    free(M);
    return 0;
}

/* Of 8, 9 and 12 values of m per block of conv_backward_weight, the width that pads M the least (the
 * wider when tied: fewer loads per multiply-add) */
static int block_width(int M) {
    int best = 8;
    for (int cb = 9; cb <= CB_MAX; cb += 3)
        if ((M + cb - 1) / cb * cb <= (M + best - 1) / best * best) best = cb;
    return best;
}

/* s[j] += sum over ow < OW, in order, of xp[ow * C + j] * d[ow * Co] (the first `lanes` channels), j < cb */
static inline __attribute__((always_inline)) void kernel_grad_block(vf *s, const float *xp, int C, const float *d,
                                                                    int Co, int OW, int lanes, const int cb) {
    vf acc[CB_MAX];
    for (int j = 0; j < cb; j++) acc[j] = s[j];
    for (int ow = 0; ow < OW; ow++) {
        const float *dp = d + (size_t)ow * Co;
        const vf dv = load_lanes(dp, lanes);
        for (int j = 0; j < cb; j++) acc[j] += xp[(size_t)ow * C + j] * dv;
    }
    for (int j = 0; j < cb; j++) s[j] = acc[j];
}

/* conv_backward_weight's kernel gradient by the direct sum.
 *
 * For one kernel row kh, the taps (kw, ci) of an output position are KW * C consecutive floats of the
 * input row padded with pw zero columns on each side, m = kw * C + ci from (ow * C): sums run over blocks
 * of cb values of m (the last block's extra values read zeros and are not kept), row after row, with the
 * running sums kept in `sums` between rows so that the rows stay in cache. */
static int direct_weight(const float *x, int H, int W, int C, const float *dy, int Co, int KH, int KW, int ph,
                         int pw, const int *edges, int shards, float *dw) {
    const int OH = H + 2 * ph - KH + 1, OW = W + 2 * pw - KW + 1;
    const int tiles = (Co + VL - 1) / VL, M = KW * C, cb = block_width(M), blocks = (M + cb - 1) / cb;
    const size_t padded = (size_t)(W + 2 * pw) * C + cb;
    const size_t count = (size_t)tiles * KH * blocks * cb;
    vf *sums = aligned_alloc(sizeof(vf), count * sizeof(vf)); /* a multiple of its alignment */
    float *row = calloc(padded, sizeof(float));
    if (!sums || !row) {
        free(sums);
        free(row);
        return -1;
    }
    for (int shard = 0; shard < shards; shard++) {
        memset(sums, 0, count * sizeof(vf));
        for (int n = edges[shard]; n < edges[shard + 1]; n++)
            for (int ih = 0; ih < H; ih++) {
                memcpy(row + (size_t)pw * C, x + (size_t)(n * H + ih) * W * C, sizeof(float) * W * C);
                for (int kh = 0; kh < KH; kh++) {
                    const int oh = ih - kh + ph;
                    if (oh < 0 || oh >= OH) continue;
                    const float *d = dy + (size_t)(n * OH + oh) * OW * Co;
                    for (int t = 0; t < tiles; t++) {
                        const int c0 = t * VL, lanes = Co - c0 < VL ? Co - c0 : VL;
                        for (int b = 0; b < blocks; b++) {
                            vf *s = sums + ((size_t)(t * KH + kh) * blocks + b) * cb;
                            const float *xp = row + (size_t)b * cb;
                            switch (cb) { /* the block width a compile-time constant: accumulators in registers */
                            case 9: kernel_grad_block(s, xp, C, d + c0, Co, OW, lanes, 9); break;
                            case 12: kernel_grad_block(s, xp, C, d + c0, Co, OW, lanes, 12); break;
                            default: kernel_grad_block(s, xp, C, d + c0, Co, OW, lanes, 8); break;
                            }
                        }
                    }
                }
            }
        for (int t = 0; t < tiles; t++)
            for (int kh = 0; kh < KH; kh++)
                for (int m = 0; m < M; m++) {
                    const vf v = sums[(size_t)(t * KH + kh) * blocks * cb + m];
                    for (int l = 0; l < VL && t * VL + l < Co; l++) {
                        float *to = dw + (((size_t)(t * VL + l) * C + m % C) * KH + kh) * KW + m / C;
                        *to = shard ? *to + v[l] : v[l];
                    }
                }
    }
    free(sums);
    free(row);
    return 0;
}

/* conv_backward_weight on the calling thread */
static int weight_grads(const float *x, int H, int W, int C, const float *dy, int Co, int KH, int KW, int ph, int pw,
                        const int *edges, int shards, float *dw, float *db) {
    int status;
    if (KH == 3 && KW == 3 && C >= WINOGRAD_MIN_C)
        status = winograd_weight(x, H, W, C, dy, Co, ph, pw, edges, shards, dw, 3);
    else if (KH == 1 && KW == 3 && C >= WINOGRAD_1D_MIN_C)
        status = winograd_weight(x, H, W, C, dy, Co, ph, pw, edges, shards, dw, 1);
    else
        status = direct_weight(x, H, W, C, dy, Co, KH, KW, ph, pw, edges, shards, dw);
    if (status || !db) return status;
    const int OH = H + 2 * ph - KH + 1, OW = W + 2 * pw - KW + 1;
    for (int shard = 0; shard < shards; shard++) {
        const size_t first = (size_t)edges[shard] * OH * OW, last = (size_t)edges[shard + 1] * OH * OW;
        for (int c0 = 0; c0 < Co; c0 += VL) {
            const int lanes = Co - c0 < VL ? Co - c0 : VL;
            vf acc = {0};
            for (size_t p = first; p < last; p++) acc += load_lanes(dy + p * Co + c0, lanes);
            for (int l = 0; l < lanes; l++) db[c0 + l] = shard ? db[c0 + l] + acc[l] : acc[l];
        }
    }
    return 0;
}

typedef struct {
    const float *x, *dy;
    const int *edges;
    int H, W, C, Co, KH, KW, ph, pw;
    float *dw, *db, *scratch; /* shard 0's gradients in dw and db, shard s's at scratch + (s - 1) * size */
    size_t size;
    atomic_int failed;
} weight_job;

static void weight_task(void *context, int shard) {
    weight_job *j = context;
    float *dw = shard ? j->scratch + (size_t)(shard - 1) * j->size : j->dw;
    float *db = !j->db ? NULL : shard ? dw + j->size - j->Co : j->db;
    if (weight_grads(j->x, j->H, j->W, j->C, j->dy, j->Co, j->KH, j->KW, j->ph, j->pw, j->edges + shard, 1, dw, db))
        atomic_store(&j->failed, 1);
}

/* dw[co, ci, kh, kw] (PyTorch's layout, plain) = the sum over shards, in order, of each shard's
 * sum_{n, oh, ow} x[n, oh + kh - ph, ow + kw - pw, ci] * dy[n, oh, ow, co] (x zero outside): the terms
 * in the order of (n, oh, ow) (direct_weight; adding 0 * dy leaves a sum unchanged), or by Winograd's
 * algorithm for the kernels the forward pass takes it for (winograd_weight: the tiles in that order);
 * db[co] likewise of dy[..., co], in (n, oh, ow) order, when db is not NULL. Shard s holds the examples
 * edges[s] <= n < edges[s + 1] (edges[0] = 0, edges[shards] = the batch size): the result is what
 * computing each shard alone and adding them in order gives. With kernel threads, the shards are computed
 * side by side, each into a sum of its own, and added in order. Returns -1 when out of memory. */
int conv_backward_weight(const float *x, int H, int W, int C, const float *dy, int Co, int KH, int KW,
                         int ph, int pw, const int *edges, int shards, float *dw, float *db) {
    if (shards < 2 || kernel_threads() < 2) return weight_grads(x, H, W, C, dy, Co, KH, KW, ph, pw, edges, shards, dw, db);
    const size_t kernel = (size_t)Co * C * KH * KW, size = kernel + (db ? Co : 0);
    float *scratch = malloc(sizeof(float) * size * (shards - 1));
    if (!scratch) return -1;
    weight_job job = {x, dy, edges, H, W, C, Co, KH, KW, ph, pw, dw, db, scratch, size, 0};
    const double OH = H + 2 * ph - KH + 1, OW = W + 2 * pw - KW + 1;
    run_tasks(weight_task, &job, shards, 2.0 * edges[shards] * OH * OW * kernel);
    for (int s = 1; s < shards; s++) {
        const float *from = scratch + (size_t)(s - 1) * size;
        for (size_t i = 0; i < kernel; i++) dw[i] += from[i];
        for (int c = 0; c < Co && db; c++) db[c] += from[kernel + c];
    }
    free(scratch);
    return atomic_load(&job.failed) ? -1 : 0;
}

/* Max pooling with a (KH, KW) window and the same stride, no padding, on x[N, H, W, C]: y[N, OH, OW, C]
 * with OH = H / KH, OW = W / KW, and at[N, OH, OW, C] = the position in its window (kh * KW + kw)
 * of each maximum: the first in row-major window order when tied, the last NaN (as PyTorch's). */
static void pool_forward(const float *x, int N, int H, int W, int C, int KH, int KW, float *y, int32_t *at) {
    const int OH = H / KH, OW = W / KW;
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                const size_t o = ((size_t)(n * OH + oh) * OW + ow) * C;
                const float *first = x + ((size_t)(n * H + oh * KH) * W + ow * KW) * C;
                int c = 0;
                for (; c + VL <= C; c += VL) { /* vectors of channels: take = v > best or v is NaN */
                    vi best = (vi)load(first + c), where = (vi){0};
                    for (int k = 1; k < KH * KW; k++) {
                        const vf v = load(first + ((size_t)(k / KW) * W + k % KW) * C + c);
                        const vi take = (v > (vf)best) | (v != v);
                        best = ((vi)v & take) | (best & ~take);
                        where = ((vi){0} + k & take) | (where & ~take);
                    }
                    memcpy(y + o + c, &best, sizeof best);
                    memcpy(at + o + c, &where, sizeof where);
                }
                for (; c < C; c++) {
                    float best = first[c];
                    int32_t where = 0;
                    for (int k = 1; k < KH * KW; k++) {
                        const float v = first[((size_t)(k / KW) * W + k % KW) * C + c];
                        if (v > best || v != v) {
                            best = v;
                            where = k;
                        }
                    }
                    y[o + c] = best;
                    at[o + c] = where;
                }
            }
}

/* dx[N, H, W, C] = dy[N, OH, OW, C] at the maxima max_pool_forward found, zero elsewhere (each element
 * written once) */
static void pool_backward(const float *dy, const int32_t *at, int N, int H, int W, int C, int KH, int KW, float *dx) {
    const int OH = H / KH, OW = W / KW;
    if (H % KH || W % KW) /* rows or columns no window covers */
        memset(dx, 0, sizeof(float) * (size_t)N * H * W * C);
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                const size_t o = ((size_t)(n * OH + oh) * OW + ow) * C;
                float *first = dx + ((size_t)(n * H + oh * KH) * W + ow * KW) * C;
                for (int k = 0, kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++, k++) {
                        float *to = first + ((size_t)kh * W + kw) * C;
                        int c = 0;
                        for (; c + VL <= C; c += VL) {
                            vi where;
                            memcpy(&where, at + o + c, sizeof where);
                            const vi keep = where == k;
                            const vi value = (vi)load(dy + o + c) & keep;
                            memcpy(to + c, &value, sizeof value);
                        }
                        for (; c < C; c++) to[c] = at[o + c] == k ? dy[o + c] : 0.0f;
                    }
            }
}

typedef struct {
    const float *x;
    float *y;
    int32_t *at;
    int N, H, W, C, KH, KW, pieces;
} pooling_job;

/* The examples of piece k (of `pieces` equal ones): [first, last), their offsets in x and in y */
static void piece(const pooling_job *j, int k, int *first, int *last, size_t *in, size_t *out) {
    *first = j->N * k / j->pieces;
    *last = j->N * (k + 1) / j->pieces;
    *in = (size_t)*first * j->H * j->W * j->C;
    *out = (size_t)*first * (j->H / j->KH) * (j->W / j->KW) * j->C;
}

static void pool_forward_task(void *context, int k) {
    const pooling_job *j = context;
    int first, last;
    size_t in, out;
    piece(j, k, &first, &last, &in, &out);
    pool_forward(j->x + in, last - first, j->H, j->W, j->C, j->KH, j->KW, j->y + out, j->at + out);
}

/* pooling_job for the backward pass: x is dy, y is dx (their offsets swapped) */
static void pool_backward_task(void *context, int k) {
    const pooling_job *j = context;
    int first, last;
    size_t in, out;
    piece(j, k, &first, &last, &in, &out);
    pool_backward(j->x + out, j->at + out, last - first, j->H, j->W, j->C, j->KH, j->KW, j->y + in);
}

/* pool_forward, the examples cut between the kernel threads */
void max_pool_forward(const float *x, int N, int H, int W, int C, int KH, int KW, float *y, int32_t *at) {
    pooling_job job = {x, y, at, N, H, W, C, KH, KW, kernel_threads()};
    run_tasks(pool_forward_task, &job, job.pieces, (double)N * H * W * C);
}

/* pool_backward likewise */
void max_pool_backward(const float *dy, const int32_t *at, int N, int H, int W, int C, int KH, int KW, float *dx) {
    pooling_job job = {dy, dx, (int32_t *)at, N, H, W, C, KH, KW, kernel_threads()};
    run_tasks(pool_backward_task, &job, job.pieces, (double)N * H * W * C);
}

/* The slice x[edges[s] * row, edges[s + 1] * row) of a batch held by job j (its x, row and edges), s < shards,
 * each `row` floats per example: its start and length */
#define SLICE(j, s) \
    ((j)->x + (int64_t)(j)->edges[s] * (j)->row), ((int64_t)((j)->edges[(s) + 1] - (j)->edges[s]) * (j)->row)

#define MA 4 /* independent running maxima of max_abs (a compare and a blend per vector: latency-bound) */
static float max_abs(const float *x, int64_t n) {
    vf best[MA] = {{0}};
    vi nan = {0};
    int64_t i = 0;
    for (; i + MA * VL <= n; i += MA * VL)
        for (int k = 0; k < MA; k++) {
            const vf a = (vf)((vi)load(x + i + k * VL) & 0x7fffffff);
            const vi more = a > best[k];
            best[k] = (vf)(((vi)a & more) | ((vi)best[k] & ~more));
            nan |= a != a;
        }
    float m = 0.0f;
    int any_nan = 0;
    for (int k = 0; k < MA; k++)
        for (int l = 0; l < VL; l++) m = best[k][l] > m ? best[k][l] : m;
    for (int l = 0; l < VL; l++) any_nan |= nan[l] != 0;
    for (; i < n; i++) {
        const float a = fabsf(x[i]);
        m = a > m ? a : m;
        any_nan |= a != a;
    }
    return any_nan ? NAN : m;
}

typedef struct {
    const float *x;
    int64_t row;
    const int *edges;
    double *out;
} max_abs_job;

static void max_abs_task(void *context, int s) {
    const max_abs_job *j = context;
    j->out[s] = max_abs(SLICE(j, s));
}

/* out[s] = max|x| over slice s, NaN when it holds a NaN (the slices side by side with kernel threads) */
void max_abs_slices(const float *x, int64_t row, const int *edges, int shards, double *out) {
    max_abs_job job = {x, row, edges, out};
    run_tasks(max_abs_task, &job, shards, (double)edges[shards] * row);
}

/* Rounding of x * scale to an integer (a float), for the roundings of microai.quant.qat_modules:
 * 0 trunc, 1 nearest (half away from zero), 2 floor, 3 half_up. Each is the same float operations as
 * there (x * scale is exact: scale is a power of two); relu: then PyTorch's relu (-0 and NaN kept). */
#define QUANTIZE(ROUND)                                                                                  \
    for (int64_t i = 0; i < n; i++) {                                                                    \
        const float v = x[i] * scale;                                                                    \
        float r = ROUND;                                                                                 \
        if (clamp) {                                                                                     \
            r = r < lo ? lo : r;                                                                         \
            r = r > hi ? hi : r;                                                                         \
        }                                                                                                \
        r *= inverse;                                                                                    \
        x[i] = relu && r < 0 ? 0.0f : r;                                                                 \
    }

static void quantize(float *x, int64_t n, float scale, float inverse, int clamp, float lo, float hi, int rounding,
                     int relu) {
    switch (rounding) {
    case 0: QUANTIZE(truncf(v)) break;
    case 1: QUANTIZE(copysignf(floorf(fabsf(v) + 0.5f), v)) break;
    case 2: QUANTIZE(floorf(v)) break;
    default: QUANTIZE(floorf(v + 0.5f)) break;
    }
}

typedef struct {
    float *x;
    int64_t row;
    const int *edges;
    const float *scale, *inverse;
    const uint8_t *clamp;
    float lo, hi;
    int rounding, relu;
} quantize_job;

static void quantize_task(void *context, int s) {
    const quantize_job *j = context;
    quantize(SLICE(j, s), j->scale[s], j->inverse[s], j->clamp[s], j->lo, j->hi, j->rounding, j->relu);
}

static void quantize_all(float *x, int64_t row, const int *edges, int shards, const float *scale,
                         const float *inverse, const uint8_t *clamp, float lo, float hi, int rounding, int relu) {
    quantize_job job = {x, row, edges, scale, inverse, clamp, lo, hi, rounding, relu};
    run_tasks(quantize_task, &job, shards, 4.0 * edges[shards] * row);
}

/* Slice s of x set to round(x * scale[s]) (saturated to [lo, hi] where clamp[s]) * inverse[s], in place (the
 * slices side by side with kernel threads) */
void quantize_slices(float *x, int64_t row, const int *edges, int shards, const float *scale, const float *inverse,
                     const uint8_t *clamp, float lo, float hi, int rounding) {
    quantize_all(x, row, edges, shards, scale, inverse, clamp, lo, hi, rounding, 0);
}

#define MAX_EXACT_FRAC 126 /* largest |frac| whose 2^frac and 2^-frac are both normal float32 numbers */

/* An observing fake quantizer of microai.quant.qat_modules (FakeQuantizer in training, per layer) over the
 * slices of x, each as its own batch: peak[s] = max|slice s| (read from peaks, or measured here when peaks
 * is NULL); range[s] = peak[s], or with average set keep * previous + take * peak[s] (each product rounded
 * on its own, as in Python: no FMA); frac[s] = width - 1 - e for range[s] = f * 2^e, 0.5 <= f < 1 (e = 0 for
 * 0: frac_bits_for); then slice s quantized as quantize_slices does with 2^frac[s], saturated only when
 * peak[s] * 2^frac[s] can pass hi (_may_saturate), and rectified when relu. Writes ranges[s] and fracs[s].
 * Returns 0; 1 without changing x when a range is not a finite number >= 0 or a |frac| exceeds
 * MAX_EXACT_FRAC (the caller's own operations handle those). */
int observe_quantize(float *x, int64_t row, const int *edges, int shards, const double *peaks, int average,
                     double previous, double keep, double take, int width, int rounding, int relu, double *ranges,
                     int *fracs) {
    double measured[shards];
    if (!peaks) {
        max_abs_slices(x, row, edges, shards, measured);
        peaks = measured;
    }
    const double limit = ldexp(1.0, width - 1) - 1;
    float scale[shards], inverse[shards];
    uint8_t clamp[shards];
    for (int s = 0; s < shards; s++) {
        volatile double kept = keep * previous, taken = take * peaks[s]; /* rounded apart: no contraction */
        const double range = average ? kept + taken : peaks[s];
        if (!(range >= 0) || isinf(range)) return 1;
        int e;
        frexp(range, &e);
        const int frac = width - 1 - e;
        if (frac > MAX_EXACT_FRAC || frac < -MAX_EXACT_FRAC) return 1;
        ranges[s] = range;
        fracs[s] = frac;
        scale[s] = ldexpf(1.0f, frac);
        inverse[s] = ldexpf(1.0f, -frac);
        clamp[s] = !(ldexp(peaks[s], frac) <= limit);
    }
    quantize_all(x, row, edges, shards, scale, inverse, clamp, (float)-(limit + 1), (float)limit, rounding, relu);
    return 0;
}
