// CUDA kernels of adder2d: forward and input gradient, as implicit GEMMs
// (no im2col buffer: patches are gathered from the input while tiles are
// loaded, so memory is O(input + output + weights)).
//
// forward: C[t][q] = -sum_k |F[t][k] - Xcol[k][q]|, q = (n, oh, ow).
//   Block tile BM x BN of C, K in steps of BK through shared memory, each
//   thread a TM x TN register tile: acc += |a - b| (two FADDs, the second
//   with the |.| operand modifier).
// input gradient: D[c][p] = sum_{r=(tap, t)} G[r][p] * act(F[t][c][tap]
//   - X[c][p]), p = (n, h, w): G[r][p] is the output gradient at the output
//   position that reads p through tap (0 if none), X stays in registers.
//   Each (c, p) is owned by one thread: no atomics.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "adder2d_kernel.cuh"

namespace adder_det {
namespace {

template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <typename T> __device__ __forceinline__ T from_acc(float v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) {
  return __float2half(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}
template <typename T> __device__ __forceinline__ T from_acc(double v) { return v; }

constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;
constexpr int kThreads = (BM / TM) * (BN / TN);  // 256
static_assert(BM * BK % kThreads == 0 && BN * BK % kThreads == 0, "tiles");

template <typename T>
__global__ void __launch_bounds__(kThreads, 2)
adder2d_forward_kernel(const T* __restrict__ x, const T* __restrict__ w,
                       T* __restrict__ y, Adder2dShape s) {
  using A = typename Acc<T>::type;
  __shared__ A Ws[BK][BM];
  __shared__ A Xs[BK][BN];
  const int tid = threadIdx.x;
  const int64_t L = s.hout * s.wout, cols = s.n * L;
  const int K = (int)s.k(), taps = (int)s.taps(), cout_g = (int)s.cout_g();
  const int g = blockIdx.z;
  const int row0 = blockIdx.y * BM;
  const int64_t col0 = (int64_t)blockIdx.x * BN;

  // This thread's column for loading Xs: fixed over k.
  const int lcol = tid % BN, lk = tid / BN;  // lk in [0, kThreads / BN)
  const int64_t q = col0 + lcol;
  const bool qvalid = q < cols;
  int64_t n = 0, oh = 0, ow = 0;
  if (qvalid) {
    n = q / L;
    const int64_t l = q % L;
    oh = l / s.wout, ow = l % s.wout;
  }
  const int64_t hb = oh * s.sh - s.ph, wb = ow * s.sw - s.pw;
  const T* xg = x + (n * s.c + (int64_t)g * s.cin_g()) * s.h * s.w;
  // This thread's filter row for loading Ws.
  const int wrow = tid % BM, wk = tid / BM;
  const bool wvalid = row0 + wrow < cout_g;
  const T* wg = w + ((int64_t)g * cout_g + row0 + wrow) * K;

  const int tr = (tid / (BN / TN)) * TM, tc = (tid % (BN / TN)) * TN;
  A acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0;

  for (int k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
    for (int e = 0; e < BK * BN / kThreads; ++e) {
      const int kk = lk + e * (kThreads / BN), k = k0 + kk;
      A v = 0;
      if (qvalid && k < K) {
        const int c = k / taps, tap = k - c * taps;
        const int i = tap / (int)s.kw, j = tap - i * (int)s.kw;
        const int64_t hi = hb + i * s.dh, wi = wb + j * s.dw;
        if (hi >= 0 && hi < s.h && wi >= 0 && wi < s.w)
          v = to_acc(xg[(c * s.h + hi) * s.w + wi]);
      }
      Xs[kk][lcol] = v;
    }
#pragma unroll
    for (int e = 0; e < BK * BM / kThreads; ++e) {
      const int kk = wk + e * (kThreads / BM), k = k0 + kk;
      // Past K both operands are 0 and add |0 - 0| = 0.
      Ws[kk][wrow] = (wvalid && k < K) ? to_acc(wg[k]) : A(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      A a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = Ws[kk][tr + i];
#pragma unroll
      for (int j = 0; j < TN; ++j) b[j] = Xs[kk][tc + j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += fabs(a[i] - b[j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < TN; ++j) {
    const int64_t qq = col0 + tc + j;
    if (qq >= cols) continue;
    const int64_t nn = qq / L, l = qq % L;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int t = row0 + tr + i;
      if (t < cout_g)
        y[(nn * s.cout + (int64_t)g * cout_g + t) * L + l] =
            from_acc<T>(-acc[i][j]);
    }
  }
}

// Input gradient. Rows: input channels c of group g; columns: input
// positions p = (n, h, w); reduction over r = tap * cout_g + t.
template <typename T, bool kSign>
__global__ void __launch_bounds__(kThreads)
adder2d_backward_input_kernel(const T* __restrict__ go,
                              const T* __restrict__ x,
                              const T* __restrict__ w, T* __restrict__ gx,
                              Adder2dShape s) {
  using A = typename Acc<T>::type;
  __shared__ A Fs[BK][BM];
  __shared__ A Gs[BK][BN];
  const int tid = threadIdx.x;
  const int64_t HW = s.h * s.w, cols = s.n * HW, L = s.hout * s.wout;
  const int cin_g = (int)s.cin_g(), cout_g = (int)s.cout_g();
  const int taps = (int)s.taps(), R = taps * cout_g;
  const int g = blockIdx.z;
  const int row0 = blockIdx.y * BM;
  const int64_t col0 = (int64_t)blockIdx.x * BN;

  // Loader of Gs: fixed column p.
  const int lcol = tid % BN, lr = tid / BN;
  const int64_t p = col0 + lcol;
  const bool pvalid = p < cols;
  int64_t n = 0, h = 0, ww = 0;
  if (pvalid) {
    n = p / HW;
    const int64_t hw = p % HW;
    h = hw / s.w, ww = hw % s.w;
  }
  const T* gog = go + (n * s.cout + (int64_t)g * cout_g) * L;
  // Loader of Fs: fixed channel row.
  const int frow = tid % BM, fr = tid / BM;
  const bool fvalid = row0 + frow < cin_g;

  // Thread tile: channels tr.., positions tc..; x values stay in registers.
  const int tr = (tid / (BN / TN)) * TM, tc = (tid % (BN / TN)) * TN;
  A xv[TM][TN], acc[TM][TN];
#pragma unroll
  for (int j = 0; j < TN; ++j) {
    const int64_t pp = col0 + tc + j;
    const int64_t nn = pp < cols ? pp / HW : 0, hw = pp < cols ? pp % HW : 0;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int c = row0 + tr + i;
      xv[i][j] = (pp < cols && c < cin_g)
                     ? to_acc(x[(nn * s.c + (int64_t)g * cin_g + c) * HW + hw])
                     : A(0);
      acc[i][j] = 0;
    }
  }

  for (int r0 = 0; r0 < R; r0 += BK) {
#pragma unroll
    for (int e = 0; e < BK * BN / kThreads; ++e) {
      const int rr = lr + e * (kThreads / BN), r = r0 + rr;
      A v = 0;
      if (pvalid && r < R) {
        const int tap = r / cout_g, t = r - tap * cout_g;
        const int i = tap / (int)s.kw, j = tap - i * (int)s.kw;
        const int64_t hn = h + s.ph - i * s.dh, wn = ww + s.pw - j * s.dw;
        if (hn >= 0 && wn >= 0 && hn % s.sh == 0 && wn % s.sw == 0) {
          const int64_t oh = hn / s.sh, ow = wn / s.sw;
          if (oh < s.hout && ow < s.wout)
            v = to_acc(gog[(int64_t)t * L + oh * s.wout + ow]);
        }
      }
      Gs[rr][lcol] = v;
    }
#pragma unroll
    for (int e = 0; e < BK * BM / kThreads; ++e) {
      const int rr = fr + e * (kThreads / BM), r = r0 + rr;
      A v = 0;
      if (fvalid && r < R) {
        const int tap = r / cout_g, t = r - tap * cout_g;
        v = to_acc(w[(((int64_t)g * cout_g + t) * cin_g + row0 + frow) * taps +
                     tap]);
      }
      Fs[rr][frow] = v;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < BK; ++rr) {
      A a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = Fs[rr][tr + i];
#pragma unroll
      for (int j = 0; j < TN; ++j) b[j] = Gs[rr][tc + j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          const A d = a[i] - xv[i][j];
          A act;
          if (kSign)
            act = A(d > A(0)) - A(d < A(0));
          else
            act = d > A(1) ? A(1) : (d < A(-1) ? A(-1) : d);
          acc[i][j] += b[j] * act;
        }
    }
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < TN; ++j) {
    const int64_t pp = col0 + tc + j;
    if (pp >= cols) continue;
    const int64_t nn = pp / HW, hw = pp % HW;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int c = row0 + tr + i;
      if (c < cin_g)
        gx[(nn * s.c + (int64_t)g * cin_g + c) * HW + hw] = from_acc<T>(acc[i][j]);
    }
  }
}

inline dim3 grid_for(int64_t rows, int64_t cols, int64_t groups) {
  return dim3((unsigned)((cols + BN - 1) / BN), (unsigned)((rows + BM - 1) / BM),
              (unsigned)groups);
}

}  // namespace

template <typename T>
cudaError_t adder2d_forward_cuda(const T* x, const T* w, T* y,
                                 const Adder2dShape& s, cudaStream_t stream) {
  const dim3 grid = grid_for(s.cout_g(), s.n * s.hout * s.wout, s.groups);
  if (grid.y > 65535 || grid.z > 65535) return cudaErrorInvalidConfiguration;
  adder2d_forward_kernel<T><<<grid, kThreads, 0, stream>>>(x, w, y, s);
  return cudaGetLastError();
}

template <typename T>
cudaError_t adder2d_backward_input_cuda(const T* grad_out, const T* x,
                                        const T* w, T* grad_in,
                                        const Adder2dShape& s, bool sign_grad,
                                        cudaStream_t stream) {
  const dim3 grid = grid_for(s.cin_g(), s.n * s.h * s.w, s.groups);
  if (grid.y > 65535 || grid.z > 65535) return cudaErrorInvalidConfiguration;
  if (sign_grad)
    adder2d_backward_input_kernel<T, true>
        <<<grid, kThreads, 0, stream>>>(grad_out, x, w, grad_in, s);
  else
    adder2d_backward_input_kernel<T, false>
        <<<grid, kThreads, 0, stream>>>(grad_out, x, w, grad_in, s);
  return cudaGetLastError();
}

#define ADDER_INSTANTIATE(T)                                                  \
  template cudaError_t adder2d_forward_cuda<T>(const T*, const T*, T*,        \
                                               const Adder2dShape&,           \
                                               cudaStream_t);                 \
  template cudaError_t adder2d_backward_input_cuda<T>(                        \
      const T*, const T*, const T*, T*, const Adder2dShape&, bool,            \
      cudaStream_t);
ADDER_INSTANTIATE(float)
ADDER_INSTANTIATE(double)
ADDER_INSTANTIATE(__half)
ADDER_INSTANTIATE(__nv_bfloat16)

}  // namespace adder_det
