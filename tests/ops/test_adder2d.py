"""adder2d on CPU against the reference (the specification)."""
import contextlib
import os
import random
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

import adder_det.ops as ops
from adder_det.ops import _backend, adder2d, reference as ref

from .cases import random_case, reference_grads, rel_err

N_CASES = 200
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def run_case(case, dtype, device='cpu'):
    """Forward + backward through the public API vs the reference."""
    x, w, b = case.tensors(dtype, device)
    x.requires_grad_(), w.requires_grad_(), b.requires_grad_()
    y = adder2d(x, w, b if case.bias else None, *case.conf()[:3],
                groups=case.groups, input_grad=case.input_grad, eta=case.eta)
    grad_out = torch.randn(y.shape, generator=torch.Generator().manual_seed(
        case.seed + 1), dtype=torch.float64).to(device=device, dtype=dtype)
    y.backward(grad_out)
    x64, w64, b64 = (t.detach().cpu().double() for t in (x, w, b))
    expect = reference_grads(case, x64, w64, b64, grad_out.cpu().double())
    got = (y, x.grad, w.grad, b.grad if case.bias else None)
    for name, g, e in zip(('output', 'grad_input', 'grad_weight',
                           'grad_bias'), got, expect):
        if e is None:
            continue
        assert g.shape == e.shape, f'{name} shape {g.shape} != {e.shape}'
        err = rel_err(g, e)
        assert err < TOL[dtype], (f'{name}: rel. error {err:.2e} >= '
                                  f'{TOL[dtype]:.0e} for {case}')


@pytest.fixture(scope='module')
def compiled():
    if not ops.extension_available():
        pytest.fail('adder_det._C is not built: run tools/install.sh')


def _cpu_isas():
    """The instruction sets this CPU runs the kernels with, best first
    (each has its own build of the kernels, so each is tested)."""
    try:
        return _backend.load_extension().cpu_isas()
    except ImportError:
        return ['(extension not built)']


def _extension_setting(setter, value):
    """Fixture body: the extension's setter(value) (which returns the
    previous value) for the test, the previous value restored after."""
    set_value = getattr(_backend.load_extension(), setter)
    previous = set_value(value)
    try:
        yield value
    finally:
        set_value(previous)


@pytest.fixture(params=_cpu_isas())
def cpu_isa(request, compiled):
    """Runs the test with the CPU kernels of one instruction set."""
    yield from _extension_setting('set_cpu_isa', request.param)


def test_extension_built_in_ci():
    """CI sets ADDER_DET_REQUIRE_EXTENSION=1 so a broken build fails."""
    if os.environ.get('ADDER_DET_REQUIRE_EXTENSION') == '1':
        assert ops.extension_available(), 'the compiled extension is missing'
    assert ops.backend() in ('compiled', 'reference')


@pytest.fixture(params=['auto', 'never'])
def rows(request, compiled):
    """The forward and input gradient by rows on the layers their rules
    give them (maps of few positions), or never (those go to the paths they
    took before)."""
    yield from _extension_setting('set_rows_mode', request.param)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_random_cases_match_reference(cpu_isa, rows, base_seed, dtype):
    assert ops.backend() == 'compiled'
    for i in range(N_CASES):
        case = random_case(base_seed + i)
        run_case(case, dtype)


#: Larger random layers on random paths (test_random_layers_on_random_paths);
#: ADDER_DET_LAYER_CASES=5000 (with ADDER_DET_SEED) makes it a long fuzz run
#: after a kernel change.
N_LAYER_CASES = int(os.environ.get('ADDER_DET_LAYER_CASES', '120'))
PATH_SWITCHES = ('set_rows_mode', 'set_sparse_forward_mode',
                 'set_min_add_mode', 'set_half_width_tile_mode',
                 'set_sign_fast_mode', 'set_matmul_filter_grad_mode')


def test_random_layers_on_random_paths(compiled, base_seed):
    """Layers up to ResNet widths (random_layer_case: where the paths'
    thresholds lie, which random_case's small layers never reach), each on
    a random instruction set, random path switches (auto / always / never),
    1 or 2 threads, float32 or float64, inputs that are N(0, 1), a ReLU
    output, small integers (ties) or offset by 50, in contiguous,
    channels-last or sliced memory."""
    from .cases import random_layer_case
    isas = _backend.load_extension().cpu_isas()
    setting = contextlib.contextmanager(_extension_setting)
    for i in range(N_LAYER_CASES):
        seed = base_seed + 100_000 + i
        r = random.Random(-seed)
        settings = dict(set_cpu_isa=r.choice(isas),
                        **{name: r.choice(['auto', 'always', 'never'])
                           for name in PATH_SWITCHES})
        threads = r.choice([1, 2])
        dtype = torch.float64 if r.random() < 0.15 else torch.float32
        with contextlib.ExitStack() as stack:
            for name, value in settings.items():
                stack.enter_context(setting(name, value))
            stack.callback(torch.set_num_threads, torch.get_num_threads())
            torch.set_num_threads(threads)
            try:
                run_case(random_layer_case(seed), dtype)
            except AssertionError as e:
                raise AssertionError(
                    f'{e} with {settings}, {threads} threads') from None


