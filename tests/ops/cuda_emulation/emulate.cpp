// Runs the CUDA adder2d kernels (csrc/cuda/adder2d_tiles.cuh) on the host
// and compares them with a direct float64 loop: every tile, split-K with its
// reduction kernel, strides, dilations, groups, tails, both gradient rules
// (the sign rule exact, and fast with its tie kernel on planted ties, zeros
// of both signs, NaN and infinities), float/double/half. Prints one line a
// case; exit status 1 if any fails.
#include "host_cuda.h"

#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "adder2d_tiles.cuh"

using namespace adder_det;
using namespace adder_det::tiles;

// All blocks of a grid, one after another, each with 256 threads.
template <class F>
void launch(dim3 grid, unsigned threads, F kernel) {
  gridDim = grid, blockDim = dim3(threads);
  const unsigned blocks = grid.x * grid.y * grid.z;
  std::barrier<> bar(threads);
  emulated_block_barrier = &bar;
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      threadIdx = {t, 0, 0};
      for (unsigned b = 0; b < blocks; ++b) {
        blockIdx = {b % grid.x, (b / grid.x) % grid.y, b / (grid.x * grid.y)};
        kernel();
        bar.arrive_and_wait();  // the next block reuses the shared arrays
      }
    });
  for (auto& t : pool) t.join();
}

struct Case { int n, c, h, w, cout, kh, kw, sh, sw, ph, pw, dh, dw, groups; };

Adder2dShape shape_of(const Case& k) {
  Adder2dShape s;
  s.n = k.n, s.c = k.c, s.h = k.h, s.w = k.w, s.cout = k.cout, s.kh = k.kh;
  s.kw = k.kw, s.sh = k.sh, s.sw = k.sw, s.ph = k.ph, s.pw = k.pw;
  s.dh = k.dh, s.dw = k.dw, s.groups = k.groups;
  s.hout = (k.h + 2 * k.ph - k.dh * (k.kh - 1) - 1) / k.sh + 1;
  s.wout = (k.w + 2 * k.pw - k.dw * (k.kw - 1) - 1) / k.sw + 1;
  return s;
}

template <typename T> double val(T v) { return (double)v; }
template <> double val(__half v) { return __half2float(v); }
template <typename T> T make(double v) { return (T)v; }
template <> __half make(double v) { return __float2half((float)v); }

template <typename T, class C>
void forward(const Plan& p, const T* x, const T* w, T* y, void* ws,
             const Adder2dShape& s) {
  using A = typename Acc<T>::type;
  launch(p.grid, kThreads, [&] {
    adder2d_forward_kernel<T, C>(x, w, y, p.atomic ? nullptr : static_cast<A*>(ws),
                                 s, p.splits, p.chunk);
  });
}

template <typename T, class C>
void backward(const Plan& p, const T* go, const T* x, const T* wt, T* gx,
              void* ws, const Adder2dShape& s, InputGradRule rule) {
  using A = typename Acc<T>::type;
  A* partial = p.atomic ? nullptr : static_cast<A*>(ws);  // as the launcher
  launch(p.grid, kThreads, [&] {
    if (rule == kSignFast) {
      if constexpr (std::is_same<T, A>::value)
        adder2d_backward_input_kernel<T, C, kSignFast>(go, x, wt, gx, partial,
                                                       s, p.splits, p.chunk);
    } else if (rule == kSignExact) {
      adder2d_backward_input_kernel<T, C, kSignExact>(go, x, wt, gx, partial,
                                                      s, p.splits, p.chunk);
    } else {
      adder2d_backward_input_kernel<T, C, kHardtanh>(go, x, wt, gx, partial,
                                                     s, p.splits, p.chunk);
    }
  });
}

// The launcher's last kernel after kSignFast (and the split reduction).
template <typename T>
void sign_ties(const T* go, const T* x, const T* wt, T* gx,
               const Adder2dShape& s) {
  if constexpr (std::is_same<T, typename Acc<T>::type>::value)
    launch(sign_ties_grid<T>(s), kThreads,
           [&] { sign_ties_kernel<T>(go, x, wt, gx, s); });
}

