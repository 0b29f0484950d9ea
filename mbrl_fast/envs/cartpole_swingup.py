"""``MBRLFast/CartpoleSwingup-v0``: PETS's continuous cart-pole swing-up, in pure numpy.

The pole starts hanging down; the agent pushes the cart with a continuous force to
swing it up and balance it. Reward as in PETS (Chua et al. 2018) / mbrl-lib's
``cartpole_pets``: with the pole tip ee = (x - l sin(theta), -l cos(theta)) and the
target (0, l) (tip straight up above the origin)::

    r(s, a, s') = exp(-|ee(s') - (0, l)|^2 / l^2) - 0.01 |a|^2,     l = 0.6

so the reward of one step is at most MAX_STEP_REWARD = 1 (tip on target, a = 0) and at
least -0.01 for |a| <= 1; an episode of 200 steps returns at most MAX_RETURN = 200
(an upper bound: the pole starts hanging down, so the first steps are lost swinging up).
For scale: CEM on the true dynamics (horizon 25, 300 samples, 5 iterations, 30 elites)
returns 183.4 and 181.1 (seeds 0, 1), the tip first within reward 0.9 after ~20 steps.
The action cost uses the action as given; the force clips it to [-1, 1].

Dynamics: a uniform rod (mass m, length l, centre of mass at l/2) hinged on a cart
(mass M) with viscous cart friction b, force F = FORCE_SCALE * clip(a, -1, 1);
theta = 0 hanging down, theta = pi upright. From the Lagrangian::

    (M + m) x''  - (m l / 2) cos(theta) theta''  = F - b x' - (m l / 2) sin(theta) theta'^2
    -(m l / 2) cos(theta) x'' + (m l^2 / 3) theta'' = -(m g l / 2) sin(theta)

integrated with RK4 (SUBSTEPS sub-steps per control step of DT seconds). The physical
constants are PILCO's cart-pole (Deisenroth & Rasmussen 2011) with PETS's l = 0.6;
the track is unbounded (the reward keeps the cart near 0). No MuJoCo needed.

Observation [x, theta, x', theta'] (float64, theta not wrapped, as in PETS); reset:
every entry ~ N(0, 0.1^2) (PETS: init + N(0, 0.1)).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from mbrl_fast.envs.registry import Task, register_task
from mbrl_fast.ops.features import ObsFeatures

ENV_ID = "MBRLFast/CartpoleSwingup-v0"
MAX_EPISODE_STEPS = 200
POLE_LENGTH = 0.6  # l [m] (PETS CartpoleEnv.PENDULUM_LENGTH); also the reward's length scale
CART_MASS = 0.5  # M [kg]
POLE_MASS = 0.5  # m [kg]
FRICTION = 0.1  # b [N s / m], cart on track
GRAVITY = 9.81  # g [m / s^2]
FORCE_SCALE = 10.0  # F = 10 N * clip(a, -1, 1)
DT = 0.05  # control period [s]: 200 steps = 10 s
SUBSTEPS = 5  # RK4 step of 0.01 s
ACTION_COST = 0.01
MAX_STEP_REWARD = 1.0
MAX_RETURN = MAX_STEP_REWARD * MAX_EPISODE_STEPS
INIT_STD = 0.1


def swingup_reward(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """exp(-|ee(s') - (0, l)|^2 / l^2) - 0.01 |a|^2: [..., 4], [..., 1], [..., 4] -> [...]."""
    x, theta = next_obs[..., 0], next_obs[..., 1]
    dx = x - POLE_LENGTH * torch.sin(theta)
    dy = -POLE_LENGTH * torch.cos(theta) - POLE_LENGTH
    tip = torch.exp(-(dx * dx + dy * dy) / POLE_LENGTH**2)
    return tip - ACTION_COST * (act * act).sum(dim=-1)


def _reward_np(act: np.ndarray, next_obs: np.ndarray) -> float:
    """The same reward for one transition in numpy (what the env returns)."""
    x, theta = next_obs[0], next_obs[1]
    dx = x - POLE_LENGTH * np.sin(theta)
    dy = -POLE_LENGTH * np.cos(theta) - POLE_LENGTH
    return float(np.exp(-(dx * dx + dy * dy) / POLE_LENGTH**2) - ACTION_COST * np.sum(act * act))


def _derivative(state: np.ndarray, force: float) -> np.ndarray:
    """d/dt [x, theta, x', theta'] from the 2x2 mass-matrix solve in the module docstring."""
    _, theta, x_dot, theta_dot = state
    m, l = POLE_MASS, POLE_LENGTH
    s, c = np.sin(theta), np.cos(theta)
    rhs_x = force - FRICTION * x_dot - 0.5 * m * l * s * theta_dot**2
    rhs_t = -0.5 * m * GRAVITY * l * s
    a11, a12, a22 = CART_MASS + m, -0.5 * m * l * c, m * l * l / 3.0
    det = a11 * a22 - a12 * a12  # >= (M + m/4) m l^2 / 3 > 0
    x_acc = (a22 * rhs_x - a12 * rhs_t) / det
    theta_acc = (a11 * rhs_t - a12 * rhs_x) / det
    return np.array([x_dot, theta_dot, x_acc, theta_acc])


def step_dynamics(state: np.ndarray, action: float) -> np.ndarray:
    """One control step: RK4 with SUBSTEPS sub-steps under a constant force. [4] -> [4]."""
    force = FORCE_SCALE * float(np.clip(action, -1.0, 1.0))
    h = DT / SUBSTEPS
    for _ in range(SUBSTEPS):
        k1 = _derivative(state, force)
        k2 = _derivative(state + 0.5 * h * k1, force)
        k3 = _derivative(state + 0.5 * h * k2, force)
        k4 = _derivative(state + h * k3, force)
        state = state + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return state


class CartpoleSwingupEnv(gym.Env):
    """Continuous cart-pole swing-up (see the module docstring). Action Box(-1, 1, (1,))."""

    metadata = {"render_modes": [], "render_fps": int(round(1.0 / DT))}

    def __init__(self, render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"{ENV_ID} does not render; render_mode must be None, "
                             f"got {render_mode!r}")
        self.render_mode = None
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float64)
        self._state = np.zeros(4)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._state = self.np_random.normal(0.0, INIT_STD, size=4)
        return self._state.copy(), {}

    def step(self, action):
        act = np.asarray(action, dtype=np.float64)
        if act.shape != (1,):
            raise ValueError(f"{ENV_ID}: action must have shape (1,), got {act.shape}")
        if not np.isfinite(act).all():
            raise ValueError(f"{ENV_ID}: action must be finite, got {act}")
        self._state = step_dynamics(self._state, act[0])
        reward = _reward_np(act, self._state)
        return self._state.copy(), reward, False, False, {}


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=f"{__name__}:CartpoleSwingupEnv",
                 max_episode_steps=MAX_EPISODE_STEPS)

TASK = register_task(Task(
    ENV_ID, swingup_reward, obs_dim=4, act_dim=1, action_low=(-1.0,), action_high=(1.0,),
    max_episode_steps=MAX_EPISODE_STEPS,
    obs_features=ObsFeatures(4, angles=(1,)),  # PETS's obs_preproc: theta as (sin, cos)
    note=f"max reward per step {MAX_STEP_REWARD}, so the return is at most {MAX_RETURN}"))