# The CPU kernels pick a path per layer (csrc/cpu/adder2d_cpu.cpp): stride-1
# layers with taps > 1 and <= 128 filters a group (any number with the
# AVX-512 kernels) read the padded input in place (forward and input
# gradient; the forward only where that computes < 1.4x the positions
# packing does: small maps pack), the others pack patches; such a strided
# layer's forward reads its input split into stride phases in place too,
# where that computes at most 1.2x its outputs (wide enough maps), and its
# input gradient runs phase by phase where that computes at most 1.2x its
# input positions. Before all of these, the forward of layers with taps > 1,
# >= 64 filters a group (AVX-512; 128 with AVX2) and >= 64 outputs runs by
# filters (vectors of filters, only the valid outputs), and both passes of
# maps with few positions (samples x outputs; the forward: taps > 1 and
# < 64; the input gradient: < 64, AVX2 < 32) by rows (vectors along K, the
# filters read as they are): cases for the paths those would otherwise
# take on such small maps turn it off (rows='never').
# Random cases rarely reach some corners of the choice, so each gets a case
# here.
PATH_CASES = {
    'in place, 2 K blocks': dict(c=16, cout=16, kernel=(3, 3), stride=(1, 1),
                                 padding=(1, 1), groups=1, h=13, w=11),
    # 12 x 26 positions computed in place for 12 x 22 outputs (1.21x).
    'in place, dilated, padding past reach, groups': dict(
        c=12, cout=10, kernel=(3, 5), stride=(1, 1), padding=(5, 3),
        dilation=(2, 1), groups=2, h=6, w=20),
    # A small map: in place would compute 4 x 6 positions a sample (two
    # tiles of 16) for 4 x 4 outputs, packing one panel a sample (2x): the
    # forward packs, the input gradient stays in place.
    'small map: forward packed, input gradient in place': dict(
        c=8, cout=16, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
        groups=1, h=4, w=4, rows='never'),
    # 64 filters: by filters with AVX-512, in place with AVX2.
    '64 filters, no padding': dict(c=8, cout=64, kernel=(3, 3),
                                   stride=(1, 1), padding=(0, 0),
                                   groups=1, h=9, w=17),
    'packed, 1x1': dict(c=24, cout=16, kernel=(1, 1), stride=(1, 1),
                        padding=(0, 0), groups=1, h=7, w=9),
    # Pointwise packing copies each channel's plane as one run; groups of 5
    # channels (an odd K: the panel sums' two-row loop has a tail row).
    'packed, 1x1, groups, odd K': dict(c=15, cout=12, kernel=(1, 1),
                                       stride=(1, 1), padding=(0, 0),
                                       groups=3, h=5, w=7),
    # Few positions (2 x 3 x 3 < 64): in place, not by filters.
    'in place, 128 filters, 3x3 map': dict(c=6, cout=128, kernel=(3, 3),
                                           stride=(1, 1), padding=(1, 1),
                                           groups=1, h=3, w=3,
                                           rows='never'),
    # The forward by filters (>= 64 filters a group with AVX-512, >= 128
    # with AVX2, >= 64 outputs): 130 filters a group, tiles of 32 (16 with
    # AVX2) with 2 left over; 2 x 5 x 11 outputs in tiles of 7 (6) positions
    # with a short last one; strided and dilated.
    'by filters, groups, stride (2, 1), dilated, tail tiles': dict(
        c=4, cout=260, kernel=(3, 3), stride=(2, 1), padding=(1, 2),
        dilation=(1, 2), groups=2, h=9, w=11),
    # K = 288: two K blocks of the by-filters tile (256, then 32 added to
    # the first's sums); 2 x 6 x 9 = 108 outputs, a short last tile of
    # positions at either tile height (7, or 5 in 256-bit vectors).
    'by filters, 2 K blocks': dict(
        c=32, cout=64, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
        groups=1, h=6, w=9),
    # Fewer filter tiles than 4 tasks a thread: chunks of positions too.
    'by filters, position chunks': dict(
        c=3, cout=128, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
        groups=1, h=10, w=10, threads=2),
    # Each thread packs the filter tile of its tasks itself: 3 tiles (float32)
    # in 3 chunks each, 9 tasks split 5 / 4, so the second thread starts in
    # the middle of tile 1 and packs it too.
    'by filters, a thread starting mid-tile': dict(
        c=3, cout=96, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
        groups=1, h=10, w=10, threads=2),
    # With AVX2 more than 128 filters leave the in-place kernels: by filters
    # here, packed below 64 outputs.
    '129 filters (AVX2: by filters)': dict(
        c=6, cout=129, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
        groups=1, h=8, w=8),
    '129 filters, few outputs (AVX2: packed)': dict(
        c=6, cout=129, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
        groups=1, h=5, w=5, rows='never'),
    # Both passes by rows (< 32 positions): 2 x 4 x 2 positions in tiles of
    # 4 (AVX-512) or 2; K = 6 x 6 = 36 a group, not a multiple of any
    # vector width (the input gradient's blocks of 3 channels, 18 values:
    # vectors, then a scalar tail); 5 filters a group (forward tiles of 4
    # and 1); strided, dilated, padded past the filter's reach.
    'by rows, groups, stride (2, 1), dilated, tails': dict(
        c=12, cout=10, kernel=(2, 3), stride=(2, 1), padding=(3, 1),
        dilation=(1, 2), groups=2, h=3, w=4),
    # K = 40 x 9 = 360 over several vectors; 7 filters in 2 forward tasks,
    # the input gradient in blocks of 10 channels (4 a sample), on 2
    # threads; 2 x 3 x 3 = 18 positions.
    'by rows, 2 threads': dict(c=40, cout=7, kernel=(3, 3), stride=(1, 1),
                              padding=(1, 1), groups=1, h=3, w=3,
                              threads=2),
    # The sign rule's input gradient by input channels (AVX-512, stride 1,
    # >= 64 channels a group, <= 1024 input positions): 70 channels a group
    # (blocks of 32, 32 and 6), a dilated 3x5 filter, 2 x 6 x 7 positions
    # in tiles of 6; fewer positions than the 40 x 15 filter values a
    # channel, so its tie check maps the input values.
    'input gradient by channels, groups, dilated, tail block': dict(
        c=140, cout=80, kernel=(3, 5), stride=(1, 1), padding=(2, 2),
        dilation=(2, 1), groups=2, h=6, w=7),
    # More positions (2 x 15 x 13) than filter values (8 x 9): the check
    # maps each channel's filter values; 2 channel blocks, so the positions
    # are cut into chunks for 2 threads.
    'input gradient by channels, position chunks': dict(
        c=64, cout=8, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
        groups=1, h=15, w=13, threads=2),
    # 3 channel blocks (float32) in 3 chunks each, 9 tasks split 5 / 4: the
    # second thread starts in the middle of block 1, lays it out itself and
    # leaves its tie check to the first (which ran the block's first chunk).
    'input gradient by channels, a thread starting mid-block': dict(
        c=96, cout=8, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
        groups=1, h=15, w=13, threads=2),
    # 1x1 by input channels (stride 1, no padding, <= 256 positions): 130
    # filter values a channel against 2 x 42 input values (inputs mapped).
    # (84 positions: not by rows.)
    'input gradient by channels, 1x1': dict(
        c=70, cout=130, kernel=(1, 1), stride=(1, 1), padding=(0, 0),
        groups=1, h=6, w=7),
    # A strided layer's input gradient by channels, phase by phase (AVX-512,
    # in place, >= 128 filters a group, <= 256 positions a phase): 3x3/2 on
    # 14 x 13 (phases of 7 x 7, 7 x 6, ... positions, with 1, 2, 2 and 4
    # taps); then groups of 64 channels and 128 filters, stride (2, 1),
    # dilated along the rows.
    'input gradient by channels, strided, by phase': dict(
        c=64, cout=128, kernel=(3, 3), stride=(2, 2), padding=(1, 1),
        groups=1, h=14, w=13),
    # An 8 x 8 map, whose phase pitch would leave the input gradient packed:
    # by phase too.
    'input gradient by channels by phase, small map (else packed)': dict(
        c=64, cout=128, kernel=(3, 3), stride=(2, 2), padding=(1, 1),
        groups=1, h=8, w=8, rows='never'),
    'input gradient by channels by phase, groups, stride (2, 1), dilated':
        dict(c=128, cout=256, kernel=(3, 3), stride=(2, 1), padding=(2, 1),
             dilation=(2, 1), groups=2, h=12, w=7),
    # Strided forwards in place, in stride phases (16 x 17 positions
    # computed for 16 x 16 outputs; 9 x 23 for 9 x 21).
    'in place, stride 2 (phases)': dict(c=10, cout=16, kernel=(3, 3),
                                        stride=(2, 2), padding=(1, 1),
                                        groups=1, h=31, w=31),
    'in place, stride (3, 2) (phases), dilated, groups': dict(
        c=12, cout=10, kernel=(3, 5), stride=(3, 2), padding=(2, 2),
        dilation=(2, 1), groups=2, h=26, w=41),
    # Input gradient by phase: rows 13 = 5 + 4 + 4 (h mod 3); no tap of
    # the 2x2 filter reaches rows or columns 2 mod 3 (their gradient is 0).
    'in place, stride 3 (phases), positions no tap reaches': dict(
        c=6, cout=8, kernel=(2, 2), stride=(3, 3), padding=(0, 0),
        groups=1, h=13, w=13, rows='never'),
    # Narrow strided maps stay packed (6 x 9 positions in phases for 6 x 7
    # outputs; 11 x 9 for the 11 x 7 input positions).
    'packed, stride 2': dict(c=10, cout=16, kernel=(3, 3), stride=(2, 1),
                             padding=(1, 1), groups=1, h=11, w=7),
    # The packed forward cuts a group's N * L positions (samples back to
    # back) into blocks of panels. Many blocks: a task packs and runs one
    # (K = 2304: at most 7 panels a block; float32 29 panels in blocks of
    # 6, float64 57 in blocks of 7). 75 x 3 outputs a sample: packed.
    'packed, a task a block of panels': dict(
        c=256, cout=7, kernel=(3, 3), stride=(2, 2), padding=(1, 1),
        groups=1, h=150, w=5, threads=1),
    # Few: all panels packed first, tasks split the filters (blocks of 10
    # here, the last only the 3 filters past the last 5-filter tile); the 49
    # positions a sample share panels across samples (7 x 7 outputs: packed).
    'packed, blocks of filters, groups': dict(
        c=8, cout=46, kernel=(3, 3), stride=(2, 2), padding=(1, 1),
        groups=2, h=13, w=13, threads=1),
}


@pytest.mark.parametrize('input_grad', ['sign', 'hardtanh'])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('path', sorted(PATH_CASES))
def test_each_cpu_kernel_path_matches_reference(cpu_isa, path, dtype,
                                                input_grad):
    from .cases import Case
    kw = dict(dict(dilation=(1, 1)), **PATH_CASES[path])
    with _path_case_settings(kw):
        case = Case(seed=7, n=2, bias=False, eta=None, input_grad=input_grad,
                    **kw)
        run_case(case, dtype)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('path', sorted(PATH_CASES))
def test_hardtanh_input_gradient_non_finite(cpu_isa, path, dtype):
    """The hardtanh rule's input gradient on every path with NaN and +-inf
    inputs and filter values: clamp(+-inf) = +-1, NaN (and inf - inf)
    stays NaN, as the reference (the AVX-512 tiles clamp with vrangeps)."""
    from .cases import Case
    kw = dict(dict(dilation=(1, 1)), **PATH_CASES[path])
    with _path_case_settings(kw):
        case = Case(seed=11, n=2, bias=False, eta=None, input_grad='hardtanh',
                    **kw)
        x, w, _ = case.tensors(dtype)
        x[0, 0, 0, 0] = x[0, -1, 1, 2] = float('nan')
        x[1, -1, -1, 0] = float('inf')
        x[1, 0, 0, -1] = float('-inf')
        w[-1, 0, 0, 0] = float('inf')
        w[0, -1, -1, -1] = float('-inf')
        conf = case.conf()
        hout, wout = ref.output_size((case.h, case.w), case.kernel,
                                     case.stride, case.padding, case.dilation)
        g = torch.randn(case.n, case.cout, hout, wout,
                        generator=torch.Generator().manual_seed(3),
                        dtype=torch.float64)
        got = torch.ops.adder_det.adder2d_backward_input(
            g.to(dtype), x, w, *conf, False)
        expect = ref.adder2d_backward_input(g, x.double(), w.double(), *conf,
                                            False)
        assert torch.equal(torch.isnan(got), torch.isnan(expect))
        assert torch.isnan(expect).any() and torch.isfinite(expect).any()
        fin = torch.isfinite(expect)
        assert torch.isfinite(got[fin]).all()
        assert rel_err(got[fin], expect[fin]) < TOL[dtype]


@contextlib.contextmanager
def _path_case_settings(kw):
    """Pops a PATH_CASES case's settings from kw and applies them for the
    block: its threads (the task split depends on them) and its by-rows
    mode."""
    ext = _backend.load_extension()
    threads = kw.pop('threads', None)
    rows = kw.pop('rows', 'auto')
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    previous = ext.set_rows_mode(rows)
    try:
        yield
    finally:
        ext.set_rows_mode(previous)
        torch.set_num_threads(before)


