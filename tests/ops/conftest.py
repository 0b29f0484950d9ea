"""Fixtures shared by the op tests: the cpu backend's kernel paths."""

from __future__ import annotations

import pytest
from helpers import cpu_path_missing

from mbrl_fast import backends

# The kernel paths of the cpu backend, plus "portable-baseline": the portable path's
# x86-64 baseline (SSE2) build, which the portable path runs on x86 CPUs without AVX.
CPU_PATHS = ("avx512", "avx2", "portable", "portable-baseline")


@pytest.fixture(params=CPU_PATHS)
def kernels(request, monkeypatch):
    """Run a test on every kernel path of the cpu backend this CPU runs
    (``MBRL_FAST_CPU_KERNELS``), skipping the others with the missing features."""
    why = cpu_path_missing(request.param)
    if why:
        pytest.skip(f"{request.param} kernels: {why}")
    path = request.param.removesuffix("-baseline")
    monkeypatch.setenv(backends.CPU_KERNELS_ENV_VAR, path)
    baseline = request.param.endswith("-baseline")
    if baseline:
        backends.cpu_module().set_portable_baseline_only(True)
    yield request.param
    if baseline:
        backends.cpu_module().set_portable_baseline_only(False)
