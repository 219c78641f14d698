// Tiles, kernels and launch plans of the CUDA adder2d (device code and
// host-side planning, no launches): adder2d_kernel.cu launches them, and
// tests/ops/test_cuda_emulated.py compiles them for the host (256 threads a
// block) so that CI checks their indexing without a GPU.
//
// Forward and input gradient as implicit GEMMs (no im2col buffer: patches
// are gathered from the input while tiles are loaded, so memory is
// O(input + output + weights); only deterministic mode and half types add a
// split-K workspace, where the grid would be too small: see make_plan).
//
// forward: C[t][q] = -sum_k |F[t][k] - Xcol[k][q]|, q = (n, oh, ow).
// input gradient: D[c][p] = sum_{r=(tap, t)} G[r][p] * act(F[t][c][tap]
//   - X[c][p]), p = (n, h, w): G[r][p] is the output gradient at the output
//   position that reads p through tap (0 if none); X stays in registers.
//   Each (c, p) is owned by one thread. Positions are taken one stride
//   phase a block, with only the taps that reach that phase.
//
// Both: a block computes a BM x BN tile of the result with 256 threads, each
// a TM x TN register tile (TM, TN multiples of 4: rows and columns come in
// groups of 4 spaced TY*4 / TX*4 apart, so shared memory is read with 16-byte
// loads without bank conflicts). The reduction runs in steps of BK through
// two shared-memory buffers: the global loads of step s+1 are issued into
// registers before the arithmetic of step s and stored after it, one barrier
// a step. Gather indices advance incrementally (no integer division in the
// loop). An adder MAC is two FADDs (the second with the |.| modifier), so the
// 8x8 tile reads 16 shared values per 128 FADDs.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../common/adder2d_shape.h"

