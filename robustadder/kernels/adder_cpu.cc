/* Fast CPU adder kernels for robustadder's "cpu" backend.
 *
 * Built on first use by robustadder/kernels/cpu.py with the system C++ compiler (-O3 -march=native
 * -fopenmp) and loaded with ctypes: no torch headers, no Python extension ABI. Portable C++ with GCC
 * vector extensions (64-byte vectors; the compiler splits them on AVX2-only machines) and OpenMP.
 *
 * Design: implicit im2col. The output positions of each sample (L = Ho*Wo of them) are cut into tiles of
 * PB = two vectors; for each tile a thread gathers the tile's K x PB slice of the im2col matrix
 * (K = C*kh*kw) into a buffer of its own that stays in L1/L2, runs the register-blocked reduction on it,
 * and writes the outputs (forward) or scatter-adds the input gradient of the tile into dx (backward).
 * No im2col matrix is ever materialized: the only temporaries are a few tile buffers per thread. (A
 * materialized im2col of ResNet-20 stage 1 at batch 128 is 75 MB; streaming it through DRAM cost more
 * than the arithmetic.)
 *
 * Layouts: x/dx (N, C, H, W); y/g (N, O, Ho*Wo); w (O, K); wt its transpose (K, O). The scratch passed
 * in holds, per thread, 2*K*PB + O*PB elements.
 *
 * Every output element is reduced by one thread in a fixed order, and the input gradient of a sample is
 * accumulated by one thread in a fixed order: results are bit-identical for any thread count and
 * independent of batch composition (a sample's result never depends on its neighbours or batch size).
 */
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

template <typename T> struct Traits;
template <> struct Traits<float> {
    using U = uint32_t;
    typedef float V __attribute__((vector_size(64), aligned(4)));
    typedef uint32_t UV __attribute__((vector_size(64), aligned(4)));
    static constexpr int VL = 16;
};
template <> struct Traits<double> {
    using U = uint64_t;
    typedef double V __attribute__((vector_size(64), aligned(4)));
    typedef uint64_t UV __attribute__((vector_size(64), aligned(4)));
    static constexpr int VL = 8;
};

template <typename T> using Vec = typename Traits<T>::V;
template <typename T> using UVec = typename Traits<T>::UV;

template <typename T> inline Vec<T> load(const T *p) { Vec<T> v; memcpy(&v, p, sizeof v); return v; }
template <typename T> inline void store(T *p, Vec<T> v) { memcpy(p, &v, sizeof v); }
template <typename T> inline Vec<T> splat(T s) { return Vec<T>{} + s; }

template <typename T> inline Vec<T> vabs(Vec<T> d) {  // clear the sign bit: one logic op
    using U = typename Traits<T>::U;
    return (Vec<T>)((UVec<T>)d & (UVec<T>{} + (U)~((U)1 << (sizeof(U) * 8 - 1))));
}

