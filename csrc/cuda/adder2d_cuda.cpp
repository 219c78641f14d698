// CUDA backend of the adder2d ops: checks, contiguous copies, and the call
// into the kernels of adder2d_kernel.cu with raw pointers and the stream.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include "../adder2d.h"
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
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "adder2d_forward_cuda",
      [&] {
        check_launch(adder2d_forward_cuda(cptr<scalar_t>(input),
                                          cptr<scalar_t>(weight),
                                          mptr<scalar_t>(out), s, stream),
                     "forward");
      });
  return out;
}

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
  const auto weight = weight_.contiguous();
  const auto grad_output = grad_output_.contiguous();
  auto grad_input = at::empty_like(input);
  if (grad_input.numel() == 0) return grad_input;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "adder2d_bwd_input_cuda",
      [&] {
        check_launch(adder2d_backward_input_cuda(
                         cptr<scalar_t>(grad_output), cptr<scalar_t>(input),
                         cptr<scalar_t>(weight), mptr<scalar_t>(grad_input),
                         s, sign_grad, stream),
                     "input-gradient");
      });
  return grad_input;
}

}  // namespace
}  // namespace adder_det

TORCH_LIBRARY_IMPL(adder_det, CUDA, m) {
  m.impl("adder2d", &adder_det::adder2d_forward_cuda_op);
  m.impl("adder2d_backward_input", &adder_det::adder2d_backward_input_cuda_op);
}
