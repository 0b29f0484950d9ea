"""MBRLFast/CartpoleSwingup-v0: a real gymnasium env, its reward, and its physics."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import mbrl_fast.envs  # noqa: F401  (registers the env with gymnasium)
from mbrl_fast.envs import cartpole_swingup as cs
from mbrl_fast.envs import get_task

ENV_ID = "MBRLFast/CartpoleSwingup-v0"


def run(seed: int, actions: np.ndarray, env_id: str = ENV_ID):
    """obs [T + 1, 4], rewards [T] for a fixed action sequence [T, 1]."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    states, rewards = [obs], []
    for act in actions:
        obs, reward, terminated, truncated, _ = env.step(act)
        assert not terminated
        states.append(obs)
        rewards.append(reward)
    env.close()
    return np.array(states), np.array(rewards)


def test_make_reset_step_and_200_step_episodes():
    env = gym.make(ENV_ID)
    assert env.spec.max_episode_steps == 200 == get_task(ENV_ID).max_episode_steps
    obs, info = env.reset(seed=0)
    assert obs.shape == (4,) and obs.dtype == np.float64 and info == {}
    assert abs(obs[1]) < 0.5  # the pole starts hanging down (theta = 0)
    for t in range(200):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated and truncated == (t == 199)
    env.close()
    env = gym.make("mbrl_fast.envs:" + ENV_ID)  # gymnasium imports the module itself
    env.close()


def test_seeded_runs_are_deterministic():
    actions = np.random.default_rng(0).uniform(-1, 1, (50, 1)).astype(np.float32)
    s1, r1 = run(3, actions)
    s2, r2 = run(3, actions)
    s3, _ = run(4, actions)
    assert np.array_equal(s1, s2) and np.array_equal(r1, r2)
    assert not np.allclose(s1, s3)


def test_reward_fn_equals_env_reward_and_bounds():
    actions = np.random.default_rng(1).uniform(-1, 1, (150, 1)).astype(np.float32)
    states, rewards = run(0, actions)
    task = get_task(ENV_ID)
    obs, nxt = torch.tensor(states[:-1]), torch.tensor(states[1:])
    act = torch.tensor(actions, dtype=torch.float64)
    torch.testing.assert_close(task.reward_fn(obs, act, nxt), torch.tensor(rewards),
                               rtol=0, atol=1e-9)
    assert not task.termination_fn(obs, act, nxt).any()
    assert rewards.min() >= -cs.ACTION_COST and rewards.max() <= cs.MAX_STEP_REWARD
    assert cs.MAX_RETURN == 200.0


def test_reward_extremes():
    """1 with the tip on the target (upright, centred, no force); exp(-4) hanging down."""
    up = torch.tensor([[0.0, np.pi, 0.0, 0.0]], dtype=torch.float64)
    down = torch.zeros(1, 4, dtype=torch.float64)
    zero, full = torch.zeros(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
    assert cs.swingup_reward(up, zero, up).item() == pytest.approx(cs.MAX_STEP_REWARD, abs=1e-12)
    assert cs.swingup_reward(down, full, down).item() == pytest.approx(np.exp(-4.0) - 0.01)


def test_energy_is_conserved_without_friction(monkeypatch):
    """With b = 0 and no force, T + V is constant (a sign error in the coupling terms of the
    equations of motion would break this); with friction it only decreases. RK4 with the
    env's 0.01 s sub-step drifts by ~4e-6 J in 100 steps, so conservation is checked with
    0.001 s sub-steps (drift ~4e-11 J)."""
    def energy(s):
        x_dot, theta, theta_dot = s[2], s[1], s[3]
        m, l, M = cs.POLE_MASS, cs.POLE_LENGTH, cs.CART_MASS
        kinetic = (0.5 * (M + m) * x_dot**2 - 0.5 * m * l * np.cos(theta) * x_dot * theta_dot
                   + m * l * l / 6.0 * theta_dot**2)
        return kinetic - 0.5 * m * cs.GRAVITY * l * np.cos(theta)

    start = np.array([0.1, 2.0, 0.5, -1.0])
    monkeypatch.setattr(cs, "FRICTION", 0.0)
    monkeypatch.setattr(cs, "SUBSTEPS", 50)
    s, e0 = start, energy(start)
    for _ in range(40):
        s = cs.step_dynamics(s, 0.0)
        assert energy(s) == pytest.approx(e0, abs=1e-9)
    monkeypatch.setattr(cs, "FRICTION", 0.1)
    monkeypatch.setattr(cs, "SUBSTEPS", 5)
    s, previous = start, energy(start)
    for _ in range(100):
        s = cs.step_dynamics(s, 0.0)
        assert energy(s) <= previous + 1e-9
        previous = energy(s)


def test_pushing_right_moves_the_cart_right_and_the_tip_lags():
    s = cs.step_dynamics(np.zeros(4), 1.0)
    assert s[0] > 0 and s[2] > 0 and s[1] > 0  # theta > 0: tip x = x - l sin(theta) lags


def test_bad_action_and_render_mode():
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.unwrapped.step(np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        env.unwrapped.step(np.array([np.nan], dtype=np.float32))
    env.close()
    with pytest.raises(ValueError, match="render"):
        cs.CartpoleSwingupEnv(render_mode="human")
