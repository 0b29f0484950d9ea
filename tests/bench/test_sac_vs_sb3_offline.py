"""bench/sac_vs_sb3_offline.py: the dataset is a real chain of env steps (reset only after a
termination), both learners train on it and the JSON holds both curves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import load_bench_script

pytest.importorskip("mujoco")
pytest.importorskip("stable_baselines3")


def _load():
    return load_bench_script("sac_vs_sb3_offline")


def test_collect_chains_steps_and_resets_after_termination():
    data = _load().collect("Hopper-v5", 400, seed=0)
    assert data["obs"].shape == (400, 11) and data["act"].shape == (400, 3)
    assert np.abs(data["act"]).max() <= 1.0
    ended = data["terminated"][:-1].astype(bool)
    assert ended.any()  # random actions make Hopper fall within 400 steps
    chained = np.all(data["next_obs"][:-1] == data["obs"][1:], axis=1)
    assert chained[~ended].all() and not chained[ended].any()


def test_both_learners_run_on_the_data_and_the_json_holds_both(tmp_path):
    out = tmp_path / "r.json"
    assert _load().main(["--rows", "300", "--updates", "4", "--every", "2", "--probe", "20",
                         "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["curves"]) == {"mbrl-fast", "sb3"}
    for lib in result["curves"].values():
        assert set(lib) == {"0", "1"}
        assert [p["updates"] for p in lib["0"]] == [2, 4]
        assert all(np.isfinite(p["q_probe"]) and p["alpha"] > 0 for p in lib["0"])
    assert set(result["max_relative_gap"]) == {"q_probe", "alpha"}


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        _load().main(["--updates", "10", "--every", "3"])
