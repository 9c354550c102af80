/* Fast CPU adder kernels for robustadder's "cpu" backend.
 *
 * Built on first use by robustadder/kernels/cpu.py with the system C++ compiler (-O3 -march=native
 * -fopenmp) and loaded with ctypes: no torch headers, no Python extension ABI. Portable C++ with GCC
 * vector extensions (vector width and register blocks chosen for the instruction set, see Traits) and
 * OpenMP. The same tiles compute the multiplicative convolution (conv = 1), so that CNN layers get the
 * same determinism guarantee as the adder layers.
 *
 * Design: implicit im2col. Each thread copies the sample it works on into a zero-padded buffer of its own
 * (C x (H+2p) x (W+2p)), so that no tile needs bounds tests. The output positions of a sample (L = Ho*Wo)
 * are cut into tiles of PB = two vectors. With stride 1 and output rows a multiple of the vector length,
 * a tile's K x PB slice of the im2col matrix (K = C*kh*kw) is read in place from the padded sample (each
 * half tile is one contiguous run of every row k); otherwise the thread gathers it into a tile buffer that
 * stays in L1/L2. The register-blocked reduction then writes the outputs (forward) or adds the tile's input
 * gradient into a padded gradient buffer whose interior becomes dx (backward). No im2col matrix is ever
 * materialized. (A materialized im2col of ResNet-20 stage 1 at batch 128 is 75 MB; streaming it through DRAM
 * cost more than the arithmetic. The bounds-tested gather this replaced was 40 % of the forward's time on a
 * 16-filter layer.)
 *
 * Arithmetic (see forward_block, signed_by): the forward computes -sum|x - w| as 2 sum min(x, w) - sum x -
 * sum w, one min and one add per term; the exact input gradient flips g's sign bit instead of multiplying.
 *
 * Layouts: x/dx (N, C, H, W); y/g (N, O, Ho*Wo); w (O, K); wt its transpose (K, O). The scratch passed
 * in holds, per thread, 2*K*PB + O*PB elements; the padded buffers are allocated per call.
 *
 * Every output element is reduced by one thread in a fixed order, and the input gradient of a sample is
 * accumulated by one thread in a fixed order: results are bit-identical for any thread count and
 * independent of batch composition (a sample's result never depends on its neighbours or batch size).
 */
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include <vector>
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace {

/* Vector width and register blocking follow the instruction set the library is compiled for. A vector
 * wider than the machine's registers is split by the compiler into several, and a register block sized
 * for 32 registers (AVX-512) spills on a machine with 16 (AVX2): measured 20-30x slower there. */
#if defined(__AVX512F__)
#define RA_VBYTES 64
#define RA_OB 8 /* forward: filters per register block (2 x 8 accumulators + 2 inputs of 32 registers) */
#define RA_KB 4 /* input gradient: im2col rows per register block */
#elif defined(__AVX__)
#define RA_VBYTES 32
#define RA_OB 4 /* 2 x 4 accumulators + 2 inputs + temporaries in 16 registers */
#define RA_KB 2
#else
#define RA_VBYTES 16
#define RA_OB 4
#define RA_KB 2
#endif

template <typename T> struct Traits;
template <> struct Traits<float> {
    using U = uint32_t;
    typedef float V __attribute__((vector_size(RA_VBYTES), aligned(4)));
    typedef uint32_t UV __attribute__((vector_size(RA_VBYTES), aligned(4)));
    static constexpr int VL = RA_VBYTES / 4;
};
template <> struct Traits<double> {
    using U = uint64_t;
    typedef double V __attribute__((vector_size(RA_VBYTES), aligned(4)));
    typedef uint64_t UV __attribute__((vector_size(RA_VBYTES), aligned(4)));
    static constexpr int VL = RA_VBYTES / 8;
};

template <typename T> using Vec = typename Traits<T>::V;
template <typename T> using UVec = typename Traits<T>::UV;

/* Unaligned vector access through a may_alias type: memcpy of a vector was lowered to 16-byte halves
 * bounced through the stack (a store-forwarding stall per load) on AVX2 builds. */
template <typename T> struct Unaligned {
    typedef Vec<T> V __attribute__((aligned(sizeof(T)), may_alias));
};
template <typename T> inline Vec<T> load(const T *p) { return *(const typename Unaligned<T>::V *)p; }
template <typename T> inline void store(T *p, Vec<T> v) { *(typename Unaligned<T>::V *)p = v; }
/* s - 0 (not 0 + s, which is not an identity for s = -0): folds to a plain broadcast, from memory */
template <typename T> inline Vec<T> splat(T s) { return s - Vec<T>{}; }

/* min/max: GCC lowers `a < b ? a : b` on vectors to compare + blend (two instructions, seen in the AVX2
 * assembly of the input-gradient loop); the min/max instructions do it in one. */
inline Vec<float> vmin(Vec<float> a, Vec<float> b) {
#if defined(__AVX512F__)
    return (Vec<float>)_mm512_min_ps((__m512)a, (__m512)b);
#elif defined(__AVX__)
    return (Vec<float>)_mm256_min_ps((__m256)a, (__m256)b);
#else
    return a < b ? a : b;
#endif
}
inline Vec<float> vmax(Vec<float> a, Vec<float> b) {
#if defined(__AVX512F__)
    return (Vec<float>)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__AVX__)
    return (Vec<float>)_mm256_max_ps((__m256)a, (__m256)b);
#else
    return a > b ? a : b;
#endif
}
inline Vec<double> vmin(Vec<double> a, Vec<double> b) {
#if defined(__AVX512F__)
    return (Vec<double>)_mm512_min_pd((__m512d)a, (__m512d)b);
#elif defined(__AVX__)
    return (Vec<double>)_mm256_min_pd((__m256d)a, (__m256d)b);
#else
    return a < b ? a : b;
#endif
}
inline Vec<double> vmax(Vec<double> a, Vec<double> b) {
#if defined(__AVX512F__)
    return (Vec<double>)_mm512_max_pd((__m512d)a, (__m512d)b);
#elif defined(__AVX__)
    return (Vec<double>)_mm256_max_pd((__m256d)a, (__m256d)b);
#else
    return a > b ? a : b;
#endif
}

