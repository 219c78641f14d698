// CPU kernels of adder2d: forward and input gradient.
//
// Both are L1 "GEMMs" with register-blocked micro-kernels written with GCC
// vector extensions, compiled three times: for AVX-512 (16 floats / 8
// doubles a vector, mask-register compares), for AVX2+FMA and for the
// baseline ISA (8 / 4), picked at run time by CPU capability (capped by
// set_cpu_isa or ADDER_DET_CPU_ISA).
//
// forward:  the input patches are packed into NR-wide panels [K][NR] (a
//   group's positions of all samples in one sequence); then for K-blocks of
//   KC, MR filters x NR positions are accumulated in registers: acc += 2
//   min(w, x), and the output is that minus the patch and filter sums (=
//   -sum |w - x| for finite values, after shifting both by per-channel
//   filter means; panels holding inf or NaN use acc += |w - x|). Tasks are
//   blocks of panels, and of filters too where the panels are few. Layers
//   with few filters (any number with AVX-512) read the padded input in
//   place instead, strided ones split into stride phases where the map is
//   wide enough. Layers with many filters and enough outputs run "by
//   filters" on that padded input: vectors of filters against broadcast
//   input values, computing only the valid outputs. Maps of few positions
//   run "by rows": each output the L1 distance of a filter row, read as it
//   is, and a patch row, vectors along K (no filter layout per call).
// input gradient: per task = (sample, group, block of input channels) the
//   task owns those channels' planes of dX, so the col2im scatter needs no
//   atomics. Each MR x NR tile keeps its patch values in registers and
//   reduces over the output channels: acc += g * G(w - x). Layers the
//   in-place kernels take read the input in place instead, a strided one
//   phase by phase with the taps that reach each phase. The sign rule
//   has a cheaper tile, acc += [w > x] g, exact where no input equals a
//   filter value (checked per sample and channel, sign_tie_channels), and
//   where a few do once their terms are added (add_tie_terms).
//   Maps of few positions run "by rows" here too: a block of channels'
//   gradient columns, vectors along K against every filter as it is.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define ADDER_NEON 1  // the baseline build's 16-byte vectors are NEON's
#else
#define ADDER_NEON 0
#endif
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "../adder2d.h"
#include "path_mode.h"

#define ADDER_INLINE inline __attribute__((always_inline))

namespace adder_det {
namespace {

// A stride phase of the in-place input gradient: input positions (h0 + h sh,
// w0 + w sw), h < rows, w < cols, reached through `taps` of the filter taps
// (backward_input_implicit; a stride-1 layer is one phase with every tap).
struct DxPlane {
  int64_t rows, cols, h0, w0, taps;
};

// The flags of the sign rule's tie check (sign_tie_channels), per (sample,
// channel), as the input-gradient kernels read them.
enum TieFlag : uint8_t {
  kNoTie = 0,
  kTieExact = 1,  // a NaN, or too many ties: the exact tile
  kTieTerms = 2,  // a few tied values: the fast tile, then add_tie_terms
};

// Whether the forward's min form accumulates min(w, x) by adds (else by
// FMAs of 2 min(w, x); forward_tile), and the sparse forward its min terms
// (else by FMAs of min * 1; sparse_accumulate), as set_min_add_mode says.
bool min_form_adds();
// Whether the AVX-512 kernels' forward tiles (forward_tile and the tile by
// filters, forward_fvec_impl) compute in 256-bit vectors, as
// set_half_width_tile_mode says.
bool half_width_tiles();

// The kernels, compiled for AVX-512, for AVX2+FMA and for the baseline ISA.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ADDER_ISA_X86 1
#define ADDER_VEC_BYTES 64
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
namespace avx512 {
#include "adder2d_cpu_kernels.h"
}  // namespace avx512
#pragma GCC pop_options
#undef ADDER_VEC_BYTES
#define ADDER_VEC_BYTES 32
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "adder2d_cpu_kernels.h"
}  // namespace avx2
#pragma GCC pop_options
#undef ADDER_ISA_X86
#define ADDER_HAVE_X86_ISAS 1
#endif
#undef ADDER_VEC_BYTES
#define ADDER_VEC_BYTES 16
#define ADDER_ISA_X86 0
// aarch64 GCC schedules before register allocation by default, and its
// schedule of the 5 x 4-vector forward tile (20 accumulators of NEON's 32
// registers) spilled: 7 stack loads and stores a reduction step (GCC 12,
// docs/benchmarks.md session 29); without that pass none.
#if ADDER_NEON && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-schedule-insns")
#endif
namespace generic {
#include "adder2d_cpu_kernels.h"
}  // namespace generic
#if ADDER_NEON && defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
#undef ADDER_ISA_X86
#undef ADDER_VEC_BYTES

// Instruction sets of the kernels, best last.
enum CpuIsa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };
const char* const kIsaNames[] = {"generic", "avx2", "avx512"};

CpuIsa best_cpu_isa() {
#ifdef ADDER_HAVE_X86_ISAS
  static const CpuIsa best = [] {
    if (__builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq"))
      return kAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return kAvx2;
    return kGeneric;
  }();
  return best;
#else
  return kGeneric;
#endif
}

int isa_index(const std::string& name) {
  for (int i = 0; i <= kAvx512; ++i)
    if (name == kIsaNames[i]) return i;
  return -1;
}

// The cap set_cpu_isa (or ADDER_DET_CPU_ISA at load) puts on the ISA; the
// kernels run the best one under it that the CPU has.
std::atomic<int>& isa_cap() {
  static std::atomic<int> cap([] {
    const char* env = std::getenv("ADDER_DET_CPU_ISA");
    if (env == nullptr || *env == '\0') return (int)kAvx512;
    const int i = isa_index(env);
    TORCH_CHECK(i >= 0, "ADDER_DET_CPU_ISA=", env,
                ": expected generic, avx2 or avx512");
    return i;
  }());
  return cap;
}

CpuIsa active_isa() {
  return (CpuIsa)std::min<int>(best_cpu_isa(), isa_cap().load());
}

// The active ISA's build of a kernel (or of a constant's accessor).
#ifdef ADDER_HAVE_X86_ISAS
#define ADDER_PICK_ISA(...)                                        \
  (active_isa() == kAvx512 ? &avx512::__VA_ARGS__                  \
   : active_isa() == kAvx2 ? &avx2::__VA_ARGS__                    \
                           : &generic::__VA_ARGS__)
#else
#define ADDER_PICK_ISA(...) (&generic::__VA_ARGS__)
#endif

// The forward packs panels of fwd_nr positions and kFwdMR-filter tiles
// outside the kernels, so every build must agree on both.
#ifdef ADDER_HAVE_X86_ISAS
static_assert(avx512::fwd_nr<float>() == generic::fwd_nr<float>() &&
                  avx2::fwd_nr<float>() == generic::fwd_nr<float>() &&
                  avx512::fwd_nr<double>() == generic::fwd_nr<double>() &&
                  avx2::fwd_nr<double>() == generic::fwd_nr<double>() &&
                  avx512::kFwdMR == generic::kFwdMR &&
                  avx2::kFwdMR == generic::kFwdMR,
              "the forward's panel width and filter tile differ by ISA");
static_assert(avx512::kSparseNV == generic::kSparseNV &&
                  avx2::kSparseNV == generic::kSparseNV,
              "forward_sparse packs with generic::kSparseNV for every ISA");
#endif

// One axis of the input gradient's stride phases: phase a holds the input
// coordinates a + m * stride (m < count), which output m + off[i] reads
// through tap i, for the taps i with (a + pad - i * dil) divisible by the
// stride (off[i] that quotient); the other taps never reach them.
struct AxisPhase {
  int64_t count;
  std::vector<int64_t> taps, off;
};

std::vector<AxisPhase> axis_phases(int64_t size, int64_t pad, int64_t stride,
                                   int64_t k, int64_t dil) {
  std::vector<AxisPhase> phases(stride);
  for (int64_t a = 0; a < stride; ++a) {
    AxisPhase& p = phases[a];
    p.count = a < size ? (size - a + stride - 1) / stride : 0;
    for (int64_t i = 0; i < k; ++i) {
      const int64_t num = a + pad - i * dil;
      if (num % stride == 0) p.taps.push_back(i), p.off.push_back(num / stride);
    }
  }
  return phases;
}

// The in-place input gradient's layout (backward_input_implicit): each
// axis's stride phases, and the output-gradient plane [hg][wg] they all
// read, the outputs at row pt and column pl, zeros wherever no output is;
// wg is also the pitch in which every phase's positions are walked.
struct DxLayout {
  std::vector<AxisPhase> rows, cols;
  int64_t hg, wg, pt, pl;
};

DxLayout dx_layout(const Adder2dShape& s) {
  DxLayout d;
  d.rows = axis_phases(s.h, s.ph, s.sh, s.kh, s.dh);
  d.cols = axis_phases(s.w, s.pw, s.sw, s.kw, s.dw);
  auto extent = [](const std::vector<AxisPhase>& axis, int64_t out,
                   int64_t* lead) {
    int64_t before = 0, after = out;
    for (const AxisPhase& p : axis)
      for (int64_t o : p.off)
        before = std::max(before, -o), after = std::max(after, p.count + o);
    *lead = before;
    return before + after;
  };
  d.hg = extent(d.rows, s.hout, &d.pt);
  d.wg = extent(d.cols, s.wout, &d.pl);
  return d;
}

// Whether a layer's forward and input gradient read the (padded) input in
// place instead of packing patches. Packing costs about K x L memory writes
// whatever the filter count, so it pays off only over many filters. AVX2:
// up to 128 filters the in-place kernels are faster (up to 2x with 16-64,
// 17-25% at ResNet-50's 128-filter 28x28 layer); with 256 they were level
// or slower (18% at 28x28), and so was 1x1 (packing is a plain copy there).
// AVX-512 (16 positions a vector): in place was faster at every filter
// count measured (256 filters at 14x14: forward 22% faster, at 28x28 the
// input gradient 26%; 512 at 7x7 level or faster) (docs/benchmarks.md).
// Strided layers: each pass by stride phase where the map is wide enough
// (use_in_place_forward, use_in_place_backward).
bool in_place_filters(const Adder2dShape& s) {
  return s.taps() > 1 && (s.cout_g() <= 128 || active_isa() == kAvx512);
}
bool use_in_place(const Adder2dShape& s) {
  return s.sh == 1 && s.sw == 1 && in_place_filters(s);
}
// Rows and columns of a stride phase of the padded input (forward_implicit).
int64_t phase_rows(const Adder2dShape& s) {
  return (s.h + 2 * s.ph + s.sh - 1) / s.sh;
}
int64_t phase_cols(const Adder2dShape& s) {
  return (s.w + 2 * s.pw + s.sw - 1) / s.sw;
}
// The input gradient of a strided layer in place by stride phase
// (backward_input_implicit) computes each phase's rows in the pitch wg.
// Measured against packing (3x3/2, per-process medians; session 13): 0.89-
// 0.95x the time with AVX-512 and 0.93-0.97x with AVX2 where that is <=
// 1.14x the input positions (maps of 14x14 and larger in), 1.35x at 8x8
// in (1.25x). So from 1.2x on they stay packed, as in the forward.
bool use_in_place_backward(const Adder2dShape& s) {
  if (s.sh == 1 && s.sw == 1) return use_in_place(s);
  if (!in_place_filters(s)) return false;
  const DxLayout d = dx_layout(s);
  int64_t computed = 0;  // every (row phase, column phase) pair's rows
  for (const AxisPhase& r : d.rows)
    for (const AxisPhase& c : d.cols)
      computed += c.count ? r.count * d.wg : 0;
  return 5 * computed <= 6 * s.h * s.w;
}
// The forward in place computes hout x ceil(Wp / sw) positions a sample
// (rounded up to tiles; forward_implicit), the padded pitch, for hout x
// wout outputs; packing computes the N x hout x wout outputs rounded up to
// whole panels (samples back to back).
int64_t in_place_forward_positions(const Adder2dShape& s) {
  constexpr int64_t NR = generic::fwd_nr<float>();
  return s.n * ((s.hout * phase_cols(s) + NR - 1) / NR * NR);
}
// Strided layers read their input split into stride phases (consecutive
// values too). Measured against packing (3x3/2, per-process medians;
// session 12): 0.72-0.94x the time where that computes <= 1.14x the
// outputs (maps of 14x14 and larger out; AVX2 and AVX-512), level or
// slower at 8x8 out (1.25x; AVX2 1.24x the time), 1.56x the time at 4x4
// (2x). So from 1.2x the outputs on they stay packed.
// Stride 1, against packing (3x3, 256 filters unless said, alternated
// runs; session 14): in place faster up to 1.25x what packing computes
// (3x3 maps 1.0x: 0.88x the time; 6x6 1.2x: 0.9x; 10x10 1.23x: 0.75-
// 0.9x), packing faster from 1.5x on (5x5: 0.86x the time; 4x4, 2.0x:
// 0.66x, 512 filters 0.58x, 128 filters 0.75-0.9x; AVX2, 128 filters: 4x4
// 0.8-1.0x, 5x5 level). So from 1.4x on they pack.
bool use_in_place_forward(const Adder2dShape& s) {
  if (!in_place_filters(s)) return false;
  const int64_t computed = in_place_forward_positions(s);
  if (s.sh == 1 && s.sw == 1) {
    constexpr int64_t NR = generic::fwd_nr<float>();
    const int64_t packed = (s.n * s.l() + NR - 1) / NR * NR;
    return 5 * computed <= 7 * packed;
  }
  return 5 * computed <= 6 * s.n * s.hout * s.wout;
}

// The forward by filters (forward_by_filters), against the paths above
// (session 14; alternated runs, forward ms, batch 2, 3x3): AVX-512, 512
// filters at 7x7 4.51-4.58 -> 3.79-3.83, 256 at 7x7 1.17 -> 0.96, 256 at
// 14x14 3.15-3.30 -> 2.85-2.94, 128 at 28x28 3.08 -> 2.76, 64 at 56x56
// 3.00 -> 2.87-2.91, 64 at 14x14 0.26 -> 0.23, 3x3/2 512 at 14x14 in
// (packed) 4.75 -> 4.24, 256 at 28x28 in 3.62 -> 3.50, 128 at 56x56 level;
// slower with fewer filters (48 at 28x28 0.50 -> 0.58, 16 at 64x64 2x),
// on 1x1 layers (64 -> 64 at 56x56 0.52 -> 0.71) and where few positions
// leave the filter packing uncovered (3x3/2 256 at 7x7 in, 32 outputs:
// 0.48 -> 0.57-0.77; 4x4 level or slower). AVX2: 512 at 7x7 7.51 -> 6.14,
// 256 at 14x14 6.45 -> 5.45, 128 at 28x28 5.84 -> 5.28, 3x3/2 512 at 14x14
// in 7.59 -> 6.51, but 64 at 56x56 5.72 -> 7.16. With AVX2's tile at 5
// positions (session 32, Zen 3, 0.62-0.82x the 6-position tile's time),
// from 64 filters was level (64 at 56x56 0.97x, the main job's 64-filter
// 3x3 layers 0.91-1.08x, summed 1.00x): kept at 128. Not timed with the
// baseline ISA's kernels, which keep the other paths.
bool use_forward_by_filters(const Adder2dShape& s) {
  if (s.taps() == 1 || active_isa() == kGeneric) return false;
  const int64_t min_filters = active_isa() == kAvx512 ? 64 : 128;
  // The filter packing gathers values NF x K apart with int32 offsets.
  return s.cout_g() >= min_filters && s.n * s.hout * s.wout >= 64 &&
         s.k() < (int64_t(1) << 26);
}

#ifdef ADDER_HAVE_X86_ISAS
// An AMD CPU's family and model from CPUID leaf 1 (base plus extended
// fields); {0, 0} on other vendors. The auto modes below pick by them.
struct CpuFamilyModel {
  unsigned family = 0, model = 0;
};
CpuFamilyModel amd_family_model() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__builtin_cpu_is("amd") || !__get_cpuid(1, &a, &b, &c, &d)) return {};
  return {((a >> 8) & 0xf) + ((a >> 20) & 0xff),
          ((a >> 4) & 0xf) | ((a >> 12) & 0xf0)};
}
#endif

