// CPU micro-kernels and task bodies of adder2d (see adder2d_cpu.cpp).
// Deliberately without include guard: adder2d_cpu.cpp includes this file
// once per ISA (AVX-512, AVX2+FMA, baseline), each under its own
// `#pragma GCC target` region and namespace, with ADDER_VEC_BYTES the vector
// size (64 for AVX-512, else 32). A whole-region target (rather than target
// attributes on wrappers) matters: GCC lowers vector code to the ISA of the
// function it is written in before inlining it anywhere.

constexpr int kVecBytes = ADDER_VEC_BYTES;

// Vectors of T in VB bytes: the ISA's width by default; the AVX-512
// kernels also compute some tiles in 256-bit ones (half_width_tiles).
template <typename T, int VB = kVecBytes>
struct Vec;
template <int VB>
struct Vec<float, VB> {
  typedef float type __attribute__((vector_size(VB)));
  typedef int32_t mask __attribute__((vector_size(VB)));
  static constexpr int width = VB / 4;
  static constexpr int32_t abs_bits = 0x7fffffff;
};
template <int VB>
struct Vec<double, VB> {
  typedef double type __attribute__((vector_size(VB)));
  typedef int64_t mask __attribute__((vector_size(VB)));
  static constexpr int width = VB / 8;
  static constexpr int64_t abs_bits = 0x7fffffffffffffffLL;
};

template <typename T, int VB = kVecBytes>
ADDER_INLINE typename Vec<T, VB>::type vload(const T* p) {
  typename Vec<T, VB>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
// A tile's accumulators zeroed a vector at a time: `V acc[M][N] = {}` on an
// array whose address the write-back takes (memcpy) compiled (GCC 12) to a
// rep stosq of the whole array on every call (3.6% of the AVX2 forward
// tile's samples on a 64-filter 3x3 layer).
template <typename V, int M, int N>
ADDER_INLINE void zero_tile(V (&acc)[M][N]) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) acc[i][j] = V{};
}
// The store beside vload. It takes the vector by value, so a tile writing
// its accumulators back through it takes no accumulator array's address
// (a memcpy from the array had made GCC keep the AVX2 hardtanh
// input-gradient tile's accumulators in memory, a store each a term).
template <typename T, int VB = kVecBytes>
ADDER_INLINE void vstore(T* p, typename Vec<T, VB>::type v) {
  std::memcpy(p, &v, sizeof(v));
}
template <typename T, int VB = kVecBytes>
ADDER_INLINE typename Vec<T, VB>::type vsplat(T s) {
  const typename Vec<T, VB>::type zero = {};
  return s - zero;  // s - 0 == s exactly, so this folds to one broadcast
}
// |v|: the sign bits cleared. On aarch64 through vabsq, which GCC fuses
// with a subtract into one FABD (the mask form cost FSUB + BIC there).
template <typename T, int VB = kVecBytes>
ADDER_INLINE typename Vec<T, VB>::type vabs(typename Vec<T, VB>::type v) {
  using V = typename Vec<T, VB>::type;
#if ADDER_NEON
  if constexpr (VB == 16) {
    if constexpr (std::is_same_v<T, float>)
      return (V)vabsq_f32((float32x4_t)v);
    else
      return (V)vabsq_f64((float64x2_t)v);
  }
#endif
  using M = typename Vec<T, VB>::mask;
  return (V)((M)v & Vec<T, VB>::abs_bits);
}
// min(a, b) of finite lanes, as the min forms use it (they never see inf
// or NaN: such calls take the direct form): `a < b ? a : b`, x86's MINPS
// exactly. On aarch64 one FMIN where the select cost FCMGT + BSL; the two
// differ only for NaN and in the sign of the min of two equal zeros (+-0
// added to an accumulator that starts at +0 leaves the same sum).
template <typename T, int VB = kVecBytes>
ADDER_INLINE typename Vec<T, VB>::type vmin_finite(
    typename Vec<T, VB>::type a, typename Vec<T, VB>::type b) {
  using V = typename Vec<T, VB>::type;
#if ADDER_NEON
  if constexpr (VB == 16) {
    if constexpr (std::is_same_v<T, float>)
      return (V)vminq_f32((float32x4_t)a, (float32x4_t)b);
    else
      return (V)vminq_f64((float64x2_t)a, (float64x2_t)b);
  }
#endif
  return a < b ? a : b;
}

// Lanes i < n (of the vector's width) read p[idx[i]], the rest are 0: a
// masked gather on AVX-512, a loop elsewhere (AVX2's gathers are not faster
// than loads on every x86 core). The packings use it to transpose: 16 values
// a gather where they had stored one lane at a time.
template <typename T>
ADDER_INLINE typename Vec<T>::type vgather(const T* p, const int32_t* idx,
                                           int n) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::width;
  n = n < 0 ? 0 : n > W ? W : n;
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
  const unsigned lanes = n == W ? ~0u : (1u << n) - 1;
  if constexpr (std::is_same_v<T, float>)
    return (V)_mm512_mask_i32gather_ps(
        _mm512_setzero_ps(), (__mmask16)lanes,
        _mm512_loadu_si512((const void*)idx), p, 4);
  else
    return (V)_mm512_mask_i32gather_pd(
        _mm512_setzero_pd(), (__mmask8)lanes,
        _mm256_loadu_si256((const __m256i*)idx), p, 8);
#else
  V v = {};
  for (int i = 0; i < n; ++i) v[i] = p[idx[i]];
  return v;
#endif
}

// An opaque 1: `v * opaque_one(...)` is not folded to `v`, so the compiler
// contracts `acc += v * one` into an FMA, which runs on the multiply pipes
// and leaves the add/compare pipes to the rest of the loop body.
template <typename V>
ADDER_INLINE V opaque_one(V one) {
#if ADDER_ISA_X86
  __asm__("" : "+v"(one));
#endif
  return one;
}

// acc + (a > b ? g : 0) (false for NaN, and for ties): compare, and, add
// in the AVX2 and baseline builds. The AVX-512 build compares into a mask
// register and adds under it (2 instructions against 3; 32-42 against
// 23-27 G terms/s a core in a standalone loop of the sign rule's fast
// tile), reading the broadcast operand from memory: the two helpers below.
template <typename T>
ADDER_INLINE typename Vec<T>::type add_where_greater(
    typename Vec<T>::type acc, typename Vec<T>::type a,
    typename Vec<T>::type b, typename Vec<T>::type g) {
  const typename Vec<T>::type zero = {};
  return acc + (a > b ? g : zero);
}
// acc + (*w > x ? g : 0), *w broadcast: on AVX-512 the compare reads it as
// an embedded broadcast ({1to16}). GCC 12 folds broadcasts into FMAs but
// not into compares, and a separate 512-bit broadcast from memory takes
// FP pipe time on Zen 4: the sign rule's 6-row tile ran 31 G terms/s a
// core with vbroadcastss + vcmpps, 53 with the broadcast embedded
// (tools/cpu_tile_rates.cpp, docs/benchmarks.md session 27). x < w
// (LT_OQ) is w > x (GT_OQ): both false for NaN.
template <typename T>
ADDER_INLINE typename Vec<T>::type add_where_broadcast_greater(
    typename Vec<T>::type acc, const T* w, typename Vec<T>::type x,
    typename Vec<T>::type g) {
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
  using V = typename Vec<T>::type;
  if constexpr (std::is_same_v<T, float>) {
    __mmask16 m;
    __asm__("vcmpps $0x11, %1%{1to16%}, %2, %0" : "=k"(m) : "m"(*w), "v"(x));
    return (V)_mm512_mask_add_ps((__m512)acc, m, (__m512)acc, (__m512)g);
  } else {
    __mmask8 m;
    __asm__("vcmppd $0x11, %1%{1to8%}, %2, %0" : "=k"(m) : "m"(*w), "v"(x));
    return (V)_mm512_mask_add_pd((__m512d)acc, m, (__m512d)acc, (__m512d)g);
  }
#else
  return add_where_greater<T>(acc, vsplat(*w), x, g);
#endif
}
// acc + (w > x ? *g : 0), *g broadcast: on AVX-512 the masked add reads
// it as an embedded broadcast (as add_where_broadcast_greater).
template <typename T>
ADDER_INLINE typename Vec<T>::type add_broadcast_where_greater(
    typename Vec<T>::type acc, typename Vec<T>::type w,
    typename Vec<T>::type x, const T* g) {
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
  if constexpr (std::is_same_v<T, float>) {
    const __mmask16 m = _mm512_cmp_ps_mask((__m512)w, (__m512)x, _CMP_GT_OQ);
    __asm__("vaddps %1%{1to16%}, %0, %0%{%2%}" : "+v"(acc) : "m"(*g), "Yk"(m));
  } else {
    const __mmask8 m = _mm512_cmp_pd_mask((__m512d)w, (__m512d)x, _CMP_GT_OQ);
    __asm__("vaddpd %1%{1to8%}, %0, %0%{%2%}" : "+v"(acc) : "m"(*g), "Yk"(m));
  }
  return acc;
#else
  return add_where_greater<T>(acc, w, x, vsplat(*g));
#endif
}
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
// G(d) of the input gradient's rules in the AVX-512 build, for
// add_sign_times, add_input_grad_term and add_input_grad_term_broadcast:
// the sign rule by vfixupimm (below), hardtanh by vrangeps (kRange) or
// min(1, d) then max(-1, .) (add_input_grad_term).
template <typename T, bool kSign, bool kRange>
ADDER_INLINE typename Vec<T>::type input_grad_rule_avx512(
    typename Vec<T>::type d, typename Vec<T>::type one,
    typename Vec<T>::type mone) {
  using V = typename Vec<T>::type;
  if constexpr (std::is_same_v<T, float>)
    return (V)(kSign ? _mm512_fixupimm_ps((__m512)d, (__m512)d,
                                          _mm512_set1_epi32(0xA9A9A888), 0)
               : kRange ? _mm512_range_ps((__m512)d, (__m512)one, 0x2)
                        : _mm512_max_ps((__m512)mone,
                                        _mm512_min_ps((__m512)one, (__m512)d)));
  else
    return (V)(kSign ? _mm512_fixupimm_pd((__m512d)d, (__m512d)d,
                                          _mm512_set1_epi64(0xA9A9A888), 0)
               : kRange ? _mm512_range_pd((__m512d)d, (__m512d)one, 0x2)
                        : _mm512_max_pd((__m512d)mone,
                                        _mm512_min_pd((__m512d)one,
                                                      (__m512d)d)));
}
#endif

// acc + g * sign(w - x), with sign 0 for ties and NaN (as the two-compare
// form gives). AVX-512: vfixupimm maps the classes of d = w - x straight to
// -1, +0 or +1 (table: NaN +0, zero +0, +1/+inf/positive +1, -inf/negative
// -1), then an FMA: 3 instructions on either FP port, where two compares
// into masks (port 5 only) and two masked adds were 4 (standalone tile loop,
// 12 rows: 24-30 against 19-22 G terms/s a core). Others: two blends and an
// FMA.
template <typename T>
ADDER_INLINE typename Vec<T>::type add_sign_times(
    typename Vec<T>::type acc, typename Vec<T>::type w,
    typename Vec<T>::type x, typename Vec<T>::type g,
    typename Vec<T>::type ng, typename Vec<T>::type one) {
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
  (void)ng;
  return acc + g * input_grad_rule_avx512<T, true, false>(w - x, one, one);
#else
  using V = typename Vec<T>::type;
  const V zero = {};
  const V up = w > x ? g : zero;
  return acc + (w < x ? ng : up) * one;  // the FMA runs on the multiply pipes
#endif
}

// acc + g * G(w - x), G the input gradient's rule: the sign rule exact
// (add_sign_times: ties and NaN 0), hardtanh clamp(w - x, -1, 1) (NaN
// stays NaN). ng = -g, one and mone = +-1 splats. The x86 builds clamp
// with min(1, d) then max(-1, .) (that operand order keeps a NaN d): in
// the AVX-512 build GCC had made the second select a compare into a mask
// and a masked move (the AVX2 build: the same time either way). kRange
// (AVX-512, finite inputs and filters only): vrangeps takes of d and 1 the
// one of smaller magnitude with d's sign (imm 0x2), the clamp in one
// instruction, but it turns a NaN d into 1. A standalone tile loop (12
// rows, AMD Zen 4): 24-30 G terms/s a core by range, 17-20 by min and
// max, 13-15 compare and blend (docs/benchmarks.md "session 25").
template <typename T, bool kSign, bool kRange = false>
ADDER_INLINE typename Vec<T>::type add_input_grad_term(
    typename Vec<T>::type acc, typename Vec<T>::type w,
    typename Vec<T>::type x, typename Vec<T>::type g,
    typename Vec<T>::type ng, typename Vec<T>::type one,
    typename Vec<T>::type mone) {
  using V = typename Vec<T>::type;
  if constexpr (kSign) {
    return add_sign_times<T>(acc, w, x, g, ng, one);
  } else {
    const V d = w - x;
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
    return acc + g * input_grad_rule_avx512<T, false, kRange>(d, one, mone);
#elif ADDER_ISA_X86 && ADDER_VEC_BYTES == 32
    static_assert(!kRange, "vrangeps needs AVX-512");
    if constexpr (std::is_same_v<T, float>)
      return acc + g * (V)_mm256_max_ps(
                           (__m256)mone, _mm256_min_ps((__m256)one, (__m256)d));
    else
      return acc + g * (V)_mm256_max_pd(
                           (__m256d)mone,
                           _mm256_min_pd((__m256d)one, (__m256d)d));
#else
    static_assert(!kRange, "vrangeps needs AVX-512");
    V c = d > one ? one : d;
    c = c < mone ? mone : c;
    return acc + g * c;
#endif
  }
}

// x - *w, *w broadcast: on AVX-512 the subtract reads it as an embedded
// broadcast (see add_where_broadcast_greater: GCC 12 leaves it a separate
// vbroadcastss, FP pipe time on Zen 4).
template <typename T>
ADDER_INLINE typename Vec<T>::type sub_broadcast(typename Vec<T>::type x,
                                                 const T* w) {
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
  typename Vec<T>::type d;
  if constexpr (std::is_same_v<T, float>)
    __asm__("vsubps %1%{1to16%}, %2, %0" : "=v"(d) : "m"(*w), "v"(x));
  else
    __asm__("vsubpd %1%{1to8%}, %2, %0" : "=v"(d) : "m"(*w), "v"(x));
  return d;
#else
  return x - vsplat(*w);
#endif
}

// add_input_grad_term with the filter value *w broadcast. AVX-512: from
// nd = x - w (sub_broadcast) as acc - g * G(nd), G being odd (sign with 0
// at ties and NaN, the clamp, NaN kept): the same values, one FMA each,
// without the separate broadcast (12-row tile, Zen 4: docs/benchmarks.md,
// session 27).
template <typename T, bool kSign, bool kRange = false>
ADDER_INLINE typename Vec<T>::type add_input_grad_term_broadcast(
    typename Vec<T>::type acc, const T* w, typename Vec<T>::type x,
    typename Vec<T>::type g, typename Vec<T>::type ng,
    typename Vec<T>::type one, typename Vec<T>::type mone) {
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
  (void)ng;
  return acc - g * input_grad_rule_avx512<T, kSign, kRange>(
                       sub_broadcast<T>(x, w), one, mone);
#else
  return add_input_grad_term<T, kSign, kRange>(acc, vsplat(*w), x, g, ng, one,
                                               mone);
#endif
}

