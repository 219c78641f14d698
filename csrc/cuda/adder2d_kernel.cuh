// Launchers of the CUDA adder2d kernels. Plain pointers, sizes and a stream:
// no torch headers, so nvcc alone compiles adder2d_kernel.cu.
// T is float, double, __half or __nv_bfloat16 (accumulation in float, or
// double for double). Tensors are contiguous NCHW / (Cout, C/g, kh, kw).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "../common/adder2d_shape.h"

namespace adder_det {

// Where a call's grid would not fill the GPU (sm_count multiprocessors), the
// reduction is split over blocks. float/double partial sums are added into
// the output atomically unless deterministic (then, and for half types, they
// go to a workspace of this many bytes, 0 if none is needed, which the
// caller allocates and passes in, and are summed in a fixed order).
template <typename T>
size_t adder2d_forward_cuda_workspace(const Adder2dShape& s, int sm_count,
                                      bool deterministic);
template <typename T>
size_t adder2d_backward_input_cuda_workspace(const Adder2dShape& s,
                                             int sm_count, bool deterministic);

// y(n, t, oh, ow) = -sum |x_patch - w(t)|
template <typename T>
cudaError_t adder2d_forward_cuda(const T* x, const T* w, T* y,
                                 const Adder2dShape& s, void* workspace,
                                 int sm_count, bool deterministic,
                                 cudaStream_t stream);

// gx(n, c, h, w) = sum over (t, tap) hitting (h, w) of
//                  g(n, t, oh, ow) * G(w(t, c, tap) - x(n, c, h, w))
// wt: the filters as (groups, kh * kw, Cout / groups, C / groups).
// sign_fast_mode (the sign rule without its per-term tie check, ties taken
// back afterwards; float and double, not deterministic): 0 by the layer's
// shape, 1 wherever allowed, 2 never.
template <typename T>
cudaError_t adder2d_backward_input_cuda(const T* grad_out, const T* x,
                                        const T* wt, T* grad_in,
                                        const Adder2dShape& s, bool sign_grad,
                                        int sign_fast_mode, void* workspace,
                                        int sm_count,
                                        bool deterministic,
                                        cudaStream_t stream);

// Whether adder2d_backward_input_cuda takes the fast sign rule for this
// call (the same rule, for benchmarks and tests).
template <typename T>
bool adder2d_sign_fast_cuda(const Adder2dShape& s, bool deterministic,
                            int sign_fast_mode);

}  // namespace adder_det
