"""Stable-Baselines3: evaluate_policy over 8 VecEnv envs in one plan call per step; a SAC
actor as the policy inside ops.propagate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3", reason="stable-baselines3 is not installed")
gym = pytest.importorskip("gymnasium")

from helpers import random_mlp_params  # noqa: E402

from mbrl_fast import CEMPlanner, ICEMPlanner, ensemble_mlp, propagate  # noqa: E402
from mbrl_fast.integrations.sb3 import MPCPolicy, actor_mlp_params  # noqa: E402
from mbrl_fast.ops import noise  # noqa: E402

STEPS = 6  # episode length


def pendulum_reward(obs, act, next_obs):  # cos th, sin th, thdot: upright and slow
    return next_obs[..., 0] - 0.1 * next_obs[..., 2] ** 2 - 0.001 * (act ** 2).sum(-1)


def make_vec_env(n: int):
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = DummyVecEnv([lambda: Monitor(gym.make("Pendulum-v1", max_episode_steps=STEPS))] * n)
    env.seed(0)
    return env


@pytest.mark.parametrize("planner_cls", [CEMPlanner, ICEMPlanner])
def test_evaluate_policy_plans_all_8_envs_in_one_call_per_step(planner_cls):
    from stable_baselines3.common.evaluation import evaluate_policy

    model = random_mlp_params(E=3, sizes=(4, 16, 6))
    planner = planner_cls(model, [-2.0], [2.0], reward=pendulum_reward, horizon=5, population=16,
                          num_elites=4, iterations=2, particles=2)
    batches = []
    plan = planner.plan
    planner.plan = lambda obs, **kw: batches.append(tuple(obs.shape)) or plan(obs, **kw)
    policy = MPCPolicy(planner)
    rewards, lengths = evaluate_policy(policy, make_vec_env(8), n_eval_episodes=8,
                                       return_episode_rewards=True)
    assert len(rewards) == 8 and list(lengths) == [STEPS] * 8
    assert batches == [(8, 3)] * STEPS  # one call per VecEnv step, all 8 envs in it
    assert policy.plan_calls == STEPS


def test_predict_single_obs_and_partial_episode_starts():
    model = random_mlp_params(E=2, sizes=(4, 8, 6))
    planner = CEMPlanner(model, [-2.0], [2.0], reward=pendulum_reward, horizon=4, population=8,
                         num_elites=2, iterations=1, particles=1)
    policy = MPCPolicy(planner)
    action, state = policy.predict(np.zeros(3, np.float32))
    assert action.shape == (1,) and state is None
    obs = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    policy.predict(obs, episode_start=np.ones(3, bool))
    kept = planner._prev.clone()
    policy._forget(np.array([False, True, False]))  # env 1 starts a new episode
    torch.testing.assert_close(planner._prev[1], planner.initial_mean(1)[0])
    torch.testing.assert_close(planner._prev[[0, 2]], kept[[0, 2]])  # the others stay warm
    with pytest.raises(ValueError, match="one flag per observation"):
        policy.predict(obs, episode_start=np.ones(2, bool))


def test_sac_actor_runs_inside_propagate():
    from stable_baselines3 import SAC

    env = gym.make("Pendulum-v1")
    sac = SAC("MlpPolicy", env, policy_kwargs={"net_arch": [32, 32]}, seed=0, device="cpu")
    params = actor_mlp_params(sac.actor)
    assert params.num_members == 1 and params.sizes == (3, 32, 32, 2)
    obs = torch.randn(5, 3)
    mean, logvar = ensemble_mlp(obs, params)
    with torch.no_grad():
        mu, log_std, _ = sac.actor.get_action_dist_params(obs)
    torch.testing.assert_close(mean[0], mu, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logvar[0], 2 * log_std, rtol=1e-4, atol=1e-5)

    dynamics = random_mlp_params(E=3, sizes=(4, 16, 6))
    start = torch.randn(2, 3)
    out = propagate(dynamics, start, None, policy=params, horizon=4, particles=3, seed=5,
                    reward=pendulum_reward)
    assert out.actions.shape == (2, 1, 3, 4, 1) and torch.isfinite(out.returns).all()
    eps = noise.normal((2, 1, 3, 4, 1), 5, 2)[:, :, :, 0]  # the policy's noise at t = 0
    with torch.no_grad():
        mu, log_std, _ = sac.actor.get_action_dist_params(start)
    expected = torch.tanh(mu[:, None, None] + log_std.exp()[:, None, None] * eps)
    torch.testing.assert_close(out.actions[:, :, :, 0], expected, rtol=1e-4, atol=1e-5)