def _path_case_inputs(path, dtype, seed):
    """A PATH_CASES case's layer arguments (with its settings: see
    _path_case_settings), input and filters."""
    kw = dict(dict(dilation=(1, 1)), **PATH_CASES[path])
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, kw['c'], kw['h'], kw['w'], generator=g, dtype=dtype)
    w = torch.randn(kw['cout'], kw['c'] // kw['groups'], *kw['kernel'],
                    generator=g, dtype=dtype)
    return kw, x, w


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('path', sorted(PATH_CASES))
def test_min_form_by_adds_gives_the_same_values(cpu_isa, path, dtype):
    """The forward's min form accumulates 2 min(w, x) by FMAs or min(w, x)
    by adds, doubled at the end (set_min_add_mode; auto: adds on AMD Zen 1):
    doubling is exact, so both give the same values on every path."""
    ext = _backend.load_extension()
    kw, x, w = _path_case_inputs(path, dtype, seed=9)
    out = {}
    try:
        with _path_case_settings(kw):
            for mode in ('always', 'never'):
                ext.set_min_add_mode(mode)
                assert ext.min_adds() == (mode == 'always')
                out[mode] = _forward(x, w, kw)
    finally:
        assert ext.set_min_add_mode('auto') == 'never'
    assert torch.equal(out['always'], out['never'])
    err = rel_err(out['always'], _reference_forward(x, w, kw))
    assert err < TOL[dtype], f'{path}: rel. error {err:.2e}'


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('path', sorted(PATH_CASES))
def test_half_width_tile_gives_the_same_values(cpu_isa, path, dtype):
    """The AVX-512 forward tiles in 256-bit vectors (set_half_width_tile_mode;
    auto: on AMD Zen 4) sum the same terms in the same order as in 512-bit
    ones, so both give the same values on every path, in both min forms;
    other ISAs ignore the mode."""
    ext = _backend.load_extension()
    kw, x, w = _path_case_inputs(path, dtype, seed=11)
    out = {}
    try:
        with _path_case_settings(kw):
            for adds in ('never', 'always'):
                ext.set_min_add_mode(adds)
                for mode in ('always', 'never'):
                    ext.set_half_width_tile_mode(mode)
                    assert ext.half_width_tile() == (
                        mode == 'always' and cpu_isa == 'avx512')
                    out[adds, mode] = _forward(x, w, kw)
    finally:
        assert ext.set_half_width_tile_mode('auto') == 'never'
        ext.set_min_add_mode('auto')
    for adds in ('never', 'always'):
        assert torch.equal(out[adds, 'always'], out[adds, 'never'])
    err = rel_err(out['never', 'always'], _reference_forward(x, w, kw))
    assert err < TOL[dtype], f'{path}: rel. error {err:.2e}'


def _amd_family():
    """The first processor's (vendor_id, cpu family, model) from
    /proc/cpuinfo."""
    info = {}
    with open('/proc/cpuinfo') as f:
        for line in f:
            if not line.strip():
                break  # the first processor's block
            key, _, value = line.partition(':')
            info[key.strip()] = value.strip()
    return (info.get('vendor_id'), int(info.get('cpu family', 0)),
            int(info.get('model', 0)))


def _amd_zen1():
    """AMD family 0x17 below model 0x30 (Zen 1, Zen+)."""
    vendor, family, model = _amd_family()
    return vendor == 'AuthenticAMD' and family == 0x17 and model < 0x30


def test_half_width_tile_mode_choice(compiled):
    """auto by default: 256-bit tiles where the AVX-512 kernels run on an
    AMD family 0x19 core (Zen 4); an unknown name is refused by name."""
    ext = _backend.load_extension()
    assert ext.half_width_tile_mode() == 'auto'
    vendor, family, _ = _amd_family()
    zen4 = vendor == 'AuthenticAMD' and family == 0x19
    assert ext.half_width_tile() == (zen4 and ext.cpu_isa() == 'avx512')
    with pytest.raises(RuntimeError, match="'wide' is not one of"):
        ext.set_half_width_tile_mode('wide')
    assert ext.half_width_tile_mode() == 'auto'


