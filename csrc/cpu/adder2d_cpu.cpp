// CPU kernels of adder2d: forward and input gradient.
//
// Both are L1 "GEMMs" with register-blocked micro-kernels written with GCC
// vector extensions (8 floats / 4 doubles a vector), compiled twice: for
// AVX2+FMA and for the baseline ISA, picked at run time by CPU capability.
//
// forward:  per task = (sample, group, chunk of LC output positions), the
//   input patches of the chunk are packed into NR-wide panels [K][NR]; then
//   for K-blocks of KC, MR filters x NR positions are accumulated in
//   registers: acc += |w - x|. Memory: one K x LC panel buffer per task.
// input gradient: per task = (sample, group, block of input channels) the
//   task owns those channels' planes of dX, so the col2im scatter needs no
//   atomics. Each MR x NR tile keeps its patch values in registers and
//   reduces over the output channels: acc += g * G(w - x).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../adder2d.h"

#define ADDER_INLINE inline __attribute__((always_inline))

namespace adder_det {
namespace {

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
  typename Vec<T>::type v = {};
  return v + s;
}
template <typename T>
ADDER_INLINE typename Vec<T>::type vabs(typename Vec<T>::type v) {
  using M = typename Vec<T>::mask;
  return (typename Vec<T>::type)((M)v & Vec<T>::abs_bits);
}

// Tile sizes: MR rows (filters / input rows) x NV vectors of columns.
constexpr int kFwdMR = 6, kFwdNV = 2;
constexpr int kBwdMR = 4, kBwdNV = 2;
constexpr int64_t kKC = 256;  // K block of the forward (panel in L1/L2)

template <typename T>
constexpr int fwd_nr() { return kFwdNV * Vec<T>::width; }
template <typename T>
constexpr int bwd_nr() { return kBwdNV * Vec<T>::width; }

// out[i][j] (-)= sum_k |w[i][k] - panel[k][j]| for i < rows, j < cols.
// w rows are ldw apart; rows beyond `rows` are never read.
template <typename T, int MR>
ADDER_INLINE void forward_tile(int64_t kc, const T* w, int64_t ldw,
                               const T* panel, T* out, int64_t ldo, int rows,
                               int cols, bool first) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::width, NR = kFwdNV * W;
  V acc[MR][kFwdNV] = {};
  const T* wr[MR];
  for (int i = 0; i < MR; ++i) wr[i] = w + std::min(i, rows - 1) * ldw;
  for (int64_t k = 0; k < kc; ++k) {
    V x[kFwdNV];
#pragma GCC unroll 4
    for (int v = 0; v < kFwdNV; ++v) x[v] = vload(panel + k * NR + v * W);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const V wi = vsplat(wr[i][k]);
#pragma GCC unroll 4
      for (int v = 0; v < kFwdNV; ++v) acc[i][v] += vabs<T>(wi - x[v]);
    }
  }
  for (int i = 0; i < rows; ++i) {
    T tmp[NR];
    std::memcpy(tmp, acc[i], sizeof(tmp));
    T* o = out + i * ldo;
    if (first)
      for (int j = 0; j < cols; ++j) o[j] = -tmp[j];
    else
      for (int j = 0; j < cols; ++j) o[j] -= tmp[j];
  }
}

