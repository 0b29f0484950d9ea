"""bench/mbpo_diagnose.py: the simulator replays the buffer from observations, a model
shifted by a known reward bias shows exactly that bias, and the critic check runs whole
episodes; a run directory goes end to end into the JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import MBPO_TINY, load_bench_script

from mbrl_fast.agents.mbpo import MBPO
from mbrl_fast.runs import RunDir

pytest.importorskip("mujoco")

TINY = MBPO_TINY


def _load():
    return load_bench_script("mbpo_diagnose")


@pytest.fixture(scope="module")
def agent():
    a = MBPO(MBPO.make_config("Hopper-v5", **TINY))
    for i in range(2):
        a.run_iteration(i)
    yield a
    a.close()


def test_rebuilt_states_replay_the_buffer_and_a_known_reward_bias_is_measured(agent):
    diag = _load()
    before = diag.model_vs_sim(agent, rows=150)
    assert before["rows"] + before["rows_not_replayed"] == 150
    assert before["rows"] >= 140  # random Hopper steps rarely clip a velocity
    d_out = agent.model.out_dim
    last = agent.model.mlp.layers[-1].bias
    with torch.no_grad():
        last[:, d_out - 1] += 5.0  # the reward mean of every member
    try:
        after = diag.model_vs_sim(agent, rows=150)
    finally:
        with torch.no_grad():
            last[:, d_out - 1] -= 5.0
    for label in ("buffer_actions", "policy_actions"):
        assert after[label]["true_reward"] == pytest.approx(before[label]["true_reward"])
        for k in ("mean", "ts1"):
            shift = after[label][k]["reward_bias"] - before[label][k]["reward_bias"]
            assert shift == pytest.approx(5.0, abs=1e-3)
            m = after[label][k]
            assert 0.0 <= m["missed"] <= after[label]["true_terminated"]
            assert np.isfinite(m["next_state_rmse_in_std"]) and m["next_state_rmse_in_std"] > 0


def test_a_task_whose_observation_does_not_give_the_state_is_refused(agent):
    env = agent.task.make_env()
    with pytest.raises(ValueError, match="cannot be rebuilt"):
        _load().rebuild(env, np.zeros(7))
    env.close()


def test_critic_vs_mc_runs_episodes_to_their_end(agent):
    out = _load().critic_vs_mc(agent, episodes=2)
    assert len(out["episodes"]) == 2
    for e in out["episodes"]:
        assert 1 <= e["steps"] <= 1000 and np.isfinite(e["q0"])
    assert out["overestimation"] == pytest.approx(out["q0"] - out["soft_discounted_return"])
    for e in out["episodes"]:
        before_end = e["q_minus_return_to_go_before_end"]
        assert set(before_end) == {str(k) for k in _load().BEFORE_END if k <= e["steps"]}
        assert all(np.isfinite(v) for v in before_end.values())
        # a barely trained Hopper policy falls long before the time limit
        assert e["steps"] < 1000 and ("height" in e["ended"] or "angle" in e["ended"])


def test_why_ended_names_the_failed_health_check():
    import gymnasium as gym

    why_ended = _load().why_ended
    env = gym.make("Hopper-v5")
    env.reset(seed=0)
    u = env.unwrapped
    qpos, qvel = u.init_qpos.copy(), u.init_qvel.copy()
    assert why_ended(env, terminated=False) == "time limit"
    qpos[1] = 0.5
    u.set_state(qpos, qvel)
    assert why_ended(env, terminated=True).startswith("height +0.500 outside (0.7, inf)")
    qpos[1], qpos[2] = 1.25, -0.3
    u.set_state(qpos, qvel)
    assert why_ended(env, terminated=True).startswith("angle -0.300 outside")
    qpos[2], qvel[3] = 0.0, 150.0
    u.set_state(qpos, qvel)
    assert why_ended(env, terminated=True) == "state_vector()[9] +150.0 outside (-100.0, 100.0)"
    env.close()


def test_a_run_directory_goes_into_the_json(tmp_path):
    from mbrl_fast.cli import main as cli

    run = tmp_path / "run"
    args = ["train", "mbpo", "--env", "Hopper-v5", "--run-dir", str(run), "--no-progress"]
    for key, value in (("steps", 60), ("epoch_length", 60), ("initial_random_steps", 40),
                       ("model_train_freq", 20), ("rollout_batch", 100),
                       ("updates_per_step", 1), ("model.hidden", 16), ("model.layers", 2),
                       ("train.epochs", 1)):
        args += ["--set", f"{key}={value}"]
    assert cli(args) == 0
    assert RunDir(run).checkpoint_path.exists()
    out = tmp_path / "d.json"
    assert _load().main([str(run), "--rows", "50", "--episodes", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["algo"] == "mbpo" and result["env_steps"] == 60
    assert result["config"]["rollout_batch"] == 100 and "date" in result["machine"]
    assert set(result["model_vs_sim"]) >= {"buffer_actions", "policy_actions"}
    assert len(result["critic_vs_mc"]["episodes"]) == 1


def test_cap_check_runs_one_round_with_and_one_without_the_cap(agent):
    weights = {k: v.clone() for k, v in agent.model.state_dict().items()}
    out = _load().cap_check(agent, uncapped=6)
    cap = agent.config.train.epochs
    assert set(out) == {str(cap), "6"}
    assert out[str(cap)]["epochs"] <= cap and out["6"]["epochs"] <= 6
    assert out["6"]["epochs"] >= out[str(cap)]["epochs"]
    assert all(torch.equal(v, agent.model.state_dict()[k]) for k, v in weights.items())