def test_rows_choice(cpu_isa):
    """auto by default: the forward of layers with taps > 1 and fewer than 64
    positions (samples x outputs) runs by rows, the input gradient of any
    layer with fewer than 64 (AVX2: 32); always / never: every layer or
    none; an unknown name is refused by name."""
    ext = _backend.load_extension()
    assert ext.rows_mode() == 'auto'

    def runs(n, k, hw, stride=1):
        x = torch.randn(n, 8, hw, hw)
        w = torch.randn(4, 8, k, k)
        conf = ([stride] * 2, [k // 2] * 2, [1, 1], 1)
        return (ext.rows_forward_runs(x, w, *conf),
                ext.rows_input_grad_runs(x, w, *conf))
    avx2 = cpu_isa == 'avx2'
    assert runs(2, 3, 5) == (True, not avx2)  # 2 x 5 x 5 = 50 positions
    assert runs(7, 3, 3) == (True, not avx2)  # 63
    assert runs(3, 3, 3) == (True, True)  # 27
    assert runs(4, 3, 4) == (False, False)  # 64
    assert runs(2, 3, 9, stride=2) == (True, not avx2)  # 50 of 162 inputs
    assert runs(2, 3, 11, stride=2) == (False, False)  # 72 outputs
    assert runs(2, 1, 2) == (False, True)  # pointwise
    try:
        ext.set_rows_mode('always')
        assert runs(2, 1, 2) == runs(4, 3, 40) == (True, True)
        ext.set_rows_mode('never')
        assert runs(2, 3, 2) == (False, False)
    finally:
        ext.set_rows_mode('auto')
    with pytest.raises(RuntimeError, match="'often' is not one of"):
        ext.set_rows_mode('often')
    assert ext.rows_mode() == 'auto'


def test_min_add_mode_choice(cpu_isa):
    """auto by default: adds on AMD Zen 1 cores and in the baseline build
    (no FMA in x86-64's baseline); an unknown name is refused by name."""
    ext = _backend.load_extension()
    assert ext.min_add_mode() == 'auto'
    assert ext.min_adds() == (_amd_zen1() or cpu_isa == 'generic')
    with pytest.raises(RuntimeError, match="'often' is not one of"):
        ext.set_min_add_mode('often')
    assert ext.min_add_mode() == 'auto'


def test_sign_fast_cpu_choice(cpu_isa):
    """auto: the fast tile from 64 terms an input value (filters x taps /
    stride^2; the baseline build 256, AVX2 on Intel any) and, with AVX-512,
    from 64 input positions a channel and 256 a stride phase (the baseline
    build 512 positions); always / never: every layer or none."""
    ext = _backend.load_extension()
    intel = _amd_family()[0] == 'GenuineIntel'

    def runs(cout, hw, stride=1):
        x = torch.randn(2, 8, hw, hw)
        w = torch.randn(cout, 8, 3, 3)
        return ext.sign_fast_cpu_runs(x, w, [stride] * 2, [1, 1], [1, 1], 1)
    avx2 = cpu_isa == 'avx2'
    assert runs(8, 16) == (cpu_isa != 'generic')  # 72 terms, 512 positions
    assert runs(4, 16) == (avx2 and intel)  # 36 terms
    assert runs(32, 16) is True  # 288 terms
    assert runs(32, 5) == avx2  # 50 positions: AVX-512 from 64, generic 512
    assert runs(32, 16, stride=2) == avx2  # 128 positions a phase
    assert runs(32, 32, stride=2) == (cpu_isa != 'generic')  # 512 a phase
    try:
        ext.set_sign_fast_mode('always')
        assert runs(1, 2) is True
        ext.set_sign_fast_mode('never')
        assert runs(256, 64) is False
    finally:
        ext.set_sign_fast_mode('auto')


@pytest.fixture(params=['auto', 'always'])
def sign_fast_mode(request, compiled):
    """The sign rule's fast tile by the thresholds, or on every layer (which
    reaches it where the thresholds never send it: few filters or positions,
    with AVX-512 strided layers with few positions a stride phase)."""
    yield from _extension_setting('set_sign_fast_mode', request.param)


# (filters, stride): the in-place and the packed path, each with enough
# terms (filters x taps / stride^2 >= 256) and positions (>= 512 input
# positions a channel) for the fast tile in auto mode with every ISA;
# 8 filters (72 terms, in place) take it in auto mode with the vector ISAs
# (from 64 terms), in always mode with the baseline too.
@pytest.mark.parametrize('cout,stride', [(32, 1), (128, 2), (8, 1)])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_sign_rule_ties_give_zero(cpu_isa, sign_fast_mode, dtype, cout,
                                  stride):
    """sign(w - x) is 0 where a filter value equals an input value. The CPU
    kernels take a faster tile, exact only without such ties, for the
    (sample, channel) pairs that have none: here sample 0 of channel 0 is
    full of ties (integers against integer filters), channel 3 has a single
    one, channel 5 meets -0.0 against +0.0, and the other pairs none."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 16, 17, generator=g, dtype=torch.float64)
    w = torch.randn(cout, 8, 3, 3, generator=g, dtype=torch.float64)
    x[0, 0] = torch.randint(-2, 3, (16, 17), generator=g).double()
    w[:, 0] = torch.randint(-2, 3, (cout, 3, 3), generator=g).double()
    x[1, 3, 4, 5] = w[5, 3, 1, 1]
    x[:, 5, 2, 2] = -0.0
    w[2, 5, 0, 0] = 0.0
    x, w = x.to(dtype), w.to(dtype)
    y = adder2d(x, w, stride=stride, padding=1)
    go = torch.randn(y.shape, generator=g, dtype=torch.float64).to(dtype)
    got = torch.ops.adder_det.adder2d_backward_input(
        go, x, w, [stride] * 2, [1, 1], [1, 1], 1, True)
    expect = ref.adder2d_backward_input(go.double(), x.double(), w.double(),
                                        (stride,) * 2, (1, 1), (1, 1), 1, True)
    for n, c in ((0, 0), (1, 3), (0, 5), (1, 5), (0, 1), (1, 0)):
        err = rel_err(got[n, c], expect[n, c])
        assert err < TOL[dtype], f'sample {n} channel {c}: rel. error {err:.1e}'


# (kernel, stride, padding, dilation): in place and packed, strided (by
# stride phase), dilated, 1x1 with and without stride.
@pytest.mark.parametrize('k,stride,pad,dil', [(3, 1, 1, 1), (3, 2, 1, 1),
                                              (3, 1, 2, 2), (1, 1, 0, 1),
                                              (1, 2, 0, 1)])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_sign_rule_few_ties_fast_tile_plus_terms(cpu_isa, sign_fast_mode,
                                                 dtype, k, stride, pad, dil):
    """A (sample, channel) pair with a few ties runs the fast tile, which
    counts a tie as sign -1, and then adds the output gradient of each tie
    (sign 0 = -1 + 1; csrc/cpu add_tie_terms). Planted here: sample 1 of
    channel 3 holds one filter value (also at a second filter entry) at
    three positions, corners included (some of whose taps fall outside the
    output); sample 0 of channel 4 two values, one of them -0.0 against a
    +0.0 filter entry; sample 0 of channel 0 is integers against integer
    filters (too many ties: the exact tile)."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 8, 16, 17, generator=g, dtype=torch.float64)
    w = torch.randn(40, 8, k, k, generator=g, dtype=torch.float64)
    x[0, 0] = torch.randint(-2, 3, (16, 17), generator=g).double()
    w[:, 0] = torch.randint(-2, 3, (40, k, k), generator=g).double()
    v = w[5, 3, k // 2, k // 2].item()
    w[7, 3, 0, k - 1] = v
    for h, ww in ((0, 0), (7, 8), (15, 16)):
        x[1, 3, h, ww] = v
    x[0, 4, 3, 3] = w[11, 4, 0, 0]
    x[0, 4, 9, 2] = -0.0
    w[2, 4, k - 1, 0] = 0.0
    x, w = x.to(dtype), w.to(dtype)
    conf = ([stride] * 2, [pad] * 2, [dil] * 2, 1)
    y = torch.ops.adder_det.adder2d(x, w, *conf)
    go = torch.randn(y.shape, generator=g, dtype=torch.float64).to(dtype)
    got = torch.ops.adder_det.adder2d_backward_input(go, x, w, *conf, True)
    expect = ref.adder2d_backward_input(go.double(), x.double(), w.double(),
                                        (stride,) * 2, (pad,) * 2, (dil,) * 2,
                                        1, True)
    for n, c in ((1, 3), (0, 4), (0, 0), (0, 3), (1, 4)):
        err = rel_err(got[n, c], expect[n, c])
        assert err < TOL[dtype], f'sample {n} channel {c}: rel. error {err:.1e}'


@pytest.mark.parametrize('input_grad', ['sign', 'hardtanh'])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_rows_input_gradient_ties_and_clamps(cpu_isa, dtype, input_grad):
    """The input gradient by rows on integer inputs and filters: w - x is
    exactly 0 (sign 0) or exactly +-1 (hardtanh's corners) at many terms,
    in the vector and in the scalar part of each channel block (5 channels
    of 9 values on 2 x 3 x 3 positions: blocks of 1-2 channels)."""
    ext = _backend.load_extension()
    g = torch.Generator().manual_seed(5)
    x = torch.randint(-2, 3, (2, 5, 3, 3), generator=g).to(dtype)
    w = torch.randint(-2, 3, (7, 5, 3, 3), generator=g).to(dtype)
    go = torch.randn(2, 7, 3, 3, generator=g, dtype=dtype)
    conf = ([1, 1], [1, 1], [1, 1], 1)
    assert ext.rows_input_grad_runs(x, w, *conf)
    got = torch.ops.adder_det.adder2d_backward_input(
        go, x, w, *conf, input_grad == 'sign')
    expect = ref.adder2d_backward_input(go.double(), x.double(), w.double(),
                                        (1, 1), (1, 1), (1, 1), 1,
                                        input_grad == 'sign')
    assert rel_err(got, expect) < TOL[dtype]


# Flagged pairs: 4 of 128 (fixed up by the exact tile after the tile by
# channels) or 43 of 128 (more than 1 in 16: the in-place or packed tiles).
@pytest.mark.parametrize('integer_channels', [1, 40])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('kernel,stride', [(3, 1), (1, 1), (3, 2)])
def test_sign_rule_ties_by_channels(cpu_isa, dtype, integer_channels,
                                    kernel, stride):
    """The input gradient by input channels (AVX-512; 64 channels, 2 x 6 x
    6 positions, 3x3 or 1x1; 3x3/2 by stride phase on 14 x 14 with 128
    filters) gives sign 0 to ties like the other paths: sample 0 of the
    first channels is integers against integer filters, channel 40 of
    sample 1 has a single tie, channel 50 meets -0.0 against +0.0 (with
    stride 2 at inputs the centre tap reaches)."""
    g = torch.Generator().manual_seed(6)
    k, p = kernel, kernel // 2
    hw, cout = (14, 128) if stride == 2 else (6, 72)
    x = torch.randn(2, 64, hw, hw, generator=g, dtype=torch.float64)
    w = torch.randn(cout, 64, k, k, generator=g, dtype=torch.float64)
    m = integer_channels
    x[0, :m] = torch.randint(-2, 3, (m, hw, hw), generator=g).double()
    w[:, :m] = torch.randint(-2, 3, (cout, m, k, k), generator=g).double()
    x[1, 40, 4, 4 if stride == 2 else 5] = w[5, 40, p, p]
    x[:, 50, 2, 2] = -0.0
    w[(2, 50) + ((1, 1) if stride == 2 else (0, 0))] = 0.0
    x, w = x.to(dtype), w.to(dtype)
    hout = (hw + 2 * p - k) // stride + 1
    go = torch.randn(2, cout, hout, hout, generator=g,
                     dtype=torch.float64).to(dtype)
    got = torch.ops.adder_det.adder2d_backward_input(
        go, x, w, [stride] * 2, [p, p], [1, 1], 1, True)
    expect = ref.adder2d_backward_input(go.double(), x.double(), w.double(),
                                        (stride,) * 2, (p, p), (1, 1), 1,
                                        True)
    assert rel_err(got, expect) < TOL[dtype]
    for n, c in ((0, 0), (1, 40), (0, 50), (1, 50), (0, 41), (1, 0)):
        err = rel_err(got[n, c], expect[n, c])
        assert err < TOL[dtype], f'sample {n} channel {c}: rel. error {err:.1e}'


# (map, channels, filters): few input values a channel against many filter
# values (the tie check maps the inputs) and the other way round (it maps
# the filters); with 64 channels the input gradient by channels (AVX-512),
# which has its own check.
@pytest.mark.parametrize('hw,c,cout', [(4, 8, 64), (16, 8, 8), (6, 64, 40),
                                       (12, 64, 4)])
def test_sign_rule_fast_tile_sees_nan(cpu_isa, hw, c, cout):
    """A NaN input or filter value has no sign: the fast tile (which
    assumes w > x or w < x) must leave the (sample, channel) pairs it
    touches to the exact tile, whichever side the tie check maps, so the
    fast mode gives the exact mode's result there (where it did not, the
    fast tile's 2 sum[w > x] g - sum g counts NaN as below every filter)."""
    ext = _backend.load_extension()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, c, hw, hw, generator=g)
    w = torch.randn(cout, c, 3, 3, generator=g)
    x[1, 2, hw // 2, 1] = float('nan')
    w[cout // 2, 5, 2, 0] = float('nan')
    go = torch.randn(2, cout, hw, hw, generator=g)
    out = {}
    try:
        for mode in ('always', 'never'):
            ext.set_sign_fast_mode(mode)
            out[mode] = torch.ops.adder_det.adder2d_backward_input(
                go, x, w, [1, 1], [1, 1], [1, 1], 1, True)
    finally:
        ext.set_sign_fast_mode('auto')
    for n, ch in ((1, 2), (0, 5), (1, 5), (0, 2)):
        err = rel_err(out['always'][n, ch], out['never'][n, ch])
        assert err < TOL[torch.float32], f'sample {n} channel {ch}: {err:.1e}'


def test_cpu_isa_choice(compiled):
    """The kernels run the best instruction set the CPU has unless capped;
    a name the CPU cannot run is refused by name, at once or from
    ADDER_DET_CPU_ISA at the first call."""
    ext = _backend.load_extension()
    isas = ext.cpu_isas()
    assert isas[-1] == 'generic' and set(isas) <= {'avx512', 'avx2',
                                                   'generic'}
    assert ext.cpu_isa() == isas[0]
    previous = ext.set_cpu_isa('generic')
    try:
        assert previous == isas[0] and ext.cpu_isa() == 'generic'
        with pytest.raises(RuntimeError, match="'sse9' is not one of"):
            ext.set_cpu_isa('sse9')
        if 'avx512' not in isas:
            with pytest.raises(RuntimeError, match='cannot run'):
                ext.set_cpu_isa('avx512')
        assert ext.cpu_isa() == 'generic'
    finally:
        ext.set_cpu_isa(previous)
    code = ('import torch; from adder_det import _C; '
            'print(_C.cpu_isa()); '
            'torch.ops.adder_det.adder2d(torch.ones(1, 1, 2, 2), '
            'torch.ones(1, 1, 1, 1), [1, 1], [0, 0], [1, 1], 1)')
    for value, expect in (('generic', 'generic'), ('', isas[0])):
        out = subprocess.run([sys.executable, '-c', code], text=True,
                             capture_output=True, timeout=120,
                             env=dict(os.environ, ADDER_DET_CPU_ISA=value))
        assert out.returncode == 0 and out.stdout.split() == [expect], (
            out.stdout, out.stderr[-2000:])
    out = subprocess.run([sys.executable, '-c', code], text=True,
                         capture_output=True, timeout=120,
                         env=dict(os.environ, ADDER_DET_CPU_ISA='avx3'))
    assert out.returncode != 0 and 'ADDER_DET_CPU_ISA=avx3' in out.stderr


def test_extension_imports_before_torch(compiled):
    """`from adder_det import _C` as a script's first line (as the docs'
    `adder_det._C.cpu_isa()` invites) loads: the extension links against
    torch's libraries, which only an import of torch puts in the process."""
    out = subprocess.run(
        [sys.executable, '-c', 'from adder_det import _C; print(_C.cpu_isa())'],
        text=True, capture_output=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == [
        _backend.load_extension().cpu_isa()], out.stderr[-2000:]


def test_sign_fast_mode_choice(compiled):
    """The fast tile's mode: auto by default; always and never are honoured
    (both exact: here always against never on inputs without ties); an
    unknown name is refused by name."""
    ext = _backend.load_extension()
    assert ext.sign_fast_mode() == 'auto'
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 8, 9, 9, generator=g)
    w = torch.randn(4, 8, 3, 3, generator=g)
    go = torch.randn(2, 4, 9, 9, generator=g)
    conf = ([1, 1], [1, 1], [1, 1], 1, True)
    out = {}
    try:
        for mode in ('always', 'never'):
            ext.set_sign_fast_mode(mode)
            assert ext.sign_fast_mode() == mode
            out[mode] = torch.ops.adder_det.adder2d_backward_input(
                go, x, w, *conf)
        with pytest.raises(RuntimeError, match="'sometimes' is not one of"):
            ext.set_sign_fast_mode('sometimes')
        assert ext.sign_fast_mode() == 'never'
    finally:
        assert ext.set_sign_fast_mode('auto') == 'never'
    expect = ref.adder2d_backward_input(go.double(), x.double(), w.double(),
                                        (1, 1), (1, 1), (1, 1), 1, True)
    for mode, got in out.items():
        assert rel_err(got, expect) < TOL[torch.float32], mode


@pytest.fixture(params=['auto', 'always'])
def sparse_forward_mode(request, compiled):
    """The forward that skips a non-negative input's zeros by its
    thresholds, or wherever the input allows (any ISA, dtype and size)."""
    yield from _extension_setting('set_sparse_forward_mode', request.param)


def _relu_input(shape, seed, dtype, zeros=0.5):
    """A ReLU output: non-negative, about `zeros` of it 0; plus an all-zero
    channel of sample 0 and an all-zero 3x3 corner of every channel of
    sample 1 (patches with no nonzero value)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).abs()
    x = x * (torch.rand(shape, generator=g, dtype=torch.float64) >= zeros)
    x[0, 1] = 0
    x[1, :, :3, :3] = 0
    return x.to(dtype)


# The sparse forward (forward_sparse) where its corners are: filter tiles of
# 64 (AVX2 32, float64 half) with a tail, K blocks of 64 with a tail,
# positions listed 16 input values at a time (rows of the planes' pitch)
# or one at a time where fewer than 8 share 16 values, chunks of <= 128
# positions, filter tiles split across tasks where chunks are few, the
# input read in place (pointwise) or through the padded stride planes; the
# outputs stored 16 positions x 16 filters at a time where the positions
# are consecutive outputs of one sample.
SPARSE_CASES = {
    # Pitch 15 (13 + 2 padding): runs of 16 values cross output rows; 70
    # filters: a tile and 6; K = 180: blocks of 64, 64 and 52.
    'padded 3x3, filter and K tails': dict(
        c=20, cout=70, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
        dilation=(1, 1), groups=1, h=9, w=13),
    # Read in place: each position's patch is a column of the input, 7 x 19
    # positions a sample back to back; two groups of 24 channels.
    'pointwise, groups': dict(
        c=48, cout=130, kernel=(1, 1), stride=(1, 1), padding=(0, 0),
        dilation=(1, 1), groups=2, h=7, w=19),
    'pointwise, 7 wide (blocks across rows and samples)': dict(
        c=70, cout=64, kernel=(1, 1), stride=(1, 1), padding=(0, 0),
        dilation=(1, 1), groups=1, h=7, w=7),
    # Its input's values at the outputs' places copied into maps of 7 x 6.
    'strided 1x1 (subsampled)': dict(
        c=16, cout=64, kernel=(1, 1), stride=(2, 2), padding=(0, 0),
        dilation=(1, 1), groups=1, h=13, w=12),
    'strided, dilated': dict(
        c=16, cout=64, kernel=(3, 3), stride=(2, 1), padding=(2, 1),
        dilation=(2, 1), groups=1, h=12, w=11),
    # 2 x 4 x 4 positions: one chunk, the 4 filter tiles in runs per task.
    'few positions, filter tiles split': dict(
        c=64, cout=256, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
        dilation=(1, 1), groups=1, h=4, w=4),
    # 2 x 20 x 20 positions: chunks of 115 (7 of them).
    'chunks of positions': dict(
        c=8, cout=64, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
        dilation=(1, 1), groups=1, h=20, w=20),
    # 520 x 4608 filter values (> 8 MB of float): each task packs the K
    # block of a tile just before using it and sums |w| block by block;
    # 520 filters: a partial last tile.
    'filters past 8 MB (packed per use)': dict(
        c=512, cout=520, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
        dilation=(1, 1), groups=1, h=3, w=3),
}


def _forward(x, w, kw):
    return torch.ops.adder_det.adder2d(
        x, w, list(kw['stride']), list(kw['padding']), list(kw['dilation']),
        kw['groups'])


def _reference_forward(x, w, kw):
    return ref.adder2d_forward(x.double(), w.double(), kw['stride'],
                               kw['padding'], kw['dilation'], kw['groups'])


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('case', sorted(SPARSE_CASES))
def test_sparse_forward_matches_reference(cpu_isa, sparse_forward_mode,
                                          case, dtype):
    kw = SPARSE_CASES[case]
    x = _relu_input((2, kw['c'], kw['h'], kw['w']), 11, dtype)
    w = torch.randn(kw['cout'], kw['c'] // kw['groups'], *kw['kernel'],
                    generator=torch.Generator().manual_seed(12),
                    dtype=dtype)
    err = rel_err(_forward(x, w, kw), _reference_forward(x, w, kw))
    assert err < TOL[dtype], f'{case}: rel. error {err:.2e}'


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('case', sorted(SPARSE_CASES))
def test_sparse_forward_accumulates_alike_by_adds_and_fmas(cpu_isa, case,
                                                         dtype):
    """The sparse forward adds its min(x, w+) terms by FMAs of an exact
    `* 1` except where the min form adds (set_min_add_mode): the same
    values either way."""
    ext = _backend.load_extension()
    kw = SPARSE_CASES[case]
    x = _relu_input((2, kw['c'], kw['h'], kw['w']), 13, dtype)
    w = torch.randn(kw['cout'], kw['c'] // kw['groups'], *kw['kernel'],
                    generator=torch.Generator().manual_seed(14),
                    dtype=dtype)
    out = {}
    previous = ext.set_sparse_forward_mode('always')
    try:
        for mode in ('always', 'never'):
            ext.set_min_add_mode(mode)
            out[mode] = _forward(x, w, kw)
    finally:
        ext.set_min_add_mode('auto')
        ext.set_sparse_forward_mode(previous)
    assert torch.equal(out['always'], out['never'])
    err = rel_err(out['never'], _reference_forward(x, w, kw))
    assert err < TOL[dtype], f'{case}: rel. error {err:.2e}'


def test_sparse_forward_choice(cpu_isa):
    """auto: float32 layers with >= 64 filters a group with AVX-512, >= 32
    and >= 32 values a patch with AVX2 (pointwise layers where the dense
    form runs by FMAs: >= 128 filters and >= 128 outputs), >= 64 outputs,
    and >= 40% zeros in
    a sample of the input (>= 50% where the dense min form adds: AMD Zen
    1; >= 30% where the AVX-512 dense tiles compute in 256-bit vectors: AMD
    Zen 4; the baseline ISA never);
    always: any non-negative input; never: none. Unknown modes are refused
    by name."""
    ext = _backend.load_extension()
    assert ext.sparse_forward_mode() == 'auto'
    conf = ([1, 1], [1, 1], [1, 1], 1)
    relu = _relu_input((2, 64, 14, 14), 3, torch.float32, zeros=0.6)
    w = torch.randn(128, 64, 3, 3)
    avx512, avx2 = ext.cpu_isa() == 'avx512', ext.cpu_isa() == 'avx2'
    vector = avx512 or avx2
    assert ext.sparse_forward_tried(relu, w, *conf) == vector
    assert not ext.sparse_forward_tried(relu.double(), w.double(), *conf)
    assert not ext.sparse_forward_tried(relu - 0.1, w, *conf)  # negatives
    few_zeros = _relu_input((2, 64, 14, 14), 3, torch.float32, zeros=0.2)
    assert not ext.sparse_forward_tried(few_zeros, w, *conf)
    # 45% zeros (plus the all-zero channel and corners: ~47% sampled).
    some_zeros = _relu_input((2, 64, 14, 14), 3, torch.float32, zeros=0.45)
    try:
        for mode, tried in [('never', vector), ('always', False)]:
            ext.set_min_add_mode(mode)
            assert ext.sparse_forward_tried(some_zeros, w, *conf) == tried
            assert ext.sparse_forward_tried(relu, w, *conf) == vector
    finally:
        ext.set_min_add_mode('auto')
    # 33% zeros (~35% sampled): above the threshold where the AVX-512
    # tiles compute in 256-bit vectors (AMD Zen 4: 30%), below the 40%.
    fewer_zeros = _relu_input((2, 64, 14, 14), 3, torch.float32, zeros=0.33)
    try:
        ext.set_min_add_mode('never')
        for mode, tried in [('never', False), ('always', avx512)]:
            ext.set_half_width_tile_mode(mode)
            assert ext.sparse_forward_tried(fewer_zeros, w, *conf) == tried
            assert ext.sparse_forward_tried(relu, w, *conf) == vector
    finally:
        ext.set_half_width_tile_mode('auto')
        ext.set_min_add_mode('auto')
    pointwise = ([1, 1], [0, 0], [1, 1], 1)
    small = torch.randn(32, 64, 1, 1)  # 32 filters: one AVX2 tile

    def pointwise_tried(x, cout):
        return ext.sparse_forward_tried(
            x.contiguous(), torch.randn(cout, x.shape[1], 1, 1), *pointwise)
    try:
        # AVX2 where the dense min form adds (Zen 1): from one tile of 32
        # filters and 32 values a patch.
        ext.set_min_add_mode('always')
        assert ext.sparse_forward_tried(relu, small, *pointwise) == avx2
        assert not pointwise_tried(relu, 16)
        assert pointwise_tried(relu, 64) == vector
        assert pointwise_tried(relu[:, :32], 32) == avx2
        assert pointwise_tried(relu[:, :16], 64) == avx512
        # By FMAs (Zen 3, Intel), AVX2 takes pointwise layers from 128
        # filters and 128 positions.
        ext.set_min_add_mode('never')
        assert pointwise_tried(relu, 64) == avx512
        assert pointwise_tried(relu, 128) == vector  # 392 positions
        assert pointwise_tried(relu[:, :, :8, :7], 128) == avx512  # 112
        assert pointwise_tried(relu[:, :, :8, :8], 128) == vector  # 128
    finally:
        ext.set_min_add_mode('auto')
    assert ext.sparse_forward_tried(relu[:, :16].contiguous(),
                                    torch.randn(64, 16, 3, 3), *conf) == vector
    big = torch.randn(512, 512, 3, 3)  # 9.4 MB of filters: packed per use
    assert ext.sparse_forward_tried(_relu_input((2, 512, 7, 7), 3,
                                                torch.float32), big,
                                    *conf) == vector
    few_outputs = relu[:, :, :4, :4].contiguous()  # 2 x 4 x 4 outputs
    assert not ext.sparse_forward_tried(few_outputs, w, *conf)
    # Zeros but in each map's first 5 rows (64% zeros): the sample must not
    # look only where maps start.
    top_rows = torch.zeros(2, 64, 14, 14)
    top_rows[:, :, :5] = 1
    assert ext.sparse_forward_tried(top_rows, w, *conf) == vector
    try:
        assert ext.set_sparse_forward_mode('always') == 'auto'
        assert ext.sparse_forward_tried(few_zeros.double(), small.double(),
                                        [1, 1], [0, 0], [1, 1], 1)
        ext.set_sparse_forward_mode('never')
        assert not ext.sparse_forward_tried(relu, w, *conf)
        with pytest.raises(RuntimeError, match="'sometimes' is not one of"):
            ext.set_sparse_forward_mode('sometimes')
        assert ext.sparse_forward_mode() == 'never'
    finally:
        ext.set_sparse_forward_mode('auto')


# (k, h, w, where): 1x1 on 7 x 7 maps (positions listed 16 at a time, but
# each sample's last alone), the last input value, which only that position
# reads; 1x1 and 3x3 on rows of 32 (16 positions at a time), a value inside
# (channel 30: patch row 30 for 1x1, the second half of a block of 16
# rows; 270-278 for 3x3, both halves).
@pytest.mark.parametrize('k,h,w,where', [(1, 7, 7, 'last'),
                                         (1, 6, 32, 'inside'),
                                         (3, 6, 32, 'inside')])
@pytest.mark.parametrize('bad', ['negative', 'nan', 'inf', 'inf filter'])
def test_sparse_forward_falls_back(cpu_isa, sparse_forward_mode, bad, k, h,
                                   w, where):
    """The identity needs x >= 0 and finite sums: a negative, NaN or inf
    input value (where auto mode's sample may not look), or an inf filter
    value, sends the call to a dense path, which gives the reference's
    result (NaN / inf where it has them)."""
    kw = dict(stride=(1, 1), padding=(k // 2, k // 2), dilation=(1, 1),
              groups=1)
    x = _relu_input((2, 64, h, w), 5, torch.float32)
    wt = torch.randn(128, 64, k, k,
                     generator=torch.Generator().manual_seed(6))
    value = {'negative': -0.5, 'nan': float('nan'), 'inf': float('inf')}
    if bad == 'inf filter':
        wt[7, 3, k // 2, k // 2] = float('inf')
    elif where == 'last':
        x[1, 63, h - 1, w - 1] = value[bad]
    else:
        x[1, 30, h // 2, w // 2] = value[bad]
    got = _forward(x, wt, kw)
    expect = _reference_forward(x, wt, kw)
    assert torch.equal(torch.isnan(got), torch.isnan(expect))
    assert torch.equal(torch.isinf(got), torch.isinf(expect))
    finite = torch.isfinite(expect)
    assert finite.any()
    assert rel_err(got[finite], expect[finite]) < TOL[torch.float32]


@pytest.mark.parametrize('bad', ['inf', 'nan'])
def test_sparse_forward_falls_back_filters_packed_per_use(
        cpu_isa, sparse_forward_mode, bad):
    """Filters past 8 MB are packed per use, their sums found after the
    arithmetic: a non-finite one still sends the call to a dense path."""
    kw = SPARSE_CASES['filters past 8 MB (packed per use)']
    x = _relu_input((2, kw['c'], kw['h'], kw['w']), 7, torch.float32)
    wt = torch.randn(kw['cout'], kw['c'], *kw['kernel'],
                     generator=torch.Generator().manual_seed(8))
    wt[515, 300, 1, 1] = float(bad)  # in the partial last tile
    got = _forward(x, wt, kw)
    expect = _reference_forward(x, wt, kw)
    assert torch.equal(torch.isnan(got), torch.isnan(expect))
    assert torch.equal(torch.isinf(got), torch.isinf(expect))
    finite = torch.isfinite(expect)
    assert finite.any() and not finite.all()
    assert rel_err(got[finite], expect[finite]) < TOL[torch.float32]


def test_compiled_kernels_actually_run(compiled):
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    with torch.profiler.profile() as prof:
        adder2d(x, w, padding=1).sum().backward()
    names = {e.name for e in prof.events()}
    for op in ('adder_det::adder2d', 'adder_det::adder2d_backward_input',
               'adder_det::adder2d_backward_weight'):
        assert op in names, f'{op} did not run; ran {sorted(names)[:20]}'


def test_fallback_warns_once_and_matches(monkeypatch):
    monkeypatch.setattr(_backend, 'extension_available', lambda: False)
    monkeypatch.setattr(_backend, '_warned', set())
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with torch.profiler.profile() as prof:
            y = adder2d(x, w, padding=1, eta=None)
            y.backward(torch.ones_like(y))
        adder2d(x, w, padding=1)
    fallback = [c for c in caught if 'falling back' in str(c.message)]
    assert len(fallback) == 1
    assert not any(e.name.startswith('adder_det::') for e in prof.events())
    assert ops.backend() == 'reference'
    torch.testing.assert_close(y, ref.adder2d_forward(x, w, (1, 1), (1, 1),
                                                      (1, 1), 1))
    gx = ref.adder2d_backward_input(torch.ones_like(y), x, w, (1, 1), (1, 1),
                                    (1, 1), 1, False)
    torch.testing.assert_close(x.grad, gx)


def test_extension_without_cuda_falls_back_for_cuda_tensors(monkeypatch):
    class NoCuda:
        @staticmethod
        def built_with_cuda():
            return False
    monkeypatch.setattr(_backend, 'extension_available', lambda: True)
    monkeypatch.setattr(_backend, '_extension', NoCuda)
    monkeypatch.setattr(_backend, '_warned', set())
    with pytest.warns(RuntimeWarning, match='without CUDA'):
        assert ops.backend('cuda') == 'reference'
    assert ops.backend('cpu') == 'compiled'


def test_opcheck_and_torch_compile(compiled):
    """The ops are real dispatcher ops: schema and fake kernels check out,
    and torch.compile traces the layer (forward and backward)."""
    x, w = torch.randn(2, 4, 7, 7), torch.randn(6, 4, 3, 3)
    g = torch.randn(2, 6, 7, 7)
    conf = ([1, 1], [1, 1], [1, 1], 1)
    for op, args in ((torch.ops.adder_det.adder2d.default, (x, w, *conf)),
                     (torch.ops.adder_det.adder2d_backward_input.default,
                      (g, x, w, *conf, True)),
                     (torch.ops.adder_det.adder2d_backward_weight.default,
                      (g, x, w, *conf))):
        result = torch.library.opcheck(
            op, args, test_utils=('test_schema', 'test_faketensor',
                                  'test_aot_dispatch_static'))
        assert set(result.values()) == {'SUCCESS'}, (op, result)
    m = ops.Adder2d(4, 6, 3, padding=1)
    x.requires_grad_()
    y = torch.compile(m, backend='aot_eager')(x)
    y.sum().backward()
    torch.testing.assert_close(y, m(x))
    assert m.weight.grad is not None and x.grad is not None


def test_backend_env_choice(monkeypatch):
    monkeypatch.setenv('ADDER_DET_BACKEND', 'reference')
    assert ops.backend() == 'reference'
    monkeypatch.setenv('ADDER_DET_BACKEND', 'bogus')
    with pytest.raises(ValueError, match='ADDER_DET_BACKEND'):
        ops.backend()


def test_filter_gradient_is_full_precision_difference(base_seed):
    """dF(t,c,i,j) = sum_{n,oh,ow} (X_pad(n, c, oh*s + i*d, ow*s + j*d) -
    F(t,c,i,j)) * g(n,t,oh,ow), written out with slicing, not unfold."""
    torch.manual_seed(base_seed)
    for groups, stride, pad, dil in [(1, 1, 1, 1), (2, 2, 2, 1), (1, 2, 0, 2),
                                     (3, 1, 1, 2)]:
        n, c, h, w_, cout, kh, kw = 2, 6, 9, 8, 12, 3, 2
        x = torch.randn(n, c, h, w_, dtype=torch.float64)
        w = torch.randn(cout, c // groups, kh, kw, dtype=torch.float64,
                        requires_grad=True)
        y = adder2d(x, w, stride=stride, padding=pad, dilation=dil,
                    groups=groups, eta=None)
        g = torch.randn_like(y)
        y.backward(g)
        xp = F.pad(x, (pad, pad, pad, pad))
        hout, wout = y.shape[-2:]
        expect = torch.zeros_like(w)
        cg, tg = c // groups, cout // groups
        for t in range(cout):
            grp = t // tg
            for ci in range(cg):
                for i in range(kh):
                    for j in range(kw):
                        patch = xp[:, grp * cg + ci,
                                   i * dil:i * dil + stride * (hout - 1) + 1:
                                   stride,
                                   j * dil:j * dil + stride * (wout - 1) + 1:
                                   stride]
                        expect[t, ci, i, j] = (
                            (patch - w[t, ci, i, j]) * g[:, t]).sum()
        torch.testing.assert_close(w.grad, expect, rtol=1e-10, atol=1e-10)


@pytest.fixture(params=['auto', 'always', 'never'])
def matmul_filter_grad(request, compiled):
    """Runs the test with the CPU filter gradient's matmul mode set."""
    yield from _extension_setting('set_matmul_filter_grad_mode',
                                  request.param)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64,
                                   torch.bfloat16])
@pytest.mark.parametrize('n,c,hw,cout,stride,groups', [
    (2, 40, (9, 7), 24, (1, 1), 1),
    (3, 16, (8, 11), 20, (2, 3), 1),
    (1, 33, (5, 5), 17, (2, 2), 1),
    (2, 12, (6, 9), 8, (3, 1), 4),
    (2, 6, (7, 7), 12, (2, 2), 6),  # depthwise, 2 filters a channel
])
def test_pointwise_filter_gradient(matmul_filter_grad, dtype, n, c, hw,
                                   cout, stride, groups):
    """The filter gradient of unpadded 1x1 layers (matmuls a sample where
    the mode takes them) against the reference, channels-last inputs too;
    half inputs accumulate in float32 (rel. error of the bfloat16 output
    rounding)."""
    ext = _backend.load_extension()
    x = torch.randn(n, c, *hw, dtype=torch.float64)
    w = torch.randn(cout, c // groups, 1, 1, dtype=torch.float64)
    conf = (list(stride), [0, 0], [1, 1], groups)
    ho, wo = [(s - 1) // st + 1 for s, st in zip(hw, stride)]
    g = torch.randn(n, cout, ho, wo, dtype=torch.float64)
    expect = ref.adder2d_backward_weight(g, x, w, *conf)
    assert ext.matmul_filter_grad_runs(x, w, *conf) == (
        matmul_filter_grad == 'always' or
        (matmul_filter_grad == 'auto' and groups == 1))
    tol = TOL.get(dtype, 1e-2)
    for layout in (torch.contiguous_format, torch.channels_last):
        xd = x.to(dtype).contiguous(memory_format=layout)
        got = torch.ops.adder_det.adder2d_backward_weight(
            g.to(dtype), xd, w.to(dtype), *conf)
        assert got.dtype == dtype and got.shape == w.shape
        expect_d = ref.adder2d_backward_weight(
            g.to(dtype).double(), xd.double(), w.to(dtype).double(), *conf)
        assert rel_err(got, expect_d) < tol, (layout, rel_err(got, expect_d))
        if dtype == torch.float64:
            assert rel_err(got, expect) < TOL[dtype]


def test_matmul_filter_grad_choice(compiled):
    """auto by default: the filter gradient of unpadded 1x1 layers with one
    group runs as matmuls on the CPU where a sample has 512 positions or
    more or all together 512 or fewer, others through the convolution
    weight gradient; always adds grouped 1x1 layers and any map size; never
    none; an unknown name is refused by name."""
    ext = _backend.load_extension()
    assert ext.matmul_filter_grad_mode() == 'auto'

    def runs(k, pad=0, groups=1, stride=1, n=2, hw=6):
        x = torch.randn(n, 8, hw, hw)
        w = torch.randn(4, 8 // groups, k, k)
        return ext.matmul_filter_grad_runs(x, w, [stride] * 2, [pad] * 2,
                                           [1, 1], groups)
    assert runs(1) and runs(1, stride=2)
    assert runs(1, n=2, hw=16) and runs(1, n=1, hw=23)  # 512, 529 positions
    assert runs(1, n=8, hw=23) and not runs(1, n=3, hw=14)  # 8 x 529; 588
    assert not runs(3, pad=1) and not runs(1, pad=1) and not runs(1, groups=2)
    assert not ext.matmul_filter_grad_runs(  # an empty batch: zeros at once
        torch.randn(0, 8, 6, 6), torch.randn(4, 8, 1, 1), [1, 1], [0, 0],
        [1, 1], 1)
    try:
        ext.set_matmul_filter_grad_mode('always')
        assert runs(1, groups=2) and runs(1, groups=4)
        assert runs(1, n=3, hw=14)
        assert not runs(3, pad=1) and not runs(1, pad=1)
        ext.set_matmul_filter_grad_mode('never')
        assert not runs(1)
    finally:
        ext.set_matmul_filter_grad_mode('auto')
    with pytest.raises(RuntimeError, match="'often' is not one of"):
        ext.set_matmul_filter_grad_mode('often')
    assert ext.matmul_filter_grad_mode() == 'auto'


def test_eta_scales_filter_gradient_norm_not_direction():
    torch.manual_seed(1)
    x = torch.randn(2, 5, 8, 8, dtype=torch.float64)
    w = torch.randn(7, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    grads = {}
    for eta in (None, 0.2, 1.5):
        w.grad = None
        y = adder2d(x, w, padding=1, eta=eta)
        y.backward(torch.linspace(-1, 1, y.numel(),
                                  dtype=torch.float64).view_as(y))
        grads[eta] = w.grad.clone()
    for eta in (0.2, 1.5):
        norm = grads[eta].norm().item()
        assert abs(norm - eta * w.numel() ** 0.5) < 1e-9 * norm
        cos = F.cosine_similarity(grads[eta].flatten(),
                                  grads[None].flatten(), dim=0)
        assert abs(cos.item() - 1) < 1e-12


def test_gradcheck_input_sign_rule_is_true_derivative():
    # Inputs away from ties: |x - f| >= 0.2 for every pair, and no input
    # value equals 0 (padded taps compare against 0 only through F).
    g = torch.Generator().manual_seed(3)
    x = (torch.randint(-3, 3, (2, 4, 6, 5), generator=g) + 0.3 +
         0.1 * torch.rand(2, 4, 6, 5, generator=g)).double()
    w = (torch.randint(-3, 3, (6, 2, 3, 3), generator=g) + 0.7 +
         0.1 * torch.rand(6, 2, 3, 3, generator=g)).double()
    x.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: adder2d(x, w, stride=(2, 1), padding=1, dilation=(1, 2),
                          groups=2, input_grad='sign'), (x, ))


def test_gradcheck_bias():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda b: adder2d(x, w, b, padding=1),
                                    (b, ))


def test_hardtanh_rule_clips():
    """With |F - X| > 1 everywhere, the hardtanh rule gives sign * 1 and
    the two rules agree; inside [-1, 1] they differ."""
    x = torch.full((1, 1, 3, 3), 5.0, dtype=torch.float64, requires_grad=True)
    w = torch.zeros(1, 1, 1, 1, dtype=torch.float64)
    adder2d(x, w, input_grad='hardtanh').sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, -1.))
    x2 = torch.full((1, 1, 3, 3), 0.25, dtype=torch.float64,
                    requires_grad=True)
    adder2d(x2, w, input_grad='hardtanh').sum().backward()
    assert torch.allclose(x2.grad, torch.full_like(x2, -0.25))


BAD_INPUTS = [
    ('3-D input', lambda: (torch.randn(3, 5, 5), torch.randn(2, 3, 3, 3)),
     {}, '4-D'),
    ('3-D weight', lambda: (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3)),
     {}, '4-D'),
    ('channel mismatch', lambda:
     (torch.randn(1, 4, 5, 5), torch.randn(2, 3, 3, 3)), {}, 'channels'),
    ('groups do not divide', lambda:
     (torch.randn(1, 6, 5, 5), torch.randn(3, 3, 3, 3)), {'groups': 2},
     'groups'),
    ('dtype mismatch', lambda:
     (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3).double()), {},
     'dtype'),
    ('integer dtype', lambda:
     (torch.ones(1, 3, 5, 5, dtype=torch.int32),
      torch.ones(2, 3, 3, 3, dtype=torch.int32)), {}, 'dtype'),
    ('half on CPU', lambda:
     (torch.randn(1, 3, 5, 5).half(), torch.randn(2, 3, 3, 3).half()), {},
     'not supported on cpu'),
    ('device mismatch', lambda:
     (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3, device='meta')), {},
     'device|meta'),
    ('negative padding', lambda:
     (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3)), {'padding': -1},
     'padding'),
    ('zero stride', lambda:
     (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3)), {'stride': 0},
     'stride'),
    ('negative stride', lambda:
     (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3)), {'stride': (1, -2)},
     'stride'),
    ('kernel larger than input', lambda:
     (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 7, 3)), {'padding': 0},
     'larger than the padded input'),
    ('dilated kernel too large', lambda:
     (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3)), {'dilation': 3},
     'larger than the padded input'),
    ('bad input_grad', lambda:
     (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3)),
     {'input_grad': 'tanh'}, 'input_grad'),
    ('bias shape', lambda:
     (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3)),
     {'bias': torch.randn(3)}, 'bias'),
]


