"""MBRLFast/PointMass-v0: a real gymnasium env, its Task, and its physics."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import mbrl_fast.envs  # noqa: F401  (registers the env with gymnasium)
from mbrl_fast.envs import get_task
from mbrl_fast.envs import point_mass as pm

ENV_ID = "MBRLFast/PointMass-v0"


def test_make_reset_step_episode_length_and_task():
    env = gym.make(ENV_ID)
    task = get_task(ENV_ID)
    assert env.spec.max_episode_steps == pm.MAX_EPISODE_STEPS == task.max_episode_steps
    assert (task.obs_dim, task.act_dim) == (4, 2) and task.obs_features.drop == (0, 1)
    assert task.obs_view().obs_dim == 2  # a policy sees the velocity only
    obs, info = env.reset(seed=0)
    assert obs.shape == (4,) and obs.dtype == np.float64 and info == {}
    assert np.abs(obs[:2]).max() <= pm.INIT_POS
    for t in range(pm.MAX_EPISODE_STEPS):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert reward == 0.0 and not terminated and truncated == (t == pm.MAX_EPISODE_STEPS - 1)
    env.close()
    gym.make("mbrl_fast.envs:" + ENV_ID).close()  # gymnasium imports the module itself


def test_seeded_runs_are_deterministic_and_follow_the_dynamics():
    actions = np.random.default_rng(0).uniform(-1.5, 1.5, (30, 2))
    runs = []
    for seed in (3, 3, 4):
        env = gym.make(ENV_ID)
        obs, _ = env.reset(seed=seed)
        states = [obs]
        for a in actions:
            states.append(env.step(a)[0])
        runs.append(np.array(states))
        env.close()
    assert np.array_equal(runs[0], runs[1]) and not np.allclose(runs[0], runs[2])
    s = runs[0]
    a = np.clip(actions, -1, 1)  # the force saturates
    v = s[:-1, 2:] + pm.DT * (pm.FORCE * a - pm.DAMPING * s[:-1, 2:])
    np.testing.assert_allclose(s[1:, 2:], v, rtol=1e-12)
    np.testing.assert_allclose(s[1:, :2], s[:-1, :2] + pm.DT * v, rtol=1e-12)


def test_top_speed_and_ten_step_reach():
    s = np.zeros(4)
    for _ in range(200):
        s = pm.point_mass_step(s, [1.0, 0.0])
    assert s[2] == pytest.approx(pm.FORCE / pm.DAMPING) and s[3] == 0.0
    s = np.zeros(4)
    for _ in range(10):
        s = pm.point_mass_step(s, [0.0, -1.0])
    assert -0.9 < s[1] < -0.8  # ten steps of a full push from rest move ~0.85


def test_bad_actions_raise():
    env = gym.make(ENV_ID).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="render"):
        pm.PointMassEnv(render_mode="human")
