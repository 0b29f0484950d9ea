"""``MBRLFast/PointMass-v0``: a 2-D point mass pushed by a bounded force, in pure numpy.

The task DADS (Sharma et al. 2020) iterates on before Ant: an agent that moves in the
plane, with nothing to do but move, so that unsupervised skills are easy to see (each
one a direction and speed of travel) and zero-shot goal reaching is easy to score.

State and observation [x, y, vx, vy] (float64). Action a in [-1, 1]^2 (clipped), a force
F = FORCE * a on a unit mass with viscous damping, integrated by semi-implicit Euler
with step DT::

    v' = v + DT (F - DAMPING v)          (= 0.6 v + 0.4 a with the constants below)
    p' = p + DT v'

so the speed is at most FORCE / DAMPING = 1 per second (0.1 per step) and a constant
push reaches 90% of it within 5 steps: ten steps of one skill move the mass at most
~0.85. The plane is unbounded (no walls), so the x-y position never affects the
dynamics: the Task declares it dropped (``obs_features``), and DADS neither feeds it to
the policy nor to the skill dynamics (the paper's "x-y omitted" inputs).

Reset: x, y ~ U(-0.1, 0.1), v ~ N(0, 0.01^2). Episodes last MAX_EPISODE_STEPS steps and
never terminate. The reward is 0: the env has no task of its own (unsupervised skill
discovery); a goal is given to the latent planner as a reward over predicted states.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from mbrl_fast.envs.registry import Task, register_task
from mbrl_fast.ops.features import ObsFeatures

ENV_ID = "MBRLFast/PointMass-v0"
MAX_EPISODE_STEPS = 100
DT = 0.1  # control period [s]
FORCE = 4.0  # |F| per axis at |a| = 1 [N]
DAMPING = 4.0  # viscous damping [1 / s]: top speed FORCE / DAMPING = 1 [m / s]
INIT_POS = 0.1  # reset x, y ~ U(-INIT_POS, INIT_POS)
INIT_VEL_STD = 0.01


def point_mass_step(state: np.ndarray, action) -> np.ndarray:
    """One control step of the module docstring's dynamics: [..., 4], [..., 2] -> [..., 4]."""
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    pos, vel = state[..., :2], state[..., 2:]
    vel = vel + DT * (FORCE * a - DAMPING * vel)
    return np.concatenate([pos + DT * vel, vel], axis=-1)


def zero_reward(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """The env's reward: 0 for every transition, shape [...]."""
    return torch.zeros(next_obs.shape[:-1], dtype=next_obs.dtype, device=next_obs.device)


class PointMassEnv(gym.Env):
    """The point mass of the module docstring. Action Box(-1, 1, (2,)), obs Box(4,)."""

    metadata = {"render_modes": [], "render_fps": int(round(1.0 / DT))}

    def __init__(self, render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"{ENV_ID} does not render; render_mode must be None, "
                             f"got {render_mode!r}")
        self.render_mode = None
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float64)
        self._state = np.zeros(4)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        pos = self.np_random.uniform(-INIT_POS, INIT_POS, size=2)
        vel = self.np_random.normal(0.0, INIT_VEL_STD, size=2)
        self._state = np.concatenate([pos, vel])
        return self._state.copy(), {}

    def step(self, action):
        act = np.asarray(action, dtype=np.float64)
        if act.shape != (2,):
            raise ValueError(f"{ENV_ID}: action must have shape (2,), got {act.shape}")
        if not np.isfinite(act).all():
            raise ValueError(f"{ENV_ID}: action must be finite, got {act}")
        self._state = point_mass_step(self._state, act)
        return self._state.copy(), 0.0, False, False, {}


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=f"{__name__}:PointMassEnv",
                 max_episode_steps=MAX_EPISODE_STEPS)

TASK = register_task(Task(
    ENV_ID, zero_reward, obs_dim=4, act_dim=2, action_low=(-1.0, -1.0), action_high=(1.0, 1.0),
    max_episode_steps=MAX_EPISODE_STEPS, has_reward=False,
    obs_features=ObsFeatures(4, drop=(0, 1)),  # the plane is unbounded: x, y are not read
    note="no extrinsic reward (0): goals are given to the planner"))