@pytest.mark.parametrize('name,make,kwargs,match', BAD_INPUTS,
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_names_the_problem(name, make, kwargs, match):
    x, w = make()
    with pytest.raises((ValueError, RuntimeError), match=match):
        adder2d(x, w, **kwargs)


def test_bad_input_checked_in_compiled_op_too(compiled):
    """Direct torch.ops callers get a RuntimeError naming the problem from
    the C++ checks. Run in a child process so that a crash (rather than an
    exception) is reported as a failure instead of killing the suite."""
    code = r'''
import torch, adder_det.ops as ops
ops.extension_available()
r = lambda *s, **k: torch.randn(*s, **k)
cases = [
    ('4-D', r(3, 5, 5), r(2, 3, 3, 3), [1, 1], [0, 0], [1, 1], 1),
    ('4-D', r(1, 3, 5, 5), r(2, 3, 3), [1, 1], [0, 0], [1, 1], 1),
    ('channels', r(1, 4, 5, 5), r(2, 3, 3, 3), [1, 1], [0, 0], [1, 1], 1),
    ('groups', r(1, 6, 5, 5), r(3, 3, 3, 3), [1, 1], [0, 0], [1, 1], 2),
    ('dtype', r(1, 3, 5, 5), r(2, 3, 3, 3).double(), [1, 1], [0, 0],
     [1, 1], 1),
    ('float32 or float64', r(1, 3, 5, 5).half(), r(2, 3, 3, 3).half(),
     [1, 1], [0, 0], [1, 1], 1),
    ('padding', r(1, 3, 5, 5), r(2, 3, 3, 3), [1, 1], [-1, 0], [1, 1], 1),
    ('stride', r(1, 3, 5, 5), r(2, 3, 3, 3), [0, 1], [0, 0], [1, 1], 1),
    ('dilation', r(1, 3, 5, 5), r(2, 3, 3, 3), [1, 1], [0, 0], [0, 1], 1),
    ('larger than the padded input', r(1, 3, 5, 5), r(2, 3, 7, 3), [1, 1],
     [0, 0], [1, 1], 1),
]
for match, x, w, *args in cases:
    for op in ('adder2d', 'adder2d_backward_weight'):
        extra = [torch.zeros(1)] if op != 'adder2d' else []
        try:
            getattr(torch.ops.adder_det, op)(*extra, x, w, *args)
        except RuntimeError as e:
            ok = match in str(e) or op != 'adder2d' and 'grad_output' in str(e)
            print(('OK ' if ok else 'BAD ') + op + ': ' + str(e).splitlines()[0])
        else:
            print('BAD ' + op + ': no error for ' + match)
print('done')
'''
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])
    lines = out.stdout.splitlines()
    assert lines[-1] == 'done' and len(lines) == 21, out.stdout
    assert not [line for line in lines if line.startswith('BAD')], out.stdout


