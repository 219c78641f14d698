// CPU micro-kernels and task bodies of adder2d (see adder2d_cpu.cpp).
// Deliberately without include guard: adder2d_cpu.cpp includes this file
// twice, once under `#pragma GCC target("avx2,fma")` and once for the
// baseline ISA, each in its own namespace. A whole-region target (rather
// than target attributes on wrappers) matters: GCC lowers vector code to the
// ISA of the function it is written in before inlining it anywhere.

template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(32)));
  typedef int32_t mask __attribute__((vector_size(32)));
  static constexpr int width = 8;
  static constexpr int32_t abs_bits = 0x7fffffff;
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(32)));
  typedef int64_t mask __attribute__((vector_size(32)));
  static constexpr int width = 4;
  static constexpr int64_t abs_bits = 0x7fffffffffffffffLL;
};

template <typename T>
ADDER_INLINE typename Vec<T>::type vload(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
ADDER_INLINE typename Vec<T>::type vsplat(T s) {
  const typename Vec<T>::type zero = {};
  return s - zero;  // s - 0 == s exactly, so this folds to one broadcast
}
template <typename T>
ADDER_INLINE typename Vec<T>::type vabs(typename Vec<T>::type v) {
  using M = typename Vec<T>::mask;
  return (typename Vec<T>::type)((M)v & Vec<T>::abs_bits);
}

// An opaque 1: `v * opaque_one(...)` is not folded to `v`, so the compiler
// contracts `acc += v * one` into an FMA, which runs on the multiply pipes
// and leaves the add/compare pipes to the rest of the loop body.
template <typename V>
ADDER_INLINE V opaque_one(V one) {
#if ADDER_ISA_AVX2
  __asm__("" : "+x"(one));
#endif
  return one;
}

// Tile sizes: MR rows (filters / input rows) x NV vectors of columns.
constexpr int kFwdMR = 5, kFwdNV = 2;  // 10 accumulators + 6 live registers
constexpr int kBwdMR = 4;
// Input gradient: the hardtanh rule keeps 8 (x, acc) pairs; the sign rule
// needs more temporaries per pair and runs faster with 4 (no spills).
template <bool kSign>
constexpr int bwd_nv() { return kSign ? 1 : 2; }
constexpr int64_t kKC = 256;  // K block of the forward (panel in L1/L2)
// K block of the implicit forward: its NR x KC input values are KC
// unaligned rows (2 cache lines each), to stay in L1 across the filters.
constexpr int64_t kImplicitKC = 128;

template <typename T>
constexpr int fwd_nr() { return kFwdNV * Vec<T>::width; }
template <typename T, bool kSign>
constexpr int bwd_nr() { return bwd_nv<kSign>() * Vec<T>::width; }

// One MR x NR output tile over a K-block; w rows are ldw apart, rows beyond
// `rows` are never read.
//
// Direct form (kMin = false): out[i][j] (-)= sum_k |w[i][k] - panel[k][j]|:
// subtract, clear the sign bit, add (3 vector ops a MAC).
//
// Min form (kMin = true): |x - w| = x + w - 2 min(x, w), so
//   -sum_k |w - x| = sum_k 2 min(w, x) - sum_k x - sum_k w,
// and the tile only accumulates out[i][j] (+)= sum_k 2 min(w, x): one min
// and one FMA a MAC, which run on different pipes (x86 cores have min on
// the FP add ports and FMA on the multiply ports); the caller subtracts the
// sums. Only for finite values (inf - inf would give NaN).
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
// and would share L1 sets).
template <typename T, int MR, bool kMin, typename Rows, bool kInterleaved = false>
ADDER_INLINE void forward_tile(int64_t kc, const T* w, int64_t ldw,
                               Rows panel, T* out, int64_t ldo, int rows,
                               int cols, bool first) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::width, NR = kFwdNV * W;
  V acc[MR][kFwdNV] = {};
  const T* wr[MR];
  for (int i = 0; i < MR; ++i)
    wr[i] = kInterleaved ? w + i : w + std::min(i, rows - 1) * ldw;
  constexpr int64_t kStep = kInterleaved ? MR : 1;
  const V two = vsplat<T>(2);
  for (int64_t k = 0; k < kc; ++k) {
    V x[kFwdNV];
    const T* xk = panel(k);
#pragma GCC unroll 4
    for (int v = 0; v < kFwdNV; ++v) x[v] = vload(xk + v * W);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const V wi = vsplat(wr[i][k * kStep]);
#pragma GCC unroll 4
      for (int v = 0; v < kFwdNV; ++v) {
        if (kMin)
          acc[i][v] += (wi < x[v] ? wi : x[v]) * two;
        else
          acc[i][v] += vabs<T>(wi - x[v]);
      }
    }
  }
  const T sign = kMin ? T(1) : T(-1);
  for (int i = 0; i < rows; ++i) {
    T tmp[NR];
    std::memcpy(tmp, acc[i], sizeof(tmp));
    T* o = out + i * ldo;
    if (first)
      for (int j = 0; j < cols; ++j) o[j] = sign * tmp[j];
    else
      for (int j = 0; j < cols; ++j) o[j] += sign * tmp[j];
  }
}