// One forward task: sample n, group g, output positions [l0, l0 + lc).
template <typename T>
ADDER_INLINE void forward_chunk_impl(const T* x, const T* w, T* y,
                                     const Adder2dShape& s, int64_t n,
                                     int64_t g, int64_t l0, int64_t lc,
                                     T* panels) {
  constexpr int NR = fwd_nr<T>();
  const int64_t K = s.k(), L = s.l(), cout_g = s.cout_g();
  const int64_t npanels = (lc + NR - 1) / NR;
  // Pack the patches: panels[p][k][j] = X_col(k, l0 + p * NR + j), 0 past lc.
  const T* xg = x + (n * s.c + g * s.cin_g()) * s.h * s.w;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t c = k / s.taps(), tap = k % s.taps();
    const int64_t di = (tap / s.kw) * s.dh - s.ph, dj = (tap % s.kw) * s.dw - s.pw;
    const T* plane = xg + c * s.h * s.w;
    int64_t oh = l0 / s.wout, ow = l0 % s.wout;
    for (int64_t q = 0; q < npanels * NR; ++q) {
      T v = 0;
      if (q < lc) {
        const int64_t hi = oh * s.sh + di, wi = ow * s.sw + dj;
        if (hi >= 0 && hi < s.h && wi >= 0 && wi < s.w) v = plane[hi * s.w + wi];
        if (++ow == s.wout) ow = 0, ++oh;
      }
      panels[(q / NR) * K * NR + k * NR + q % NR] = v;
    }
  }
  const T* wg = w + g * cout_g * K;
  T* yg = y + (n * s.cout + g * cout_g) * L + l0;
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    int64_t t = 0;
    for (; t + kFwdMR <= cout_g; t += kFwdMR)
      for (int64_t p = 0; p < npanels; ++p)
        forward_tile<T, kFwdMR>(kc, wg + t * K + k0, K,
                                panels + p * K * NR + k0 * NR,
                                yg + t * L + p * NR, L, kFwdMR,
                                (int)std::min<int64_t>(NR, lc - p * NR),
                                k0 == 0);
    for (; t < cout_g; ++t)
      for (int64_t p = 0; p < npanels; ++p)
        forward_tile<T, 1>(kc, wg + t * K + k0, K,
                           panels + p * K * NR + k0 * NR, yg + t * L + p * NR,
                           L, 1, (int)std::min<int64_t>(NR, lc - p * NR),
                           k0 == 0);
  }
}

// acc[i][j] = sum_t g[t][j] * G(wt[k + i][t] - x[i][j]) for one MR x NR tile
// of patch rows k.. and positions (wt: filters transposed to [K][cout_g], so
// each row streams contiguously); rows beyond `rows` repeat the last row and
// are dropped.
template <typename T, int MR, bool kSign>
ADDER_INLINE void backward_input_tile(int64_t cout_g, const T* wt,
                                      const T* gpanel, int64_t ldg,
                                      const T (*xt)[bwd_nr<T>()],
                                      T (*dcol)[bwd_nr<T>()], int rows) {
  using V = typename Vec<T>::type;
  using M = typename Vec<T>::mask;
  constexpr int W = Vec<T>::width;
  V acc[MR][kBwdNV] = {}, xv[MR][kBwdNV];
  const T* wr[MR];
  for (int i = 0; i < MR; ++i) {
    const int row = std::min(i, rows - 1);
    wr[i] = wt + row * cout_g;
    for (int v = 0; v < kBwdNV; ++v) xv[i][v] = vload(xt[row] + v * W);
  }
  const V one = vsplat<T>(1), mone = vsplat<T>(-1), zero = {};
  for (int64_t t = 0; t < cout_g; ++t) {
    V gv[kBwdNV];
#pragma GCC unroll 4
    for (int v = 0; v < kBwdNV; ++v) gv[v] = vload(gpanel + t * ldg + v * W);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const V wi = vsplat(wr[i][t]);
#pragma GCC unroll 4
      for (int v = 0; v < kBwdNV; ++v) {
        V d = wi - xv[i][v];
        if (kSign) {
          d = (V)(((M)(d > zero) & (M)one) | ((M)(d < zero) & (M)mone));
        } else {
          d = d > one ? one : d;
          d = d < mone ? mone : d;
        }
        acc[i][v] += gv[v] * d;
      }
    }
  }
  for (int i = 0; i < rows; ++i) std::memcpy(dcol[i], acc[i], sizeof(acc[i]));
}

