"""The instruction mix of each CUDA kernel's reduction loop, from its SASS:
what bounds a tile before it meets a GPU. Needs nvcc, cuobjdump and
nvdisasm (no GPU, no torch):

    python tools/cuda_loop_mix.py [--arch 90] [--dtype float] [--flags ...]

For each kernel instantiation of csrc/cuda/adder2d_kernel.cu it finds the
innermost loop (backward branch) holding the most FP arithmetic, counts the
reduction rows it handles (each reads the thread's TM + TN shared values:
the forward unrolls a whole step of BK rows, with its global loads, stores
and barrier; the input gradient 2 rows, the step's loads outside) and
prints its instructions per multiply-accumulate of the TM x TN tile (the
forward needs 2: FADD, then FADD with the |.| operand; so 2 / that number
bounds the forward at that share of the FP32 adder ceiling even with every
latency hidden) and the stall cycles the compiler scheduled per MAC (what
one warp alone would take; other warps of the scheduler fill the gaps).
cuobjdump and nvdisasm ship with the CUDA toolkit; without it, PyPI's
nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm wheels carry them (set
CUOBJDUMP / NVDISASM_PATH, or put them on PATH).
"""
import argparse
import collections
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / 'csrc' / 'cuda' / 'adder2d_kernel.cu'
ARITH = ('FADD', 'FFMA', 'FMUL', 'FMNMX', 'FSEL', 'FSETP', 'FCHK', 'FMUL2',
         'FADD2', 'FFMA2', 'HADD2', 'HFMA2', 'DADD', 'DFMA', 'DMUL', 'DSETP')
GROUPS = (('FP arithmetic', ARITH), ('shared loads', ('LDS',)),
          ('shared stores', ('STS',)), ('global loads', ('LDG',)),
          ('barriers', ('BAR',)))


def tool(name, env):
    """The path of a CUDA toolkit program: env (NVDISASM_PATH: its folder),
    else PATH; a clear exit where it is missing."""
    path = os.environ.get(env) or shutil.which(name)
    if env == 'NVDISASM_PATH' and os.environ.get(env):
        path = str(pathlib.Path(os.environ[env]) / name)
    if not path or not pathlib.Path(path).exists():
        sys.exit(f'cuda_loop_mix: {name} not found (PATH or {env}); it ships '
                 f'with the CUDA toolkit, or in the PyPI wheel '
                 f'nvidia-cuda-{name} (pip download --no-deps '
                 f'nvidia-cuda-{name}, then unzip it)')
    return path


def compile_sass(arch, flags):
    nvcc = tool('nvcc', 'NVCC')
    cuobjdump = tool('cuobjdump', 'CUOBJDUMP')
    nvdisasm = tool('nvdisasm', 'NVDISASM_PATH')
    with tempfile.TemporaryDirectory() as tmp:
        obj = pathlib.Path(tmp) / 'kernels.o'
        build = subprocess.run(
            [nvcc, '-std=c++17', '-O3', '-c', str(SOURCE), '-o', str(obj),
             f'-gencode=arch=compute_{arch},code=sm_{arch}', *flags])
        if build.returncode:
            sys.exit(f'cuda_loop_mix: nvcc failed on {SOURCE.name} for '
                     f'sm_{arch} (its message above)')
        env = dict(os.environ, NVDISASM_PATH=str(pathlib.Path(nvdisasm).parent))
        return subprocess.run([cuobjdump, '-sass', str(obj)], check=True,
                              capture_output=True, text=True, env=env).stdout


def demangle(names):
    out = subprocess.run(['c++filt'], input='\n'.join(names), text=True,
                         capture_output=True, check=True).stdout
    return out.splitlines()


def functions(sass):
    """{mangled name: [(address, instruction, stall cycles)]}: each
    instruction's 128 bits print as two 64-bit words; the stall count the
    compiler scheduled after it is bits 105-108 (Volta and later)."""
    funcs, name, pending = {}, None, None
    for line in sass.splitlines():
        m = re.search(r'Function : (\S+)', line)
        if m:
            name = m.group(1)
            funcs[name] = []
            continue
        m = re.match(r'\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;', line)
        if m and name:
            pending = (int(m.group(1), 16), m.group(2))
            continue
        m = re.match(r'\s+/\* (0x[0-9a-f]{16}) \*/', line)
        if m and pending:
            funcs[name].append((*pending, (int(m.group(1), 16) >> 41) & 0xf))
            pending = None
    return funcs


