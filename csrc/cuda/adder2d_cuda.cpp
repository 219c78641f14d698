// CUDA backend of the adder2d ops: checks, contiguous copies, and the call
// into the kernels of adder2d_kernel.cu with raw pointers and the stream.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include "../adder2d.h"
#include "../cpu/path_mode.h"
#include "adder2d_kernel.cuh"

namespace adder_det {
namespace {

// at::Half / at::BFloat16 share the layout of CUDA's __half / __nv_bfloat16.
template <typename T> struct CudaType { using type = T; };
template <> struct CudaType<at::Half> { using type = __half; };
template <> struct CudaType<at::BFloat16> { using type = __nv_bfloat16; };

template <typename T>
const typename CudaType<T>::type* cptr(const at::Tensor& t) {
  return reinterpret_cast<const typename CudaType<T>::type*>(t.data_ptr<T>());
}
template <typename T>
typename CudaType<T>::type* mptr(at::Tensor& t) {
  return reinterpret_cast<typename CudaType<T>::type*>(t.data_ptr<T>());
}

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), "adder2d (CUDA kernel): ", name, " is on ",
              t.device());
}

// Multiprocessors of the current device: the kernels split a reduction
// when their grid would leave some idle.
int sm_count(const at::Tensor& t) {
  int n = 0;
  const cudaError_t err = cudaDeviceGetAttribute(
      &n, cudaDevAttrMultiProcessorCount, t.device().index());
  TORCH_CHECK(err == cudaSuccess, "adder2d: cannot query the device: ",
              cudaGetErrorString(err));
  return n;
}

// The kernels' split-K workspace (accumulator type), or an empty tensor.
at::Tensor workspace(size_t bytes, const at::Tensor& like) {
  return at::empty({(int64_t)bytes}, like.options().dtype(at::kByte));
}

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "adder2d: ", what, " kernel launch failed: ",
              cudaGetErrorString(err));
}

at::Tensor adder2d_forward_cuda_op(const at::Tensor& input_,
                                   const at::Tensor& weight_,
                                   at::IntArrayRef stride,
                                   at::IntArrayRef padding,
                                   at::IntArrayRef dilation, int64_t groups) {
  const Adder2dShape s =
      make_shape(input_, weight_, stride, padding, dilation, groups);
  check_cuda(input_, "input");
  const c10::cuda::CUDAGuard guard(input_.device());
  const auto input = input_.contiguous();
  const auto weight = weight_.contiguous();
  auto out = at::empty({s.n, s.cout, s.hout, s.wout}, input.options());
  if (out.numel() == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int sms = sm_count(input);
  // Split reductions add partial sums atomically unless deterministic
  // algorithms are asked for (torch.use_deterministic_algorithms).
  const bool deterministic = at::globalContext().deterministicAlgorithms();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "adder2d_forward_cuda",
      [&] {
        using T = typename CudaType<scalar_t>::type;
        auto ws = workspace(
            adder2d_forward_cuda_workspace<T>(s, sms, deterministic), input);
        check_launch(adder2d_forward_cuda(cptr<scalar_t>(input),
                                          cptr<scalar_t>(weight),
                                          mptr<scalar_t>(out), s,
                                          ws.data_ptr(), sms, deterministic,
                                          stream),
                     "forward");
      });
  return out;
}

// The launchers take set_sign_fast_mode's switch as its PathMode value.
static_assert(kModeAuto == 0 && kModeAlways == 1 && kModeNever == 2,
              "adder2d_kernel.cuh: sign_fast_mode 0 auto, 1 always, 2 never");

at::Tensor adder2d_backward_input_cuda_op(const at::Tensor& grad_output_,
                                          const at::Tensor& input_,
                                          const at::Tensor& weight_,
                                          at::IntArrayRef stride,
                                          at::IntArrayRef padding,
                                          at::IntArrayRef dilation,
                                          int64_t groups, bool sign_grad) {
  const Adder2dShape s =
      make_shape(input_, weight_, stride, padding, dilation, groups);
  check_cuda(input_, "input");
  check_grad_output(grad_output_, s, input_);
  const c10::cuda::CUDAGuard guard(input_.device());
  const auto input = input_.contiguous();
  const auto grad_output = grad_output_.contiguous();
  auto grad_input = at::empty_like(input);
  if (grad_input.numel() == 0) return grad_input;
  // Filters as (groups, taps, Cout/g, C/g): the kernel reads a row of
  // channels for one (tap, filter) contiguously.
  const auto wt = weight_.reshape({s.groups, s.cout_g(), s.cin_g(), s.taps()})
                      .permute({0, 3, 1, 2})
                      .contiguous();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int sms = sm_count(input);
  // Split reductions add partial sums atomically unless deterministic
  // algorithms are asked for (torch.use_deterministic_algorithms).
  const bool deterministic = at::globalContext().deterministicAlgorithms();
  const int fast_mode = sign_fast_mode_value();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "adder2d_bwd_input_cuda",
      [&] {
        using T = typename CudaType<scalar_t>::type;
        auto ws = workspace(adder2d_backward_input_cuda_workspace<T>(
                                s, sms, deterministic),
                            input);
        check_launch(adder2d_backward_input_cuda(
                         cptr<scalar_t>(grad_output), cptr<scalar_t>(input),
                         cptr<scalar_t>(wt), mptr<scalar_t>(grad_input), s,
                         sign_grad, fast_mode, ws.data_ptr(), sms,
                         deterministic,
                         stream),
                     "input-gradient");
      });
  return grad_input;
}

}  // namespace

bool sign_fast_cuda_runs(const at::Tensor& input, const at::Tensor& weight,
                         at::IntArrayRef stride, at::IntArrayRef padding,
                         at::IntArrayRef dilation, int64_t groups) {
  const Adder2dShape s =
      make_shape(input, weight, stride, padding, dilation, groups);
  const bool deterministic = at::globalContext().deterministicAlgorithms();
  bool runs = false;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "sign_fast_cuda_runs",
      [&] {
        runs = adder2d_sign_fast_cuda<typename CudaType<scalar_t>::type>(
            s, deterministic, sign_fast_mode_value());
      });
  return runs;
}

}  // namespace adder_det

TORCH_LIBRARY_IMPL(adder_det, CUDA, m) {
  m.impl("adder2d", &adder_det::adder2d_forward_cuda_op);
  m.impl("adder2d_backward_input", &adder_det::adder2d_backward_input_cuda_op);
}
