// The adder2d operator schemas (the single source of truth), the argument
// checks every backend shares, and the device-generic filter gradient.
//
//   adder2d(input, weight, stride, padding, dilation, groups)
//       Y(n,t,l) = -sum_k |X_col(n,k,l) - F(t,k)|
//   adder2d_backward_input(grad_output, input, weight, ..., sign_grad)
//       dX_col(n,k,l) = sum_t g(n,t,l) * G(F(t,k) - X_col(n,k,l)),
//       G = sign if sign_grad else hardtanh; folded back onto X
//   adder2d_backward_weight(grad_output, input, weight, ...)
//       dF(t,k) = sum_{n,l} g(n,t,l) * (X_col(n,k,l) - F(t,k))
//
// Autograd (with the papers' adaptive scaling) lives in Python:
// adder_det/ops/adder2d.py.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <torch/extension.h>
#include <torch/library.h>

#include "adder2d.h"

namespace adder_det {

Adder2dShape make_shape(const at::Tensor& input, const at::Tensor& weight,
                        at::IntArrayRef stride, at::IntArrayRef padding,
                        at::IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK(input.dim() == 4, "adder2d: input must be 4-D, got shape ",
              input.sizes());
  TORCH_CHECK(weight.dim() == 4, "adder2d: weight must be 4-D, got shape ",
              weight.sizes());
  TORCH_CHECK(input.device() == weight.device(), "adder2d: input is on ",
              input.device(), " but weight on ", weight.device());
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(),
              "adder2d: input dtype ", input.scalar_type(),
              " differs from weight dtype ", weight.scalar_type());
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 &&
                  dilation.size() == 2,
              "adder2d: stride, padding and dilation must have 2 values");
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0, "adder2d: stride must be > 0");
  TORCH_CHECK(padding[0] >= 0 && padding[1] >= 0,
              "adder2d: padding must be >= 0");
  TORCH_CHECK(dilation[0] > 0 && dilation[1] > 0,
              "adder2d: dilation must be > 0");
  TORCH_CHECK(groups > 0, "adder2d: groups must be > 0");
  Adder2dShape s;
  s.n = input.size(0), s.c = input.size(1), s.h = input.size(2),
  s.w = input.size(3);
  s.cout = weight.size(0), s.kh = weight.size(2), s.kw = weight.size(3);
  s.sh = stride[0], s.sw = stride[1], s.ph = padding[0], s.pw = padding[1];
  s.dh = dilation[0], s.dw = dilation[1], s.groups = groups;
  TORCH_CHECK(s.c % groups == 0 && s.cout % groups == 0, "adder2d: groups=",
              groups, " must divide input channels (", s.c,
              ") and output channels (", s.cout, ")");
  TORCH_CHECK(weight.size(1) * groups == s.c, "adder2d: input has ", s.c,
              " channels but weight ", weight.sizes(), " with groups=", groups,
              " expects ", weight.size(1) * groups);
  s.hout = (s.h + 2 * s.ph - s.dh * (s.kh - 1) - 1) / s.sh + 1;
  s.wout = (s.w + 2 * s.pw - s.dw * (s.kw - 1) - 1) / s.sw + 1;
  TORCH_CHECK(s.h + 2 * s.ph >= s.dh * (s.kh - 1) + 1 &&
                  s.w + 2 * s.pw >= s.dw * (s.kw - 1) + 1,
              "adder2d: kernel ", weight.sizes().slice(2),
              " (dilated) is larger than the padded input");
  return s;
}

void check_grad_output(const at::Tensor& grad_output, const Adder2dShape& s,
                       const at::Tensor& input) {
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({s.n, s.cout, s.hout,
                                                      s.wout}),
              "adder2d: grad_output has shape ", grad_output.sizes(),
              ", expected ", at::IntArrayRef({s.n, s.cout, s.hout, s.wout}));
  TORCH_CHECK(grad_output.device() == input.device() &&
                  grad_output.scalar_type() == input.scalar_type(),
              "adder2d: grad_output must match input's dtype and device");
}