namespace adder_det {
namespace tiles {

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

// Four consecutive shared-memory values (16-byte aligned) into registers.
__device__ __forceinline__ void lds4(const float* p, float* v) {
  const float4 t = *reinterpret_cast<const float4*>(p);
  v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
}
__device__ __forceinline__ void lds4(const double* p, double* v) {
  const double2 a = reinterpret_cast<const double2*>(p)[0];
  const double2 b = reinterpret_cast<const double2*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
}

// b * sign(d), 0 where d is 0 or NaN: b with its sign bit flipped by d's.
__device__ __forceinline__ float times_sign(float b, float d) {
  const float f = __int_as_float(__float_as_int(b) ^
                                 (__float_as_int(d) & 0x80000000));
  return fabsf(d) > 0.f ? f : 0.f;
}
__device__ __forceinline__ double times_sign(double b, double d) {
  const double f = __longlong_as_double(
      __double_as_longlong(b) ^
      (__double_as_longlong(d) & (long long)0x8000000000000000ULL));
  return fabs(d) > 0. ? f : 0.;
}

// The input-gradient rules the kernel computes: AdderNet's HardTanh, the
// sign rule exactly (sign(0) = sign(NaN) = 0), or the sign rule without its
// tie check: sum g * sign(w - x) = 2 * sum_{w > x} g - sum g, where the
// first sum is an FSET (1.0 where w > x) and an FFMA a term and the second
// one add per column and reduction row, so a tie or NaN term counts as -g
// (sign -1), which sign_ties_kernel then takes back.
enum InputGradRule : int { kHardtanh = 0, kSignExact = 1, kSignFast = 2 };

// Partial sums of a split reduction straight into the output.
__device__ __forceinline__ void add_partial(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void add_partial(double* p, double v) { atomicAdd(p, v); }

// One result of a block: stored as scale * v; or, where the reduction is
// split, v into the split's workspace slot (the reduction kernel applies
// scale), or scale * v added atomically into the zeroed output.
template <typename T, typename A>
__device__ __forceinline__ void put_result(T* out, A* ws, int64_t idx,
                                           int64_t numel, int split,
                                           int splits, A v, A scale) {
  if (splits == 1)
    out[idx] = from_acc<T>(scale * v);
  else if (ws)
    ws[split * numel + idx] = v;
  else if constexpr (std::is_same<T, A>::value)
    add_partial(out + idx, scale * v);
}

constexpr int kThreads = 256;

// A block tile: BM result rows x BN result columns, TM x TN per thread, the
// reduction in steps of BK.
template <int BM_, int BN_, int TM_, int TN_, int kMinBlocks_, int BK_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, TM = TM_, TN = TN_, BK = BK_;
  // Forward blocks an SM must hold: caps registers (1: up to 255).
  static constexpr int kMinBlocks = kMinBlocks_;
  static constexpr int TY = BM / TM, TX = BN / TN;
  static_assert(TY * TX == kThreads, "256 threads a block");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "rows/columns in groups of 4");
  static_assert(BK * BN % kThreads == 0 && BK * BM % kThreads == 0, "loads");
  // Result row of the thread's register row i (thread row ty).
  __device__ static int row(int ty, int i) {
    return (i / 4) * (TY * 4) + ty * 4 + (i % 4);
  }
  __device__ static int col(int tx, int j) {
    return (j / 4) * (TX * 4) + tx * 4 + (j % 4);
  }
};
// Steps of 8 for the forward, 16 for the input gradient: on an H100, 16
// everywhere took the summed forward+backward of the ResNet-50 and FCOS
// layers at 800x800 from 2.80x to 2.47x conv's time, the forward alone from
// 1.81x to 1.93x (docs/benchmarks.md, session 5).
constexpr int kForwardBK = 8, kBackwardBK = 16;
// Blocks an SM the 128x128 forward tile must fit: 1 lets it take 161
// registers (one block, 8 warps an SM); 2 caps it at 128 (16 warps), where
// ptxas keeps about 20 bytes of loader state in local memory (sm_90: up to
// 5 local loads in a reduction step of about 1280 instructions). Not yet
// timed on a GPU: build with
// ADDER_DET_NVCC_FLAGS=-DADDER_DET_LARGE_TILE_MIN_BLOCKS=2 to compare
// (tools/gpu_check.sh, GPU_CHECK_VARIANTS).
#ifndef ADDER_DET_LARGE_TILE_MIN_BLOCKS
#define ADDER_DET_LARGE_TILE_MIN_BLOCKS 1
#endif
using TileL = Tile<128, 128, 8, 8, ADDER_DET_LARGE_TILE_MIN_BLOCKS,
                   kForwardBK>;                      // >= 65 filters
using TileM = Tile<64, 128, 4, 8, 2, kForwardBK>;   // 33..64 filters
using TileS = Tile<32, 128, 4, 4, 2, kForwardBK>;   // <= 32 filters
using TileD = Tile<64, 64, 4, 4, 1, kForwardBK>;    // double, both kernels
using TileBM = Tile<64, 128, 4, 8, 1, kBackwardBK>;  // > 32 channels
using TileBS = Tile<32, 128, 4, 4, 1, kBackwardBK>;  // <= 32 channels

template <typename T, class C>
__global__ void __launch_bounds__(kThreads, C::kMinBlocks)
adder2d_forward_kernel(const T* __restrict__ x, const T* __restrict__ w,
                       T* __restrict__ y,
                       typename Acc<T>::type* __restrict__ ws,
                       Adder2dShape s, int splits, int kchunk) {
  using A = typename Acc<T>::type;
  constexpr int BM = C::BM, BN = C::BN, BK = C::BK, TM = C::TM, TN = C::TN;
  constexpr int kWPad = 4;  // Ws rows are written column-wise: no conflicts
  __shared__ __align__(16) A Ws[2][BK][BM + kWPad];
  __shared__ __align__(16) A Xs[2][BK][BN];
  const int tid = threadIdx.x;
  const int64_t L = s.hout * s.wout, cols = s.n * L;
  const int K = (int)s.k(), taps = (int)s.taps(), cout_g = (int)s.cout_g();
  const int kh = (int)s.kh, kw = (int)s.kw, H = (int)s.h, W = (int)s.w;
  const int g = blockIdx.z / splits, split = blockIdx.z - g * splits;
  const int kbegin = split * kchunk, kend = min(K, kbegin + kchunk);
  const int row0 = blockIdx.y * BM;
  const int64_t col0 = (int64_t)blockIdx.x * BN;

  // Xs loader: a fixed column q, XE consecutive k rows from lk * XE.
  constexpr int XE = BK * BN / kThreads;
  const int lcol = tid % BN, lk = tid / BN;
  const int64_t q = col0 + lcol;
  const bool qvalid = q < cols;
  int hb = 0, wb = 0;
  const T* xg = x;
  if (qvalid) {
    const int64_t n = q / L, l = q - n * L;
    const int oh = (int)(l / s.wout), ow = (int)(l - oh * s.wout);
    hb = oh * (int)s.sh - (int)s.ph, wb = ow * (int)s.sw - (int)s.pw;
    xg = x + (n * s.c + (int64_t)g * s.cin_g()) * H * W;
  }
  // (channel, tap row, tap column) of the first k this thread loads, k0 +
  // lk * XE; its XE loads are consecutive k. Advanced by BK a step.
  int kc, ki, kj;
  {
    const int k = kbegin + lk * XE, tap = k % taps;
    kc = k / taps, ki = tap / kw, kj = tap % kw;
  }
  const int sc = BK / taps, si = (BK % taps) / kw, sj = (BK % taps) % kw;
  // Ws loader: WP threads a filter row, WE consecutive k each.
  constexpr int WP = kThreads / BM, WE = BK / WP;
  static_assert(WE >= 1 && WP * WE == BK, "filter loads");
  const int wrow = tid / WP, wk = (tid % WP) * WE;
  const bool wvalid = row0 + wrow < cout_g;
  const T* wg = w + ((int64_t)g * cout_g + (wvalid ? row0 + wrow : 0)) * K;

  A xr[XE], wr[WE];
  auto load = [&](int k0) {
    int c = kc, i = ki, j = kj;
#pragma unroll
    for (int e = 0; e < XE; ++e) {
      A v = 0;
      const int hi = hb + i * (int)s.dh, wi = wb + j * (int)s.dw;
      if (qvalid && k0 + lk * XE + e < kend && hi >= 0 && hi < H && wi >= 0 &&
          wi < W)
        v = to_acc(xg[((int64_t)c * H + hi) * W + wi]);
      xr[e] = v;
      if (++j == kw) {
        j = 0;
        if (++i == kh) i = 0, ++c;
      }
    }
#pragma unroll
    for (int e = 0; e < WE; ++e) {
      const int k = k0 + wk + e;
      // Past the end both operands are 0 and add |0 - 0| = 0.
      wr[e] = (wvalid && k < kend) ? to_acc(wg[k]) : A(0);
    }
  };
  auto advance = [&]() {
    kj += sj;
    if (kj >= kw) kj -= kw, ++ki;
    ki += si;
    if (ki >= kh) ki -= kh, ++kc;
    kc += sc;
  };
  auto store = [&](int buf) {
#pragma unroll
    for (int e = 0; e < XE; ++e) Xs[buf][lk * XE + e][lcol] = xr[e];
#pragma unroll
    for (int e = 0; e < WE; ++e) Ws[buf][wk + e][wrow] = wr[e];
  };

  const int ty = tid / C::TX, tx = tid % C::TX;
  A acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0;

  const int nsteps = (kend - kbegin + BK - 1) / BK;
  load(kbegin);
  store(0);
  __syncthreads();
  for (int step = 0; step < nsteps; ++step) {
    const int cur = step & 1;
    const bool more = step + 1 < nsteps;
    if (more) {
      advance();
      load(kbegin + (step + 1) * BK);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      A a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; i += 4) lds4(&Ws[cur][kk][C::row(ty, i)], a + i);
#pragma unroll
      for (int j = 0; j < TN; j += 4) lds4(&Xs[cur][kk][C::col(tx, j)], b + j);
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += fabs(a[i] - b[j]);
    }
    if (more) store(cur ^ 1);
    __syncthreads();
  }