// Whether p[0, n) are all finite: v * 0 is 0 for a finite v, NaN for inf
// and NaN (the hardtanh input gradient's range clamp needs finite values).
template <typename T>
inline bool all_finite_impl(const T* p, int64_t n) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::width;
  V acc = {};
  int64_t i = 0;
  for (; i + W <= n; i += W) acc += vload<T>(p + i) * T(0);
  T sum = 0;
  for (int j = 0; j < W; ++j) sum += acc[j];
  for (; i < n; ++i) sum += p[i] * T(0);
  return sum == 0;
}

// The baseline build computes in the baseline ISA's 16-byte vectors (SSE2,
// NEON), two for each of AVX2's 32-byte ones, so its tiles cover the same
// lanes: GCC lowers a compare or select on vectors wider than the target's
// to scalar code (32-byte vectors on SSE2 had run 8 minss a min).
constexpr int kVecScale = kVecBytes == 16 ? 2 : 1;
// Tile sizes: MR rows (filters / input rows) x NV vectors of columns. The
// forward's NR = NV * width is 16 floats on every ISA (the driver packs
// panels of that width): 5 x 2 ymm (10 accumulators + 6 live registers of
// 16) or 5 x 1 zmm (AVX-512; 5 x 1 ran at 42 G terms/s a core against 34-36
// for 5-9 x 2 zmm in a standalone loop, docs/benchmarks.md).
constexpr int kFwdMR = 5, kFwdNV = (kVecBytes == 64 ? 1 : 2) * kVecScale;
// The exact input-gradient tile: 4 rows (AVX2: no spills) or 12 (AVX-512,
// 32 registers: 24-30 against 20-27 G terms/s a core with 4-8 rows). The
// row loops are unrolled fully (`unroll 16`): a partly unrolled loop keeps
// its accumulators in memory.
constexpr int kBwdMR = kVecBytes == 64 ? 12 : 4;
// Input gradient: the hardtanh rule keeps 8 (x, acc) pairs; the sign rule
// needs more temporaries per pair and runs faster with 4 (no spills). One
// zmm of columns for both on AVX-512.
template <bool kSign>
constexpr int bwd_nv() {
  return kSign || kVecBytes == 64 ? 1 : 2 * kVecScale;
}
constexpr int64_t kKC = 256;  // K block of the forward (panel in L1/L2)
// K block of the implicit forward: its NR x KC input values are KC
// unaligned rows (2 cache lines each), to stay in L1 across the filters.
constexpr int64_t kImplicitKC = 128;

template <typename T>
constexpr int fwd_nr() { return kFwdNV * Vec<T>::width; }
// The forward by filters (forward_fvec_tile): MP positions x NV vectors of
// filters (AVX-512 7 x 2 zmm, AVX2 5 x 2 ymm: 14 / 10 accumulators), K in
// blocks whose NF-filter slice (32 KiB / 16 KiB for float) stays in L1
// across the position tiles. AVX-512 in 256-bit vectors (half_width_tiles):
// the same NF filters as 4 ymm, kFvecMPHalf = 5 positions (20
// accumulators; 4 and 6 positions ran slower, session 23). AVX2 had 6
// positions, 17 live vectors with the min forms' constant 2 or the direct
// form's mask: GCC 12 kept two accumulators in memory, a load and a store
// each a term; 5 positions took 0.62-0.82x its time on ResNet-50's 3x3
// layers of 128-512 filters (Zen 3, session 32; 6 with the 2 read from
// memory by asm, 0.76-0.85x: a load each FMA).
constexpr int kFvecNV = 2 * kVecScale, kFvecMP = kVecBytes == 64 ? 7 : 5;
constexpr int kFvecMPHalf = 5;
// forward_by_filters sizes its scratch rows by kFvecMP tiles.
static_assert(kFvecMPHalf <= kFvecMP, "half-width tiles outgrow the rows");
constexpr int64_t kFvecKC = 256;
template <typename T>
constexpr int fvec_nf() { return kFvecNV * Vec<T>::width; }
constexpr int fvec_mp() { return kFvecMP; }
template <typename T, bool kSign>
constexpr int bwd_nr() { return bwd_nv<kSign>() * Vec<T>::width; }

// One MR x NR output tile over a K-block; w rows are ldw apart, rows beyond
// `rows` are never read.
//
// Direct form (kMin = false): out[i][j] (-)= sum_k |w[i][k] - panel[k][j]|:
// subtract, clear the sign bit, add (3 vector ops a MAC).
//
// Min form: |x - w| = x + w - 2 min(x, w), so
//   -sum_k |w - x| = sum_k 2 min(w, x) - sum_k x - sum_k w,
// and the tile only accumulates out[i][j] (+)= sum_k 2 min(w, x): one min
// and one more instruction a MAC; the caller subtracts the sums. Only for
// finite values (inf - inf would give NaN). kMinFma: an FMA of 2 min(w, x),
// for cores that run min on other pipes than FMA (Intel's add ports;
// the AMD machine of session 2 ran it at its FMA tile's rate). kMinAdd: an
// add of min(w, x), doubled at the end (the same values: doubling is exact),
// for AMD Zen 1, which runs min on its two FMA pipes and adds on two others
// (min and FMA 1 ymm a cycle together there, min and add 2; the ResNet-50
// forward 1.33x conv's time against 1.96-2.06x, session 19).
enum FwdForm : int { kDirect = 0, kMinFma, kMinAdd };
// Calls f(std::integral_constant<int, form>) with the form a tile takes.
template <typename F>
ADDER_INLINE void with_form(bool use_min, bool min_add, F&& f) {
  if (!use_min)
    f(std::integral_constant<int, kDirect>());
  else if (min_add)
    f(std::integral_constant<int, kMinAdd>());
  else
    f(std::integral_constant<int, kMinFma>());
}
// Calls f(std::integral_constant<int, bytes>) with the vector bytes a
// forward tile computes in: the ISA's, or 32 with AVX-512 where
// half_width_tiles() says so (AMD Zen 4: forward_tile).
template <typename F>
ADDER_INLINE void with_tile_bytes(F&& f) {
  if constexpr (kVecBytes == 64)
    if (half_width_tiles()) return f(std::integral_constant<int, 32>());
  f(std::integral_constant<int, kVecBytes>());
}
// Where the tile's k-th row of NR patch values is: a packed panel
// (consecutive rows NR apart) or, in the implicit stride-1 path, the padded
// input itself (row k at base + off[k]).
template <typename T>
struct PackedRows {
  const T* panel;
  ADDER_INLINE const T* operator()(int64_t k) const {
    return panel + k * fwd_nr<T>();
  }
};
template <typename T>
struct OffsetRows {
  const T* base;
  const int64_t* off;
  ADDER_INLINE const T* operator()(int64_t k) const { return base + off[k]; }
};

// Filters: rows ldw apart, or (kInterleaved) one MR-row tile stored
// [k][MR], one contiguous stream (rows of a big K are 4 KiB-multiples apart
// and would share L1 sets). VB: the bytes of the vectors it computes in,
// NR (the panel width) / (VB / sizeof(T)) of them a row.
template <typename T, int MR, int kForm, typename Rows, bool kInterleaved,
          int VB>
ADDER_INLINE void forward_tile_vb(int64_t kc, const T* w, int64_t ldw,
                                  Rows panel, T* out, int64_t ldo, int rows,
                                  int cols, bool first) {
  using V = typename Vec<T, VB>::type;
  constexpr int W = Vec<T, VB>::width, NR = kFwdNV * Vec<T>::width;
  constexpr int NV = NR / W;
  V acc[MR][NV];
  zero_tile(acc);
  const T* wr[MR];
  for (int i = 0; i < MR; ++i)
    wr[i] = kInterleaved ? w + i : w + std::min(i, rows - 1) * ldw;
  constexpr int64_t kStep = kInterleaved ? MR : 1;
  const V two = vsplat<T, VB>(2);
  for (int64_t k = 0; k < kc; ++k) {
    V x[NV];
    const T* xk = panel(k);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) x[v] = vload<T, VB>(xk + v * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const V wi = vsplat<T, VB>(wr[i][k * kStep]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        if (kForm == kMinFma)
          acc[i][v] += vmin_finite<T, VB>(wi, x[v]) * two;
        else if (kForm == kMinAdd)
          acc[i][v] += vmin_finite<T, VB>(wi, x[v]);
        else
          acc[i][v] += vabs<T, VB>(wi - x[v]);
      }
    }
  }
  const T sign = kForm == kMinAdd ? T(2) : kForm == kMinFma ? T(1) : T(-1);
  for (int i = 0; i < rows; ++i) {
    T tmp[NR];
    for (int v = 0; v < NV; ++v) vstore<T, VB>(tmp + v * W, acc[i][v]);
    T* o = out + i * ldo;
    if (first)
      for (int j = 0; j < cols; ++j) o[j] = sign * tmp[j];
    else
      for (int j = 0; j < cols; ++j) o[j] += sign * tmp[j];
  }
}

// One tile in the ISA's vectors, or with AVX-512 where half_width_tiles()
// says so (AMD Zen 4) in 256-bit ones: the same sums in the same order, so
// the same values. Zen 4 runs a 512-bit op as two 256-bit halves, and its
// 512-bit broadcast from memory takes FP pipe time that the 256-bit one
// (a load) does not: a standalone 5-filter tile ran 30 G MAC/s a core with
// 5 x 1 zmm against 49-55 with 5 x 2 ymm (peak 58; tools/cpu_tile_rates.cpp,
// docs/benchmarks.md, session 22).
template <typename T, int MR, int kForm, typename Rows,
          bool kInterleaved = false>
ADDER_INLINE void forward_tile(int64_t kc, const T* w, int64_t ldw,
                               Rows panel, T* out, int64_t ldo, int rows,
                               int cols, bool first) {
  with_tile_bytes([&](auto vb) {
    forward_tile_vb<T, MR, kForm, Rows, kInterleaved, decltype(vb)::value>(
        kc, w, ldw, panel, out, ldo, rows, cols, first);
  });
}

// The rows < MR filters past a layer's last full tile (rows K apart), as
// one tile of that many rows: one-row tiles run a single chain of
// dependent accumulations per column vector, latency-bound (4 single rows
// cost 11% of ResNet-50's 64-filter layer, against 60% for its 12 tiles).
template <typename T, int kForm, typename Rows = PackedRows<T>>
ADDER_INLINE void forward_tail_tile(int rows, int64_t kc, const T* w,
                                    int64_t K, Rows panel, T* out,
                                    int64_t ldo, bool first) {
  constexpr int NR = fwd_nr<T>();
  switch (rows) {
    case 1:
      forward_tile<T, 1, kForm, Rows>(kc, w, K, panel, out, ldo, 1, NR, first);
      break;
    case 2:
      forward_tile<T, 2, kForm, Rows>(kc, w, K, panel, out, ldo, 2, NR, first);
      break;
    case 3:
      forward_tile<T, 3, kForm, Rows>(kc, w, K, panel, out, ldo, 3, NR, first);
      break;
    default:
      forward_tile<T, 4, kForm, Rows>(kc, w, K, panel, out, ldo, 4, NR, first);
  }
}

// dst[j * MR + i] = v[i][j] for the W lanes j of MR vectors: MR vector
// stores of MR-lane interleaves, each built from two-vector shuffles of
// the pairs (v0, v1), (v2, v3), ... under masks (constant indices once
// unrolled: vpermt2ps on AVX-512). Storing lanes one at a time had cost
// MR * W scalar stores a step, port-bound (12% of the 512-filter 7x7
// layer's forward went to packing its 9.4 MB of filters).
template <typename T, int MR>
ADDER_INLINE void store_interleaved(const typename Vec<T>::type (&v)[MR],
                                    T* dst) {
  using V = typename Vec<T>::type;
  using M = typename Vec<T>::mask;
  constexpr int W = Vec<T>::width;
#pragma GCC unroll 16
  for (int o = 0; o < MR; ++o) {
    V r = {};
#pragma GCC unroll 16
    for (int a = 0; a < MR; a += 2) {
      const int b = a + 1 < MR ? a + 1 : a;
      M idx = {}, sel = {};
#pragma GCC unroll 64
      for (int q = 0; q < W; ++q) {
        const int p = o * W + q, i = p % MR, k = p / MR;
        idx[q] = i == b ? W + k : k;
        sel[q] = i == a || i == b ? -1 : 0;
      }
#if defined(__clang__)
      // clang has no __builtin_shuffle (two vectors under a mask vector):
      // the same lanes one at a time.
      for (int q = 0; q < W; ++q)
        if (sel[q]) r[q] = idx[q] < W ? v[a][idx[q]] : v[b][idx[q] - W];
#else
      r = sel ? __builtin_shuffle(v[a], v[b], idx) : r;
#endif
    }
    std::memcpy(dst + o * W, &r, sizeof(r));
  }
}

// The forward's filter layout: filter t of group g starts at (g * cout_g
// + t) * K as in the weight tensor, but each full tile of MR filters is
// interleaved [k][MR] (one contiguous stream for the micro-kernel instead
// of MR rows K apart, which share L1 sets where K * 4 is a multiple of
// 4 KiB); the cout_g % MR filters past the last tile stay rows. Writes
// ROWS filters from t0 (a tile: ROWS = MR; else 1) minus the per-row shift
// (null: none), and each one's sum of the written values to wsum (vector
// partial sums over 128 values, added up lane-wise in double).
template <typename T, int ROWS>
inline void pack_filter_rows(const T* w, const T* row_shift, int64_t K,
                             int64_t t0, T* wpk, T* wsum) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::width;
  const V zero = {};
  T* dst = wpk + t0 * K;
  const T* src = w + t0 * K;
  double total[ROWS] = {}, lane_total[ROWS][W] = {};
  for (int64_t k0 = 0; k0 < K; k0 += 128) {
    const int64_t k1 = std::min(K, k0 + 128);
    V part[ROWS];
    T rest[ROWS] = {};
    for (int i = 0; i < ROWS; ++i) part[i] = zero;
    int64_t k = k0;
    for (; k + W <= k1; k += W) {
      const V sh = row_shift ? vload(row_shift + k) : zero;
      V v[ROWS];
#pragma GCC unroll 16
      for (int i = 0; i < ROWS; ++i) {
        v[i] = vload(src + i * K + k) - sh;
        part[i] += v[i];
      }
      if (ROWS == 1)
        std::memcpy(dst + k, &v[0], sizeof(V));
      else
        store_interleaved<T, ROWS>(v, dst + k * ROWS);
    }
    for (; k < k1; ++k)
      for (int i = 0; i < ROWS; ++i) {
        const T v = src[i * K + k] - (row_shift ? row_shift[k] : T(0));
        dst[k * ROWS + i] = v;
        rest[i] += v;
      }
    // Lane-wise into double (a vector convert and add; a horizontal sum
    // per block had cost a tenth of the packing).
    for (int i = 0; i < ROWS; ++i) {
      T lanes[W];
      std::memcpy(lanes, &part[i], sizeof(lanes));
      for (int j = 0; j < W; ++j) lane_total[i][j] += lanes[j];
      total[i] += rest[i];
    }
  }
  for (int i = 0; i < ROWS; ++i) {
    for (int j = 0; j < W; ++j) total[i] += lane_total[i][j];
    wsum[t0 + i] = (T)total[i];
  }
}

