// Declarations shared by the backend files (torch side).
#pragma once
#include <ATen/ATen.h>

#include "common/adder2d_shape.h"

namespace adder_det {

// Checks the arguments of every adder2d op (TORCH_CHECK with a message that
// names the problem) and returns the call's sizes.
Adder2dShape make_shape(const at::Tensor& input, const at::Tensor& weight,
                        at::IntArrayRef stride, at::IntArrayRef padding,
                        at::IntArrayRef dilation, int64_t groups);

void check_grad_output(const at::Tensor& grad_output, const Adder2dShape& s,
                       const at::Tensor& input);

// Where the CPU input gradient may take the sign rule's fast tile: at least
// min_terms * stride_h * stride_w filter terms (Cout/g x taps) an input
// value and min_positions input positions (N x H x W) a channel. Exposed
// to Python (adder_det._C.sign_fast_thresholds) for the benchmark.
struct SignFastThresholds {
  int64_t min_terms, min_positions;
};
SignFastThresholds sign_fast_thresholds();

}  // namespace adder_det