  const int64_t numel = cols * s.cout;
#pragma unroll
  for (int j = 0; j < TN; ++j) {
    const int64_t qq = col0 + C::col(tx, j);
    if (qq >= cols) continue;
    const int64_t nn = qq / L, l = qq - nn * L;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int t = row0 + C::row(ty, i);
      if (t >= cout_g) continue;
      const int64_t idx = (nn * s.cout + (int64_t)g * cout_g + t) * L + l;
      put_result(y, ws, idx, numel, split, splits, acc[i][j], A(-1));
    }
  }
}

// The input gradient by stride phase. An input row h with (h + ph) % sh == a
// is read only through the filter rows i with (i * dh) % sh == a, an
// arithmetic progression tap0 + m * tap_step; the other taps' output
// gradient is 0 there. So the kernel runs one phase (a, b) a block, over
// that phase's positions and taps only: with stride 2, a quarter of a 1x1
// layer's positions get no term at all and a 3x3 layer's get 1-4 of the 9.
// Stride 1 is the single phase (0, 0) with every tap.
struct PhaseAxis {
  int first, count;       // input coordinates first + m * stride, m < count
  int tap0, tap_step, taps;  // taps tap0 + m * tap_step, m < taps
  int out0, out_step;     // output coordinate of (m-th position, k-th tap):
                          // out0 + m - k * out_step
};

ADDER_HD inline PhaseAxis phase_axis(int a, int size, int pad, int stride,
                                     int k, int dil) {
  PhaseAxis p;
  p.first = ((a - pad) % stride + stride) % stride;
  p.count = p.first < size ? (size - p.first + stride - 1) / stride : 0;
  int x = dil, y = stride;  // gcd(dil, stride)
  while (y) {
    const int t = x % y;
    x = y, y = t;
  }
  p.tap_step = stride / x;
  p.tap0 = -1;
  for (int i = 0; i < p.tap_step && i < k; ++i)
    if (i * dil % stride == a) {
      p.tap0 = i;
      break;
    }
  p.taps = p.tap0 < 0 ? 0 : (k - p.tap0 + p.tap_step - 1) / p.tap_step;
  if (p.tap0 < 0) p.tap0 = 0;
  // Exact: first + pad and tap0 * dil are both a modulo stride.
  p.out0 = (p.first + pad - p.tap0 * dil) / stride;
  p.out_step = p.tap_step * dil / stride;
  return p;
}

