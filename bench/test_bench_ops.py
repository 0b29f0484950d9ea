"""pytest-benchmark view of the op benchmark (``mbrl-fast bench ops`` prints the same cases).

Run: ``pytest bench/test_bench_ops.py`` (not part of the test suite: testpaths = tests).
MBRL_FAST_BENCH_QUICK=1 shrinks every size; MBRL_FAST_BENCH_CONFIG picks the config.
"""

from __future__ import annotations

import os

import pytest

from mbrl_fast import backends
from mbrl_fast.benchmarks import ops
from mbrl_fast.benchmarks.configs import get_config

CFG = get_config(os.environ.get("MBRL_FAST_BENCH_CONFIG", "pets-halfcheetah"))
CASES = ops.cases(CFG, quick=os.environ.get("MBRL_FAST_BENCH_QUICK", "0") == "1")


@pytest.mark.parametrize("backend", ops.BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[f"{c.op}-{c.dtype}-{c.size}" for c in CASES])
def test_op(benchmark, case, backend):
    if not backends.is_available(backend):
        pytest.skip(f"backend {backend!r}: {backends.status(backend)[1]}")
    call = case.make(backend)
    try:
        call()
    except (backends.BackendUnavailable, ImportError, NotImplementedError) as exc:
        pytest.skip(f"{case.op} on {backend!r}: {exc}")
    benchmark.extra_info.update(op=case.op, dtype=case.dtype, size=case.size, gflop=case.gflop)
    benchmark.pedantic(call, rounds=3, warmup_rounds=1, iterations=1)
    if case.gflop is not None:
        benchmark.extra_info["gflops"] = case.gflop / benchmark.stats.stats.median
