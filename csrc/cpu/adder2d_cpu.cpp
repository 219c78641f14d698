// CPU kernels of adder2d: forward and input gradient.
//
// Both are L1 "GEMMs" with register-blocked micro-kernels written with GCC
// vector extensions (8 floats / 4 doubles a vector), compiled twice: for
// AVX2+FMA and for the baseline ISA, picked at run time by CPU capability.
//
// forward:  per task = (sample, group, chunk of LC output positions), the
//   input patches of the chunk are packed into NR-wide panels [K][NR]; then
//   for K-blocks of KC, MR filters x NR positions are accumulated in
//   registers: acc += 2 min(w, x), and the output is that minus the patch
//   and filter sums (= -sum |w - x| for finite values, after shifting both
//   by per-row filter means; chunks holding inf or NaN use acc += |w - x|).
//   Memory: one K x LC panel buffer per task.
// input gradient: per task = (sample, group, block of input channels) the
//   task owns those channels' planes of dX, so the col2im scatter needs no
//   atomics. Each MR x NR tile keeps its patch values in registers and
//   reduces over the output channels: acc += g * G(w - x).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../adder2d.h"

#define ADDER_INLINE inline __attribute__((always_inline))

namespace adder_det {
namespace {

// The kernels, compiled for AVX2+FMA and for the baseline ISA.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define ADDER_ISA_AVX2 1
namespace avx2 {
#include "adder2d_cpu_kernels.h"
}  // namespace avx2
#undef ADDER_ISA_AVX2
#pragma GCC pop_options
bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") &&
                          __builtin_cpu_supports("fma");
  return has;
}
#define ADDER_HAVE_AVX2 1
#else
bool cpu_has_avx2() { return false; }
#endif
#define ADDER_ISA_AVX2 0
namespace generic {
#include "adder2d_cpu_kernels.h"
}  // namespace generic
#undef ADDER_ISA_AVX2

template <typename T>
auto forward_chunk_fn() {
#ifdef ADDER_HAVE_AVX2
  if (cpu_has_avx2()) return &avx2::forward_chunk_impl<T>;
#endif
  return &generic::forward_chunk_impl<T>;
}

template <typename T, bool kSign>
auto backward_input_chunk_fn() {
#ifdef ADDER_HAVE_AVX2
  if (cpu_has_avx2()) return &avx2::backward_input_chunk_impl<T, kSign>;
#endif
  return &generic::backward_input_chunk_impl<T, kSign>;
}

// Per-thread scratch memory, kept between calls: a fresh multi-megabyte
// buffer per call costs page faults that rival the arithmetic.
template <typename T>
T* scratch(int64_t count) {
  thread_local std::vector<char> buffer;
  const size_t bytes = count * sizeof(T) + 64;
  if (buffer.size() < bytes) {
    buffer.clear();
    buffer.shrink_to_fit();
    buffer.resize(bytes);
  }
  return reinterpret_cast<T*>(buffer.data() +
                              (64 - reinterpret_cast<uintptr_t>(buffer.data()) % 64) % 64);
}

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
    constexpr int NR = generic::fwd_nr<scalar_t>();
    const int64_t K = s.k(), L = s.l();
    // Positions per task: enough work per task, panel buffer ~<= 1 MiB.
    int64_t lc = (1 << 20) / (int64_t)sizeof(scalar_t) / K;
    lc = std::max<int64_t>(NR, std::min<int64_t>(512, lc / NR * NR));
    const int64_t chunks = (L + lc - 1) / lc;
    const auto fn = forward_chunk_fn<scalar_t>();
    const scalar_t* x = input.data_ptr<scalar_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    // The min form (see the kernels) cancels badly when inputs and filters
    // share a large offset, so both are shifted by the same per-patch-row
    // constant, the mean over a group's filters of that row: |x - w| =
    // |(x - c_k) - (w - c_k)|. Then the shifted filters' sums. With any
    // inf/NaN filter value none of this: the direct form runs everywhere.
    const int64_t cout_g = s.cout_g();
    std::vector<double> csum(s.groups * K, 0.);
    std::vector<scalar_t> shift(s.groups * K), wshift(s.cout * K),
        wsum(s.cout);
    at::parallel_for(0, K, 256, [&](int64_t k0, int64_t k1) {
      for (int64_t g = 0; g < s.groups; ++g) {
        double* c = csum.data() + g * K;
        for (int64_t t = g * cout_g; t < (g + 1) * cout_g; ++t)
          for (int64_t k = k0; k < k1; ++k) c[k] += w[t * K + k];
        for (int64_t k = k0; k < k1; ++k)
          shift[g * K + k] = (scalar_t)(c[k] / cout_g);
      }
    });
    at::parallel_for(0, s.cout, 16, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        double acc = 0;
        const scalar_t* c = shift.data() + (t / cout_g) * K;
        for (int64_t k = 0; k < K; ++k) {
          wshift[t * K + k] = w[t * K + k] - c[k];
          acc += wshift[t * K + k];
        }
        wsum[t] = (scalar_t)acc;
      }
    });
    // An inf/NaN filter value makes its row's shift and so every sum of its
    // group non-finite; finite filters give finite double sums.
    bool finite = true;
    for (int64_t t = 0; t < s.cout && finite; ++t)
      finite = std::isfinite(wsum[t]);
    if (finite) w = wshift.data();
    const scalar_t* ws = finite ? wsum.data() : nullptr;
    const scalar_t* sh = finite ? shift.data() : nullptr;
    at::parallel_for(0, s.n * s.groups * chunks, 1, [&](int64_t b, int64_t e) {
      const int64_t np = (lc + NR - 1) / NR;
      scalar_t* panels = scratch<scalar_t>(np * NR * K + np * NR);
      for (int64_t task = b; task < e; ++task) {
        const int64_t chunk = task % chunks, ng = task / chunks;
        const int64_t l0 = chunk * lc;
        fn(x, w, ws, sh, y, s, ng / s.groups, ng % s.groups, l0,
           std::min(lc, L - l0), panels);
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
    // Channel blocks: enough tasks to fill the threads, whole channels each.
    const int64_t cin_g = s.cin_g();
    const int64_t want = 4 * at::get_num_threads();
    const int64_t per = std::max<int64_t>(
        1, cin_g / std::max<int64_t>(1, want / std::max<int64_t>(1, s.n * s.groups)));
    const int64_t blocks = (cin_g + per - 1) / per;
    const auto fn = sign_grad ? backward_input_chunk_fn<scalar_t, true>()
                              : backward_input_chunk_fn<scalar_t, false>();
    const scalar_t* go = grad_output.data_ptr<scalar_t>();
    const scalar_t* x = input.data_ptr<scalar_t>();
    const scalar_t* w = weight_t.data_ptr<scalar_t>();
    scalar_t* gx = grad_input.data_ptr<scalar_t>();
    at::parallel_for(0, s.n * s.groups * blocks, 1, [&](int64_t b, int64_t e) {
      // g panel of NR columns (the hardtanh rule has the wider tiles)
      scalar_t* gbuf = scratch<scalar_t>(s.cout_g() * generic::bwd_nr<scalar_t, false>());
      for (int64_t task = b; task < e; ++task) {
        const int64_t blk = task % blocks, ng = task / blocks;
        const int64_t c0 = blk * per, c1 = std::min(cin_g, c0 + per);
        fn(go, x, w, gx, s, ng / s.groups, ng % s.groups, c0, c1, gbuf);
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
