"""tools/aarch64_loop_mix.py: its disassembly parsing on a fixed listing
(no aarch64 tools needed), and a missing build named with how to make it."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    'aarch64_loop_mix', ROOT / 'tools' / 'aarch64_loop_mix.py')
mix = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mix)

# `objdump -d -C --no-show-raw-insn` layout: an outer loop (0x10-0x40)
# around an inner one (0x14-0x30) with 2 vector FP instructions and a spill
# of a q register (the outer loop holds 3: the inner one's and its own);
# and a loop with a scalar FP add only (not vector FP).
LISTING = '''
0000000000000000 <void adder_det::(anonymous namespace)::generic::forward_tile<float, 5, 0>(long)>:
   0:\tmov\tx2, #0x0
  10:\tldr\tq0, [x1]
  14:\tfabd\tv1.4s, v0.4s, v2.4s
  18:\tfadd\tv3.4s, v3.4s, v1.4s
  1c:\tstr\tq3, [sp, #32]
  20:\tldr\tq4, [x5, #16]
  24:\tadd\tx2, x2, #0x1
  28:\tcmp\tx2, x3
  30:\tb.ne\t14 <void adder_det::(anonymous namespace)::generic::forward_tile<float, 5, 0>(long)+0x14>  // b.any
  34:\tfadd\tv5.4s, v5.4s, v6.4s
  40:\tcbnz\tx4, 10 <void adder_det::(anonymous namespace)::generic::forward_tile<float, 5, 0>(long)+0x10>
  44:\tret

0000000000000050 <sum(float const*)>:
  50:\tfadd\ts0, s0, s1
  54:\tb.ne\t50 <sum(float const*)>
'''


def test_parses_functions_and_operands():
    funcs = mix.functions(LISTING)
    name = ('void adder_det::(anonymous namespace)::generic::'
            'forward_tile<float, 5, 0>(long)')
    assert list(funcs) == [name, 'sum(float const*)']
    ins = funcs[name]
    assert ins[0] == (0, 'mov', 'x2, #0x0')
    assert ins[8] == (0x30, 'b.ne', '14')       # target, no symbol or comment
    assert ins[10] == (0x40, 'cbnz', 'x4, 10')


def test_hot_loop_is_the_innermost_one_and_counts():
    ins = mix.functions(LISTING)[next(iter(mix.functions(LISTING)))]
    body = mix.hot_loop(ins)
    assert [op for op, _ in body] == ['fabd', 'fadd', 'str', 'ldr', 'add',
                                      'cmp', 'b.ne']
    m = mix.mix(body)
    assert (m['insts'], m['vector_fp'], m['loads'], m['stores'],
            m['spills']) == (7, 2, 1, 1, 1)
    # A loop of scalar FP only: found, but no vector FP in it.
    scalar = mix.hot_loop(mix.functions(LISTING)['sum(float const*)'])
    assert mix.mix(scalar)['vector_fp'] == 0


def test_missing_build_is_named(tmp_path):
    with pytest.raises(SystemExit, match='not found .*aarch64_check.sh'):
        mix.main([str(tmp_path / 'absent.so')])