// The forward's min form by adds (and the sparse forward's min terms):
// auto (on AMD Zen 1 cores, where min and FMA share two pipes and adds have
// two others; forward_tile; and in the baseline build, which x86-64 runs
// without FMA: a multiply and an add, 0.70-0.72x the time by adds on
// ResNet-50 layers, docs/benchmarks.md "session 24"), always or never.
std::atomic<int> min_add_mode_index{kModeAuto};

// The dense forward's min form (|w - x| = w + x - 2 min(w, x), on shifted
// values, with the patch and filter sums subtracted after) exists because
// x86 has no one-instruction |a - b|: its direct form is a subtract, a mask
// and an add a vector. NEON's FABD is one: on aarch64 the direct form, FABD
// and an add, is as short as the min form's FMIN and add, exact, and needs
// no shift or sums, so the baseline build there computes the dense
// forward in it.
bool min_form_pays() { return !(ADDER_NEON && active_isa() == kGeneric); }

bool min_form_adds() {
  const int mode = min_add_mode_index.load();
  if (mode != kModeAuto) return mode == kModeAlways;
  if (active_isa() == kGeneric) return true;
#ifdef ADDER_HAVE_X86_ISAS
  // Zen 1 and Zen+: AMD family 0x17, models below 0x30 (Zen 2 from there).
  static const bool zen1 = [] {
    const CpuFamilyModel cpu = amd_family_model();
    return cpu.family == 0x17 && cpu.model < 0x30;
  }();
  return zen1;
#else
  return false;
#endif
}

// The AVX-512 forward tiles in 256-bit vectors: auto (on AMD Zen 4 cores,
// family 0x19, which run 512-bit ops as two halves and broadcast to 512
// bits on an FP pipe; forward_tile), always or never. The AVX2 and
// baseline kernels ignore it.
std::atomic<int> half_width_mode_index{kModeAuto};

bool half_width_tiles() {
  const int mode = half_width_mode_index.load(std::memory_order_relaxed);
  if (mode != kModeAuto) return mode == kModeAlways;
#ifdef ADDER_HAVE_X86_ISAS
  // Zen 3 (also family 0x19) has no AVX-512, so never runs these kernels;
  // Zen 5 (0x1a, full-width 512-bit units on server parts) is not timed.
  static const bool zen4 = amd_family_model().family == 0x19;
  return zen4;
#else
  return false;
#endif
}

// The forward skipping zero inputs (forward_sparse): auto (by the
// thresholds below), always (whenever the input is non-negative and
// finite, any ISA, any size: for tests) or never.
std::atomic<int> sparse_mode_index{kModeAuto};

// The most filter values a group whose sparse forward tiles are packed
// ahead of the arithmetic (8 MB of float). Past it, packed per use: the
// up-front pass's tiles came back from memory, and auto mode had left
// such layers to the dense path (sessions 18-19: ResNet-50's 512-filter
// 3x3 layers 1.78-1.99x conv's forward time against 1.39-1.71x in the
// same benchmark runs, Intel; 0.60-0.67x the dense forward packed ahead,
// 0.55-0.60x per use, AMD, half zeros). Per use for every layer lost on
// those with many chunks of positions (each packs the filters again):
// 0.66-0.76x against 0.55-0.66x on ResNet-50's 1x1 layers at 14x14 to
// 56x56.
constexpr int64_t kSparsePackAheadMax = int64_t(1) << 21;

// The forward and input gradient by rows (forward_by_rows,
// backward_input_by_rows): auto (maps of few positions, below), always
// (any layer: for tests) or never.
std::atomic<int> rows_mode_index{kModeAuto};

// Below this many positions (samples x outputs) the forward by rows of
// 3x3 layers (64-512 filters, batch 2 and 8) took this share of the other
// paths' time (which lay out every filter and pack or pad the patches for
// a few positions' worth of arithmetic), with AVX-512, AVX2 and the
// baseline build alike: 8 positions 0.32-0.43x, 18 0.43-0.63x, 32
// 0.65-1.02x, 50 0.74-1.10x. From 64 on the forward by filters takes most
// such layers: 72-98 positions 1.07-1.50x slower by rows with AVX-512 and
// AVX2 (the baseline build 0.83-1.42x). Pointwise layers stay packed (a
// plain copy there): 1.02-1.36x slower by rows at 32-50 positions
// (docs/benchmarks.md "session 24").
constexpr int64_t kRowsPositions = 64;

bool use_forward_by_rows(const Adder2dShape& s) {
  const int mode = rows_mode_index.load();
  if (mode != kModeAuto) return mode == kModeAlways;
  return s.taps() > 1 && s.n * s.l() < kRowsPositions;
}

// The input gradient by rows against the other paths (the same 3x3 and
// 1x1 layers, both rules): AVX-512 0.19-0.30x at 8 positions, 0.56x at 18,
// 0.28-0.67x at 32, 0.50-0.98x at 50, pointwise 0.82-0.86x at 32-50, but
// the sign rule 1.08-1.36x slower at 72-98; the baseline build 0.24-0.99x
// up to 98; AVX2 (16 registers: tiles of 2 positions x 2 vectors) 0.30-
// 0.69x up to 18, 0.34-1.13x at 32, 0.85-1.15x at 50, so below 32 there
// (docs/benchmarks.md "session 24").
bool use_backward_by_rows(const Adder2dShape& s) {
  const int mode = rows_mode_index.load();
  if (mode != kModeAuto) return mode == kModeAlways;
  return s.n * s.l() < (active_isa() == kAvx2 ? 32 : kRowsPositions);
}

// Which layers may take it (the input's zeros are sampled after).
bool sparse_forward_candidate(const Adder2dShape& s, bool is_float) {
  const int mode = sparse_mode_index.load();
  // The lists hold int32 offsets of filter rows (K x NF) and of patch rows.
  const int64_t NF = 64;  // the widest tile (AVX-512 float)
  if (mode == kModeNever || s.k() * NF >= (int64_t(1) << 31) ||
      s.c * (s.h + 2 * s.ph + s.sh) * (s.w + 2 * s.pw + s.sw) >=
          (int64_t(1) << 31))
    return false;
  if (mode == kModeAlways) return true;
  // From one whole filter tile a group: 64 filters on AVX-512, 32 on
  // AVX2. AVX2 (tiles of 32 filters; values listed 8 at a time through a
  // permute table, since session 19), half zeros, on a 2-core AMD EPYC
  // (Zen 1): 0.55-0.86x the dense forward on ResNet-50's layers (64 -> 64
  // 1x1 at 56x56 0.86x) and 0.51-0.93x on 32- and 64-filter layers of the
  // quarter-width ResNet-18 (batch 8, 10x10 to 80x80), but 1.07x where a
  // patch has 16 values (16 -> 32 1x1: listing and storing outweigh 8
  // terms a position) and 1.28x at 16 filters (half a tile). Before,
  // listing one value at a time, it took 128 filters (session 18, Intel
  // host in AVX2 mode: level at 64).
  // Pointwise layers with AVX2 where the dense min form runs by FMAs (not
  // Zen 1; timed on a Zen 3 core, session 31, half zeros, ResNet-50's 1x1
  // layers, alternated in one process, 2 runs): the dense pointwise path
  // packs its filters as they are, the sparse one transposes them, a cost
  // the arithmetic of few positions does not cover (98 positions: 2048 ->
  // 512 1.20-1.26x the dense time, 1024 -> 2048 1.05-1.14x), and lists
  // every value for few filters (64 filters at 56x56: 1.02-1.17x); from 128
  // filters on 392 positions level (0.85-1.15x), on 1568 0.80-0.96x. So
  // from 128 filters and 128 positions there.
  const bool avx512 = active_isa() == kAvx512, avx2 = active_isa() == kAvx2;
  int64_t min_filters = avx512 ? 64 : avx2 ? 32 : -1, min_positions = 64;
  if (avx2 && s.taps() == 1 && !min_form_adds())
    min_filters = min_positions = 128;
  const int64_t min_k = avx2 ? 32 : 1;
  return is_float && min_filters > 0 && s.cout_g() >= min_filters &&
         s.k() >= min_k && s.n * s.hout * s.wout >= min_positions;
}
// The input's zeros from which it pays (AVX-512, ResNet-50's layers at
// 224x224, batch 2, forward time against the dense paths, alternated in
// one process, session 18): half zeros 0.62-0.87x (3x3 and 1x1, strided
// too, 7x7 to 56x56; 64 -> 64 1x1 at 56x56 0.86-0.92x), 70% zeros
// 0.49-0.86x (an earlier build), a quarter zeros 0.8-1.22x (level).
constexpr double kSparseMinZeros = 0.4;
// Where the dense min form accumulates by adds (min_form_adds: AMD Zen 1)
// it runs at twice its FMA form's rate, and the sparse one pays from half
// zeros (AVX2, 2-core EPYC, ResNet-50's layers as above, session 21): 50%
// zeros 0.72-1.03x the dense forward, 45% 0.76-1.17x, 40% 0.81-1.14x, 30%
// 0.91-1.22x; 64-filter 1x1 layers at 56x56 are level at best.
constexpr double kSparseMinZerosMinAdd = 0.5;
// Where the AVX-512 dense tiles compute in 256-bit vectors (AMD Zen 4):
// session 22, with the sparse tile's terms added by adds, 50% zeros
// 0.66-0.95x the dense forward, 45% 0.69-1.02x, 40% 0.76-1.21x, 30%
// 0.84-1.33x (2-core EPYC, alternated in one process); session 23, by
// FMAs (sparse_accumulate) and with the dense tile by filters in 256-bit
// vectors too: 40% 0.69-1.05x (summed 0.72-0.82x over 3 runs), 35%
// 0.70-1.04x (0.79-0.84x), 30% 0.75-1.07x (0.83-0.87x), 25% 0.76-1.10x
// (0.91x), 20% 0.87-1.14x (0.98x), 10% 0.87-1.11x (0.98x), 2% 0.92-1.21x
// (1.06x).
constexpr double kSparseMinZerosHalfWidth = 0.3;

// The fraction of zeros in a sample of the input (256 runs of 16 values at
// golden-ratio steps through it: evenly spaced runs would all start at the
// same place of a channel's map, its border row, where a ReLU output has
// other statistics), 0 if a sampled value is negative or NaN: whether the
// sparse forward pays, judged without a pass over the input (the pass
// itself rejects a negative or non-finite value wherever it finds one).
template <typename T>
double sampled_zero_fraction(const T* x, int64_t numel) {
  constexpr int64_t kRuns = 256, kRun = 16;
  int64_t zeros = 0, seen = 0;
  const int64_t runs = std::min(kRuns, (numel + kRun - 1) / kRun);
  double where = 0;
  for (int64_t r = 0; r < runs; ++r) {
    where += 0.6180339887498949;
    where -= (int64_t)where;
    const int64_t b = std::min((int64_t)(where * numel), numel - 1);
    const int64_t e = std::min(numel, b + kRun);
    for (int64_t i = b; i < e; ++i) {
      if (!(x[i] >= T(0))) return 0;
      zeros += x[i] == T(0);
    }
    seen += e - b;
  }
  return seen ? double(zeros) / seen : 0;
}

// The zeros from which the sparse forward pays, by how fast the dense
// tile runs on this core.
double sparse_min_zeros() {
  if (min_form_adds()) return kSparseMinZerosMinAdd;
  if (half_width_tile()) return kSparseMinZerosHalfWidth;
  return kSparseMinZeros;
}

// Whether the forward tries forward_sparse (which still returns false if
// its pass meets a negative or non-finite value).
template <typename T>
bool try_sparse_forward(const Adder2dShape& s, const T* x, int64_t numel) {
  return sparse_forward_candidate(s, std::is_same_v<T, float>) &&
         (sparse_mode_index.load() == kModeAlways ||
          sampled_zero_fraction(x, numel) >= sparse_min_zeros());
}

// The sign rule's input gradient by input channels
// (backward_input_by_channels) where the fast tile runs on a stride-1
// layer in place, or on a 1x1 stride-1 layer without padding (packed
// otherwise). Against those (session 15, post-ReLU inputs, batch 2 unless
// said, alternated runs, input gradient ms): AVX-512, 512 channels 3x3 at
// 7x7 5.38-5.58 -> 4.68, 128 at 8x8 batch 8 1.36 -> 1.14, 256 at 14x14
// 3.71-3.84 -> 3.58-3.66, 128 at 28x28 3.60 -> 3.51-3.58; at 16x16 batch 8
// level, and slower on large maps (64 at 56x56 level to 1.08x, at 32x32
// batch 8 4.49-4.52 -> 5.47-5.50): the packing and its per-lane tie check
// cost a pass over the filters and inputs that the in-place tiles' pitch
// waste (7x7 1.29x, 28x28 1.07x) no longer repays. 1x1 (no pitch waste to
// remove): 512 -> 2048 at 7x7 2.55-2.90 -> 2.10-2.19, 2048 -> 512 2.71-2.78
// -> 2.19-2.21, but at 14x14 level (1024 -> 256) or slower (256 -> 1024:
// 1.67-1.71 -> 1.84-1.86). So up to 1024 input positions (N x H x W) with
// 3x3 and larger filters, 256 with 1x1, from 64 channels a group (32 a
// block). AVX2 (16 channels a vector) 0.9-0.99x on small 3x3 maps, not
// enough over the host's noise: not used.
bool use_backward_by_channels(const Adder2dShape& s) {
  const int64_t max_positions = s.taps() == 1 ? 256 : 1024;
  // (Its filter packing gathers values up to NC x taps apart, int32.)
  return s.sh == 1 && s.sw == 1 && active_isa() == kAvx512 &&
         s.cin_g() >= 64 && s.n * s.h * s.w <= max_positions &&
         s.taps() < (int64_t(1) << 26);
}

