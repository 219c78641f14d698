"""tools/half_precision_error.py: the numbers behind adder2d's autocast
policy (float32 under autocast)."""
import torch

from . import load_tool

tool = load_tool('half_precision_error')


def test_output_rounding_dominates_and_exceeds_the_conv():
    errors, mean_abs = tool.layer_errors(32, 16, 3, 10)
    assert mean_abs > 50  # the offset a norm layer removes
    assert max(max(e) for e in errors[torch.float32]) < 1e-5
    for dtype in (torch.float16, torch.bfloat16):
        (_, inputs), (_, output), (_, conv) = errors[dtype]
        assert inputs < output and conv < output
    assert errors[torch.float16][1][1] < errors[torch.bfloat16][1][1]


def test_prints_every_layer_and_dtype(capsys, monkeypatch):
    monkeypatch.setattr(tool, 'SHAPES', [(16, 8, 1, 6)])
    tool.main([])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 3
    assert [line.split()[5] for line in lines[2:]] == [
        'float32', 'float16', 'bfloat16']