/* the input-gradient nonlinearity: clamp(d, -1, 1) (surrogate) or sign(d) with sign(0) = 0 (exact).
 * With AVX512DQ the clamp is one VRANGEPS: "the operand of smaller magnitude, with the sign of d",
 * applied to (d, 1), is exactly clamp(d, -1, 1). */
inline Vec<float> clamp1(Vec<float> d) {
#if defined(__AVX512DQ__)
    return (Vec<float>)_mm512_range_ps((__m512)d, _mm512_set1_ps(1.0f), 0x02);
#else
    return vmax(vmin(d, splat<float>(1)), splat<float>(-1));
#endif
}
inline Vec<double> clamp1(Vec<double> d) {
#if defined(__AVX512DQ__)
    return (Vec<double>)_mm512_range_pd((__m512d)d, _mm512_set1_pd(1.0), 0x02);
#else
    return vmax(vmin(d, splat<double>(1)), splat<double>(-1));
#endif
}

/* g * sign(d) with sign(0) = 0, without a multiply: g with d's sign bit flipped into it, zeroed where
 * d == 0 (logic ops and one compare, instead of two compares, two selects and a multiply). */
template <typename T> inline Vec<T> signed_by(Vec<T> g, Vec<T> d) {
    using U = typename Traits<T>::U;
    const UVec<T> sign = UVec<T>{} + ((U)1 << (sizeof(U) * 8 - 1));
    return (Vec<T>)(((UVec<T>)g ^ ((UVec<T>)d & sign)) & (UVec<T>)(d != Vec<T>{}));
}

