/* Fast CPU adder kernels for robustadder's "cpu" backend.
 *
 * Built on first use by robustadder/kernels/cpu.py with the system C++ compiler (-O3 -march=native
 * -fopenmp) and loaded with ctypes: no torch headers, no Python extension ABI. Portable C++ with GCC
 * vector extensions (vector width and register blocks chosen for the instruction set, see Traits) and
 * OpenMP. The same tiles compute the multiplicative convolution (conv = 1), so that CNN layers get the
 * same determinism guarantee as the adder layers.
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
template <typename T> inline Vec<T> splat(T s) { return Vec<T>{} + s; }

template <typename T> inline Vec<T> vabs(Vec<T> d) {  // clear the sign bit: one logic op
    using U = typename Traits<T>::U;
    return (Vec<T>)((UVec<T>)d & (UVec<T>{} + (U)~((U)1 << (sizeof(U) * 8 - 1))));
}

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

/* Adder (CONV false): res[j][q] = -sum_k |blk[k][q] - W[o0+j, k]|; convolution (CONV true):
 * res[j][q] = sum_k blk[k][q] * W[o0+j, k]. A tile: 2 vectors of positions x OB filters. */
template <typename T, bool CONV, int OB>
inline void forward_block(const T *blk, const T *wt, T *res, int64_t K, int64_t O, int64_t o0, T one) {
    constexpr int VL = Traits<T>::VL, PB = 2 * VL;
    Vec<T> a0[OB], a1[OB];
    for (int j = 0; j < OB; j++) a0[j] = a1[j] = Vec<T>{};
    for (int64_t k = 0; k < K; k++) {
        const Vec<T> x0 = load<T>(blk + k * PB), x1 = load<T>(blk + k * PB + VL);
        const T *wk = wt + k * O + o0;
        for (int j = 0; j < OB; j++) {
            if (CONV) {
                a0[j] += x0 * wk[j];
                a1[j] += x1 * wk[j];
            } else {
                a0[j] += vabs<T>(x0 - wk[j]) * one;
                a1[j] += vabs<T>(x1 - wk[j]) * one;
            }
        }
    }
    for (int j = 0; j < OB; j++) {
        store<T>(res + j * PB, CONV ? a0[j] : -a0[j]);
        store<T>(res + j * PB + VL, CONV ? a1[j] : -a1[j]);
    }
}

template <typename T, bool CONV>
void forward(const Geometry &g, const Row *rows, const T *x, const T *wt, T *y, T *scratch, int nt) {
    constexpr int64_t PB = tile_positions<T>(), OB = RA_OB;
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
            for (; o0 + OB <= O; o0 += OB) forward_block<T, CONV, OB>(blk, wt, res + o0 * PB, K, O, o0, one);
            for (; o0 < O; o0++) forward_block<T, CONV, 1>(blk, wt, res + o0 * PB, K, O, o0, one);
            for (int64_t o = 0; o < O; o++) memcpy(y + (n * O + o) * L + l0, res + o * PB, count * sizeof(T));
        }
    }
}

/* dblk[k][q] = sum_o g[o][q] * f(W[o, k] - blk[k][q]) for a tile: 2 vectors of positions x KB rows.
 * MODE: 0 surrogate (clamp), 1 exact (sign), 2 convolution (f = W[o, k], the input is not read). */
template <typename T, int MODE, int KB>
inline void grad_block(const T *blk, const T *w, const T *gt, T *dblk, int64_t K, int64_t O, int64_t k0) {
    constexpr int VL = Traits<T>::VL, PB = 2 * VL;
    Vec<T> x0[KB], x1[KB], a0[KB], a1[KB];
    for (int i = 0; i < KB; i++) {
        if (MODE != 2) {
            x0[i] = load<T>(blk + (k0 + i) * PB);
            x1[i] = load<T>(blk + (k0 + i) * PB + VL);
        }
        a0[i] = a1[i] = Vec<T>{};
    }
    for (int64_t o = 0; o < O; o++) {
        const Vec<T> g0 = load<T>(gt + o * PB), g1 = load<T>(gt + o * PB + VL);
        const T *wo = w + o * K + k0;
        for (int i = 0; i < KB; i++) {
            if (MODE == 2) {
                a0[i] += g0 * wo[i];
                a1[i] += g1 * wo[i];
            } else {
                a0[i] += g0 * gradf<T, MODE == 1>(wo[i] - x0[i]);
                a1[i] += g1 * gradf<T, MODE == 1>(wo[i] - x1[i]);
            }
        }
    }
    for (int i = 0; i < KB; i++) {
        store<T>(dblk + (k0 + i) * PB, a0[i]);
        store<T>(dblk + (k0 + i) * PB + VL, a1[i]);
    }
}

/* Input gradient, parallel over samples: one thread accumulates all of a sample's dx, tile by tile. */
template <typename T, int MODE>
void grad_input(const Geometry &g, const Row *rows, const T *x, const T *w, const T *gy, T *dx, T *scratch,
                int nt) {
    constexpr int64_t PB = tile_positions<T>(), KB = RA_KB;
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
                if (MODE != 2) gather_tile<T>(g, rows, x + n * chw, runs, nruns, count, blk);
                for (int64_t o = 0; o < O; o++) {
                    memcpy(gt + o * PB, gy + (n * O + o) * L + l0, count * sizeof(T));
                    for (int64_t q = count; q < PB; q++) gt[o * PB + q] = (T)0;
                }
                int64_t k0 = 0;
                for (; k0 + KB <= K; k0 += KB) grad_block<T, MODE, KB>(blk, w, gt, dblk, K, O, k0);
                for (; k0 < K; k0++) grad_block<T, MODE, 1>(blk, w, gt, dblk, K, O, k0);
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
    return "vector_bytes=" RA_STR(RA_VBYTES) " forward_block=2x" RA_STR(RA_OB) " grad_block=2x" RA_STR(RA_KB);
}

EXPORT(float, f32)
EXPORT(double, f64)
