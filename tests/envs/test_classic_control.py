"""Pendulum-v1's batched torch reward against the gymnasium env on random transitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")
from mbrl_fast.envs import get_task  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pendulum_reward_matches_env(dtype):
    task = get_task("Pendulum-v1")
    env = task.make_env()
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    rows = []
    for _ in range(300):  # past one episode; actions beyond the torque bound are clipped
        act = env.action_space.sample() * 1.5
        nxt, reward, terminated, truncated, _ = env.step(act)
        rows.append((obs, act, nxt, reward, terminated))
        obs = nxt
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    o, a, n = (torch.tensor(np.array([r[i] for r in rows]), dtype=dtype) for i in range(3))
    expected = torch.tensor([r[3] for r in rows], dtype=torch.float64)
    got = task.reward_fn(o, a, n).double()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not task.termination_fn(o, a, n).any() and not any(r[4] for r in rows)
    assert (task.obs_dim, task.act_dim, task.max_episode_steps) == (3, 1, 200)