// Item `item` of group g in that layout: a full tile, or past the tiles a
// single filter. row_shift: per group and patch row, null for none.
template <typename T>
inline void pack_filters_impl(const T* w, const T* row_shift,
                              const Adder2dShape& s, int64_t g, int64_t item,
                              T* wpk, T* wsum) {
  constexpr int MR = kFwdMR;
  const int64_t K = s.k(), cout_g = s.cout_g(), tiles = cout_g / MR;
  const T* rs = row_shift ? row_shift + g * K : nullptr;
  if (item < tiles)
    pack_filter_rows<T, MR>(w, rs, K, g * cout_g + item * MR, wpk, wsum);
  else
    pack_filter_rows<T, 1>(w, rs, K, g * cout_g + tiles * MR + item - tiles,
                           wpk, wsum);
}

// Packs positions [l0, l0 + m) of sample n, group g, into columns
// [q, q + m) of `panels` (panel p at panels + p * K * NR, [K][NR]):
// X_col(k, l) - shift_k (padding taps: -shift_k; shift: per patch row of
// each group, null for none). Walks output rows so that the valid input
// columns of a row are one strided run, and copies runs (split only at
// panel edges) instead of single values: per-value index arithmetic used to
// cost more than the arithmetic of the 16-filter layers.
template <typename T>
inline void pack_patches(const T* x, const T* shift, const Adder2dShape& s,
                         int64_t n, int64_t g, int64_t l0, int64_t m,
                         T* panels, int64_t q_start) {
  constexpr int NR = fwd_nr<T>();
  const int64_t K = s.k(), taps = s.taps(), q_end = q_start + m;
  const T* xg = x + (n * s.c + g * s.cin_g()) * s.h * s.w;
  const int64_t oh0 = l0 / s.wout, ow0 = l0 % s.wout;
  // A pointwise layer's patch row is the channel's plane itself: the
  // positions are one run (per-row runs left scalar tails at every row
  // end: 28-wide rows are 16 + 12 values).
  const bool pointwise = s.kh == 1 && s.kw == 1 && s.sh == 1 &&
                         s.sw == 1 && s.ph == 0 && s.pw == 0;
  // Per tap: its input offsets and the output columns ow whose input
  // column ow * sw + dj is inside [0, W), worked out once, not per patch
  // row k (their divisions were most of the packing of small maps).
  struct Tap {
    int64_t di, dj, ow_lo, ow_hi;
  };
  std::vector<Tap> tp(taps);
  for (int64_t tap = 0; tap < taps; ++tap) {
    const int64_t di = (tap / s.kw) * s.dh - s.ph;
    const int64_t dj = (tap % s.kw) * s.dw - s.pw;
    const int64_t lo = std::min(s.wout, dj >= 0 ? 0 : (-dj + s.sw - 1) / s.sw);
    const int64_t hi = std::max(lo, std::min(s.wout, s.w - dj > 0 ? (s.w - dj - 1) / s.sw + 1 : 0));
    tp[tap] = {di, dj, lo, hi};
  }
  for (int64_t k = 0; k < K; ++k) {
    const int64_t c = k / taps;
    const Tap& t = tp[k - c * taps];
    const T* plane = xg + c * s.h * s.w;
    const T ck = shift ? shift[g * K + k] : T(0);
    T* const base = panels + k * NR;
    int64_t q = q_start;  // next packed column
    // Writes r values at columns q..: src[i * sw] - ck, or fill.
    auto put = [&](int64_t r_all, const T* src, T fill) {
      while (r_all > 0) {
        const int64_t p = q / NR, j = q - p * NR;
        const int64_t r = std::min<int64_t>(r_all, NR - j);
        T* d = base + p * K * NR + j;
        if (src == nullptr)
          for (int64_t i = 0; i < r; ++i) d[i] = fill;
        else if (s.sw == 1)
          for (int64_t i = 0; i < r; ++i) d[i] = src[i] - ck;
        else
          for (int64_t i = 0; i < r; ++i) d[i] = src[i * s.sw] - ck;
        if (src != nullptr) src += r * s.sw;
        q += r;
        r_all -= r;
      }
    };
    if (pointwise) {
      put(m, plane + l0, T(0));
      continue;
    }
    for (int64_t oh = oh0; q < q_end; ++oh) {
      const int64_t first = oh == oh0 ? ow0 : 0;
      const int64_t last = std::min(s.wout, first + (q_end - q));  // exclusive
      const int64_t hi = oh * s.sh + t.di;
      if (hi < 0 || hi >= s.h) {
        put(last - first, nullptr, -ck);
        continue;
      }
      const T* row = plane + hi * s.w + t.dj;
      const int64_t a = std::max(first, t.ow_lo);
      const int64_t b = std::max(a, std::min(last, t.ow_hi));
      put(a - first, nullptr, -ck);
      put(b - a, row + a * s.sw, T(0));
      put(last - b, nullptr, -ck);
    }
  }
}

// Packs panels [p0, p1) of group g, whose column q holds position q of the
// group's N * L positions (sample q / L, position q % L), into `panels`
// (panel p0 first); columns past N * L are zero. Then each panel's column
// sums (xsum, from column p0 * NR on, summed in double) and whether the min
// form may run on it (use_min: finite sums and `min_ok`, i.e. finite
// filters; otherwise the direct form).
template <typename T>
inline void pack_panel_range(const T* x, const T* shift, const Adder2dShape& s,
                             int64_t g, int64_t p0, int64_t p1, bool min_ok,
                             T* panels, T* xsum, uint8_t* use_min) {
  constexpr int NR = fwd_nr<T>();
  const int64_t K = s.k(), L = s.l(), P = s.n * L;
  const int64_t q0 = p0 * NR, q1 = std::min(P, p1 * NR);
  for (int64_t q = q0; q < q1;) {
    const int64_t n = q / L, l = q % L, m = std::min(L - l, q1 - q);
    pack_patches(x, shift, s, n, g, l, m, panels, q - q0);
    q += m;
  }
  if (q1 < p1 * NR) {  // the last panel's columns past N * L
    T* last = panels + (p1 - 1 - p0) * K * NR;
    const int j0 = (int)(q1 - (p1 - 1) * NR);
    for (int64_t k = 0; k < K; ++k)
      std::fill(last + k * NR + j0, last + (k + 1) * NR, T(0));
  }
  for (int64_t p = 0; p < p1 - p0; ++p) {
    // Two rows a step into two sums: one chain of dependent double adds
    // ran at the add's latency (a tenth of the 1x1 layers' packing).
    double acc[2][NR] = {};
    const T* panel = panels + p * K * NR;
    int64_t k = 0;
    for (; k + 1 < K; k += 2)
      for (int j = 0; j < NR; ++j) {
        acc[0][j] += panel[k * NR + j];
        acc[1][j] += panel[(k + 1) * NR + j];
      }
    for (; k < K; ++k)
      for (int j = 0; j < NR; ++j) acc[0][j] += panel[k * NR + j];
    bool ok = min_ok;
    for (int j = 0; j < NR; ++j) {
      acc[0][j] += acc[1][j];
      xsum[p * NR + j] = (T)acc[0][j];
      ok = ok && std::isfinite(acc[0][j]);  // inf/NaN: direct form
    }
    use_min[p] = ok;
  }
}

// Filters [t0, t1) of group g (t0 a multiple of kFwdMR) over packed panels
// [p0, p1) (panels, xsum and use_min start at panel p0, as pack_panel_range
// writes them): K blocks outermost, then panels, then filter tiles, so a
// panel's K block (kKC x NR values) stays in L1 while the filter tiles of
// the block (in L2) stream past it, MR values a step against NR.
// Accumulates in yc ((t1 - t0) rows of ldc = (p1 - p0) * NR), then writes y
// minus the patch and filter sums.
// wpk, wsum: the filters as pack_filters_impl lays them out, their sums.
template <typename T>
inline void forward_panels_impl(const T* panels, const T* xsum,
                                const uint8_t* use_min, const T* wpk,
                                const T* wsum, T* y,
                                const Adder2dShape& s, int64_t g, int64_t t0,
                                int64_t t1, int64_t p0, int64_t p1, T* yc) {
  constexpr int NR = fwd_nr<T>(), MR = kFwdMR;
  const int64_t K = s.k(), L = s.l(), P = s.n * L, cout_g = s.cout_g();
  const int64_t ldc = (p1 - p0) * NR, tiles = cout_g / MR;
  const int64_t t_full = std::min(t1, tiles * MR);
  const bool adds = min_form_adds();
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    for (int64_t p = 0; p < p1 - p0; ++p) {
      const PackedRows<T> rows{panels + p * K * NR + k0 * NR};
      with_form(use_min[p], adds, [&](auto form) {
        constexpr int F = decltype(form)::value;
        for (int64_t t = t0; t < t_full; t += MR)
          forward_tile<T, MR, F, PackedRows<T>, true>(
              kc, wpk + (g * cout_g + t) * K + k0 * MR, 0, rows,
              yc + (t - t0) * ldc + p * NR, ldc, MR, NR, k0 == 0);
        if (t_full < t1)
          forward_tail_tile<T, F>((int)(t1 - t_full), kc,
                                  wpk + (g * cout_g + t_full) * K + k0, K,
                                  rows, yc + (t_full - t0) * ldc + p * NR,
                                  ldc, k0 == 0);
      });
    }
  }
  // To y: runs of columns within one sample (and one panel, unless every
  // panel takes the same form).
  const T* ws = wsum ? wsum + g * cout_g : nullptr;
  const int64_t q1 = std::min(P, p1 * NR);
  bool uniform = true;
  for (int64_t p = 1; p < p1 - p0; ++p) uniform = uniform && use_min[p] == use_min[0];
  for (int64_t q = p0 * NR; q < q1;) {
    const int64_t n = q / L, l = q % L, p = q / NR - p0;
    const int64_t m = std::min({L - l, q1 - q,
                                uniform ? q1 - q : (p + p0 + 1) * NR - q});
    const int64_t j0 = q - p0 * NR;
    for (int64_t t = t0; t < t1; ++t) {
      T* o = y + (n * s.cout + g * cout_g + t) * L + l;
      const T* a = yc + (t - t0) * ldc + j0;
      if (use_min[p])
        for (int64_t j = 0; j < m; ++j) o[j] = a[j] - xsum[j0 + j] - ws[t];
      else
        for (int64_t j = 0; j < m; ++j) o[j] = a[j];
    }
    q += m;
  }
}

// The forward by filters: the vectors hold NF filters instead of NF
// positions, each input value broadcast against them, so a tile computes
// any MP positions, the valid outputs only (the in-place tiles compute the
// padded pitch: 7x7 maps 1.31x their outputs, 14x14 1.14x). wv: the tile's
// K x NF filters, row k at wv + k * NF; xr[i]: position i's patch origin
// (row k at xr[i] + off[k]); out: MP rows of NF, (+)= sum_k 2 min(w, x)
// (the min forms, as in forward_tile) or -sum_k |w - x| (kDirect). VB:
// the bytes of the vectors it computes in (as forward_tile_vb's).
template <typename T, int MP, int kForm, int VB = kVecBytes>
ADDER_INLINE void forward_fvec_tile(int64_t kc, const T* wv,
                                    const int64_t* off, const T* const* xr,
                                    T* out, bool first) {
  using V = typename Vec<T, VB>::type;
  constexpr int W = Vec<T, VB>::width, NF = fvec_nf<T>(), NV = NF / W;
  V acc[MP][NV];
  zero_tile(acc);
  const V two = vsplat<T, VB>(2);  // forms as in forward_tile
  for (int64_t k = 0; k < kc; ++k) {
    V wk[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) wk[v] = vload<T, VB>(wv + k * NF + v * W);
    const int64_t o = off[k];
#pragma GCC unroll 16
    for (int i = 0; i < MP; ++i) {
      const V xi = vsplat<T, VB>(xr[i][o]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        if (kForm == kMinFma)
          acc[i][v] += vmin_finite<T, VB>(wk[v], xi) * two;
        else if (kForm == kMinAdd)
          acc[i][v] += vmin_finite<T, VB>(wk[v], xi);
        else
          acc[i][v] += vabs<T, VB>(wk[v] - xi);
      }
    }
  }
  const V sign = vsplat<T, VB>(kForm == kMinAdd ? T(2)
                               : kForm == kMinFma ? T(1)
                                                  : T(-1));
  for (int i = 0; i < MP; ++i)
    for (int v = 0; v < NV; ++v) {
      T* o = out + i * NF + v * W;
      const V r =
          first ? acc[i][v] * sign : vload<T, VB>(o) + acc[i][v] * sign;
      vstore<T, VB>(o, r);
    }
}

#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 32
// dst + j * ld (32-byte aligned rows) = lane j of 8 rows, load(t, h)
// giving lanes [4h, 4h + 4) of row t: halves paired by inserts, then 4 x 4
// transposes within the 128-bit lanes (no lane-crossing shuffle:
// vperm2f128 is 8 uops on Zen 1).
template <typename Load>
ADDER_INLINE void transpose8(Load load, float* dst, int64_t ld) {
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    __m256 a[4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t)
      a[t] = _mm256_insertf128_ps(_mm256_castps128_ps256(load(t, h)),
                                  load(t + 4, h), 1);
    const __m256 t0 = _mm256_unpacklo_ps(a[0], a[1]);
    const __m256 t1 = _mm256_unpackhi_ps(a[0], a[1]);
    const __m256 t2 = _mm256_unpacklo_ps(a[2], a[3]);
    const __m256 t3 = _mm256_unpackhi_ps(a[2], a[3]);
    _mm256_store_ps(dst + (4 * h) * ld, _mm256_shuffle_ps(t0, t2, 0x44));
    _mm256_store_ps(dst + (4 * h + 1) * ld, _mm256_shuffle_ps(t0, t2, 0xee));
    _mm256_store_ps(dst + (4 * h + 2) * ld, _mm256_shuffle_ps(t1, t3, 0x44));
    _mm256_store_ps(dst + (4 * h + 3) * ld, _mm256_shuffle_ps(t1, t3, 0xee));
  }
}
#endif

