"""adder2d_decomposed: the standard-ops forward used for graph export."""
import pytest
import torch

from adder_det.ops import Adder2d, adder2d, adder2d_decomposed
from adder_det.ops import reference as ref

from .cases import random_case


def test_random_cases_match_reference(base_seed):
    """Every shape the random cases cover (strides, padding past the
    kernel's reach, dilation, groups incl. depthwise, 1xk kernels)."""
    for i in range(60):
        case = random_case(base_seed + 7000 + i)
        x, w, b = case.tensors(torch.float64)
        with torch.no_grad(), adder2d_decomposed():
            got = adder2d(x, w, b if case.bias else None, *case.conf()[:3],
                          groups=case.groups)
        expect = ref.adder2d_forward(x, w, *case.conf())
        if case.bias:
            expect = expect + b.view(1, -1, 1, 1)
        torch.testing.assert_close(got, expect, rtol=1e-12, atol=1e-10,
                                   msg=f'{case}')


def test_module_uses_it_only_inside_the_block(monkeypatch):
    """Adder2d takes the decomposition in the block (the compiled op is not
    called), the compiled op again after it, and float32 agrees."""
    layer = Adder2d(6, 8, 3, stride=2, padding=1, groups=2).eval()
    x = torch.randn(2, 6, 11, 9)
    with torch.no_grad():
        expect = layer(x)
        with adder2d_decomposed():
            from adder_det.ops import _backend

            def fail(*args, **kwargs):
                raise AssertionError('compiled op called in the block')
            monkeypatch.setattr(_backend, 'primitives', fail)
            got = layer(x)
        monkeypatch.undo()
        again = layer(x)
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(again, expect, rtol=0, atol=0)


def test_refuses_autograd():
    """Its autograd would give calculus gradients, not the papers' rules:
    tracking gradients in the block is an error naming the fix."""
    x = torch.randn(1, 3, 5, 5, requires_grad=True)
    w = torch.randn(4, 3, 3, 3)
    with adder2d_decomposed(), pytest.raises(RuntimeError,
                                             match='torch.no_grad'):
        adder2d(x, w)