/* min/max: GCC lowers `a < b ? a : b` on vectors to compare + blend; the instructions do it in one. */
inline Vec<float> vmin(Vec<float> a, Vec<float> b) {
#if defined(__AVX512F__)
    return (Vec<float>)_mm512_min_ps((__m512)a, (__m512)b);
#else
    return a < b ? a : b;
#endif
}
inline Vec<float> vmax(Vec<float> a, Vec<float> b) {
#if defined(__AVX512F__)
    return (Vec<float>)_mm512_max_ps((__m512)a, (__m512)b);
#else
    return a > b ? a : b;
#endif
}
inline Vec<double> vmin(Vec<double> a, Vec<double> b) {
#if defined(__AVX512F__)
    return (Vec<double>)_mm512_min_pd((__m512d)a, (__m512d)b);
#else
    return a < b ? a : b;
#endif
}
inline Vec<double> vmax(Vec<double> a, Vec<double> b) {
#if defined(__AVX512F__)
    return (Vec<double>)_mm512_max_pd((__m512d)a, (__m512d)b);
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

template <typename T, bool EXACT> inline Vec<T> gradf(Vec<T> d) {
    const Vec<T> one = splat<T>(1), zero = Vec<T>{};
    if (EXACT) return d > zero ? one : (d < zero ? -one : zero);
    return clamp1(d);
}

/* `acc += v * one` with a `one` the compiler cannot fold: the accumulation becomes an FMA, exact
 * (v * 1 is exact) but issued on the multiply pipes, so it no longer competes with the subtraction
 * for the add pipes (about 1.3x on AMD Zen 4; neutral where FMA and add share ports). */
template <typename T> struct Unit { static volatile T value; };
template <typename T> volatile T Unit<T>::value = (T)1;

/* output columns ox whose input column ox*s - pad + j lies inside [0, W): [lo, hi) */
inline void valid_range(int64_t W, int64_t Wo, int64_t s, int64_t pad, int64_t j, int64_t *lo, int64_t *hi) {
    int64_t a = pad - j > 0 ? (pad - j + s - 1) / s : 0;
    int64_t b = W + pad - j > 0 ? (W + pad - j + s - 1) / s : 0;
    *lo = a < Wo ? a : Wo;
    *hi = b < Wo ? b : Wo;
    if (*hi < *lo) *hi = *lo;
}

struct Geometry {
    int64_t N, C, H, W, kh, kw, s, pad, Ho, Wo, O;
    int64_t K() const { return C * kh * kw; }
    int64_t L() const { return Ho * Wo; }
};

/* Per im2col row k = (c, i, j), computed once per call (integer divisions are too slow per tile):
 * where the row reads the input and which output columns read inside the image. */
struct Row { int64_t off, i, lo, hi; };

inline void make_rows(const Geometry &g, Row *rows) {
    for (int64_t k = 0; k < g.K(); k++) {
        const int64_t c = k / (g.kh * g.kw), i = (k / g.kw) % g.kh, j = k % g.kw;
        int64_t lo, hi;
        valid_range(g.W, g.Wo, g.s, g.pad, j, &lo, &hi);
        rows[k] = {c * g.H * g.W - g.pad + j, i, lo, hi};  /* + iy * W + ox * s gives the input */
    }
}

/* A tile: positions l0 .. l0+count of one sample, split into runs that stay inside one output row. */
struct Run { int64_t q0, len, oy, ox0; };

template <typename T> constexpr int64_t tile_positions() { return 2 * Traits<T>::VL; }

template <typename T> inline int tile_runs(const Geometry &g, int64_t l0, Run *runs, int64_t *count) {
    constexpr int64_t PB = tile_positions<T>();
    const int64_t L = g.L();
    *count = L - l0 < PB ? L - l0 : PB;
    int n = 0;
    for (int64_t q = 0; q < *count;) {
        const int64_t l = l0 + q, oy = l / g.Wo, ox = l % g.Wo;
        const int64_t len = g.Wo - ox < *count - q ? g.Wo - ox : *count - q;
        runs[n++] = {q, len, oy, ox};
        q += len;
    }
    return n;
}

/* Gather the tile's K x PB slice of the im2col matrix of sample n into blk (slots past count are 0). */
template <typename T>
void gather_tile(const Geometry &g, const Row *rows, const T *xn, const Run *runs, int nruns, int64_t count,
                 T *blk) {
    constexpr int64_t PB = tile_positions<T>();
    for (int64_t k = 0; k < g.K(); k++) {
        const Row &rk = rows[k];
        T *dst = blk + k * PB;
        for (int r = 0; r < nruns; r++) {
            const Run &u = runs[r];
            T *d = dst + u.q0 - u.ox0; /* d[ox] is the slot of output column ox */
            const int64_t iy = u.oy * g.s - g.pad + rk.i, end = u.ox0 + u.len;
            if (iy < 0 || iy >= g.H) { memset(dst + u.q0, 0, u.len * sizeof(T)); continue; }
            const T *xr = xn + rk.off + iy * g.W; /* xr[ox * s]: input of output column ox */
            const int64_t a = rk.lo > u.ox0 ? rk.lo : u.ox0, b = rk.hi < end ? rk.hi : end;
            int64_t ox = u.ox0;
            for (; ox < a && ox < end; ox++) d[ox] = (T)0;
            if (g.s == 1) for (; ox < b; ox++) d[ox] = xr[ox];
            else for (; ox < b; ox++) d[ox] = xr[ox * g.s];
            for (; ox < end; ox++) d[ox] = (T)0;
        }
        for (int64_t q = count; q < PB; q++) dst[q] = (T)0;
    }
}

/* dxn += the tile's input gradient dblk (K x PB), folded back to image coordinates (col2im of a tile). */
template <typename T>
void scatter_tile(const Geometry &g, const Row *rows, const T *dblk, const Run *runs, int nruns, T *dxn) {
    constexpr int64_t PB = tile_positions<T>();
    for (int64_t k = 0; k < g.K(); k++) {
        const Row &rk = rows[k];
        const T *src = dblk + k * PB;
        for (int r = 0; r < nruns; r++) {
            const Run &u = runs[r];
            const int64_t iy = u.oy * g.s - g.pad + rk.i, end = u.ox0 + u.len;
            if (iy < 0 || iy >= g.H) continue;
            T *dr = dxn + rk.off + iy * g.W;
            const T *sr = src + u.q0 - u.ox0;
            const int64_t a = rk.lo > u.ox0 ? rk.lo : u.ox0, b = rk.hi < end ? rk.hi : end;
            if (g.s == 1) for (int64_t ox = a; ox < b; ox++) dr[ox] += sr[ox];
            else for (int64_t ox = a; ox < b; ox++) dr[ox * g.s] += sr[ox];
        }
    }
}

/* res[j][q] = -sum_k |blk[k][q] - W[o0+j, k]| for a tile: 2 vectors of positions x OB filters. */
template <typename T, int OB>
inline void forward_block(const T *blk, const T *wt, T *res, int64_t K, int64_t O, int64_t o0, T one) {
    constexpr int VL = Traits<T>::VL, PB = 2 * VL;
    Vec<T> a0[OB], a1[OB];
    for (int j = 0; j < OB; j++) a0[j] = a1[j] = Vec<T>{};
    for (int64_t k = 0; k < K; k++) {
        const Vec<T> x0 = load<T>(blk + k * PB), x1 = load<T>(blk + k * PB + VL);
        const T *wk = wt + k * O + o0;
        for (int j = 0; j < OB; j++) {
            a0[j] += vabs<T>(x0 - wk[j]) * one;
            a1[j] += vabs<T>(x1 - wk[j]) * one;
        }
    }
    for (int j = 0; j < OB; j++) {
        store<T>(res + j * PB, -a0[j]);
        store<T>(res + j * PB + VL, -a1[j]);
    }
}

template <typename T>
void forward(const Geometry &g, const Row *rows, const T *x, const T *wt, T *y, T *scratch, int nt) {
    constexpr int64_t PB = tile_positions<T>(), OB = 8;
    const int64_t K = g.K(), L = g.L(), O = g.O, tiles = (L + PB - 1) / PB;
    const T one = Unit<T>::value;
#pragma omp parallel num_threads(nt)
    {
        T *blk = scratch + (int64_t)omp_get_thread_num() * (2 * K * PB + O * PB);
        T *res = blk + K * PB;
#pragma omp for schedule(static)
        for (int64_t nt_ = 0; nt_ < g.N * tiles; nt_++) {
            const int64_t n = nt_ / tiles, l0 = (nt_ % tiles) * PB;
            Run runs[PB];
            int64_t count;
            const int nruns = tile_runs<T>(g, l0, runs, &count);
            gather_tile<T>(g, rows, x + n * g.C * g.H * g.W, runs, nruns, count, blk);
            int64_t o0 = 0;
            for (; o0 + OB <= O; o0 += OB) forward_block<T, OB>(blk, wt, res + o0 * PB, K, O, o0, one);
            for (; o0 < O; o0++) forward_block<T, 1>(blk, wt, res + o0 * PB, K, O, o0, one);
            for (int64_t o = 0; o < O; o++) memcpy(y + (n * O + o) * L + l0, res + o * PB, count * sizeof(T));
        }
    }
}

/* dblk[k][q] = sum_o g[o][q] * f(W[o, k] - blk[k][q]) for a tile: 2 vectors of positions x KB rows. */
template <typename T, bool EXACT, int KB>
inline void grad_block(const T *blk, const T *w, const T *gt, T *dblk, int64_t K, int64_t O, int64_t k0) {
    constexpr int VL = Traits<T>::VL, PB = 2 * VL;
    Vec<T> x0[KB], x1[KB], a0[KB], a1[KB];
    for (int i = 0; i < KB; i++) {
        x0[i] = load<T>(blk + (k0 + i) * PB);
        x1[i] = load<T>(blk + (k0 + i) * PB + VL);
        a0[i] = a1[i] = Vec<T>{};
    }
    for (int64_t o = 0; o < O; o++) {
        const Vec<T> g0 = load<T>(gt + o * PB), g1 = load<T>(gt + o * PB + VL);
        const T *wo = w + o * K + k0;
        for (int i = 0; i < KB; i++) {
            a0[i] += g0 * gradf<T, EXACT>(wo[i] - x0[i]);
            a1[i] += g1 * gradf<T, EXACT>(wo[i] - x1[i]);
        }
    }
    for (int i = 0; i < KB; i++) {
        store<T>(dblk + (k0 + i) * PB, a0[i]);
        store<T>(dblk + (k0 + i) * PB + VL, a1[i]);
    }
}

/* Input gradient, parallel over samples: one thread accumulates all of a sample's dx, tile by tile. */
template <typename T, bool EXACT>
void grad_input(const Geometry &g, const Row *rows, const T *x, const T *w, const T *gy, T *dx, T *scratch,
                int nt) {
    constexpr int64_t PB = tile_positions<T>(), KB = 4;
    const int64_t K = g.K(), L = g.L(), O = g.O, tiles = (L + PB - 1) / PB, chw = g.C * g.H * g.W;
#pragma omp parallel num_threads(nt)
    {
        T *blk = scratch + (int64_t)omp_get_thread_num() * (2 * K * PB + O * PB);
        T *dblk = blk + K * PB, *gt = dblk + K * PB;
#pragma omp for schedule(static)
        for (int64_t n = 0; n < g.N; n++) {
            T *dxn = dx + n * chw;
            memset(dxn, 0, chw * sizeof(T));
            for (int64_t t = 0; t < tiles; t++) {
                const int64_t l0 = t * PB;
                Run runs[PB];
                int64_t count;
                const int nruns = tile_runs<T>(g, l0, runs, &count);
                gather_tile<T>(g, rows, x + n * chw, runs, nruns, count, blk);
                for (int64_t o = 0; o < O; o++) {
                    memcpy(gt + o * PB, gy + (n * O + o) * L + l0, count * sizeof(T));
                    for (int64_t q = count; q < PB; q++) gt[o * PB + q] = (T)0;
                }
                int64_t k0 = 0;
                for (; k0 + KB <= K; k0 += KB) grad_block<T, EXACT, KB>(blk, w, gt, dblk, K, O, k0);
                for (; k0 < K; k0++) grad_block<T, EXACT, 1>(blk, w, gt, dblk, K, O, k0);
                scatter_tile<T>(g, rows, dblk, runs, nruns, dxn);
            }
        }
    }
}

}  // namespace

