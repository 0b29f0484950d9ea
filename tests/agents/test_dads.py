"""The DADS agent: the protocol (journal records with the skill, exact continuation from a
checkpoint, restored records), evaluation, the CLI's eval --goals, and bad input."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
import torch

from mbrl_fast.agents import get_agent
from mbrl_fast.agents.base import check_units
from mbrl_fast.agents.dads import DADS, FIELDS
from mbrl_fast.cli import main

pytest.importorskip("gymnasium")

ENV = "MBRLFast/PointMass-v0"
TINY = dict(steps=600, samples_per_iteration=200, num_envs=2, episode_steps=50, prior_samples=16,
            policy_steps=4, eval_every=0, goal_steps=30,
            skill_dynamics=dict(hidden=32, steps=4), sac=dict(hidden=32, batch_size=32),
            planner=dict(candidates=8, refine_steps=2))
TINY_CLI = ["--steps", "400", "--set", "samples_per_iteration=200", "--set", "episode_steps=50",
            "--set", "prior_samples=16", "--set", "policy_steps=4", "--set", "goal_steps=30",
            "--set", "skill_dynamics.hidden=32", "--set", "sac.hidden=32",
            "--set", "planner.candidates=8", "--set", "planner.refine_steps=2"]


def tiny(**kw) -> DADS:
    return DADS(DADS.make_config(ENV, **{**TINY, **kw}))


def without_timings(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.endswith("_s")}


def test_registered_and_protocol_complete():
    assert get_agent("dads") is DADS
    check_units(DADS)
    assert DADS.total_iterations(DADS.make_config(ENV, **TINY)) == 3


def test_iterations_journal_every_transition_with_its_skill():
    agent = tiny()
    journal = []
    try:
        for i in range(2):
            row = agent.run_iteration(i, record=lambda **f: journal.append(f))
            assert set(FIELDS) <= set(row) and row["env_steps"] == 200 * (i + 1)
            assert np.isfinite([row[k] for k in ("intrinsic_reward", "q_loss", "q_error",
                                                 "critic_loss")]).all()
        records = agent.records()
        assert len(records) == len(journal) == 400 and records.dtype == agent.journal_dtype()
        np.testing.assert_array_equal(records["skill"], np.array([j["skill"] for j in journal]))
        np.testing.assert_array_equal(records["obs"], np.array([j["obs"] for j in journal]))
        assert np.abs(records["skill"]).max() <= 1 and np.abs(records["act"]).max() <= 1
        for it in range(2):  # 2 envs in lockstep, each 2 episodes of 50 steps per iteration
            for env in range(2):
                rec = records[200 * it + env:200 * (it + 1):2]  # env by env within a round
                assert (np.flatnonzero(rec["truncated"]) == [49, 99]).all()
                np.testing.assert_array_equal(rec["next_obs"][:49], rec["obs"][1:50])
                for ep in (rec[:50], rec[50:]):  # one skill per episode
                    assert (ep["skill"] == ep["skill"][0]).all()
                assert (rec["skill"][0] != rec["skill"][50]).any()
    finally:
        agent.close()


def test_checkpoint_continues_exactly():
    a, b = tiny(), tiny(seed=0)
    try:
        for i in range(2):
            a.run_iteration(i)
        buf = io.BytesIO()  # as a checkpoint: through torch.save / load(weights_only=True)
        torch.save(a.state_dict(), buf)
        buf.seek(0)
        b.load_state_dict(torch.load(buf, weights_only=True))
        row_a, row_b = a.run_iteration(2), b.run_iteration(2)
        assert json.dumps(without_timings(row_a)) == json.dumps(without_timings(row_b))
        np.testing.assert_array_equal(a.records(), b.records())
    finally:
        a.close()
        b.close()


def test_restored_records_are_trained_on():
    a = tiny()
    try:
        a.run_iteration(0)
        held = a.records()
        b = tiny()
        b.load_state_dict(a.state_dict())
        b.restore(held[-30:])  # an interrupted attempt's journal
        assert b.pending == 30 and len(b.records()) == len(held) + 30
        b.run_iteration(1, attempt=1)
        # the iteration ends at its 400th env step: 30 restored + 170 collected
        assert b.pending == 0 and b.history[-1]["env_steps"] == len(held) + 200
        b.close()
    finally:
        a.close()


def test_evaluate_and_goal_evaluation(tmp_path):
    agent = tiny()
    try:
        agent.run_iteration(0)
        returns = agent.evaluate(2, seed=3)
        assert len(returns) == 2 and all(r < 0 for r in returns)
        frames, env = [], agent.task.make_env()  # the CLI's render env: the first goal's
        assert agent.evaluate(2, seed=3, env=env, on_frame=lambda e: frames.append(e)) == returns
        assert len(frames) == 30 and all(f is env for f in frames)
        env.close()
        out = agent.evaluate_goals(3, seed=5, out=tmp_path / "goals")
        assert 0.0 <= out["success"] <= 1.0 and len(out["final_over_initial"]) == 3
        assert (tmp_path / "goals.png").stat().st_size > 10_000
        saved = json.loads((tmp_path / "goals.json").read_text())
        assert saved["skills_moving"].endswith("of 64") and saved["goals"] == 3
    finally:
        agent.close()


def test_bad_config():
    with pytest.raises(ValueError, match="skill_dim must be an int >= 1"):
        tiny(skill_dim=0)
    with pytest.raises(ValueError, match=r"prior_samples \(L\) must be an int >= 2"):
        tiny(prior_samples=1)
    with pytest.raises(ValueError, match="declares no x-y"):
        DADS(DADS.make_config("Reacher-v5", skill_dynamics=dict(xy_prior=True)))
    with pytest.raises(ValueError, match="policy_obs_limit must be an int >= 0"):
        tiny(policy_obs_limit=-1)


def test_policy_reads_the_first_coordinates_without_xy():
    """policy_obs_limit=3 on the point mass (x, y, vx, vy): pi sees vx and the skill only,
    the x-y of the skill dynamics' prior stays hidden either way."""
    full, limited = tiny(), tiny(policy_obs_limit=3)
    obs = np.array([[1.0, 2.0, 3.0, 4.0]])
    skill = np.array([[0.5, -0.5]])
    assert full.policy_obs(obs, skill).tolist() == [[3.0, 4.0, 0.5, -0.5]]
    assert limited.policy_obs(obs, skill).tolist() == [[3.0, 0.5, -0.5]]
    assert limited.act(obs, skill).shape == (1, 2)


