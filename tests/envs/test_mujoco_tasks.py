"""The batched torch rewards / terminations against the real gymnasium v5 MuJoCo envs.

Each test runs ~100 random-action steps with fixed seeds (resetting on termination)
and compares reward_fn / termination_fn of the recorded transitions with what the env
returned, in float64 (the env's dtype) and float32 (what planners use).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")
from mbrl_fast.envs import get_task  # noqa: E402
from mbrl_fast.envs import mujoco_tasks as mt  # noqa: E402
from mbrl_fast.ops import rewards  # noqa: E402
from mbrl_fast.ops.contract import RewardKind  # noqa: E402

STEPS = 100
TOL = 1e-4
EXACT = ["InvertedPendulum-v5", "Reacher-v5", "Pusher-v5", "HalfCheetah-v5", "Walker2d-v5",
         "Swimmer-v5"]


def rollout(env_id: str, steps: int = STEPS, seed: int = 0, probe=None):
    """Random-action transitions: obs, act, next_obs [T, .] float64, reward [T], terminated [T].

    probe(env) is called after every step; its values come back as a list.
    """
    env = get_task(env_id).make_env()
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    rec = {k: [] for k in ("obs", "act", "next_obs", "reward", "terminated", "info", "probe")}
    for _ in range(steps):
        act = env.action_space.sample()
        nxt, reward, terminated, truncated, info = env.step(act)
        step = (obs, act, nxt, reward, terminated, info)
        for key, value in zip(list(rec)[:6], step, strict=True):
            rec[key].append(value)
        rec["probe"].append(probe(env) if probe else None)
        obs = nxt
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    out = {k: torch.tensor(np.array(rec[k]), dtype=torch.float64)
           for k in ("obs", "act", "next_obs", "reward")}
    out["terminated"] = torch.tensor(rec["terminated"])
    out["info"], out["probe"] = rec["info"], rec["probe"]
    return out


def evaluate(env_id, data, dtype):
    task = get_task(env_id)
    args = [data[k].to(dtype) for k in ("obs", "act", "next_obs")]
    return task.reward_fn(*args).double(), task.termination_fn(*args)


@pytest.mark.parametrize("env_id", EXACT)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_exact_tasks_match_env(env_id, dtype):
    """reward_fn / termination_fn equal the env's reward / terminated on every step."""
    data = rollout(env_id)
    reward, terminated = evaluate(env_id, data, dtype)
    assert reward.shape == (STEPS,) and terminated.dtype == torch.bool
    torch.testing.assert_close(reward, data["reward"], rtol=0, atol=TOL)
    assert torch.equal(terminated, data["terminated"])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_hopper_matches_env(dtype):
    """Hopper's health check needs |qvel| < 100, which the [-10, 10]-clipped observation
    cannot show (Task.reward_exact is False for that reason alone). In these rollouts no
    joint speed reaches 100, so reward and termination must match exactly; the rollout
    also terminates at least once, so the health check is exercised."""
    data = rollout("Hopper-v5", steps=150)
    reward, terminated = evaluate("Hopper-v5", data, dtype)
    assert data["terminated"].any()
    torch.testing.assert_close(reward, data["reward"], rtol=0, atol=TOL)
    assert torch.equal(terminated, data["terminated"])


def test_inverted_pendulum_terminates_in_rollout():
    """The exact-task test above covers termination only if the pole falls: check it does."""
    assert rollout("InvertedPendulum-v5")["terminated"].sum() >= 3


def test_inverted_double_pendulum_close_to_env():
    """Not exact: the env reads the tip from site_xpos, MuJoCo's kinematics of the last RK4
    stage (~1e-5 m from the tip of the observed angles), and clips the observed angular
    velocities to [-10, 10]. Where no velocity is clipped the reward must agree to 1e-3 and
    the termination exactly (the rollout terminates, so the threshold y <= 1 is crossed)."""
    data = rollout("InvertedDoublePendulum-v5")
    reward, terminated = evaluate("InvertedDoublePendulum-v5", data, torch.float64)
    unclipped = (data["next_obs"][:, 5:8].abs() < 10).all(dim=-1)
    assert unclipped.float().mean() > 0.9 and data["terminated"].sum() >= 3
    torch.testing.assert_close(reward[unclipped], data["reward"][unclipped], rtol=0, atol=1e-3)
    assert torch.equal(terminated, data["terminated"])
    # the velocity penalty alone is exact where nothing is clipped
    w1, w2 = data["next_obs"][:, 6], data["next_obs"][:, 7]
    env_vel = torch.tensor([i["velocity_penalty"] for i in data["info"]], dtype=torch.float64)
    torch.testing.assert_close((-1e-3 * w1**2 - 5e-3 * w2**2)[unclipped], env_vel[unclipped],
                               rtol=0, atol=1e-9)