struct Geometry {
    int64_t N, C, H, W, kh, kw, s, pad, Ho, Wo, O;
    int64_t K() const { return C * kh * kw; }
    int64_t L() const { return Ho * Wo; }
    int64_t Hp() const { return H + 2 * pad; } /* the zero-padded sample the tiles read */
    int64_t Wp() const { return W + 2 * pad; }
    int64_t padded() const { return C * Hp() * Wp(); }
};

/* Where im2col row k = (c, i, j) starts in the padded sample: + oy * s * Wp + ox * s gives the input of
 * output position (oy, ox). Computed once per call (integer divisions are too slow per tile). */
inline void make_rows(const Geometry &g, int64_t *rows) {
    for (int64_t k = 0; k < g.K(); k++) {
        const int64_t c = k / (g.kh * g.kw), i = (k / g.kw) % g.kh, j = k % g.kw;
        rows[k] = (c * g.Hp() + i) * g.Wp() + j;
    }
}

/* Copy sample xn (C, H, W) into the interior of xp (C, Hp, Wp), whose border is zero (see Design). */
template <typename T> void pad_sample(const Geometry &g, const T *xn, T *xp) {
    const int64_t Hp = g.Hp(), Wp = g.Wp();
    for (int64_t c = 0; c < g.C; c++)
        for (int64_t h = 0; h < g.H; h++)
            memcpy(xp + (c * Hp + h + g.pad) * Wp + g.pad, xn + (c * g.H + h) * g.W, g.W * sizeof(T));
}

/* dxn (C, H, W) = the interior of the padded gradient dxp (the border collects the padding's gradient). */
template <typename T> void crop_sample(const Geometry &g, const T *dxp, T *dxn) {
    const int64_t Hp = g.Hp(), Wp = g.Wp();
    for (int64_t c = 0; c < g.C; c++)
        for (int64_t h = 0; h < g.H; h++)
            memcpy(dxn + (c * g.H + h) * g.W, dxp + (c * Hp + h + g.pad) * Wp + g.pad, g.W * sizeof(T));
}

/* A tile: positions l0 .. l0+count of one sample, split into runs that stay inside one output row; src is
 * the run's first input offset relative to an im2col row's start in the padded sample. */
struct Run { int64_t q0, len, src; };

template <typename T> constexpr int64_t tile_positions() { return 2 * Traits<T>::VL; }

template <typename T> inline int tile_runs(const Geometry &g, int64_t l0, Run *runs, int64_t *count) {
    constexpr int64_t PB = tile_positions<T>();
    const int64_t L = g.L();
    *count = L - l0 < PB ? L - l0 : PB;
    int n = 0;
    for (int64_t q = 0; q < *count;) {
        const int64_t l = l0 + q, oy = l / g.Wo, ox = l % g.Wo;
        const int64_t len = g.Wo - ox < *count - q ? g.Wo - ox : *count - q;
        runs[n++] = {q, len, (oy * g.Wp() + ox) * g.s};
        q += len;
    }
    return n;
}

/* Gather the tile's K x PB slice of the im2col matrix of the padded sample xp into blk (slots past count
 * are 0). */
template <typename T>
void gather_tile(const Geometry &g, const int64_t *rows, const T *xp, const Run *runs, int nruns, int64_t count,
                 T *blk) {
    constexpr int64_t PB = tile_positions<T>(), VL = Traits<T>::VL;
    const int64_t s = g.s;
    for (int64_t k = 0; k < g.K(); k++) {
        T *dst = blk + k * PB;
        for (int r = 0; r < nruns; r++) {
            const Run &u = runs[r];
            const T *src = xp + rows[k] + u.src;
            T *d = dst + u.q0;
            int64_t t = 0;
            if (s == 1)
                for (; t + VL <= u.len; t += VL) store<T>(d + t, load<T>(src + t));
            for (; t < u.len; t++) d[t] = src[t * s];
        }
        for (int64_t q = count; q < PB; q++) dst[q] = (T)0;
    }
}

