"""MPCAgent: shapes, numpy/torch inputs, replanning schedule, reset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mbrl_fast.planning import CEMPlanner, MPCAgent


class _Counting(CEMPlanner):
    def plan(self, obs, *, shift=1):
        self.calls.append(shift)
        return super().plan(obs, shift=shift)


def _planner(model, reward, horizon=3):
    p = _Counting(model, [-1.0, -1.0], [1.0, 1.0], reward=reward, horizon=horizon,
                  population=100, num_elites=10, iterations=6, particles=1, backend="reference")
    p.calls = []
    return p


def test_act_returns_the_first_action_as_numpy(model, reward, goal, obs3):
    agent = MPCAgent(_planner(model, reward))
    action = agent.act(obs3[0].numpy())  # numpy [D] -> [A]
    assert isinstance(action, np.ndarray) and action.shape == (2,)
    assert np.abs(action - (goal - obs3[0]).numpy()).max() < 0.15
    agent.reset()
    actions = agent.act(obs3)  # torch [N, D] -> [N, A]
    assert isinstance(actions, np.ndarray) and actions.shape == (3, 2)
    assert np.abs(actions - (goal - obs3).numpy()).max() < 0.15


def test_replan_every_k_steps_executes_the_plan_open_loop(model, reward, obs3):
    planner = _planner(model, reward)
    agent = MPCAgent(planner, replan_every=2)
    first = agent.act(obs3)
    plan = planner._prev.clone()
    second = agent.act(obs3 + 1.0)  # no replanning: the plan's second action
    assert planner.calls == [1]
    np.testing.assert_array_equal(first, plan[:, 0].numpy())
    np.testing.assert_array_equal(second, plan[:, 1].numpy())
    agent.act(obs3)
    assert planner.calls == [1, 2]  # warm start shifted by the 2 executed steps
    agent.act(obs3[:2])  # a different number of environments: plan at once
    assert planner.calls == [1, 2, 1]
    agent.reset()
    assert planner._prev is None
    agent.act(obs3)
    assert len(planner.calls) == 4


def test_reset_with_seed_reproduces_the_episode(model, reward, obs3):
    agent = MPCAgent(_planner(model, reward))
    run = [agent.act(obs3) for _ in range(2)]
    agent.reset(seed=0)
    again = [agent.act(obs3) for _ in range(2)]
    assert all(np.array_equal(x, y) for x, y in zip(run, again, strict=True))


def test_validation(model, reward):
    with pytest.raises(ValueError, match="replan_every"):
        MPCAgent(_planner(model, reward, horizon=3), replan_every=4)
    with pytest.raises(ValueError, match="replan_every"):
        MPCAgent(_planner(model, reward), replan_every=0)
    with pytest.raises(TypeError, match="planner"):
        MPCAgent(object())
    with pytest.raises(ValueError, match="obs"):
        MPCAgent(_planner(model, reward)).act(torch.zeros(2, 2, 2))