#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
// dst + j * ld (64-byte aligned rows) = lane j of r[0..16): a 16 x 16
// transpose in registers (4 rounds of 16 shuffles). (GCC 12 warns that the
// shuffles' undefined pass-through operand may be uninitialized.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
ADDER_INLINE void transpose16(const __m512 (&r)[16], float* dst, int64_t ld) {
  __m512 a[16], b[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const __m512d t0 = _mm512_castps_pd(a[4 * i]);
    const __m512d t1 = _mm512_castps_pd(a[4 * i + 1]);
    const __m512d t2 = _mm512_castps_pd(a[4 * i + 2]);
    const __m512d t3 = _mm512_castps_pd(a[4 * i + 3]);
    b[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i)
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m) {
      a[8 * i + m] =
          _mm512_shuffle_f32x4(b[8 * i + m], b[8 * i + 4 + m], 0x88);
      a[8 * i + 4 + m] =
          _mm512_shuffle_f32x4(b[8 * i + m], b[8 * i + 4 + m], 0xdd);
    }
#pragma GCC unroll 8
  for (int m = 0; m < 8; ++m) {
    _mm512_store_ps(dst + m * ld, _mm512_shuffle_f32x4(a[m], a[8 + m], 0x88));
    _mm512_store_ps(dst + (m + 8) * ld,
                    _mm512_shuffle_f32x4(a[m], a[8 + m], 0xdd));
  }
}
#pragma GCC diagnostic pop
#endif

// Filter tile `ft` of group g as [K][NF] minus the per-row shift (null:
// none), zeros past the group's filters, and each filter's sum to wsum
// (the tile's: wsum[i] for its filter i).
// Row k of the tile is value k of its filters, gathered (K apart; the
// driver keeps NF x K within int32) and summed lane-wise. (A
// scalar running sum had made this packing 40% of the 512-filter 7x7
// layer's arithmetic; storing each filter's vectors lane by lane into the
// rows, 19%.) kPlus (the sparse forward's tiles, NV vectors wide): rows of
// max(w, 0) and sums of |w| instead. Rows [kb, ke) (kb a multiple of 16):
// wv holds those, the sums are theirs.
template <typename T, int NV = kFvecNV, bool kPlus = false>
inline void pack_filters_fvec_impl(const T* w, const T* row_shift,
                                   const Adder2dShape& s, int64_t g,
                                   int64_t ft, T* wv, T* wsum, int64_t kb,
                                   int64_t ke) {
  using V = typename Vec<T>::type;
  using M = typename Vec<T>::mask;
  constexpr int W = Vec<T>::width, NF = NV * W;
  // Sums: 4 rows in T, then in double, half a vector at a time.
  typedef T H __attribute__((vector_size(kVecBytes / 2)));
  typedef double D __attribute__((vector_size(W / 2 * sizeof(double))));
  const int64_t K = ke, cout_g = s.cout_g(), f0 = ft * NF;
  const int nf = (int)std::min<int64_t>(NF, cout_g - f0);
  const T* rs = row_shift ? row_shift + g * K : nullptr;
  const T* src = w + (g * cout_g + f0) * s.k();
  alignas(64) int32_t idx[NF];
  M valid[NV];
  for (int i = 0; i < NF; ++i) {
    idx[i] = (int32_t)(i * s.k());
    valid[i / W][i % W] = i < nf ? -1 : 0;
  }
  D total[NV][2] = {};
#if ADDER_ISA_X86
  // x86 float: W values of W filters load as rows and transpose in
  // registers (transpose16, transpose8), W rows of the tile at a time,
  // instead of a gather per row (AVX-512, packing 512 filters of 4608
  // values: gathers were ~20% of the sparse forward at 7x7). With AVX2 the
  // gathers read 8 rows K apart a row of the tile; at K = 1024 or 2048 (4
  // KB apart) those all fall in one L1 set: on a Zen 3 core the packing of
  // 512 filters of 2048 values took more time than the sparse forward's
  // arithmetic (docs/benchmarks.md, session 31).
  constexpr bool kRows = std::is_same_v<T, float>;
  alignas(64) float block[kRows ? NV : 1][W][W];
#endif
  for (int64_t k0 = kb; k0 < K; k0 += 4) {
#if ADDER_ISA_X86
    if constexpr (kRows) {
      if (k0 % W == 0) {
        const int nk = (int)std::min<int64_t>(W, K - k0);
#if ADDER_VEC_BYTES == 64
        const __mmask16 in = nk == 16 ? 0xffff : (1u << nk) - 1;
        for (int v = 0; v < NV; ++v) {
          __m512 r[16];
#pragma GCC unroll 16
          for (int t = 0; t < 16; ++t)
            r[t] = v * W + t < nf
                       ? _mm512_maskz_loadu_ps(
                             in, src + (v * W + t) * s.k() + k0)
                       : _mm512_setzero_ps();
          transpose16(r, &block[v][0][0], 16);
        }
#else
        for (int v = 0; v < NV; ++v) {
          // Lanes [4h, 4h + 4) of filter v * 8 + t's values k0, k0 + 1, ...
          const auto load = [&](int t, int h) {
            const int f = v * W + t, n = nk - 4 * h;
            if (f >= nf || n <= 0) return _mm_setzero_ps();
            const float* p = src + f * s.k() + k0 + 4 * h;
            if (n >= 4) return _mm_loadu_ps(p);
            alignas(16) float tail[4] = {};
            std::memcpy(tail, p, n * sizeof(float));
            return _mm_load_ps(tail);
          };
          transpose8(load, &block[v][0][0], 8);
        }
#endif
      }
    }
#endif
    V part[NV] = {};
    for (int64_t k = k0; k < std::min(K, k0 + 4); ++k) {
      const V shift = vsplat(rs ? rs[k] : T(0));
      for (int v = 0; v < NV; ++v) {
        V raw;
#if ADDER_ISA_X86
        if constexpr (kRows)
          raw = vload((const T*)block[v][k % W]);
        else
#endif
          raw = vgather(src + k, idx + v * W, nf - v * W);
        // Lanes past nf: 0 - shift, masked back to 0.
        const V x = (V)((M)(raw - shift) & valid[v]);
        if (kPlus) {
          const V zero = {};
          const V plus = x > zero ? x : zero;
          vstore<T>(wv + (k - kb) * NF + v * W, plus);
          part[v] += vabs<T>(x);
        } else {
          vstore<T>(wv + (k - kb) * NF + v * W, x);
          part[v] += x;
        }
      }
    }
    for (int v = 0; v < NV; ++v) {
      H half[2];
      std::memcpy(half, &part[v], sizeof(V));
      total[v][0] += __builtin_convertvector(half[0], D);
      total[v][1] += __builtin_convertvector(half[1], D);
    }
  }
  for (int i = 0; i < nf; ++i)
    wsum[i] = (T)total[i / W][i % W / (W / 2)][i % (W / 2)];
}

// forward_fvec_tile over positions [p0, p0 + np) of a group, MP at a
// time, one K block (kc terms at off, wv its rows).
template <typename T, int MP, int VB>
inline void forward_fvec_positions(const T* xg, const int64_t* pos,
                                   int64_t p0, int64_t np,
                                   const int64_t* off, const T* wv,
                                   int64_t kc, bool use_min, bool adds,
                                   bool first, T* yc) {
  constexpr int NF = fvec_nf<T>();
  with_form(use_min, adds, [&](auto form) {
    for (int64_t p = 0; p < np; p += MP) {
      const T* xr[MP];
      for (int i = 0; i < MP; ++i)
        xr[i] = xg + pos[p0 + std::min<int64_t>(p + i, np - 1)];
      forward_fvec_tile<T, MP, decltype(form)::value, VB>(
          kc, wv, off, xr, yc + p * NF, first);
    }
  });
}

// Filter tile wv ([K][NF]) over positions [p0, p1) of a group: position q's
// patch origin at xg + pos[q]. K blocks outermost, then position tiles:
// with AVX-512 in 256-bit vectors where half_width_tiles() says so (AMD
// Zen 4: a 512-bit broadcast costs FP pipe time there, forward_tile), the
// same sums in the same order. yc: ceil((p1 - p0) / MP) * MP rows of NF
// (kFvecMPHalf < MP: the half-width tiles stay within them).
template <typename T>
inline void forward_fvec_impl(const T* xg, const int64_t* pos, int64_t p0,
                              int64_t p1, const int64_t* off, const T* wv,
                              int64_t K, bool use_min, T* yc) {
  constexpr int NF = fvec_nf<T>();
  const int64_t np = p1 - p0;
  const bool adds = min_form_adds();
  for (int64_t k0 = 0; k0 < K; k0 += kFvecKC) {
    const int64_t kc = std::min(kFvecKC, K - k0);
    with_tile_bytes([&](auto vb) {
      constexpr int VB = decltype(vb)::value;
      constexpr int MP = VB == kVecBytes ? kFvecMP : kFvecMPHalf;
      forward_fvec_positions<T, MP, VB>(xg, pos, p0, np, off + k0,
                                        wv + k0 * NF, kc, use_min, adds,
                                        k0 == 0, yc);
    });
  }
}

// The forward by rows, for maps of few positions (forward_by_rows):
// output (filter i, position j) = -sum_k |w_i[k] - x_j[k]| over filter i's
// row (the weight as it is: K values in a row) and position j's patch row
// (packed [P][K]), vectors along k summed across lanes at the end. So
// neither the filters are laid out per call (on a 2x2 map that packing had
// cost as much as the arithmetic) nor is a panel of NR positions computed
// for 8 valid ones. The direct form (3 instructions a MAC against the min
// form's 2: a subtract, an and, and the add, in the x86 builds as an FMA
// of an exact 1, which runs on the multiply pipes and leaves the add pipes
// to the subtract) needs no shift: exact for any finite input, inf/NaN as
// the reference.
// kRowsMF filters x kRowsMQ positions a tile (16 accumulators of 32
// registers; 8 of 16).
constexpr int kRowsMF = 4, kRowsMQ = kVecBytes == 64 ? 4 : 2;
// Filters [0, nf) (rows K apart from w) x positions [0, nq) (rows K apart
// from xp): output (i, j) to y[i * ldf + yoff[j]].
template <typename T>
inline void forward_rows_impl(const T* w, const T* xp, int64_t K, int64_t nf,
                              int64_t nq, T* y, int64_t ldf,
                              const int64_t* yoff) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::width, MF = kRowsMF, MQ = kRowsMQ;
  const int64_t kv = K / W * W;
  const V one = opaque_one(vsplat<T>(1));
  for (int64_t f = 0; f < nf; f += MF)
    for (int64_t q = 0; q < nq; q += MQ) {
      // Rows past nf / nq repeat the last one (their sums are dropped).
      const T* wr[MF];
      const T* xr[MQ];
      for (int i = 0; i < MF; ++i) wr[i] = w + std::min(f + i, nf - 1) * K;
      for (int j = 0; j < MQ; ++j) xr[j] = xp + std::min(q + j, nq - 1) * K;
      V acc[MF][MQ];
      zero_tile(acc);
      for (int64_t k = 0; k < kv; k += W) {
        V a[MF], b[MQ];
#pragma GCC unroll 8
        for (int i = 0; i < MF; ++i) a[i] = vload<T>(wr[i] + k);
#pragma GCC unroll 8
        for (int j = 0; j < MQ; ++j) b[j] = vload<T>(xr[j] + k);
#pragma GCC unroll 8
        for (int i = 0; i < MF; ++i)
#pragma GCC unroll 8
          for (int j = 0; j < MQ; ++j)
            acc[i][j] += vabs<T>(a[i] - b[j]) * one;
      }
      for (int i = 0; i < std::min<int64_t>(MF, nf - f); ++i)
        for (int j = 0; j < std::min<int64_t>(MQ, nq - q); ++j) {
          T t = 0;
          for (int l = 0; l < W; ++l) t += acc[i][j][l];
          for (int64_t k = kv; k < K; ++k) t += std::abs(wr[i][k] - xr[j][k]);
          y[(f + i) * ldf + yoff[q + j]] = -t;
        }
    }
}

// The input gradient by rows, for maps of few positions
// (backward_input_by_rows): dcol(j, k) = sum_f g(j, f) G(w_f[k] - x_j[k])
// over the group's filters f, for position j's patch row x_j and a block
// of k: vectors along k, the filters read as they are (row f: K values in
// a row), g(j, f) broadcast; G as in backward_input_tile (the sign rule
// exact, ties 0). kRowsBwdMQ positions x kRowsBwdNV vectors a tile (their
// patch values and sums in registers: 16 + 2 + 4 of 32; 8 + 2 + 2 of 16).
constexpr int kRowsBwdMQ = kVecBytes == 64 ? 4 : 2, kRowsBwdNV = 2;
// One tile: NV vectors from column k of positions qj[0..MQ) (rows past the
// first mq repeat the last; their sums are dropped), into dcol rows q...
template <typename T, bool kSign, int NV, bool kRange = false>
ADDER_INLINE void backward_input_rows_tile(const T* w, int64_t ldw,
                                           int64_t nf, const T* go,
                                           int64_t ldg, const T* xc,
                                           int64_t ldx, const int64_t* qj,
                                           int64_t q, int mq, int64_t k,
                                           T* dcol) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::width, MQ = kRowsBwdMQ;
  const V one = opaque_one(vsplat<T>(1)), mone = vsplat<T>(-1);
  V xv[MQ][NV], acc[MQ][NV];
  zero_tile(acc);
  for (int j = 0; j < MQ; ++j)
    for (int v = 0; v < NV; ++v)
      xv[j][v] = vload<T>(xc + qj[j] * ldx + k + v * W);
  for (int64_t f = 0; f < nf; ++f) {
    V wv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) wv[v] = vload<T>(w + f * ldw + k + v * W);
#pragma GCC unroll 8
    for (int j = 0; j < MQ; ++j) {
      const V gv = vsplat<T>(go[qj[j] + f * ldg]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        acc[j][v] = add_input_grad_term<T, kSign, kRange>(
            acc[j][v], wv[v], xv[j][v], gv, -gv, one, mone);
    }
  }
  for (int j = 0; j < mq; ++j)
    for (int v = 0; v < NV; ++v)
      vstore<T>(dcol + (q + j) * ldx + k + v * W, acc[j][v]);
}
// Positions [0, nq) (patch rows ldx apart from xc, each kb values; g of
// position j, filter f at go[j + f * ldg]), filters [0, nf) (row f at
// w + f * ldw, its k-th value for the block's k): dcol rows ldx apart.
// range: the hardtanh rule clamps by vrangeps (AVX-512; the caller found
// the inputs and filters finite).
template <typename T, bool kSign>
inline void backward_input_rows_impl(const T* w, int64_t ldw, int64_t nf,
                                     const T* go, int64_t ldg, const T* xc,
                                     int64_t ldx, int64_t nq, int64_t kb,
                                     T* dcol, bool range) {
  constexpr int W = Vec<T>::width, MQ = kRowsBwdMQ, NV = kRowsBwdNV;
  const int64_t kv = kb / (NV * W) * (NV * W), kw = kb / W * W;
  (void)range;  // read by the AVX-512 build only
  for (int64_t q = 0; q < nq; q += MQ) {
    int64_t qj[MQ];
    for (int j = 0; j < MQ; ++j) qj[j] = std::min(q + j, nq - 1);
    const int mq = (int)std::min<int64_t>(MQ, nq - q);
    // Tiles of NV vectors, then of one, then the last kb - kw values one
    // at a time.
    auto tiles = [&](auto by_range) {
      constexpr bool kRange = decltype(by_range)::value;
      for (int64_t k = 0; k < kv; k += NV * W)
        backward_input_rows_tile<T, kSign, NV, kRange>(
            w, ldw, nf, go, ldg, xc, ldx, qj, q, mq, k, dcol);
      for (int64_t k = kv; k < kw; k += W)
        backward_input_rows_tile<T, kSign, 1, kRange>(
            w, ldw, nf, go, ldg, xc, ldx, qj, q, mq, k, dcol);
    };
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
    if (!kSign && range)
      tiles(std::true_type());
    else
#endif
      tiles(std::false_type());
    for (int j = 0; j < mq; ++j)
      for (int64_t k = kw; k < kb; ++k) {
        const T x = xc[(q + j) * ldx + k];
        T sum = 0;
        for (int64_t f = 0; f < nf; ++f) {
          const T d = w[f * ldw + k] - x, g = go[q + j + f * ldg];
          if (kSign)
            sum += d > 0 ? g : d < 0 ? -g : T(0);
          else
            sum += g * (d > 1 ? T(1) : d < -1 ? T(-1) : d);
        }
        dcol[(q + j) * ldx + k] = sum;
      }
  }
}