/* dxp += the tile's input gradient dblk (K x PB), folded back to padded image coordinates (col2im). */
template <typename T>
void scatter_tile(const Geometry &g, const int64_t *rows, const T *dblk, const Run *runs, int nruns, T *dxp) {
    constexpr int64_t PB = tile_positions<T>(), VL = Traits<T>::VL;
    const int64_t s = g.s;
    for (int64_t k = 0; k < g.K(); k++) {
        const T *src = dblk + k * PB;
        for (int r = 0; r < nruns; r++) {
            const Run &u = runs[r];
            T *d = dxp + rows[k] + u.src;
            const T *sr = src + u.q0;
            int64_t t = 0;
            if (s == 1)
                for (; t + VL <= u.len; t += VL) store<T>(d + t, load<T>(d + t) + load<T>(sr + t));
            for (; t < u.len; t++) d[t * s] += sr[t];
        }
    }
}

/* Where a tile's positions are read: the two vectors of positions of im2col row k are at b0 + off[k] and
 * b1 + off[k]. Gathered: b0 = blk, b1 = blk + VL, off[k] = k * PB. Direct (stride 1, each half tile inside
 * one output row): b0 and b1 point into the padded sample at the halves' first inputs and off = the rows'
 * offsets there, so the tile is read where it lies, without a copy. */
template <typename T> struct Tile { const T *b0, *b1; const int64_t *off; };

template <typename T>
inline bool direct_tile(const Geometry &g, const int64_t *rows, const T *xp, int64_t l0, int64_t count, Tile<T> *tile) {
    constexpr int64_t PB = tile_positions<T>(), VL = Traits<T>::VL;
    if (g.s != 1 || g.Wo % VL != 0 || count != PB) return false;
    const int64_t l1 = l0 + VL;
    *tile = {xp + (l0 / g.Wo) * g.Wp() + l0 % g.Wo, xp + (l1 / g.Wo) * g.Wp() + l1 % g.Wo, rows};
    return true;
}

/* Adder (CONV false): out[j][q] = -sum_k |x[k][q] - W[o0+j, k]|; convolution (CONV true):
 * out[j][q] = sum_k x[k][q] * W[o0+j, k], for the tile's 2 vectors of positions x OB filters; out rows are
 * ostride apart. The adder uses |a - b| = a + b - 2 min(a, b): -sum_k |x - w| = 2 sum_k min(x, w) - sum_k x
 * - sum_k w, so the inner loop is one min and one add per term, which run on different pipes (on AMD Zen
 * the min on the multiply pipes, the add on the add pipes) where |x - w| took a subtraction, a sign-bit mask
 * and an add; sx (the tile's column sums) and sw (the filters' sums) are computed once per tile and call.
 * Rounding: the sums run over operand-sized terms instead of distance-sized ones, as accurate where inputs
 * and weights are of the scale of their differences (BN outputs against adder weights; the tests bound the
 * float32 error at ResNet-20 magnitudes), less so for operands far larger than their differences. */