// Per-thread scratch memory, kept between calls: a fresh multi-megabyte
// buffer per call costs page faults that rival the arithmetic. Tag: one
// buffer per use that may be live at the same time in the same thread.
template <typename T, int Tag = 0>
T* scratch(int64_t count) {
  thread_local std::vector<char> buffer;
  const size_t bytes = count * sizeof(T) + 64;
  if (buffer.size() < bytes) {
    buffer.clear();
    buffer.shrink_to_fit();
    buffer.resize(bytes);
  }
  return reinterpret_cast<T*>(buffer.data() +
                              (64 - reinterpret_cast<uintptr_t>(buffer.data()) % 64) % 64);
}

// Scratch for `count` values that tiles may read up to `slack` values past
// (their last columns are dropped): the slack is zeroed, so the reads stay
// in bounds and see finite values.
template <typename T, int Tag>
T* scratch_with_slack(int64_t count, int64_t slack) {
  T* p = scratch<T, Tag>(count + slack);
  std::fill(p + count, p + count + slack, T(0));
  return p;
}

// Positions of N maps of rows x cols walked in a pitch: sample n's (r, c)
// at n * sample + r * pitch + c. Both "by" paths list their positions so.
std::vector<int64_t> pitch_positions(int64_t n, int64_t rows, int64_t cols,
                                     int64_t sample, int64_t pitch) {
  std::vector<int64_t> pos(n * rows * cols);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        pos[(i * rows + r) * cols + c] = i * sample + r * pitch + c;
  return pos;
}

// dst[g][n][l] = sum over taps of planes' (n, g) plane (plane values
// apart, n * groups + g) at position l's place in the pitch plus off[tap],
// l over rows x cols; summed in the planes' type (the forward's patch sums
// in double, the input gradient's output-gradient sums in T).
template <typename Acc, typename T>
void sum_over_taps(const Acc* planes, int64_t plane, const Adder2dShape& s,
                   int64_t rows, int64_t cols, int64_t pitch,
                   const int64_t* off, T* dst) {
  const int64_t L = rows * cols, taps = s.taps();
  at::parallel_for(0, s.groups * s.n, 1, [&](int64_t b, int64_t e) {
    for (int64_t gn = b; gn < e; ++gn) {
      const int64_t g = gn / s.n, n = gn % s.n;
      const Acc* src = planes + (n * s.groups + g) * plane;
      for (int64_t l = 0; l < L; ++l) {
        const int64_t lp = l / cols * pitch + l % cols;
        Acc acc = 0;
        for (int64_t tap = 0; tap < taps; ++tap) acc += src[lp + off[tap]];
        dst[(g * s.n + n) * L + l] = (T)acc;
      }
    }
  });
}

void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "adder2d (CPU kernel): ", name,
              " is on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
              "adder2d (CPU kernel): ", name, " has dtype ", t.scalar_type(),
              "; the CPU kernels take float32 or float64");
}

// The implicit forwards' input (see forward_implicit_chunk_impl): padded
// and shifted once, each channel split into its sh x sw stride phases
// (padded row r goes to phase row r / sh of phase r % sh, columns alike),
// so that a strided layer's output positions read consecutive values of
// each phase as a stride-1 layer's read the plane (xp, channels cstride
// apart, phase rows wq apart); its sums over each group's channels (csum);
// where tap (i, j) of output (0, 0) is in a channel's phases (toff), and
// term k (off). shift: per (group, channel), null for none.
// csum[(n * groups + g) * cstride + q] = the sum over group g's channels
// of value q of their planes (src: [N][C][cstride]), in double.
template <typename T>
void sum_over_channels(const T* src, int64_t cstride, const Adder2dShape& s,
                       double* csum) {
  const int64_t cin_g = s.cin_g();
  at::parallel_for(0, s.n * s.groups, 1, [&](int64_t b, int64_t e) {
    for (int64_t ng = b; ng < e; ++ng) {
      double* cs = csum + ng * cstride;
      const T* sg = src + ng * cin_g * cstride;
      std::fill(cs, cs + cstride, 0.);
      for (int64_t c = 0; c < cin_g; ++c)
        for (int64_t q = 0; q < cstride; ++q) cs[q] += sg[c * cstride + q];
    }
  });
}

template <typename T>
struct ImplicitInput {
  const T* xp;
  const double* csum;
  std::vector<int64_t> toff, off;
  int64_t cstride, wq;
};
template <typename T>
ImplicitInput<T> implicit_input(const T* x, const T* shift,
                                const Adder2dShape& s) {
  constexpr int NR = generic::fwd_nr<T>();
  const int64_t hq = phase_rows(s), wq = phase_cols(s);
  const int64_t plane = hq * wq, cstride = s.sh * s.sw * plane;
  const int64_t cin_g = s.cin_g(), K = s.k(), taps = s.taps();
  // Tiles run up to NR - 1 positions past the last one and the taps reach
  // up to (kw - 1) * dw / sw further: zeroed slack so that those reads
  // stay in bounds.
  const int64_t slack = 2 * NR + (s.kw - 1) * s.dw + 64;
  T* const xp = scratch_with_slack<T, 1>(s.n * s.c * cstride, slack);
  double* const csum =
      scratch_with_slack<double, 2>(s.n * s.groups * cstride, slack);
  at::parallel_for(0, s.n * s.c, 4, [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t c = nc % s.c, g = c / cin_g;
      const T sc = shift ? shift[g * cin_g + c % cin_g] : T(0);
      T* dst = xp + nc * cstride;
      const T* src = x + nc * s.h * s.w;
      std::fill(dst, dst + cstride, -sc);
      for (int64_t i = 0; i < s.h; ++i) {
        const int64_t r = i + s.ph;
        T* row = dst + (r % s.sh) * s.sw * plane + (r / s.sh) * wq;
        const T* in = src + i * s.w;
        // Column phase pc takes input columns j0, j0 + sw, ... in a run.
        for (int64_t pc = 0; pc < s.sw; ++pc) {
          const int64_t j0 = ((pc - s.pw) % s.sw + s.sw) % s.sw;
          if (j0 >= s.w) continue;
          T* d = row + pc * plane + (j0 + s.pw) / s.sw;
          const T* src_j = in + j0;
          const int64_t m = (s.w - j0 + s.sw - 1) / s.sw;
          if (s.sw == 1)
            for (int64_t i2 = 0; i2 < m; ++i2) d[i2] = src_j[i2] - sc;
          else
            for (int64_t i2 = 0; i2 < m; ++i2) d[i2] = src_j[i2 * s.sw] - sc;
        }
      }
    }
  });
  sum_over_channels(xp, cstride, s, csum);
  std::vector<int64_t> toff(taps), off(K);
  for (int64_t tap = 0; tap < taps; ++tap) {
    const int64_t r = (tap / s.kw) * s.dh, q = (tap % s.kw) * s.dw;
    toff[tap] = ((r % s.sh) * s.sw + q % s.sw) * plane + (r / s.sh) * wq +
                q / s.sw;
  }
  for (int64_t k = 0; k < K; ++k) off[k] = k / taps * cstride + toff[k % taps];
  return {xp, csum, std::move(toff), std::move(off), cstride, wq};
}

// Forward in place: tasks of (sample, group, chunk of phase-pitch
// positions) on implicit_input's planes, filters packed as
// pack_filters_impl lays them out (wpk). shift: as implicit_input's, null
// when the filters are not finite (direct form, unshifted).
template <typename T>
void forward_implicit(const T* x, const T* wpk, const T* wsum, const T* shift,
                      T* y, const Adder2dShape& s) {
  constexpr int NR = generic::fwd_nr<T>();
  const ImplicitInput<T> in = implicit_input(x, shift, s);
  const int64_t wq = in.wq;
  const int64_t positions = s.hout * wq;  // phase pitch
  // Chunk: ~<= 256 KiB of output scratch, at most 512 positions.
  int64_t lc = (256 << 10) / (int64_t)sizeof(T) / std::max<int64_t>(1, s.cout_g());
  lc = std::max<int64_t>(NR, std::min<int64_t>(512, lc / NR * NR));
  const int64_t chunks = (positions + lc - 1) / lc;
  const auto fn = ADDER_PICK_ISA(forward_implicit_chunk_impl<T>);
  at::parallel_for(0, s.n * s.groups * chunks, 1, [&](int64_t b, int64_t e) {
    const int64_t ld = (lc + NR - 1) / NR * NR;
    T* yc = scratch<T>(s.cout_g() * ld + ld);
    for (int64_t task = b; task < e; ++task) {
      const int64_t chunk = task % chunks, ng = task / chunks;
      const int64_t lp0 = chunk * lc;
      fn(in.xp, in.off.data(), in.toff.data(), in.csum, wpk, wsum, y, s,
         in.cstride, wq, ng / s.groups, ng % s.groups, lp0,
         std::min(lc, positions - lp0), yc);
    }
  });
}

// The forward by filters (forward_fvec_tile) on implicit_input's planes:
// tasks of (group, filter tile, chunk of positions), the positions being
// the valid outputs of every sample (no padded pitch). Each thread packs
// the filter tile its tasks need (pack_filters_fvec_impl, shifted by
// row_shift) into its own buffer just before using it, so the tile is
// still in L2 for the arithmetic (packing every tile first read them all
// back from memory). shift / row_shift: per channel / per term, null for
// the direct form. With a shift, a tile whose filter sums are not finite
// (an inf/NaN filter value past the 16 the shift samples) makes it return
// false at once: the caller runs the direct form instead.
template <typename T>
bool forward_by_filters(const T* x, const T* w, const T* shift,
                        const T* row_shift, T* y, const Adder2dShape& s) {
  const int64_t NF = ADDER_PICK_ISA(fvec_nf<T>)();
  const int64_t MP = ADDER_PICK_ISA(fvec_mp)();
  const int64_t L = s.l(), P = s.n * L, K = s.k();
  const int64_t cout_g = s.cout_g(), cin_g = s.cin_g();
  const int64_t ftiles = (cout_g + NF - 1) / NF;
  const ImplicitInput<T> in = implicit_input(x, shift, s);
  // Each output's patch origin, from its group's first channel.
  const std::vector<int64_t> pos =
      pitch_positions(s.n, s.hout, s.wout, s.c * in.cstride, in.wq);
  // Patch sums per (group, position); any inf/NaN: the direct form.
  std::vector<T> xs(s.groups * P);
  sum_over_taps(in.csum, in.cstride, s, s.hout, s.wout, in.wq,
                in.toff.data(), xs.data());
  bool use_min = shift != nullptr;
  for (int64_t i = 0; i < s.groups * P && use_min; ++i)
    use_min = std::isfinite(xs[i]);
  // Position chunks (multiples of MP) only where the filter tiles are
  // fewer than 4 tasks a thread. A thread's tasks are consecutive, tile
  // by tile, so it packs a tile once for all its chunks of it.
  const int64_t threads = at::get_num_threads();
  const int64_t ptiles = (P + MP - 1) / MP;
  const int64_t tiles = s.groups * ftiles;
  const int64_t want = (4 * threads + tiles - 1) / tiles;
  const int64_t per = (ptiles + want - 1) / want * MP;
  const int64_t chunks = (P + per - 1) / per;
  const auto fn = ADDER_PICK_ISA(forward_fvec_impl<T>);
  const auto pack = ADDER_PICK_ISA(pack_filters_fvec_impl<T>);
  std::atomic<bool> not_finite{false};
  at::parallel_for(0, tiles * chunks, 1, [&](int64_t b, int64_t e) {
    T* yc = scratch<T>((per + MP) * NF);
    T* wv = scratch<T, 5>(K * NF + NF);
    T* ws = wv + K * NF;  // the tile's filter sums
    int64_t packed = -1;
    for (int64_t task = b; task < e && !not_finite; ++task) {
      const int64_t gf = task / chunks, g = gf / ftiles, f0 = gf % ftiles * NF;
      const int64_t p0 = task % chunks * per, p1 = std::min(P, p0 + per);
      const int64_t nf = std::min(NF, cout_g - f0);
      if (gf != packed) {
        pack(w, row_shift, s, g, gf % ftiles, wv, ws, 0, K);
        packed = gf;
        if (use_min && !std::all_of(ws, ws + nf, [](T v) {
              return std::isfinite(v);
            })) {
          not_finite = true;
          break;
        }
      }
      fn(in.xp + g * cin_g * in.cstride, pos.data(), p0, p1, in.off.data(),
         wv, K, use_min, yc);
      for (int64_t q = p0; q < p1; ++q) {
        const T* a = yc + (q - p0) * NF;
        T* o = y + (q / L * s.cout + g * cout_g + f0) * L + q % L;
        if (use_min) {
          const T xq = xs[g * P + q];
          for (int64_t j = 0; j < nf; ++j) o[j * L] = a[j] - xq - ws[j];
        } else {
          for (int64_t j = 0; j < nf; ++j) o[j * L] = a[j];
        }
      }
    }
  });
  return !not_finite;
}

// Calls f(at) for each term of output position l's patch row over `nc`
// channel planes (h x w apart), in the weight's order (channel, tap): at
// the input value's offset from the first plane, -1 at a padding tap. The
// passes by rows gather their few positions' rows and scatter their
// gradient columns back so.
template <typename F>
void for_each_patch_term(int64_t nc, const Adder2dShape& s, int64_t l,
                         F&& f) {
  const int64_t oh = l / s.wout, ow = l % s.wout;
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t hi = oh * s.sh - s.ph + i * s.dh;
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t wi = ow * s.sw - s.pw + j * s.dw;
        f(hi >= 0 && hi < s.h && wi >= 0 && wi < s.w
              ? (c * s.h + hi) * s.w + wi
              : int64_t(-1));
      }
    }
}
// Position l's patch row (0 at padding taps) from nc planes to row.
template <typename T>
void gather_patch_row(const T* planes, int64_t nc, const Adder2dShape& s,
                      int64_t l, T* row) {
  for_each_patch_term(nc, s, l, [&](int64_t at) {
    *row++ = at >= 0 ? planes[at] : T(0);
  });
}