// Input gradient of one stride phase a block. Rows: input channels c of
// group g; columns: the phase's input positions (n, h, w); reduction over
// the phase's terms r = (tap row index, tap column index, filter t), t
// fastest. wt holds the filters as (groups, taps, cout_g, cin_g): the row
// of one (tap, filter) is contiguous over channels.
template <typename T, class C, InputGradRule kRule>
__global__ void __launch_bounds__(kThreads, 1)
adder2d_backward_input_kernel(const T* __restrict__ go,
                              const T* __restrict__ x,
                              const T* __restrict__ wt, T* __restrict__ gx,
                              typename Acc<T>::type* __restrict__ ws,
                              Adder2dShape s, int splits, int rchunk) {
  using A = typename Acc<T>::type;
  constexpr int BM = C::BM, BN = C::BN, BK = C::BK, TM = C::TM, TN = C::TN;
  __shared__ __align__(16) A Fs[2][BK][BM];
  __shared__ __align__(16) A Gs[2][BK][BN];
  const int tid = threadIdx.x;
  const int H = (int)s.h, W = (int)s.w, kw = (int)s.kw;
  const int64_t HW = (int64_t)H * W, L = s.hout * s.wout;
  const int cin_g = (int)s.cin_g(), cout_g = (int)s.cout_g();
  const int hout = (int)s.hout, wout = (int)s.wout;
  const int phases = (int)(s.sh * s.sw), phase = blockIdx.z % phases;
  const int gsplit = blockIdx.z / phases;
  const int g = gsplit / splits, split = gsplit - g * splits;
  const PhaseAxis ah = phase_axis(phase / (int)s.sw, H, (int)s.ph, (int)s.sh,
                                  (int)s.kh, (int)s.dh);
  const PhaseAxis aw = phase_axis(phase % (int)s.sw, W, (int)s.pw, (int)s.sw,
                                  kw, (int)s.dw);
  const int64_t PHW = (int64_t)ah.count * aw.count, cols = s.n * PHW;
  const int64_t col0 = (int64_t)blockIdx.x * BN;
  if (col0 >= cols) return;  // the whole block: this phase has fewer columns
  const int R = ah.taps * aw.taps * cout_g;  // 0: no tap reaches the phase
  const int rbegin = split * rchunk, rend = min(R, rbegin + rchunk);
  const int row0 = blockIdx.y * BM;
  // Input offset (h * W + w) of a phase column.
  auto position = [&](int64_t q, int64_t& n) {
    n = q / PHW;
    const int64_t m = q - n * PHW;
    const int hh = (int)(m / aw.count), ww = (int)(m - hh * aw.count);
    return (int64_t)(ah.first + hh * (int)s.sh) * W + aw.first +
           ww * (int)s.sw;
  };

  // (filter t, tap column index jj, tap row index ii) of reduction row r.
  struct Cursor {
    int t, jj, ii;
  };
  const int ktaps = aw.taps > 0 ? aw.taps : 1;  // no division by 0 (R = 0)
  auto cursor_at = [&](int r) {
    const int ti = r / cout_g;
    return Cursor{r - ti * cout_g, ti % ktaps, ti / ktaps};
  };
  auto next = [&](Cursor& c) {
    if (++c.t == cout_g) {
      c.t = 0;
      if (++c.jj == ktaps) c.jj = 0, ++c.ii;
    }
  };
  // Advance by BK rows: BK = sti * (ktaps * cout_g) + stj * cout_g + st.
  const int st = BK % cout_g, stj = (BK / cout_g) % ktaps,
            sti = (BK / cout_g) / ktaps;
  auto advance = [&](Cursor& c) {
    c.t += st;
    if (c.t >= cout_g) c.t -= cout_g, ++c.jj;
    c.jj += stj;
    if (c.jj >= ktaps) c.jj -= ktaps, ++c.ii;
    c.ii += sti;
  };

  // Gs loader: a fixed column p, GE consecutive reduction rows from lr * GE.
  constexpr int GE = BK * BN / kThreads;
  const int lcol = tid % BN, lr = tid / BN;
  const int64_t p = col0 + lcol;
  const bool pvalid = p < cols;
  int ohb = 0, owb = 0;  // output coordinates of p through the first taps
  const T* gog = go;
  if (pvalid) {
    const int64_t n = p / PHW, m = p - n * PHW;
    const int hh = (int)(m / aw.count);
    ohb = ah.out0 + hh, owb = aw.out0 + (int)(m - hh * aw.count);
    gog = go + (n * s.cout + (int64_t)g * cout_g) * L;
  }
  Cursor gc = cursor_at(rbegin + lr * GE);
  // Fs loader: a fixed channel column, FE consecutive rows from fr * FE.
  constexpr int FS = kThreads / BM, FE = BK * BM / kThreads;
  static_assert(FS * FE == BK, "filter loads");
  const int fcol = tid % BM, fr = tid / BM;
  const bool fvalid = row0 + fcol < cin_g;
  const T* wtg = wt + (int64_t)g * s.taps() * cout_g * cin_g + row0 +
                 (fvalid ? fcol : 0);
  Cursor fc = cursor_at(rbegin + fr * FE);

  A gr[GE], fr_[FE];
  auto load = [&](int r0) {
    Cursor c = gc;
#pragma unroll
    for (int e = 0; e < GE; ++e) {
      A v = 0;
      const int oh = ohb - c.ii * ah.out_step, ow = owb - c.jj * aw.out_step;
      if (pvalid && r0 + lr * GE + e < rend && oh >= 0 && oh < hout &&
          ow >= 0 && ow < wout)
        v = to_acc(gog[(int64_t)c.t * L + oh * wout + ow]);
      gr[e] = v;
      next(c);
    }
    c = fc;
#pragma unroll
    for (int e = 0; e < FE; ++e) {
      A v = 0;
      if (fvalid && r0 + fr * FE + e < rend) {
        const int tap = (ah.tap0 + c.ii * ah.tap_step) * kw + aw.tap0 +
                        c.jj * aw.tap_step;
        v = to_acc(wtg[((int64_t)tap * cout_g + c.t) * cin_g]);
      }
      fr_[e] = v;
      next(c);
    }
  };
  auto store = [&](int buf) {
#pragma unroll
    for (int e = 0; e < GE; ++e) Gs[buf][lr * GE + e][lcol] = gr[e];
#pragma unroll
    for (int e = 0; e < FE; ++e) Fs[buf][fr * FE + e][fcol] = fr_[e];
  };

  // Thread tile: x values of its channels and positions stay in registers.
  const int ty = tid / C::TX, tx = tid % C::TX;
  A xv[TM][TN], acc[TM][TN];
  A gsum[TN];  // kSignFast: sum of the output gradients of each column
#pragma unroll
  for (int j = 0; j < TN; ++j) gsum[j] = 0;
#pragma unroll
  for (int j = 0; j < TN; ++j) {
    const int64_t pp = col0 + C::col(tx, j);
    int64_t nn = 0, hw = 0;
    if (pp < cols) hw = position(pp, nn);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int c = row0 + C::row(ty, i);
      xv[i][j] = (pp < cols && c < cin_g)
                     ? to_acc(x[(nn * s.c + (int64_t)g * cin_g + c) * HW + hw])
                     : A(0);
      acc[i][j] = 0;
    }
  }

  const int nsteps = (rend - rbegin + BK - 1) / BK;  // <= 0: no term
  load(rbegin);
  store(0);
  __syncthreads();
  for (int step = 0; step < nsteps; ++step) {
    const int cur = step & 1;
    const bool more = step + 1 < nsteps;
    if (more) {
      advance(gc);
      advance(fc);
      load(rbegin + (step + 1) * BK);
    }
#pragma unroll 2
    for (int kk = 0; kk < BK; ++kk) {
      A a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; i += 4) lds4(&Fs[cur][kk][C::row(ty, i)], a + i);
#pragma unroll
      for (int j = 0; j < TN; j += 4) lds4(&Gs[cur][kk][C::col(tx, j)], b + j);
      if constexpr (kRule == kSignFast) {
#pragma unroll
        for (int j = 0; j < TN; ++j) gsum[j] += b[j];
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          if constexpr (kRule == kSignFast) {
            // FSET.BF + FFMA: 2 instructions a MAC (+ 1/TM for gsum) where
            // times_sign takes 5 (sm_90, 64x128: 2.45 a MAC in all against
            // 5.2, 2.9 scheduled stall cycles against 9.2).
            acc[i][j] = fma(b[j], A(a[i] > xv[i][j]), acc[i][j]);
            continue;
          }
          const A d = a[i] - xv[i][j];
          if constexpr (kRule == kSignExact) {
            acc[i][j] += times_sign(b[j], d);
          } else if constexpr (std::is_same<A, float>::value) {
            // The clamp as two one-sided selects of the form x < c ? c : x
            // (NaN stays NaN): ptxas makes each one FMNMX.NAN, where the
            // nested form below cost an FSETP and an FSEL for one side
            // (sm_90: 4.25 instead of 5.2 instructions a MAC, 5.3 instead
            // of 9.2 scheduled stall cycles; tools/cuda_loop_mix.py). Same
            // values. double keeps the nested form (there the two-select
            // loop scheduled 27 stall cycles a MAC against 22).
            const A lo = d < A(-1) ? A(-1) : d;
            acc[i][j] += b[j] * (lo > A(1) ? A(1) : lo);
          } else {
            acc[i][j] += b[j] * (d > A(1) ? A(1) : (d < A(-1) ? A(-1) : d));
          }
        }
    }
    if (more) store(cur ^ 1);
    __syncthreads();
  }

  const int64_t numel = s.n * s.c * HW;
