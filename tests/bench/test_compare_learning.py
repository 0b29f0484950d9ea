"""bench/compare_learning.py's bookkeeping on made-up curves (the script compares two
learning results: MB-MF against PPO from scratch)."""

from __future__ import annotations

import json

import pytest
from helpers import load_bench_script

compare_learning = load_bench_script("compare_learning")


def result(env_steps, returns, phase=None, env="HalfCheetah-v5"):
    run = {"env_steps": env_steps, "returns": returns}
    if phase is not None:
        run["phase"] = phase
    return {"env": env, "runs": {"0": run}}


BASE = result([100, 200, 300, 400, 500], [0.0, 10.0, 20.0, 30.0, 100.0])
# mpc reaches 25 at 60 steps, the ppo phase at 150
CAND = result([30, 60, 90, 120, 150], [5.0, 25.0, 10.0, 12.0, 26.0],
              ["random", "mpc", "dagger", "ppo", "ppo"])


def test_baseline_return_is_the_mean_of_the_last_points_up_to_the_steps():
    run = BASE["runs"]["0"]
    assert compare_learning.baseline_return(run, 400, 3) == pytest.approx(20.0)
    assert compare_learning.baseline_return(run, 450, 2) == pytest.approx(25.0)
    assert compare_learning.baseline_return(run, 600, 3) is None  # the run is shorter


def test_crossing_any_phase_and_only_the_counted_phases():
    row = compare_learning.compare(CAND, BASE, 400, 1 / 3, 3, {"ppo"})["0"]
    assert row["baseline_return_at_steps"] == 20.0
    assert row["crossing_steps_any_phase"] == 60 and row["fraction_any_phase"] == 0.15
    assert row["crossing_steps_phases"] == 150
    assert row["met"] is False  # 150 > 400 / 3
    row = compare_learning.compare(CAND, BASE, 500, 1 / 3, 3, {"ppo"})["0"]  # threshold 50
    assert row["crossing_steps_phases"] is None and row["met"] is False
    assert "stops before" in row["note"]  # 150 steps < 500 / 3
    row = compare_learning.compare(CAND, BASE, 400, 0.5, 3, None)["0"]
    assert row["met"] is True and "crossing_steps_phases" not in row


def test_main_writes_json_and_png(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(compare_learning, "RESULTS", tmp_path)
    a, b = tmp_path / "learning_a.json", tmp_path / "learning_b.json"
    a.write_text(json.dumps(CAND))
    b.write_text(json.dumps(BASE))
    assert compare_learning.main([str(a), str(b), "--baseline-steps", "400", "--within", "0.5",
                                  "--phases", "ppo", "--name", "x"]) == 0
    out = json.loads((tmp_path / "learning_x.json").read_text())
    assert out["per_seed"]["0"]["crossing_steps_phases"] == 150 and out["all_seeds_met"]
    assert (tmp_path / "learning_x.png").read_bytes()[:4] == b"\x89PNG"
    # without a target question: only the plot, with every result's final and best return
    assert compare_learning.main([str(a), str(b), "--name", "z"]) == 0
    out = json.loads((tmp_path / "learning_z.json").read_text())
    assert out["final_return"] == {"a": {"0": 26.0}, "b": {"0": 100.0}} and "per_seed" not in out
    with pytest.raises(SystemExit, match="one per result"):
        compare_learning.main([str(a), str(b), "--labels", "x", "--name", "z"])
    other = tmp_path / "learning_c.json"
    other.write_text(json.dumps(result([1], [1.0], env="Hopper-v5")))
    with pytest.raises(SystemExit, match="different tasks"):
        compare_learning.main([str(a), str(other), "--baseline-steps", "1", "--within", "1",
                               "--name", "y"])
