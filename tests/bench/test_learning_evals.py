"""bench/learning.py's many-episode evaluations (``--evals``: `mbrl-fast eval --json` files of
a run's kept checkpoints) on made-up runs."""

from __future__ import annotations

import json

import pytest
from helpers import load_bench_script

learning = load_bench_script("learning")
TARGET = dict(kind="trial", threshold=2500.0, within=3)  # 3 epochs of 1,000 steps


def eval_file(tmp_path, name, env_steps, mean, seed=0, episodes=50):
    path = tmp_path / name
    data = dict(env_steps=env_steps, episodes=episodes, mean=mean, std=600.0,
                standard_error=600.0 / episodes ** 0.5)
    if seed is not None:
        data["seed"] = seed
    path.write_text(json.dumps(data))
    return path


def runs():
    return {0: {"env_steps": [1000, 2000, 3000, 4000], "returns": [1.0, 2.0, 3.0, 4.0]}}


def test_evals_attach_to_their_seed_sorted_by_steps(tmp_path):
    r = runs()
    learning.read_evals([eval_file(tmp_path, "b.json", 3000, 2600.0),
                         eval_file(tmp_path, "a.json", 2000, 2400.0, seed=None)], r)
    evals = r[0]["multi_episode_evals"]
    assert [e["env_steps"] for e in evals] == [2000, 3000]
    assert evals[0]["file"] == "a.json" and evals[1]["standard_error"] == pytest.approx(84.9)


def test_a_kept_file_gives_one_point_per_checkpoint(tmp_path):
    r = runs()
    path = tmp_path / "kept.json"
    path.write_text(json.dumps(dict(seed=0, evaluations=[
        dict(env_steps=s, episodes=10, mean=m, std=100.0, standard_error=31.6)
        for s, m in [(3000, 2600.0), (1000, 900.0)]])))
    learning.read_evals([path, eval_file(tmp_path, "b.json", 2000, 2400.0)], r)
    evals = r[0]["multi_episode_evals"]
    assert [(e["env_steps"], e["mean"], e["file"]) for e in evals] == [
        (1000, 900.0, "kept.json"), (2000, 2400.0, "b.json"), (3000, 2600.0, "kept.json")]


def test_an_eval_of_another_seed_or_without_one_among_seeds_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="evaluation of seed 1"):
        learning.read_evals([eval_file(tmp_path, "a.json", 2000, 1.0, seed=1)], runs())
    two = {**runs(), 1: runs()[0]}
    with pytest.raises(SystemExit, match="does not name its seed and there are 2 runs"):
        learning.read_evals([eval_file(tmp_path, "a.json", 2000, 1.0, seed=None)], two)


@pytest.mark.parametrize("evals, expected", [
    ([(2000, 2400.0), (3000, 2600.0)], 3000),  # the first mean at or above the threshold
    ([(2000, 2500.0), (3000, 2600.0)], 2000),
    ([(2000, 2400.0), (4000, 2600.0)], None),  # reached only past the step budget
    ([], None)])
def test_the_first_checkpoint_whose_mean_reaches_the_target(evals, expected):
    run = runs()[0]
    run["multi_episode_evals"] = [dict(env_steps=s, episodes=50, mean=m, standard_error=80.0)
                                  for s, m in evals]
    got = learning._evals_reaching(run, TARGET)
    assert (got and got["env_steps"]) == expected


def test_the_png_draws_the_evaluations(tmp_path):
    pytest.importorskip("matplotlib")
    r = runs()
    learning.read_evals([eval_file(tmp_path, "a.json", 3000, 2600.0)], r)
    learning.plot("mbpo", "Hopper-v5", r, TARGET, tmp_path / "x.png")
    with_points = (tmp_path / "x.png").read_bytes()
    del r[0]["multi_episode_evals"]
    learning.plot("mbpo", "Hopper-v5", r, TARGET, tmp_path / "y.png")
    assert with_points[:4] == b"\x89PNG" and with_points != (tmp_path / "y.png").read_bytes()


def test_the_summary_says_what_met_rests_on(tmp_path):
    """One lucky evaluation episode meets a "trial" target; the many-episode evaluations of
    the kept checkpoints are reported beside it, not folded into it."""
    target = dict(TARGET, text="made up")
    learning.TARGETS[("mbpo", "Made-v0")] = target
    try:
        r = {0: {"env_steps": [1000, 2000, 3000], "returns": [100.0, 2900.0, 700.0]}}
        out = learning.summarize("mbpo", "Made-v0", r)
        assert out["all_seeds_met"] and out["trials_to_target"] == {0: 2}
        assert "one for MBPO" in out["target_evidence"]
        assert "all_seeds_met_multi_episode" not in out
        learning.read_evals([eval_file(tmp_path, "a.json", 2000, 800.0)], r)
        out = learning.summarize("mbpo", "Made-v0", r)
        assert out["all_seeds_met"] and out["all_seeds_met_multi_episode"] is False
        assert out["multi_episode_target"] == {0: None}
    finally:
        del learning.TARGETS[("mbpo", "Made-v0")]


@pytest.mark.parametrize("nice, says", [(19, "runs under nice -n 19"), (0, "runs not niced"),
                                        (None, "collected from existing runs")])
def test_the_machine_note_claims_only_the_nice_level_it_knows(nice, says):
    note = learning.machine_note(nice)
    assert says in note and note.count("nice") == ("nice" in says)