def test_empty_batch_returns_empty_result():
    x = torch.randn(0, 3, 8, 8, requires_grad=True)
    w = torch.randn(5, 3, 3, 3, requires_grad=True)
    y = adder2d(x, w, padding=1, stride=2)
    assert y.shape == (0, 5, 4, 4)
    y.sum().backward()
    assert x.grad.shape == x.shape and torch.all(w.grad == 0)
    if ops.extension_available():
        assert torch.ops.adder_det.adder2d(x.detach(), w.detach(), [2, 2],
                                           [1, 1], [1, 1], 1).shape == y.shape


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), float('-inf')])
def test_non_finite_input_propagates(cpu_isa, rows, bad):
    x = torch.randn(1, 2, 5, 5)
    x[0, 1, 2, 3] = bad
    w = torch.randn(3, 2, 3, 3)
    y = adder2d(x, w, padding=1)
    hit = ~torch.isfinite(y)
    # Exactly the outputs whose window covers the bad pixel.
    expect = torch.zeros(1, 3, 5, 5, dtype=torch.bool)
    expect[..., 1:4, 2:5] = True
    assert torch.equal(hit, expect)
    if bad != bad:
        assert torch.isnan(y[hit]).all()
    else:  # -|w - (+-inf)| = -inf, not NaN (the CPU min form must not run)
        assert (y[hit] == float('-inf')).all()


