#!/usr/bin/env bash
# The one GPU check: build the CUDA extension, print its kernels' loop mix
# (tools/cuda_loop_mix.py, where cuobjdump and nvdisasm are), run the CUDA
# op tests (the kernels against the CPU reference), then the op benchmark
# and the whole detector: where mmdet/mmcv are installed its training
# iteration, else the networks traced by --prepare
# (tools/benchmark_detector.py --graphs: backbone, neck and head
# forward+backward, an upper bound on the iteration's ratio); the layers
# again with the hardtanh input gradient; the sign rule's fast kernel
# against its exact one; the kernel variants; then the
# CPU op suite on that machine's CPU. Needs torch with CUDA, nvcc and
# pytest.
#
#   bash tools/gpu_check.sh --prepare  # here, with mmdet: writes gpu_graphs/
#   bash tools/gpu_check.sh            # there (carry gpu_graphs); logs to
#                                      # $OUT (or ./gpu_check_out)
# GPU_CHECK_VARIANTS='FLAGS1;FLAGS2': after the check, rebuild with each set
# of extra nvcc flags (ADDER_DET_NVCC_FLAGS) and time the layers' forward
# and forward+backward at 800x800 again (kernel variants, e.g.
# -DADDER_DET_LARGE_TILE_MIN_BLOCKS=2).
set -uo pipefail
cd "$(dirname "$0")/.."
ADDER=configs/adder_fcos/adder-fcos_adder-r50_adder-rpafpn_adder-head_1x_coco.py
FCOS=configs/fcos/fcos_r50_fpn_gn-head_1x_coco.py
if [ "${1:-}" = "--prepare" ]; then
  mkdir -p gpu_graphs
  python3 tools/benchmark_detector.py $ADDER --save-graphs gpu_graphs/twin.pt &&
    python3 tools/benchmark_detector.py $ADDER --conv-config $FCOS \
      --save-graphs gpu_graphs/fcos.pt
  exit
fi
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
# The host compiler: `c++` from PATH unless GPU_CHECK_CXX names another. The
# lent GPU machine's $CXX (/opt/gcc/bin/g++, a wrapper around Ubuntu's g++
# 13.3) builds extensions in which any C++ exception thrown across the
# dispatcher kills the process (SIGSEGV), a ten-line one included, while its
# /usr/bin/g++ builds the same sources correctly (docs/benchmarks.md,
# "Exceptions on the GPU machine").
export CXX=${GPU_CHECK_CXX:-c++}
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST=$(python3 -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
  export TORCH_CUDA_ARCH_LIST
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$OUT/gpu.txt"
echo "compiler: $CXX ($("$CXX" --version | head -1))" | tee -a "$OUT/gpu.txt"

# Each section's header says how long the check has run, to size the next
# GPU session's call.
t_start=$(date +%s)
section() { echo "== $1 ($(( $(date +%s) - t_start )) s in)"; }
section "build (arch $TORCH_CUDA_ARCH_LIST)"
t0=$(date +%s)
python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
python3 -c 'import torch; from adder_det import _C; assert _C.built_with_cuda(), "no CUDA kernels"; print("adder_det._C with CUDA")' || exit 1

section "the kernels' reduction loops (SASS, tools/cuda_loop_mix.py)"
python3 tools/cuda_loop_mix.py --arch "${TORCH_CUDA_ARCH_LIST//./}" 2>&1 | tee "$OUT/loop_mix.txt" | tail -9

# CUDA tests first, the CPU op suite (this host's CPU, another kind than
# CI's) last, on the last build: if a call runs out of time, it is what is
# lost.
CUDA_TESTS=(tests/ops/test_adder2d_cuda.py tests/ops/test_autocast.py
            tests/ops/test_adder2d.py::test_bad_input_checked_in_compiled_op_too)
section "tests: CUDA kernels against the CPU reference"
ADDER_DET_REQUIRE_EXTENSION=1 python3 -m pytest "${CUDA_TESTS[@]}" -q -rs 2>&1 | tee "$OUT/tests.log" | tail -25
rc=${PIPESTATUS[0]}

section "benchmark: ResNet-50 layers and the whole network, batch 2, 224x224"
python3 tools/benchmark_op.py --device cuda --repeat 10 --network 2>&1 | tee "$OUT/bench_224.txt"
section "benchmark: ResNet-50 and FCOS neck/head layers, the whole ResNet-50, batch 2, 800x800"
python3 tools/benchmark_op.py --device cuda --set all --size 800 --repeat 5 --unfold-limit-gb 8 --network 2>&1 | tee "$OUT/bench_800.txt"
section "benchmark: Adder FCOS R-50 (B+N+H) against its conv twin and conv FCOS R-50, and with AMP against the twin, batch 2, 800x1333"
if python3 -c 'import mmdet, mmcv' 2>/dev/null; then
  for run in "" "--conv-config $FCOS" "--amp"; do
    python3 tools/benchmark_detector.py $ADDER $run --device cuda --repeat 10 2>>"$OUT/bench_detector.log"
  done | tee "$OUT/bench_detector.txt"
elif [ -f gpu_graphs/twin.pt ] && [ -f gpu_graphs/fcos.pt ]; then
  for run in gpu_graphs/twin.pt gpu_graphs/fcos.pt "gpu_graphs/twin.pt --amp"; do
    python3 tools/benchmark_detector.py --graphs $run --device cuda --repeat 10 2>>"$OUT/bench_detector.log"
  done | tee "$OUT/bench_detector.txt"
else
  echo "skipped: no mmdet/mmcv here and no gpu_graphs/ (run --prepare where mmdet is, carry gpu_graphs)" | tee "$OUT/bench_detector.txt"
fi
# The rule adder2d and Adder2d default to (AdderNet's HardTanh); the runs
# above take the paper configs' sign rule.
section "benchmark: the hardtanh input gradient, ResNet-50 and FCOS layers, batch 2, 800x800"
python3 tools/benchmark_op.py --device cuda --set all --size 800 --repeat 5 --unfold-limit-gb 0 --input-grad hardtanh 2>&1 | tee "$OUT/bench_800_hardtanh.txt"
# The sign rule's fast kernel plus its tie kernel against the exact kernel
# (set_sign_fast_mode always / never), layer by layer.
section "benchmark: the sign rule's fast and exact input-gradient kernels, ResNet-50 and FCOS layers, batch 2, 800x800"
for set in resnet50 fcos; do
  python3 tools/benchmark_sign_rule.py --device cuda --set $set --size 800 2>&1
done | tee "$OUT/bench_sign_rule.txt"
IFS=';' read -ra variants <<< "${GPU_CHECK_VARIANTS:-}"
for v in "${variants[@]}"; do
  section "variant: ADDER_DET_NVCC_FLAGS='$v', ResNet-50 and FCOS layers, batch 2, 800x800"
  ADDER_DET_NVCC_FLAGS="$v" python3 setup.py build_ext --inplace --force >"$OUT/build_variant.log" 2>&1 ||
    { tail -30 "$OUT/build_variant.log"; continue; }
  python3 tools/benchmark_op.py --device cuda --set all --size 800 --repeat 5 --unfold-limit-gb 0 2>&1 | tee -a "$OUT/bench_variants.txt"
done
section "tests: the CPU op suite"
ADDER_DET_REQUIRE_EXTENSION=1 python3 -m pytest tests/ops -q -rs \
  --ignore=tests/ops/test_adder2d_cuda.py --ignore=tests/ops/test_autocast.py 2>&1 |
  tee "$OUT/tests_cpu.log" | tail -15
[ "${PIPESTATUS[0]}" = 0 ] || rc=1
section "done"
exit $rc