def test_ant_preset_is_the_authors_observation_and_entropy_target():
    """The authors' Ant policy reads qpos + qvel without x-y (27 numbers, no contact
    forces) and tunes alpha to -|A| / 2."""
    agent = DADS(DADS.make_config("Ant-v5", num_envs=1))
    try:
        assert agent.policy_keep == list(range(2, 29))
        assert agent.sac.target_entropy == -4.0
    finally:
        agent.close()


# ---- through the CLI -----------------------------------------------------------------------

def _snapshot(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("sac") / "run"
    assert main(["train", "sac", "--env", "Pendulum-v1", "--steps", "100", "--set",
                 "epoch_length=50", "--set", "initial_random_steps=50", "--set",
                 "eval_episodes=1", "--run-dir", str(run), "--no-progress"]) == 0
    return run


def test_cli_train_and_eval_goals(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "dads", "--env", ENV, *TINY_CLI, "--run-dir", str(run),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--goals", "2", "--seed", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["goals"] == 2 and summary["iterations"] == 2
    assert (run / "eval_goals.png").exists() and (run / "eval_goals.json").exists()


def test_eval_goals_of_an_agent_without_it(sac_run, capsys):
    assert main(["eval", str(sac_run), "--goals", "2"]) == 2
    assert "agent 'sac' has no goal evaluation" in capsys.readouterr().err


def test_resume_of_another_agents_run_changes_nothing(sac_run, capsys):
    before = _snapshot(sac_run)
    assert main(["train", "dads", "--resume", str(sac_run), "--no-progress"]) == 2
    assert "is a 'sac' run, not 'dads'" in capsys.readouterr().err
    assert _snapshot(sac_run) == before


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
