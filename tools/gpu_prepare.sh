#!/usr/bin/env bash
# Prepare ./.whl (git-ignored) for tools/gpu_session.sh on a lent GPU machine that cannot
# reach a package index: the pure-Python wheels it lacks (mbrl-lib 0.2.0 for the baseline
# row of bench/gpu_planner.py and its config stack, gymnasium), and, where a CPython of the
# machine's minor version is found here, both modules built for it (sm_90 unless
# CUDA_ARCH says otherwise), so that the lease need not spend a minute building them.
#
#   tools/gpu_prepare.sh                       # the H200 image: Python 3.12
#   PY=/path/to/python3.12 CUDA_ARCH=90 tools/gpu_prepare.sh
#
# Then, on the device: STEPS="tests bench" tools/gpu_session.sh, carrying .whl.
set -euo pipefail
cd "$(dirname "$0")/.."
pyver=${PYVER:-3.12}
here=${PYTHON:-python3}
mkdir -p .whl
rm -f .whl/*.whl .whl/_C*.so
"$here" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
  --implementation cp --platform manylinux_2_28_x86_64 -d .whl \
  mbrl==0.2.0 omegaconf==2.3.0 hydra-core==1.3.2 termcolor gymnasium==1.4.0 farama-notifications
"$here" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # sdist only on PyPI

py=${PY:-$(command -v "python$pyver" || true)}
if [ -n "$py" ] && "$py" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$pyver'.split('.')))" 2>/dev/null; then
  cmake -S . -B "build/py$pyver" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMBRL_FAST_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" -DPython_EXECUTABLE="$py" \
    -Dpybind11_DIR="$("$here" -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
  cmake --build "build/py$pyver" -j "$(nproc)"
  cp -f "build/py$pyver"/_C*.so .whl/
else
  echo "no Python $pyver here (set PY=...): tools/gpu_session.sh will build on the device"
fi
ls -la .whl