// w: filters minus shift; wsum: their sums per filter; shift: per patch row
// of each group (both null when a filter is not finite: the direct form
// runs, unshifted). panels: K x LC scratch plus LC column sums.
template <typename T>
inline void forward_chunk_impl(const T* x, const T* w, const T* wsum,
                                     const T* shift, T* y,
                                     const Adder2dShape& s, int64_t n,
                                     int64_t g, int64_t l0, int64_t lc,
                                     T* panels) {
  constexpr int NR = fwd_nr<T>();
  const int64_t K = s.k(), L = s.l(), cout_g = s.cout_g();
  const int64_t npanels = (lc + NR - 1) / NR;
  // Pack the patches: panels[p][k][j] = X_col(k, l0 + p * NR + j) - shift_k
  // (padding taps: 0 - shift_k), 0 past lc.
  // Walk output rows so the valid input columns of a row are one strided
  // run, and copy runs (split only at panel edges) instead of single values:
  // per-value index arithmetic used to cost more than the arithmetic of the
  // 16-filter layers.
  const T* xg = x + (n * s.c + g * s.cin_g()) * s.h * s.w;
  const int64_t oh0 = l0 / s.wout, ow0 = l0 % s.wout;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t c = k / s.taps(), tap = k % s.taps();
    const int64_t di = (tap / s.kw) * s.dh - s.ph;
    const int64_t dj = (tap % s.kw) * s.dw - s.pw;
    // Output columns ow whose input column ow * sw + dj is inside [0, W).
    const int64_t ow_lo = std::min(s.wout, dj >= 0 ? 0 : (-dj + s.sw - 1) / s.sw);
    const int64_t ow_hi = std::max(ow_lo, std::min(s.wout, s.w - dj > 0 ? (s.w - dj - 1) / s.sw + 1 : 0));
    const T* plane = xg + c * s.h * s.w;
    const T ck = shift ? shift[g * K + k] : T(0);
    T* const base = panels + k * NR;
    int64_t q = 0;  // next packed column
    // Writes m values at columns q..: src[i * sw] - ck, or fill - ck.
    auto put = [&](int64_t m, const T* src, T fill) {
      while (m > 0) {
        const int64_t p = q / NR, j = q - p * NR;
        const int64_t r = std::min<int64_t>(m, NR - j);
        T* d = base + p * K * NR + j;
        if (src == nullptr)
          for (int64_t i = 0; i < r; ++i) d[i] = fill;
        else if (s.sw == 1)
          for (int64_t i = 0; i < r; ++i) d[i] = src[i] - ck;
        else
          for (int64_t i = 0; i < r; ++i) d[i] = src[i * s.sw] - ck;
        if (src != nullptr) src += r * s.sw;
        q += r;
        m -= r;
      }
    };
    for (int64_t oh = oh0; q < lc; ++oh) {
      const int64_t first = oh == oh0 ? ow0 : 0;
      const int64_t last = std::min(s.wout, first + (lc - q));  // exclusive
      const int64_t hi = oh * s.sh + di;
      if (hi < 0 || hi >= s.h) {
        put(last - first, nullptr, -ck);
        continue;
      }
      const T* row = plane + hi * s.w + dj;
      const int64_t a = std::max(first, ow_lo), b = std::max(a, std::min(last, ow_hi));
      put(a - first, nullptr, -ck);
      put(b - a, row + a * s.sw, T(0));
      put(last - b, nullptr, -ck);
    }
    put(npanels * NR - q, nullptr, T(0));  // past lc: never stored
  }
  // Column sums of the panels (in double), and whether all are finite.
  T* xsum = panels + npanels * K * NR;
  bool use_min = wsum != nullptr;
  for (int64_t p = 0; use_min && p < npanels; ++p) {
    double acc[NR] = {};
    const T* panel = panels + p * K * NR;
    for (int64_t k = 0; k < K; ++k)
      for (int j = 0; j < NR; ++j) acc[j] += panel[k * NR + j];
    for (int j = 0; j < NR; ++j) {
      xsum[p * NR + j] = (T)acc[j];
      use_min = use_min && std::isfinite(acc[j]);  // inf/NaN: direct form
    }
  }
  const T* wg = w + g * cout_g * K;
  T* yg = y + (n * s.cout + g * cout_g) * L + l0;
  const auto tile_mr = use_min ? &forward_tile<T, kFwdMR, true, PackedRows<T>>
                               : &forward_tile<T, kFwdMR, false, PackedRows<T>>;
  const auto tile_1 = use_min ? &forward_tile<T, 1, true, PackedRows<T>>
                              : &forward_tile<T, 1, false, PackedRows<T>>;
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    int64_t t = 0;
    for (; t + kFwdMR <= cout_g; t += kFwdMR)
      for (int64_t p = 0; p < npanels; ++p)
        tile_mr(kc, wg + t * K + k0, K, {panels + p * K * NR + k0 * NR},
                yg + t * L + p * NR, L, kFwdMR,
                (int)std::min<int64_t>(NR, lc - p * NR), k0 == 0);
    for (; t < cout_g; ++t)
      for (int64_t p = 0; p < npanels; ++p)
        tile_1(kc, wg + t * K + k0, K, {panels + p * K * NR + k0 * NR},
               yg + t * L + p * NR, L, 1,
               (int)std::min<int64_t>(NR, lc - p * NR), k0 == 0);
  }
  if (use_min) {
    const T* ws = wsum ? wsum + g * cout_g : nullptr;
    for (int64_t t = 0; t < cout_g; ++t) {
      T* o = yg + t * L;
      for (int64_t j = 0; j < lc; ++j) o[j] -= xsum[j] + ws[t];
    }
  }
}