namespace {

// Filter gradient through the identity (PAPERS.md section 1)
//   sum_{n,l} g(t,n,l) (X(k,n,l) - F(t,k)) = conv_weight_grad(g, X)(t,k)
//                                          - F(t,k) * sum_{n,l} g(t,n,l),
// so the heavy part runs on the vendor convolution (oneDNN / cuDNN), or on
// the CPU for unpadded 1x1 layers as matmuls (csrc/cpu/filter_grad_cpu.cpp).
// Accumulation is FP32 or better: half inputs are widened, and TF32 is
// switched off for the call (the subtraction would amplify its error).
at::Tensor adder2d_backward_weight(const at::Tensor& grad_output,
                                   const at::Tensor& input,
                                   const at::Tensor& weight,
                                   at::IntArrayRef stride,
                                   at::IntArrayRef padding,
                                   at::IntArrayRef dilation, int64_t groups) {
  const Adder2dShape s =
      make_shape(input, weight, stride, padding, dilation, groups);
  check_grad_output(grad_output, s, input);
  if (s.n == 0) return at::zeros_like(weight);
  const bool widen = input.scalar_type() == at::kHalf ||
                     input.scalar_type() == at::kBFloat16;
  const auto g = widen ? grad_output.to(at::kFloat) : grad_output;
  const auto x = widen ? input.to(at::kFloat) : input;
  const auto f = widen ? weight.to(at::kFloat) : weight;
  at::Tensor gx = matmul_filter_grad_term(g, x, s);
  if (!gx.defined()) {
    auto& ctx = at::globalContext();
    const bool tf32 = ctx.allowTF32CuDNN();
    ctx.setAllowTF32CuDNN(false);
    try {
      gx = std::get<1>(at::convolution_backward(
          g, x, f, std::nullopt, stride, padding, dilation,
          /*transposed=*/false, /*output_padding=*/{0, 0}, groups,
          {false, true, false}));
    } catch (...) {
      ctx.setAllowTF32CuDNN(tf32);
      throw;
    }
    ctx.setAllowTF32CuDNN(tf32);
  }
  // In place on the fresh gx: a temporary of the filters' size per term
  // costs more than the arithmetic (page faults on each new buffer).
  gx.addcmul_(f, g.sum({0, 2, 3}).view({-1, 1, 1, 1}), -1);
  return widen ? gx.to(weight.scalar_type()) : gx;
}

}  // namespace