// The forward by rows (forward_rows_impl) for maps of few positions: each
// position's patch row packed [P][K] (zeros for padding), then tasks of
// (group, block of filters) read the filters as they are. Any layer (the
// direct form: exact for any input, no shift to choose).
template <typename T>
void forward_by_rows(const T* x, const T* w, T* y, const Adder2dShape& s) {
  const int64_t L = s.l(), P = s.n * L, K = s.k();
  const int64_t cin_g = s.cin_g(), cout_g = s.cout_g();
  T* const xp = scratch<T, 3>(s.groups * P * K);
  at::parallel_for(0, s.groups * P, 1, [&](int64_t b, int64_t e) {
    for (int64_t gq = b; gq < e; ++gq) {
      const int64_t g = gq / P, q = gq % P;
      gather_patch_row(x + (q / L * s.c + g * cin_g) * s.h * s.w, cin_g, s,
                       q % L, xp + gq * K);
    }
  });
  std::vector<int64_t> yoff(P);
  for (int64_t q = 0; q < P; ++q) yoff[q] = q / L * s.cout * L + q % L;
  // Filter blocks for about 4 tasks a thread, in whole tiles (kRowsMF is
  // the same in every build; the kernel takes any count).
  const int64_t MF = generic::kRowsMF;
  const int64_t threads = at::get_num_threads();
  const int64_t want = (4 * threads + s.groups - 1) / s.groups;
  int64_t fb = (cout_g + want - 1) / want;
  fb = std::min(cout_g, std::max(MF, (fb + MF - 1) / MF * MF));
  const int64_t fblocks = (cout_g + fb - 1) / fb;
  const auto fn = ADDER_PICK_ISA(forward_rows_impl<T>);
  at::parallel_for(0, s.groups * fblocks, 1, [&](int64_t b, int64_t e) {
    for (int64_t task = b; task < e; ++task) {
      const int64_t g = task / fblocks, f0 = task % fblocks * fb;
      const int64_t t0 = g * cout_g + f0;
      fn(w + t0 * K, xp + g * P * K, K, std::min(fb, cout_g - f0), P,
         y + t0 * L, L, yoff.data());
    }
  });
}

// The forward on a non-negative input, skipping its zeros (the identity
// at list_nonzero). Tasks of (group, chunk of positions, run of filter
// tiles); a task lists each position's nonzero inputs a K block at a time
// and runs them against its filter tiles (max(w, 0), packed once for all
// tasks). The positions are the valid outputs of every sample, read from
// the input itself (pointwise layers) or implicit_input's planes
// (unshifted: the identity needs the zeros). Returns false, having
// written nothing usable, where an input
// value is negative, inf or NaN or a filter sum is not finite: the caller
// runs a dense path.
template <typename T>
bool forward_sparse(const T* x, const T* w, T* y, const Adder2dShape& s) {
  const int64_t NF = ADDER_PICK_ISA(sparse_nf<T>)();
  constexpr int64_t KC = generic::kSparseKC, PC = 128;
  const int64_t L = s.l(), P = s.n * L, K = s.k();
  const int64_t cout_g = s.cout_g(), cin_g = s.cin_g();
  const int64_t ftiles = (cout_g + NF - 1) / NF;
  const auto pack =
      ADDER_PICK_ISA(pack_filters_fvec_impl<T, generic::kSparseNV, true>);
  // Up to kSparsePackAheadMax values a group, the filters are packed first,
  // once for every task (a non-finite one ends it before the input's pass).
  // Past that (ResNet-50's 512-filter 3x3 layers: 9.4 MB), a pass ahead
  // would write them to memory and each task read them back from there, so
  // each task packs the K block of the tile it is about to use instead
  // (in L1) and sums |w| as it goes.
  const bool ahead = cout_g * K <= kSparsePackAheadMax;
  T* wv = ahead ? scratch<T, 5>(s.groups * ftiles * K * NF) : nullptr;
  std::vector<T> wabs(ahead ? s.groups * ftiles * NF : 0);
  if (ahead) {
    at::parallel_for(0, s.groups * ftiles, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        pack(w, nullptr, s, i / ftiles, i % ftiles, wv + i * K * NF,
             wabs.data() + i * NF, 0, K);
    });
    if (!std::all_of(wabs.begin(), wabs.end(),
                     [](T v) { return std::isfinite(v); }))
      return false;
  }
  // The input planes: a pointwise layer's patches are columns of its input
  // (stride 1: the input as it is; strided: the values it reads, copied
  // into maps of its outputs' size); others read implicit_input's planes
  // (which a strided 1x1 layer would have copy its whole input for a
  // quarter of it).
  const bool pointwise = s.taps() == 1 && s.ph == 0 && s.pw == 0;
  ImplicitInput<T> in;
  std::vector<T> xs(s.groups * P);  // patch sums
  std::vector<int32_t> off(K);
  if (pointwise && (s.sh != 1 || s.sw != 1)) {
    T* sub = scratch<T, 8>(s.n * s.c * L);
    at::parallel_for(0, s.n * s.c, 4, [&](int64_t b, int64_t e) {
      for (int64_t nc = b; nc < e; ++nc)
        for (int64_t r = 0; r < s.hout; ++r) {
          const T* src = x + nc * s.h * s.w + r * s.sh * s.w;
          T* dst = sub + nc * L + r * s.wout;
          for (int64_t c = 0; c < s.wout; ++c) dst[c] = src[c * s.sw];
        }
    });
    x = sub;
  }
  if (pointwise) {
    in.xp = x;
    in.cstride = L;
    in.wq = s.wout;
    for (int64_t k = 0; k < K; ++k) off[k] = (int32_t)(k * L);
    double* csum = scratch<double, 2>(s.n * s.groups * L);
    sum_over_channels(x, L, s, csum);
    const int64_t here = 0;  // the one tap
    sum_over_taps(csum, L, s, s.hout, s.wout, s.wout, &here, xs.data());
  } else {
    in = implicit_input(x, (const T*)nullptr, s);
    sum_over_taps(in.csum, in.cstride, s, s.hout, s.wout, in.wq,
                  in.toff.data(), xs.data());
    for (int64_t k = 0; k < K; ++k) off[k] = (int32_t)in.off[k];
  }
  const std::vector<int64_t> pos =
      pitch_positions(s.n, s.hout, s.wout, s.c * in.cstride, in.wq);
  // Equal chunks of <= PC positions; where they are fewer than 2 tasks a
  // thread, the filter tiles split into runs as well (few positions: each
  // chunk reads every filter of its tiles from memory again, 9.4 MB at
  // 512 filters of 3x3 x 512, so few chunks of many positions).
  const int64_t threads = at::get_num_threads();
  const int64_t chunks = (P + PC - 1) / PC, per = (P + chunks - 1) / chunks;
  const int64_t parts = std::min(
      ftiles, (2 * threads + s.groups * chunks - 1) / (s.groups * chunks));
  const int64_t run = (ftiles + parts - 1) / parts;
  const auto list = ADDER_PICK_ISA(list_nonzero<T>);
  const auto list_block = ADDER_PICK_ISA(list_nonzero_block<T>);
  const auto accumulate = ADDER_PICK_ISA(sparse_accumulate<T>);
  const auto store = ADDER_PICK_ISA(sparse_store<T>);
  std::atomic<bool> bad{false};
  at::parallel_for(0, s.groups * chunks * parts, 1, [&](int64_t b, int64_t e) {
    T* vals = scratch<T, 6>(per * (KC + 16));
    int32_t* rows = scratch<int32_t, 7>(per * (KC + 16));
    T* acc = scratch<T>(per * run * NF);
    T* wblock = ahead ? nullptr : scratch<T, 9>(KC * NF);
    std::vector<double> wsum(ahead ? 0 : run * NF);  // |w| sums, per use
    std::vector<T> wsum_t(wsum.size()), block_sum(NF);
    std::vector<int64_t> count(per), ybase(per);
    for (int64_t task = b; task < e && !bad; ++task) {
      const int64_t part = task % parts, gc = task / parts;
      const int64_t g = gc / chunks, p0 = gc % chunks * per;
      const int64_t np = std::min(P, p0 + per) - p0;
      const int64_t f0 = part * run, f1 = std::min(ftiles, f0 + run);
      if (np <= 0 || f0 >= f1) continue;
      const T* xg = in.xp + g * cin_g * in.cstride;
      std::fill_n(acc, np * (f1 - f0) * NF, T(0));
      std::fill(wsum.begin(), wsum.end(), 0.0);
      for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t kc = std::min(KC, K - k0);
        bool wrong = false;
        // Positions within 16 consecutive input values (a run of an output
        // row, in the planes' pitch) list together, 8 or more of them.
        for (int64_t i = 0; i < np;) {
          const int64_t a0 = pos[p0 + i];
          int lane[16], m = 0;
          while (i + m < np && m < 16 && pos[p0 + i + m] - a0 < 16) {
            lane[m] = (int)(pos[p0 + i + m] - a0);
            ++m;
          }
          if (m >= 8) {
            list_block(xg + a0, off.data(), k0, kc, lane, m,
                       vals + i * (KC + 16), rows + i * (KC + 16), KC + 16,
                       count.data() + i, wrong);
          } else {
            m = 1;
            count[i] = list(xg + a0, off.data(), k0, kc, vals + i * (KC + 16),
                            rows + i * (KC + 16), wrong);
          }
          i += m;
        }
        if (wrong) {
          bad = true;
          break;
        }
        for (int64_t f = f0; f < f1; ++f) {
          const T* wk = wblock;
          if (ahead) {
            wk = wv + ((g * ftiles + f) * K + k0) * NF;
          } else {
            pack(w, nullptr, s, g, f, wblock, block_sum.data(), k0, k0 + kc);
            for (int64_t j = 0; j < std::min(NF, cout_g - f * NF); ++j)
              wsum[(f - f0) * NF + j] += block_sum[j];
          }
          accumulate(vals, rows, count.data(), np, KC + 16, wk,
                     acc + (f - f0) * NF, (f1 - f0) * NF);
        }
      }
      if (bad) break;
      const T* ws = wabs.data() + (g * ftiles + f0) * NF;
      if (!ahead) {
        std::copy(wsum.begin(), wsum.end(), wsum_t.begin());
        if (!std::all_of(wsum_t.begin(), wsum_t.end(),
                         [](T v) { return std::isfinite(v); })) {
          bad = true;  // a non-finite filter
          break;
        }
        ws = wsum_t.data();
      }
      for (int64_t i = 0; i < np; ++i) {  // output offsets of filter 0
        const int64_t q = p0 + i;
        ybase[i] = q / L * s.cout * L + q % L;
      }
      for (int64_t f = f0; f < f1; ++f)
        store(acc + (f - f0) * NF, (f1 - f0) * NF, np,
              std::min(NF, cout_g - f * NF), xs.data() + g * P + p0,
              ws + (f - f0) * NF, ybase.data(),
              y + (g * cout_g + f * NF) * L, L);
    }
  });
  return !bad;
}

// Forward through packed panels of NR positions. A group's N * L
// positions are one sequence (samples back to back, so the 7x7 maps of
// ResNet-50's last stage fill panels instead of leaving a mostly empty one
// per sample), cut into blocks of up to 32 panels (~<= 1 MiB a block).
// Many blocks: each task packs one block in its own scratch and runs every
// filter over it (the block stays in L2). Few blocks (small maps, where
// that left one thread idle or each task re-reading megabytes of filters):
// every block is packed first (if that is <= 16 MiB; the buffer is kept
// between calls), then tasks split the filters as well.
template <typename T>
void forward_packed(const T* x, const T* wpk, const T* wsum,
                    const T* row_shift, T* y, const Adder2dShape& s) {
  constexpr int NR = generic::fwd_nr<T>(), MR = generic::kFwdMR;
  const int64_t K = s.k(), cout_g = s.cout_g();
  const int64_t npanels = (s.n * s.l() + NR - 1) / NR;
  // Blocks of equal size: a short last block leaves a thread idle.
  const int64_t per_max = std::max<int64_t>(
      1, std::min<int64_t>(32, (1 << 20) / (int64_t)sizeof(T) / (K * NR)));
  const int64_t threads = at::get_num_threads();
  const int64_t all_bytes = s.groups * npanels * NR * K * (int64_t)sizeof(T);
  int64_t per = 0, blocks = 0;
  const auto cut = [&](int64_t count) {  // into about `count` blocks
    per = (npanels + count - 1) / count;
    blocks = (npanels + per - 1) / per;
  };
  cut((npanels + per_max - 1) / per_max);
  const bool task_a_block =
      s.groups * blocks >= 4 * threads || all_bytes > (16 << 20);
  // A task a block: block count rounded up to a multiple of the threads
  // (13 blocks on 2 threads left one idle for a block: ResNet-50's 1x1
  // layers at 56x56 took 0.88-0.9x the time in 14).
  if (task_a_block && s.groups * blocks % threads != 0 && blocks > threads)
    cut((blocks + threads - 1) / threads * threads);
  const auto pack = ADDER_PICK_ISA(pack_panel_range<T>);
  const auto run = ADDER_PICK_ISA(forward_panels_impl<T>);
  const bool min_ok = wsum != nullptr;
  if (task_a_block) {
    at::parallel_for(0, s.groups * blocks, 1, [&](int64_t b, int64_t e) {
      T* panels = scratch<T>(per * NR * K + per * NR);
      T* xsum = panels + per * NR * K;
      T* yc = scratch<T, 1>(cout_g * per * NR);
      uint8_t use_min[32];
      for (int64_t task = b; task < e; ++task) {
        const int64_t g = task / blocks, p0 = task % blocks * per;
        const int64_t p1 = std::min(npanels, p0 + per);
        pack(x, row_shift, s, g, p0, p1, min_ok, panels, xsum, use_min);
        run(panels, xsum, use_min, wpk, wsum, y, s, g, 0, cout_g,
            p0, p1, yc);
      }
    });
    return;
  }
  // Every panel first (its own scratch: the threads' buffers are in use).
  T* panels = scratch<T, 3>(s.groups * npanels * (NR * K + NR));
  T* xsum = panels + s.groups * npanels * NR * K;
  std::vector<uint8_t> use_min(s.groups * npanels);
  at::parallel_for(0, s.groups * npanels, 1, [&](int64_t b, int64_t e) {
    while (b < e) {  // runs of panels within one group
      const int64_t g = b / npanels, p0 = b % npanels;
      const int64_t p1 = std::min(npanels, p0 + (e - b));
      pack(x, row_shift, s, g, p0, p1, min_ok, panels + b * NR * K,
           xsum + b * NR, use_min.data() + b);
      b += p1 - p0;
    }
  });
  // Filter blocks (multiples of MR) so that there are ~8 tasks a thread
  // (each filter is still read once per block of panels).
  const int64_t want = (8 * threads + s.groups * blocks - 1) / (s.groups * blocks);
  int64_t fb = (cout_g + want - 1) / want;
  fb = std::min(cout_g, std::max<int64_t>(MR, (fb + MR - 1) / MR * MR));
  const int64_t fblocks = (cout_g + fb - 1) / fb;
  // Filter blocks outermost: a thread's contiguous range of tasks then
  // covers whole filter blocks over every panel block, so threads get equal
  // work even where the last panel block is short (7 panels in blocks of
  // 3, 3, 1 left one thread 27 of 42 units at ResNet-50's 7x7 layers).
  at::parallel_for(0, s.groups * blocks * fblocks, 1, [&](int64_t b, int64_t e) {
    T* yc = scratch<T, 1>(fb * per * NR);
    for (int64_t task = b; task < e; ++task) {
      const int64_t f = task / (s.groups * blocks);
      const int64_t gb = task % (s.groups * blocks);
      const int64_t g = gb / blocks, p0 = gb % blocks * per;
      const int64_t p1 = std::min(npanels, p0 + per);
      const int64_t off = g * npanels + p0;
      run(panels + off * NR * K, xsum + off * NR, use_min.data() + off,
          wpk, wsum, y, s, g, f * fb, std::min(cout_g, (f + 1) * fb),
          p0, p1, yc);
    }
  });
}