def opcode(ins):
    return re.sub(r'^@!?U?P[0-9T]+\s+', '', ins).split()[0]


def base_op(ins):
    """The opcode without its modifiers: LDS.128 -> LDS."""
    return opcode(ins).split('.')[0]


def hot_loop(ins):
    """The innermost loop (a backward branch's body holding no other one)
    with the most FP arithmetic."""
    loops = []
    for addr, text, _ in ins:
        m = re.search(r'\bBRA (0x[0-9a-f]+)', text)
        if m and int(m.group(1), 16) < addr:
            loops.append((int(m.group(1), 16), addr))
    best, best_count = [], 0
    for lo, hi in loops:
        if any(lo <= a < b <= hi and (a, b) != (lo, hi) for a, b in loops):
            continue
        body = [(t, stall) for a, t, stall in ins if lo <= a <= hi]
        count = sum(base_op(t) in ARITH for t, _ in body)
        if count > best_count:
            best, best_count = body, count
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--arch', default='90', help='sm_XX (default 90)')
    p.add_argument('--dtype', default='float',
                   help='kernels of this element type (float, double, '
                        '__half, __nv_bfloat16; all: every one)')
    p.add_argument('--flags', nargs=argparse.REMAINDER, default=[],
                   help='extra nvcc flags, e.g. '
                        '-DADDER_DET_LARGE_TILE_MIN_BLOCKS=2 (last)')
    args = p.parse_args(argv)
    funcs = functions(compile_sass(args.arch, args.flags))
    names = dict(zip(funcs, demangle(list(funcs))))
    print(f'sm_{args.arch} {" ".join(args.flags)}'.rstrip())
    print(f'{"kernel":52} {"loop":>5} {"rows":>4} {"per MAC":>7} '
          f'{"cycles":>7} {"FADD |.|":>9} {"arith":>6} {"LDS":>4} {"LDG":>4} '
          f'{"STS":>4} {"BAR":>4}')
    for mangled, ins in funcs.items():
        name = names[mangled]
        m = re.search(r'adder2d_(forward|backward_input)_kernel<([^,]+), '
                      r'adder_det::tiles::Tile<(\d+), (\d+), (\d+), (\d+), '
                      r'(\d+), (\d+)>(?:, \(adder_det::tiles::InputGradRule\)'
                      r'(\d))?', name)
        if not m or (args.dtype != 'all' and m.group(2) != args.dtype):
            continue
        kind, dtype = m.group(1), m.group(2)
        bm, bn, tm, tn, _, bk = (int(g) for g in m.groups()[2:8])
        rule = {'0': ' hardtanh', '1': ' sign', '2': ' sign fast'}.get(
            m.group(9), '')
        loop = hot_loop(ins)
        stalls = sum(stall for _, stall in loop)
        loop = [t for t, _ in loop]
        ops = collections.Counter(base_op(t) for t in loop)
        group = {label: sum(ops[o] for o in names_)
                 for label, names_ in GROUPS}
        fabs = sum(1 for t in loop if base_op(t) == 'FADD' and '|' in t)
        # Reduction rows in the loop: each reads TM + TN shared values,
        # 4 to a 16-byte load (two for double).
        per_row = (tm + tn) // 4 * (2 if dtype == 'double' else 1)
        rows = group['shared loads'] / per_row
        macs = rows * tm * tn
        label = f'{kind}{rule} {dtype} {bm}x{bn}, {tm}x{tn}, BK {bk}'
        print(f'{label:52} {len(loop):5d} {rows:4.0f} '
              f'{len(loop) / macs if macs else float("nan"):7.2f} '
              f'{stalls / macs if macs else float("nan"):7.2f} '
              f'{ops["FADD"]:4d} {fabs:4d} {group["FP arithmetic"]:6d} '
              f'{group["shared loads"]:4d} {group["global loads"]:4d} '
              f'{group["shared stores"]:4d} {group["barriers"]:4d}')


if __name__ == '__main__':
    main()
