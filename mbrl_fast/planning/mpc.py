"""Model-predictive control: put any planner in front of a model and get actions.

    agent = MPCAgent(CEMPlanner(model, low, high, reward=my_reward), replan_every=1)
    agent.reset()
    action = agent.act(obs)        # obs [D] -> [A], or [N, D] -> [N, A] (numpy)

Every ``replan_every`` steps the agent plans from the current observation (warm
starting from the previous plan shifted by the steps executed since); in between
it executes the next actions of the last plan open-loop.
"""

from __future__ import annotations

import numpy as np
import torch

from mbrl_fast.planning.base import Planner, as_obs_tensor, check_int


class MPCAgent:
    """planner: a :class:`Planner`; replan_every: in [1, planner.horizon]."""

    def __init__(self, planner: Planner, replan_every: int = 1):
        if not isinstance(planner, Planner):
            raise TypeError(f"planner must be a Planner, got {type(planner).__name__}")
        self.planner = planner
        self.replan_every = check_int("replan_every", replan_every)
        if replan_every > planner.horizon:
            raise ValueError(f"replan_every ({replan_every}) must not exceed the planner's "
                             f"horizon ({planner.horizon})")
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode: drop the current plan and the planner's warm start."""
        self.planner.reset(seed)
        self._plan: torch.Tensor | None = None  # [N, H, A]
        self._step = 0  # actions of _plan executed so far

    def act(self, obs) -> np.ndarray:
        """obs [D] (numpy or torch) -> action [A]; obs [N, D] -> actions [N, A] (numpy)."""
        obs_t = as_obs_tensor(obs, self.planner.action_low.device)
        single = obs_t.dim() == 1
        batch = obs_t.reshape(-1, obs_t.shape[-1])  # [N, D]
        stale = self._plan is None or self._plan.shape[0] != batch.shape[0]
        if stale or self._step >= self.replan_every:
            shift = self._step if not stale else 1
            self._plan = self.planner.plan(batch, shift=shift)  # [N, H, A]
            self._step = 0
        action = self._plan[:, self._step]  # [N, A]
        self._step += 1
        out = action.detach().cpu().numpy().copy()  # the caller may write to it
        return out[0] if single else out