#pragma unroll
  for (int j = 0; j < TN; ++j) {
    const int64_t pp = col0 + C::col(tx, j);
    if (pp >= cols) continue;
    int64_t nn;
    const int64_t hw = position(pp, nn);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int c = row0 + C::row(ty, i);
      if (c >= cin_g) continue;
      const int64_t idx = (nn * s.c + (int64_t)g * cin_g + c) * HW + hw;
      const A v = kRule == kSignFast ? 2 * acc[i][j] - gsum[j] : acc[i][j];
      put_result(gx, ws, idx, numel, split, splits, v, A(1));
    }
  }
}

// The sign rule's ties, after a kSignFast input gradient: that kernel
// counts a term whose d = w - x is 0 or NaN as -b (w > x fails), where the
// rule (and the CPU) give 0; such terms are rare (an input value equal to
// one of its channel's filter values, or a NaN), so they are found
// afterwards and their b added back. A block takes one channel c, one run
// of up to TieRun of its R = taps x Cout/g filter values, sorted in shared
// memory, and kTieChunk of the channel's input values (n, h, w), each
// looked up by binary search; a NaN input value, or a run with a NaN filter
// value, is compared term by term. Corrections are added atomically
// (several runs may correct one value).
constexpr int kTieChunk = 8192;
template <typename A> struct TieRun {
  static constexpr int size = sizeof(A) == 4 ? 4096 : 2048;  // 32 KB shared
};