at::Tensor adder2d_forward_cpu(const at::Tensor& input_,
                               const at::Tensor& weight_,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups) {
  const Adder2dShape s =
      make_shape(input_, weight_, stride, padding, dilation, groups);
  check_cpu(input_, "input");
  const auto input = input_.contiguous();
  const auto weight = weight_.contiguous();
  auto out = at::empty({s.n, s.cout, s.hout, s.wout}, input.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "adder2d_forward_cpu", [&] {
    const int64_t K = s.k(), cout_g = s.cout_g(), cin_g = s.cin_g();
    const int64_t taps = s.taps();
    const scalar_t* x = input.data_ptr<scalar_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    if (use_forward_by_rows(s)) {
      forward_by_rows(x, w, y, s);
      return;
    }
    // Non-negative inputs with zeros (ReLU outputs): only the nonzero
    // ones cost arithmetic.
    if (try_sparse_forward(s, x, input.numel()) && forward_sparse(x, w, y, s))
      return;
    // The min form (see the kernels) cancels badly when inputs and filters
    // share a large offset, so both are shifted by the same per-channel
    // constant, |x - w| = |(x - c) - (w - c)|: the mean of the channel's
    // values in the group's first (up to) 16 filters, close enough to the
    // data to remove a shared offset (a mean over every filter cost a pass
    // over the filters, as much as the arithmetic of the 7x7 layers). Then
    // the shifted filters' sums. With any inf/NaN filter value none of this:
    // the direct form runs everywhere.
    const int64_t sample = std::min<int64_t>(cout_g, 16);
    std::vector<scalar_t> shift(s.groups * cin_g), row_shift(s.groups * K);
    const bool min_form = min_form_pays();
    for (int64_t g = 0; g < s.groups && min_form; ++g)
      for (int64_t c = 0; c < cin_g; ++c) {
        double sum = 0;
        for (int64_t t = g * cout_g; t < g * cout_g + sample; ++t)
          for (int64_t i = c * taps; i < (c + 1) * taps; ++i) sum += w[t * K + i];
        const scalar_t sc = (scalar_t)(sum / (sample * taps));
        shift[g * cin_g + c] = sc;
        std::fill_n(row_shift.data() + g * K + c * taps, taps, sc);
      }
    // An inf/NaN filter value makes its shift or its sum non-finite;
    // finite filters give finite sums. Then the direct form, unshifted, as
    // wherever the min form does not pay.
    bool finite = min_form &&
                  std::all_of(shift.begin(), shift.end(),
                              [](scalar_t v) { return std::isfinite(v); });
    if (use_forward_by_filters(s)) {  // packs the filters itself
      if (!finite || !forward_by_filters(x, w, shift.data(),
                                         row_shift.data(), y, s))
        forward_by_filters<scalar_t>(x, w, nullptr, nullptr, y, s);
      return;
    }
    // The shifted filters in the kernels' layout (per-thread scratch: a
    // fresh buffer of a layer's filters each call costs page faults).
    scalar_t* wpk = scratch<scalar_t, 5>(s.cout * K);
    std::vector<scalar_t> wsum(s.cout);
    const int64_t items = cout_g / generic::kFwdMR + cout_g % generic::kFwdMR;
    const auto pack_filters = ADDER_PICK_ISA(pack_filters_impl<scalar_t>);
    auto pack_all = [&](const scalar_t* sh) {
      at::parallel_for(0, s.groups * items, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          pack_filters(w, sh, s, i / items, i % items, wpk, wsum.data());
      });
    };
    if (finite) pack_all(row_shift.data());
    for (int64_t t = 0; t < s.cout && finite; ++t)
      finite = std::isfinite(wsum[t]);
    if (!finite) pack_all(nullptr);
    const scalar_t* ws = finite ? wsum.data() : nullptr;
    if (use_in_place_forward(s)) {
      forward_implicit(x, wpk, ws, finite ? shift.data() : nullptr, y, s);
      return;
    }
    // Other layers: patches packed into panels (shift per patch row).
    forward_packed(x, wpk, ws, finite ? row_shift.data() : nullptr, y, s);
  });
  return out;
}

// The sign rule's fast tile is exact for a (sample, channel) pair when none
// of the channel's input values equals one of its filter values (over every
// filter and tap of the group) and none is NaN. Returns one flag per
// (sample, channel), set where that fails. Trained filters practically
// never equal an activation (nor are they exactly 0, the commonest input),
// so flags are rare; the check must only be cheap next to the R = cout_g *
// taps terms each input value costs: a bitmap of one side's values (hash
// bits, about 64 bits a value; bit 0 only for +-0) answers nearly every
// value of the other side, scanned 16 (AVX2 8) a step, and a set bit is
// confirmed or refuted by a scan of the mapped values. The map holds the
// smaller side: a channel's filter values (R) on large maps, its input
// values (N x H x W, every sample) on small ones, where inserting R values
// one at a time cost more than the fast tile saved (ResNet-50's 7x7 stage
// at batch 2: 98 input values against 4608 filter values a channel).
// wc: each channel's R filter values contiguous, [groups][cin_g][R] (both
// input-gradient paths have them so).
int map_bits(int64_t values) {
  int bits = 12;
  while ((int64_t(1) << bits) < 64 * values && bits < 17) ++bits;
  return bits;
}
// A pair's tied values (kTieTerms) are kept while they are few and meet
// few times: each distinct value v costs add_tie_terms a scan of the
// channel's filter values and one of its input values, plus (filter
// entries equal to v) x (inputs equal to v) scattered additions. Zen 4,
// one thread, 64 -> 64 3x3 at 56x56, batch 2, ReLU inputs against one zero
// filter entry a channel (1568 ties a pair): the additions took 3.5 ms
// for 200 K (17 ns each), where the fast tile saves 2.7 ms over the exact
// one on 231 M terms (0.012 ns a term). Past kMaxTieValues values or a
// pair's terms / kTieWorkShare additions the pair takes the exact tile.
constexpr int kMaxTieValues = 16;
constexpr int64_t kTieWorkShare = 4096;  // terms / additions
// Records a tie of value v (not yet in values) between a pair's inputs p
// (HW) and its filter values f (R): flag becomes kTieTerms, or kTieExact
// past the limits. work: the additions add_tie_terms will make for the
// pair so far. values are read for kTieTerms pairs only.
template <typename T>
void note_tie(uint8_t& flag, std::vector<T>& values, int64_t& work, T v,
              const T* p, int64_t HW, const T* f, int64_t R) {
  if (flag == kTieExact) return;
  work += int64_t(std::count(p, p + HW, v)) * std::count(f, f + R, v);
  if ((int)values.size() == kMaxTieValues || work > HW * R / kTieWorkShare) {
    flag = kTieExact;
    return;
  }
  values.push_back(v);
  flag = kTieTerms;
}

// One channel's flags (flag[n * s.c] for sample n): its R filter values f,
// its input values from xc (sample 0; samples s.c planes apart), the map
// (2^bits bits) holding its input values (map_inputs) or its filter values.
// hits: the scans' masks (tie_masks). Without values: kNoTie or
// kTieExact (any tie). With values (values[n * s.c] for sample n): a tied
// pair's values (kTieTerms) where note_tie keeps them.
template <typename T>
void channel_ties(const T* f, int64_t R, const T* xc, const Adder2dShape& s,
                  bool map_inputs, int bits, std::vector<uint64_t>& map,
                  std::vector<uint16_t>& hits, uint8_t* flag,
                  std::vector<T>* values = nullptr) {
  const int64_t HW = s.h * s.w;
  const auto scan = ADDER_PICK_ISA(tie_masks<T>);
  const auto in = ADDER_PICK_ISA(tie_in<T>);
  const auto insert = ADDER_PICK_ISA(tie_insert<T>);
  const int64_t words = (int64_t)map.size();
  std::vector<int64_t> work(values ? s.n : 0, 0);
  // Whether sample n's pair already holds v (a value met again: no scan;
  // -0 and +0 are one value).
  const auto known = [&](int64_t n, T v) {
    if (!values) return false;
    for (const T u : values[n * s.c])
      if (u == v) return true;
    return false;
  };
  // A candidate v of sample n's pair, found in one side's map, confirmed
  // by a scan of the other side (len values at side): a NaN or a tie (not
  // a value the pair already holds) sets the pair's flag.
  const auto confirm = [&](int64_t n, T v, const T* side, int64_t len) {
    uint8_t& fl = flag[n * s.c];
    if (v != v) {
      fl = kTieExact;
    } else if (!known(n, v) && in(side, len, v)) {
      if (values)
        note_tie(fl, values[n * s.c], work[n], v, xc + n * s.c * HW, HW, f, R);
      else
        fl = kTieExact;
    }
  };
  std::fill(map.begin(), map.end(), 0);
  if (map_inputs) {
    for (int64_t n = 0; n < s.n; ++n)
      flag[n * s.c] =
          insert(map.data(), bits, xc + n * s.c * HW, HW) ? kTieExact : kNoTie;
    // Candidate filter values (set bits, NaN): a NaN flags every sample, a
    // value each sample holding it.
    hits.resize((R + 15) / 16);
    scan(f, R, map.data(), words, bits, false, hits.data());
    for (int64_t i = 0; i < (int64_t)hits.size(); ++i)
      for (unsigned m = hits[i]; m; m &= m - 1) {
        const T v = f[i * 16 + __builtin_ctz(m)];
        for (int64_t n = 0; n < s.n; ++n)
          if (flag[n * s.c] != kTieExact)
            confirm(n, v, xc + n * s.c * HW, HW);
      }
    return;
  }
  const bool nan = insert(map.data(), bits, f, R);
  hits.resize((HW + 15) / 16);
  for (int64_t n = 0; n < s.n; ++n) {
    uint8_t& fl = flag[n * s.c];
    fl = nan ? kTieExact : kNoTie;
    const T* p = xc + n * s.c * HW;
    // Candidates (set bits, NaN) confirmed by a scan of the filters.
    if (fl != kTieExact) scan(p, HW, map.data(), words, bits, false, hits.data());
    for (int64_t i = 0; i < (int64_t)hits.size() && fl != kTieExact; ++i)
      for (unsigned m = hits[i]; m && fl != kTieExact; m &= m - 1)
        confirm(n, p[i * 16 + __builtin_ctz(m)], f, R);
  }
}
// The tie check's result: per (sample, channel) a TieFlag, and the tied
// values of the kTieTerms pairs.
template <typename T>
struct SignTies {
  std::vector<uint8_t> flag;
  std::vector<std::vector<T>> values;
};
template <typename T>
SignTies<T> sign_tie_channels(const T* x, const T* wc, const Adder2dShape& s) {
  const int64_t R = s.cout_g() * s.taps(), HW = s.h * s.w;
  const bool map_inputs = s.n * HW < R;
  const int bits = map_bits(map_inputs ? s.n * HW : R);
  // -0 and +0 compare equal: both map to the bits of +0 (tie_key).
  SignTies<T> tie{std::vector<uint8_t>(s.n * s.c, kNoTie),
                  std::vector<std::vector<T>>(s.n * s.c)};
  at::parallel_for(0, s.c, 1, [&](int64_t b, int64_t e) {
    std::vector<uint64_t> map((int64_t(1) << bits) / 64);
    std::vector<uint16_t> hits;
    for (int64_t c = b; c < e; ++c)
      channel_ties(wc + c * R, R, x + c * HW, s, map_inputs, bits, map, hits,
                   tie.flag.data() + c, tie.values.data() + c);
  });
  return tie;
}

// The fast tile's sum counts a tie w = x as sign -1; the exact rule's sign
// there is 0 (sign(w - x) = 2 [w > x] - 1 + [w = x]). For each kTieTerms
// pair, each tied value v, each filter entry (f, tap) equal to v and each
// input position equal to v that the tap maps to an output position, adds
// that output gradient g[n][f][output] to gx: the exact gradient, where
// the pair's few ties would have sent all of its rows to the exact tile.
// w: the layer's filters [Cout][cin_g][kh][kw].
template <typename T>
void add_tie_terms(const T* go, const T* x, const T* w, const SignTies<T>& tie,
                   T* gx, const Adder2dShape& s) {
  const int64_t HW = s.h * s.w, L = s.l(), cin_g = s.cin_g();
  const int64_t cout_g = s.cout_g(), taps = s.taps();
  if (tie.flag.empty()) return;
  at::parallel_for(0, s.n * s.c, 1, [&](int64_t b, int64_t e) {
    std::vector<std::pair<int64_t, int64_t>> at_v;  // (h, w) of the inputs = v
    for (int64_t i = b; i < e; ++i) {
      if (tie.flag[i] != kTieTerms) continue;
      const int64_t n = i / s.c, c = i % s.c, g = c / cin_g, cg = c % cin_g;
      const T* xc = x + i * HW;
      T* gxc = gx + i * HW;
      for (const T v : tie.values[i]) {
        at_v.clear();
        for (int64_t h = 0; h < s.h; ++h)
          for (int64_t q = 0; q < s.w; ++q)
            if (xc[h * s.w + q] == v) at_v.emplace_back(h, q);
        for (int64_t fo = 0; fo < cout_g; ++fo) {
          const int64_t f = g * cout_g + fo;
          const T* wf = w + (f * cin_g + cg) * taps;
          const T* gf = go + (n * s.cout + f) * L;
          for (int64_t tap = 0; tap < taps; ++tap) {
            if (!(wf[tap] == v)) continue;
            // Input (h, q) meets this tap at output ((h + dh0) / sh, ...).
            const int64_t dh0 = s.ph - (tap / s.kw) * s.dh;
            const int64_t dw0 = s.pw - (tap % s.kw) * s.dw;
            for (const auto& [h, q] : at_v) {
              const int64_t ph = h + dh0, pw = q + dw0;  // output x stride
              if (ph < 0 || pw < 0 || ph % s.sh || pw % s.sw) continue;
              const int64_t oh = ph / s.sh, ow = pw / s.sw;
              if (oh < s.hout && ow < s.wout)
                gxc[h * s.w + q] += gf[oh * s.wout + ow];
            }
          }
        }
      }
    }
  });
}