// One input-gradient task: sample n, group g, input channels [c0, c1) of
// the group. Owns dX(n, g * cin_g + [c0, c1)), so it writes without atomics.
// wt: filters as [groups][K][cout_g].
template <typename T, bool kSign>
ADDER_INLINE void backward_input_chunk_impl(const T* go, const T* x,
                                            const T* wt, T* gx,
                                            const Adder2dShape& s, int64_t n,
                                            int64_t g, int64_t c0, int64_t c1,
                                            T* gbuf) {
  constexpr int NR = bwd_nr<T>();
  const int64_t K = s.k(), L = s.l(), cout_g = s.cout_g(), T_ = s.taps();
  const int64_t HW = s.h * s.w;
  const T* xg = x + (n * s.c + g * s.cin_g()) * HW;
  T* gxg = gx + (n * s.c + g * s.cin_g()) * HW;
  const T* gog = go + (n * s.cout + g * cout_g) * L;
  const T* wg = wt + g * K * cout_g;
  std::fill(gxg + c0 * HW, gxg + c1 * HW, T(0));
  const int64_t r0 = c0 * T_, r1 = c1 * T_;  // patch rows owned
  for (int64_t l0 = 0; l0 < L; l0 += NR) {
    const int cols = (int)std::min<int64_t>(NR, L - l0);
    // g(t, l0 .. l0 + NR), zero-padded past L.
    for (int64_t t = 0; t < cout_g; ++t) {
      T* dst = gbuf + t * NR;
      std::memcpy(dst, gog + t * L + l0, cols * sizeof(T));
      std::fill(dst + cols, dst + NR, T(0));
    }
    // Output position -> input offset of tap (0, 0).
    int64_t hbase[NR], wbase[NR];
    for (int j = 0; j < NR; ++j) {
      const int64_t l = l0 + std::min(j, cols - 1);
      hbase[j] = (l / s.wout) * s.sh - s.ph;
      wbase[j] = (l % s.wout) * s.sw - s.pw;
    }
    for (int64_t r = r0; r < r1; r += kBwdMR) {
      const int rows = (int)std::min<int64_t>(kBwdMR, r1 - r);
      T xt[kBwdMR][NR], dcol[kBwdMR][NR];
      int64_t idx[kBwdMR][NR];  // -1 where the tap is padding
      for (int i = 0; i < rows; ++i) {
        const int64_t k = r + i, c = k / T_, tap = k % T_;
        const int64_t di = (tap / s.kw) * s.dh, dj = (tap % s.kw) * s.dw;
        for (int j = 0; j < NR; ++j) {
          const int64_t hi = hbase[j] + di, wi = wbase[j] + dj;
          const bool in = j < cols && hi >= 0 && hi < s.h && wi >= 0 && wi < s.w;
          idx[i][j] = in ? c * HW + hi * s.w + wi : -1;
          xt[i][j] = in ? xg[idx[i][j]] : T(0);
        }
      }
      if (rows == kBwdMR)
        backward_input_tile<T, kBwdMR, kSign>(cout_g, wg + r * cout_g, gbuf,
                                              NR, xt, dcol, rows);
      else
        for (int i = 0; i < rows; ++i)
          backward_input_tile<T, 1, kSign>(cout_g, wg + (r + i) * cout_g,
                                           gbuf, NR, xt + i, dcol + i, 1);
      for (int i = 0; i < rows; ++i)
        for (int j = 0; j < cols; ++j)
          if (idx[i][j] >= 0) gxg[idx[i][j]] += dcol[i][j];
    }
  }
}

// The same task bodies compiled for AVX2+FMA and for the baseline ISA.
#define ADDER_DEFINE_VARIANTS(SUFFIX, ATTR)                                  \
  template <typename T>                                                      \
  ATTR void forward_chunk_##SUFFIX(const T* x, const T* w, T* y,             \
                                   const Adder2dShape& s, int64_t n,         \
                                   int64_t g, int64_t l0, int64_t lc,        \
                                   T* panels) {                              \
    forward_chunk_impl<T>(x, w, y, s, n, g, l0, lc, panels);                 \
  }                                                                          \
  template <typename T, bool kSign>                                          \
  ATTR void backward_input_chunk_##SUFFIX(                                   \
      const T* go, const T* x, const T* w, T* gx, const Adder2dShape& s,     \
      int64_t n, int64_t g, int64_t c0, int64_t c1, T* gbuf) {               \
    backward_input_chunk_impl<T, kSign>(go, x, w, gx, s, n, g, c0, c1,       \
                                        gbuf);                               \
  }
#if defined(__x86_64__) && defined(__GNUC__)
ADDER_DEFINE_VARIANTS(avx2, __attribute__((target("avx2,fma"))))
bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") &&
                          __builtin_cpu_supports("fma");
  return has;
}
#else
bool cpu_has_avx2() { return false; }
#endif
ADDER_DEFINE_VARIANTS(generic, )

void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "adder2d (CPU kernel): ", name,
              " is on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
              "adder2d (CPU kernel): ", name, " has dtype ", t.scalar_type(),
              "; the CPU kernels take float32 or float64");
}