template <typename T>
__global__ void __launch_bounds__(kThreads, 4)
sign_ties_kernel(const T* __restrict__ go, const T* __restrict__ x,
                 const T* __restrict__ wt, T* __restrict__ gx,
                 Adder2dShape s) {
  using A = typename Acc<T>::type;
  constexpr int RUN = TieRun<A>::size;
  __shared__ A sv[RUN];
  __shared__ int si[RUN];
  const int tid = threadIdx.x;
  const int c = blockIdx.x, cin_g = (int)s.cin_g(), cout_g = (int)s.cout_g();
  const int g = c / cin_g, cl = c - g * cin_g;
  const int R = (int)s.taps() * cout_g, r0 = blockIdx.y * RUN;
  const int n = min(RUN, R - r0);
  const int64_t HW = s.h * s.w, per_c = s.n * HW;
  const int64_t e0 = (int64_t)blockIdx.z * kTieChunk;
  const int64_t e1 = min(per_c, e0 + (int64_t)kTieChunk);
  if (n <= 0 || e0 >= per_c) return;  // the whole block

  // The run's filter values w(t, c, tap) with their term index r = tap *
  // Cout/g + t (wt is (groups, taps, Cout/g, C/g): row g * R + r).
  bool nan_here = false;
  for (int i = tid; i < n; i += kThreads) {
    const A v = to_acc(wt[((int64_t)g * R + r0 + i) * cin_g + cl]);
    nan_here = nan_here || v != v;
    sv[i] = v, si[i] = r0 + i;
  }
  const bool by_term = __syncthreads_or(nan_here);
  if (!by_term) {
    // Bitonic sort by (value, index), every comparator ascending (the
    // first of each merge compares mirrored positions), so the positions
    // past n, virtually +inf, are never touched.
    int P = 1;
    while (P < n) P *= 2;
    auto cas = [&](int i, int l) {
      if (l < n && (sv[l] < sv[i] || (sv[l] == sv[i] && si[l] < si[i]))) {
        const A tv = sv[i];
        const int ti = si[i];
        sv[i] = sv[l], si[i] = si[l];
        sv[l] = tv, si[l] = ti;
      }
    };
    for (int k = 2; k <= P; k *= 2) {
      for (int p = tid; p < P / 2; p += kThreads) {
        const int i = p / (k / 2) * k + p % (k / 2);
        cas(i, i ^ (k - 1));
      }
      __syncthreads();
      for (int j = k / 4; j >= 1; j /= 2) {
        for (int p = tid; p < P / 2; p += kThreads) {
          const int i = p / j * 2 * j + p % j;
          cas(i, i + j);
        }
        __syncthreads();
      }
    }
  }

  const int W = (int)s.w, kw = (int)s.kw;
  const int hout = (int)s.hout, wout = (int)s.wout;
  for (int64_t e = e0 + tid; e < e1; e += kThreads) {
    const int64_t ns = e / HW, hw = e - ns * HW;
    const int h = (int)(hw / W), w = (int)(hw - (int64_t)h * W);
    const int64_t xi = (ns * s.c + c) * HW + hw;
    const A xv = to_acc(x[xi]);
    A back = 0;  // what kSignFast counted as -b for the value's ties
    bool any = false;
    // Term r with filter value wv, if d is 0 or NaN and the tap reaches an
    // output position.
    auto term = [&](int r, A wv) {
      const A d = wv - xv;
      if (!(d == A(0) || d != d)) return;
      const int tap = r / cout_g, t = r - tap * cout_g;
      const int i = tap / kw, j = tap - i * kw;
      const int oh = h + (int)s.ph - i * (int)s.dh;
      const int ow = w + (int)s.pw - j * (int)s.dw;
      if (oh < 0 || ow < 0 || oh % (int)s.sh || ow % (int)s.sw) return;
      if (oh / (int)s.sh >= hout || ow / (int)s.sw >= wout) return;
      const A b = to_acc(go[((ns * s.cout + (int64_t)g * cout_g + t) * hout +
                             oh / (int)s.sh) * wout + ow / (int)s.sw]);
      back += b;
      any = true;
    };
    if (by_term || xv != xv) {
      for (int k = 0; k < n; ++k) term(si[k], sv[k]);
    } else {
      int lo = 0, hi = n;  // first value not below xv
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (sv[mid] < xv) lo = mid + 1; else hi = mid;
      }
      for (int k = lo; k < n && sv[k] == xv; ++k) term(si[k], sv[k]);
    }
    if (any) add_partial(gx + xi, back);
  }
}