/* C ABI: geometry as 11 integers (N, C, H, W, kh, kw, stride, pad, Ho, Wo, O) */
#define GEOM int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t s, int64_t pad, \
             int64_t Ho, int64_t Wo, int64_t O
#define MAKE_GEOM                                 \
    Geometry g{N, C, H, W, kh, kw, s, pad, Ho, Wo, O}; \
    std::vector<Row> rows(g.K());                   \
    make_rows(g, rows.data())
#define EXPORT(T, SFX)                                                                                   \
    extern "C" void adder_forward_##SFX(const T *x, const T *wt, T *y, T *scratch, GEOM, int nt) {     \
        MAKE_GEOM;                                                                                       \
        forward<T>(g, rows.data(), x, wt, y, scratch, nt);                                                            \
    }                                                                                                    \
    extern "C" void adder_grad_input_##SFX(const T *x, const T *w, const T *gy, T *dx, T *scratch, GEOM, \
                                           int exact, int nt) {                                          \
        MAKE_GEOM;                                                                                       \
        if (exact) grad_input<T, true>(g, rows.data(), x, w, gy, dx, scratch, nt);                                    \
        else grad_input<T, false>(g, rows.data(), x, w, gy, dx, scratch, nt);                                         \
    }                                                                                                    \
    extern "C" int64_t adder_scratch_per_thread_##SFX(int64_t K, int64_t O) {                            \
        return (2 * K + O) * tile_positions<T>();                                                        \
    }

EXPORT(float, f32)
EXPORT(double, f64)
