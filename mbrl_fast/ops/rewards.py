"""Reward functions the propagate op can apply to every particle transition.

A reward is r(obs, act, next_obs) -> scalar per transition. Three forms:

* a batched torch function ``fn(obs [..., D], act [..., A], next_obs [..., D]) -> [...]``
  (always works: the kernel returns states, rewards are one batched torch call);
* a built-in task reward known to the compiled kernels (fused, fastest), by name;
* a user's plain-Python function compiled by numba into a C callback
  (mbrl_fast.ops._numba), which the C++ rollout calls per particle per step.

The C callback ABI (csrc/include/reward_callback.h)::

    float reward(const float* obs, const float* act, const float* next_obs,
                 int64_t obs_dim, int64_t act_dim);
"""

from __future__ import annotations

import torch

from mbrl_fast.ops.contract import Reward, RewardKind

__all__ = ["BUILTIN", "HALFCHEETAH_DT", "Reward", "RewardKind", "halfcheetah_reward", "resolve"]

HALFCHEETAH_DT = 0.05  # gymnasium HalfCheetah-v5: frame_skip 5 x timestep 0.01


def halfcheetah_reward(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor,
                       dt: float = HALFCHEETAH_DT) -> torch.Tensor:
    """HalfCheetah-v5 with exclude_current_positions_from_observation=False (obs 18):
    forward velocity (x_{t+1} - x_t) / dt  minus  0.1 * |a|^2. The specification of
    ``RewardKind.HALFCHEETAH`` (kernels: csrc/include/builtin_rewards.h, the Triton
    ``halfcheetah_reward``), which the kernels take with ``dt`` as a parameter."""
    return (next_obs[..., 0] - obs[..., 0]) / dt - 0.1 * (act * act).sum(dim=-1)


BUILTIN: dict[str, Reward] = {
    "halfcheetah": Reward("halfcheetah", halfcheetah_reward, kind=RewardKind.HALFCHEETAH,
                          dt=HALFCHEETAH_DT),
}


def resolve(reward) -> Reward:
    """A Reward from a built-in name, a Reward, or a batched torch callable."""
    if isinstance(reward, Reward):
        return reward
    if isinstance(reward, str):
        if reward not in BUILTIN:
            raise ValueError(f"reward: unknown built-in reward {reward!r}; built-ins are "
                             f"{sorted(BUILTIN)}, or pass a batched torch function "
                             "fn(obs, act, next_obs) or a numba-compiled reward "
                             "(mbrl_fast.ops._numba.compile_reward)")
        return BUILTIN[reward]
    if callable(reward):
        return Reward(getattr(reward, "__name__", "custom"), reward)
    raise TypeError(f"reward must be None, 'model', a built-in name, a Reward or a callable, "
                    f"got {type(reward).__name__}")