@pytest.mark.parametrize('offset', [0., 10., 1000.])
def test_float32_accuracy_with_a_shared_offset(cpu_isa, rows, offset):
    """Inputs and filters around the same large value: each output must
    stay accurate elementwise (a kernel computing -sum|x - w| through sums
    of x and w would cancel catastrophically here)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 6, 6, generator=g) + offset
    w = torch.randn(16, 64, 3, 3, generator=g) + offset
    for pad in (0, 1):
        y = adder2d(x, w, padding=pad).double()
        r = ref.adder2d_forward(x.double(), w.double(), (1, 1), (pad, pad),
                                (1, 1), 1)
        assert ((y - r).abs() / r.abs()).max() < 1e-5


def test_non_finite_filter_propagates(cpu_isa):
    x = torch.randn(1, 2, 5, 5)
    w = torch.randn(3, 2, 3, 3)
    w[1, 0, 1, 1] = float('-inf')
    y = adder2d(x, w, padding=1)
    assert (y[:, 1] == float('-inf')).all()
    assert torch.isfinite(y[:, [0, 2]]).all()


@pytest.mark.parametrize('stride', [1, 2])  # in-place and packed forward
def test_non_finite_filter_past_the_shift_sample(cpu_isa, stride):
    """The CPU forward shifts inputs and filters by a per-channel mean of
    the first 16 filters; an inf in a later filter must still switch to the
    direct form (that filter's outputs -inf, the others exact)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 9, 9, generator=g, dtype=torch.float64)
    w = torch.randn(40, 4, 3, 3, generator=g, dtype=torch.float64)
    w[30, 2, 0, 1] = float('inf')
    y = adder2d(x, w, stride=stride, padding=1)
    assert (y[:, 30] == float('-inf')).all()
    keep = [t for t in range(40) if t != 30]
    r = ref.adder2d_forward(x, w[keep], (stride,) * 2, (1, 1), (1, 1), 1)
    assert rel_err(y[:, keep], r) < TOL[torch.float64]


# The forward by filters (>= 128 filters and >= 64 outputs: taken with the
# AVX-512 and AVX2 kernels) on the cases above: non-finite values and a
# shared offset.
@pytest.mark.parametrize('bad', [float('nan'), float('inf'), float('-inf')])
def test_forward_by_filters_non_finite_input(cpu_isa, bad):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(130, 3, 3, 3, generator=g, dtype=torch.float64)
    x[1, 2, 4, 5] = bad
    y = adder2d(x, w, padding=1)
    expect = torch.zeros(2, 130, 8, 8, dtype=torch.bool)
    expect[1, :, 3:6, 4:7] = True
    assert torch.equal(~torch.isfinite(y), expect)
    if bad != bad:
        assert torch.isnan(y[expect]).all()
    else:
        assert (y[expect] == float('-inf')).all()
    r = ref.adder2d_forward(x, w, (1, 1), (1, 1), (1, 1), 1)
    assert rel_err(y[~expect], r[~expect]) < TOL[torch.float64]


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), float('-inf')])
def test_forward_by_filters_non_finite_filter(cpu_isa, bad):
    """A non-finite value in a filter past the 16 the shift samples: found
    while its tile is packed (its sum), then the direct form."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 8, 8, generator=g)
    w = torch.randn(130, 3, 3, 3, generator=g)
    w[100, 1, 0, 2] = bad
    y = adder2d(x, w, padding=1)
    if bad != bad:
        assert torch.isnan(y[:, 100]).all()
    else:
        assert (y[:, 100] == float('-inf')).all()
    keep = [t for t in range(130) if t != 100]
    r = ref.adder2d_forward(x.double(), w[keep].double(), (1, 1), (1, 1),
                            (1, 1), 1)
    assert rel_err(y[:, keep].double(), r) < TOL[torch.float32]


@pytest.mark.parametrize('offset', [0., 1000.])
def test_forward_by_filters_shared_offset(cpu_isa, offset):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 16, 8, 8, generator=g) + offset
    w = torch.randn(128, 16, 3, 3, generator=g) + offset
    y = adder2d(x, w, padding=1).double()
    r = ref.adder2d_forward(x.double(), w.double(), (1, 1), (1, 1), (1, 1), 1)
    assert ((y - r).abs() / r.abs()).max() < 1e-5


def test_non_contiguous_inputs():
    x = torch.randn(2, 8, 9, 7).transpose(2, 3)
    w = torch.randn(6, 4, 3, 3)[:, :, ::1].transpose(2, 3)
    y = adder2d(x, w, padding=1, groups=2)
    torch.testing.assert_close(
        y, ref.adder2d_forward(x.contiguous(), w.contiguous(), (1, 1), (1, 1),
                               (1, 1), 2), rtol=1e-5, atol=1e-4)


def test_ops_need_torch_only():
    """adder_det.ops imports and runs with mmcv/mmdet/mmengine unavailable."""
    code = '''
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmcv', 'mmdet', 'mmengine'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import torch, adder_det.ops as ops
x = torch.randn(1, 2, 5, 5, requires_grad=True)
m = ops.Adder2d(2, 3, 3, padding=1)
m(x).sum().backward()
assert x.grad is not None
assert not any(k.split('.')[0] in ('mmcv', 'mmdet', 'mmengine') for k in sys.modules)
print('ok', ops.backend())
'''
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('ok')