// Stride-1 forward without packing ("implicit GEMM"). xp: the input minus
// per-channel shifts, zero-padded to [N][C][Hp][Wp] (padding holds -shift).
// Output positions are walked in the padded pitch, lp = oh * Wp + ow, so
// the NR positions of a tile read NR consecutive values of every (channel,
// tap) plane at xp + off[k] + lp; columns ow >= wout are computed and
// dropped. csum: per (n, g) and padded pixel, the sum over the group's
// channels of xp (double), from which the patch sums are tap sums.
// w/wsum: shifted filters and their sums (wsum null: direct form); wpk:
// the same, each group's full MR-filter tiles interleaved [tile][k][MR].
// yc: cout_g x (lc rounded up to NR) scratch.
template <typename T>
inline void forward_implicit_chunk_impl(const T* xp, const int64_t* off,
                                        const double* csum, const T* w,
                                        const T* wpk,
                                        const T* wsum, T* y,
                                        const Adder2dShape& s, int64_t hp,
                                        int64_t wp, int64_t n, int64_t g,
                                        int64_t lp0, int64_t lc, T* yc) {
  constexpr int NR = fwd_nr<T>();
  const int64_t K = s.k(), cout_g = s.cout_g(), plane = hp * wp;
  const int64_t np = (lc + NR - 1) / NR, ld = np * NR;
  const T* xg = xp + (n * s.c + g * s.cin_g()) * plane + lp0;
  const double* cs = csum + (n * s.groups + g) * plane + lp0;
  // Patch sums of the chunk's valid positions; any inf/NaN: direct form.
  T* xsum = yc + cout_g * ld;
  bool use_min = wsum != nullptr;
  for (int64_t q = 0; q < lc; ++q) {
    double acc = 0;
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j)
        acc += cs[q + i * s.dh * wp + j * s.dw];
    xsum[q] = (T)acc;
    if ((lp0 + q) % wp < s.wout) use_min = use_min && std::isfinite(acc);
  }
  const T* wg = w + g * cout_g * K;
  const auto tile_mr =
      use_min ? &forward_tile<T, kFwdMR, true, OffsetRows<T>, true>
              : &forward_tile<T, kFwdMR, false, OffsetRows<T>, true>;
  const auto tile_1 = use_min ? &forward_tile<T, 1, true, OffsetRows<T>>
                              : &forward_tile<T, 1, false, OffsetRows<T>>;
  // K blocks outermost, then positions, then filters: a tile's NR x KC
  // input values stay in L1 while every filter block passes over them.
  for (int64_t k0 = 0; k0 < K; k0 += kImplicitKC) {
    const int64_t kc = std::min(kImplicitKC, K - k0);
    for (int64_t p = 0; p < np; ++p) {
      const OffsetRows<T> rows{xg + p * NR, off + k0};
      int64_t t = 0;
      for (; t + kFwdMR <= cout_g; t += kFwdMR)
        tile_mr(kc, wpk + (g * (cout_g / kFwdMR) + t / kFwdMR) * kFwdMR * K +
                        k0 * kFwdMR, 0, rows, yc + t * ld + p * NR, ld,
                kFwdMR, NR, k0 == 0);
      for (; t < cout_g; ++t)
        tile_1(kc, wg + t * K + k0, K, rows, yc + t * ld + p * NR, ld, 1, NR,
               k0 == 0);
    }
  }
  // Valid columns to y, minus the patch and filter sums.
  const T* ws = wsum ? wsum + g * cout_g : nullptr;
  T* yg = y + (n * s.cout + g * cout_g) * s.l();
  for (int64_t q = 0; q < lc;) {
    const int64_t lp = lp0 + q, oh = lp / wp, ow = lp % wp;
    const int64_t run = std::min(lc - q, wp - ow);  // to the end of the row
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
template <typename T, int MR, bool kSign, typename GRows>
ADDER_INLINE void backward_input_tile(int64_t R, const T* wt, int64_t ldw,
                                      GRows grows, const T* const* xrows,
                                      T (*dcol)[bwd_nr<T, kSign>()], int rows) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::width, NV = bwd_nv<kSign>();
  V acc[MR][NV] = {}, xv[MR][NV];
  const T* wr[MR];
  for (int i = 0; i < MR; ++i) {
    const int row = std::min(i, rows - 1);
    wr[i] = wt + row * ldw;
    for (int v = 0; v < NV; ++v) xv[i][v] = vload(xrows[row] + v * W);
  }
  const V one = opaque_one(vsplat<T>(1)), mone = vsplat<T>(-1), zero = {};
  for (int64_t t = 0; t < R; ++t) {
    V gv[NV], ngv[NV];
    const T* gt = grows(t);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      gv[v] = vload(gt + v * W);
      ngv[v] = -gv[v];
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const V wi = vsplat(wr[i][t]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        if (kSign) {
          const V up = wi > xv[i][v] ? gv[v] : zero;
          acc[i][v] += (wi < xv[i][v] ? ngv[v] : up) * one;
        } else {
          V d = wi - xv[i][v];
          d = d > one ? one : d;
          d = d < mone ? mone : d;
          acc[i][v] += gv[v] * d;
        }
      }
    }
  }
  for (int i = 0; i < rows; ++i) std::memcpy(dcol[i], acc[i], sizeof(acc[i]));
}

