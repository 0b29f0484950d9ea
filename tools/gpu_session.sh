#!/usr/bin/env bash
# docs/gpu.md's checks in one prepared script, for a lent GPU machine with a short lease:
# build both modules in place, run every GPU test, then the planner benchmark. Each step
# has a wall-clock cap (seconds, overridable) so that one slow step cannot eat the others;
# logs and results go to $OUT (default ./gpu_out).
#
#   tools/gpu_session.sh                 # all steps
#   STEPS="build tests" tools/gpu_session.sh
#   STEPS="build sanitize" tools/gpu_session.sh   # compute-sanitizer (docs/gpu.md step 3)
#
# Without the build step, modules built elsewhere for the machine's Python are taken from
# ./.whl/_C*.so; wheels the machine lacks (mbrl-lib and its config stack, gymnasium) are
# installed from ./.whl. tools/gpu_prepare.sh fills that folder.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
STEPS=${STEPS:-"build tests bench"}
BUILD_S=${BUILD_S:-240} TESTS_S=${TESTS_S:-240} BENCH_S=${BENCH_S:-300}
WORKERS=${WORKERS:-8}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/triton_cache}
py=${PYTHON:-python3}
t0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - t0 )) s] $*"; }

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
{ nvidia-smi -L; "$py" -c "import torch, triton; print('torch', torch.__version__, 'cuda', \
torch.version.cuda, torch.cuda.get_device_name(), '| triton', triton.__version__)"; } \
  2>&1 | tee "$OUT/machine.txt"

if [[ " $STEPS " == *" build "* ]]; then
  stamp "build (cap ${BUILD_S} s)"
  # sm_90 only where the GPU is a Hopper: half the nvcc work of the default 80;90.
  arch=$("$py" -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}{n}')")
  timeout "$BUILD_S" bash -c "
    cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMBRL_FAST_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=$arch -DPython_EXECUTABLE=\$(command -v $py) \
      -Dpybind11_DIR=\$($py -c 'import pybind11; print(pybind11.get_cmake_dir())') >/dev/null \
    && cmake --build build/gpu -j \$(nproc) && cp -f build/gpu/_C*.so mbrl_fast/" \
    > "$OUT/build.log" 2>&1
  echo "build rc=$?"; tail -5 "$OUT/build.log"
elif ls .whl/_C*.so >/dev/null 2>&1; then
  cp -f .whl/_C*.so mbrl_fast/  # built elsewhere for this machine's Python (no build step)
fi
"$py" -c "from mbrl_fast import backends; print(backends.available())" 2>&1 | tee -a "$OUT/machine.txt"

if [[ " $STEPS " == *" tests "* ]]; then
  stamp "gpu tests (cap ${TESTS_S} s, $WORKERS workers)"
  per_test=$("$py" -c "import pytest_timeout" 2>/dev/null && echo "--timeout 120")
  # SIGINT at the cap: pytest stops and still prints the summary of the failures so far
  timeout -s INT -k 20 "$TESTS_S" "$py" -m pytest -m gpu tests/ops tests/gpu -n "$WORKERS" -p no:cacheprovider \
    $per_test -q -rfE --junitxml="$OUT/gpu_tests.xml" > "$OUT/gpu_tests.log" 2>&1
  echo "tests rc=$?"; grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/gpu_tests.log" | tail -40
fi

if [[ " $STEPS " == *" bench "* ]]; then
  stamp "planner benchmark (cap ${BENCH_S} s)"
  timeout "$BENCH_S" "$py" bench/gpu_planner.py ${BENCH_ARGS:-} --out "$OUT/gpu_planner.json" \
    > "$OUT/gpu_planner.log" 2>&1
  echo "bench rc=$?"; tail -30 "$OUT/gpu_planner.log"
fi
if [[ " $STEPS " == *" sanitize "* ]]; then  # not in the default STEPS: a few minutes
  stamp "compute-sanitizer racecheck + memcheck (cap ${SANITIZE_S:-240} s)"
  timeout -s INT -k 20 "${SANITIZE_S:-240}" bash -c "
    compute-sanitizer --tool racecheck $py -m pytest -q -m gpu tests/ops -p no:cacheprovider \
      -k 'cuda and (test_shapes or test_every_activation or cem)' &&
    compute-sanitizer --tool memcheck $py -m pytest -q -m gpu tests/ops/test_propagate.py \
      -p no:cacheprovider -k cuda" > "$OUT/sanitizer.log" 2>&1
  echo "sanitize rc=$?"; grep -E "ERROR SUMMARY|hazard|passed|failed" "$OUT/sanitizer.log" | tail -10
fi
stamp done
