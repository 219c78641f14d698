// CUDA adder2d launchers: plan a call (tiles.cuh), launch its kernel and,
// where the reduction was split, the reduction of the partial sums.
#include "adder2d_kernel.cuh"
#include "adder2d_tiles.cuh"

namespace adder_det {
namespace {
using namespace tiles;

// Before the kernels: check the plan, pick the kernels' workspace (none
// where they add partial sums atomically) and zero the output they add into.
template <typename T>
cudaError_t prepare(const Plan& p, T* out, void* workspace,
                    cudaStream_t stream, typename Acc<T>::type** ws) {
  if (!plan_fits(p)) return cudaErrorInvalidConfiguration;
  *ws = p.atomic ? nullptr : static_cast<typename Acc<T>::type*>(workspace);
  if (p.splits == 1) return cudaSuccess;
  if (!p.atomic)
    return *ws ? cudaSuccess : cudaErrorInvalidValue;
  return cudaMemsetAsync(out, 0, p.out_numel * sizeof(T), stream);
}

// After them: check the launch, sum a workspace's partial sums into out.
template <typename T>
cudaError_t finish_splits(const Plan& p, void* ws, T* out, float scale,
                          cudaStream_t stream) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || p.splits == 1 || p.atomic) return err;
  const int64_t blocks = std::min<int64_t>((p.out_numel + 255) / 256, 65535);
  reduce_splits_kernel<T><<<(unsigned)blocks, 256, 0, stream>>>(
      static_cast<const typename Acc<T>::type*>(ws), out, p.out_numel,
      p.splits, scale);
  return cudaGetLastError();
}

}  // namespace

template <typename T>
size_t adder2d_forward_cuda_workspace(const Adder2dShape& s, int sm_count,
                                      bool deterministic) {
  return workspace_bytes<T>(forward_plan<T>(s, sm_count, deterministic));
}

template <typename T>
size_t adder2d_backward_input_cuda_workspace(const Adder2dShape& s,
                                             int sm_count,
                                             bool deterministic) {
  return workspace_bytes<T>(
      backward_input_plan<T>(s, sm_count, deterministic));
}

template <typename T>
cudaError_t adder2d_forward_cuda(const T* x, const T* w, T* y,
                                 const Adder2dShape& s, void* workspace,
                                 int sm_count, bool deterministic,
                                 cudaStream_t stream) {
  const Plan p = forward_plan<T>(s, sm_count, deterministic);
  typename Acc<T>::type* ws;
  const cudaError_t ready = prepare<T>(p, y, workspace, stream, &ws);
  if (ready != cudaSuccess) return ready;
  with_forward_tile<T>(p.tile, [&](auto tile) {
    adder2d_forward_kernel<T, decltype(tile)>
        <<<p.grid, kThreads, 0, stream>>>(x, w, y, ws, s, p.splits, p.chunk);
  });
  return finish_splits<T>(p, workspace, y, -1.f, stream);
}

template <typename T>
cudaError_t adder2d_backward_input_cuda(const T* grad_out, const T* x,
                                        const T* wt, T* grad_in,
                                        const Adder2dShape& s, bool sign_grad,
                                        int sign_fast_mode, void* workspace,
                                        int sm_count, bool deterministic,
                                        cudaStream_t stream) {
  const Plan p = backward_input_plan<T>(s, sm_count, deterministic);
  typename Acc<T>::type* ws;
  const cudaError_t ready = prepare<T>(p, grad_in, workspace, stream, &ws);
  if (ready != cudaSuccess) return ready;
  constexpr bool kFastType = std::is_same<T, typename Acc<T>::type>::value;
  const bool fast = kFastType && sign_grad &&
                    sign_fast_cuda<T>(s, deterministic, sign_fast_mode);
  with_backward_tile<T>(p.tile, [&](auto tile) {
    using C = decltype(tile);
    if constexpr (kFastType) {
      if (fast) {
        adder2d_backward_input_kernel<T, C, kSignFast>
            <<<p.grid, kThreads, 0, stream>>>(grad_out, x, wt, grad_in, ws,
                                              s, p.splits, p.chunk);
        return;
      }
    }
    if (sign_grad)
      adder2d_backward_input_kernel<T, C, kSignExact>
          <<<p.grid, kThreads, 0, stream>>>(grad_out, x, wt, grad_in, ws, s,
                                            p.splits, p.chunk);
    else
      adder2d_backward_input_kernel<T, C, kHardtanh>
          <<<p.grid, kThreads, 0, stream>>>(grad_out, x, wt, grad_in, ws, s,
                                            p.splits, p.chunk);
  });
  const cudaError_t err = finish_splits<T>(p, workspace, grad_in, 1.f, stream);
  if (err != cudaSuccess || !fast) return err;
  if constexpr (kFastType) {
    sign_ties_kernel<T><<<sign_ties_grid<T>(s), kThreads, 0, stream>>>(
        grad_out, x, wt, grad_in, s);
  }
  return cudaGetLastError();
}

template <typename T>
bool adder2d_sign_fast_cuda(const Adder2dShape& s, bool deterministic,
                            int sign_fast_mode) {
  return sign_fast_cuda<T>(s, deterministic, sign_fast_mode);
}

#define ADDER_INSTANTIATE(T)                                                  \
  template size_t adder2d_forward_cuda_workspace<T>(const Adder2dShape&, int, \
                                                    bool);                    \
  template size_t adder2d_backward_input_cuda_workspace<T>(                   \
      const Adder2dShape&, int, bool);                                        \
  template cudaError_t adder2d_forward_cuda<T>(const T*, const T*, T*,        \
                                               const Adder2dShape&, void*,    \
                                               int, bool, cudaStream_t);      \
  template cudaError_t adder2d_backward_input_cuda<T>(                        \
      const T*, const T*, const T*, T*, const Adder2dShape&, bool, int,       \
      void*, int, bool, cudaStream_t);                                        \
  template bool adder2d_sign_fast_cuda<T>(const Adder2dShape&, bool, int);
ADDER_INSTANTIATE(float)
ADDER_INSTANTIATE(double)
ADDER_INSTANTIATE(__half)
ADDER_INSTANTIATE(__nv_bfloat16)

}  // namespace adder_det
