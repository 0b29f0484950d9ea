"""The task registry: lookup, user registration, and the errors for what it cannot hold."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from mbrl_fast.envs import Task, get_task, list_tasks, never_terminates, register_task, registry
from mbrl_fast.ops.contract import RewardKind
from mbrl_fast.ops.features import ObsFeatures

SUPPORTED = ["Ant-v5", "HalfCheetah-v5", "Hopper-v5", "InvertedDoublePendulum-v5",
             "InvertedPendulum-v5", "MBRLFast/CartpoleSwingup-v0", "Pendulum-v1", "Pusher-v5",
             "Reacher-v5", "Swimmer-v5", "Walker2d-v5"]


def _reward(obs, act, next_obs):
    return -(next_obs * next_obs).sum(dim=-1)


class _DictObsEnv(gym.Env):
    """Box actions but a Dict observation space: not something a planner can model."""

    def __init__(self):
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1.0, 1.0, (3,))})


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test disappear after it."""
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))


def test_lists_every_supported_task():
    assert all(name in list_tasks() for name in SUPPORTED)
    assert list_tasks() == sorted(list_tasks())


def test_unknown_id_says_what_is_supported_and_how_to_register():
    with pytest.raises(ValueError) as err:
        get_task("HalfCheetah-v4")
    msg = str(err.value)
    assert "HalfCheetah-v4" in msg and "HalfCheetah-v5" in msg and "register_task" in msg


def test_from_env_reads_dims_and_register(scratch_registry):
    task = Task.from_env("MountainCarContinuous-v0", _reward)
    assert (task.obs_dim, task.act_dim, task.max_episode_steps) == (2, 1, 999)
    assert task.action_low == (-1.0,) and task.action_high == (1.0,)
    assert task.termination_fn is never_terminates
    register_task(task)
    assert get_task("MountainCarContinuous-v0") is task
    with pytest.raises(ValueError, match="already registered"):
        register_task(Task.from_env("MountainCarContinuous-v0", _reward))
    other = Task.from_env("MountainCarContinuous-v0", _reward, note="v2")
    assert register_task(other, overwrite=True) is get_task("MountainCarContinuous-v0")
    done = never_terminates(torch.zeros(4, 2), torch.zeros(4, 1), torch.zeros(4, 2))
    assert done.dtype == torch.bool and not done.any()


def test_non_box_action_space_is_a_clear_error():
    with pytest.raises(TypeError, match="Box action space"):
        Task.from_env("CartPole-v1", _reward)


def test_non_box_observation_space_is_a_clear_error():
    gym.register(id="MBRLFastTest/DictObs-v0", entry_point=_DictObsEnv, max_episode_steps=5)
    try:
        with pytest.raises(TypeError, match="observation space"):
            Task.from_env("MBRLFastTest/DictObs-v0", _reward)
    finally:
        del gym.registry["MBRLFastTest/DictObs-v0"]


def test_make_env_refuses_to_change_what_the_reward_needs():
    task = get_task("HalfCheetah-v5")
    with pytest.raises(ValueError, match="exclude_current_positions_from_observation"):
        task.make_env(exclude_current_positions_from_observation=True)
    env = task.make_env(exclude_current_positions_from_observation=False, reset_noise_scale=0.0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (18,) and obs[0] == 0.0  # x is in the observation
    env.close()


@pytest.mark.parametrize("bad, match", [
    (dict(obs_dim=0), "obs_dim"),
    (dict(action_low=(-1.0, -1.0)), "action_low"),
    (dict(action_high=(-2.0,)), "action_low must be < action_high"),
    (dict(builtin_reward="nope"), "builtin_reward"),
    (dict(reward_fn=3), "reward_fn"),
    (dict(shaping_fn=3), "shaping_fn"),
    (dict(obs_features=ObsFeatures(3, drop=(0,))), "obs_features"),
    (dict(obs_features=(0,)), "obs_features"),
])
def test_task_validation(bad, match):
    fields = dict(env_id="X-v0", reward_fn=_reward, obs_dim=2, act_dim=1, action_low=(-1.0,),
                  action_high=(1.0,), max_episode_steps=10)
    with pytest.raises((ValueError, TypeError), match=match):
        Task(**{**fields, **bad})


def test_register_task_wants_a_task():
    with pytest.raises(TypeError, match="Task"):
        register_task("HalfCheetah-v5")


def test_action_bounds_tensors():
    low, high = get_task("Pusher-v5").action_bounds(dtype=torch.float64)
    assert low.dtype == torch.float64 and torch.equal(low, -high) and low.shape == (7,)


def test_planning_reward_adds_the_shaping_term_only_in_planning():
    task = get_task("InvertedPendulum-v5")
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(64, 4, generator=g) * 0.1
    act = torch.rand(64, 1, generator=g)
    nxt = obs + torch.randn(64, 4, generator=g) * 0.1
    alive = task.reward_fn(obs, act, nxt)
    shaped = task.planning_reward.torch_fn(obs, act, nxt)
    cost = nxt[:, 0] ** 2 + 0.2 * nxt[:, 2] ** 2 + 0.1 * (nxt[:, 1] / 0.2) ** 2
    torch.testing.assert_close(shaped, alive - cost.clamp(max=0.9))
    # an alive step still adds >= 0.1, however far out the state
    edge = torch.tensor([[1.0, 0.2, 0.0, 0.0], [-1.0, -0.2, 30.0, -3.0]])
    torch.testing.assert_close(task.shaping_fn(edge, act[:2], edge), torch.tensor([-0.9, -0.9]))
    plain = get_task("Reacher-v5")
    assert plain.shaping_fn is None and plain.planning_reward == plain.reward


def test_halfcheetah_shaping_is_zero_upright_and_costs_a_flip():
    task = get_task("HalfCheetah-v5")
    nxt = torch.zeros(6, 18, dtype=torch.float64)
    # pitch (obs[2]) within 1 rad either way, at 1 rad, tipped, on its back, a full turn
    nxt[:, 2] = torch.tensor([0.0, 0.9, -1.0, 1.5, torch.pi, 2 * torch.pi], dtype=torch.float64)
    act = torch.zeros(6, 6, dtype=torch.float64)
    cost = task.shaping_fn(nxt, act, nxt)
    expected = -5.0 * (torch.cos(torch.tensor(1.0, dtype=torch.float64))
                       - torch.cos(nxt[:, 2])).clamp(min=0.0)
    torch.testing.assert_close(cost, expected)
    assert cost[0] == cost[1] == cost[5] == 0.0 and cost[2].abs() < 1e-12
    assert cost[4] < -7.5 and cost[3] < 0.0
    # the planning objective is the env's reward plus the cost; the builtin reward is kept
    # for scoring the env's own return
    obs = torch.randn(6, 18, dtype=torch.float64)
    torch.testing.assert_close(task.planning_reward.torch_fn(obs, act, nxt),
                               task.reward_fn(obs, act, nxt) + cost)
    assert task.reward.kind == RewardKind.HALFCHEETAH


@pytest.mark.parametrize("env_id", SUPPORTED)
def test_obs_features_fit_the_task(env_id):
    task = get_task(env_id)
    if task.obs_features is not None:
        assert task.obs_features.obs_dim == task.obs_dim and not task.obs_features.is_identity