// The forward on non-negative inputs (ReLU outputs), skipping their zeros.
// Where x = 0, |x - w| = |w|; where x > 0, |x - w| - |w| = x - 2 min(x, w+)
// (w+ = max(w, 0)). So
//   -sum_k |x_k - w_k| = 2 sum_{x_k != 0} min(x_k, w+_k) - sum_k x_k
//                        - sum_k |w_k|,
// and only the nonzero inputs cost arithmetic (a min and an add each, as
// the min form's terms). A position's nonzero inputs of a K block are
// listed once (list_nonzero) and run against every filter tile: vectors
// hold NF filters (kSparseNV vectors), the listed input value broadcast.
// KC rows of a tile's filters (16 KiB float on AVX-512) and the positions'
// lists stay in L1. kSparseNV is the same in every build (the driver
// instantiates the packing with generic's), so the baseline build's tile
// is half AVX2's (it runs only when forced, for tests).
constexpr int kSparseNV = 4;
constexpr int64_t kSparseKC = 64;
template <typename T>
constexpr int sparse_nf() { return kSparseNV * Vec<T>::width; }

#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
// The listing's AVX-512 steps. Lanes the sparse forward cannot take:
// negative, inf or NaN.
ADDER_INLINE __mmask16 not_nonnegative_finite(__m512 v) {
  const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  return (__mmask16)~(
      _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ) &
      _mm512_cmp_ps_mask(v, inf, _CMP_LT_OQ));
}
// Appends the nonzero values among `lanes` of v (rows k, k + 1, ...) to
// vals and their filter rows' offsets (row * NF) to rows, 16 values a
// store; returns how many.
template <int NF>
ADDER_INLINE int append_nonzero(__m512 v, __mmask16 lanes, int64_t k,
                                float* vals, int32_t* rows) {
  const __m512i ids = _mm512_add_epi32(
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                           11, 12, 13, 14, 15),
                         _mm512_set1_epi32(NF)),
      _mm512_set1_epi32((int32_t)(k * NF)));
  const __mmask16 nz =
      _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ) & lanes;
  _mm512_storeu_ps(vals, _mm512_maskz_compress_ps(nz, v));
  _mm512_storeu_si512((void*)rows, _mm512_maskz_compress_epi32(nz, ids));
  return __builtin_popcount(nz);
}
#elif ADDER_ISA_X86
// The same steps on AVX2, 8 lanes, as bits of an unsigned. AVX2 has no
// compress: a table of each lane mask's set lanes drives a permute.
ADDER_INLINE unsigned not_nonnegative_finite(__m256 v) {
  const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  const __m256 ok =
      _mm256_and_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GE_OQ),
                    _mm256_cmp_ps(v, inf, _CMP_LT_OQ));
  return ~(unsigned)_mm256_movemask_ps(ok) & 0xffu;
}
// Byte j of lanes[m]: the lane of m's j-th set bit (2 KiB, stays in L1).
struct CompressLanes {
  uint64_t lanes[256];
  constexpr CompressLanes() : lanes() {
    for (int m = 0; m < 256; ++m)
      for (int lane = 0, j = 0; lane < 8; ++lane)
        if (m >> lane & 1) lanes[m] |= (uint64_t)lane << (8 * j++);
  }
};
inline constexpr CompressLanes kCompressLanes{};
template <int NF>
ADDER_INLINE int append_nonzero(__m256 v, unsigned lanes, int64_t k,
                                float* vals, int32_t* rows) {
  const __m256i ids = _mm256_add_epi32(
      _mm256_setr_epi32(0, NF, 2 * NF, 3 * NF, 4 * NF, 5 * NF, 6 * NF,
                        7 * NF),
      _mm256_set1_epi32((int32_t)(k * NF)));
  const unsigned nz = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(
                          v, _mm256_setzero_ps(), _CMP_NEQ_UQ)) &
                      lanes;
  const __m256i perm = _mm256_cvtepu8_epi32(
      _mm_cvtsi64_si128((long long)kCompressLanes.lanes[nz]));
  _mm256_storeu_ps(vals, _mm256_permutevar8x32_ps(v, perm));
  _mm256_storeu_si256((__m256i*)rows, _mm256_permutevar8x32_epi32(ids, perm));
  return __builtin_popcount(nz);
}
#endif

// Lists the nonzero values of rows [k0, k0 + kc) of a patch (row k at
// xr[off[k]]) into vals, with each one's filter row offset in the block,
// (k - k0) * NF, into rows; returns how many. Both buffers take kc + 16 values (whole-vector
// stores). Sets `bad` if a value is negative, inf or NaN (the identity
// above needs x >= 0 and finite sums): the caller then takes another path.
template <typename T>
ADDER_INLINE int64_t list_nonzero(const T* xr, const int32_t* off, int64_t k0,
                                  int64_t kc, T* vals, int32_t* rows,
                                  bool& bad) {
  constexpr int NF = sparse_nf<T>();
  int64_t count = 0;
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
  if constexpr (std::is_same_v<T, float>) {
    // 16 at a time: gather, compare into masks, compress the nonzero lanes
    // (lanes past n gather 0).
    __mmask16 wrong = 0;
    for (int64_t j = 0; j < kc; j += 16) {
      const int n = (int)std::min<int64_t>(16, kc - j);
      const __mmask16 lanes = n == 16 ? 0xffff : (1u << n) - 1;
      const __m512 v = (__m512)vgather(xr, off + k0 + j, n);
      wrong |= not_nonnegative_finite(v);
      count += append_nonzero<NF>(v, lanes, j, vals + count,
                                  rows + count);
    }
    bad |= wrong != 0;
    return count;
  }
#elif ADDER_ISA_X86
  if constexpr (std::is_same_v<T, float>) {
    // 8 at a time: loads (AVX2's gather is slow on Zen), masks, permute.
    unsigned wrong = 0;
    for (int64_t j = 0; j < kc; j += 8) {
      const int n = (int)std::min<int64_t>(8, kc - j);
      const int32_t* o = off + k0 + j;
      const __m256 v =
          n == 8 ? _mm256_setr_ps(xr[o[0]], xr[o[1]], xr[o[2]], xr[o[3]],
                                  xr[o[4]], xr[o[5]], xr[o[6]], xr[o[7]])
                 : (__m256)vgather(xr, o, n);
      wrong |= not_nonnegative_finite(v);
      count += append_nonzero<NF>(v, n == 8 ? 0xffu : (1u << n) - 1, j,
                                  vals + count, rows + count);
    }
    bad |= wrong != 0;
    return count;
  }
#endif
  bool wrong = false;
  for (int64_t k = k0; k < k0 + kc; ++k) {
    const T v = xr[off[k]];
    wrong |= !(v >= T(0) && v < std::numeric_limits<T>::infinity());
    vals[count] = v;
    rows[count] = (int32_t)((k - k0) * NF);
    count += v != T(0);
  }
  bad |= wrong;
  return count;
}

// list_nonzero for npos positions that lie within 16 consecutive values of
// the input planes: position m's patch origin at base + lane[m] (lanes
// ascending, < 16), its list at vals / rows + m * ld, its count to
// count[m]. AVX-512 float: each row's 16 values load as one vector and 16
// rows transpose in registers, where a gather per position and 16 rows
// cost several times as much (AVX2: four 8 x 8 transposes). Reads stop at
// the last listed lane; lanes of no listed position are not checked.
template <typename T>
ADDER_INLINE void list_nonzero_block(const T* base, const int32_t* off,
                                     int64_t k0, int64_t kc, const int* lane,
                                     int npos, T* vals, int32_t* rows,
                                     int64_t ld, int64_t* count, bool& bad) {
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
  if constexpr (std::is_same_v<T, float>) {
    constexpr int NF = sparse_nf<T>();
    __mmask16 listed = 0;
    for (int m = 0; m < npos; ++m) {
      listed |= (__mmask16)(1u << lane[m]);
      count[m] = 0;
    }
    // Lanes up to the last listed one: no read past the last position's
    // value (the input itself, unpadded, for pointwise layers).
    const __mmask16 reach = (__mmask16)((2u << lane[npos - 1]) - 1);
    __mmask16 wrong = 0;
    for (int64_t kb = k0; kb < k0 + kc; kb += 16) {
      const int nk = (int)std::min<int64_t>(16, k0 + kc - kb);
      const __mmask16 rows_in = nk == 16 ? 0xffff : (1u << nk) - 1;
      __m512 r[16];
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) {
        r[t] = t < nk ? _mm512_maskz_loadu_ps(reach, base + off[kb + t])
                      : _mm512_setzero_ps();
        wrong |= listed & not_nonnegative_finite(r[t]);
      }
      alignas(64) float c[16][16];
      transpose16(r, &c[0][0], 16);
      for (int m = 0; m < npos; ++m)
        count[m] += append_nonzero<NF>(_mm512_load_ps(c[lane[m]]), rows_in,
                                       kb - k0, vals + m * ld + count[m],
                                       rows + m * ld + count[m]);
    }
    bad |= wrong != 0;
    return;
  }
#elif ADDER_ISA_X86
  if constexpr (std::is_same_v<T, float>) {
    // AVX2: the 16 x 16 block as four 8 x 8 transposes of 4-value loads.
    constexpr int NF = sparse_nf<T>();
    for (int m = 0; m < npos; ++m) count[m] = 0;
    // Reads stop at the last listed lane, as above: whole, masked or no
    // loads for each 4 lanes.
    const unsigned reach = (2u << lane[npos - 1]) - 1;
    __m128i part[4];
    unsigned whole = 0, some = 0;
    for (int q = 0; q < 4; ++q) {
      const unsigned bits = reach >> (4 * q) & 0xfu;
      whole |= (bits == 0xfu) << q;
      some |= (bits != 0) << q;
      part[q] = _mm_setr_epi32(-(int)(bits & 1), -(int)(bits >> 1 & 1),
                               -(int)(bits >> 2 & 1), -(int)(bits >> 3 & 1));
    }
    unsigned wrong = 0;
    for (int64_t kb = k0; kb < k0 + kc; kb += 16) {
      const int nk = (int)std::min<int64_t>(16, k0 + kc - kb);
      const unsigned rows_in = nk == 16 ? 0xffffu : (1u << nk) - 1;
      alignas(64) float c[16][16];
#pragma GCC unroll 2
      for (int rb = 0; rb < 2; ++rb)
#pragma GCC unroll 2
        for (int lb = 0; lb < 2; ++lb) {
          const auto load = [&](int t, int h) {
            const int q = 2 * lb + h, row = 8 * rb + t;
            if (row >= nk || !(some >> q & 1)) return _mm_setzero_ps();
            const float* p = base + off[kb + row] + 4 * q;
            return whole >> q & 1 ? _mm_loadu_ps(p) : _mm_maskload_ps(p, part[q]);
          };
          transpose8(load, &c[8 * lb][8 * rb], 16);
        }
      for (int m = 0; m < npos; ++m) {
        const __m256 lo = _mm256_load_ps(c[lane[m]]);
        const __m256 hi = _mm256_load_ps(c[lane[m]] + 8);
        wrong |= not_nonnegative_finite(lo) | not_nonnegative_finite(hi);
        count[m] += append_nonzero<NF>(lo, rows_in & 0xffu, kb - k0,
                                       vals + m * ld + count[m],
                                       rows + m * ld + count[m]);
        count[m] += append_nonzero<NF>(hi, rows_in >> 8, kb - k0 + 8,
                                       vals + m * ld + count[m],
                                       rows + m * ld + count[m]);
      }
    }
    bad |= wrong != 0;
    return;
  }
#endif
  for (int m = 0; m < npos; ++m)
    count[m] = list_nonzero(base + lane[m], off, k0, kc, vals + m * ld,
                            rows + m * ld, bad);
}

// For each of np positions i: out + i * ldo, [0, NF) += sum over its
// count[i] listed values (vals / rows + i * ld) of min(value, wv row),
// wv being a K block of a tile's filters w+ (its row k at wv + k * NF).
// Two sets of accumulators (even and odd entries): 8 independent adds in
// flight. All positions in one call, so the tile's K block stays in L1
// between them. kFma: the adds as FMAs by an opaque 1 (the same values:
// min * 1 is exact), off the pipes that run min on AMD Zen 4 (its FADD
// pipes, with the adds: min+add 1 pair a cycle, min+FMA 1.8; ResNet-50's
// layers at 60% zeros summed 0.84-0.93x the time by adds, session 23);
// not where the min form adds (AMD Zen 1 runs min on its FMA pipes).
template <typename T, bool kFma>
inline void sparse_accumulate_form(const T* vals, const int32_t* rows,
                                   const int64_t* count, int64_t np,
                                   int64_t ld, const T* wv, T* out,
                                   int64_t ldo) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::width, NV = kSparseNV;
  const V one = opaque_one(vsplat<T>(1));
  const auto add_min = [&](V& acc, V w, V x) {
    if (kFma)
      acc += vmin_finite<T>(w, x) * one;
    else
      acc += vmin_finite<T>(w, x);
  };
  for (int64_t p = 0; p < np; ++p) {
    const T* pv = vals + p * ld;
    const int32_t* pr = rows + p * ld;
    const int64_t n = count[p];
    V a[NV] = {}, b[NV] = {};
    int64_t i = 0;
    for (; i + 1 < n; i += 2) {
      const V x0 = vsplat(pv[i]), x1 = vsplat(pv[i + 1]);
      const T* w0 = wv + pr[i];
      const T* w1 = wv + pr[i + 1];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        add_min(a[v], vload(w0 + v * W), x0);
        add_min(b[v], vload(w1 + v * W), x1);
      }
    }
    if (i < n) {
      const V x0 = vsplat(pv[i]);
      const T* w0 = wv + pr[i];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) add_min(a[v], vload(w0 + v * W), x0);
    }
    T* o = out + p * ldo;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const V r = vload(o + v * W) + (a[v] + b[v]);
      vstore<T>(o + v * W, r);
    }
  }
}
template <typename T>
inline void sparse_accumulate(const T* vals, const int32_t* rows,
                              const int64_t* count, int64_t np, int64_t ld,
                              const T* wv, T* out, int64_t ldo) {
  if (min_form_adds())
    sparse_accumulate_form<T, false>(vals, rows, count, np, ld, wv, out, ldo);
  else
    sparse_accumulate_form<T, true>(vals, rows, count, np, ld, wv, out, ldo);
}