// The check and the sums cost about as much a value as the fast tile saves
// over 144 terms (16 filters x 3x3: measured 0.84-1.14x the exact tile's
// time); from 288 terms on it gains (32 filters: 1.0-1.08x, 64: 1.25-1.32x;
// docs/benchmarks.md). With few positions per channel (ResNet-50's last
// stages at 224x224) the per-filter part of the check outweighed the gain
// (measured on AMD with the check that always mapped the filter values;
// not re-timed there since).
// AVX-512 (the exact tile 3 instructions a term, the fast one 2), with the
// check mapping the smaller side (session 15; before, it always mapped the
// filter values, and the fast tile lost at 98 positions a channel): the
// fast tile took 0.85-0.95x the exact tile's time on ResNet-50's stride-1
// layers at 7x7 (98 positions at batch 2) and the main job's 3x3 at 8x8,
// batch 1 (64 positions, 576 terms: 0.83x); only 64 terms at 64 positions
// lost (the main job's 1x1 at 8x8: 1.3x). At 49 (7x7, batch 1) 0.85-1.04x
// over two runs: left exact.
// AVX2 on Intel cores (measured on an AVX-512 Xeon running the AVX2 build,
// session 12, tools/benchmark_sign_rule.py: `always` against `never`): the
// fast tile with the vectorized check took 0.50-0.91x the exact tile's
// time on every ResNet-50 layer, from 64 filters 1x1 at 56x56 to 512
// filters at 7x7 (98 positions), so there it runs from any count;
// the exact tile's variable blends likely cost more micro-ops there than
// on the AMD cores the thresholds were measured on.
bool intel_cpu() {
#ifdef ADDER_HAVE_X86_ISAS
  static const bool intel = __builtin_cpu_is("intel");
  return intel;
#else
  return false;
#endif
}
bool avx2_on_intel() { return active_isa() == kAvx2 && intel_cpu(); }
// AVX-512 with the vectorized check, timed as `always` against `never`
// (tools/benchmark_sign_rule.py, session 12): stride-1 layers of 64-144
// terms on large maps gain too (1x1 64 filters at 56x56 1.0-1.3x; 16
// filters 3x3 at 64x64, batch 8, 1.3-1.6x), so from 64 terms there.
// AVX2 on AMD, re-timed with the vectorized check (session 19, a 2-core
// AMD EPYC, Zen 1; the 256 terms / 512 positions before came from the
// scalar check, sessions 4-9): the fast tile took 1/1.78-1/1.40 of the
// exact tile's time on every ResNet-50 layer (batch 2, the 7x7 stage's 98
// positions included) and 1/1.81-1/1.19 on the main job's small model
// (batch 8; 3x3/2 at 4x4 in too), but level or slower on its strided 1x1
// layers of 32-64 terms (0.86-1.01x); so from 64 terms (counted per stride
// phase), any position count. Re-timed on Zen 3 (session 32): 0.90-1.55x
// on those layers, none slower in both of two runs; kept.
int64_t sign_fast_min_terms() {
  if (avx2_on_intel()) return 0;
  return active_isa() == kGeneric ? 256 : 64;
}
int64_t sign_fast_min_positions() {
  if (avx2_on_intel() || active_isa() == kAvx2) return 0;
  return active_isa() == kAvx512 ? 64 : 512;
}
// Strided layers: the fast tile saves per position a stride phase computes
// (N x H x W / (sh x sw) of them), so their threshold counts those.
// AVX-512 (set_sign_fast_mode `always` against `never`, session 15, with
// the check above): the fast tile took 0.85-0.97x the exact tile's time
// from 256 positions a phase (the main job's 3x3/2 layers at 32x32 in,
// batch 1; ResNet-50's s2 and s3 3x3/2 and 1x1/2 at batch 2, 392-784 a
// phase); below, level on ResNet-50's layers (49-196 a phase: 0.93-1.03x)
// and up to 1.4x slower on the main job's small 1x1/2 and P6/P7 layers
// (16-64 a phase). AVX2: as stride 1.
int64_t sign_fast_min_phase_positions() {
  return active_isa() == kAvx512 ? 256 : 0;
}

// set_sign_fast_mode: auto (the thresholds above), always (any layer, still
// per (sample, channel) where the check finds no tie), never.
std::atomic<int> sign_fast_mode_index{kModeAuto};

// Whether the input gradient may take the fast sign tile (sign rule, by
// the mode and the thresholds above); the one rule for the dispatch, the
// tie flags and sign_fast_cpu_runs.
bool sign_fast_runs(const Adder2dShape& s, bool sign_grad) {
  // Terms an input value meets: each is in about taps / (sh sw) patches.
  const int mode = sign_fast_mode_index.load();
  return sign_grad && mode != kModeNever &&
         (mode == kModeAlways ||
          (s.cout_g() * s.taps() >= sign_fast_min_terms() * s.sh * s.sw &&
           s.n * s.h * s.w >= sign_fast_min_positions() &&
           (s.sh * s.sw == 1 || s.n * s.h * s.w >=
                                    sign_fast_min_phase_positions() * s.sh *
                                        s.sw)));
}

// A strided layer's sign-rule input gradient by input channels, stride
// phase by stride phase (backward_input_implicit, also for the small maps
// that would otherwise run packed). Against the in-place tiles (exact
// there below 512 positions a phase; session 17, 3x3/2, batch 2,
// alternated runs, input gradient ms):
// 512 filters at 14x14 in (98 positions a phase) 6.87 -> 4.66, 256 at
// 14x14 1.79 -> 1.15, 2048 -> 256 at 7x7 7.11 -> 4.55, 128 at 14x14 0.47
// -> 0.35, 256 at 28x28 (392) 4.20 -> 3.90; but 128 at 28x28 level, 64 ->
// 128 at 28x28 1.05x the time, and 64 filters slower (at 28x28 1.2x, at
// 40x40 1.12x, 128 -> 64 at 14x14 level): a phase's few terms (filters x
// its taps) leave the layouts and the tie check uncovered. So from 128
// filters up to 256 positions a phase, from 256 up to 512. Against
// packing (small maps): 256 filters at 4x4 in 0.72 -> 0.33, at 8x8 0.71 ->
// 0.55, 512 at 6x6 2.75 -> 1.86, at 8x8 2.67 -> 2.38, 128 at 8x8 0.20 ->
// 0.19.
// Its tile is the sign rule's fast one: off in the "never" mode, as the
// others; strided 1x1 layers (not timed) stay packed. The one decision
// for the dispatch and backward_input_implicit.
bool use_phases_by_channels(const Adder2dShape& s, bool sign_grad) {
  if (!sign_grad || (s.sh == 1 && s.sw == 1) || s.taps() == 1 ||
      sign_fast_mode_index.load() == kModeNever)
    return false;
  const DxLayout d = dx_layout(s);
  int64_t most = 0;
  for (const AxisPhase& r : d.rows)
    for (const AxisPhase& c : d.cols) most = std::max(most, r.count * c.count);
  const int64_t max_positions =
      s.cout_g() >= 256 ? 512 : s.cout_g() >= 128 ? 256 : 0;
  return active_isa() == kAvx512 && s.cin_g() >= 64 &&
         s.n * most <= max_positions && s.taps() < (int64_t(1) << 26);
}

// The tie flags for the input gradient's fast sign tile; empty flags: the
// exact tile everywhere (the hardtanh rule, the fast tile off, too few
// terms or positions, or every pair kTieExact). wc as for sign_tie_channels.
template <typename T>
SignTies<T> sign_fast_ties(const T* x, const T* wc, const Adder2dShape& s,
                           bool sign_grad) {
  if (!sign_fast_runs(s, sign_grad)) return {};
  SignTies<T> tie = sign_tie_channels(x, wc, s);
  if (std::all_of(tie.flag.begin(), tie.flag.end(),
                  [](uint8_t f) { return f == kTieExact; }))
    return {};
  return tie;
}

// Per (sample, group): the output gradient go ([N][Cout][plane]) summed
// over the group's filters, to dst ([N * groups][plane]). Both input-gradient
// paths need it for the sign rule's fast tile.
template <typename T>
void sum_over_filters(const T* go, const Adder2dShape& s, int64_t plane,
                      T* dst) {
  const auto sum = ADDER_PICK_ISA(sum_planes_impl<T>);
  const int64_t cout_g = s.cout_g();
  at::parallel_for(0, s.n * s.groups, 1, [&](int64_t b, int64_t e) {
    for (int64_t ng = b; ng < e; ++ng)
      sum(go + ng * cout_g * plane, cout_g, plane, dst + ng * plane);
  });
}

// The sign rule's input gradient by input channels (backward_input_cvec_tile)
// for a stride-1 layer, or one stride phase of a strided layer as one (s
// its shape: the phase's positions and taps; x its input values). gp: the
// padded output gradient [N][Cout][hg][wg] and gsum its sum over each
// group's filters, as backward_input_implicit builds them; goff: term r's
// offset in gp from a position h * wg + w; w: the layer's filters
// [Cout][cin_g][wtaps], of whose taps the call uses tap_index[0 .. taps)
// (null: all).
// Tasks of (group, channel block, chunk of positions), samples back to
// back, consecutive per block; each thread lays out the block its tasks
// need just before using it (pack_cvec_impl: input values as [N x H x W
// positions][NC], filters as [R][NC], zeros past the group's channels),
// so the filters are still in L2 for the arithmetic. A block's first task
// also runs the tie check on that layout (no filters laid out by channel
// as the in-place tiles need). The (sample, channel) pairs it flags are
// recomputed by the exact tile one at a time; with more than 1 in 16
// flagged (integer test data) it returns false and the caller's in-place
// tiles write dX again.
template <typename T>
bool backward_input_by_channels(const T* gp, const T* gsum, const T* x,
                                const T* w, int64_t wtaps,
                                const int64_t* tap_index,
                                const int64_t* goff, T* gx,
                                const Adder2dShape& s, int64_t hg,
                                int64_t wg) {
  const int64_t NC = ADDER_PICK_ISA(cvec_nc<T>)();
  const int64_t MP = ADDER_PICK_ISA(cvec_mp)();
  const int64_t cin_g = s.cin_g(), cout_g = s.cout_g(), taps = s.taps();
  const int64_t R = cout_g * taps, HW = s.h * s.w, P = s.n * HW;
  const int64_t gplane = hg * wg, cblocks = (cin_g + NC - 1) / NC;
  const int64_t blocks = s.groups * cblocks;
  const auto pack = ADDER_PICK_ISA(pack_cvec_impl<T>);
  const auto scan = ADDER_PICK_ISA(tie_masks<T>);
  const auto in = ADDER_PICK_ISA(tie_in<T>);
  const auto insert = ADDER_PICK_ISA(tie_insert<T>);
  // The tie check maps the smaller side, as sign_tie_channels: with fewer
  // input values than filter values a channel, every lane's input values
  // (scanning the packed filters lane by lane), else one channel's filter
  // values at a time (scanning each sample's input values).
  const bool map_inputs = P < R;
  const int bits = map_bits(map_inputs ? P : R);
  const int64_t words = (int64_t(1) << bits) / 64;
  std::vector<uint8_t> tie(s.n * s.c, 0);  // per (sample, channel)
  const auto check_ties = [&](int64_t g, int64_t c0, int64_t nc, const T* wd,
                              std::vector<uint64_t>& maps, std::vector<T>& fj,
                              std::vector<uint16_t>& hits) {
    const T* xc = x + (g * cin_g + c0) * HW;  // sample 0, first channel
    uint8_t* flag = tie.data() + g * cin_g + c0;  // sample 0
    if (!map_inputs) {
      fj.resize(R);
      maps.resize(words);  // one channel's filter values at a time
      for (int64_t j = 0; j < nc; ++j) {
        for (int64_t r = 0; r < R; ++r) fj[r] = wd[r * NC + j];
        channel_ties(fj.data(), R, xc + j * HW, s, false, bits, maps, hits,
                     flag + j);
      }
      return;
    }
    maps.assign(NC * words, 0);
    for (int64_t j = 0; j < nc; ++j)
      for (int64_t n = 0; n < s.n; ++n)
        flag[n * s.c + j] = insert(maps.data() + j * words, bits,
                                   xc + (n * s.c + j) * HW, HW);
    // Candidates: a NaN filter value (every sample), or one a sample's
    // channel holds (that sample).
    hits.resize((R * NC + 15) / 16);
    scan(wd, R * NC, maps.data(), words, bits, true, hits.data());
    for (int64_t i = 0; i < (int64_t)hits.size(); ++i)
      for (unsigned m = hits[i]; m; m &= m - 1) {
        const int64_t q = i * 16 + __builtin_ctz(m);
        const T v = wd[q];
        const int64_t j = q % NC;
        for (int64_t n = 0; n < s.n; ++n) {
          uint8_t& f = flag[n * s.c + j];
          f = f || v != v || in(xc + (n * s.c + j) * HW, HW, v);
        }
      }
  };
  // Per (group, position): the output gradient summed over its terms
  // (goff's first taps are filter 0's, at offsets 0 + tap offset).
  std::vector<T> gtot(s.groups * P);
  sum_over_taps(gsum, gplane, s, s.h, s.w, wg, goff, gtot.data());
  const std::vector<int64_t> gpos =
      pitch_positions(s.n, s.h, s.w, s.cout * gplane, wg);
  // Position chunks (multiples of MP) only where the channel blocks are
  // fewer than 4 tasks a thread: each chunk reads the block's filters again.
  const int64_t threads = at::get_num_threads();
  const int64_t ptiles = (P + MP - 1) / MP;
  const int64_t want = (4 * threads + blocks - 1) / blocks;
  const int64_t per = (ptiles + want - 1) / want * MP;
  const int64_t chunks = (P + per - 1) / per;
  const auto fn = ADDER_PICK_ISA(backward_input_cvec_impl<T>);
  at::parallel_for(0, blocks * chunks, 1, [&](int64_t b, int64_t e) {
    T* out = scratch<T>((per + MP) * NC);
    T* xt = scratch<T, 10>(P * NC);
    T* wv = scratch<T, 11>(R * NC);
    std::vector<uint64_t> maps;
    std::vector<T> fj;
    std::vector<uint16_t> hits;
    int64_t packed = -1;
    for (int64_t task = b; task < e; ++task) {
      const int64_t blk = task / chunks, g = blk / cblocks;
      const int64_t c0 = blk % cblocks * NC, nc = std::min(NC, cin_g - c0);
      if (blk != packed) {
        pack(w + (g * cout_g * cin_g + c0) * wtaps, x + (g * cin_g + c0) * HW,
             cout_g, cin_g, wtaps, tap_index, taps, nc, s.n, s.c, HW, wv, xt);
        packed = blk;
      }
      if (task % chunks == 0) check_ties(g, c0, nc, wv, maps, fj, hits);
      const int64_t q0 = task % chunks * per, q1 = std::min(P, q0 + per);
      fn(gp + g * cout_g * gplane, gpos.data(), xt, q0, q1, goff, wv, R, out);
      for (int64_t q = q0; q < q1; ++q) {
        const T* a = out + (q - q0) * NC;
        const T tot = gtot[g * P + q];
        T* d = gx + (q / HW * s.c + g * cin_g + c0) * HW + q % HW;
        for (int64_t j = 0; j < nc; ++j) d[j * HW] = T(2) * a[j] - tot;
      }
    }
  });
  // Pairs with a tie take the exact tile, one at a time; with many (test
  // data, integer inputs) the in-place tiles are faster.
  const int64_t flagged = std::count(tie.begin(), tie.end(), 1);
  if (flagged * 16 > s.n * s.c) return false;
  if (flagged == 0) return true;
  std::vector<int64_t> pairs;
  for (int64_t i = 0; i < s.n * s.c; ++i)
    if (tie[i]) pairs.push_back(i);
  const auto exact = ADDER_PICK_ISA(backward_input_exact_channel_impl<T>);
  const int64_t NR = ADDER_PICK_ISA(bwd_nr<T, true>)();
  at::parallel_for(0, (int64_t)pairs.size(), 1, [&](int64_t b, int64_t e) {
    T* xrow = scratch<T>(s.h * wg + 2 * NR + R);
    T* wrow = xrow + s.h * wg + 2 * NR;
    for (int64_t i = b; i < e; ++i) {
      const int64_t n = pairs[i] / s.c, c = pairs[i] % s.c;
      const int64_t g = c / cin_g, cg = c % cin_g;
      std::fill(xrow, xrow + s.h * wg + 2 * NR, T(0));
      for (int64_t h = 0; h < s.h; ++h)
        std::copy(x + (pairs[i] * s.h + h) * s.w,
                  x + (pairs[i] * s.h + h + 1) * s.w, xrow + h * wg);
      for (int64_t t = 0; t < cout_g; ++t)
        for (int64_t tap = 0; tap < taps; ++tap)
          wrow[t * taps + tap] =
              w[((g * cout_g + t) * cin_g + cg) * wtaps +
                (tap_index ? tap_index[tap] : tap)];
      exact(gp + (n * s.cout + g * cout_g) * gplane, goff, R, wrow, xrow, s.h,
            s.w, wg, gx + pairs[i] * HW);
    }
  });
  return true;
}