def test_ant_matches_env_up_to_stale_torso_position():
    """Not exact: Ant-v5's forward velocity reads the torso's data.xpos, the kinematics of the
    last RK4 stage, not qpos[0] of the observation. Checked: (1) control + contact + healthy
    terms and the termination are exact; (2) the forward-reward difference of every step is
    exactly (s_t - s_{t-1}) / dt with s = xpos[0] - qpos[0] after the step (s = 0 at reset,
    where mj_forward refreshes the kinematics), i.e. the error telescopes."""
    stale = lambda env: float(env.unwrapped.data.body(1).xpos[0] - env.unwrapped.data.qpos[0])  # noqa: E731
    data = rollout("Ant-v5", probe=stale)
    reward, terminated = evaluate("Ant-v5", data, torch.float64)
    assert torch.equal(terminated, data["terminated"]) and data["terminated"].any()
    env_forward = torch.tensor([i["reward_forward"] for i in data["info"]], dtype=torch.float64)
    ours_forward = (data["next_obs"][:, 0] - data["obs"][:, 0]) / mt.ANT_DT
    torch.testing.assert_close(reward - ours_forward, data["reward"] - env_forward,
                               rtol=0, atol=TOL)
    s = torch.tensor(data["probe"], dtype=torch.float64)
    s_before = torch.cat([torch.zeros(1, dtype=torch.float64), s[:-1]])
    s_before[1:][data["terminated"][:-1]] = 0.0  # reset after a terminal step
    torch.testing.assert_close(env_forward - ours_forward, (s - s_before) / mt.ANT_DT,
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("env_id", [t.env_id for t in mt.TASKS])
def test_task_metadata_matches_env(env_id):
    task = get_task(env_id)
    env = task.make_env()
    assert env.observation_space.shape == (task.obs_dim,)
    assert env.action_space.shape == (task.act_dim,)
    assert tuple(env.action_space.low.tolist()) == task.action_low
    assert tuple(env.action_space.high.tolist()) == task.action_high
    assert env.spec.max_episode_steps == task.max_episode_steps
    assert task.reward_exact == (env_id in EXACT)
    assert task.reward_exact or task.note
    env.close()


@pytest.mark.parametrize("env_id", [t.env_id for t in mt.TASKS])
def test_reward_fns_batch_over_leading_dims(env_id):
    """[2, 3, 5, D] inputs give [2, 3, 5] outputs equal to the row-by-row results."""
    task = get_task(env_id)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(2, 3, 5, task.obs_dim, generator=g)
    act = torch.rand(2, 3, 5, task.act_dim, generator=g) * 2 - 1
    nxt = obs + 0.1 * torch.randn(2, 3, 5, task.obs_dim, generator=g)
    for fn in (task.reward_fn, task.termination_fn):
        batched = fn(obs, act, nxt)
        assert batched.shape == (2, 3, 5)
        flat = zip(obs.reshape(30, -1), act.reshape(30, -1), nxt.reshape(30, -1), strict=True)
        rows = torch.stack([fn(o[None], a[None], n[None])[0] for o, a, n in flat])
        torch.testing.assert_close(batched.reshape(30), rows)


def test_halfcheetah_uses_the_fused_builtin():
    task = get_task("HalfCheetah-v5")
    assert task.builtin_reward == "halfcheetah"
    assert task.reward is rewards.BUILTIN["halfcheetah"]
    assert task.env_kwargs == {"exclude_current_positions_from_observation": False}
    assert get_task("Hopper-v5").reward.kind == RewardKind.TORCH  # no fused built-in