// The sparse forward's outputs of np positions x nf filters of a tile:
// y[ybase[i] + j * L] = 2 acc[i * lda + j] - xq[i] - ws[j]. AVX-512 float:
// 16 positions whose outputs are consecutive (one sample) x 16 filters at a
// time through a register transpose, stores of 16 consecutive outputs
// (AVX2: 8 x 8); else one value at a time.
template <typename T>
inline void sparse_store(const T* acc, int64_t lda, int64_t np, int64_t nf,
                         const T* xq, const T* ws, const int64_t* ybase,
                         T* y, int64_t L) {
  const auto scalar = [&](int64_t i0, int64_t i1) {
    for (int64_t j = 0; j < nf; ++j)
      for (int64_t i = i0; i < i1; ++i)
        y[ybase[i] + j * L] = 2 * acc[i * lda + j] - xq[i] - ws[j];
  };
  int64_t i0 = 0;
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
  if constexpr (std::is_same_v<T, float>) {
    const __m512 two = _mm512_set1_ps(2.f);
    for (; i0 + 16 <= np; i0 += 16) {
      if (ybase[i0 + 15] != ybase[i0] + 15) {  // spans two samples
        scalar(i0, i0 + 16);
        continue;
      }
      for (int64_t j0 = 0; j0 < nf; j0 += 16) {
        const int nj = (int)std::min<int64_t>(16, nf - j0);
        const __mmask16 in = nj == 16 ? 0xffff : (1u << nj) - 1;
        const __m512 wsv = _mm512_maskz_loadu_ps(in, ws + j0);
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i)
          r[i] = _mm512_sub_ps(
              _mm512_fmsub_ps(
                  two, _mm512_maskz_loadu_ps(in, acc + (i0 + i) * lda + j0),
                  _mm512_set1_ps(xq[i0 + i])),
              wsv);
        alignas(64) float c[16][16];
        transpose16(r, &c[0][0], 16);
        for (int j = 0; j < nj; ++j)
          _mm512_storeu_ps(y + ybase[i0] + (j0 + j) * L,
                           _mm512_load_ps(c[j]));
      }
    }
  }
#elif ADDER_ISA_X86
  if constexpr (std::is_same_v<T, float>) {
    // AVX2: 8 positions x 8 filters at a time (a tile's accumulators and
    // filter sums hold whole vectors of filters, zeros past nf).
    const __m256 two = _mm256_set1_ps(2.f);
    for (; i0 + 8 <= np; i0 += 8) {
      if (ybase[i0 + 7] != ybase[i0] + 7) {  // spans two samples
        scalar(i0, i0 + 8);
        continue;
      }
      for (int64_t j0 = 0; j0 < nf; j0 += 8) {
        const __m256 wsv = _mm256_loadu_ps(ws + j0);
        __m256 r[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i)
          r[i] = _mm256_sub_ps(
              _mm256_fmsub_ps(two, _mm256_loadu_ps(acc + (i0 + i) * lda + j0),
                              _mm256_set1_ps(xq[i0 + i])),
              wsv);
        alignas(32) float c[8][8];
        transpose8(
            [&](int t, int h) {
              return h ? _mm256_extractf128_ps(r[t], 1)
                       : _mm256_castps256_ps128(r[t]);
            },
            &c[0][0], 8);
        const int nj = (int)std::min<int64_t>(8, nf - j0);
        for (int j = 0; j < nj; ++j)
          _mm256_storeu_ps(y + ybase[i0] + (j0 + j) * L, _mm256_load_ps(c[j]));
      }
    }
  }
#endif
  scalar(i0, np);
}

// Forward without packing ("implicit GEMM"). xp: the input minus
// per-channel shifts, zero-padded, each channel split into stride phases
// (see forward_implicit): [N][C][sh * sw][hq][wq], padding holding -shift;
// with stride 1 a channel is its padded plane. Output positions are walked
// in the phase pitch, lp = oh * wq + ow, and tap (i, j) of output (oh, ow)
// is at lp + toff[tap] in its phase, so the NR positions of a tile read NR
// consecutive values of every (channel, tap) row at xp + off[k] + lp
// (off[k] = channel * cstride + toff[tap]); columns ow >= wout are computed
// and dropped. csum: per (n, g) and xp value of a channel, the sum over the
// group's channels (double), from which the patch sums are tap sums.
// wpk/wsum: the shifted filters as pack_filters_impl lays them out and
// their sums (wsum null: direct form, filters unshifted).
// yc: cout_g x (lc rounded up to NR) scratch.
template <typename T>
inline void forward_implicit_chunk_impl(const T* xp, const int64_t* off,
                                        const int64_t* toff,
                                        const double* csum, const T* wpk,
                                        const T* wsum, T* y,
                                        const Adder2dShape& s, int64_t cstride,
                                        int64_t wq, int64_t n, int64_t g,
                                        int64_t lp0, int64_t lc, T* yc) {
  constexpr int NR = fwd_nr<T>();
  const int64_t K = s.k(), cout_g = s.cout_g(), taps = s.taps();
  const int64_t np = (lc + NR - 1) / NR, ld = np * NR;
  const T* xg = xp + (n * s.c + g * s.cin_g()) * cstride + lp0;
  const double* cs = csum + (n * s.groups + g) * cstride + lp0;
  // Patch sums of the chunk's valid positions; any inf/NaN: direct form.
  T* xsum = yc + cout_g * ld;
  bool use_min = wsum != nullptr;
  for (int64_t q = 0; q < lc; ++q) {
    double acc = 0;
    for (int64_t tap = 0; tap < taps; ++tap) acc += cs[q + toff[tap]];
    xsum[q] = (T)acc;
    if ((lp0 + q) % wq < s.wout) use_min = use_min && std::isfinite(acc);
  }
  const T* wg = wpk + g * cout_g * K;
  auto tile_mr = &forward_tile<T, kFwdMR, kDirect, OffsetRows<T>, true>;
  auto tail = &forward_tail_tile<T, kDirect, OffsetRows<T>>;
  with_form(use_min, min_form_adds(), [&](auto form) {
    constexpr int F = decltype(form)::value;
    tile_mr = &forward_tile<T, kFwdMR, F, OffsetRows<T>, true>;
    tail = &forward_tail_tile<T, F, OffsetRows<T>>;
  });
  // K blocks outermost, then positions, then filters: a tile's NR x KC
  // input values stay in L1 while every filter block passes over them.
  for (int64_t k0 = 0; k0 < K; k0 += kImplicitKC) {
    const int64_t kc = std::min(kImplicitKC, K - k0);
    for (int64_t p = 0; p < np; ++p) {
      const OffsetRows<T> rows{xg + p * NR, off + k0};
      int64_t t = 0;
      for (; t + kFwdMR <= cout_g; t += kFwdMR)
        tile_mr(kc, wg + t * K + k0 * kFwdMR, 0, rows, yc + t * ld + p * NR,
                ld, kFwdMR, NR, k0 == 0);
      if (t < cout_g)
        tail((int)(cout_g - t), kc, wg + t * K + k0, K, rows,
             yc + t * ld + p * NR, ld, k0 == 0);
    }
  }
  // Valid columns to y, minus the patch and filter sums.
  const T* ws = wsum ? wsum + g * cout_g : nullptr;
  T* yg = y + (n * s.cout + g * cout_g) * s.l();
  for (int64_t q = 0; q < lc;) {
    const int64_t lp = lp0 + q, oh = lp / wq, ow = lp % wq;
    const int64_t run = std::min(lc - q, wq - ow);  // to the end of the row
    const int64_t m = std::max<int64_t>(0, std::min(run, s.wout - ow));
    for (int64_t t = 0; t < cout_g; ++t) {
      T* o = yg + t * s.l() + oh * s.wout + ow;
      const T* a = yc + t * ld + q;
      if (use_min)
        for (int64_t j = 0; j < m; ++j) o[j] = a[j] - xsum[q + j] - ws[t];
      else
        for (int64_t j = 0; j < m; ++j) o[j] = a[j];
    }
    q += run;
  }
}

// acc[i][j] = sum_t g[t][j] * G(wt[k + i][t] - x[i][j]) for one MR x NR tile
// of patch rows k.. and positions (wt: filters transposed to [K][cout_g], so
// each row streams contiguously); rows beyond `rows` repeat the last row and
// are dropped. Sign rule: g, -g or 0 picked by two compares (exact, ties give
// 0) and accumulated by FMA; hardtanh rule: g * clamp(w - x, -1, 1).
//
// The reduction runs over R terms r: g row r at grows(r), filter value of
// tile row i at w[i * ldw + r], patch values of row i at xrows[i].
template <typename T>
struct StridedRows {  // row r at p + r * ld
  const T* p;
  int64_t ld;
  ADDER_INLINE const T* operator()(int64_t r) const { return p + r * ld; }
};
// Each term's add depends on the last (an FMA's latency), so a tile with
// fewer than 4 accumulators (one or two rows: the tails of the row loops,
// a tied channel's rows) keeps kU partial sums a row, terms t, t + 1, ...
// round robin, added at the end (session 26: a 1x1 layer with a tied
// channel or two had spent 14% of its input gradient in one-row tiles).
template <typename T, int MR, bool kSign, typename GRows, bool kRange = false>
ADDER_INLINE void backward_input_tile(int64_t R, const T* wt, int64_t ldw,
                                      GRows grows, const T* const* xrows,
                                      T (*dcol)[bwd_nr<T, kSign>()], int rows) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::width, NV = bwd_nv<kSign>();
  constexpr int kU = MR * NV >= 4 ? 1 : 4 / (MR * NV);
  V acc[kU][MR][NV], xv[MR][NV];
  for (int u = 0; u < kU; ++u) zero_tile(acc[u]);
  const T* wr[MR];
  for (int i = 0; i < MR; ++i) {
    const int row = std::min(i, rows - 1);
    wr[i] = wt + row * ldw;
    for (int v = 0; v < NV; ++v) xv[i][v] = vload(xrows[row] + v * W);
  }
  const V one = opaque_one(vsplat<T>(1)), mone = vsplat<T>(-1);
  auto term = [&](int64_t t, V (&a)[MR][NV]) {
    V gv[NV], ngv[NV];
    const T* gt = grows(t);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      gv[v] = vload(gt + v * W);
      ngv[v] = -gv[v];
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        a[i][v] = add_input_grad_term_broadcast<T, kSign, kRange>(
            a[i][v], wr[i] + t, xv[i][v], gv[v], ngv[v], one, mone);
    }
  };
  int64_t t = 0;
  if constexpr (kU > 1) {
    for (; t + kU <= R; t += kU) {
#pragma GCC unroll 4
      for (int u = 0; u < kU; ++u) term(t + u, acc[u]);
    }
  }
  for (; t < R; ++t) term(t, acc[0]);
  for (int u = 1; u < kU; ++u)
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[0][i][v] += acc[u][i][v];
  for (int i = 0; i < rows; ++i)
    for (int v = 0; v < NV; ++v) vstore<T>(dcol[i] + v * W, acc[0][i][v]);
}

// Exact tiles over `rows` rows (ldw apart in wt, patch rows xrows[i]): full
// kBwdMR tiles, then the rest in tiles of 4, 2, 1 (the AVX-512 chunk loops
// step 6 rows at a time with the sign rule's tie check: a tied channel's 6
// rows had run one row a tile). range: the hardtanh rule clamps by
// vrangeps (AVX-512; the caller found the inputs and filters finite).
template <typename T, bool kSign, typename GRows>
ADDER_INLINE void backward_input_exact_rows(int64_t R, const T* wt,
                                            int64_t ldw, GRows grows,
                                            const T* const* xrows,
                                            T (*dcol)[bwd_nr<T, kSign>()],
                                            int rows, bool range) {
  auto tiles = [&](auto by_range) {
    constexpr bool kRange = decltype(by_range)::value;
    for (int i = 0; i < rows;) {
      const T* w = wt + i * ldw;
      if (rows - i >= kBwdMR) {
        backward_input_tile<T, kBwdMR, kSign, GRows, kRange>(
            R, w, ldw, grows, xrows + i, dcol + i, kBwdMR);
        i += kBwdMR;
      } else if (kBwdMR > 4 && rows - i >= 4) {
        backward_input_tile<T, 4, kSign, GRows, kRange>(
            R, w, ldw, grows, xrows + i, dcol + i, 4);
        i += 4;
      } else if (rows - i >= 2) {
        backward_input_tile<T, 2, kSign, GRows, kRange>(
            R, w, ldw, grows, xrows + i, dcol + i, 2);
        i += 2;
      } else {
        backward_input_tile<T, 1, kSign, GRows, kRange>(
            R, w, ldw, grows, xrows + i, dcol + i, 1);
        i += 1;
      }
    }
  };
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
  if (!kSign && range) return tiles(std::true_type());
#endif
  (void)range;
  tiles(std::false_type());
}

// The sign rule where no filter value equals an input value and nothing is
// NaN (the caller checks, see sign_tie_channels): then sign(w - x) =
// 2 [w > x] - 1, so the tile accumulates only acc[i][j] = sum_r g[r][j]
// [w[i][r] > x[i][j]] (a compare, an and, an add a term, against two
// compares, two blends and an FMA) and the caller forms 2 acc - sum_r g[r][j].
// One vector of columns; more rows than the exact tile fit in registers.
constexpr int kBwdFastMR = 6;
template <typename T, int MR, typename GRows>
ADDER_INLINE void backward_input_sign_fast_tile(int64_t R, const T* wt,
                                                int64_t ldw, GRows grows,
                                                const T* const* xrows,
                                                T (*dcol)[Vec<T>::width],
                                                int rows) {
  using V = typename Vec<T>::type;
  V acc[MR], xv[MR];
  for (int i = 0; i < MR; ++i) acc[i] = V{};
  const T* wr[MR];
  for (int i = 0; i < MR; ++i) {
    const int row = std::min(i, rows - 1);
    wr[i] = wt + row * ldw;
    xv[i] = vload(xrows[row]);
  }
  for (int64_t t = 0; t < R; ++t) {
    const V gv = vload(grows(t));
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
      acc[i] = add_where_broadcast_greater<T>(acc[i], wr[i] + t, xv[i], gv);
  }
  for (int i = 0; i < rows; ++i) vstore<T>(dcol[i], acc[i]);
}

