// Launchers of the CUDA adder2d kernels. Plain pointers, sizes and a stream:
// no torch headers, so nvcc alone compiles adder2d_kernel.cu.
// T is float, double, __half or __nv_bfloat16 (accumulation in float, or
// double for double). Tensors are contiguous NCHW / (Cout, C/g, kh, kw).
#pragma once
#include <cuda_runtime.h>

#include "../common/adder2d_shape.h"

namespace adder_det {

// y(n, t, oh, ow) = -sum |x_patch - w(t)|
template <typename T>
cudaError_t adder2d_forward_cuda(const T* x, const T* w, T* y,
                                 const Adder2dShape& s, cudaStream_t stream);

// gx(n, c, h, w) = sum over (t, tap) hitting (h, w) of
//                  g(n, t, oh, ow) * G(w(t, c, tap) - x(n, c, h, w))
template <typename T>
cudaError_t adder2d_backward_input_cuda(const T* grad_out, const T* x,
                                        const T* w, T* grad_in,
                                        const Adder2dShape& s, bool sign_grad,
                                        cudaStream_t stream);

}  // namespace adder_det
