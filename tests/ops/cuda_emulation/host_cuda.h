// Just enough of CUDA to compile csrc/cuda/adder2d_tiles.cuh for the host:
// a block's 256 threads are std::threads, __syncthreads a std::barrier,
// __shared__ arrays statics (one block runs at a time).
#pragma once
#include <barrier>
#include <cmath>
#include <cstring>
#include <algorithm>
#include <atomic>

#include <vector_types.h>   // float4, double2, dim3, uint3 (host-usable)
#include <driver_types.h>   // cudaError_t
#include <cuda_fp16.h>      // __half, __nv_bfloat16 and their host
#include <cuda_bf16.h>      // conversions (before the macros below)

using std::max;
using std::min;

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline dim3 gridDim, blockDim;
inline std::barrier<>* emulated_block_barrier = nullptr;

inline void __syncthreads() { emulated_block_barrier->arrive_and_wait(); }
// Whether any thread's predicate holds (a barrier, then every thread reads
// the count; the last barrier lets thread 0 reset it for the next call).
inline std::atomic<int> emulated_or_count{0};
inline int __syncthreads_or(int predicate) {
  if (predicate) emulated_or_count.fetch_add(1);
  __syncthreads();
  const int any = emulated_or_count.load() != 0;
  __syncthreads();
  if (threadIdx.x == 0) emulated_or_count.store(0);
  __syncthreads();
  return any;
}
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float v) { int i; std::memcpy(&i, &v, 4); return i; }
inline double __longlong_as_double(long long v) {
  double f; std::memcpy(&f, &v, 8); return f;
}
inline long long __double_as_longlong(double v) {
  long long i; std::memcpy(&i, &v, 8); return i;
}
// CUDA's headers define a host atomicAdd that does nothing: replace it.
template <typename T> T emulated_atomic_add(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_add(v);
}
#define atomicAdd emulated_atomic_add

// CUDA's headers define these as attributes g++ does not know.
#undef __global__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#undef __align__
#undef __restrict__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(threads, blocks)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
