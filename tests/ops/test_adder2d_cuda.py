"""CUDA kernels against the CPU reference; skipped without a GPU."""
import pytest
import torch

import adder_det.ops as ops
from adder_det.ops import adder2d, reference as ref

from .cases import random_case, rel_err
from .test_adder2d import run_case

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='no CUDA device')


@pytest.fixture(scope='module', autouse=True)
def cuda_extension():
    if not ops.extension_available():
        pytest.fail('adder_det._C is not built')
    from adder_det import _C
    if not _C.built_with_cuda():
        pytest.fail('adder_det._C was built without CUDA kernels')


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_random_cases_match_reference(base_seed, dtype):
    for i in range(200):
        run_case(random_case(base_seed + 1000 + i), dtype, 'cuda')


def _compare_primitives(x, w, conf, tol, sign=True):
    """CUDA primitives vs reference (float64 on CPU)."""
    xc, wc = x.cuda(), w.cuda()
    y = torch.ops.adder_det.adder2d(xc, wc, *conf)
    x64, w64 = x.double(), w.double()
    y_ref = ref.adder2d_forward(x64, w64, *conf)
    assert rel_err(y, y_ref) < tol, ('forward', rel_err(y, y_ref))
    g = torch.randn_like(y_ref)
    gi = torch.ops.adder_det.adder2d_backward_input(g.to(y).cuda(), xc, wc,
                                                    *conf, sign)
    gi_ref = ref.adder2d_backward_input(g, x64, w64, *conf, sign)
    assert rel_err(gi, gi_ref) < tol, ('grad_input', rel_err(gi, gi_ref))
    gw = torch.ops.adder_det.adder2d_backward_weight(g.to(y).cuda(), xc, wc,
                                                     *conf)
    gw_ref = ref.adder2d_backward_weight(g, x64, w64, *conf)
    assert rel_err(gw, gw_ref) < tol, ('grad_weight', rel_err(gw, gw_ref))


