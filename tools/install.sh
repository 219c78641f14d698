#!/usr/bin/env bash
# Set up adder_det and its stack in the *current* Python environment.
#
# Idempotent: every step first checks whether what it installs is already
# there, so a second run finishes in seconds and rebuilds nothing.
# Stack: torch 2.13.0 (unless a torch is present), mmengine 0.10.7,
# mmcv 2.1.0 built from source with ops, mmdet 3.3.0, pycocotools, numpy,
# scikit-learn (tools/awn_robustness.py),
# then adder_det itself (editable, with its compiled extension).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pipi() { "$PY" -m pip install --disable-pip-version-check "$@"; }
has() { "$PY" - "$@" >/dev/null 2>&1; }

say() { printf '[install] %s\n' "$*"; }

if has <<<'import torch'; then
  say "torch $("$PY" -c 'import torch; print(torch.__version__)') present"
else
  say "installing torch 2.13.0"; pipi torch==2.13.0
fi

# Build tools: mmcv's setup.py and mmengine's 'mmdet::' lookup import
# pkg_resources, which setuptools dropped in 81.
if ! has <<<'
import importlib.metadata as m, pkg_resources, wheel, ninja
v = tuple(int(x) for x in m.version("setuptools").split(".")[:2])
assert (77, 0) <= v < (81, 0)
'; then
  say "installing build tools"; pipi wheel ninja "setuptools>=77,<81"
fi

if ! has <<<'
import importlib.metadata as m
assert m.version("mmengine") == "0.10.7"
import pycocotools, numpy, pytest'; then
  say "installing mmengine, pycocotools, numpy, pytest"
  pipi mmengine==0.10.7 pycocotools "numpy>=1.23" pytest
fi

if has <<<'
import mmcv, mmcv.ops
assert mmcv.__version__ == "2.1.0"'; then
  say "mmcv 2.1.0 with ops present"
else
  say "building mmcv 2.1.0 from source with ops (about 12 minutes on 2 cores)"
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} pipi --no-build-isolation mmcv==2.1.0
fi

if ! has <<<'
import importlib.metadata as m
assert m.version("mmdet") == "3.3.0"'; then
  say "installing mmdet 3.3.0"; pipi mmdet==3.3.0
fi

# scikit-learn: its bundled digits set drives tools/awn_robustness.py.
if ! has <<<'import sklearn.datasets'; then
  say "installing scikit-learn"; pipi scikit-learn
fi

# adder_det: rebuild only when a source of the extension is newer than it.
if has <<<'
import pathlib, adder_det, adder_det.ops._backend as b
root = pathlib.Path(adder_det.__file__).resolve().parent.parent
assert root == pathlib.Path.cwd().resolve()
so = pathlib.Path(b.load_extension().__file__)
srcs = [root / "setup.py", *root.glob("csrc/**/*")]
assert all(s.stat().st_mtime <= so.stat().st_mtime for s in srcs if s.is_file())'; then
  say "adder_det and its extension up to date"
else
  say "installing adder_det (builds the C++/CUDA extension)"
  MAX_JOBS=${MAX_JOBS:-2} pipi --no-build-isolation -e .
fi
say "done"
