"""The instruction mix of the CPU kernels' inner loops as built for aarch64,
from the disassembly: what a NEON tile costs before it meets an aarch64
machine (tools/aarch64_check.sh builds the extension; this reads it):

    python tools/aarch64_loop_mix.py [EXTENSION_OR_OBJECT] [--match NAME]

For each kernel function of the baseline build (namespace generic) it finds
the innermost loop (a backward branch's body holding no other) with the
most vector FP instructions and prints its instructions, vector FP ones,
loads and stores, and the q-register loads and stores against the stack
pointer: spills and fills of vectors the register allocator could not keep
in NEON's 32 registers. Needs binutils for aarch64 (Debian's
binutils-aarch64-linux-gnu, which g++-aarch64-linux-gnu pulls in; on an
aarch64 machine its own objdump).
"""
import argparse
import collections
import os
import platform
import re
import shutil
import subprocess
import sys

DEFAULT = os.path.join(
    os.environ.get('AARCH64_WORK', '/tmp/adder_det_aarch64'), 'src',
    'adder_det', '_C.cpython-311-aarch64-linux-gnu.so')
# The loops worth reading: the tiles and the task bodies they inline into.
KERNELS = ('forward_tile<', 'forward_panels_impl<', 'forward_implicit_chunk_impl<',
           'forward_rows_impl<', 'sparse_accumulate<', 'backward_input_chunk_impl<',
           'backward_input_implicit_chunk_impl<', 'backward_input_rows_impl<',
           'backward_input_cvec_impl<')
BRANCHES = ('b', 'cbz', 'cbnz', 'tbz', 'tbnz')


def objdump_tool():
    for name in ('aarch64-linux-gnu-objdump', 'objdump'):
        path = shutil.which(name)
        if path and (name != 'objdump' or platform.machine() == 'aarch64'):
            return path
    sys.exit('aarch64_loop_mix: aarch64-linux-gnu-objdump not found (Debian: '
             'apt-get install binutils-aarch64-linux-gnu)')


def functions(listing):
    """{demangled name: [(address, opcode, operands)]} of `objdump -d -C
    --no-show-raw-insn` output."""
    funcs, name = {}, None
    for line in listing.splitlines():
        m = re.match(r'^[0-9a-f]+ <(.*)>:$', line)
        if m:
            name = m.group(1)
            funcs[name] = []
            continue
        m = re.match(r'^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$', line)
        if m and name:
            funcs[name].append((int(m.group(1), 16), m.group(2),
                                m.group(3).split(' <')[0].split('//')[0].strip()))
    return funcs


def is_vector_fp(op, args):
    return op.startswith('f') and re.search(r'\bv\d+\.\d+[sd]\b', args)


def hot_loop(ins):
    """The innermost loop with the most vector FP instructions (its body
    from the branch target to the backward branch), or []."""
    loops = []
    for addr, op, args in ins:
        if op.split('.')[0] in BRANCHES:
            m = re.search(r'(?:^|, )([0-9a-f]+)$', args)
            if m and int(m.group(1), 16) < addr:
                loops.append((int(m.group(1), 16), addr))
    best, best_fp = [], -1
    for lo, hi in loops:
        if any(lo <= a < b <= hi and (a, b) != (lo, hi) for a, b in loops):
            continue
        body = [(op, args) for a, op, args in ins if lo <= a <= hi]
        fp = sum(1 for op, args in body if is_vector_fp(op, args))
        if fp > best_fp:
            best, best_fp = body, fp
    return best


def mix(body):
    """Counts of a loop body: instructions, vector FP, loads, stores, and
    q-register loads/stores against sp (spills and fills)."""
    ops = collections.Counter(op for op, _ in body)
    loads = sum(1 for op, _ in body if op.startswith('ld'))
    stores = sum(1 for op, _ in body if op.startswith('st'))
    spills = sum(1 for op, args in body
                 if op in ('ldr', 'str', 'ldp', 'stp', 'ldur', 'stur')
                 and re.search(r'\bq\d+', args) and re.search(r'\[sp\b', args))
    return dict(insts=len(body),
                vector_fp=sum(1 for op, a in body if is_vector_fp(op, a)),
                loads=loads, stores=stores, spills=spills, ops=ops)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('path', nargs='?', default=DEFAULT,
                   help='the aarch64 extension or an object of it (default: '
                        "tools/aarch64_check.sh's build)")
    p.add_argument('--match', default='float',
                   help='only functions whose name holds this (default: '
                        'float; "" for all)')
    args = p.parse_args(argv)
    if not os.path.exists(args.path):
        sys.exit(f'aarch64_loop_mix: {args.path} not found (build it with '
                 'bash tools/aarch64_check.sh)')
    listing = subprocess.run([objdump_tool(), '-d', '-C', '--no-show-raw-insn',
                              args.path], check=True, capture_output=True,
                             text=True).stdout
    print(f'{"kernel (generic build)":64} {"insts":>5} {"vecFP":>5} '
          f'{"loads":>5} {"stores":>6} {"spills":>6}  top opcodes')
    for name, ins in functions(listing).items():
        short = re.sub(r'adder_det::\(anonymous namespace\)::', '', name)
        short = re.sub(r'^(void|bool|long|auto) ', '', short).split('(')[0]
        if ('generic::' not in name or args.match not in short
                or not any(k in short for k in KERNELS)):
            continue
        body = hot_loop(ins)
        if not body:
            continue
        m = mix(body)
        top = ' '.join(f'{op} {n}' for op, n in m['ops'].most_common(5))
        print(f'{short.replace("generic::", "")[:64]:64} {m["insts"]:5d} '
              f'{m["vector_fp"]:5d} {m["loads"]:5d} {m["stores"]:6d} '
              f'{m["spills"]:6d}  {top}')


if __name__ == '__main__':
    main()
