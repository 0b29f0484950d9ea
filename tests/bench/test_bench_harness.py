"""The benchmark harness: timing, progress, kernel paths, machine info, configs, the shared
ensemble, FLOP counts, tables, the results file."""

from __future__ import annotations

import json

import pytest
import torch

from mbrl_fast import backends
from mbrl_fast.benchmarks import configs, harness, isa
from mbrl_fast.benchmarks.progress import Progress, format_seconds
from mbrl_fast.ops.ensemble_mlp import check_params, ensemble_mlp_reference, unpack_bf16


def test_time_fn_warms_up_then_times_each_repeat():
    calls = []
    t = harness.time_fn(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6
    assert len(t.times) == 4 and all(x >= 0 for x in t.times)
    assert t.min <= t.median <= max(t.times)
    assert set(t.to_dict()) == {"median_s", "min_s", "times_s"}


def test_time_round_robin_interleaves_the_repeats():
    order = []
    timings = harness.time_round_robin({"a": lambda: order.append("a"),
                                        "b": lambda: order.append("b")}, repeats=3, warmup=1)
    assert order == ["a", "b"] + ["a", "b"] * 3
    assert set(timings) == {"a", "b"} and all(len(t.times) == 3 for t in timings.values())
    with pytest.raises(ValueError, match="repeats"):
        harness.time_round_robin({"a": lambda: None}, repeats=0)


def test_on_call_brackets_every_call_outside_the_timing():
    events = []
    harness.time_round_robin({"a": lambda: None, "b": lambda: None}, repeats=2, warmup=1,
                             on_call=lambda *e: events.append(e))
    labels = [(name, label) for name, label, seconds in events if seconds is not None]
    assert labels == [("a", "warm-up 1/1"), ("b", "warm-up 1/1"), ("a", "repeat 1/2"),
                      ("b", "repeat 1/2"), ("a", "repeat 2/2"), ("b", "repeat 2/2")]
    assert [e[2] is None for e in events] == [True, False] * 6  # before, after


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_estimates_what_is_left_from_measured_rates():
    lines, clock = [], FakeClock()
    p = Progress(lines.append, clock)
    p.expect("fast", 10.0, 3)
    p.expect("slow", 10.0, 3)
    p.expect("slow", 50.0, 1)  # a bigger call of a measured implementation
    assert p.left() is None  # nothing measured yet
    p.call("pop 5", "fast", "warm-up 1/1", 10.0, None)
    assert "its first call" in lines[-1]
    clock.now += 2.0
    p.call("pop 5", "fast", "warm-up 1/1", 10.0, 2.0)  # 0.2 s per GFLOP
    # slow is unmeasured: the slowest measured rate stands in for it.
    assert p.left() == pytest.approx(2 * 2.0 + 3 * 2.0 + 10.0)
    assert "elapsed 0:02" in lines[-1] and "left ~0:20" in lines[-1]
    p.call("pop 5", "slow", "warm-up 1/1", 10.0, 6.0)  # 0.6 s per GFLOP
    assert p.left() == pytest.approx(2 * 2.0 + 2 * 6.0 + 30.0)
    p.drop("slow", 50.0)
    p.drop("slow", 50.0)  # dropping what is not expected is a no-op
    assert p.left() == pytest.approx(2 * 2.0 + 2 * 6.0)
    p.call("pop 5", "slow", "repeat 1/2", 10.0, None)
    assert "running" not in lines[-1]  # 6 s: not announced


def test_progress_announces_slow_calls():
    lines = []
    p = Progress(lines.append, FakeClock())
    p.call("x", "a", "warm-up 1/1", 1.0, 30.0)
    p.call("x", "a", "repeat 1/1", 1.0, None)
    assert "running (~0:30)" in lines[-1]


@pytest.mark.parametrize("seconds,text", [(None, "?"), (7.4, "0:07"), (161, "2:41"),
                                          (3723, "1:02:03")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_forced_kernel_path_is_set_then_restored(monkeypatch):
    monkeypatch.setenv(isa.ENV_VAR, "portable")
    with isa.forced("avx2"):
        assert __import__("os").environ[isa.ENV_VAR] == "avx2"
    with isa.forced(None):
        assert isa.ENV_VAR not in __import__("os").environ
    assert __import__("os").environ[isa.ENV_VAR] == "portable"
    monkeypatch.delenv(isa.ENV_VAR)
    with pytest.raises(KeyError), isa.forced("portable"):
        raise KeyError
    assert isa.ENV_VAR not in __import__("os").environ


def test_cpu_isa_names_a_path_and_forcing_reports_why_not():
    assert isa.cpu_isa() in isa.PATHS + ("reference",)
    for path in isa.PATHS:
        why = isa.unavailable(path)
        assert why is None or (isinstance(why, str) and why)
    with pytest.raises(ValueError, match="kernel path"):
        isa.unavailable("sse2")


@pytest.mark.skipif(not backends.is_available("cpu"), reason="mbrl_fast._C not built")
def test_cpu_isa_without_the_dispatch_api(monkeypatch):
    """Before backends.cpu_isa exists: derived from _C's AVX-512 check and the variable."""
    monkeypatch.delattr(backends, "cpu_isa", raising=False)
    has512 = backends.cpu_module().cpu_has_avx512()
    assert isa.cpu_isa() == ("avx512" if has512 else "portable")
    monkeypatch.setenv(isa.ENV_VAR, "portable")
    assert isa.cpu_isa() == "portable"
    monkeypatch.setenv(isa.ENV_VAR, "avx2")
    with pytest.raises(ValueError, match="no ISA dispatch"):
        isa.cpu_isa()
    assert "no ISA dispatch" in isa.unavailable("avx2")


def test_cpu_isa_uses_the_dispatch_api_when_there(monkeypatch):
    monkeypatch.setattr(backends, "cpu_isa", lambda: "avx2", raising=False)
    assert isa.cpu_isa() == "avx2"
    assert isa.unavailable("avx2") is None or not backends.is_available("cpu")
    assert "runs the avx2 kernels" in (isa.unavailable("portable") or "runs the avx2 kernels")


def test_timing_median_of_known_times():
    t = harness.Timing((3.0, 1.0, 2.0, 10.0, 4.0))
    assert t.median == 3.0 and t.min == 1.0


@pytest.mark.parametrize("kwargs", [dict(repeats=0), dict(repeats=1.5), dict(warmup=-1)])
def test_time_fn_rejects_bad_counts(kwargs):
    with pytest.raises(ValueError, match="repeats|warmup"):
        harness.time_fn(lambda: None, **kwargs)


def test_matmul_peak_is_positive():
    assert harness.matmul_peak_gflops(64, repeats=1) > 0
    assert harness.matmul_peak_gflops(64, repeats=1, dtype=torch.bfloat16) > 0


def test_machine_info_names_the_machine(monkeypatch):
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    info = harness.machine_info()
    for key in ("cpu_model", "cpu_vendor", "cpu_family", "cpu_model_number", "cpu_flags",
                "mbrl_fast_isa", "mbrl_fast_bf16_native", "torch_cpu_capability", "cores",
                "torch_threads", "torch_interop_threads", "torch_version", "date", "backends"):
        assert key in info
    assert info["torch_version"] == torch.__version__
    assert info["backends"]["reference"] is True
    assert set(info["cpu_flags"]) <= set(harness.RELEVANT_FLAGS)
    assert info["mbrl_fast_isa"] == isa.cpu_isa()
    assert info["env"]["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    for name in ("MBRL_FAST_CPU_KERNELS", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS"):
        assert name in info["env"]


def test_machine_info_survives_a_bad_kernel_variable(monkeypatch):
    monkeypatch.setenv(isa.ENV_VAR, "sse2")
    info = harness.machine_info()
    if backends.is_available("cpu"):
        assert info["mbrl_fast_isa"].startswith("error: ")
    assert info["env"]["MBRL_FAST_CPU_KERNELS"] == "sse2"


def test_format_table_aligns_columns():
    text = harness.format_table(["name", "x"], [["a", 1.23456], ["longer", None]])
    lines = text.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert "1.235" in lines[2] and lines[3].rstrip().endswith("-")


def test_headline_config_is_pets_halfcheetah():
    cfg = configs.get_config("pets-halfcheetah")
    assert cfg.sizes == (24, 200, 200, 200, 200, 36)
    assert (cfg.population, cfg.particles, cfg.horizon, cfg.iterations) == (500, 20, 30, 5)
    assert (cfg.num_elites, cfg.alpha, cfg.ensemble_size) == (50, 0.1, 5)
    # 2 (24*200 + 3*200*200 + 200*36) FLOP per row, 500*20*30*5 rows.
    assert configs.matmul_gflop_per_act(cfg) == pytest.approx(264_000 * 1_500_000 / 1e9)
    assert configs.matmul_gflop_per_act(cfg, population=100, starts=16) == pytest.approx(
        16 * configs.matmul_gflop_per_act(cfg) / 5)


def test_get_config_overrides_and_rejects_unknown():
    assert configs.get_config("tiny", population=40).population == 40
    with pytest.raises(ValueError, match="config must be one of"):
        configs.get_config("nope")


def test_make_params_is_seeded_and_valid():
    cfg = configs.get_config("tiny")
    a, b = configs.make_params(cfg), configs.make_params(cfg)
    c = configs.make_params(configs.get_config("tiny", seed=1))
    assert check_params(a) == cfg.sizes
    assert all(torch.equal(x, y) for x, y in zip(a.weights, b.weights, strict=True))
    assert not torch.equal(a.weights[0], c.weights[0])
    bound = 1 / cfg.sizes[0] ** 0.5
    assert a.weights[0].abs().max() <= bound


def test_bf16_params_hold_the_same_weights():
    cfg = configs.get_config("tiny")
    fp32 = configs.make_params(cfg)
    bf16 = configs.to_bf16(fp32)
    assert bf16.is_bf16 and check_params(bf16) == cfg.sizes
    for l, (w32, w16) in enumerate(zip(fp32.weights, bf16.weights, strict=True)):
        torch.testing.assert_close(unpack_bf16(w16, cfg.sizes[l]), w32, rtol=1e-2, atol=1e-3)
    x = torch.randn(cfg.ensemble_size, 7, cfg.sizes[0])
    m32, _ = ensemble_mlp_reference(x, fp32)
    m16, _ = ensemble_mlp_reference(x, bf16)
    torch.testing.assert_close(m16, m32, rtol=5e-2, atol=5e-2)


def test_start_states_are_seeded():
    cfg = configs.get_config("tiny")
    s = configs.start_states(cfg, 3)
    assert s.shape == (3, cfg.obs_dim)
    assert torch.equal(s, configs.start_states(cfg, 3))


def test_write_json_makes_the_folder_and_ends_with_a_newline(tmp_path):
    path = tmp_path / "new" / "result.json"
    harness.write_json(path, {"a": [1, 2]})
    assert path.read_text() == '{\n "a": [\n  1,\n  2\n ]\n}\n'
    harness.write_json(path, {"b": 1}, indent=2)
    assert path.read_text() == '{\n  "b": 1\n}\n'


def test_write_json_that_fails_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "result.json"
    harness.write_json(path, {"kept": True})
    with pytest.raises(TypeError, match="not JSON serializable"):
        harness.write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"kept": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]  # no temporary left