// Exact tiles over `rows` rows (ldw apart in wt, patch rows xrows[i]): full
// kBwdMR tiles, then one row at a time.
template <typename T, bool kSign, typename GRows>
ADDER_INLINE void backward_input_exact_rows(int64_t R, const T* wt,
                                            int64_t ldw, GRows grows,
                                            const T* const* xrows,
                                            T (*dcol)[bwd_nr<T, kSign>()],
                                            int rows) {
  for (int i = 0; i < rows;) {
    const T* w = wt + i * ldw;
    if (rows - i >= kBwdMR) {
      backward_input_tile<T, kBwdMR, kSign>(R, w, ldw, grows, xrows + i,
                                            dcol + i, kBwdMR);
      i += kBwdMR;
    } else {
      backward_input_tile<T, 1, kSign>(R, w, ldw, grows, xrows + i, dcol + i,
                                       1);
      i += 1;
    }
  }
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
  const V zero = {};
  V acc[MR] = {}, xv[MR];
  const T* wr[MR];
  for (int i = 0; i < MR; ++i) {
    const int row = std::min(i, rows - 1);
    wr[i] = wt + row * ldw;
    xv[i] = vload(xrows[row]);
  }
  for (int64_t t = 0; t < R; ++t) {
    const V gv = vload(grows(t));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
      acc[i] += vsplat(wr[i][t]) > xv[i] ? gv : zero;
  }
  for (int i = 0; i < rows; ++i) std::memcpy(dcol[i], &acc[i], sizeof(acc[i]));
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

// One input-gradient task: sample n, group g, input channels [c0, c1) of
// the group. Owns dX(n, g * cin_g + [c0, c1)), so it writes without atomics.
// wt: filters as [groups][K][cout_g].
//
// tie: as in the in-place path below, one flag per (sample, channel), null
// for no fast tile; rows of a flagged channel take the exact tile.
template <typename T, bool kSign>
inline void backward_input_chunk_impl(const T* go, const T* x,
                                            const T* wt, const uint8_t* tie,
                                            T* gx, const Adder2dShape& s,
                                            int64_t n, int64_t g, int64_t c0,
                                            int64_t c1, T* gbuf) {
  constexpr int NR = bwd_nr<T, kSign>();
  constexpr int kRows = kSign ? std::max(kBwdMR, kBwdFastMR) : kBwdMR;
  const int64_t K = s.k(), L = s.l(), cout_g = s.cout_g(), T_ = s.taps();
  const int64_t HW = s.h * s.w;
  const T* xg = x + (n * s.c + g * s.cin_g()) * HW;
  T* gxg = gx + (n * s.c + g * s.cin_g()) * HW;
  const T* gog = go + (n * s.cout + g * cout_g) * L;
  const T* wg = wt + g * K * cout_g;
  const uint8_t* tie_ng = tie ? tie + n * s.c + g * s.cin_g() : nullptr;
  std::fill(gxg + c0 * HW, gxg + c1 * HW, T(0));
  const int64_t r0 = c0 * T_, r1 = c1 * T_;  // patch rows owned
  const int64_t step = kSign && tie_ng ? kBwdFastMR : kBwdMR;
  for (int64_t l0 = 0; l0 < L; l0 += NR) {
    const int cols = (int)std::min<int64_t>(NR, L - l0);
    // g(t, l0 .. l0 + NR), zero-padded past L; gtot: its sum over t.
    T gtot[NR] = {};
    for (int64_t t = 0; t < cout_g; ++t) {
      T* dst = gbuf + t * NR;
      std::memcpy(dst, gog + t * L + l0, cols * sizeof(T));
      std::fill(dst + cols, dst + NR, T(0));
      if (tie_ng)
        for (int j = 0; j < NR; ++j) gtot[j] += dst[j];
    }
    // Output position -> input offset of tap (0, 0).
    int64_t hbase[NR], wbase[NR];
    for (int j = 0; j < NR; ++j) {
      const int64_t l = l0 + std::min(j, cols - 1);
      hbase[j] = (l / s.wout) * s.sh - s.ph;
      wbase[j] = (l % s.wout) * s.sw - s.pw;
    }
    for (int64_t r = r0; r < r1; r += step) {
      const int rows = (int)std::min<int64_t>(step, r1 - r);
      T xt[kRows][NR], dcol[kRows][NR];
      int64_t idx[kRows][NR];  // -1 where the tap is padding
      bool fast = tie_ng != nullptr;
      for (int i = 0; i < rows; ++i) {
        const int64_t k = r + i, c = k / T_, tap = k % T_;
        const int64_t di = (tap / s.kw) * s.dh, dj = (tap % s.kw) * s.dw;
        if (tie_ng && tie_ng[c]) fast = false;
        for (int j = 0; j < NR; ++j) {
          const int64_t hi = hbase[j] + di, wi = wbase[j] + dj;
          const bool in = j < cols && hi >= 0 && hi < s.h && wi >= 0 && wi < s.w;
          idx[i][j] = in ? c * HW + hi * s.w + wi : -1;
          xt[i][j] = in ? xg[idx[i][j]] : T(0);
        }
      }
      const T* xr[kRows];
      for (int i = 0; i < kRows; ++i) xr[i] = xt[std::min(i, rows - 1)];
      const StridedRows<T> gr{gbuf, NR};
      if constexpr (kSign) {
        if (fast) {
          backward_input_sign_fast_rows(cout_g, wg + r * cout_g, cout_g, gr,
                                        xr, dcol, rows);
          for (int i = 0; i < rows; ++i)
            for (int j = 0; j < cols; ++j)
              if (idx[i][j] >= 0)
                gxg[idx[i][j]] += T(2) * dcol[i][j] - gtot[j];
          continue;
        }
      }
      backward_input_exact_rows<T, kSign>(cout_g, wg + r * cout_g, cout_g, gr,
                                          xr, dcol, rows);
      for (int i = 0; i < rows; ++i)
        for (int j = 0; j < cols; ++j)
          if (idx[i][j] >= 0) gxg[idx[i][j]] += dcol[i][j];
    }
  }
}


// Stride-1 input gradient without gathers or scatters. Input positions are
// walked in the pitch wg of the zero-padded output gradient gp
// [N][Cout][hg][wg] (hg = H + (kh - 1) dh, wg = W + (kw - 1) dw):
//   dX(c, lq) = sum_{t, tap} gp(t, lq + goff[t, tap]) G(w(t, c, tap) - xq(c, lq))
// with xq the input in that pitch (lq = h * wg + w; columns w >= W are
// computed and dropped), so a tile's NR positions read NR consecutive
// values of every (filter, tap) term. wr: filters as [groups][cin_g][R],
// R = cout_g * taps, term r = t * taps + tap. A task owns positions
// [lq0, lq0 + lc) of (n, g) for every channel of the group: plain stores.
//
// Sign rule, fast tile: tie is one flag per (sample, channel), set where the
// channel has an input value equal to one of its filter values or a NaN
// (null: no fast tile); gsum, per (n, g), the padded output gradient summed
// over the group's filters, whose tap sums are the tile's sum_r g[r][j].
template <typename T, bool kSign>
inline void backward_input_implicit_chunk_impl(
    const T* gp, const T* xq, const T* wr, const int64_t* goff,
    const uint8_t* tie, const T* gsum, T* gx, const Adder2dShape& s,
    int64_t hg, int64_t wg, int64_t n, int64_t g, int64_t lq0, int64_t lc) {
  constexpr int NR = bwd_nr<T, kSign>();
  const int64_t cin_g = s.cin_g(), cout_g = s.cout_g(), R = cout_g * s.taps();
  const int64_t gplane = hg * wg, xplane = s.h * wg, HW = s.h * s.w;
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
      dst[j] = (q0 + j < lc && w < s.w && h < s.h) ? h * s.w + w : -1;
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
                                          rows);
      for (int i = 0; i < rows; ++i)
        for (int j = 0; j < NR; ++j)
          if (dst[j] >= 0) gxg[(c + i) * HW + dst[j]] = dcol[i][j];
    };
    if constexpr (kSign) {
      if (tie_ng) {
        // Runs of tie-free channels take the fast tile, the others the
        // exact one. gtot[j]: the output gradient summed over the terms.
        T gtot[NR] = {};
        const T* gs = gsum + (n * s.groups + g) * gplane + lq;
        for (int64_t tap = 0; tap < s.taps(); ++tap)
          for (int j = 0; j < NR; ++j) gtot[j] += gs[goff[tap] + j];
        for (int64_t c = 0; c < cin_g;) {
          int run = 0;  // channels from c sharing c's flag, up to one tile
          const int mr = tie_ng[c] ? kBwdMR : kBwdFastMR;
          while (c + run < cin_g && run < mr && tie_ng[c + run] == tie_ng[c])
            ++run;
          if (tie_ng[c]) {
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