// Grid of sign_ties_kernel: (channels, runs, chunks).
template <typename T>
dim3 sign_ties_grid(const Adder2dShape& s) {
  constexpr int RUN = TieRun<typename Acc<T>::type>::size;
  const int64_t R = s.taps() * s.cout_g(), per_c = s.n * s.h * s.w;
  return dim3((unsigned)s.c, (unsigned)((R + RUN - 1) / RUN),
              (unsigned)((per_c + kTieChunk - 1) / kTieChunk));
}

// Whether the sign rule takes kSignFast and sign_ties_kernel (mode: 0 by
// the shape, 1 always, 2 never; set_sign_fast_mode's PathMode values). Only float
// and double (the correction adds atomically into the result: half types
// would round twice), and not in deterministic mode (atomic corrections).
// By the shape: the tie kernel sorts each run of filter values once per
// chunk of input values, about 400 instructions per filter value, where
// the fast tile saves about 3 instructions a term: so enough input positions a
// stride phase (N x H x W / (sh x sw) >= 512) and terms per input value
// (R / (sh x sw) >= 32). Not yet timed on a GPU.
template <typename T>
bool sign_fast_cuda(const Adder2dShape& s, bool deterministic, int mode) {
  if (!std::is_same<T, typename Acc<T>::type>::value || deterministic ||
      mode == 2)
    return false;
  const dim3 grid = sign_ties_grid<T>(s);
  if (grid.y > 65535 || grid.z > 65535 || s.c > 0x7fffffff) return false;
  if (mode == 1) return true;
  const int64_t phases = s.sh * s.sw;
  return s.n * s.h * s.w >= 512 * phases &&
         s.taps() * s.cout_g() >= 32 * phases;
}

// out = scale * (sum of the split-K partial results), in output order.
template <typename T>
__global__ void reduce_splits_kernel(const typename Acc<T>::type* __restrict__ ws,
                                     T* __restrict__ out, int64_t numel,
                                     int splits, float scale) {
  using A = typename Acc<T>::type;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < numel;
       i += (int64_t)gridDim.x * blockDim.x) {
    A v = 0;
    for (int sp = 0; sp < splits; ++sp) v += ws[sp * numel + i];
    out[i] = from_acc<T>(A(scale) * v);
  }
}

// How a call is cut into blocks: tile, split-K count, reduction chunk.
struct Plan {
  int tile;    // 0: TileL, 1: TileM / TileBM, 2: TileS / TileBS, 3: TileD
  int splits;  // > 1: the reduction is split over blocks, see atomic
  bool atomic; // splits add into the zeroed output (else via a workspace)
  int chunk;   // reduction length of one split (a multiple of the step)
  dim3 grid;
  int64_t out_numel;
};

