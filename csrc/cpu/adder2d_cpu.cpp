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

// The kernels, compiled for AVX2+FMA and for the baseline ISA.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "adder2d_cpu_kernels.h"
}  // namespace avx2
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
namespace generic {
#include "adder2d_cpu_kernels.h"
}  // namespace generic

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
    at::parallel_for(0, s.n * s.groups * chunks, 1, [&](int64_t b, int64_t e) {
      scalar_t* panels = scratch<scalar_t>(((lc + NR - 1) / NR) * NR * K);
      for (int64_t task = b; task < e; ++task) {
        const int64_t chunk = task % chunks, ng = task / chunks;
        const int64_t l0 = chunk * lc;
        fn(x, w, y, s, ng / s.groups, ng % s.groups, l0,
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
    constexpr int NR = generic::bwd_nr<scalar_t>();
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
      scalar_t* gbuf = scratch<scalar_t>(s.cout_g() * NR);
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