bool built_with_cuda() {
#ifdef ADDER_DET_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace adder_det

TORCH_LIBRARY(adder_det, m) {
  m.def(
      "adder2d(Tensor input, Tensor weight, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups) -> Tensor");
  m.def(
      "adder2d_backward_input(Tensor grad_output, Tensor input, "
      "Tensor weight, int[2] stride, int[2] padding, int[2] dilation, "
      "int groups, bool sign_grad) -> Tensor");
  m.def(
      "adder2d_backward_weight(Tensor grad_output, Tensor input, "
      "Tensor weight, int[2] stride, int[2] padding, int[2] dilation, "
      "int groups) -> Tensor");
}

TORCH_LIBRARY_IMPL(adder_det, CompositeExplicitAutograd, m) {
  m.impl("adder2d_backward_weight", &adder_det::adder2d_backward_weight);
}

namespace {
// A query of which CPU path a call takes, from Python: its stride, padding
// and dilation come as lists (IntArrayRef has no pybind caster).
using PathQuery = bool (*)(const at::Tensor&, const at::Tensor&,
                           at::IntArrayRef, at::IntArrayRef, at::IntArrayRef,
                           int64_t);
template <PathQuery F>
bool path_query(const at::Tensor& input, const at::Tensor& weight,
                std::vector<int64_t> stride, std::vector<int64_t> padding,
                std::vector<int64_t> dilation, int64_t groups) {
  return F(input, weight, stride, padding, dilation, groups);
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "adder_det compiled kernels; the ops are torch.ops.adder_det.*";
  m.def("built_with_cuda", &adder_det::built_with_cuda,
        "Whether the CUDA kernels were compiled in.");
  m.def("sign_fast_cpu_runs", &path_query<&adder_det::sign_fast_cpu_runs>,
        "Whether the CPU input gradient of this call (sign rule) may take "
        "the sign rule's fast tile (by the mode and, in auto, the shape, "
        "the active instruction set and the CPU).");
  m.def("sign_fast_mode", &adder_det::sign_fast_mode,
        "Whether the CPU and CUDA input gradients take the sign rule's fast "
        "tile by their thresholds (auto), on every layer (always) or never.");
#ifdef ADDER_DET_WITH_CUDA
  m.def("sign_fast_cuda_runs", &path_query<&adder_det::sign_fast_cuda_runs>,
        "Whether the CUDA input gradient of this call takes the sign rule's "
        "fast kernel (by the mode, the shape, the dtype and deterministic "
        "algorithms). CUDA builds only.");
#endif
  m.def("set_sign_fast_mode", &adder_det::set_sign_fast_mode,
        "Set the sign rule's fast-tile mode: auto, always or never; returns "
        "the previous one. For benchmarks, between calls.");
  m.def("min_add_mode", &adder_det::min_add_mode,
        "Whether the CPU forward's min form accumulates min(w, x) by adds "
        "(auto: on AMD Zen 1 cores and in the baseline build), always or "
        "never (FMAs of 2 min(w, x)); "
        "the sparse forward's min terms likewise (else FMAs of min * 1); "
        "the same values either way.");
  m.def("set_min_add_mode", &adder_det::set_min_add_mode,
        "Set the min form's accumulation mode: auto, always or never; "
        "returns the previous one. For tests and benchmarks, between calls.");
  m.def("min_adds", &adder_det::min_adds,
        "Whether the CPU forward's min form accumulates by adds now.");
  m.def("half_width_tile_mode", &adder_det::half_width_tile_mode,
        "Whether the AVX-512 CPU forward tiles compute in 256-bit vectors "
        "(auto: on AMD Zen 4 cores), always or never; the same values "
        "either way.");
  m.def("set_half_width_tile_mode", &adder_det::set_half_width_tile_mode,
        "Set the AVX-512 forward tiles' width mode: auto, always or never; "
        "returns the previous one. For tests and benchmarks, between calls.");
  m.def("half_width_tile", &adder_det::half_width_tile,
        "Whether the CPU forward tiles compute in 256-bit vectors now "
        "(AVX-512 kernels active and the mode on).");
  m.def("rows_mode", &adder_det::rows_mode,
        "Whether the CPU forward and input gradient run by rows (vectors "
        "along the reduction, the filters read as they are) on maps of few "
        "positions (auto), on every layer (always) or never.");
  m.def("set_rows_mode", &adder_det::set_rows_mode,
        "Set the by-rows mode: auto, always or never; returns the previous "
        "one. For tests and benchmarks, between calls.");
  m.def("rows_forward_runs", &path_query<&adder_det::rows_forward_runs>,
        "Whether the CPU forward of adder2d(input, weight, stride, padding, "
        "dilation, groups) would run by rows (mode, shape).");
  m.def("rows_input_grad_runs",
        &path_query<&adder_det::rows_input_grad_runs>,
        "Whether the CPU input gradient of adder2d(input, weight, stride, "
        "padding, dilation, groups) would run by rows (mode, shape, ISA).");
  m.def("matmul_filter_grad_mode", &adder_det::matmul_filter_grad_mode,
        "Whether the CPU filter gradient of unpadded 1x1 layers runs as "
        "matmuls (auto: groups == 1), also grouped ones (always) or never "
        "(the convolution weight gradient, as other layers).");
  m.def("set_matmul_filter_grad_mode",
        &adder_det::set_matmul_filter_grad_mode,
        "Set the filter gradient's matmul mode: auto, always or never; "
        "returns the previous one. For tests and benchmarks, between calls.");
  m.def("matmul_filter_grad_runs",
        &path_query<&adder_det::matmul_filter_grad_runs>,
        "Whether the filter gradient of adder2d(input, weight, stride, "
        "padding, dilation, groups) would run as matmuls (mode, shape, "
        "device).");
  m.def("sparse_forward_mode", &adder_det::sparse_forward_mode,
        "Whether the CPU forward skips a non-negative input's zeros by its "
        "thresholds (auto), wherever the input allows (always) or never.");
  m.def("set_sparse_forward_mode", &adder_det::set_sparse_forward_mode,
        "Set the sparse forward's mode: auto, always or never; returns the "
        "previous one. For tests and benchmarks, between calls.");
  m.def("sparse_forward_tried", &path_query<&adder_det::sparse_forward_tried>,
        "Whether the CPU forward of adder2d(input, weight, stride, padding, "
        "dilation, groups) would try skipping the input's zeros (mode, shape, "
        "a sample of the input).");
  m.def("cpu_isa", &adder_det::cpu_isa,
        "The instruction set the CPU kernels run now: avx512, avx2 or "
        "generic.");
  m.def("cpu_isas", &adder_det::cpu_isas,
        "The instruction sets this CPU can run the kernels with, best first.");
  m.def("set_cpu_isa", &adder_det::set_cpu_isa, "Run the CPU kernels with "
        "this instruction set (one of cpu_isas()); returns the previous one. "
        "For tests and benchmarks, between calls.");
}