// Fast tiles over `rows` rows (ldw apart in wt, patch rows xrows[i]): full
// tiles, then the rest in tiles of 4, 2, 1.
template <typename T, typename GRows>
ADDER_INLINE void backward_input_sign_fast_rows(int64_t R, const T* wt,
                                                int64_t ldw, GRows grows,
                                                const T* const* xrows,
                                                T (*dcol)[Vec<T>::width],
                                                int rows) {
  for (int i = 0; i < rows;) {
    const T* w = wt + i * ldw;
    if (rows - i >= kBwdFastMR) {
      backward_input_sign_fast_tile<T, kBwdFastMR>(R, w, ldw, grows, xrows + i,
                                                   dcol + i, kBwdFastMR);
      i += kBwdFastMR;
    } else if (rows - i >= 4) {
      backward_input_sign_fast_tile<T, 4>(R, w, ldw, grows, xrows + i,
                                          dcol + i, 4);
      i += 4;
    } else if (rows - i >= 2) {
      backward_input_sign_fast_tile<T, 2>(R, w, ldw, grows, xrows + i,
                                          dcol + i, 2);
      i += 2;
    } else {
      backward_input_sign_fast_tile<T, 1>(R, w, ldw, grows, xrows + i,
                                          dcol + i, 1);
      i += 1;
    }
  }
}

// The sign rule's fast tile by input channels (backward_input_by_channels):
// the vectors hold NC input channels instead of NR positions of one
// channel, each output-gradient value broadcast against them, so a tile
// computes any MP input positions, the valid ones only (the in-place tile
// walks the padded pitch: 7x7 maps 1.29x their positions), and reads one
// broadcast a position and NV filter vectors a term for MP x NV compares
// (the in-place tile: one vector and MR broadcasts for MR). wv: rc terms
// of NC channels' filter values, term r at wv + r * NC; position i's
// output-gradient value of term r at gr[i][goff[r]]; xv: the positions'
// NC input values, MP rows; out: MP rows of NC, (+)= sum_r g [w > x].
// AVX-512: 6 x 2 zmm (12 accumulators, 12 inputs, 2 filter vectors, the
// broadcast); AVX2 3 x 2 ymm.
constexpr int kCvecNV = 2 * kVecScale, kCvecMP = kVecBytes == 64 ? 6 : 3;
constexpr int64_t kCvecRC = 256;  // terms a block: NC x 256 filter values
template <typename T>
constexpr int cvec_nc() { return kCvecNV * Vec<T>::width; }
constexpr int cvec_mp() { return kCvecMP; }
template <typename T, int MP>
ADDER_INLINE void backward_input_cvec_tile(int64_t rc, const T* wv,
                                           const int64_t* goff,
                                           const T* const* gr, const T* xv,
                                           T* out, bool first) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::width, NV = kCvecNV, NC = NV * W;
  V acc[MP][NV], xr[MP][NV];
  zero_tile(acc);
  for (int i = 0; i < MP; ++i)
    for (int v = 0; v < NV; ++v) xr[i][v] = vload(xv + i * NC + v * W);
  for (int64_t r = 0; r < rc; ++r) {
    V wk[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) wk[v] = vload(wv + r * NC + v * W);
    const int64_t o = goff[r];
#pragma GCC unroll 16
    for (int i = 0; i < MP; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        acc[i][v] = add_broadcast_where_greater<T>(acc[i][v], wk[v], xr[i][v],
                                                   gr[i] + o);
    }
  }
  for (int i = 0; i < MP; ++i)
    for (int v = 0; v < NV; ++v) {
      T* o = out + i * NC + v * W;
      const V r = first ? acc[i][v] : vload(o) + acc[i][v];
      vstore<T>(o, r);
    }
}

// One channel block over positions [q0, q1): position q's output gradient
// at gg + gpos[q] (term r at + goff[r]), its NC input values at xt + q *
// NC; wv: the block's R x NC filter values. Term blocks outermost (the
// block's filters stay in L1), then position tiles (the last repeats its
// last position). out: ceil((q1 - q0) / MP) * MP rows of NC.
template <typename T>
inline void backward_input_cvec_impl(const T* gg, const int64_t* gpos,
                                     const T* xt, int64_t q0, int64_t q1,
                                     const int64_t* goff, const T* wv,
                                     int64_t R, T* out) {
  constexpr int MP = kCvecMP, NC = cvec_nc<T>();
  const int64_t np = q1 - q0;
  for (int64_t r0 = 0; r0 < R; r0 += kCvecRC) {
    const int64_t rc = std::min(kCvecRC, R - r0);
    for (int64_t p = 0; p < np; p += MP) {
      const T* gr[MP];
      alignas(64) T xv[MP * NC];
      for (int i = 0; i < MP; ++i) {
        const int64_t q = q0 + std::min<int64_t>(p + i, np - 1);
        gr[i] = gg + gpos[q];
        std::memcpy(xv + i * NC, xt + q * NC, sizeof(T) * NC);
      }
      backward_input_cvec_tile<T, MP>(rc, wv + r0 * NC, goff + r0, gr, xv,
                                      out + p * NC, r0 == 0);
    }
  }
}

// The by-channels layouts of one channel block (nc of NC channels, zeros
// past them): filters w ([cout_g][cin_g][wtaps] of the group, from channel
// c0; the taps used: tap_index[k], k < taps, or null for all) to wv
// [cout_g x taps][NC], each filter's run of nc x taps values gathered a tap
// at a time (one value a channel, wtaps apart); input x ([N][C][HW] from
// the block's first channel, C apart per sample) to xt [N x HW][NC].
template <typename T>
inline void pack_cvec_impl(const T* w, const T* x, int64_t cout_g,
                           int64_t cin_g, int64_t wtaps,
                           const int64_t* tap_index, int64_t taps, int64_t nc,
                           int64_t n, int64_t c, int64_t HW, T* wv, T* xt) {
  constexpr int NC = cvec_nc<T>(), W = Vec<T>::width;
  alignas(64) int32_t idx[NC];
  for (int j = 0; j < NC; ++j) idx[j] = (int32_t)(j * wtaps);
  for (int64_t t = 0; t < cout_g; ++t) {
    const T* src = w + t * cin_g * wtaps;
    T* d = wv + t * taps * NC;
    if (wtaps == 1) {
      std::copy(src, src + nc, d);
      std::fill(d + nc, d + NC, T(0));
      continue;
    }
    for (int64_t k = 0; k < taps; ++k)
      for (int v = 0; v < NC / W; ++v) {
        const T* tap = src + (tap_index ? tap_index[k] : k);
        const auto x = vgather(tap, idx + v * W, (int)nc - v * W);
        std::memcpy(d + k * NC + v * W, &x, sizeof(x));
      }
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t q = 0; q < HW; ++q) {
      T* d = xt + (i * HW + q) * NC;
      const T* src = x + i * c * HW + q;
      for (int64_t j = 0; j < nc; ++j) d[j] = src[j * HW];
      std::fill(d + nc, d + NC, T(0));
    }
}

// The exact sign tile over one (sample, channel) pair of a stride-1 layer,
// for the pairs the by-channels path finds a tie in: positions walked in
// the pitch wg as in backward_input_implicit_chunk_impl (xrow: the pair's
// input values in that pitch, rows x wg plus a tile of slack; wrow: its R
// filter values, term r = t * taps + tap), one row a tile. gpg: the
// sample's padded output gradient of the group; dX to gxc ([rows][cols]).
template <typename T>
inline void backward_input_exact_channel_impl(const T* gpg,
                                              const int64_t* goff, int64_t R,
                                              const T* wrow, const T* xrow,
                                              int64_t rows, int64_t cols,
                                              int64_t wg, T* gxc) {
  constexpr int NR = bwd_nr<T, true>();
  for (int64_t lq = 0; lq < rows * wg; lq += NR) {
    const T* xr[1] = {xrow + lq};
    T dcol[1][NR];
    backward_input_exact_rows<T, true>(
        R, wrow, R, OffsetRows<T>{gpg + lq, goff}, xr, dcol, 1, false);
    for (int j = 0; j < NR; ++j) {
      const int64_t h = (lq + j) / wg, w = (lq + j) % wg;
      if (h < rows && w < cols) gxc[h * cols + w] = dcol[0][j];
    }
  }
}

// The sign rule's tie check (see sign_tie_channels): a value's key (its
// bits, -0 as +0) and its bit in a channel's 2^bits-bit map of filter
// values (bit 0 only for +-0).
template <typename T>
using TieBits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
template <typename T>
ADDER_INLINE TieBits<T> tie_key(T v) {
  TieBits<T> b;
  v = v + T(0);
  std::memcpy(&b, &v, sizeof(b));
  return b;
}
constexpr uint64_t kTieHashMul = 0x9E3779B97F4A7C15ULL;  // Fibonacci hash
template <typename T>
ADDER_INLINE TieBits<T> tie_index(TieBits<T> k, int bits) {
  using B = TieBits<T>;
  const B h = (B)((k * (B)kTieHashMul) >> (sizeof(B) * 8 - bits));
  return h + (B)(h == 0 && k != 0);
}

// Whether v's bit is set in `map` (2^bits bits) or v is NaN.
template <typename T>
ADDER_INLINE bool tie_hit(const uint64_t* map, int bits, T v) {
  const auto i = tie_index<T>(tie_key(v), bits);
  return ((map[i >> 6] >> (i & 63)) & 1) || v != v;
}
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
// tie_index of 16 floats' keys, lane-wise.
ADDER_INLINE __m512i tie_index16(__m512 v, int bits) {
  const __m512i mult = _mm512_set1_epi32((int)(uint32_t)kTieHashMul);
  const __m512i zero = _mm512_setzero_si512();
  const __m512i k = _mm512_castps_si512(_mm512_add_ps(v, _mm512_setzero_ps()));
  const __m512i h = _mm512_srl_epi32(_mm512_mullo_epi32(k, mult),
                                     _mm_cvtsi32_si128(32 - bits));
  const __mmask16 bump =
      _mm512_cmpeq_epi32_mask(h, zero) & _mm512_cmpneq_epi32_mask(k, zero);
  return _mm512_mask_add_epi32(h, bump, h, _mm512_set1_epi32(1));
}
// 16 floats at p against 2^bits-bit maps of 32-bit words: lane i's map
// starts at words + offset[i]. The lanes whose bit is set or that are NaN.
ADDER_INLINE __mmask16 tie_hits16(const float* p, const int* words,
                                  __m512i offset, int bits) {
  const __m512 v = _mm512_loadu_ps(p);
  const __m512i h = tie_index16(v, bits);
  const __m512i w = _mm512_i32gather_epi32(
      _mm512_add_epi32(offset, _mm512_srli_epi32(h, 5)), words, 4);
  const __m512i bit = _mm512_and_si512(h, _mm512_set1_epi32(31));
  return _mm512_test_epi32_mask(_mm512_srlv_epi32(w, bit),
                                _mm512_set1_epi32(1)) |
         _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
}
#endif

// Sets the map bits (2^bits) of `count` values at v; whether one is NaN.
// AVX-512, float: the indices 16 at a time (one at a time, the hash was 7%
// of a strided 256-filter layer's input gradient).
template <typename T>
inline bool tie_insert(uint64_t* map, int bits, const T* v, int64_t count) {
  bool nan = false;
  int64_t r = 0;
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
  if constexpr (std::is_same_v<T, float>) {
    alignas(64) uint32_t idx[16];
    for (; r + 16 <= count; r += 16) {
      const __m512 x = _mm512_loadu_ps(v + r);
      _mm512_store_si512((void*)idx, tie_index16(x, bits));
      nan = nan || _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
      for (int i = 0; i < 16; ++i)
        map[idx[i] >> 6] |= uint64_t(1) << (idx[i] & 63);
    }
  }
#endif
  for (; r < count; ++r) {
    const auto i = tie_index<T>(tie_key(v[r]), bits);
    map[i >> 6] |= uint64_t(1) << (i & 63);
    nan = nan || v[r] != v[r];
  }
  return nan;
}

// The possible ties among n values at p, as masks: bit i of masks[q / 16]
// is set where value q has its bit set in its map or is NaN (a candidate
// the caller confirms). One map (2^bits bits at maps) or, with `lanes`,
// rows of NC values whose lane j belongs to channel j (the by-channels
// layout), channel j's map at maps + j * words (64-bit words). AVX-512,
// float: 16 values a step (hash by vpmulld, map words by a gather, at
// per-lane offsets with `lanes`); AVX2, one map: 8 a step. No branch a
// step: returning at each candidate (about one in 6 steps with 13-bit
// maps) left the gathers' latency exposed, and the scalar check (this scan
// and tie_in's confirmations) had cost 16% of a 64-filter 56x56 layer's
// input gradient on AVX-512.
template <typename T>
inline void tie_masks(const T* p, int64_t n, const uint64_t* maps,
                      int64_t words, int bits, bool lanes, uint16_t* masks) {
  constexpr int NC = cvec_nc<T>();
  std::fill(masks, masks + (n + 15) / 16, uint16_t(0));
  int64_t q = 0;
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
  if constexpr (std::is_same_v<T, float> && NC % 16 == 0) {
    const int* words32 = reinterpret_cast<const int*>(maps);
    const __m512i lane =
        lanes ? _mm512_mullo_epi32(
                    _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                      12, 13, 14, 15),
                    _mm512_set1_epi32((int)(2 * words)))
              : _mm512_setzero_si512();
    for (; q + 16 <= n; q += 16) {
      const __m512i offset = _mm512_add_epi32(
          lane, _mm512_set1_epi32(lanes ? (int)(q % NC * 2 * words) : 0));
      masks[q / 16] = tie_hits16(p + q, words32, offset, bits);
    }
  }
#elif ADDER_ISA_X86
  if constexpr (std::is_same_v<T, float>) {
    const __m256i mult = _mm256_set1_epi32((int)(uint32_t)kTieHashMul);
    const __m256i one = _mm256_set1_epi32(1), zero = _mm256_setzero_si256();
    const __m128i shift = _mm_cvtsi32_si128(32 - bits);
    const int* words32 = reinterpret_cast<const int*>(maps);
    for (; !lanes && q + 8 <= n; q += 8) {
      const __m256 v = _mm256_loadu_ps(p + q);
      const __m256i k =
          _mm256_castps_si256(_mm256_add_ps(v, _mm256_setzero_ps()));
      __m256i h = _mm256_srl_epi32(_mm256_mullo_epi32(k, mult), shift);
      // h += (h == 0 && k != 0): andnot(k == 0, h == 0) is -1 there.
      const __m256i bump = _mm256_andnot_si256(_mm256_cmpeq_epi32(k, zero),
                                               _mm256_cmpeq_epi32(h, zero));
      h = _mm256_sub_epi32(h, bump);
      const __m256i w =
          _mm256_i32gather_epi32(words32, _mm256_srli_epi32(h, 5), 4);
      const __m256i bit = _mm256_and_si256(h, _mm256_set1_epi32(31));
      const __m256i set = _mm256_and_si256(_mm256_srlv_epi32(w, bit), one);
      const unsigned hit =
          _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(set, one))) |
          _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      masks[q / 16] |= uint16_t(hit << (q % 16));
    }
  }
#endif
  for (; q < n; ++q)
    if (tie_hit(maps + (lanes ? q % NC * words : 0), bits, p[q]))
      masks[q / 16] |= uint16_t(1u << (q % 16));
}

