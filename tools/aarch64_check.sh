#!/usr/bin/env bash
# Build the CPU extension for aarch64 and run the op tests there, on an
# x86-64 Debian 12 machine: Debian's cross compiler builds it through our own
# setup.py, run by an aarch64 CPython under qemu-user, against PyPI's aarch64
# torch (a CPU build). This checks that the kernels build and compute right
# on aarch64 (the baseline kernels, NEON code there), and prints their inner
# loops' instruction mix (tools/aarch64_loop_mix.py); qemu says nothing
# about their speed. Needs root (apt), Debian's and PyPI's registries, ~1 GB.
#
#   bash tools/aarch64_check.sh                  # build, then pytest tests/ops
#   bash tools/aarch64_check.sh -k random_layers # pytest arguments instead
#
# AARCH64_WORK (default /tmp/adder_det_aarch64) keeps the downloads, the
# aarch64 Python's root and the built copy; a second run reuses them.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${AARCH64_WORK:-/tmp/adder_det_aarch64}
torch_version=${AARCH64_TORCH:-2.9.1}  # 2.13's aarch64 wheel is a CUDA build
mkdir -p "$work"
cd "$work"

if ! command -v qemu-aarch64-static >/dev/null ||
   ! command -v aarch64-linux-gnu-g++ >/dev/null; then
  apt-get update -q
  apt-get install -y -q qemu-user-static g++-aarch64-linux-gnu
fi

# The aarch64 CPython (Debian's 3.11) and the libraries it loads, unpacked
# into a root that qemu uses as the guest's /.
if [ ! -x root/usr/bin/python3.11 ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  apt-get update -q
  mkdir -p debs root
  (cd debs && apt-get download -q $(printf '%s:arm64 ' \
      libc6 libgcc-s1 libstdc++6 libgomp1 python3.11-minimal \
      libpython3.11-minimal libpython3.11-stdlib libpython3.11-dev \
      libexpat1 zlib1g libffi8 libbz2-1.0 liblzma5 libsqlite3-0 libssl3 \
      libcrypt1 libuuid1 libncursesw6 libtinfo6 libreadline8 libdb5.3 \
      libgdbm6 libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 \
      libkrb5support0 libcom-err2 libkeyutils1))
  for deb in debs/*.deb; do dpkg -x "$deb" root; done
fi

# The guest python; argv[0] is this wrapper, so that tests starting
# sys.executable in a subprocess come back through qemu.
cat > python-aarch64 <<EOF
#!/bin/sh
export PYTHONHOME=$work/root/usr
export PYTHONPATH=$work/site\${PYTHONPATH:+:\$PYTHONPATH}
exec qemu-aarch64-static -L $work/root -0 $work/python-aarch64 \\
  $work/root/usr/bin/python3.11 "\$@"
EOF
chmod +x python-aarch64

if [ ! -d site/torch ]; then
  # pip evaluates markers for this machine (x86-64), so torch's CUDA
  # dependencies would be asked for: torch without them, then its own.
  platform=(--only-binary=:all: --platform manylinux_2_28_aarch64
            --platform manylinux2014_aarch64 --python-version 3.11
            --implementation cp --target "$work/site" -q)
  pip install "${platform[@]}" --no-deps "torch==$torch_version" numpy
  pip install "${platform[@]}" filelock typing-extensions 'sympy>=1.13.3' \
      networkx jinja2 fsspec pytest 'setuptools>=77,<81' wheel
fi

# A copy of the working tree's tracked files (with uncommitted edits), so
# that this machine's own x86-64 build outputs stay out of it.
rm -rf src && mkdir src
(cd "$repo" && git ls-files -z | xargs -0 tar -cf -) | tar -xf - -C src
cd src
# Our setup.py under the guest python; the compilers are this machine's
# cross compilers (the guest's subprocesses may be x86-64 programs: ninja,
# the compilers). CPATH: the guest's pyconfig.h.
CPATH=$work/root/usr/include CC=aarch64-linux-gnu-gcc \
  CXX=aarch64-linux-gnu-g++ MAX_JOBS=${MAX_JOBS:-2} \
  ../python-aarch64 setup.py build_ext --inplace > build.log 2>&1 ||
  { tail -40 build.log; echo "aarch64_check: the build failed" >&2; exit 1; }
# The kernels' inner loops as compiled (this machine's python reads them).
python3 "$repo/tools/aarch64_loop_mix.py" adder_det/_C.cpython-311-aarch64-linux-gnu.so
ADDER_DET_REQUIRE_EXTENSION=1 PYTHONPATH=$work/src ../python-aarch64 -c \
  "import platform, torch, adder_det._C as C; print(platform.machine(), 'torch', torch.__version__, 'cpu_isas', C.cpu_isas())"
if [ $# -eq 0 ]; then set -- tests/ops; fi
ADDER_DET_REQUIRE_EXTENSION=1 PYTHONPATH=$work/src \
  ../python-aarch64 -m pytest -q -p no:cacheprovider -rfs "$@"
