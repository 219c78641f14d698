// The filter gradient's convolution term, sum_{n,l} g(n,t,l) X_col(n,k,l),
// of unpadded pointwise (1x1) layers on the CPU as matmuls: X_col of such a
// layer is the input itself (at the stride's grid), so no im2col is needed,
// and oneDNN's convolution weight gradient, which the other layers use
// (csrc/adder2d.cpp), was slow on some of these shapes.
#include <ATen/ATen.h>

#include <atomic>
#include <string>

#include "../adder2d.h"
#include "path_mode.h"

namespace adder_det {
namespace {

// auto (below), always (every unpadded 1x1 layer, grouped ones too: for
// tests) or never.
std::atomic<int> matmul_filter_grad_mode_index{kModeAuto};

// oneDNN's weight gradient against one matmul a sample, accumulated
// (ResNet-50's 1x1 layers at 224 in, float32, 2 threads, alternated in one
// process; docs/benchmarks.md "session 25"): batch 2 0.50-1.03x the time,
// summed 0.79x (the 1024 -> 2048 1x1/2 at 14x14 in 7.95 -> 4.54 ms). At
// batch 8, before this rule, the 14x14 maps (196 positions a sample, 1568
// in all) ran 1.02-1.15x slower: each sample's matmul reads and writes the
// whole gradient again for little work. So: where a sample has 512
// positions or more, or all samples together 512 or fewer. Grouped layers
// keep oneDNN (a matmul a sample and group).
bool use_matmul_filter_grad(const Adder2dShape& s) {
  const int mode = matmul_filter_grad_mode_index.load();
  if (mode == kModeNever || s.n == 0 || s.taps() != 1 || s.ph != 0 ||
      s.pw != 0)
    return false;
  if (mode == kModeAlways) return true;
  return s.groups == 1 && (s.l() >= 512 || s.n * s.l() <= 512);
}

}  // namespace

at::Tensor matmul_filter_grad_term(const at::Tensor& grad_output,
                                   const at::Tensor& input,
                                   const Adder2dShape& s) {
  if (!input.device().is_cpu() || !use_matmul_filter_grad(s)) return {};
  // The outputs read the input at (oh sh, ow sw): a strided view, copied.
  at::Tensor x = input;
  if (s.sh > 1 || s.sw > 1)
    x = x.slice(2, 0, s.h, s.sh).slice(3, 0, s.w, s.sw);
  x = x.contiguous().view({s.n, s.c, s.l()});
  const at::Tensor g = grad_output.contiguous().view({s.n, s.cout, s.l()});
  at::Tensor out = at::empty({s.cout, s.cin_g()}, g.options());
  const int64_t cin_g = s.cin_g(), cout_g = s.cout_g();
  for (int64_t grp = 0; grp < s.groups; ++grp) {
    at::Tensor o = out.narrow(0, grp * cout_g, cout_g);
    for (int64_t i = 0; i < s.n; ++i) {
      const at::Tensor a = g[i].narrow(0, grp * cout_g, cout_g);
      const at::Tensor b = x[i].narrow(0, grp * cin_g, cin_g).t();
      if (i == 0)
        at::mm_out(o, a, b);
      else
        o.addmm_(a, b);
    }
  }
  return out.view({s.cout, s.cin_g(), 1, 1});
}

std::string matmul_filter_grad_mode() {
  return kModeNames[matmul_filter_grad_mode_index.load()];
}

std::string set_matmul_filter_grad_mode(const std::string& name) {
  return exchange_mode(matmul_filter_grad_mode_index, name,
                       "set_matmul_filter_grad_mode");
}

bool matmul_filter_grad_runs(const at::Tensor& input, const at::Tensor& weight,
                             at::IntArrayRef stride, at::IntArrayRef padding,
                             at::IntArrayRef dilation, int64_t groups) {
  return input.device().is_cpu() &&
         use_matmul_filter_grad(
             make_shape(input, weight, stride, padding, dilation, groups));
}

}  // namespace adder_det
