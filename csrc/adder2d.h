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

}  // namespace adder_det