// What the launcher does around a kernel: zero the output that partial sums
// are added into atomically, or sum the workspace's partial sums.
template <typename T>
void start(const Plan& p, std::vector<T>& out) {
  if (p.splits > 1 && p.atomic) std::fill(out.begin(), out.end(), make<T>(0));
}

template <typename T>
void reduce(const Plan& p, void* ws, T* out, float scale) {
  if (p.splits == 1 || p.atomic) return;
  launch(dim3(4), 256, [&] {
    reduce_splits_kernel<T>(static_cast<const typename Acc<T>::type*>(ws),
                            out, p.out_numel, p.splits, scale);
  });
}

// Max error over the largest finite reference value; a NaN or infinity
// must be matched exactly (NaN by NaN).
double rel(const std::vector<double>& got, const std::vector<double>& want) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(want[i])) {
      if (!(got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i]))))
        err = INFINITY;
      continue;
    }
    err = std::max(err, std::fabs(got[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
  }
  return scale > 0 ? err / scale : err;
}

// What a case plants in its random data for the sign rule's ties.
enum Plant { kNoPlant, kTies, kNonFinite };

template <typename T>
bool check(const Case& k, int sm_count, InputGradRule rule,
           bool deterministic, const char* name, double tol,
           Plant plant = kNoPlant) {
  const bool sign = rule != kHardtanh;
  const Adder2dShape s = shape_of(k);
  const int64_t cin_g = s.cin_g(), cout_g = s.cout_g(), taps = s.taps();
  std::mt19937 rng(k.c * 131 + k.cout + sm_count);
  std::normal_distribution<double> normal;
  std::vector<T> x(s.n * s.c * s.h * s.w), w(s.cout * cin_g * taps),
      go(s.n * s.cout * s.hout * s.wout);
  for (auto* v : {&x, &w, &go})
    for (auto& e : *v) e = make<T>(normal(rng));
  if (plant != kNoPlant) {
    // Ties: a sixth of the inputs take one of their channel's filter
    // values; zeros of both signs on each side.
    std::uniform_int_distribution<int64_t> any(0, 1 << 30);
    const int64_t HW = s.h * s.w;
    for (int64_t i = 0; i < (int64_t)x.size(); ++i) {
      const int64_t c = i / HW % s.c, g = c / cin_g;
      if (any(rng) % 6 == 0)
        x[i] = w[((g * cout_g + any(rng) % cout_g) * cin_g + c % cin_g) *
                     taps + any(rng) % taps];
      else if (any(rng) % 10 == 0)
        x[i] = make<T>(any(rng) % 2 ? 0. : -0.);
    }
    for (auto& e : w)
      if (any(rng) % 10 == 0) e = make<T>(any(rng) % 2 ? 0. : -0.);
    if (plant == kNonFinite) {
      // NaN and infinities in the inputs, one channel's filters with a NaN,
      // an infinite filter value met by the same infinity.
      for (int64_t i = 0; i < (int64_t)x.size(); i += 7)
        x[i] = make<T>(i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY);
      w[any(rng) % w.size()] = make<T>(NAN);
      w[any(rng) % w.size()] = make<T>(INFINITY);
    }
  }

  // Reference: direct loops in float64 over the (rounded) inputs.
  std::vector<double> y_ref(go.size(), 0), gx_ref(x.size(), 0);
  for (int n = 0; n < s.n; ++n)
    for (int t = 0; t < s.cout; ++t)
      for (int oh = 0; oh < s.hout; ++oh)
        for (int ow = 0; ow < s.wout; ++ow) {
          const int g = t / cout_g;
          const int64_t yi = ((n * s.cout + t) * s.hout + oh) * s.wout + ow;
          double acc = 0;
          for (int c = 0; c < cin_g; ++c)
            for (int i = 0; i < s.kh; ++i)
              for (int j = 0; j < s.kw; ++j) {
                const int hi = oh * s.sh - s.ph + i * s.dh;
                const int wi = ow * s.sw - s.pw + j * s.dw;
                const bool in = hi >= 0 && hi < s.h && wi >= 0 && wi < s.w;
                const int64_t xi =
                    ((n * s.c + g * cin_g + c) * s.h + hi) * s.w + wi;
                const double wv = val(w[((t * cin_g + c) * s.kh + i) * s.kw + j]);
                const double d = wv - (in ? val(x[xi]) : 0.);
                acc += std::fabs(d);
                if (in)
                  gx_ref[xi] += val(go[yi]) *
                                (sign ? (d > 0) - (d < 0)
                                      : std::max(-1., std::min(1., d)));
              }
          y_ref[yi] = -acc;
        }

  // Forward, poisoned outputs and workspace.
  const Plan pf = forward_plan<T>(s, sm_count, deterministic);
  std::vector<T> y(go.size(), make<T>(1e3));
  std::vector<char> ws(workspace_bytes<T>(pf) + 8, 0x7f);
  start(pf, y);
  with_forward_tile<T>(pf.tile, [&](auto tile) {
    forward<T, decltype(tile)>(pf, x.data(), w.data(), y.data(), ws.data(), s);
  });
  reduce<T>(pf, ws.data(), y.data(), -1.f);

  // Input gradient; filters as (groups, taps, cout_g, cin_g).
  std::vector<T> wt(w.size());
  for (int g = 0; g < s.groups; ++g)
    for (int t = 0; t < cout_g; ++t)
      for (int c = 0; c < cin_g; ++c)
        for (int tap = 0; tap < taps; ++tap)
          wt[((g * taps + tap) * cout_g + t) * cin_g + c] =
              w[((g * cout_g + t) * cin_g + c) * taps + tap];
  const Plan pb = backward_input_plan<T>(s, sm_count, deterministic);
  std::vector<T> gx(x.size(), make<T>(1e3));
  std::vector<char> ws2(workspace_bytes<T>(pb) + 8, 0x7f);
  start(pb, gx);
  // As the launcher: the fast rule where sign_fast_cuda allows it.
  const bool fast =
      rule == kSignFast && sign_fast_cuda<T>(s, deterministic, 1);
  const InputGradRule run = fast ? kSignFast : sign ? kSignExact : kHardtanh;
  with_backward_tile<T>(pb.tile, [&](auto tile) {
    backward<T, decltype(tile)>(pb, go.data(), x.data(), wt.data(), gx.data(),
                                ws2.data(), s, run);
  });
  reduce<T>(pb, ws2.data(), gx.data(), 1.f);
  if (fast) sign_ties<T>(go.data(), x.data(), wt.data(), gx.data(), s);

  std::vector<double> yd(y.size()), gxd(gx.size());
  for (size_t i = 0; i < y.size(); ++i) yd[i] = val(y[i]);
  for (size_t i = 0; i < gx.size(); ++i) gxd[i] = val(gx[i]);
  const double ef = rel(yd, y_ref), eb = rel(gxd, gx_ref);
  const bool ok = ef < tol && eb < tol;
  std::printf("%s %s n%d c%d %dx%d cout%d k%dx%d s%d,%d p%d,%d d%d,%d g%d "
              "sms%d %s%s%s: forward tile %d splits %d%s err %.1e, input grad "
              "tile %d splits %d%s err %.1e\n",
              ok ? "ok  " : "FAIL", name, k.n, k.c, k.h, k.w, k.cout, k.kh,
              k.kw, k.sh, k.sw, k.ph, k.pw, k.dh, k.dw, k.groups, sm_count,
              fast ? "sign fast" : sign ? "sign" : "hardtanh",
              deterministic ? " deterministic" : "",
              plant == kTies ? " ties planted"
              : plant == kNonFinite ? " ties, NaN, inf planted" : "",
              pf.tile, pf.splits, pf.splits > 1 && pf.atomic ? " atomic" : "",
              ef, pb.tile, pb.splits,
              pb.splits > 1 && pb.atomic ? " atomic" : "", eb);
  return ok;
}

int main() {
  // n, c, h, w, cout, kh, kw, sh, sw, ph, pw, dh, dw, groups
  const std::vector<Case> cases = {
      {2, 67, 9, 13, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1},     // large tile, tails
      {1, 130, 5, 7, 257, 1, 1, 1, 1, 0, 0, 1, 1, 1},    // 1x1, 3 row blocks
      {2, 64, 11, 9, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1},     // stride 2
      {1, 12, 9, 9, 12, 3, 3, 1, 1, 2, 2, 1, 1, 12},     // depthwise
      {3, 24, 10, 10, 36, 5, 5, 2, 2, 2, 2, 1, 1, 3},    // groups, 5x5
      {1, 5, 7, 6, 3, 3, 5, 3, 2, 1, 3, 2, 1, 1},        // odd everything
      {2, 40, 8, 8, 20, 7, 1, 1, 3, 3, 0, 1, 2, 2},      // 7x1, dilation
      {1, 256, 4, 4, 130, 3, 3, 1, 1, 1, 1, 1, 1, 1},    // many splits
      {1, 33, 6, 5, 40, 3, 3, 2, 1, 1, 1, 2, 2, 1},
      {2, 3, 17, 19, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1},      // K < one step
      {2, 16, 9, 7, 24, 1, 1, 2, 2, 0, 0, 1, 1, 1},      // 1x1/2: phases
                                                         // without a tap
      {1, 8, 1, 5, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1},        // a phase without
                                                         // positions
      {1, 6, 9, 9, 6, 3, 3, 2, 2, 2, 2, 2, 2, 1},        // dilation 2 = stride
      {2, 4, 11, 10, 6, 5, 3, 3, 2, 2, 1, 2, 3, 2},      // 3 and 2 phases
  };
  bool ok = true;
  // 1000 multiprocessors: most calls split their reduction; 4: few do.
  for (const auto& k : cases)
    for (int sms : {1000, 4}) {
      for (bool sign : {true, false}) {
        const InputGradRule exact = sign ? kSignExact : kHardtanh;
        ok &= check<float>(k, sms, exact, sign, "float ", 1e-5);
        if (sms == 4)
          ok &= check<double>(k, sms, exact, !sign, "double", 1e-12);
      }
      // The fast sign rule (not deterministic: its corrections are atomic)
      // with ties planted; the exact rule on the same data. (Not on the
      // two cases of 130 and 256 channels: the tie kernel's sorts are
      // slow here, 256 threads meeting at each of its barriers.)
      if (k.c > 100) continue;
      ok &= check<float>(k, sms, kSignFast, false, "float ", 1e-5, kTies);
      ok &= check<float>(k, sms, kSignExact, false, "float ", 1e-5, kTies);
      ok &= check<float>(k, sms, kSignFast, false, "float ", 1e-5,
                         kNonFinite);
      if (sms == 4) {
        ok &= check<double>(k, sms, kSignFast, false, "double", 1e-12, kTies);
        ok &= check<double>(k, sms, kSignFast, false, "double", 1e-12,
                            kNonFinite);
      }
    }
  // The tie kernel's runs (4680 filter values a channel: 2 runs in float,
  // 3 in double) and chunks (9000 input positions a channel: 2).
  for (const Case& k : {Case{1, 2, 5, 5, 520, 3, 3, 1, 1, 1, 1, 1, 1, 1},
                        Case{1, 2, 100, 90, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1}})
    for (Plant plant : {kTies, kNonFinite}) {
      ok &= check<float>(k, 4, kSignFast, false, "float ", 1e-5, plant);
      ok &= check<double>(k, 4, kSignFast, false, "double", 1e-12, plant);
    }
  // float16 inputs, float accumulation: the output's rounding (2^-11); the
  // fast rule is not taken for half types.
  for (int sms : {1000, 4}) {
    ok &= check<__half>(cases[0], sms, kSignExact, false, "half  ", 2e-3);
    ok &= check<__half>(cases[0], sms, kSignFast, false, "half  ", 2e-3,
                        kTies);
  }
  std::printf(ok ? "all cases match\n" : "some cases FAILED\n");
  return ok ? 0 : 1;
}