template <typename T, bool CONV, int OB>
inline void forward_block(const Tile<T> &x, const T *wt, T *out, int64_t ostride, int64_t K, int64_t O, int64_t o0,
                          const T *sx, const T *sw) {
    constexpr int VL = Traits<T>::VL;
    Vec<T> a0[OB], a1[OB];
    for (int j = 0; j < OB; j++) a0[j] = a1[j] = Vec<T>{};
    for (int64_t k = 0; k < K; k++) {
        const Vec<T> x0 = load<T>(x.b0 + x.off[k]), x1 = load<T>(x.b1 + x.off[k]);
        const T *wk = wt + k * O + o0;
        for (int j = 0; j < OB; j++) {
            const Vec<T> wj = splat<T>(wk[j]);
            if (CONV) {
                a0[j] += x0 * wj;
                a1[j] += x1 * wj;
            } else {
                a0[j] += vmin(x0, wj);
                a1[j] += vmin(x1, wj);
            }
        }
    }
    if (CONV) {
        for (int j = 0; j < OB; j++) {
            store<T>(out + j * ostride, a0[j]);
            store<T>(out + j * ostride + VL, a1[j]);
        }
        return;
    }
    const Vec<T> s0 = load<T>(sx), s1 = load<T>(sx + VL);
    for (int j = 0; j < OB; j++) {
        const Vec<T> swj = splat<T>(sw[o0 + j]);
        store<T>(out + j * ostride, (a0[j] + a0[j]) - (s0 + swj));
        store<T>(out + j * ostride + VL, (a1[j] + a1[j]) - (s1 + swj));
    }
}

template <typename T, bool CONV>
void forward(const Geometry &g, const int64_t *rows, const T *x, const T *wt, T *y, T *scratch, int nt) {
    constexpr int64_t PB = tile_positions<T>(), OB = RA_OB;
    constexpr int VL = Traits<T>::VL;
    const int64_t K = g.K(), L = g.L(), O = g.O, tiles = (L + PB - 1) / PB;
    std::vector<T> sw(O, (T)0);
    std::vector<int64_t> koff(K);
    for (int64_t k = 0; k < K; k++) koff[k] = k * PB;
    if (!CONV)
        for (int64_t k = 0; k < K; k++)
            for (int64_t o = 0; o < O; o++) sw[o] += wt[k * O + o];
#pragma omp parallel num_threads(nt)
    {
        T *blk = scratch + (int64_t)omp_get_thread_num() * (2 * K * PB + O * PB);
        T *res = blk + K * PB;
        alignas(64) T sx[PB];
        std::vector<T> xp(g.padded(), (T)0); /* this thread's current sample, zero-padded */
        int64_t padded_n = -1;
#pragma omp for schedule(static)
        for (int64_t nt_ = 0; nt_ < g.N * tiles; nt_++) {
            const int64_t n = nt_ / tiles, l0 = (nt_ % tiles) * PB;
            if (n != padded_n) pad_sample<T>(g, x + n * g.C * g.H * g.W, xp.data());
            padded_n = n;
            Run runs[PB];
            int64_t count;
            const int nruns = tile_runs<T>(g, l0, runs, &count);
            Tile<T> tile;
            if (!direct_tile<T>(g, rows, xp.data(), l0, count, &tile)) {
                gather_tile<T>(g, rows, xp.data(), runs, nruns, count, blk);
                tile = {blk, blk + VL, koff.data()};
            }
            if (!CONV) {
                Vec<T> s0{}, s1{};
                for (int64_t k = 0; k < K; k++) {
                    s0 += load<T>(tile.b0 + tile.off[k]);
                    s1 += load<T>(tile.b1 + tile.off[k]);
                }
                store<T>(sx, s0);
                store<T>(sx + VL, s1);
            }
            /* a full tile is written straight into y; the last, partial one through res */
            const bool full = count == PB;
            T *out = full ? y + n * O * L + l0 : res;
            const int64_t os = full ? L : PB;
            int64_t o0 = 0;
            for (; o0 + OB <= O; o0 += OB) forward_block<T, CONV, OB>(tile, wt, out + o0 * os, os, K, O, o0, sx, sw.data());
            for (; o0 + 4 <= O; o0 += 4) forward_block<T, CONV, 4>(tile, wt, out + o0 * os, os, K, O, o0, sx, sw.data());
            for (; o0 + 2 <= O; o0 += 2) forward_block<T, CONV, 2>(tile, wt, out + o0 * os, os, K, O, o0, sx, sw.data());
            for (; o0 < O; o0++) forward_block<T, CONV, 1>(tile, wt, out + o0 * os, os, K, O, o0, sx, sw.data());
            if (!full)
                for (int64_t o = 0; o < O; o++) memcpy(y + (n * O + o) * L + l0, res + o * PB, count * sizeof(T));
        }
    }
}

