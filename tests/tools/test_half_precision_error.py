"""tools/half_precision_error.py: the numbers behind adder2d's autocast
policy (float32 under autocast)."""
import torch

from . import load_tool

tool = load_tool('half_precision_error')


def test_output_rounding_dominates_and_exceeds_the_conv():
    errors, mean_abs = tool.layer_errors(32, 16, 3, 10)
    assert mean_abs > 50  # the offset a norm layer removes
    rounded, summed = errors[torch.float32][:3], errors[torch.float32][3:]
    assert max(max(e) for e in rounded) < 1e-5  # float32 rounding
    assert max(max(e) for e in summed) < 1e-3  # float32 running sums
    for dtype in (torch.float16, torch.bfloat16):
        (_, inputs), (_, output), (_, conv), (_, half_sum), (_, blocks) = \
            errors[dtype]
        assert inputs < output and conv < output
        # one long half sum is far worse than blocks of 16 added in float
        assert half_sum > 5 * blocks and half_sum > output
    assert errors[torch.float16][1][1] < errors[torch.bfloat16][1][1]


def test_accumulated_in_float64_is_the_adder():
    x = torch.randn(2, 5, 6, 6, dtype=torch.float64)
    w = torch.randn(3, 5, 3, 3, dtype=torch.float64)
    from adder_det.ops import adder2d
    for block in (None, 4, 16, 45):
        torch.testing.assert_close(
            tool.accumulated_in(x, w, 3, torch.float64, block),
            adder2d(x, w, padding=1))


def test_prints_every_layer_and_dtype(capsys, monkeypatch):
    monkeypatch.setattr(tool, 'SHAPES', [(16, 8, 1, 6)])
    tool.main([])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 3
    assert [line.split()[5] for line in lines[2:]] == [
        'float32', 'float16', 'bfloat16']
