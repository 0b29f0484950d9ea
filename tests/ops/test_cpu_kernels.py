"""The cpu backend's kernel paths: selection, the MBRL_FAST_CPU_KERNELS switch, errors for
paths the CPU lacks, what available() reports, and bf16 weights off AVX512-BF16."""

from __future__ import annotations

import pytest
import torch
from helpers import TOL, cpu_path_missing, random_mlp_params

from mbrl_fast import backends
from mbrl_fast.ops import _cpu, noise
from mbrl_fast.ops.ensemble_mlp import ensemble_mlp

pytestmark = pytest.mark.skipif(not backends.is_available("cpu"), reason="mbrl_fast._C not built")
ENV = backends.CPU_KERNELS_ENV_VAR


@pytest.fixture
def cpu_without(monkeypatch):
    """Simulate a CPU without some features: cpu_without("avx512") makes the avx512 path
    (and AVX512-BF16) missing, cpu_without("avx2") both hand-written paths."""

    def make(lowest_missing: str):
        lacks = {"avx512": {"avx512": "AVX512F, AVX512BW, AVX512VL, AVX512DQ"},
                 "avx2": {"avx512": "AVX2, FMA, AVX512F", "avx2": "AVX2, FMA"}}[lowest_missing]
        monkeypatch.setattr(backends, "_cpu_missing", lambda isa: lacks.get(isa, ""))
        monkeypatch.setattr(backends, "_cpu_has_avx512_bf16", lambda: False)

    return make


def test_auto_picks_the_best_path_this_cpu_runs(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    best = next(p for p in ("avx512", "avx2", "portable") if not cpu_path_missing(p))
    assert backends.cpu_isa() == best
    assert backends.cpu_kernels().isa == best
    ok, why, _ = backends.available()["cpu"]
    assert ok and why.startswith(f"available: {best} (")


@pytest.mark.parametrize("path", ["avx512", "avx2", "portable"])
def test_forcing_a_path(monkeypatch, path):
    if cpu_path_missing(path):
        pytest.skip(cpu_path_missing(path))
    monkeypatch.setenv(ENV, path)
    assert backends.cpu_isa() == path
    assert backends.available()["cpu"].available
    assert f"available: {path} (" in backends.available()["cpu"][1]
    assert f"{ENV}={path}" in backends.available()["cpu"][1]
    native = path == "avx512" and backends.cpu_module().cpu_has_avx512_bf16()
    assert backends.cpu_kernels().native_bf16 == native
    assert ("AVX512-BF16 for bf16 weights" if native else "bf16 weights run as fp32") in \
        backends.available()["cpu"][1]


def test_unknown_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(ENV, "avx9000")
    params = random_mlp_params(E=1, sizes=(3, 4))
    with pytest.raises(ValueError, match=f"{ENV} must be one of auto, avx512, avx2, portable"):
        ensemble_mlp(torch.zeros(1, 2, 3), params, backend="cpu")
    with pytest.raises(ValueError, match=ENV):
        backends.cpu_isa()
    ok, why, _ = backends.available()["cpu"]
    assert ok and "cpu calls raise" in why and "avx9000" in why


@pytest.mark.parametrize("lacking,forced", [("avx512", "avx512"), ("avx2", "avx2"),
                                            ("avx2", "avx512")])
def test_forcing_a_path_the_cpu_lacks_names_the_features(monkeypatch, cpu_without, lacking,
                                                           forced):
    cpu_without(lacking)
    monkeypatch.setenv(ENV, forced)
    params = random_mlp_params(E=1, sizes=(3, 4))
    with pytest.raises(backends.BackendUnavailable, match=f"{ENV}={forced}.*lacks AVX") as err:
        ensemble_mlp(torch.zeros(1, 2, 3), params, backend="cpu")
    assert "portable" in str(err.value)  # what this CPU can run instead
    with pytest.raises(backends.BackendUnavailable, match="lacks"):
        noise.normal((5,), 1, backend="cpu")
    ok, why, _ = backends.available()["cpu"]
    assert ok and "cpu calls raise" in why


@pytest.mark.parametrize("lacking,expect", [("avx512", "avx2"), ("avx2", "portable")])
def test_auto_on_a_smaller_cpu(monkeypatch, cpu_without, lacking, expect):
    cpu_without(lacking)
    monkeypatch.delenv(ENV, raising=False)
    assert backends.cpu_isa() == expect
    why = backends.available()["cpu"][1]
    assert f"available: {expect} (bf16 weights run as fp32, the CPU lacks AVX512-BF16" in why
    assert "the CPU lacks AVX" in why
    params = random_mlp_params(E=2, sizes=(5, 24, 6), bf16=True)
    x = torch.randn(2, 9, 5)
    got = ensemble_mlp(x, params, backend="cpu")  # bf16 on a CPU without AVX512-BF16
    ref = ensemble_mlp(x, params, backend="reference")
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, **TOL["bf16"])


def test_the_compiled_module_refuses_paths_it_does_not_know():
    """The kernels check the path id themselves: an id past the enum raises, never runs."""
    params = random_mlp_params(E=1, sizes=(3, 4), gaussian=False)
    x = torch.zeros(1, 2, 3)
    out = torch.empty(1, 2, 4)
    mlp, _ = _cpu.mlp_desc(params, backends.cpu_kernels())
    with pytest.raises(ValueError, match="unknown CPU kernel path id 7"):
        backends.cpu_module().ensemble_mlp(mlp, x.data_ptr(), 2, out.data_ptr(), 0, 7)
    with pytest.raises(ValueError, match="unknown CPU kernel path id"):
        backends.cpu_module().cpu_isa_missing(-1)


