// Sizes of one adder2d call, shared by the CPU and CUDA kernels.
// Plain C++ (no torch headers) so that nvcc alone compiles the CUDA kernels.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define ADDER_HD __host__ __device__
#else
#define ADDER_HD
#endif

namespace adder_det {

struct Adder2dShape {
  int64_t n, c, h, w;           // input (N, C, H, W)
  int64_t cout, kh, kw;         // weight (Cout, C / groups, kh, kw)
  int64_t sh, sw, ph, pw, dh, dw;
  int64_t groups;
  int64_t hout, wout;

  ADDER_HD int64_t cin_g() const { return c / groups; }
  ADDER_HD int64_t cout_g() const { return cout / groups; }
  ADDER_HD int64_t taps() const { return kh * kw; }
  ADDER_HD int64_t k() const { return cin_g() * kh * kw; }  // reduction length
  ADDER_HD int64_t l() const { return hout * wout; }        // output positions
};

}  // namespace adder_det