// Whether the hardtanh rule's exact tiles may clamp by vrangeps
// (add_input_grad_term): AVX-512, and every input and filter value finite,
// so that no w - x is NaN (vrangeps would turn it into 1). The check is a
// pass over both, against cout_g x taps terms a value for the gradient.
template <typename T>
bool hardtanh_by_range(const T* x, const T* w, const Adder2dShape& s) {
#ifdef ADDER_HAVE_X86_ISAS
  if (active_isa() != kAvx512) return false;
  const int64_t nx = s.n * s.c * s.h * s.w, chunk = int64_t(1) << 16;
  if (!avx512::all_finite_impl(w, s.cout * s.k())) return false;
  std::atomic<bool> finite{true};
  at::parallel_for(0, (nx + chunk - 1) / chunk, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e && finite; ++i)
      if (!avx512::all_finite_impl(x + i * chunk,
                                   std::min(chunk, nx - i * chunk)))
        finite = false;
  });
  return finite;
#else
  (void)x, (void)w, (void)s;
  return false;
#endif
}

// Input gradient in place (see backward_input_implicit_chunk_impl), by
// stride phase: pads the output gradient once into planes [hg][wg] that
// every phase reads with its own tap offsets, re-pitches each phase's
// input positions to wg, and runs tasks of (sample, group, phase, chunk of
// positions), each writing its own part of dX. A strided layer's phase
// runs only the taps that reach it (3x3/2: 1, 2, 2 and 4 of the 9), as a
// stride-1 layer of its own; stride 1 is the single phase.
template <typename T, bool kSign>
void backward_input_implicit(const T* go, const T* x, const T* w, T* gx,
                             const Adder2dShape& s, bool by_phase) {
  const int NR = ADDER_PICK_ISA(bwd_nr<T, kSign>)();
  const DxLayout layout = dx_layout(s);
  const std::vector<AxisPhase>&rows = layout.rows, &cols = layout.cols;
  const int64_t hg = layout.hg, wg = layout.wg, pt = layout.pt, pl = layout.pl;
  const int64_t gplane = hg * wg, taps = s.taps();
  const int64_t cin_g = s.cin_g(), cout_g = s.cout_g(), R = cout_g * taps;
  const int64_t slack = 2 * NR + wg + 64;
  T* const gp = scratch_with_slack<T, 1>(s.n * s.cout * gplane, slack);
  at::parallel_for(0, s.n * s.cout, 4, [&](int64_t b, int64_t e) {
    for (int64_t nt = b; nt < e; ++nt) {
      T* d = gp + nt * gplane;
      const T* src = go + nt * s.hout * s.wout;
      std::fill(d, d + gplane, T(0));
      for (int64_t oh = 0; oh < s.hout; ++oh)
        std::copy(src + oh * s.wout, src + (oh + 1) * s.wout,
                  d + (pt + oh) * wg + pl);
    }
  });
  // The phases (those with positions), their input values in pitch wg.
  struct Phase {
    DxPlane plane;
    const AxisPhase *r, *c;
    int64_t xoff, woff;
  };
  std::vector<Phase> phases;
  int64_t xtotal = 0, wtotal = 0;
  for (int64_t a = 0; a < s.sh; ++a)
    for (int64_t b = 0; b < s.sw; ++b) {
      const AxisPhase &r = rows[a], &c = cols[b];
      if (r.count == 0 || c.count == 0) continue;
      const int64_t pt_taps = (int64_t)(r.taps.size() * c.taps.size());
      phases.push_back({{r.count, c.count, a, b, pt_taps}, &r, &c, xtotal,
                        wtotal});
      xtotal += s.n * s.c * r.count * wg;
      wtotal += s.groups * cin_g * cout_g * pt_taps;
    }
  // The offsets of each phase's terms in gp.
  std::vector<std::vector<int64_t>> goff(phases.size());
  for (size_t pi = 0; pi < phases.size(); ++pi) {
    const Phase& p = phases[pi];
    const int64_t pt_taps = p.plane.taps;
    std::vector<int64_t>& off = goff[pi];
    off.resize(cout_g * pt_taps);
    for (int64_t t = 0; t < cout_g; ++t) {
      int64_t k = 0;
      for (size_t u = 0; u < p.r->taps.size(); ++u)
        for (size_t v = 0; v < p.c->taps.size(); ++v, ++k)
          off[t * pt_taps + k] = t * gplane + (p.r->off[u] + pt) * wg +
                                 p.c->off[v] + pl;
    }
  }
  // Sign rule's fast tile: the output gradient summed over each group's
  // filters; stride 1 by input channels where that applies (it checks for
  // ties itself, without the layouts below).
  const bool one = phases.size() == 1 && phases[0].plane.taps == taps;
  // A strided layer by input channels, phase by phase: each phase with taps
  // is a stride-1 layer of its own (its positions, its taps) on the
  // phase's input values, into a phase buffer put in place after.
  const auto phases_by_channels = [&](const T* gs) {
    int64_t most = 0;
    for (const Phase& p : phases)
      most = std::max(most, p.plane.rows * p.plane.cols);
    T* const xph = scratch_with_slack<T, 12>(s.n * s.c * most, 64);
    T* const gph = scratch_with_slack<T, 13>(s.n * s.c * most, 64);
    for (size_t pi = 0; pi < phases.size(); ++pi) {
      const Phase& p = phases[pi];
      const DxPlane& q = p.plane;
      const int64_t hw = q.rows * q.cols;
      // (h, k) of the phase: its input (h0 + h sh, w0 + k sw).
      const auto input_at = [&](int64_t nc, int64_t h, int64_t k) {
        return (nc * s.h + q.h0 + h * s.sh) * s.w + q.w0 + k * s.sw;
      };
      if (q.taps) {
        at::parallel_for(0, s.n * s.c, 16, [&](int64_t b, int64_t e) {
          for (int64_t nc = b; nc < e; ++nc)
            for (int64_t h = 0; h < q.rows; ++h)
              for (int64_t k = 0; k < q.cols; ++k)
                xph[nc * hw + h * q.cols + k] = x[input_at(nc, h, k)];
        });
        std::vector<int64_t> tap_index;
        for (int64_t i : p.r->taps)
          for (int64_t j : p.c->taps) tap_index.push_back(i * s.kw + j);
        Adder2dShape sp = s;
        sp.h = q.rows, sp.w = q.cols;
        sp.kh = (int64_t)p.r->taps.size(), sp.kw = (int64_t)p.c->taps.size();
        sp.sh = sp.sw = sp.dh = sp.dw = 1;
        sp.ph = sp.pw = 0;
        if (!backward_input_by_channels(gp, gs, xph, w, taps,
                                        tap_index.data(), goff[pi].data(),
                                        gph, sp, hg, wg))
          return false;
      }
      at::parallel_for(0, s.n * s.c, 16, [&](int64_t b, int64_t e) {
        for (int64_t nc = b; nc < e; ++nc)
          for (int64_t h = 0; h < q.rows; ++h)
            for (int64_t k = 0; k < q.cols; ++k)
              gx[input_at(nc, h, k)] =
                  q.taps ? gph[nc * hw + h * q.cols + k] : T(0);
      });
    }
    return true;
  };
  by_phase = by_phase && !one;
  T* gsum = nullptr;
  if (sign_fast_runs(s, kSign) || by_phase) {
    gsum = scratch_with_slack<T, 4>(s.n * s.groups * gplane, slack);
    sum_over_filters(gp, s, gplane, gsum);
    if (one && use_backward_by_channels(s) &&
        backward_input_by_channels(gp, gsum, x, w, taps, nullptr,
                                   goff[0].data(), gx, s, hg, wg))
      return;
    if (by_phase && phases_by_channels(gsum)) return;
    if (!sign_fast_runs(s, kSign)) gsum = nullptr;
  }
  T* const xq = scratch_with_slack<T, 3>(xtotal, slack);
  at::parallel_for(0, s.n * s.c, 4, [&](int64_t b, int64_t e) {
    for (const Phase& p : phases) {
      const DxPlane& q = p.plane;
      for (int64_t nc = b; nc < e; ++nc)
        for (int64_t h = 0; h < q.rows; ++h) {
          T* d = xq + p.xoff + (nc * q.rows + h) * wg;
          const T* src = x + (nc * s.h + q.h0 + h * s.sh) * s.w + q.w0;
          if (s.sw == 1)
            std::copy(src, src + q.cols, d);
          else
            for (int64_t k = 0; k < q.cols; ++k) d[k] = src[k * s.sw];
          std::fill(d + q.cols, d + wg, T(0));
        }
    }
  });
  // The filters as [groups][cin_g][R], in per-thread scratch (a fresh
  // buffer each call costs page faults) and split over the threads by
  // blocks of 16 channels, whose taps of one filter are one contiguous run.
  T* const wr = scratch<T, 7>(s.groups * cin_g * R);
  constexpr int64_t CB = 16;
  const int64_t cblocks = (cin_g + CB - 1) / CB;
  at::parallel_for(0, s.groups * cblocks, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t g = i / cblocks, c0 = i % cblocks * CB;
      const int64_t nc = std::min(CB, cin_g - c0);
      for (int64_t t = 0; t < cout_g; ++t) {
        const T* src = w + ((g * cout_g + t) * cin_g + c0) * taps;
        for (int64_t c = 0; c < nc; ++c) {  // a few values: no memmove call
          T* dst = wr + (g * cin_g + c0 + c) * R + t * taps;
          for (int64_t tap = 0; tap < taps; ++tap) dst[tap] = src[c * taps + tap];
        }
      }
    }
  });
  // Each phase's share of the filter values (its taps; a single phase
  // with every tap uses wr itself).
  T* const wph = one ? wr : scratch<T, 9>(std::max<int64_t>(wtotal, 1));
  for (size_t pi = 0; pi < phases.size() && !one; ++pi) {
    const Phase& p = phases[pi];
    const int64_t pt_taps = p.plane.taps;
    if (pt_taps == 0) continue;
    std::vector<int64_t> tap_index;
    for (size_t u = 0; u < p.r->taps.size(); ++u)
      for (size_t v = 0; v < p.c->taps.size(); ++v)
        tap_index.push_back(p.r->taps[u] * s.kw + p.c->taps[v]);
    at::parallel_for(0, s.groups * cin_g, 16, [&](int64_t b, int64_t e) {
      for (int64_t gc = b; gc < e; ++gc) {
        const T* src = wr + gc * R;
        T* dst = wph + p.woff + gc * cout_g * pt_taps;
        for (int64_t t = 0; t < cout_g; ++t)
          for (int64_t k = 0; k < pt_taps; ++k)
            dst[t * pt_taps + k] = src[t * taps + tap_index[k]];
      }
    });
  }
  // Positions no tap reaches (a phase without taps) get no gradient.
  for (const Phase& p : phases) {
    if (p.plane.taps) continue;
    const DxPlane& q = p.plane;
    for (int64_t nc = 0; nc < s.n * s.c; ++nc)
      for (int64_t h = 0; h < q.rows; ++h)
        for (int64_t k = 0; k < q.cols; ++k)
          gx[(nc * s.h + q.h0 + h * s.sh) * s.w + q.w0 + k * s.sw] = T(0);
  }
  // Sign rule: the fast tile where no input meets a filter value, or a few
  // do (their terms added after: add_tie_terms).
  const SignTies<T> tie = sign_fast_ties(x, wr, s, kSign);
  const bool range = !kSign && hardtanh_by_range(x, w, s);
  const auto fn = ADDER_PICK_ISA(backward_input_implicit_chunk_impl<T, kSign>);
  const int64_t lc = 16 * NR;
  std::vector<int64_t> first(phases.size() + 1, 0);  // task index per phase
  for (size_t pi = 0; pi < phases.size(); ++pi) {
    const int64_t positions = phases[pi].plane.rows * wg;
    first[pi + 1] = first[pi] +
                    (phases[pi].plane.taps ? (positions + lc - 1) / lc : 0);
  }
  const int64_t per_ng = first.back();
  at::parallel_for(0, s.n * s.groups * per_ng, 1, [&](int64_t b, int64_t e) {
    for (int64_t task = b; task < e; ++task) {
      const int64_t ng = task / per_ng, i = task % per_ng;
      const size_t pi = std::upper_bound(first.begin(), first.end(), i) -
                        first.begin() - 1;
      const Phase& p = phases[pi];
      const int64_t chunk = i - first[pi];
      const int64_t positions = p.plane.rows * wg;
      fn(gp, xq + p.xoff, wph + (one ? 0 : p.woff), goff[pi].data(),
         tie.flag.empty() ? nullptr : tie.flag.data(), gsum, gx, s, p.plane,
         hg, wg, ng / s.groups, ng % s.groups, chunk * lc,
         std::min(lc, positions - chunk * lc), range);
    }
  });
  add_tie_terms(go, x, w, tie, gx, s);
}

