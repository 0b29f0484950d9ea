"""The benchmark harness: timing, configs, the shared ensemble, FLOP counts, tables."""

from __future__ import annotations

import pytest
import torch

from mbrl_fast.benchmarks import configs, harness
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


def test_machine_info_names_the_machine():
    info = harness.machine_info()
    for key in ("cpu_model", "cores", "torch_threads", "torch_version", "date", "backends"):
        assert key in info
    assert info["torch_version"] == torch.__version__
    assert info["backends"]["reference"] is True


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