at::Tensor adder2d_forward_cpu(const at::Tensor& input_,
                               const at::Tensor& weight_,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups) {
  const Adder2dShape s =
      make_shape(input_, weight_, stride, padding, dilation, groups);
  check_cpu(input_, "input");
  const auto input = input_.contiguous();
  const auto weight = weight_.contiguous();
  auto out = at::empty({s.n, s.cout, s.hout, s.wout}, input.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "adder2d_forward_cpu", [&] {
    constexpr int NR = fwd_nr<scalar_t>();
    const int64_t K = s.k(), L = s.l();
    // Positions per task: enough work per task, panel buffer ~<= 1 MiB.
    int64_t lc = (1 << 20) / (int64_t)sizeof(scalar_t) / K;
    lc = std::max<int64_t>(NR, std::min<int64_t>(512, lc / NR * NR));
    const int64_t chunks = (L + lc - 1) / lc;
    const auto fn = cpu_has_avx2() ? forward_chunk_avx2<scalar_t>
                                   : forward_chunk_generic<scalar_t>;
    const scalar_t* x = input.data_ptr<scalar_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    at::parallel_for(0, s.n * s.groups * chunks, 1, [&](int64_t b, int64_t e) {
      std::vector<scalar_t> panels(((lc + NR - 1) / NR) * NR * K);
      for (int64_t task = b; task < e; ++task) {
        const int64_t chunk = task % chunks, ng = task / chunks;
        const int64_t l0 = chunk * lc;
        fn(x, w, y, s, ng / s.groups, ng % s.groups, l0,
           std::min(lc, L - l0), panels.data());
      }
    });
  });
  return out;
}

at::Tensor adder2d_backward_input_cpu(const at::Tensor& grad_output_,
                                      const at::Tensor& input_,
                                      const at::Tensor& weight_,
                                      at::IntArrayRef stride,
                                      at::IntArrayRef padding,
                                      at::IntArrayRef dilation, int64_t groups,
                                      bool sign_grad) {
  const Adder2dShape s =
      make_shape(input_, weight_, stride, padding, dilation, groups);
  check_cpu(input_, "input");
  check_grad_output(grad_output_, s, input_);
  const auto input = input_.contiguous();
  const auto weight_t = weight_.reshape({groups, s.cout_g(), s.k()})
                            .transpose(1, 2).contiguous();
  const auto grad_output = grad_output_.contiguous();
  auto grad_input = at::empty_like(input);
  if (grad_input.numel() == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "adder2d_bwd_input_cpu", [&] {
    constexpr int NR = bwd_nr<scalar_t>();
    // Channel blocks: enough tasks to fill the threads, whole channels each.
    const int64_t cin_g = s.cin_g();
    const int64_t want = 4 * at::get_num_threads();
    const int64_t per = std::max<int64_t>(
        1, cin_g / std::max<int64_t>(1, want / std::max<int64_t>(1, s.n * s.groups)));
    const int64_t blocks = (cin_g + per - 1) / per;
    const bool avx2 = cpu_has_avx2();
    const auto fn =
        sign_grad ? (avx2 ? backward_input_chunk_avx2<scalar_t, true>
                          : backward_input_chunk_generic<scalar_t, true>)
                  : (avx2 ? backward_input_chunk_avx2<scalar_t, false>
                          : backward_input_chunk_generic<scalar_t, false>);
    const scalar_t* go = grad_output.data_ptr<scalar_t>();
    const scalar_t* x = input.data_ptr<scalar_t>();
    const scalar_t* w = weight_t.data_ptr<scalar_t>();
    scalar_t* gx = grad_input.data_ptr<scalar_t>();
    at::parallel_for(0, s.n * s.groups * blocks, 1, [&](int64_t b, int64_t e) {
      std::vector<scalar_t> gbuf(s.cout_g() * NR);
      for (int64_t task = b; task < e; ++task) {
        const int64_t blk = task % blocks, ng = task / blocks;
        const int64_t c0 = blk * per, c1 = std::min(cin_g, c0 + per);
        fn(go, x, w, gx, s, ng / s.groups, ng % s.groups, c0, c1, gbuf.data());
      }
    });
  });
  return grad_input;
}

}  // namespace
}  // namespace adder_det

TORCH_LIBRARY_IMPL(adder_det, CPU, m) {
  m.impl("adder2d", &adder_det::adder2d_forward_cpu);
  m.impl("adder2d_backward_input", &adder_det::adder2d_backward_input_cpu);
}
