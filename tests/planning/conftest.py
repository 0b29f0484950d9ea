"""A hand-made ensemble with known dynamics, next = s + a, and a goal-reaching reward."""

from __future__ import annotations

import pytest
import torch

from mbrl_fast.ops import MLPParams

D = A = 2
GOAL = torch.tensor([0.3, -0.2])
OBS = torch.tensor([[0.0, 0.0], [0.5, 0.1], [-0.2, 0.2]])  # optimal first actions GOAL - OBS


def shift_model(members: int = 1, flipped: tuple[int, ...] = ()) -> MLPParams:
    """One linear layer [s, a] -> (delta = a, raw logvar = -30): next = s + a with std ~5e-5.
    Members in ``flipped`` move the other way (next = s - a)."""
    w = torch.zeros(members, D + A, 2 * D)
    for e in range(members):
        w[e, D:, :D] = -torch.eye(A) if e in flipped else torch.eye(A)
    b = torch.zeros(members, 2 * D)
    b[:, D:] = -30.0
    return MLPParams((w.contiguous(),), (b,), "identity", max_logvar=torch.full((D,), 0.5),
                     min_logvar=torch.full((D,), -20.0))


def goal_reward(obs, act, next_obs):
    """-|s' - GOAL|^2: maximized by reaching GOAL at the first step, then standing still."""
    return -((next_obs - GOAL) ** 2).sum(dim=-1)


@pytest.fixture
def model() -> MLPParams:
    return shift_model()


@pytest.fixture
def make_model():
    return shift_model


@pytest.fixture
def reward():
    return goal_reward


@pytest.fixture
def goal() -> torch.Tensor:
    return GOAL.clone()


@pytest.fixture
def obs3() -> torch.Tensor:
    return OBS.clone()