// Where the grid would not fill the GPU, the reduction is split. float and
// double partial sums are added into the zeroed output atomically: no extra
// memory, but the summation order (last bits) varies between runs. With
// deterministic algorithms on (torch.use_deterministic_algorithms), and for
// half types, they go to a workspace of one output per split (at most
// max(2 outputs, 8 MB)) that a second kernel sums in a fixed order.
template <typename T>
Plan make_plan(int64_t rows, int64_t cols, int64_t red, int64_t groups,
               int64_t out_numel, int sm_count, bool backward,
               bool deterministic) {
  Plan p;
  int bm, bn;
  if (sizeof(T) == 8) {
    p.tile = 3, bm = TileD::BM, bn = TileD::BN;
  } else if (rows > 64 && !backward) {
    p.tile = 0, bm = TileL::BM, bn = TileL::BN;
  } else if (rows > 32) {
    p.tile = 1, bm = TileM::BM, bn = TileM::BN;
  } else {
    p.tile = 2, bm = TileS::BM, bn = TileS::BN;
  }
  const int64_t blocks = ((rows + bm - 1) / bm) * ((cols + bn - 1) / bn) * groups;
  const int bk = sizeof(T) == 8 ? TileD::BK : backward ? kBackwardBK : kForwardBK;
  const int64_t steps = (red + bk - 1) / bk;
  p.atomic = !deterministic && std::is_same<T, typename Acc<T>::type>::value;
  const int64_t ws_cap = std::max<int64_t>(2 * out_numel, int64_t(1) << 21);
  // Split while the grid does not fill the GPU twice over, each split keeps
  // >= 8 steps, and a workspace would stay within its cap.
  int splits = 1;
  while (blocks * splits < 2 * (int64_t)sm_count && splits < 32 &&
         steps >= 16 * splits &&
         (p.atomic || 2 * splits * out_numel <= ws_cap) &&
         groups * 2 * splits <= 65535)
    splits *= 2;
  const int64_t chunk_steps = (steps + splits - 1) / splits;
  p.chunk = (int)(chunk_steps * bk);
  p.splits = (int)((red + p.chunk - 1) / p.chunk);
  p.grid = dim3((unsigned)((cols + bn - 1) / bn), (unsigned)((rows + bm - 1) / bm),
                (unsigned)(groups * p.splits));
  p.out_numel = out_numel;
  return p;
}

template <typename T>
Plan forward_plan(const Adder2dShape& s, int sm_count, bool deterministic) {
  return make_plan<T>(s.cout_g(), s.n * s.hout * s.wout, s.k(), s.groups,
                      s.n * s.cout * s.hout * s.wout, sm_count, false,
                      deterministic);
}

template <typename T>
Plan backward_input_plan(const Adder2dShape& s, int sm_count,
                         bool deterministic) {
  // Blocks cover the largest phase's positions and terms; grid.z runs over
  // (group, split, phase). The input gradient keeps TM x TN x values in
  // registers too: no 8x8 tile.
  int64_t cols = 0, red = 0;
  for (int a = 0; a < s.sh; ++a)
    for (int b = 0; b < s.sw; ++b) {
      const PhaseAxis ah = phase_axis(a, (int)s.h, (int)s.ph, (int)s.sh,
                                      (int)s.kh, (int)s.dh);
      const PhaseAxis aw = phase_axis(b, (int)s.w, (int)s.pw, (int)s.sw,
                                      (int)s.kw, (int)s.dw);
      cols = std::max<int64_t>(cols, s.n * ah.count * aw.count);
      red = std::max<int64_t>(red, (int64_t)ah.taps * aw.taps * s.cout_g());
    }
  return make_plan<T>(s.cin_g(), cols, std::max<int64_t>(red, 1),
                      s.groups * s.sh * s.sw, s.n * s.c * s.h * s.w,
                      sm_count, true, deterministic);
}

template <typename T>
size_t workspace_bytes(const Plan& p) {
  return p.splits > 1 && !p.atomic ? (size_t)p.splits * p.out_numel *
                                         sizeof(typename Acc<T>::type)
                                   : 0;
}

inline bool plan_fits(const Plan& p) { return p.grid.y <= 65535 && p.grid.z <= 65535; }

// f(Tile{}) with the tile type of a plan's kernel (plan.tile): the launchers
// and the host emulation both go through these.
template <typename T, class F>
void with_forward_tile(int tile, F&& f) {
  if constexpr (sizeof(T) == 8)
    f(TileD{});
  else if (tile == 0)
    f(TileL{});
  else if (tile == 1)
    f(TileM{});
  else
    f(TileS{});
}

template <typename T, class F>
void with_backward_tile(int tile, F&& f) {
  if constexpr (sizeof(T) == 8)
    f(TileD{});
  else if (tile == 1)
    f(TileBM{});
  else
    f(TileBS{});
}

}  // namespace tiles
}  // namespace adder_det