def test_cpu_isa_missing_matches_cpu_has():
    mod = backends.cpu_module()
    assert mod.cpu_isa_missing(0) == ""
    assert (mod.cpu_isa_missing(1) == "") == mod.cpu_has_avx2()
    assert (mod.cpu_isa_missing(2) == "") == mod.cpu_has_avx512()


@pytest.mark.parametrize("path", ["avx512", "avx2", "portable"])
def test_bf16_without_native_support_unpacks_once_and_tracks_updates(monkeypatch, path):
    """Off AVX512-BF16 the packed weights are unpacked to fp32 once per tensor version:
    the same unpacked tensors serve every call, and an in-place update is seen."""
    if cpu_path_missing(path):
        pytest.skip(cpu_path_missing(path))
    monkeypatch.setenv(ENV, path)
    kernels = backends.cpu_kernels()
    params = random_mlp_params(E=2, sizes=(5, 24, 6), bf16=True, gaussian=False)
    x = torch.randn(2, 9, 5)
    first = ensemble_mlp(x, params, backend="cpu")
    if kernels.native_bf16:
        assert _cpu.mlp_desc(params, kernels)[1] is params.weights
        return
    unpacked = _cpu.mlp_desc(params, kernels)[1]
    assert unpacked is _cpu.mlp_desc(params, kernels)[1]  # cached
    assert all(w.dtype == torch.float32 for w in unpacked)
    with torch.no_grad():
        params.weights[0].mul_(-1)  # in place: _version changes
    again = _cpu.mlp_desc(params, kernels)[1]
    assert again is not unpacked
    torch.testing.assert_close(again[0], -unpacked[0])
    second = ensemble_mlp(x, params, backend="cpu")
    assert not torch.allclose(first, second)
    torch.testing.assert_close(second, ensemble_mlp(x, params, backend="reference"),
                               **TOL["bf16"])


def test_bf16_on_every_path(monkeypatch):
    """Natively (AVX512-BF16) or unpacked to fp32, bf16 weights agree with the reference
    (whose layer inputs are rounded to bf16) within the bf16 tolerance, at planner size."""
    params = random_mlp_params(E=3, sizes=(24, 200, 200, 36), bf16=True)
    x = torch.randn(3, 50, 24)
    ref = ensemble_mlp(x, params, backend="reference")
    for path in ("avx512", "avx2", "portable"):
        if cpu_path_missing(path):
            continue
        monkeypatch.setenv(ENV, path)
        for g, r in zip(ensemble_mlp(x, params, backend="cpu"), ref, strict=True):
            torch.testing.assert_close(g, r, **TOL["bf16"])


@pytest.mark.parametrize("path,members,batch,sizes,threads,compiled", [
    ("avx2", 5, 1000, (24, 200, 200, 200, 200, 36), 2, True),  # a planning batch
    ("avx2", 1, 1, (4, 8, 4), 2, True),  # tiny: the reference's launches cost more
    ("avx2", 1, 2, (512, 1024, 1024, 512), 1, False),  # batch < 4 through wide layers
    ("avx2", 1, 64, (512, 1024, 512), 2, False),  # one task: the kernel would use 1 thread
    ("avx2", 1, 64, (512, 1024, 512), 1, True),
    ("avx2", 2, 64, (512, 1024, 512), 2, True),
    ("portable", 1, 1, (4, 8, 4), 2, True),
    ("portable", 5, 1000, (24, 200, 200, 200, 200, 36), 2, False),  # MKL beats generic code
])
def test_auto_rule_for_ensemble_mlp(monkeypatch, path, members, batch, sizes, threads, compiled):
    monkeypatch.setenv(ENV, path)
    monkeypatch.setattr(backends, "_cpu_missing", lambda isa: "")
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    size = {"members": members, "batch": batch, "sizes": sizes}
    assert backends.cpu_beats_reference("ensemble_mlp", size) == compiled
    expect = "cpu" if compiled else "reference"
    assert backends.select("auto", torch.device("cpu"), ("cpu",), "ensemble_mlp", size) == expect
    assert backends.select("cpu", torch.device("cpu"), ("cpu",), "ensemble_mlp", size) == "cpu"
    assert backends.cpu_beats_reference("propagate")  # measured faster at every size


def test_auto_rule_reaches_ensemble_mlp(monkeypatch):
    """ensemble_mlp passes its sizes to the rule: a portable-path call past the threshold
    runs the reference (same results either way)."""
    monkeypatch.setenv(ENV, "portable")
    seen = []
    real = backends.cpu_beats_reference
    monkeypatch.setattr(backends, "cpu_beats_reference",
                        lambda op, size=None: seen.append((op, size)) or real(op, size))
    params = random_mlp_params(E=2, sizes=(5, 300, 300, 6), gaussian=False)
    ensemble_mlp(torch.randn(2, 300, 5), params)
    assert seen == [("ensemble_mlp", {"members": 2, "batch": 300, "sizes": (5, 300, 300, 6)})]
    assert not real(*seen[0])