/* d[k][q] = sum_o g[o][q] * f(W[o, k] - x[k][q]) for a tile: 2 vectors of positions x KB rows; g rows are
 * gstride apart. MODE: 0 surrogate (clamp), 1 exact (sign), 2 convolution (f = W[o, k], x is not read).
 * The result is added into dst (b0 + off[k], b1 + off[k]: the padded input gradient, for a direct tile) or
 * stored there (the tile buffer, for a gathered one). */
template <typename T, int MODE, int KB>
inline void grad_block(const Tile<T> &x, const T *w, const T *gb, int64_t gstride, const Tile<T> &dst, bool add,
                       int64_t K, int64_t O, int64_t k0) {
    constexpr int VL = Traits<T>::VL;
    Vec<T> x0[KB], x1[KB], a0[KB], a1[KB];
    for (int i = 0; i < KB; i++) {
        if (MODE != 2) {
            x0[i] = load<T>(x.b0 + x.off[k0 + i]);
            x1[i] = load<T>(x.b1 + x.off[k0 + i]);
        }
        a0[i] = a1[i] = Vec<T>{};
    }
    for (int64_t o = 0; o < O; o++) {
        const Vec<T> g0 = load<T>(gb + o * gstride), g1 = load<T>(gb + o * gstride + VL);
        const T *wo = w + o * K + k0;
        for (int i = 0; i < KB; i++) {
            const Vec<T> wi = splat<T>(wo[i]);
            if (MODE == 2) {
                a0[i] += g0 * wi;
                a1[i] += g1 * wi;
            } else if (MODE == 1) {
                a0[i] += signed_by<T>(g0, wi - x0[i]);
                a1[i] += signed_by<T>(g1, wi - x1[i]);
            } else {
                a0[i] += g0 * clamp1(wi - x0[i]);
                a1[i] += g1 * clamp1(wi - x1[i]);
            }
        }
    }
    for (int i = 0; i < KB; i++) {
        T *d0 = (T *)dst.b0 + dst.off[k0 + i], *d1 = (T *)dst.b1 + dst.off[k0 + i];
        store<T>(d0, add ? load<T>(d0) + a0[i] : a0[i]);
        store<T>(d1, add ? load<T>(d1) + a1[i] : a1[i]);
    }
}

/* Input gradient, parallel over samples: one thread accumulates all of a sample's dx, tile by tile, in a
 * zero-padded copy whose interior becomes dx. */
