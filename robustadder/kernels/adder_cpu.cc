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
 * A sample whose inputs are all >= 0 (ReLU outputs, which every adder layer of a ResNet reads) takes the
 * sign-split paths instead (see "Sign-split paths"): the terms whose value the signs of w and x decide
 * (about half, for trained or random weights) are folded into sums computed once per call or tile. Their wide
 * tiles are read in place from the sample, its stride phases or its column-shifted copies (see Shifted), so that
 * no full tile is gathered whatever the output row width; on AVX-512 the sums accumulate on the FMA pipes (acc).
 *
 * Layouts: x/dx (N, C, H, W); y/g (N, O, Ho*Wo); w (O, K); wt its transpose (K, O). The scratch passed
 * in holds, per thread, (2*K + O) * WP elements (WP: a wide tile's positions); the padded buffers are
 * allocated per call.
 *
 * Every output element is reduced by one thread in a fixed order, and the input gradient of a sample is
 * accumulated by one thread in a fixed order: results are bit-identical for any thread count and
 * independent of batch composition (a sample's result never depends on its neighbours or batch size).
 */
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <utility>
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
/* Half a vector, for the copies of runs shorter than a vector (the 8-wide output rows of a 16-float AVX-512 build,
 * which a scalar loop copied element by element): the same elementwise operations, so the same bits. */
template <typename T> struct Half {
    typedef T V __attribute__((vector_size(RA_VBYTES / 2), aligned(sizeof(T)), may_alias));
    static constexpr int VL = Traits<T>::VL / 2;
};
template <typename T> inline void copy_half(T *d, const T *s) { *(typename Half<T>::V *)d = *(const typename Half<T>::V *)s; }
template <typename T> inline void add_half(T *d, const T *s) {
    *(typename Half<T>::V *)d = *(const typename Half<T>::V *)d + *(const typename Half<T>::V *)s;
}
/* d[0:n] = s[0:n] for a short row (a memcpy call per 8-float row cost more than the copy) */
template <typename T> inline void copy_row(T *d, const T *s, int64_t n) {
    int64_t t = 0;
    for (; t + Traits<T>::VL <= n; t += Traits<T>::VL) store<T>(d + t, load<T>(s + t));
    for (; t + Half<T>::VL <= n; t += Half<T>::VL) copy_half<T>(d + t, s + t);
    for (; t < n; t++) d[t] = s[t];
}
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

/* a + v, the accumulation of the inner loops. On AVX-512 builds computed as fma(v, 1, a), which rounds exactly as
 * the add does (v * 1 is exact, so both are round(a + v)) but issues on the FMA pipes: on AMD Zen 4 the 512-bit min
 * and add share the two FADD pipes (4 min + 4 add per list entry took 7 cycles, with or without the loads) while the
 * FMA pipes idled; the sign-split forward's inner loop went from 2.2 to 1.5 ns per entry. Intel's AVX-512 cores run
 * add and FMA on the same ports, with the same latency, so it costs nothing there. */
inline Vec<float> acc(Vec<float> a, Vec<float> v) {
#if defined(__AVX512F__)
    return (Vec<float>)_mm512_fmadd_ps((__m512)v, _mm512_set1_ps(1.0f), (__m512)a);
#else
    return a + v;
#endif
}
inline Vec<double> acc(Vec<double> a, Vec<double> v) {
#if defined(__AVX512F__)
    return (Vec<double>)_mm512_fmadd_pd((__m512d)v, _mm512_set1_pd(1.0), (__m512d)a);
#else
    return a + v;
#endif
}

/* w - x on the FMA pipes, as -(x * 1) + w: one rounding of the exact difference, so the same bits as the subtraction;
 * on Zen 4 the surrogate gradient's subtract, max and min all queued on the two FADD pipes (3 cycles per vector) while
 * the FMA pipes took only the multiply-add. */
inline Vec<float> diff(Vec<float> w, Vec<float> x) {
#if defined(__AVX512F__)
    return (Vec<float>)_mm512_fnmadd_ps((__m512)x, _mm512_set1_ps(1.0f), (__m512)w);
#else
    return w - x;
#endif
}
inline Vec<double> diff(Vec<double> w, Vec<double> x) {
#if defined(__AVX512F__)
    return (Vec<double>)_mm512_fnmadd_pd((__m512d)x, _mm512_set1_pd(1.0), (__m512d)w);
#else
    return w - x;
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
#if defined(__AVX512F__)
/* with AVX-512 the zeroing is a zero-masked XOR under the compare's mask (no mask turned into a vector and ANDed) */
template <> inline Vec<float> signed_by<float>(Vec<float> g, Vec<float> d) {
    const __mmask16 nonzero = _mm512_cmp_ps_mask((__m512)d, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    const __m512i sign = _mm512_and_si512((__m512i)d, _mm512_set1_epi32(INT32_MIN));
    return (Vec<float>)_mm512_maskz_xor_epi32(nonzero, (__m512i)g, sign);
}
template <> inline Vec<double> signed_by<double>(Vec<double> g, Vec<double> d) {
    const __mmask8 nonzero = _mm512_cmp_pd_mask((__m512d)d, _mm512_setzero_pd(), _CMP_NEQ_UQ);
    const __m512i sign = _mm512_and_si512((__m512i)d, _mm512_set1_epi64(INT64_MIN));
    return (Vec<double>)_mm512_maskz_xor_epi64(nonzero, (__m512i)g, sign);
}
#endif

/* The exact sign-split gradient's term for output gradients g at gp: (g & [w > x]) + (g & [w >= x]), i.e. 2g, g (a
 * tie) or 0. With AVX-512 it is two compares into mask registers, one zero-masked load and one masked doubling
 * (t + t where w > x, exact), instead of two compares turned into vectors, two ANDs and an add (8 instructions per
 * vector, 2 loads). The same value; where the generic form gives +0 (a tie, g = -0) this gives -0, which the
 * accumulator (never -0: it starts at +0 and a + b is -0 only when both are) absorbs to the same bits. */
template <typename T> inline Vec<T> twice_where(const T *gp, Vec<T> w, Vec<T> x) {
    using UV = UVec<T>;
    const Vec<T> g = load<T>(gp);
    return (Vec<T>)((UV)g & (UV)(w > x)) + (Vec<T>)((UV)g & (UV)(w >= x));
}
#if defined(__AVX512F__)
template <> inline Vec<float> twice_where<float>(const float *gp, Vec<float> w, Vec<float> x) {
    const __mmask16 gt = _mm512_cmp_ps_mask((__m512)x, (__m512)w, _CMP_LT_OQ), ge = _mm512_cmp_ps_mask((__m512)x, (__m512)w, _CMP_LE_OQ);
    const __m512 t = _mm512_maskz_loadu_ps(ge, gp);
    return (Vec<float>)_mm512_mask_add_ps(t, gt, t, t);
}
template <> inline Vec<double> twice_where<double>(const double *gp, Vec<double> w, Vec<double> x) {
    const __mmask8 gt = _mm512_cmp_pd_mask((__m512d)x, (__m512d)w, _CMP_LT_OQ), ge = _mm512_cmp_pd_mask((__m512d)x, (__m512d)w, _CMP_LE_OQ);
    const __m512d t = _mm512_maskz_loadu_pd(ge, gp);
    return (Vec<double>)_mm512_mask_add_pd(t, gt, t, t);
}
#endif

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
            copy_row<T>(xp + (c * Hp + h + g.pad) * Wp + g.pad, xn + (c * g.H + h) * g.W, g.W);
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

template <typename T, int64_t PB = tile_positions<T>()>
inline int tile_runs(const Geometry &g, int64_t l0, Run *runs, int64_t *count) {
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
template <typename T, int64_t PB = tile_positions<T>()>
void gather_tile(const Geometry &g, const int64_t *rows, const T *xp, const Run *runs, int nruns, int64_t count,
                 T *blk) {
    const int64_t s = g.s;
    for (int64_t k = 0; k < g.K(); k++) {
        T *dst = blk + k * PB;
        for (int r = 0; r < nruns; r++) {
            const Run &u = runs[r];
            const T *src = xp + rows[k] + u.src;
            T *d = dst + u.q0;
            if (s == 1) copy_row<T>(d, src, u.len);
            else
                for (int64_t t = 0; t < u.len; t++) d[t] = src[t * s];
        }
        for (int64_t q = count; q < PB; q++) dst[q] = (T)0;
    }
}

/* The same fold for a wide tile that holds a whole sample of stride 1 whose padded rows fit a vector (CIFAR's 8x8
 * layers with AVX-512 floats): each padded input row accumulates in a register, its contributions added in k order
 * (kernel row i, then column j: the order scatter_tile adds them in, so the same bits), each one masked load of the
 * tile's output row from column j on and one masked add. Folded row by row through memory, row k + 1 overlaps row
 * k's store shifted by one float, which the CPU cannot forward: a stall per row k and output row, 10-12 % of the 8x8
 * exact input gradient. Returns false where it does not apply. */
template <typename T, int64_t WP> inline bool scatter_sample(const Geometry &g, const T *dblk, int64_t l0, int64_t count, T *dxp) {
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 4) {
        const int64_t Hp = g.Hp(), Wp = g.Wp(), Ho = g.Ho, Wo = g.Wo, kh = g.kh, kw = g.kw;
        if (g.s != 1 || l0 != 0 || count != g.L() || Wp > 16) return false;
        const __mmask16 row_mask = (__mmask16)((1u << Wp) - 1);
        for (int64_t c = 0; c < g.C; c++)
            for (int64_t r = 0; r < Hp; r++) {
                float *d = (float *)dxp + (c * Hp + r) * Wp;
                __m512 acc = _mm512_maskz_loadu_ps(row_mask, d);
                for (int64_t i = 0; i < kh; i++) {
                    const int64_t y = r - i;
                    if (y < 0 || y >= Ho) continue;
                    for (int64_t j = 0; j < kw; j++) {
                        const float *seg = (const float *)dblk + ((c * kh + i) * kw + j) * WP + y * Wo;
                        const __mmask16 m = (__mmask16)(((1u << Wo) - 1) << j);
                        acc = _mm512_mask_add_ps(acc, m, acc, _mm512_maskz_loadu_ps(m, seg - j));
                    }
                }
                _mm512_mask_storeu_ps(d, row_mask, acc);
            }
        return true;
    }
#endif
    (void)g, (void)dblk, (void)l0, (void)count, (void)dxp;
    return false;
}

/* dxp += the tile's input gradient dblk (K x PB), folded back to padded image coordinates (col2im). */
template <typename T, int64_t PB = tile_positions<T>()>
void scatter_tile(const Geometry &g, const int64_t *rows, const T *dblk, const Run *runs, int nruns, T *dxp) {
    constexpr int64_t VL = Traits<T>::VL;
    const int64_t s = g.s;
    for (int64_t k = 0; k < g.K(); k++) {
        const T *src = dblk + k * PB;
        for (int r = 0; r < nruns; r++) {
            const Run &u = runs[r];
            T *d = dxp + rows[k] + u.src;
            const T *sr = src + u.q0;
            int64_t t = 0;
            if (s == 1) {
                for (; t + VL <= u.len; t += VL) store<T>(d + t, load<T>(d + t) + load<T>(sr + t));
                for (; t + Half<T>::VL <= u.len; t += Half<T>::VL) add_half<T>(d + t, sr + t);
            }
            for (; t < u.len; t++) d[t * s] += sr[t];
        }
    }
}

/* dst's rows (n floats each, n apart) = every st-th float (st = 1 or 2) of src's rows (pitch apart), for rows of at
 * most one vector: the column-shifted copies of CIFAR's 8x8 and 16x16 layers. Per row one or two masked loads, a
 * permute for st = 2, and one masked store. The compiler's loops had copied the stride-2 8-float rows one float at a
 * time (rows shorter than its vector step: 36 % of the strided 8x8 layer's forward in a profile) and the stride-1 rows
 * through copy_row's branches (10 % of the 8x8 layer's). Returns false where it does not apply. */
template <typename T> inline bool copy_rows(T *dst, const T *src, int64_t rows, int64_t n, int64_t pitch, int64_t st) {
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 4) {
        if (n > 16 || n < 1 || st < 1 || st > 2) return false;
        const int64_t span = st * (n - 1) + 1; /* the floats a row reads: src[0], src[st], ..., src[st (n - 1)] */
        const __mmask16 lo = (__mmask16)(span >= 16 ? 0xffffu : (1u << span) - 1);
        const __mmask16 hi = (__mmask16)(span > 16 ? (1u << (span - 16)) - 1 : 0), out = (__mmask16)((1u << n) - 1);
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        if (st == 1)
            for (int64_t y = 0; y < rows; y++, dst += n, src += pitch)
                _mm512_mask_storeu_ps((float *)dst, out, _mm512_maskz_loadu_ps(lo, src));
        else
            for (int64_t y = 0; y < rows; y++, dst += n, src += pitch) {
                const __m512 a = _mm512_maskz_loadu_ps(lo, src), b = _mm512_maskz_loadu_ps(hi, src + 16);
                _mm512_mask_storeu_ps((float *)dst, out, _mm512_permutex2var_ps(a, even, b));
            }
        return true;
    }
#endif
    (void)dst, (void)src, (void)rows, (void)n, (void)pitch, (void)st;
    return false;
}

/* Column-shifted copies of a sample, for layers whose output rows are not a multiple of the vector length (the 8-wide
 * rows of ResNet stage 3 with 16-float AVX-512 vectors): copy (a, j) holds xp[c][y s + a][x s + j] as (C, Hq, Wo), so
 * that input (oy s + i, ox s + j) of term k = (c, i, j) lies in copy (i % s, j) at row oy + i / s, column ox, and the
 * output positions of consecutive rows follow each other without a gap. A full wide tile is then read in place
 * whatever the row width, from kw copies of the sample (61 KB for layer3.0.conv2), where it was gathered into a
 * K x WP block (147 KB) by scalar copies and re-read from L2 for every filter. The terms, their values and the order
 * they are summed in are those of the gathered tile: the results are the same bits. */
struct Shifted {
    int64_t s, kw, Hq, Wo, size;
    std::vector<int64_t> at; /* where row k's input of output (0, 0) lies */
    explicit Shifted(const Geometry &g) : s(g.s), kw(g.kw), Hq((g.Hp() + g.s - 1) / g.s), Wo(g.Wo) {
        size = s * kw * g.C * Hq * Wo;
        at.resize(g.K());
        for (int64_t k = 0; k < g.K(); k++) {
            const int64_t c = k / (g.kh * g.kw), i = (k / g.kw) % g.kh, j = k % g.kw;
            at[k] = (((i % s) * kw + j) * g.C + c) * Hq * Wo + (i / s) * Wo;
        }
    }
    /* whether a layer's sign-split wide tiles read these copies (where the stride phases cannot be read in place),
     * and its general tiles (where the padded sample cannot: a stride, or rows not a multiple of the vector) */
    template <typename T> static bool for_split(const Geometry &g) { return g.Wo % Traits<T>::VL != 0 && fits<T>(g); }
    template <typename T> static bool for_general(const Geometry &g) {
        return (g.s != 1 || g.Wo % Traits<T>::VL != 0) && fits<T>(g);
    }
    /* Only where the copies stay small: a tile's rows lie in kw C different places of them, and over a few hundred
     * KB those are as many pages (ImageNet's 56x56 layers: 2.5 MB of copies, 1.37x slower than gathering, while
     * CIFAR's 8x8 ones are 61 KB). A property of the layer's shape: the same for every batch. */
    template <typename T> static bool fits(const Geometry &g) {
        const int64_t Hq = (g.Hp() + g.s - 1) / g.s;
        return g.s * g.kw * g.C * Hq * g.Wo * (int64_t)sizeof(T) <= 256 * 1024;
    }
    /* the copies of the padded sample xp, row by row (rows past it are 0; the row phases no kernel row reads, such as
     * a 1x1 kernel's odd rows at stride 2, are neither written nor read) */
    template <typename T> void fill(const Geometry &g, const T *xp, T *xs) const {
        /* locals, not members: the stores through T* could alias this->Wo, which was reloaded every row */
        const int64_t Hp = g.Hp(), Wp = g.Wp(), st = s, wo = Wo, hq = Hq, C = g.C, kws = kw;
        for (int64_t a = 0; a < st && a < g.kh; a++) {
            const int64_t rows = std::min((Hp - a + st - 1) / st, hq); /* the rows y with y s + a < Hp */
            for (int64_t j = 0; j < kws; j++)
                for (int64_t c = 0; c < C; c++) {
                    /* pointers stepped row by row: the index arithmetic per row had been half of this copy's time */
                    T *dst = xs + ((a * kws + j) * C + c) * hq * wo;
                    const T *src = xp + (c * Hp + a) * Wp + j;
                    if (copy_rows<T>(dst, src, rows, wo, st * Wp, st)) {
                        dst += rows * wo;
                    } else {
                        for (int64_t y = 0; y < rows; y++, dst += wo, src += st * Wp) {
                            if (st == 1) copy_row<T>(dst, src, wo);
                            else if (st == 2)
                                for (int64_t x = 0; x < wo; x++) dst[x] = src[2 * x]; /* vectorized for long rows */
                            else
                                for (int64_t x = 0; x < wo; x++) dst[x] = src[x * st];
                        }
                    }
                    if (rows < hq) memset(dst, 0, (hq - rows) * wo * sizeof(T));
                }
        }
    }
};

/* A sample laid out so that wide tiles are read in place: its stride phases (pitch Wq, rows' offsets Phases::at)
 * or its column-shifted copies (pitch Wo, Shifted::at) from base. */
template <typename T> struct InPlace { const T *base; int64_t pitch; const int64_t *off; };

/* Where a tile's positions are read: the two vectors of positions of im2col row k are at b0 + off[k] and
 * b1 + off[k]. Gathered: b0 = blk, b1 = blk + VL, off[k] = k * PB. Direct (stride 1, each half tile inside
 * one output row): b0 and b1 point into the padded sample at the halves' first inputs and off = the rows'
 * offsets there, so the tile is read where it lies, without a copy. */
template <typename T> struct Tile { const T *b0, *b1; const int64_t *off; };

/* A thread's copy of a sample (padded, phases, shifted copies, their gradients), 64-byte aligned: where a layout's
 * rows are a multiple of 64 bytes apart, its vectors then never straddle two cache lines (a std::vector's 16-byte
 * alignment left that to the allocator: the 8x8 layers' forward took 1.0x or 1.17x the time from one process to the
 * next). */
template <typename T> class Buffer {
    std::vector<T> raw_;
    int64_t n_;
    T *p_;

  public:
    explicit Buffer(int64_t n) : raw_(n > 0 ? n + 64 / sizeof(T) : 0, (T)0), n_(n) {
        p_ = n > 0 ? (T *)(((uintptr_t)raw_.data() + 63) & ~(uintptr_t)63) : nullptr;
    }
    T *data() { return p_; }
    int64_t size() const { return n_; }
};

/* A full general tile at l0 read in place from `in`, where each half lies contiguously: in the padded sample
 * (pitch Wp, rows' offsets `rows`) for stride 1 and output rows a multiple of the vector length, in the column-shifted
 * copies for any stride and row width. */
template <typename T> inline bool direct_tile(const Geometry &g, const InPlace<T> &in, int64_t l0, int64_t count, Tile<T> *tile) {
    constexpr int64_t PB = tile_positions<T>(), VL = Traits<T>::VL;
    if (count != PB || (in.pitch != g.Wo && (g.s != 1 || g.Wo % VL != 0))) return false;
    const int64_t l1 = l0 + VL;
    *tile = {in.base + (l0 / g.Wo) * in.pitch + l0 % g.Wo, in.base + (l1 / g.Wo) * in.pitch + l1 % g.Wo, in.off};
    return true;
}

/* ---- Sign-split paths: samples whose inputs are all >= 0 ------------------------------------------------
 * Every adder layer of a ResNet reads ReLU outputs, so x >= 0. Then a term's value is known without x for
 * about half the weights of a trained layer (or of random ones), and those terms are folded into per-call
 * or per-tile sums instead of being computed:
 *   forward   min(x, w) = w for w <= 0, so -sum_k |x - w| = 2 sum_{k: w > 0} min(x, w) - sum_k x - sum_k |w|;
 *   exact     sign(w - x) = -1 for w < 0, so sum_o g sign(w - x) = sum_{o: w >= 0} g ([w > x] + [w >= x]) - G,
 *             G = sum_o g (ties w == x count 0, as sign(0) = 0);
 *   surrogate clamp(w - x, -1, 1) = -1 for w <= -1, so sum_o g clamp(w - x, -1, 1)
 *             = sum_{o: w > -1} g clamp((w + 1) - x, 0, 2) - G.
 * The remaining entries of each filter (forward) or im2col row (gradient) are listed once per call, and a
 * tile's lists are walked with one weight broadcast per entry: the inputs can no longer be shared across a
 * block of filters, so the tiles are wider (RA_WR vectors of positions) to keep the loads per term low.
 * Whether a sample takes these paths depends on its own values only (all >= 0: no negative, no NaN), so its
 * result never depends on its batch; samples with a negative input take the general paths. */
#if defined(__AVX512F__)
#define RA_WR 4 /* vectors of positions per wide tile */
#else
#define RA_WR 8
#endif
#define RA_GR 4 /* of which the input gradient takes RA_GR at a time (accumulators + inputs in registers) */

template <typename T> constexpr int64_t wide_positions() { return RA_WR * Traits<T>::VL; }

/* Where a wide tile is read from the column-shifted copies or gathered, the forward walks its rows in chunks whose
 * slice of the tile stays in L1 (24 KB: 96 rows of a wide tile), every filter's list entries of one chunk before the
 * next chunk, the filters' running sums kept in the output between chunks. Walked whole, each filter re-read the
 * tile's data from L2 (the 8x8 layers' copies are 61 KB): 0.80-0.94x the forward time on the 8x8 3x3 layer, 0.86-1.02x
 * on the strided one (A/B in one process, Zen 4; 16 KB chunks and 32 KB ones measured no better). The sums keep their order (k ascending
 * in every chain), so the result is the same bits. */
#ifndef RA_KCHUNK_BYTES
#define RA_KCHUNK_BYTES 24576
#endif
template <typename T> constexpr int64_t chunk_rows() {
    constexpr int64_t rows = RA_KCHUNK_BYTES / (wide_positions<T>() * (int64_t)sizeof(T));
    return rows > 0 ? rows : 1;
}

template <typename T> inline bool nonnegative(const T *xn, int64_t count) {
    int bad = 0; /* (an int, not a bool: the loop vectorizes) */
    for (int64_t i = 0; i < count; i++) bad |= !(xn[i] >= (T)0); /* NaN counts as negative */
    return !bad;
}

/* A weight matrix's entries that a sign-split path computes, one list per filter (forward) or per im2col row
 * (input gradient), built once per call: entry e of list i (start[i] <= e < start[i+1]) has the value v[e]
 * and its offset at[e] in a direct wide tile (rows[k], forward), in a gathered one (k * WP, forward), or the
 * filter o (gradient). */
template <typename T> struct Lists {
    std::vector<int64_t> start, at, at_gathered;
    std::vector<T> v;
    /* forward: where filter o's entries of row chunk c begin, chunk[o * (chunks + 1) + c] (see chunk_rows) */
    std::vector<int64_t> chunk;
    int64_t chunks = 1;
};

/* Whether a layer's samples with x >= 0 take the sign-split paths: their per-sample passes (the sign check,
 * the stride phases) and per-filter epilogues pay off only where each input element feeds enough terms
 * (O kh kw / s^2 of them); a 1x1 kernel of stride 2 (a ResNet shortcut: 8-16 terms per input) is faster on
 * the general path. A property of the layer's shape, so the choice is the same for every batch. */
inline bool split_layer(const Geometry &g) { return g.O * g.kh * g.kw >= 32 * g.s * g.s; }

/* ... and where the lists skip enough: a list entry costs more than a general term (its inputs or output
 * gradients are loaded for it alone), so lists of more than 70 % of the weights are not worth walking (the
 * surrogate gradient of a layer whose weights all lie above -1, as AWN's small templates do, measured 10 %
 * slower split than general). A property of the call's weights, the same for every sample. */
template <typename T> inline bool worth_splitting(const Lists<T> &lists, const Geometry &g) {
    return (int64_t)lists.v.size() * 10 <= g.K() * g.O * 7;
}

/* The forward's lists (per filter o, the rows k with W[o, k] > 0) and absw[o] = sum_k |W[o, k]|. Built in two
 * passes over wt (K, O) in memory order — counts, then every entry written through its filter's cursor —
 * since a pass per filter strides through wt and a branch on each weight's sign mispredicts half the time:
 * the list building was half of layer3.0.conv2's time outside the inner loop. */
template <typename T>
void positive_weights(const Geometry &g, const int64_t *rows, const T *wt, Lists<T> *out, std::vector<T> *absw) {
    const int64_t K = g.K(), O = g.O;
    std::vector<int64_t> cursor(O + 1, 0);
    absw->assign(O, (T)0);
    for (int64_t k = 0; k < K; k++)
        for (int64_t o = 0; o < O; o++) {
            const T w = wt[k * O + o];
            (*absw)[o] += w < (T)0 ? -w : w;
            cursor[o + 1] += w > (T)0;
        }
    for (int64_t o = 0; o < O; o++) cursor[o + 1] += cursor[o];
    out->start = cursor;
    const int64_t m = cursor[O];
    out->at.resize(m + 1); /* + a slot that takes the entries not kept */
    out->at_gathered.resize(m + 1);
    out->v.resize(m + 1);
    constexpr int64_t KC = chunk_rows<T>();
    const int64_t chunks = (K + KC - 1) / KC;
    out->chunks = chunks;
    out->chunk.resize(O * (chunks + 1));
    for (int64_t k = 0; k < K; k++) {
        if (k % KC == 0)
            for (int64_t o = 0; o < O; o++) out->chunk[o * (chunks + 1) + k / KC] = cursor[o];
        for (int64_t o = 0; o < O; o++) {
            const T w = wt[k * O + o];
            const bool keep = w > (T)0;
            const int64_t e = keep ? cursor[o] : m;
            out->at[e] = rows[k];
            out->at_gathered[e] = k * wide_positions<T>();
            out->v[e] = w;
            cursor[o] += keep;
        }
    }
    for (int64_t o = 0; o < O; o++) out->chunk[o * (chunks + 1) + chunks] = cursor[o];
    out->at.pop_back();
    out->at_gathered.pop_back();
    out->v.pop_back();
}

/* The input gradient's lists: per row k, the filters o whose term depends on x (exact: W[o, k] >= 0, value
 * W; surrogate: W[o, k] > -1, value W + 1), in decreasing order of value (ties by filter), so that a tile's
 * entries whose term is the same for all its inputs form a prefix and a suffix (see gradient_split). Two
 * passes over w (O, K) in memory order as above, then each row sorted, rows shared among the threads. */
template <typename T> void gradient_weights(const Geometry &g, const T *w, bool exact, Lists<T> *out, int nt) {
    const int64_t K = g.K(), O = g.O;
    auto keep = [exact](T v) { return exact ? v >= (T)0 : v > (T)-1; };
    std::vector<int64_t> cursor(K + 1, 0);
    for (int64_t o = 0; o < O; o++)
        for (int64_t k = 0; k < K; k++) cursor[k + 1] += keep(w[o * K + k]);
    for (int64_t k = 0; k < K; k++) cursor[k + 1] += cursor[k];
    out->start = cursor;
    const int64_t m = cursor[K];
    out->at.resize(m + 1);
    out->v.resize(m + 1);
    for (int64_t o = 0; o < O; o++)
        for (int64_t k = 0; k < K; k++) {
            const T v = w[o * K + k];
            const bool in = keep(v);
            const int64_t e = in ? cursor[k] : m;
            out->at[e] = o;
            out->v[e] = exact ? v : v + (T)1;
            cursor[k] += in;
        }
    out->at.pop_back();
    out->v.pop_back();
#pragma omp parallel num_threads(nt)
    {
        std::vector<std::pair<T, int64_t>> row;
#pragma omp for schedule(static)
        for (int64_t k = 0; k < K; k++) {
            const int64_t b = out->start[k], e = out->start[k + 1];
            row.clear();
            for (int64_t i = b; i < e; i++) row.push_back({out->v[i], out->at[i]});
            std::stable_sort(row.begin(), row.end(), [](const auto &x, const auto &y) { return x.first > y.first; });
            for (int64_t i = b; i < e; i++) out->v[i] = row[i - b].first, out->at[i] = row[i - b].second;
        }
    }
}

/* A wide tile: R vectors of positions; those of im2col row k are at b[q] + off[k]. Direct (output rows a
 * multiple of the vector length, a full tile): b[q] points into the sample's phases (below) at the vector's
 * first output position and off = the rows' offsets there, so the tile is read where it lies. Gathered
 * (otherwise): b[q] = blk + q * VL, off[k] = k * WP. */
template <typename T> struct Wide { const T *b[RA_WR]; const int64_t *off; };

/* even[t] = src[2t], odd[t] = src[2t + 1] for the n elements of src (the stride-2 phases of a row), two
 * vectors at a time with shuffles; and its inverse. */
template <typename T> inline void deinterleave(const T *src, int64_t n, T *even, T *odd) {
    constexpr int VL = Traits<T>::VL;
    using UV = UVec<T>;
    UV ev, od;
    for (int i = 0; i < VL; i++) ev[i] = 2 * i, od[i] = 2 * i + 1;
    int64_t t = 0;
    for (; 2 * t + 2 * VL <= n; t += VL) {
        const Vec<T> a = load<T>(src + 2 * t), b = load<T>(src + 2 * t + VL);
        store<T>(even + t, __builtin_shuffle(a, b, ev));
        store<T>(odd + t, __builtin_shuffle(a, b, od));
    }
    for (; 2 * t < n; t++) {
        even[t] = src[2 * t];
        if (2 * t + 1 < n) odd[t] = src[2 * t + 1];
    }
}
template <typename T> inline void interleave(const T *even, const T *odd, int64_t n, T *dst) {
    constexpr int VL = Traits<T>::VL;
    using UV = UVec<T>;
    UV lo, hi;
    for (int i = 0; i < VL; i++) lo[i] = i / 2 + (i % 2) * VL, hi[i] = VL / 2 + i / 2 + (i % 2) * VL;
    int64_t t = 0;
    for (; 2 * t + 2 * VL <= n; t += VL) {
        const Vec<T> e = load<T>(even + t), o = load<T>(odd + t);
        store<T>(dst + 2 * t, __builtin_shuffle(e, o, lo));
        store<T>(dst + 2 * t + VL, __builtin_shuffle(e, o, hi));
    }
    for (; 2 * t < n; t++) {
        dst[2 * t] = even[t];
        if (2 * t + 1 < n) dst[2 * t + 1] = odd[t];
    }
}

/* The padded sample split into its s x s stride phases, phase (a, b) holding xp[c][y s + a][x s + b] as
 * (C, Hq, Wq): input (oy s + i, ox s + j) of a k = (c, i, j) term is then at phase (i % s, j % s), row
 * oy + i / s, column ox + j / s, so consecutive outputs of a row read consecutive elements whatever the
 * stride (for s = 1 the phase is the padded sample itself). at[k] = where row k's phase element of output
 * (0, 0) lies. A wide tile of a strided layer is thus read in place like a stride-1 one, instead of being
 * gathered into a K x WP block that outgrows L1 (73 KB for layer3.0.conv1) and is re-read per filter. */
struct Phases {
    int64_t s, Hq, Wq, size;
    std::vector<int64_t> at;
    /* input row h: its phase and row there; column phase b: the first input column in it, where that lands,
     * and how many input columns it holds */
    std::vector<int64_t> row_phase, row_at, col_first, col_at, col_count;
    explicit Phases(const Geometry &g) : s(g.s), Hq((g.Hp() + g.s - 1) / g.s), Wq((g.Wp() + g.s - 1) / g.s) {
        size = s * s * g.C * Hq * Wq;
        at.resize(g.K());
        for (int64_t k = 0; k < g.K(); k++) {
            const int64_t c = k / (g.kh * g.kw), i = (k / g.kw) % g.kh, j = k % g.kw;
            at[k] = (((i % s) * s + j % s) * g.C + c) * Hq * Wq + (i / s) * Wq + j / s;
        }
        for (int64_t h = 0; h < g.H; h++) {
            row_phase.push_back((h + g.pad) % s);
            row_at.push_back((h + g.pad) / s);
        }
        for (int64_t b = 0; b < s; b++) {
            const int64_t w0 = ((b - g.pad) % s + s) % s; /* (w0 + pad) % s == b */
            col_first.push_back(w0);
            col_at.push_back((w0 + g.pad) / s);
            col_count.push_back(w0 < g.W ? (g.W - w0 + s - 1) / s : 0);
        }
        col_phase0 = g.pad % s;
    }
    int64_t col_phase0; /* the column phase of input column 0 (stride 2: the even columns') */
    /* only the phases some kernel offset reads (a 1x1 kernel of stride 2 reads one of four) */
    static bool used(const Geometry &g, int64_t a, int64_t b) { return a < g.kh && b < g.kw; }
    template <typename T> void split(const Geometry &g, const T *xp, T *xq) const {
        const int64_t Hp = g.Hp(), Wp = g.Wp();
        for (int64_t a = 0; a < s; a++)
            for (int64_t b = 0; b < s; b++) {
                if (!used(g, a, b)) continue;
                const int64_t nx = (Wp - b + s - 1) / s; /* columns b, b + s, ... inside the padded row */
                for (int64_t c = 0; c < g.C; c++)
                    for (int64_t y = 0; y < Hq; y++) {
                        T *dst = xq + (((a * s + b) * g.C + c) * Hq + y) * Wq;
                        const int64_t r = y * s + a;
                        int64_t x = 0;
                        if (r < Hp) {
                            const T *src = xp + (c * Hp + r) * Wp + b;
                            if (s == 2)
                                for (; x < nx; x++) dst[x] = src[2 * x]; /* a constant stride vectorizes */
                            else
                                for (; x < nx; x++) dst[x] = src[x * s];
                        }
                        for (; x < Wq; x++) dst[x] = (T)0;
                    }
            }
    }
    /* The same phases straight from the sample xn (C, H, W), without its padded copy: the positions of xq
     * that no input lands on (the padding) are zero from xq's allocation and never written. Row by row, each
     * input row spread over its s column phases (a stride-2 row's even and odd columns); where a row and a
     * column phase land is tabulated once (divisions per row cost more than the row's copy). */
    template <typename T> void split_from(const Geometry &g, const T *xn, T *xq) const {
        for (int64_t c = 0; c < g.C; c++)
            for (int64_t h = 0; h < g.H; h++) {
                const T *src = xn + (c * g.H + h) * g.W;
                T *at0 = xq + ((row_phase[h] * s) * g.C + c) * Hq * Wq + row_at[h] * Wq;
                if (s == 2) { /* both column phases at once (one of them may be unused: written, never read) */
                    const int64_t phase = g.C * Hq * Wq; /* from column phase 0 to 1 */
                    deinterleave<T>(src, g.W, at0 + col_phase0 * phase + col_at[col_phase0],
                                    at0 + (1 - col_phase0) * phase + col_at[1 - col_phase0]);
                    continue;
                }
                for (int64_t b = 0; b < s; b++) {
                    if (!used(g, row_phase[h], b)) continue;
                    T *d = at0 + b * g.C * Hq * Wq + col_at[b];
                    for (int64_t t = 0; t < col_count[b]; t++) d[t] = src[col_first[b] + t * s];
                }
            }
    }
    /* dxn (C, H, W) = the phases' gradient dq at the sample's positions (the padding's is dropped; an unused
     * phase's dq is zero) */
    template <typename T> void merge_into(const Geometry &g, const T *dq, T *dxn) const {
        for (int64_t c = 0; c < g.C; c++)
            for (int64_t h = 0; h < g.H; h++) {
                T *dst = dxn + (c * g.H + h) * g.W;
                const T *at0 = dq + ((row_phase[h] * s) * g.C + c) * Hq * Wq + row_at[h] * Wq;
                if (s == 2) {
                    const int64_t phase = g.C * Hq * Wq; /* from column phase 0 to 1 */
                    interleave<T>(at0 + col_phase0 * phase + col_at[col_phase0],
                                  at0 + (1 - col_phase0) * phase + col_at[1 - col_phase0], g.W, dst);
                    continue;
                }
                for (int64_t b = 0; b < s; b++) {
                    const T *src = at0 + b * g.C * Hq * Wq + col_at[b];
                    for (int64_t t = 0; t < col_count[b]; t++) dst[col_first[b] + t * s] = src[t];
                }
            }
    }
    /* whether every wide tile of the layer is read in place (no padded copy needed besides the phases) */
    template <typename T> static bool all_direct(const Geometry &g) {
        return g.Wo % Traits<T>::VL == 0 && g.L() % wide_positions<T>() == 0;
    }
    /* dxp += the phases' gradient dq (the inverse of split) */
    template <typename T> void merge(const Geometry &g, const T *dq, T *dxp) const {
        const int64_t Hp = g.Hp(), Wp = g.Wp();
        for (int64_t a = 0; a < s; a++)
            for (int64_t b = 0; b < s; b++) {
                if (!used(g, a, b)) continue;
                for (int64_t c = 0; c < g.C; c++)
                    for (int64_t y = 0; y < Hq && y * s + a < Hp; y++) {
                        const T *src = dq + (((a * s + b) * g.C + c) * Hq + y) * Wq;
                        T *dst = dxp + (c * Hp + y * s + a) * Wp + b;
                        for (int64_t x = 0; x < Wq && x * s + b < Wp; x++) dst[x * s] += src[x];
                    }
            }
    }
};

/* A full wide tile at l0 read in place, where each of its vectors of positions lies contiguously: inside one output
 * row (rows a multiple of the vector length), or anywhere when rows follow each other without a gap. */
template <typename T> inline bool direct_wide(const Geometry &g, const InPlace<T> &in, int64_t l0, int64_t count, Wide<T> *t) {
    constexpr int VL = Traits<T>::VL;
    if ((g.Wo % VL != 0 && in.pitch != g.Wo) || count != wide_positions<T>()) return false;
    for (int q = 0; q < RA_WR; q++) {
        const int64_t l = l0 + q * VL;
        t->b[q] = in.base + (l / g.Wo) * in.pitch + l % g.Wo;
    }
    t->off = in.off;
    return true;
}

template <typename T> inline Wide<T> gathered_wide(const T *blk, const int64_t *koff) {
    Wide<T> t;
    for (int q = 0; q < RA_WR; q++) t.b[q] = blk + q * Traits<T>::VL;
    t.off = koff;
    return t;
}

/* out[q] = -sum_k |x[k][q] - W[o, k]| for one filter o over a wide tile of x >= 0: its m positive weights ev
 * at tile offsets eo (one accumulator per vector: RA_WR chains hide the add's latency) of one chunk of rows;
 * out holds the sums of the chunks before (unless first) and gets the result after the last. */
template <typename T>
inline void forward_positive(const Wide<T> &x, const int64_t *eo, const T *ev, int64_t m, T *out, const T *sx, T absw,
                             bool first, bool last) {
    constexpr int VL = Traits<T>::VL, R = RA_WR;
    Vec<T> a[R];
    for (int q = 0; q < R; q++) a[q] = first ? Vec<T>{} : load<T>(out + q * VL);
    for (int64_t e = 0; e < m; e++) {
        const Vec<T> w = splat<T>(ev[e]);
        for (int q = 0; q < R; q++) a[q] = acc(a[q], vmin(load<T>(x.b[q] + eo[e]), w));
    }
    if (!last) {
        for (int q = 0; q < R; q++) store<T>(out + q * VL, a[q]);
        return;
    }
    const Vec<T> sw = splat<T>(absw);
    for (int q = 0; q < R; q++) store<T>(out + q * VL, (a[q] + a[q]) - (load<T>(sx + q * VL) + sw));
}

/* Lists shorter than this are walked whole: the tile's extremes and two searches cost more than they save. */
#define RA_SEARCH 16

/* How many leading entries of a list satisfy pred, which holds for a prefix of it (a branch-free search). */
template <typename T, typename P> inline int64_t prefix_length(const T *v, int64_t m, P pred) {
    int64_t lo = 0, n = m;
    while (n > 0) {
        const int64_t half = n / 2;
        const bool in = pred(v[lo + half]);
        lo = in ? lo + half + 1 : lo;
        n = in ? n - half - 1 : half;
    }
    return lo;
}

template <typename T> inline T hmax(Vec<T> v) {
    T r = v[0];
    for (int i = 1; i < Traits<T>::VL; i++) r = v[i] > r ? v[i] : r;
    return r;
}
template <typename T> inline T hmin(Vec<T> v) {
    T r = v[0];
    for (int i = 1; i < Traits<T>::VL; i++) r = v[i] < r ? v[i] : r;
    return r;
}

#if defined(__AVX512F__)
/* a shuffle tree of vector max/min (exact, so the order does not matter; the inputs here hold no NaN) */
template <> inline float hmax<float>(Vec<float> v) { return _mm512_reduce_max_ps((__m512)v); }
template <> inline float hmin<float>(Vec<float> v) { return _mm512_reduce_min_ps((__m512)v); }
template <> inline double hmax<double>(Vec<double> v) { return _mm512_reduce_max_pd((__m512d)v); }
template <> inline double hmin<double>(Vec<double> v) { return _mm512_reduce_min_pd((__m512d)v); }
#endif

/* The input gradient of row k for vectors q0 .. q0 + RA_GR of a wide tile of x >= 0 (see above): its list's
 * m entries (filter eo[e], value ev[e], decreasing) against g rows gstride apart; G = sum_o g. With xmax and
 * xmin the extreme inputs of these positions, an entry's term is 2 g at all of them while (exact) w > xmax or
 * (surrogate) (w + 1) - xmax >= 2, and 0 once (exact) w < xmin or (surrogate) w + 1 <= xmin: the first run
 * costs one add per vector (its g summed apart, doubled at the end), the last is skipped, and only the
 * entries between are compared (every entry of a list shorter than RA_SEARCH). The bounds are tested with
 * the arithmetic the comparisons use (rounding is monotone), so they hold exactly. Added into dst (direct)
 * or stored there (gathered). */
template <typename T, bool EXACT>
inline void gradient_split(const Wide<T> &x, const Wide<T> &dst, bool add, int64_t k, int q0, const int64_t *eo,
                           const T *ev, int64_t m, const T *gb, int64_t gstride, const Vec<T> *G) {
    constexpr int VL = Traits<T>::VL, R = RA_GR;
    Vec<T> xv[R], a[R], b[R];
    for (int q = 0; q < R; q++) {
        xv[q] = load<T>(x.b[q0 + q] + x.off[k]);
        a[q] = b[q] = Vec<T>{};
    }
    int64_t all2 = 0, live = m;
    if (m >= RA_SEARCH) {
        Vec<T> hi = xv[0], lo = xv[0];
        for (int q = 1; q < R; q++) hi = vmax(hi, xv[q]), lo = vmin(lo, xv[q]);
        const T xmax = hmax<T>(hi), xmin = hmin<T>(lo);
        all2 = EXACT ? prefix_length(ev, m, [=](T w) { return w > xmax; })
                     : prefix_length(ev, m, [=](T u) { return u - xmax >= (T)2; });
        live = EXACT ? prefix_length(ev, m, [=](T w) { return w >= xmin; })
                     : prefix_length(ev, m, [=](T u) { return u > xmin; });
    }
    for (int64_t e = 0; e < all2; e++) {
        const T *ge = gb + eo[e] * gstride + q0 * VL;
        for (int q = 0; q < R; q++) b[q] = acc(b[q], load<T>(ge + q * VL));
    }
    for (int64_t e = all2; e < live; e++) {
        const Vec<T> w = splat<T>(ev[e]);
        const T *ge = gb + eo[e] * gstride + q0 * VL;
        for (int q = 0; q < R; q++) {
            if (EXACT) a[q] = acc(a[q], twice_where<T>(ge + q * VL, w, xv[q]));
            else a[q] += load<T>(ge + q * VL) * vmin(vmax(diff(w, xv[q]), Vec<T>{}), splat<T>(2));
        }
    }
    for (int q = 0; q < R; q++) {
        T *d = (T *)dst.b[q0 + q] + dst.off[k];
        const Vec<T> v = (a[q] + (b[q] + b[q])) - G[q0 + q];
        store<T>(d, add ? load<T>(d) + v : v);
    }
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
                a0[j] = acc(a0[j], vmin(x0, wj));
                a1[j] = acc(a1[j], vmin(x1, wj));
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

/* Scratch per thread: a gathered wide tile (K x WP), its gradient (K x WP) and a tile of outputs or output
 * gradients (O x WP); the general tiles (PB <= WP positions) use the same space. */
template <typename T> constexpr int64_t scratch_per_thread(int64_t K, int64_t O) { return (2 * K + O) * wide_positions<T>(); }

/* The general forward of one tile of PB positions at l0 (see forward_block): read in place from `in` where it
 * can, else gathered from the padded sample xp. */
template <typename T, bool CONV>
inline void forward_tile(const Geometry &g, const int64_t *rows, const int64_t *koff, const InPlace<T> &in, const T *xp,
                         const T *wt, const T *sw, T *yn, int64_t l0, T *blk, T *res) {
    constexpr int64_t PB = tile_positions<T>(), OB = RA_OB;
    constexpr int VL = Traits<T>::VL;
    const int64_t K = g.K(), L = g.L(), O = g.O;
    alignas(64) T sx[PB];
    Run runs[PB] = {}; /* (filled by tile_runs; initialized because GCC cannot tell) */
    int64_t count;
    const int nruns = tile_runs<T>(g, l0, runs, &count);
    Tile<T> tile;
    if (!direct_tile<T>(g, in, l0, count, &tile)) {
        gather_tile<T>(g, rows, xp, runs, nruns, count, blk);
        tile = {blk, blk + VL, koff};
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
    T *out = full ? yn + l0 : res;
    const int64_t os = full ? L : PB;
    int64_t o0 = 0;
    for (; o0 + OB <= O; o0 += OB) forward_block<T, CONV, OB>(tile, wt, out + o0 * os, os, K, O, o0, sx, sw);
    for (; o0 + 4 <= O; o0 += 4) forward_block<T, CONV, 4>(tile, wt, out + o0 * os, os, K, O, o0, sx, sw);
    for (; o0 + 2 <= O; o0 += 2) forward_block<T, CONV, 2>(tile, wt, out + o0 * os, os, K, O, o0, sx, sw);
    for (; o0 < O; o0++) forward_block<T, CONV, 1>(tile, wt, out + o0 * os, os, K, O, o0, sx, sw);
    if (!full)
        for (int64_t o = 0; o < O; o++) memcpy(yn + o * L + l0, res + o * PB, count * sizeof(T));
}

/* The sign-split forward of one wide tile of WP positions at l0 of a sample with x >= 0. */
template <typename T>
inline void forward_wide(const Geometry &g, const int64_t *rows, const InPlace<T> &in, bool copies, const int64_t *wkoff,
                         const T *xp, const Lists<T> &pos, const T *absw, T *yn, int64_t l0, T *blk, T *res) {
    constexpr int64_t WP = wide_positions<T>();
    constexpr int VL = Traits<T>::VL, R = RA_WR;
    const int64_t K = g.K(), L = g.L(), O = g.O;
    alignas(64) T sx[WP];
    Run runs[WP];
    int64_t count;
    const int nruns = tile_runs<T, WP>(g, l0, runs, &count);
    Wide<T> tile;
    const bool direct = direct_wide<T>(g, in, l0, count, &tile);
    if (!direct) {
        gather_tile<T, WP>(g, rows, xp, runs, nruns, count, blk);
        tile = gathered_wide<T>(blk, wkoff);
    }
    Vec<T> sq[R]; /* the column sums, k in order for each vector, the vectors' chains interleaved */
    for (int q = 0; q < R; q++) sq[q] = Vec<T>{};
    for (int64_t k = 0; k < K; k++)
        for (int q = 0; q < R; q++) sq[q] += load<T>(tile.b[q] + tile.off[k]);
    for (int q = 0; q < R; q++) store<T>(sx + q * VL, sq[q]);
    const bool full = count == WP;
    T *out = full ? yn + l0 : res;
    const int64_t os = full ? L : WP;
    const int64_t *at = direct ? pos.at.data() : pos.at_gathered.data();
    /* from the copies or gathered (tens of KB per tile) chunk by chunk, so that each stays in L1; in place from the
     * sample or its phases (overlapping rows, a few KB that L1 holds whole) all chunks in one walk */
    const int64_t chunks = pos.chunks, step = !direct || copies ? 1 : chunks;
    for (int64_t c = 0; c < chunks; c += step)
        for (int64_t o = 0; o < O; o++) {
            const int64_t *cs = pos.chunk.data() + o * (chunks + 1) + c, e = cs[0];
            forward_positive<T>(tile, at + e, pos.v.data() + e, cs[step] - e, out + o * os, sx, absw[o], c == 0,
                                c + step >= chunks);
        }
    if (!full)
        for (int64_t o = 0; o < O; o++) memcpy(yn + o * L + l0, res + o * WP, count * sizeof(T));
}

/* Parallel over (sample, wide tile of WP positions): a sample with x >= 0 takes the sign-split path, any
 * other sample (and every convolution) the general tiles of PB positions that the wide tile covers. */
template <typename T, bool CONV>
void forward(const Geometry &g, const int64_t *rows, const T *x, const T *wt, T *y, T *scratch, int nt) {
    constexpr int64_t PB = tile_positions<T>(), WP = wide_positions<T>();
    const int64_t K = g.K(), L = g.L(), O = g.O, wides = (L + WP - 1) / WP, chw = g.C * g.H * g.W;
    std::vector<T> sw(O, (T)0), absw;
    std::vector<int64_t> koff(K), wkoff(K);
    for (int64_t k = 0; k < K; k++) koff[k] = k * PB, wkoff[k] = k * WP;
    Lists<T> pos;
    const Phases ph(g);
    const Shifted sh(g);
    /* split samples are read from column-shifted copies or from their phases, general ones from the copies or the
     * padded sample */
    const bool shifted = Shifted::for_split<T>(g), shifted_general = Shifted::for_general<T>(g);
    if (!CONV) {
        for (int64_t k = 0; k < K; k++)
            for (int64_t o = 0; o < O; o++) sw[o] += wt[k * O + o];
        if (split_layer(g)) positive_weights<T>(g, shifted ? sh.at.data() : ph.at.data(), wt, &pos, &absw);
    }
    const bool splits = !CONV && split_layer(g) && worth_splitting(pos, g);
    const bool phases_only = splits && g.s > 1 && Phases::all_direct<T>(g); /* split samples need no padded copy */
#pragma omp parallel num_threads(nt)
    {
        T *blk = scratch + (int64_t)omp_get_thread_num() * scratch_per_thread<T>(K, O);
        T *res = blk + K * WP;
        Buffer<T> xp(g.padded()); /* this thread's current sample, zero-padded */
        /* and its stride phases, its column-shifted copies */
        Buffer<T> xq(splits && !shifted && g.s > 1 ? ph.size : 0), xs((splits && shifted) || shifted_general ? sh.size : 0);
        const InPlace<T> copies{xs.data(), g.Wo, sh.at.data()};
        const InPlace<T> in = shifted ? copies : InPlace<T>{g.s > 1 ? xq.data() : xp.data(), ph.Wq, ph.at.data()};
        const InPlace<T> general = shifted_general ? copies : InPlace<T>{xp.data(), g.Wp(), rows};
        int64_t padded_n = -1;
        bool split = false; /* the current sample is >= 0: the sign-split path */
#pragma omp for schedule(static)
        for (int64_t it = 0; it < g.N * wides; it++) {
            const int64_t n = it / wides, l0 = (it % wides) * WP;
            if (n != padded_n) {
                split = splits && nonnegative<T>(x + n * chw, chw);
                if (split && phases_only) {
                    ph.split_from<T>(g, x + n * chw, xq.data());
                } else {
                    pad_sample<T>(g, x + n * chw, xp.data());
                    if (split ? shifted : shifted_general) sh.fill<T>(g, xp.data(), xs.data());
                    else if (split && g.s > 1) ph.split<T>(g, xp.data(), xq.data());
                }
                padded_n = n;
            }
            T *yn = y + n * O * L;
            if (split) {
                forward_wide<T>(g, rows, in, shifted, wkoff.data(), xp.data(), pos, absw.data(), yn, l0, blk, res);
            } else {
                const int64_t end = l0 + WP < L ? l0 + WP : L;
                for (int64_t t0 = l0; t0 < end; t0 += PB)
                    forward_tile<T, CONV>(g, rows, koff.data(), general, xp.data(), wt, sw.data(), yn, t0, blk, res);
            }
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
                a0[i] = acc(a0[i], signed_by<T>(g0, diff(wi, x0[i])));
                a1[i] = acc(a1[i], signed_by<T>(g1, diff(wi, x1[i])));
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

/* A tile's output gradients: its rows of g (O rows L apart, from the tile's first position), or for the last,
 * partial tile of count < PB positions a copy zero-padded to PB in gt; *gstride = the rows' distance. */
template <typename T, int64_t PB>
inline const T *tile_gradient(const T *g, int64_t L, int64_t O, int64_t count, T *gt, int64_t *gstride) {
    if (count == PB) {
        *gstride = L;
        return g;
    }
    for (int64_t o = 0; o < O; o++) {
        memcpy(gt + o * PB, g + o * L, count * sizeof(T));
        for (int64_t q = count; q < PB; q++) gt[o * PB + q] = (T)0;
    }
    *gstride = PB;
    return gt;
}

/* The sign-split input gradient of one wide tile at l0 of a sample with x >= 0 (see gradient_split), read in
 * place from `in` where the tile allows it: added where its inputs lie in dq (laid out as `in`), or, without dq
 * (column-shifted copies, which overlap) or for a gathered tile, folded into the padded gradient dxp. */
template <typename T, bool EXACT>
inline void gradient_wide(const Geometry &g, const int64_t *rows, const InPlace<T> &in, const int64_t *wkoff, const T *xp,
                          T *dxp, T *dq, const Lists<T> &lists, const T *gy_n, int64_t l0, T *blk, T *dblk, T *gt) {
    constexpr int64_t WP = wide_positions<T>();
    constexpr int VL = Traits<T>::VL, R = RA_WR;
    const int64_t K = g.K(), L = g.L(), O = g.O;
    Run runs[WP];
    int64_t count;
    const int nruns = tile_runs<T, WP>(g, l0, runs, &count);
    Wide<T> xt, dt;
    const bool direct = direct_wide<T>(g, in, l0, count, &xt), in_place = direct && dq;
    if (!direct) {
        gather_tile<T, WP>(g, rows, xp, runs, nruns, count, blk);
        xt = gathered_wide<T>(blk, wkoff);
    }
    if (in_place) direct_wide<T>(g, InPlace<T>{dq, in.pitch, in.off}, l0, count, &dt);
    else dt = gathered_wide<T>(dblk, wkoff);
    int64_t gs;
    const T *gb = tile_gradient<T, WP>(gy_n + l0, L, O, count, gt, &gs);
    Vec<T> G[R];
    for (int q = 0; q < R; q++) {
        G[q] = Vec<T>{};
        for (int64_t o = 0; o < O; o++) G[q] += load<T>(gb + o * gs + q * VL);
    }
    for (int64_t k = 0; k < K; k++) {
        const int64_t e = lists.start[k], m = lists.start[k + 1] - e;
        for (int q0 = 0; q0 < R; q0 += RA_GR)
            gradient_split<T, EXACT>(xt, dt, in_place, k, q0, lists.at.data() + e, lists.v.data() + e, m, gb, gs, G);
    }
    if (!in_place && !scatter_sample<T, WP>(g, dblk, l0, count, dxp)) scatter_tile<T, WP>(g, rows, dblk, runs, nruns, dxp);
}

/* Input gradient, parallel over samples: one thread accumulates all of a sample's dx, tile by tile, in a
 * zero-padded copy whose interior becomes dx. A sample with x >= 0 takes the sign-split path (wide tiles),
 * any other sample (and the convolution's gradient) the general one. */
template <typename T, int MODE>
void grad_input(const Geometry &g, const int64_t *rows, const T *x, const T *w, const T *gy, T *dx, T *scratch,
                int nt) {
    constexpr int64_t PB = tile_positions<T>(), KB = RA_KB, WP = wide_positions<T>();
    constexpr int VL = Traits<T>::VL;
    const int64_t K = g.K(), L = g.L(), O = g.O, tiles = (L + PB - 1) / PB, chw = g.C * g.H * g.W;
    std::vector<int64_t> koff(K), wkoff(K);
    for (int64_t k = 0; k < K; k++) koff[k] = k * PB, wkoff[k] = k * WP;
    Lists<T> lists;
    const Phases ph(g);
    const Shifted sh(g);
    /* as in the forward; the convolution's gradient (MODE 2) does not read x */
    const bool shifted = Shifted::for_split<T>(g), shifted_general = MODE != 2 && Shifted::for_general<T>(g);
    if (MODE != 2 && split_layer(g)) gradient_weights<T>(g, w, MODE == 1, &lists, nt);
    const bool splits = MODE != 2 && split_layer(g) && worth_splitting(lists, g);
    const bool phases_only = splits && g.s > 1 && Phases::all_direct<T>(g); /* split samples need no padded copy */
#pragma omp parallel num_threads(nt)
    {
        T *blk = scratch + (int64_t)omp_get_thread_num() * scratch_per_thread<T>(K, O);
        T *dblk = blk + K * WP, *gt = dblk + K * WP;
        Buffer<T> xp(g.padded()), dxp(g.padded());
        /* the stride phases and their gradient; the column-shifted copies (whose gradient is folded into dxp) */
        Buffer<T> xq(splits && !shifted && g.s > 1 ? ph.size : 0), dq(xq.size());
        Buffer<T> xs((splits && shifted) || shifted_general ? sh.size : 0);
        const InPlace<T> phases{g.s > 1 ? xq.data() : xp.data(), ph.Wq, ph.at.data()}, copies{xs.data(), g.Wo, sh.at.data()};
        const InPlace<T> in = shifted ? copies : phases, general = shifted_general ? copies : InPlace<T>{xp.data(), g.Wp(), rows};
#pragma omp for schedule(static)
        for (int64_t n = 0; n < g.N; n++) {
            if (splits && phases_only && nonnegative<T>(x + n * chw, chw)) {
                ph.split_from<T>(g, x + n * chw, xq.data());
                memset(dq.data(), 0, dq.size() * sizeof(T));
                for (int64_t l0 = 0; l0 < L; l0 += WP)
                    gradient_wide<T, MODE == 1>(g, rows, phases, wkoff.data(), nullptr, nullptr, dq.data(), lists,
                                                gy + n * O * L, l0, blk, dblk, gt);
                ph.merge_into<T>(g, dq.data(), dx + n * chw);
                continue;
            }
            if (MODE != 2) pad_sample<T>(g, x + n * chw, xp.data());
            memset(dxp.data(), 0, g.padded() * sizeof(T));
            if (splits && nonnegative<T>(x + n * chw, chw)) {
                const bool phased = g.s > 1 && !shifted;
                if (shifted) {
                    sh.fill<T>(g, xp.data(), xs.data());
                } else if (phased) {
                    ph.split<T>(g, xp.data(), xq.data());
                    memset(dq.data(), 0, dq.size() * sizeof(T));
                }
                T *in_dq = shifted ? nullptr : phased ? dq.data() : dxp.data();
                for (int64_t l0 = 0; l0 < L; l0 += WP)
                    gradient_wide<T, MODE == 1>(g, rows, in, wkoff.data(), xp.data(), dxp.data(), in_dq, lists,
                                                gy + n * O * L, l0, blk, dblk, gt);
                if (phased) ph.merge<T>(g, dq.data(), dxp.data());
                crop_sample<T>(g, dxp.data(), dx + n * chw);
                continue;
            }
            if (shifted_general) sh.fill<T>(g, xp.data(), xs.data());
            for (int64_t t = 0; t < tiles; t++) {
                const int64_t l0 = t * PB;
                Run runs[PB];
                int64_t count;
                const int nruns = tile_runs<T>(g, l0, runs, &count);
                /* the gradient is added where it lies in the padded gradient when x is read so from the padded
                 * sample; otherwise (gathered, or read from the shifted copies, which overlap) into the tile
                 * buffer, then folded into dxp: the same additions in the same order */
                Tile<T> xt, dt;
                const bool direct = direct_tile<T>(g, InPlace<T>{dxp.data(), g.Wp(), rows}, l0, count, &dt);
                if (!direct) dt = {dblk, dblk + VL, koff.data()};
                if (!direct_tile<T>(g, direct ? InPlace<T>{xp.data(), g.Wp(), rows} : general, l0, count, &xt)) {
                    if (MODE != 2) gather_tile<T>(g, rows, xp.data(), runs, nruns, count, blk);
                    xt = {blk, blk + VL, koff.data()};
                }
                int64_t gs;
                const T *gb = tile_gradient<T, PB>(gy + n * O * L + l0, L, O, count, gt, &gs);
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
        return scratch_per_thread<T>(K, O);                                                              \
    }
#define RA_STR2(x) #x
#define RA_STR(x) RA_STR2(x)
extern "C" const char *adder_build_variant(void) {
    return "vector_bytes=" RA_STR(RA_VBYTES) " forward_block=2x" RA_STR(RA_OB) " grad_block=2x" RA_STR(RA_KB)
           " forward=min-identity tiles=padded sign_split=wide" RA_STR(RA_WR) "x" RA_STR(RA_GR) " in_place=phases+shifted"
           " forward_chunk=" RA_STR(RA_KCHUNK_BYTES) " aligned_copies=64 sample_fold=registers copies=masked_rows"
#if defined(__AVX512F__)
           " accumulate=fma"
#endif
        ;
}

EXPORT(float, f32)
EXPORT(double, f64)
