#!/usr/bin/env bash
# Set up adder_det and its stack in the *current* Python environment.
#
# Idempotent: every step first checks whether what it installs is already
# there, so a second run finishes in seconds and rebuilds nothing.
# Stack: torch 2.13.0 (unless a torch is present), mmengine 0.10.7,
# mmcv 2.1.0 built from source with ops, mmdet 3.3.0, pycocotools, numpy,
# scikit-learn (tools/awn_robustness.py), onnx, onnxscript and onnxruntime
# (tools/export.py --onnx),
# then adder_det itself (editable, with its compiled extension).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pipi() { "$PY" -m pip install --disable-pip-version-check "$@"; }
has() { "$PY" - "$@" >/dev/null 2>&1; }

say() { printf '[install] %s\n' "$*"; }

# What each step installs, as a check (a Python snippet that fails when
# the step is needed). All of them first run in one process: a set-up
# machine then pays one interpreter start, not one per check (~30 s).
CHECK_TORCH='import torch'
# Build tools: mmcv's setup.py and mmengine's 'mmdet::' lookup import
# pkg_resources, which setuptools dropped in 81.
CHECK_BUILD='
import importlib.metadata as m, pkg_resources, wheel, ninja
v = tuple(int(x) for x in m.version("setuptools").split(".")[:2])
assert (77, 0) <= v < (81, 0)'
CHECK_MMENGINE='
import importlib.metadata as m
assert m.version("mmengine") == "0.10.7"
import pycocotools, numpy, pytest'
CHECK_MMCV='
import mmcv, mmcv.ops
assert mmcv.__version__ == "2.1.0"'
CHECK_MMDET='
import importlib.metadata as m
assert m.version("mmdet") == "3.3.0"'
# scikit-learn: its bundled digits set drives tools/awn_robustness.py.
CHECK_SKLEARN='import sklearn.datasets'
# ONNX export (torch's exporter needs onnxscript) and its check.
CHECK_ONNX='
import importlib.metadata as m
assert [m.version(p) for p in ("onnx", "onnxscript", "onnxruntime")] == [
    "1.23.2", "0.7.2", "1.32.0"]'
# adder_det: rebuilt only when a source of the extension is newer than it;
# installed (editable) even where the repo root alone makes it importable.
CHECK_ADDER_DET='
import importlib.metadata as m, pathlib, adder_det, adder_det.ops._backend as b
m.version("adder_det")
root = pathlib.Path(adder_det.__file__).resolve().parent.parent
assert root == pathlib.Path.cwd().resolve()
so = pathlib.Path(b.load_extension().__file__)
srcs = [root / "setup.py", *root.glob("csrc/**/*")]
assert all(s.stat().st_mtime <= so.stat().st_mtime for s in srcs if s.is_file())'

if has <<<"$CHECK_TORCH
$CHECK_BUILD
$CHECK_MMENGINE
$CHECK_MMCV
$CHECK_MMDET
$CHECK_SKLEARN
$CHECK_ONNX
$CHECK_ADDER_DET"; then
  say "torch, mmcv, mmdet, adder_det and its extension present and up to date"
  say "done"
  exit 0
fi

if has <<<"$CHECK_TORCH"; then
  say "torch $("$PY" -c 'import torch; print(torch.__version__)') present"
else
  say "installing torch 2.13.0"; pipi torch==2.13.0
fi

if ! has <<<"$CHECK_BUILD"; then
  say "installing build tools"; pipi wheel ninja "setuptools>=77,<81"
fi

if ! has <<<"$CHECK_MMENGINE"; then
  say "installing mmengine, pycocotools, numpy, pytest"
  pipi mmengine==0.10.7 pycocotools "numpy>=1.23" pytest
fi

if has <<<"$CHECK_MMCV"; then
  say "mmcv 2.1.0 with ops present"
else
  say "building mmcv 2.1.0 from source with ops (about 12 minutes on 2 cores)"
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} pipi --no-build-isolation mmcv==2.1.0
fi

if ! has <<<"$CHECK_MMDET"; then
  say "installing mmdet 3.3.0"; pipi mmdet==3.3.0
fi

if ! has <<<"$CHECK_SKLEARN"; then
  say "installing scikit-learn"; pipi scikit-learn
fi

if ! has <<<"$CHECK_ONNX"; then
  say "installing onnx, onnxscript, onnxruntime"
  pipi onnx==1.23.2 onnxscript==0.7.2 onnxruntime==1.32.0
fi

if has <<<"$CHECK_ADDER_DET"; then
  say "adder_det and its extension up to date"
else
  say "installing adder_det (builds the C++/CUDA extension)"
  MAX_JOBS=${MAX_JOBS:-2} pipi --no-build-isolation -e .
fi
say "done"