// Whether v equals one of f[0..R): confirms tie_masks' candidates (about
// one input value in a hundred is a false positive of the bitmap, each a
// scan of the channel's R filter values). Float: 16 (AVX-512) or 8 (AVX2)
// a compare.
template <typename T>
inline bool tie_in(const T* f, int64_t R, T v) {
  int64_t r = 0;
#if ADDER_ISA_X86 && ADDER_VEC_BYTES == 64
  if constexpr (std::is_same_v<T, float>) {
    const __m512 vv = _mm512_set1_ps(v);
    for (; r + 16 <= R; r += 16)
      if (_mm512_cmp_ps_mask(_mm512_loadu_ps(f + r), vv, _CMP_EQ_OQ))
        return true;
  }
#elif ADDER_ISA_X86
  if constexpr (std::is_same_v<T, float>) {
    const __m256 vv = _mm256_set1_ps(v);
    for (; r + 8 <= R; r += 8)
      if (_mm256_movemask_ps(
              _mm256_cmp_ps(_mm256_loadu_ps(f + r), vv, _CMP_EQ_OQ)))
        return true;
  }
#endif
  return std::find(f + r, f + R, v) != f + R;
}

// dst[q] = sum over the `count` planes of src (`plane` values apart) of
// src[q]: the output gradient of one (sample, group) summed over the
// group's filters, which the sign rule's fast tile needs.
template <typename T>
inline void sum_planes_impl(const T* src, int64_t count, int64_t plane,
                            T* dst) {
  std::copy(src, src + plane, dst);
  for (int64_t t = 1; t < count; ++t)
    for (int64_t q = 0; q < plane; ++q) dst[q] += src[t * plane + q];
}

// One input-gradient task: sample n, group g, input channels [c0, c1) of
// the group. Owns dX(n, g * cin_g + [c0, c1)), so it writes without atomics.
// wt: filters as [groups][K][cout_g]; gtot_all: the (n, g) output
// gradient summed over the filters (sum_over_filters). The tiles
// read the output gradient where it is (NR consecutive positions of each
// filter's plane) or, in the last, partial, panel and where many tiles
// pass over a panel, from a copy in gbuf (cout_g x NR, zero-padded).
//
// tie: as in the in-place path below, one flag per (sample, channel), null
// for no fast tile; rows of a flagged channel take the exact tile. range:
// the hardtanh rule's exact tiles clamp by vrangeps (hardtanh_by_range).
//
// Where a block's NR positions lie in one output row (stride 1 along it)
// and a patch row's tap stays inside the input for all of them, that row
// reads its NR inputs and adds its NR results in place (contiguous), not
// through per-value gathers and scatters (with them, the 256-filter 3x3
// layers' input gradient at 20x20-40x40 took 8-10% longer).
template <typename T, bool kSign>
inline void backward_input_chunk_impl(const T* go, const T* gtot_all,
                                      const T* x, const T* wt,
                                      const uint8_t* tie, T* gx,
                                      const Adder2dShape& s, int64_t n,
                                      int64_t g, int64_t c0, int64_t c1,
                                      T* gbuf, bool range) {
  constexpr int NR = bwd_nr<T, kSign>();
  constexpr int kRows = kSign ? std::max(kBwdMR, kBwdFastMR) : kBwdMR;
  const int64_t K = s.k(), L = s.l(), cout_g = s.cout_g(), T_ = s.taps();
  const int64_t HW = s.h * s.w;
  const T* xg = x + (n * s.c + g * s.cin_g()) * HW;
  T* gxg = gx + (n * s.c + g * s.cin_g()) * HW;
  const T* wg = wt + g * K * cout_g;
  const uint8_t* tie_ng = tie ? tie + n * s.c + g * s.cin_g() : nullptr;
  // 1x1, stride 1, no padding: a position's input offset is the position,
  // and each input value gets exactly one row's result: stored, not added
  // onto zeros.
  const bool flat = s.taps() == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 &&
                    s.pw == 0;
  if (!flat) std::fill(gxg + c0 * HW, gxg + c1 * HW, T(0));
  const int64_t r0 = c0 * T_, r1 = c1 * T_;  // patch rows owned
  // Each owned patch row's channel and tap offsets, once (no divisions in
  // the loops below).
  std::vector<int64_t> row_c(r1 - r0), row_di(r1 - r0), row_dj(r1 - r0);
  for (int64_t k = r0; k < r1; ++k) {
    const int64_t tap = k % T_;
    row_c[k - r0] = k / T_;
    row_di[k - r0] = (tap / s.kw) * s.dh;
    row_dj[k - r0] = (tap % s.kw) * s.dw;
  }
  const int64_t step = kSign && tie_ng ? kBwdFastMR : kBwdMR;
  const T* gog = go + (n * s.cout + g * cout_g) * L;
  // The tiles of a position block read its output gradient from cout_g
  // rows L apart, each of those lines half used: fine for a pass or three,
  // but where more row tiles pass over it a compact copy pays. The copy
  // asks for the next block's lines too (to L2), to arrive while this
  // block's tiles run: its loads had held 14% of a 1x1 layer's samples.
  const bool compact = (r1 - r0) >= 4 * step;
  for (int64_t l0 = 0; l0 < L; l0 += NR) {
    const int cols = (int)std::min<int64_t>(NR, L - l0);
    StridedRows<T> gr{gog + l0, L};
    if (cols < NR) {
      for (int64_t t = 0; t < cout_g; ++t) {
        std::copy(gog + t * L + l0, gog + t * L + L, gbuf + t * NR);
        std::fill(gbuf + t * NR + cols, gbuf + (t + 1) * NR, T(0));
      }
      gr = {gbuf, NR};
    } else if (compact) {
      const bool ahead = l0 + 2 * NR <= L;
      for (int64_t t = 0; t < cout_g; ++t) {
        std::memcpy(gbuf + t * NR, gog + t * L + l0, NR * sizeof(T));
        if (ahead) __builtin_prefetch(gog + t * L + l0 + NR, 0, 2);
      }
      gr = {gbuf, NR};
    }
    T gtot[NR] = {};
    if (tie_ng) std::copy(gtot_all + l0, gtot_all + l0 + cols, gtot);
    // Output position -> input offset of tap (0, 0).
    int64_t hbase[NR], wbase[NR];
    for (int j = 0; j < NR; ++j) {
      const int64_t l = l0 + std::min(j, cols - 1);
      hbase[j] = (l / s.wout) * s.sh - s.ph;
      wbase[j] = (l % s.wout) * s.sw - s.pw;
    }
    // The block's positions consecutive in one output row, stride 1 there;
    // or anywhere in a flat layer.
    const bool in_row = cols == NR && s.sw == 1 &&
                        (flat || l0 / s.wout == (l0 + NR - 1) / s.wout);
    for (int64_t r = r0; r < r1; r += step) {
      const int rows = (int)std::min<int64_t>(step, r1 - r);
      T xt[kRows][NR], dcol[kRows][NR];
      int64_t idx[kRows][NR];  // -1 where the tap is padding
      int64_t at[kRows];       // contiguous row: offset of its inputs, else -1
      const T* xr[kRows];
      bool fast = tie_ng != nullptr;
      for (int i = 0; i < rows; ++i) {
        const int64_t c = row_c[r + i - r0];
        const int64_t di = row_di[r + i - r0], dj = row_dj[r + i - r0];
        if (tie_ng && tie_ng[c] == kTieExact) fast = false;
        const int64_t h0 = hbase[0] + di, w0 = wbase[0] + dj;
        if (in_row && (flat || (h0 >= 0 && h0 < s.h && w0 >= 0 &&
                                w0 + NR <= s.w))) {
          at[i] = c * HW + h0 * s.w + w0;
          xr[i] = xg + at[i];
          continue;
        }
        at[i] = -1;
        for (int j = 0; j < NR; ++j) {
          const int64_t hi = hbase[j] + di, wi = wbase[j] + dj;
          const bool in = j < cols && hi >= 0 && hi < s.h && wi >= 0 && wi < s.w;
          idx[i][j] = in ? c * HW + hi * s.w + wi : -1;
          xt[i][j] = in ? xg[idx[i][j]] : T(0);
        }
        xr[i] = xt[i];
      }
      for (int i = rows; i < kRows; ++i) xr[i] = xr[rows - 1];
      // Contiguous rows: the next position block's inputs of these rows,
      // one line each, read when the walk over the rows comes back.
      for (int i = 0; i < rows; ++i)
        if (at[i] >= 0) __builtin_prefetch(xr[i] + NR);
      // Adds value(i, j) to each row's inputs (flat: stores it): in place
      // along a contiguous row, else through the gathered indices (padding
      // taps skipped). The row's values go through a local array first, so
      // that the contiguous case vectorizes (written straight from the
      // lambda it compiled to one value at a time).
      auto add_rows = [&](auto value) {
        for (int i = 0; i < rows; ++i) {
          T v[NR];
          for (int j = 0; j < NR; ++j) v[j] = value(i, j);
          if (at[i] >= 0) {
            T* o = gxg + at[i];
            if (flat)
              std::memcpy(o, v, sizeof(v));
            else
              for (int j = 0; j < NR; ++j) o[j] += v[j];
            continue;
          }
          for (int j = 0; j < cols; ++j)
            if (idx[i][j] >= 0) {
              if (flat)
                gxg[idx[i][j]] = v[j];
              else
                gxg[idx[i][j]] += v[j];
            }
        }
      };
      if constexpr (kSign) {
        if (fast) {
          backward_input_sign_fast_rows(cout_g, wg + r * cout_g, cout_g, gr,
                                        xr, dcol, rows);
          add_rows([&](int i, int j) { return T(2) * dcol[i][j] - gtot[j]; });
          continue;
        }
      }
      backward_input_exact_rows<T, kSign>(cout_g, wg + r * cout_g, cout_g, gr,
                                          xr, dcol, rows, range);
      add_rows([&](int i, int j) { return dcol[i][j]; });
    }
  }
}


// Input gradient without gathers or scatters, one stride phase at a time
// (DxPlane: a stride-1 layer is one phase with every tap). The phase's input
// positions are walked in the pitch wg of the zero-padded output gradient
// gp [N][Cout][hg][wg]:
//   dX(c, lq) = sum_{t, tap} gp(t, lq + goff[t, tap]) G(w(t, c, tap) - xq(c, lq))
// with xq the phase's input values in that pitch (lq = h * wg + w; columns
// w >= cols are computed and dropped), so a tile's NR positions read NR
// consecutive values of every (filter, tap) term. wr: the phase's filter
// values as [groups][cin_g][R], R = cout_g * taps (the phase's taps), term
// r = t * taps + tap. A task owns positions [lq0, lq0 + lc) of (n, g) for
// every channel of the group: plain stores to dX at (h0 + h sh, w0 + w sw).
//
// range: the hardtanh rule's exact tiles clamp by vrangeps (the caller
// found every input and filter value finite: hardtanh_by_range).
//
// Sign rule, fast tile: tie is one flag per (sample, channel), set where the
// channel has an input value equal to one of its filter values or a NaN
// (null: no fast tile); gsum, per (n, g), the padded output gradient summed
// over the group's filters, whose tap sums are the tile's sum_r g[r][j].
template <typename T, bool kSign>
inline void backward_input_implicit_chunk_impl(
    const T* gp, const T* xq, const T* wr, const int64_t* goff,
    const uint8_t* tie, const T* gsum, T* gx, const Adder2dShape& s,
    const DxPlane& ph, int64_t hg, int64_t wg, int64_t n, int64_t g,
    int64_t lq0, int64_t lc, bool range) {
  constexpr int NR = bwd_nr<T, kSign>();
  const int64_t cin_g = s.cin_g(), cout_g = s.cout_g(), R = cout_g * ph.taps;
  const int64_t gplane = hg * wg, xplane = ph.rows * wg, HW = s.h * s.w;
  const T* gpg = gp + (n * s.cout + g * cout_g) * gplane;
  const T* xg = xq + (n * s.c + g * cin_g) * xplane;
  const T* wgrp = wr + g * cin_g * R;
  T* gxg = gx + (n * s.c + g * cin_g) * HW;
  const uint8_t* tie_ng = tie ? tie + n * s.c + g * cin_g : nullptr;
  for (int64_t q0 = 0; q0 < lc; q0 += NR) {
    const int64_t lq = lq0 + q0;
    int64_t dst[NR];  // dX offset in the plane, -1: dropped column
    for (int j = 0; j < NR; ++j) {
      const int64_t l = lq + j, h = l / wg, w = l % wg;
      dst[j] = (q0 + j < lc && w < ph.cols && h < ph.rows)
                   ? (ph.h0 + h * s.sh) * s.w + ph.w0 + w * s.sw
                   : -1;
    }
    const OffsetRows<T> gr{gpg + lq, goff};
    // Tile rows c.. (rows of them, the last repeated up to MR).
    auto rows_from = [&](int64_t c, int rows, const T** xr, int mr) {
      for (int i = 0; i < mr; ++i)
        xr[i] = xg + (c + std::min(i, rows - 1)) * xplane + lq;
    };
    // Exact tiles for channels [c, c + rows), rows <= kBwdMR.
    auto exact = [&](int64_t c, int rows) {
      const T* xr[kBwdMR];
      rows_from(c, rows, xr, kBwdMR);
      T dcol[kBwdMR][NR];
      backward_input_exact_rows<T, kSign>(R, wgrp + c * R, R, gr, xr, dcol,
                                          rows, range);
      for (int i = 0; i < rows; ++i)
        for (int j = 0; j < NR; ++j)
          if (dst[j] >= 0) gxg[(c + i) * HW + dst[j]] = dcol[i][j];
    };
    if constexpr (kSign) {
      if (tie_ng) {
        // Runs of channels the check did not send to the exact tile take
        // the fast one (a kTieTerms pair's ties are added afterwards,
        // add_tie_terms). gtot[j]: the output gradient summed over the terms.
        T gtot[NR] = {};
        const T* gs = gsum + (n * s.groups + g) * gplane + lq;
        for (int64_t tap = 0; tap < ph.taps; ++tap)
          for (int j = 0; j < NR; ++j) gtot[j] += gs[goff[tap] + j];
        for (int64_t c = 0; c < cin_g;) {
          // Channels from c taking c's tile, up to one tile (kTieExact:
          // the exact one; kNoTie, kTieTerms: the fast one).
          const bool exact_c = tie_ng[c] == kTieExact;
          const int mr = exact_c ? kBwdMR : kBwdFastMR;
          int run = 0;
          while (c + run < cin_g && run < mr &&
                 (tie_ng[c + run] == kTieExact) == exact_c)
            ++run;
          if (exact_c) {
            exact(c, run);
          } else {
            const T* xr[kBwdFastMR];
            rows_from(c, run, xr, kBwdFastMR);
            T dcol[kBwdFastMR][NR];
            backward_input_sign_fast_rows(R, wgrp + c * R, R, gr, xr, dcol,
                                          run);
            for (int i = 0; i < run; ++i)
              for (int j = 0; j < NR; ++j)
                if (dst[j] >= 0)
                  gxg[(c + i) * HW + dst[j]] = T(2) * dcol[i][j] - gtot[j];
          }
          c += run;
        }
        continue;
      }
    }
    for (int64_t c = 0; c < cin_g; c += kBwdMR)
      exact(c, (int)std::min<int64_t>(kBwdMR, cin_g - c));
  }
}
