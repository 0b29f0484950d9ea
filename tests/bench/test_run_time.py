"""bench/run_time.py's bookkeeping on made-up epoch series (the script reads how long a
learning run took, and would take, from its per-epoch phase timings)."""

from __future__ import annotations

import json

import pytest
from helpers import load_bench_script

run_time = load_bench_script("run_time")


def test_clean_replaces_paused_and_cut_short_epochs_by_their_neighbours_median():
    series = [100.0] * 4 + [400.0] + [100.0] * 4 + [10.0] + [100.0] * 3
    cleaned, replaced = run_time.clean(series, window=5, factor=1.5)
    assert replaced == [4, 9]
    assert cleaned == [100.0] * len(series)


def test_clean_keeps_a_growing_series_and_small_phases():
    growing = [100.0 + 10 * i for i in range(20)]  # model training grows with the data
    assert run_time.clean(growing, window=9, factor=1.5) == (growing, [])
    small = [0.5, 3.0, 0.4, 0.6, 0.5]  # a rollout phase of seconds: 3.0 is 6x, within 5 s
    assert run_time.clean(small, window=5, factor=1.5) == (small, [])


def test_clean_keeps_a_slow_period_longer_than_half_the_window():
    series = [100.0] * 6 + [200.0] * 6 + [100.0] * 6
    assert run_time.clean(series, window=5, factor=1.5)[1] == []


def result(update, model, steps_per_epoch=1000, budget=None):
    n = len(update)
    return {"runs": {"0": {
        "env_steps": [steps_per_epoch * (i + 1) for i in range(n)],
        "config": {"steps": (budget or n) * steps_per_epoch, "epoch_length": steps_per_epoch},
        "iteration_s": [u + m + 1.0 for u, m in zip(update, model, strict=True)],
        "update_s": list(update), "model_s": list(model)}}}


def run_with_reference(tmp_path, run: dict, ref: dict) -> dict:
    """run_time.main on the two results (window 3); the JSON it writes."""
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    (tmp_path / "run.json").write_text(json.dumps(run))
    out = tmp_path / "out.json"
    assert run_time.main([str(tmp_path / "run.json"), "--reference", str(tmp_path / "ref.json"),
                          "--window", "3", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_projection_scales_the_references_remaining_epochs_phase_by_phase(tmp_path):
    ref = result([200.0] * 10, [100.0 + 10 * i for i in range(10)])
    run = result([100.0] * 6, [50.0 + 5 * i for i in range(6)], budget=10)  # both phases 1/2
    data = run_with_reference(tmp_path, run, ref)
    p = data["projection"]
    assert p["phase_ratio"]["update_s"] == pytest.approx(0.5)
    assert p["phase_ratio"]["model_s"] == pytest.approx(0.5)
    assert p["phase_ratio"]["other_s"] == pytest.approx(1.0)  # 1 s of each epoch in both
    assert p["remaining_epochs"] == 4
    rest = 4 * 100.0 + sum(50.0 + 5 * i for i in range(6, 10)) + 4 * 1.0
    own = 6 * 100.0 + sum(50.0 + 5 * i for i in range(6)) + 6 * 1.0
    assert p["remaining_h"] == pytest.approx(rest / 3600, abs=1e-3)
    assert p["projected_h"] == pytest.approx((own + rest) / 3600, abs=1e-3)
    assert p["scaled_reference_h"] == pytest.approx((own + rest) / 3600, abs=1e-3)
    assert data["result"]["recorded_h"] == pytest.approx(own / 3600, abs=1e-3)


def test_a_finished_run_gets_its_scaled_reference_and_nothing_remaining(tmp_path):
    ref = result([200.0] * 10, [100.0] * 10)
    run = result([100.0] * 10, [300.0] * 10)  # SAC 1/2, model 3x
    data = run_with_reference(tmp_path, run, ref)
    p = data["projection"]
    assert p["remaining_epochs"] == 0 and p["remaining_h"] == 0
    assert p["projected_h"] == pytest.approx(data["result"]["cleaned_h"], abs=1e-3)
    assert p["scaled_reference_h"] == pytest.approx(10 * 401.0 / 3600, abs=1e-3)


def test_a_reference_shorter_than_the_budget_is_refused(tmp_path):
    (tmp_path / "ref.json").write_text(json.dumps(result([1.0] * 5, [1.0] * 5)))
    (tmp_path / "run.json").write_text(json.dumps(result([1.0] * 3, [1.0] * 3, budget=8)))
    with pytest.raises(SystemExit, match="fewer than the run's budget"):
        run_time.main([str(tmp_path / "run.json"), "--reference", str(tmp_path / "ref.json")])


def test_bad_arguments_are_named(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(result([1.0] * 3, [1.0] * 3)))
    with pytest.raises(SystemExit, match="--window must be an odd"):
        run_time.main([str(tmp_path / "run.json"), "--window", "4"])
    with pytest.raises(SystemExit, match="no run for seed '1'"):
        run_time.main([str(tmp_path / "run.json"), "--seed", "1"])
