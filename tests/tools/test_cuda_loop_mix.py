"""tools/cuda_loop_mix.py: its SASS parsing on a fixed listing (always), a
missing tool named with where to get it, and the real kernels where nvcc,
cuobjdump and nvdisasm are on PATH."""
import importlib.util
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    'cuda_loop_mix', ROOT / 'tools' / 'cuda_loop_mix.py')
mix = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mix)

# cuobjdump -sass layout: each instruction, then the high 64 bits of its
# encoding (stall count in bits 41-44 of that word). An outer loop
# (0x0010-0x0090) around an inner one (0x0030-0x0070) with 2 FADDs.
LISTING = '''
\t\tFunction : _Z6kernelPf
        /*0000*/                   MOV R1, c[0x0][0x28] ;          /* 0x00000a0000017a02 */
                                                                   /* 0x000fe40000000f00 */
        /*0010*/                   LDS.128 R4, [R2] ;              /* 0x0000000002047984 */
                                                                   /* 0x000e280000000c00 */
        /*0020*/                   FADD R8, R4, -R5 ;              /* 0x8000000504087221 */
                                                                   /* 0x000fe20000000000 */
        /*0030*/                   FADD R9, R4, -R6 ;              /* 0x8000000604097221 */
                                                                   /* 0x000fe20000000000 */
        /*0040*/                   FADD R10, |R9|, R10 ;           /* 0x0000000a090a7221 */
                                                                   /* 0x000fca0000000200 */
        /*0050*/                   IADD3 R3, R3, 0x1, RZ ;         /* 0x0000000103037810 */
                                                                   /* 0x000fe40007ffe0ff */
        /*0060*/                   ISETP.NE.AND P0, PT, R3, 0x8, PT ;  /* 0x000000080300780c */
                                                                   /* 0x000fda0003f05270 */
        /*0070*/               @P0 BRA 0x30 ;                      /* 0xffffffb000200947 */
                                                                   /* 0x000fea000383ffff */
        /*0080*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;   /* 0x0000000000007b1d */
                                                                   /* 0x000fec0000010000 */
        /*0090*/               @P1 BRA 0x10 ;                      /* 0xffffff7000201947 */
                                                                   /* 0x000fea000383ffff */
        /*00a0*/                   EXIT ;                          /* 0x000000000000794d */
                                                                   /* 0x000fea0003800000 */
'''


def test_parses_instructions_and_stall_counts():
    funcs = mix.functions(LISTING)
    ins = funcs['_Z6kernelPf']
    assert [a for a, _, _ in ins] == list(range(0, 0xb0, 0x10))
    assert ins[2][1] == 'FADD R8, R4, -R5' and ins[2][2] == 1
    assert ins[4][2] == 5          # 0x000fca...: stall 5
    assert ins[7][2] == 5          # the branch's


def test_hot_loop_is_the_innermost_one():
    loop = mix.hot_loop(mix.functions(LISTING)['_Z6kernelPf'])
    texts = [t for t, _ in loop]
    assert texts[0] == 'FADD R9, R4, -R6' and texts[-1] == '@P0 BRA 0x30'
    assert len(texts) == 5 and sum(s for _, s in loop) == 1 + 5 + 2 + 13 + 5
    assert mix.opcode(texts[-1]) == 'BRA'


def test_missing_tool_is_named(monkeypatch):
    monkeypatch.setenv('PATH', '')
    monkeypatch.delenv('CUOBJDUMP', raising=False)
    with pytest.raises(SystemExit, match='cuobjdump not found .*'
                       'wheel nvidia-cuda-cuobjdump'):
        mix.tool('cuobjdump', 'CUOBJDUMP')
    monkeypatch.delenv('NVDISASM_PATH', raising=False)
    with pytest.raises(SystemExit, match='nvdisasm not found .*'
                       'wheel nvidia-cuda-nvdisasm'):
        mix.tool('nvdisasm', 'NVDISASM_PATH')


@pytest.mark.skipif(not all(shutil.which(t) for t in
                            ('nvcc', 'cuobjdump', 'nvdisasm')),
                    reason='needs nvcc, cuobjdump and nvdisasm on PATH')
def test_real_kernels(capsys):
    mix.main(['--arch', '90'])
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith(('forward', 'backward_input'))]
    assert len(rows) == 7      # 3 forward tiles, 2 x 2 input-gradient ones
    large = [r for r in rows if r.startswith('forward float 128x128')][0]
    fields = large.split()
    # The whole step unrolled: 8 reduction rows of 8 x 8 MACs, 2 FADDs
    # each, one of them with |.|; at least those 2 instructions a MAC.
    loop, rows, per_mac = int(fields[-11]), int(fields[-10]), float(fields[-9])
    assert rows == 8 and per_mac == pytest.approx(loop / 512, abs=0.01)
    assert int(fields[-7]) == 1024 and int(fields[-6]) == 512
    assert per_mac >= 2
