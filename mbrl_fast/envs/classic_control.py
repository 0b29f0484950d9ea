"""Gymnasium classic-control tasks: batched torch rewards of ``Pendulum-v1``.

Pendulum-v1: obs = [cos theta, sin theta, theta_dot] (float32), action = torque in [-2, 2],
200-step episodes, never terminates. The env's cost is computed from the state *before*
the step and the clipped torque (gymnasium 1.4, classic_control/pendulum.py)::

    r = -(angle_normalize(theta)^2 + 0.1 theta_dot^2 + 0.001 clip(u, -2, 2)^2)

so the reward is a function of (obs, act) alone; angle_normalize(theta) = atan2(sin, cos)
from the observation (the env wraps theta to [-pi, pi) the same way, up to float32
rounding of cos / sin in the observation).
"""

from __future__ import annotations

import torch

from mbrl_fast.envs.registry import Task, register_task

MAX_TORQUE = 2.0


def pendulum_reward(obs, act, next_obs):
    """-(theta^2 + 0.1 theta_dot^2 + 0.001 u^2) of the state before the step, theta in
    [-pi, pi] read from (cos, sin) of obs, u clipped to [-2, 2]."""
    theta = torch.atan2(obs[..., 1], obs[..., 0])
    u = act[..., 0].clamp(-MAX_TORQUE, MAX_TORQUE)
    return -(theta * theta + 0.1 * obs[..., 2] * obs[..., 2] + 0.001 * u * u)


TASKS = (
    Task("Pendulum-v1", pendulum_reward, obs_dim=3, act_dim=1, action_low=(-MAX_TORQUE,),
         action_high=(MAX_TORQUE,), max_episode_steps=200,
         note="reward from the observed (cos, sin) in float32: exact up to that rounding"),
)
for _task in TASKS:
    register_task(_task)
