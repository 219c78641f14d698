// Declarations shared by the backend files (torch side).
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "common/adder2d_shape.h"

namespace adder_det {

// Checks the arguments of every adder2d op (TORCH_CHECK with a message that
// names the problem) and returns the call's sizes.
Adder2dShape make_shape(const at::Tensor& input, const at::Tensor& weight,
                        at::IntArrayRef stride, at::IntArrayRef padding,
                        at::IntArrayRef dilation, int64_t groups);

void check_grad_output(const at::Tensor& grad_output, const Adder2dShape& s,
                       const at::Tensor& input);

// Whether the CPU input gradient of this call (sign rule) may take the
// sign rule's fast tile: by the mode and, in auto, by thresholds of the
// active instruction set and CPU (csrc/cpu/adder2d_cpu.cpp sign_fast_runs:
// filter terms an input value meets, input positions a channel and, with
// stride > 1, a stride phase). A (sample, channel) with a tie may still run
// the exact tile. The benchmark asks it instead of copying the rule.
bool sign_fast_cpu_runs(const at::Tensor& input, const at::Tensor& weight,
                        at::IntArrayRef stride, at::IntArrayRef padding,
                        at::IntArrayRef dilation, int64_t groups);
// Whether the CPU input gradient applies those thresholds ("auto", the
// default), takes the fast tile on every layer ("always"; still exact: a
// (sample, channel) with a tie runs the exact tile) or never ("never").
// The CUDA input gradient takes the same switch for its fast sign kernel
// (auto: its own thresholds; ties taken back by a second kernel).
// set_sign_fast_mode returns the previous mode; for benchmarks that time
// both tiles on a machine (tools/benchmark_sign_rule.py), between calls.
std::string sign_fast_mode();
std::string set_sign_fast_mode(const std::string& name);
// The same mode as its PathMode value (cpu/path_mode.h: 0 auto, 1 always,
// 2 never), as the CUDA launcher takes it.
int sign_fast_mode_value();
// Whether the CUDA input gradient of this call (sign rule) would take its
// fast kernel and the tie kernel after it: by the mode (auto: its own
// thresholds, csrc/cuda/adder2d_tiles.cuh sign_fast_cuda), float and double
// only, never under deterministic algorithms. CUDA builds only.
bool sign_fast_cuda_runs(const at::Tensor& input, const at::Tensor& weight,
                         at::IntArrayRef stride, at::IntArrayRef padding,
                         at::IntArrayRef dilation, int64_t groups);

// Whether the CPU forward's min form accumulates min(w, x) by adds and
// doubles the sums ("auto": on AMD Zen 1 cores; "always"; "never": FMAs of
// 2 min(w, x)); both give the same values. set_min_add_mode returns the
// previous mode; min_adds says what the forward does now. For tests and
// benchmarks, between calls.
std::string min_add_mode();
std::string set_min_add_mode(const std::string& name);
bool min_adds();

// Whether the AVX-512 CPU forward tile computes in 256-bit vectors
// ("auto": on AMD Zen 4 cores; "always"; "never"); the same values either
// way. set_half_width_tile_mode returns the previous mode; half_width_tile
// says whether the forward does so now (AVX-512 active and the mode on).
// For tests and benchmarks, between calls.
std::string half_width_tile_mode();
std::string set_half_width_tile_mode(const std::string& name);
bool half_width_tile();

// Whether the CPU forward and input gradient of maps with few positions run
// by rows (vectors along the reduction, the filters read as they are) by
// their thresholds ("auto", the default), on every layer ("always"; tests)
// or never ("never"). set_rows_mode returns the previous mode; for tests
// and benchmarks, between calls.
std::string rows_mode();
std::string set_rows_mode(const std::string& name);
// Whether the CPU forward / input gradient of this call would run by rows
// (by the mode, the layer's shape and the ISA). For tests and benchmarks.
bool rows_forward_runs(const at::Tensor& input, const at::Tensor& weight,
                       at::IntArrayRef stride, at::IntArrayRef padding,
                       at::IntArrayRef dilation, int64_t groups);
bool rows_input_grad_runs(const at::Tensor& input, const at::Tensor& weight,
                          at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation, int64_t groups);

// Whether the CPU forward skips the zeros of a non-negative input (ReLU
// outputs) by its thresholds ("auto", the default), wherever the input is
// non-negative and finite ("always"; tests) or never ("never").
// set_sparse_forward_mode returns the previous mode; for tests and
// benchmarks, between calls.
std::string sparse_forward_mode();
std::string set_sparse_forward_mode(const std::string& name);
// Whether the CPU forward of this call would try that path (by the mode,
// the layer's shape and a sample of the input; it still takes a dense path
// where its pass meets a negative or non-finite input value). For tests and
// benchmarks.
bool sparse_forward_tried(const at::Tensor& input, const at::Tensor& weight,
                          at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation, int64_t groups);

// The filter gradient's convolution term sum_{n,l} g(n,t,l) X_col(n,k,l)
// (csrc/adder2d.cpp) of an unpadded 1x1 layer on the CPU, as one matmul a
// sample (and group), where the mode says so ("auto": groups == 1;
// "always": grouped ones too; "never"); an undefined tensor where not
// (the caller runs the convolution weight gradient). g and x widened to
// float32 or float64 by the caller. set_matmul_filter_grad_mode returns
// the previous mode; matmul_filter_grad_runs says whether a call would
// take it. For tests and benchmarks, between calls.
at::Tensor matmul_filter_grad_term(const at::Tensor& grad_output,
                                   const at::Tensor& input,
                                   const Adder2dShape& s);
std::string matmul_filter_grad_mode();
std::string set_matmul_filter_grad_mode(const std::string& name);
bool matmul_filter_grad_runs(const at::Tensor& input, const at::Tensor& weight,
                             at::IntArrayRef stride, at::IntArrayRef padding,
                             at::IntArrayRef dilation, int64_t groups);

// The instruction set the CPU kernels run: the best this CPU has of
// "avx512", "avx2", "generic", or lower where set_cpu_isa (or the
// ADDER_DET_CPU_ISA environment variable, read at the first CPU call)
// capped it. cpu_isas: those this CPU can run, best first. set_cpu_isa
// returns the previous one; it is for tests and benchmarks, between calls
// (a call in flight may mix kernels of both).
std::string cpu_isa();
std::vector<std::string> cpu_isas();
std::string set_cpu_isa(const std::string& name);

}  // namespace adder_det