// A 1x1 stride-1 layer without padding by input channels: the output
// gradient is its own padded plane (pitch W, term t at t x H x W), copied
// with the slack the exact tile's fix-up reads past its end.
template <typename T>
bool backward_input_1x1_by_channels(const T* go, const T* x, const T* w,
                                    T* gx, const Adder2dShape& s) {
  const int64_t HW = s.h * s.w, NR = ADDER_PICK_ISA(bwd_nr<T, true>)();
  const int64_t slack = 2 * NR + s.w + 64;
  T* const gp = scratch_with_slack<T, 1>(s.n * s.cout * HW, slack);
  std::copy(go, go + s.n * s.cout * HW, gp);
  T* const gsum = scratch_with_slack<T, 4>(s.n * s.groups * HW, slack);
  sum_over_filters(gp, s, HW, gsum);
  std::vector<int64_t> goff(s.cout_g());
  for (int64_t t = 0; t < s.cout_g(); ++t) goff[t] = t * HW;
  return backward_input_by_channels(gp, gsum, x, w, 1, nullptr, goff.data(),
                                    gx, s, s.h, s.w);
}

// The filters as [groups][K][cout_g] for the packed input gradient, in
// per-thread scratch. 8 filters at a time, walking K: 8 read streams and
// 8-value writes (a strided at::Tensor copy cost a quarter of the 7x7
// layers' input gradient; 32 x 32 blocks of rows 8 KiB apart thrashed L1).
template <typename T>
const T* transpose_filters(const T* w, const Adder2dShape& s) {
  constexpr int64_t B = 8;
  const int64_t K = s.k(), cout_g = s.cout_g(), tb = (cout_g + B - 1) / B;
  T* wt = scratch<T, 8>(s.cout * K);
  at::parallel_for(0, s.groups * tb, 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t g = i / tb, t0 = i % tb * B, nt = std::min(B, cout_g - t0);
      const T* src = w + (g * cout_g + t0) * K;
      T* dst = wt + g * K * cout_g + t0;
      if (nt == B) {
        for (int64_t k = 0; k < K; ++k)
          for (int64_t t = 0; t < B; ++t) dst[k * cout_g + t] = src[t * K + k];
      } else {
        for (int64_t k = 0; k < K; ++k)
          for (int64_t t = 0; t < nt; ++t) dst[k * cout_g + t] = src[t * K + k];
      }
    }
  });
  return wt;
}

// Packed input gradient: tasks of (sample, group, block of `per`
// channels); for the sign rule's fast tile the output gradient summed over
// each group's filters first.
template <typename T, bool kSign>
void backward_input_packed(const T* go, const T* x, const T* wt,
                           const std::vector<uint8_t>& tie, T* gx,
                           const Adder2dShape& s, int64_t per) {
  const int64_t ng_all = s.n * s.groups, L = s.l();
  T* gtot = nullptr;
  if (!tie.empty()) {
    gtot = scratch<T, 6>(ng_all * L);
    sum_over_filters(go, s, L, gtot);
  }
  const int64_t cin_g = s.cin_g(), blocks = (cin_g + per - 1) / per;
  const auto fn = ADDER_PICK_ISA(backward_input_chunk_impl<T, kSign>);
  const int nr = ADDER_PICK_ISA(bwd_nr<T, kSign>)();
  const bool range = !kSign && hardtanh_by_range(x, wt, s);
  at::parallel_for(0, ng_all * blocks, 1, [&](int64_t b, int64_t e) {
    T* gbuf = scratch<T>(s.cout_g() * nr);
    for (int64_t task = b; task < e; ++task) {
      const int64_t blk = task % blocks, ng = task / blocks;
      const int64_t c0 = blk * per, c1 = std::min(cin_g, c0 + per);
      fn(go, gtot ? gtot + ng * L : nullptr, x, wt,
         tie.empty() ? nullptr : tie.data(), gx, s, ng / s.groups,
         ng % s.groups, c0, c1, gbuf, range);
    }
  });
}

// The input gradient by rows (backward_input_rows_impl) for maps of few
// positions: tasks of (sample, group, block of input channels), each owning
// those channels' planes of dX: its positions' patch rows over the block's
// channels packed ([L][block K]), their gradient columns computed against
// every filter read as it is, then added into the planes (padding taps
// skipped).
template <typename T>
void backward_input_by_rows(const T* go, const T* x, const T* w, T* gx,
                            const Adder2dShape& s, bool sign_grad) {
  const int64_t L = s.l(), K = s.k(), taps = s.taps();
  const int64_t cin_g = s.cin_g(), cout_g = s.cout_g();
  const int64_t threads = at::get_num_threads();
  const int64_t want = (4 * threads + s.n * s.groups - 1) / (s.n * s.groups);
  const int64_t cb = (cin_g + std::min(want, cin_g) - 1) / std::min(want, cin_g);
  const int64_t cblocks = (cin_g + cb - 1) / cb;
  const auto fn = sign_grad ? ADDER_PICK_ISA(backward_input_rows_impl<T, true>)
                            : ADDER_PICK_ISA(backward_input_rows_impl<T, false>);
  const bool range = !sign_grad && hardtanh_by_range(x, w, s);
  at::parallel_for(0, s.n * s.groups * cblocks, 1, [&](int64_t b, int64_t e) {
    const int64_t ldx = cb * taps;
    T* xc = scratch<T>(2 * L * ldx);
    T* dcol = xc + L * ldx;
    for (int64_t task = b; task < e; ++task) {
      const int64_t ng = task / cblocks, c0 = task % cblocks * cb;
      const int64_t n = ng / s.groups, g = ng % s.groups;
      const int64_t nc = std::min(cb, cin_g - c0), kb = nc * taps;
      const int64_t cfirst = n * s.c + g * cin_g + c0;  // (n, channel) plane
      for (int64_t l = 0; l < L; ++l)
        gather_patch_row(x + cfirst * s.h * s.w, nc, s, l, xc + l * ldx);
      fn(w + g * cout_g * K + c0 * taps, K, cout_g,
         go + (n * s.cout + g * cout_g) * L, L, xc, ldx, L, kb, dcol, range);
      // Into the block's planes of dX.
      T* const gxb = gx + cfirst * s.h * s.w;
      std::fill(gxb, gxb + nc * s.h * s.w, T(0));
      for (int64_t l = 0; l < L; ++l) {
        const T* d = dcol + l * ldx;
        for_each_patch_term(nc, s, l, [&](int64_t at) {
          if (at >= 0) gxb[at] += *d;
          ++d;
        });
      }
    }
  });
}

at::Tensor adder2d_backward_input_cpu(const at::Tensor& grad_output_,
                                      const at::Tensor& input_,
                                      const at::Tensor& weight_,
                                      at::IntArrayRef stride,
                                      at::IntArrayRef padding,
                                      at::IntArrayRef dilation, int64_t groups,
                                      bool sign_grad) {
  const Adder2dShape s =
      make_shape(input_, weight_, stride, padding, dilation, groups);
  check_cpu(input_, "input");
  check_grad_output(grad_output_, s, input_);
  const auto input = input_.contiguous();
  const auto weight = weight_.contiguous();
  const auto grad_output = grad_output_.contiguous();
  auto grad_input = at::empty_like(input);
  if (grad_input.numel() == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "adder2d_bwd_input_cpu", [&] {
    if (use_backward_by_rows(s)) {
      backward_input_by_rows(grad_output.data_ptr<scalar_t>(),
                             input.data_ptr<scalar_t>(),
                             weight.data_ptr<scalar_t>(),
                             grad_input.data_ptr<scalar_t>(), s, sign_grad);
      return;
    }
    // (Strided layers by channels too where each phase is small: that
    // computes the valid positions only, whatever the pitch would waste.)
    const bool by_phase = use_phases_by_channels(s, sign_grad);
    if (use_in_place_backward(s) || by_phase) {
      const auto fn = sign_grad ? &backward_input_implicit<scalar_t, true>
                                : &backward_input_implicit<scalar_t, false>;
      fn(grad_output.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(),
         weight.data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(), s,
         by_phase);
      return;
    }
    if (sign_grad && s.taps() == 1 && s.ph == 0 && s.pw == 0 &&
        use_backward_by_channels(s) && sign_fast_runs(s, true) &&
        backward_input_1x1_by_channels(grad_output.data_ptr<scalar_t>(),
                                       input.data_ptr<scalar_t>(),
                                       weight.data_ptr<scalar_t>(),
                                       grad_input.data_ptr<scalar_t>(), s))
      return;
    // Packed path: filters as [groups][K][cout_g], each row streams.
    const scalar_t* w = transpose_filters(weight.data_ptr<scalar_t>(), s);
    // Channel blocks: enough tasks to fill the threads, whole channels each.
    const int64_t cin_g = s.cin_g();
    const int64_t want = 4 * at::get_num_threads();
    const int64_t per = std::max<int64_t>(
        1, cin_g / std::max<int64_t>(1, want / std::max<int64_t>(1, s.n * s.groups)));
    const scalar_t* go = grad_output.data_ptr<scalar_t>();
    const scalar_t* x = input.data_ptr<scalar_t>();
    scalar_t* gx = grad_input.data_ptr<scalar_t>();
    const SignTies<scalar_t> tie = sign_fast_ties(x, w, s, sign_grad);
    if (sign_grad)
      backward_input_packed<scalar_t, true>(go, x, w, tie.flag, gx, s, per);
    else
      backward_input_packed<scalar_t, false>(go, x, w, tie.flag, gx, s, per);
    add_tie_terms(go, x, weight.data_ptr<scalar_t>(), tie, gx, s);
  });
  return grad_input;
}

}  // namespace

std::string sign_fast_mode() {
  return kModeNames[sign_fast_mode_index.load()];
}

std::string set_sign_fast_mode(const std::string& name) {
  return exchange_mode(sign_fast_mode_index, name, "set_sign_fast_mode");
}

int sign_fast_mode_value() { return sign_fast_mode_index.load(); }

bool sparse_forward_tried(const at::Tensor& input_, const at::Tensor& weight,
                          at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation, int64_t groups) {
  const Adder2dShape s =
      make_shape(input_, weight, stride, padding, dilation, groups);
  check_cpu(input_, "input");
  const auto input = input_.contiguous();
  bool tried = false;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "sparse_forward_tried", [&] {
    tried = try_sparse_forward(s, input.data_ptr<scalar_t>(), input.numel());
  });
  return tried;
}

std::string sparse_forward_mode() {
  return kModeNames[sparse_mode_index.load()];
}

std::string set_sparse_forward_mode(const std::string& name) {
  return exchange_mode(sparse_mode_index, name, "set_sparse_forward_mode");
}

bool rows_forward_runs(const at::Tensor& input, const at::Tensor& weight,
                       at::IntArrayRef stride, at::IntArrayRef padding,
                       at::IntArrayRef dilation, int64_t groups) {
  return use_forward_by_rows(
      make_shape(input, weight, stride, padding, dilation, groups));
}

bool sign_fast_cpu_runs(const at::Tensor& input, const at::Tensor& weight,
                        at::IntArrayRef stride, at::IntArrayRef padding,
                        at::IntArrayRef dilation, int64_t groups) {
  return sign_fast_runs(
      make_shape(input, weight, stride, padding, dilation, groups), true);
}

bool rows_input_grad_runs(const at::Tensor& input, const at::Tensor& weight,
                          at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation, int64_t groups) {
  return use_backward_by_rows(
      make_shape(input, weight, stride, padding, dilation, groups));
}

std::string rows_mode() { return kModeNames[rows_mode_index.load()]; }

std::string set_rows_mode(const std::string& name) {
  return exchange_mode(rows_mode_index, name, "set_rows_mode");
}

std::string min_add_mode() { return kModeNames[min_add_mode_index.load()]; }

std::string set_min_add_mode(const std::string& name) {
  return exchange_mode(min_add_mode_index, name, "set_min_add_mode");
}

bool min_adds() { return min_form_adds(); }

std::string half_width_tile_mode() {
  return kModeNames[half_width_mode_index.load()];
}

std::string set_half_width_tile_mode(const std::string& name) {
  return exchange_mode(half_width_mode_index, name,
                       "set_half_width_tile_mode");
}

bool half_width_tile() {
  return active_isa() == kAvx512 && half_width_tiles();
}

std::string cpu_isa() { return kIsaNames[active_isa()]; }

std::vector<std::string> cpu_isas() {
  std::vector<std::string> names;
  for (int i = best_cpu_isa(); i >= 0; --i) names.push_back(kIsaNames[i]);
  return names;
}

std::string set_cpu_isa(const std::string& name) {
  const int i = isa_index(name);
  TORCH_CHECK(i >= 0, "set_cpu_isa: '", name,
              "' is not one of generic, avx2, avx512");
  TORCH_CHECK(i <= best_cpu_isa(), "set_cpu_isa: this CPU cannot run '",
              name, "' (best: ", kIsaNames[best_cpu_isa()], ")");
  const std::string previous = cpu_isa();
  isa_cap().store(i);
  return previous;
}

}  // namespace adder_det

TORCH_LIBRARY_IMPL(adder_det, CPU, m) {
  m.impl("adder2d", &adder_det::adder2d_forward_cpu);
  m.impl("adder2d_backward_input", &adder_det::adder2d_backward_input_cpu);
}