template <typename T, int MODE>
void grad_input(const Geometry &g, const int64_t *rows, const T *x, const T *w, const T *gy, T *dx, T *scratch,
                int nt) {
    constexpr int64_t PB = tile_positions<T>(), KB = RA_KB;
    constexpr int VL = Traits<T>::VL;
    const int64_t K = g.K(), L = g.L(), O = g.O, tiles = (L + PB - 1) / PB, chw = g.C * g.H * g.W;
    std::vector<int64_t> koff(K);
    for (int64_t k = 0; k < K; k++) koff[k] = k * PB;
#pragma omp parallel num_threads(nt)
    {
        T *blk = scratch + (int64_t)omp_get_thread_num() * (2 * K * PB + O * PB);
        T *dblk = blk + K * PB, *gt = dblk + K * PB;
        std::vector<T> xp(g.padded(), (T)0), dxp(g.padded());
#pragma omp for schedule(static)
        for (int64_t n = 0; n < g.N; n++) {
            if (MODE != 2) pad_sample<T>(g, x + n * chw, xp.data());
            memset(dxp.data(), 0, g.padded() * sizeof(T));
            for (int64_t t = 0; t < tiles; t++) {
                const int64_t l0 = t * PB;
                Run runs[PB];
                int64_t count;
                const int nruns = tile_runs<T>(g, l0, runs, &count);
                Tile<T> xt, dt;
                const bool direct = direct_tile<T>(g, rows, xp.data(), l0, count, &xt);
                if (direct) {
                    direct_tile<T>(g, rows, dxp.data(), l0, count, &dt);
                } else {
                    if (MODE != 2) gather_tile<T>(g, rows, xp.data(), runs, nruns, count, blk);
                    xt = {blk, blk + VL, koff.data()};
                    dt = {dblk, dblk + VL, koff.data()};
                }
                const T *gb = gy + n * O * L + l0;
                int64_t gs = L;
                if (count != PB) { /* the last, partial tile: its g zero-padded to PB */
                    for (int64_t o = 0; o < O; o++) {
                        memcpy(gt + o * PB, gb + o * L, count * sizeof(T));
                        for (int64_t q = count; q < PB; q++) gt[o * PB + q] = (T)0;
                    }
                    gb = gt;
                    gs = PB;
                }
                int64_t k0 = 0;
                for (; k0 + KB <= K; k0 += KB) grad_block<T, MODE, KB>(xt, w, gb, gs, dt, direct, K, O, k0);
                for (; k0 < K; k0++) grad_block<T, MODE, 1>(xt, w, gb, gs, dt, direct, K, O, k0);
                if (!direct) scatter_tile<T>(g, rows, dblk, runs, nruns, dxp.data());
            }
            crop_sample<T>(g, dxp.data(), dx + n * chw);
        }
    }
}

}  // namespace

/* C ABI: geometry as 11 integers (N, C, H, W, kh, kw, stride, pad, Ho, Wo, O) */
#define GEOM int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t s, int64_t pad, \
             int64_t Ho, int64_t Wo, int64_t O
#define MAKE_GEOM                                 \
    Geometry g{N, C, H, W, kh, kw, s, pad, Ho, Wo, O}; \
    std::vector<int64_t> rows(g.K());                   \
    make_rows(g, rows.data())
/* conv != 0: the multiplicative convolution (same tiling and fixed reduction order, used to make CNN
 * layers as deterministic as the adder layers); exact selects the adder's input-gradient mode. */
#define EXPORT(T, SFX)                                                                                   \
    extern "C" void adder_forward_##SFX(const T *x, const T *wt, T *y, T *scratch, GEOM, int conv, int nt) { \
        MAKE_GEOM;                                                                                       \
        if (conv) forward<T, true>(g, rows.data(), x, wt, y, scratch, nt);                               \
        else forward<T, false>(g, rows.data(), x, wt, y, scratch, nt);                                   \
    }                                                                                                    \
    extern "C" void adder_grad_input_##SFX(const T *x, const T *w, const T *gy, T *dx, T *scratch, GEOM, \
                                           int mode, int nt) {                                           \
        MAKE_GEOM;                                                                                       \
        if (mode == 2) grad_input<T, 2>(g, rows.data(), x, w, gy, dx, scratch, nt);                      \
        else if (mode == 1) grad_input<T, 1>(g, rows.data(), x, w, gy, dx, scratch, nt);                 \
        else grad_input<T, 0>(g, rows.data(), x, w, gy, dx, scratch, nt);                                \
    }                                                                                                    \
    extern "C" int64_t adder_scratch_per_thread_##SFX(int64_t K, int64_t O) {                            \
        return (2 * K + O) * tile_positions<T>();                                                        \
    }
#define RA_STR2(x) #x
#define RA_STR(x) RA_STR2(x)
extern "C" const char *adder_build_variant(void) {
    return "vector_bytes=" RA_STR(RA_VBYTES) " forward_block=2x" RA_STR(RA_OB) " grad_block=2x" RA_STR(RA_KB)
           " forward=min-identity tiles=padded";
}

EXPORT(float, f32)
EXPORT(double, f64)
