#!/usr/bin/env bash
# Development build: compile mbrl_fast._C (and _C_cuda when nvcc is found) into
# build/dev and copy the modules next to the Python sources, so that the source
# tree imports them directly. Serialized with a lock: several shells may call it.
# Users install with `pip install .` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>/tmp/mbrl_fast_build.lock
flock 9
py=${PYTHON:-python}
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DPython_EXECUTABLE="$(command -v "$py")" \
  -Dpybind11_DIR="$("$py" -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DMBRL_FAST_CUDA="${MBRL_FAST_CUDA:-OFF}" >/dev/null
cmake --build build/dev -j "$(nproc)"
# Copy then rename: a process that has the old module loaded keeps its (unlinked)
# file intact; overwriting in place would change its code under it.
for so in build/dev/_C*.so; do
  cp -f "$so" "mbrl_fast/.$(basename "$so").tmp" && mv -f "mbrl_fast/.$(basename "$so").tmp" "mbrl_fast/$(basename "$so")"
done
echo "built: $(ls mbrl_fast/_C*.so | tr '\n' ' ')"