@pytest.mark.parametrize('shape', [
    # n, c, h, w, cout, k, stride, pad, groups: tails of every tile size
    (2, 67, 97, 131, 70, 3, 1, 1, 1),
    (1, 130, 45, 61, 257, 1, 1, 0, 1),
    (2, 64, 200, 167, 64, 3, 2, 1, 1),
    (1, 96, 33, 35, 96, 3, 1, 2, 96),
    (3, 24, 50, 50, 36, 5, 2, 2, 3),
    # few output columns, long reductions: split into partial sums
    (2, 512, 7, 7, 512, 3, 1, 1, 1),
    (2, 2048, 7, 7, 512, 1, 1, 0, 1),
    (1, 256, 13, 13, 2048, 1, 1, 0, 1),
])
def test_large_shapes_and_tile_tails(shape):
    n, c, h, w, cout, k, s, p, g = shape
    torch.manual_seed(sum(shape))
    x = torch.randn(n, c, h, w)
    wt = torch.randn(cout, c // g, k, k)
    _compare_primitives(x, wt, ((s, s), (p, p), (1, 1), g), 1e-4)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float(dtype):
    torch.manual_seed(0)
    x = torch.randn(2, 32, 20, 20).to(dtype)
    w = torch.randn(48, 32, 3, 3).to(dtype)
    # Inputs are rounded to half; accumulation is float, so the error is
    # that of the final rounding of the output (2^-8 for bf16, 2^-11 fp16).
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    y = torch.ops.adder_det.adder2d(x.cuda(), w.cuda(), [1, 1], [1, 1],
                                    [1, 1], 1)
    assert y.dtype == dtype
    y_ref = ref.adder2d_forward(x.double(), w.double(), (1, 1), (1, 1),
                                (1, 1), 1)
    assert rel_err(y, y_ref) < tol
    xg = x.cuda().requires_grad_()
    wg = w.cuda().requires_grad_()
    adder2d(xg, wg, padding=1, input_grad='sign').float().sum().backward()
    assert xg.grad.dtype == dtype and torch.isfinite(wg.grad).all()


def test_module_on_cuda_and_device_mismatch():
    m = ops.Adder2d(8, 8, 3, padding=1).cuda()
    x = torch.randn(2, 8, 16, 16, device='cuda', requires_grad=True)
    m(x).sum().backward()
    assert x.grad.is_cuda and m.weight.grad.is_cuda
    with pytest.raises(ValueError, match='device|cuda'):
        adder2d(x.cpu(), m.weight)


def test_tf32_setting_is_restored():
    torch.backends.cudnn.allow_tf32 = True
    x = torch.randn(1, 4, 8, 8, device='cuda')
    w = torch.randn(4, 4, 3, 3, device='cuda')
    g = torch.randn(1, 4, 8, 8, device='cuda')
    torch.ops.adder_det.adder2d_backward_weight(g, x, w, [1, 1], [1, 1],
                                                [1, 1], 1)
    assert torch.backends.cudnn.allow_tf32


def test_split_reductions_deterministic_mode_repeats_bitwise():
    # 7x7 positions, 4608-long reductions: the kernels split the reduction
    # over blocks. By default the partial sums are added atomically (order,
    # hence last bits, may vary); with deterministic algorithms on they go
    # through a workspace summed in a fixed order: identical every call.
    torch.manual_seed(0)
    x = torch.randn(2, 512, 7, 7, device='cuda')
    w = torch.randn(512, 512, 3, 3, device='cuda')
    g = torch.randn(2, 512, 7, 7, device='cuda')
    conf = ([1, 1], [1, 1], [1, 1], 1)

    def run():
        return (torch.ops.adder_det.adder2d(x, w, *conf),
                torch.ops.adder_det.adder2d_backward_input(g, x, w, *conf,
                                                           True))

    fast = run()
    torch.use_deterministic_algorithms(True)
    try:
        first, second = run(), run()
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b, f in zip(first, second, fast):
        assert torch.equal(a, b)
        assert rel_err(f, a) < 1e-5
    y_ref = ref.adder2d_forward(x.double().cpu(), w.double().cpu(), *conf)
    assert rel_err(first[0], y_ref) < 1e-4


@pytest.mark.parametrize('mode', ['always', 'never', 'auto'])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('shape', [
    # n, c, h, w, cout, k, stride, pad: auto takes the fast rule on the
    # first two (>= 512 positions and >= 32 terms a stride phase), not on
    # the last two (16 terms; 98 positions)
    (2, 40, 33, 31, 48, 3, 1, 1),
    (2, 24, 40, 37, 520, 3, 2, 1),   # 4680 filter values a channel: runs
    (1, 70, 100, 90, 16, 1, 1, 0),   # 9000 positions a channel: chunks
    (2, 16, 7, 7, 64, 3, 1, 1),
])
def test_sign_rule_fast_kernel_takes_back_ties(mode, dtype, shape):
    """The CUDA sign rule without its per-term tie check (kSignFast, then
    sign_ties_kernel, csrc/cuda/adder2d_tiles.cuh) against the reference, on
    planted ties: a sixth of the inputs equal to one of their channel's
    filter values, zeros of both signs on both sides, NaN and infinite
    inputs, a NaN filter value, an infinity met by itself."""
    from adder_det import _C
    n, c, h, w, cout, k, s, p = shape
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    wt = torch.randn(cout, c, k, k, generator=g, dtype=torch.float64)
    flat = wt.permute(1, 0, 2, 3).reshape(c, -1)      # a channel's values
    pick = torch.randint(0, flat.shape[1], (n, c, h, w), generator=g)
    planted = torch.gather(flat.expand(n, c, -1), 2, pick.view(n, c, -1))
    tie = torch.rand(n, c, h, w, generator=g) < 1 / 6
    x = torch.where(tie, planted.view(n, c, h, w), x)
    x[torch.rand(n, c, h, w, generator=g) < 0.05] = 0.0
    x[torch.rand(n, c, h, w, generator=g) < 0.05] = -0.0
    wt[torch.rand(wt.shape, generator=g) < 0.05] = -0.0
    x.view(-1)[::97] = float('nan')
    x.view(-1)[1::89] = float('inf')
    wt[0, 1, 0, 0], wt[1, 2, 0, 0] = float('nan'), float('inf')
    x[0, 2, 0, 0] = float('inf')
    x, wt = x.to(dtype), wt.to(dtype)
    conf = ((s, s), (p, p), (1, 1), 1)
    hout, wout = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    go = torch.randn(n, cout, hout, wout, generator=g, dtype=torch.float64)
    expect = ref.adder2d_backward_input(go, x.double(), wt.double(), *conf,
                                        True)
    old = _C.set_sign_fast_mode(mode)
    try:
        got = torch.ops.adder_det.adder2d_backward_input(
            go.to(dtype).cuda(), x.cuda(), wt.cuda(), *conf, True)
    finally:
        _C.set_sign_fast_mode(old)
    assert torch.isfinite(expect).all()
    assert rel_err(got, expect) < (1e-4 if dtype == torch.float32 else 1e-10)
