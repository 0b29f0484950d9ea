"""Batched torch rewards and terminations of the gymnasium v5 MuJoCo tasks.

Each function reads one transition (obs [..., D], act [..., A], next_obs [..., D]) and
returns [...] for any leading dims. They follow gymnasium 1.4's v5 sources
(gymnasium/envs/mujoco/*_v5.py) term by term; the constants are the v5 defaults.

Observation kwargs: the locomotion rewards need the x position, which v5 drops by
default, so those tasks are made with ``exclude_current_positions_from_observation=False``
(obs[0] = x). Then obs = concat(qpos, qvel[, contact forces]).

Where a reward is not exactly a function of (obs, act, next_obs) the Task's ``note``
says why; the two sources are
  * qvel clipped to [-10, 10] in the observation (Hopper, InvertedDoublePendulum) while
    the env's reward / health check uses the unclipped value (Walker2d clips too, but its
    reward does not read velocities);
  * MuJoCo's kinematics (body / site positions) after mj_step are computed before the
    last integration (with RK4, at its last stage), not from the final qpos: a position
    the reward reads from ``data.xpos`` / ``site_xpos`` differs from one computed from the
    observed qpos by ~1e-5 m, and by up to a few mm through contacts
    (InvertedDoublePendulum's tip, Ant's torso x).
"""

from __future__ import annotations

import math

import torch

from mbrl_fast.envs.registry import Task, register_task
from mbrl_fast.ops.features import ObsFeatures
from mbrl_fast.ops.rewards import HALFCHEETAH_DT, halfcheetah_reward

_POSITIONS = {"exclude_current_positions_from_observation": False}
_POSITIONS_NOTE = ("exclude_current_positions_from_observation=False puts the x position in "
                   "obs[0]; the forward reward is (x' - x) / dt")


def _sq(act: torch.Tensor) -> torch.Tensor:
    return (act * act).sum(dim=-1)


# ---- InvertedPendulum-v5: obs = [cart x, pole angle, x vel, angle vel] ----------------------

def inverted_pendulum_termination(obs, act, next_obs):
    """|angle'| > 0.2 or a non-finite observation (any non-finite entry makes the row's sum
    non-finite: one reduction instead of an elementwise test over every particle state)."""
    return ~torch.isfinite(next_obs.sum(dim=-1)) | (next_obs[..., 1].abs() > 0.2)


def inverted_pendulum_reward(obs, act, next_obs):
    """1 per step while not terminated."""
    return (~inverted_pendulum_termination(obs, act, next_obs)).to(next_obs.dtype)


def inverted_pendulum_shaping(obs, act, next_obs):
    """-min(0.9, x'^2 + 0.2 x_vel'^2 + 0.1 (angle' / 0.2)^2): a planning cost that keeps
    every alive step worth >= 0.1.

    The reward is survival only, so every plan that keeps the pole up over the horizon
    scores the same and the planner has nothing to steer the cart with: in PETS runs it
    drifted into the end of its rail (x = +-1) and the pole fell. The cost prefers the
    cart centred and slow and the pole upright; without the velocity term the cart still
    swung out further than the 1 s horizon sees. The cap keeps survival first: a plan that
    lives one step longer always scores higher. Results: README, "Learning results".
    """
    x, x_vel, angle = next_obs[..., 0], next_obs[..., 2], next_obs[..., 1] / 0.2
    cost = x * x + 0.2 * x_vel * x_vel + 0.1 * angle * angle
    return -cost.clamp(max=0.9)


# ---- HalfCheetah-v5: obs = [x, z, pitch, 6 joint angles, 9 velocities] -------------------
_COS_1_RAD = math.cos(1.0)


def halfcheetah_upright_shaping(obs, act, next_obs):
    """-5 max(0, cos(1) - cos(pitch')): a planning cost on tipping beyond 1 rad.

    Without it the planner on a learned model can flip the cheetah onto its back, a gait
    that is a local optimum (it earns a fraction of an upright gait's reward; the runs with
    and without it: docs/measurements.md). Zero for |pitch| <= 1 rad, so running gaits are
    not penalised; ~7.7 per step on the back, more than a flipped gait earns.
    """
    return -5.0 * (_COS_1_RAD - torch.cos(next_obs[..., 2])).clamp(min=0.0)


# ---- InvertedDoublePendulum-v5 ----------------------------------------------------------
# obs = [x, sin t1, sin t2, cos t1, cos t2, clip(qvel, +-10) (3), clip(qfrc_constraint[0])]
POLE_LENGTH = 0.6  # inverted_double_pendulum.xml: both poles 0.6 m, the tip site at the end


def _double_pendulum_tip(obs):
    """(x_tip, y_tip) [...] each: x + l sin t1 + l sin(t1 + t2), l cos t1 + l cos(t1 + t2)."""
    s1, s2, c1, c2 = obs[..., 1], obs[..., 2], obs[..., 3], obs[..., 4]
    x = obs[..., 0] + POLE_LENGTH * (s1 + s1 * c2 + c1 * s2)
    y = POLE_LENGTH * (c1 + c1 * c2 - s1 * s2)
    return x, y


def inverted_double_pendulum_termination(obs, act, next_obs):
    """The tip height y' <= 1."""
    return _double_pendulum_tip(next_obs)[1] <= 1.0


def inverted_double_pendulum_reward(obs, act, next_obs):
    """10 [alive] - 0.01 x_tip^2 - (y_tip - 2)^2 - 1e-3 w1^2 - 5e-3 w2^2 of next_obs."""
    x, y = _double_pendulum_tip(next_obs)
    alive = 10.0 * (y > 1.0).to(next_obs.dtype)
    w1, w2 = next_obs[..., 6], next_obs[..., 7]
    return alive - 0.01 * x * x - (y - 2.0) ** 2 - 1e-3 * w1 * w1 - 5e-3 * w2 * w2


# ---- Reacher-v5: obs[8:10] = (fingertip - target)[:2] (both bodies at z = 0.01) -----------
# Reacher and Pusher: the observation and the reward read the same body positions (both
# from data.xpos after mj_step), so these rewards are exact.

def reacher_reward(obs, act, next_obs):
    """-|fingertip - target| - |a|^2, the distance read from next_obs[8:10]."""
    return -torch.linalg.vector_norm(next_obs[..., 8:10], dim=-1) - _sq(act)


# ---- Pusher-v5: obs[14:17] tips_arm, obs[17:20] object, obs[20:23] goal -----------------

def pusher_reward(obs, act, next_obs):
    """-0.5 |object - tips_arm| - |object - goal| - 0.1 |a|^2 of next_obs."""
    tips, obj, goal = next_obs[..., 14:17], next_obs[..., 17:20], next_obs[..., 20:23]
    near = torch.linalg.vector_norm(obj - tips, dim=-1)
    dist = torch.linalg.vector_norm(obj - goal, dim=-1)
    return -0.5 * near - dist - 0.1 * _sq(act)


# ---- Hopper-v5 (obs 12 = qpos 6 + clip(qvel, +-10) 6) -----------------------------------
HOPPER_DT = 0.008  # frame_skip 4 x timestep 0.002


def hopper_termination(obs, act, next_obs):
    """Unhealthy: z' <= 0.7, |angle'| >= 0.2, or a state entry outside (-100, 100)."""
    z, angle, state = next_obs[..., 1], next_obs[..., 2], next_obs[..., 2:]
    healthy = ((state > -100.0) & (state < 100.0)).all(dim=-1)
    healthy = healthy & (z > 0.7) & (angle > -0.2) & (angle < 0.2)
    return ~healthy


def hopper_reward(obs, act, next_obs):
    """(x' - x) / dt + 1 [healthy] - 1e-3 |a|^2."""
    healthy = (~hopper_termination(obs, act, next_obs)).to(next_obs.dtype)
    forward = (next_obs[..., 0] - obs[..., 0]) / HOPPER_DT
    return forward + healthy - 1e-3 * _sq(act)


# ---- Walker2d-v5 (obs 18 = qpos 9 + clip(qvel, +-10) 9) ---------------------------------
WALKER2D_DT = 0.008  # frame_skip 4 x timestep 0.002


def walker2d_termination(obs, act, next_obs):
    """Unhealthy: z' outside (0.8, 2.0) or angle' outside (-1, 1)."""
    z, angle = next_obs[..., 1], next_obs[..., 2]
    return ~((z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0))


def walker2d_reward(obs, act, next_obs):
    """(x' - x) / dt + 1 [healthy] - 1e-3 |a|^2."""
    healthy = (~walker2d_termination(obs, act, next_obs)).to(next_obs.dtype)
    forward = (next_obs[..., 0] - obs[..., 0]) / WALKER2D_DT
    return forward + healthy - 1e-3 * _sq(act)


# ---- Swimmer-v5 (obs 10 = qpos 5 [x, y, angle, 2 joints] + qvel 5) -----------------------
SWIMMER_DT = 0.04  # frame_skip 4 x timestep 0.01


def swimmer_reward(obs, act, next_obs):
    """(x' - x) / dt - 1e-4 |a|^2: the env's forward velocity is the tip's qpos difference."""
    return (next_obs[..., 0] - obs[..., 0]) / SWIMMER_DT - 1e-4 * _sq(act)


# ---- Ant-v5 (obs 107 = qpos 15 + qvel 14 + clip(cfrc_ext[1:], +-1) 78) ------------------
ANT_DT = 0.05  # frame_skip 5 x timestep 0.01
ANT_STATE = 29  # qpos 15 + qvel 14


def ant_termination(obs, act, next_obs):
    """Unhealthy: a non-finite qpos / qvel or the torso height z' outside [0.2, 1.0]."""
    z = next_obs[..., 2]
    healthy = torch.isfinite(next_obs[..., :ANT_STATE]).all(dim=-1) & (z >= 0.2) & (z <= 1.0)
    return ~healthy


def ant_reward(obs, act, next_obs):
    """(x' - x) / dt + 1 [healthy] - 0.5 |a|^2 - 5e-4 |contact forces'|^2."""
    healthy = (~ant_termination(obs, act, next_obs)).to(next_obs.dtype)
    forward = (next_obs[..., 0] - obs[..., 0]) / ANT_DT
    contact = next_obs[..., ANT_STATE:]
    return forward + healthy - 0.5 * _sq(act) - 5e-4 * (contact * contact).sum(dim=-1)



def _without_x(obs_dim: int) -> ObsFeatures:
    """The model does not read the x position (obs[0]): the dynamics do not depend on it."""
    return ObsFeatures(obs_dim, drop=(0,))


_CLIPPED_QVEL = ("the observation clips qvel to [-10, 10] but the env uses the unclipped "
                 "value")

TASKS = (
    Task("InvertedPendulum-v5", inverted_pendulum_reward, obs_dim=4, act_dim=1,
         action_low=(-3.0,), action_high=(3.0,), max_episode_steps=1000,
         termination_fn=inverted_pendulum_termination, shaping_fn=inverted_pendulum_shaping,
         shaping_note="survival-only reward: planning prefers the pole upright, the cart "
                      "centred (inverted_pendulum_shaping)"),
    Task("InvertedDoublePendulum-v5", inverted_double_pendulum_reward, obs_dim=9, act_dim=1,
         action_low=(-1.0,), action_high=(1.0,), max_episode_steps=1000,
         termination_fn=inverted_double_pendulum_termination,
         reward_exact=False, termination_exact=False,
         note=("the env reads the tip from site_xpos, the kinematics of the last RK4 "
               "stage, ~1e-5 m from the tip of the observed angles: a reward error up to "
               "~1e-4 (max 7e-5 over 100 random steps, 1.0e-4 over 2000), and the "
               "termination can flip only when y_tip is within ~1e-5 of 1; and "
               f"{_CLIPPED_QVEL} in the velocity penalty (exact while |w1|, |w2| <= 10)")),
    Task("Reacher-v5", reacher_reward, obs_dim=10, act_dim=2, action_low=(-1.0,) * 2,
         action_high=(1.0,) * 2, max_episode_steps=50),
    Task("Pusher-v5", pusher_reward, obs_dim=23, act_dim=7, action_low=(-2.0,) * 7,
         action_high=(2.0,) * 7, max_episode_steps=100),
    Task("HalfCheetah-v5", halfcheetah_reward, obs_dim=18, act_dim=6, action_low=(-1.0,) * 6,
         action_high=(1.0,) * 6, max_episode_steps=1000, env_kwargs=_POSITIONS,
         env_kwargs_note=_POSITIONS_NOTE + f" with dt = {HALFCHEETAH_DT}",
         builtin_reward="halfcheetah",
         # PETS's obs_preproc: no x (it grows as the cheetah runs), the pitch as sin / cos
         # (the cheetah can flip over).
         obs_features=ObsFeatures(18, drop=(0,), angles=(2,)),
         shaping_fn=halfcheetah_upright_shaping,
         shaping_note="planning prefers the cheetah upright (halfcheetah_upright_shaping)"),
    Task("Hopper-v5", hopper_reward, obs_dim=12, act_dim=3, action_low=(-1.0,) * 3,
         action_high=(1.0,) * 3, max_episode_steps=1000, termination_fn=hopper_termination,
         env_kwargs=_POSITIONS, env_kwargs_note=_POSITIONS_NOTE + f" with dt = {HOPPER_DT}",
         reward_exact=False, termination_exact=False, obs_features=_without_x(12),
         note=(f"the health check needs |qvel| < 100, and {_CLIPPED_QVEL}: exact unless "
               "a joint speed exceeds 100 (a diverging simulation)")),
    Task("Walker2d-v5", walker2d_reward, obs_dim=18, act_dim=6, action_low=(-1.0,) * 6,
         action_high=(1.0,) * 6, max_episode_steps=1000, termination_fn=walker2d_termination,
         env_kwargs=_POSITIONS, env_kwargs_note=_POSITIONS_NOTE + f" with dt = {WALKER2D_DT}",
         obs_features=_without_x(18)),
    Task("Swimmer-v5", swimmer_reward, obs_dim=10, act_dim=2, action_low=(-1.0,) * 2,
         action_high=(1.0,) * 2, max_episode_steps=1000, env_kwargs=_POSITIONS,
         env_kwargs_note=(_POSITIONS_NOTE + f" with dt = {SWIMMER_DT}, obs[1] the y position "
                          "(the env's default observation drops both)"),
         obs_features=ObsFeatures(10, drop=(0, 1))),  # no (x, y)
    Task("Ant-v5", ant_reward, obs_dim=107, act_dim=8, action_low=(-1.0,) * 8,
         action_high=(1.0,) * 8, max_episode_steps=1000, termination_fn=ant_termination,
         env_kwargs={**_POSITIONS, "include_cfrc_ext_in_observation": True},
         env_kwargs_note=(_POSITIONS_NOTE + f" with dt = {ANT_DT}; "
                          "include_cfrc_ext_in_observation=True (the v5 default) puts the "
                          "clipped contact forces of the contact cost in obs[29:]"),
         reward_exact=False, obs_features=ObsFeatures(107, drop=(0, 1)),  # no (x, y)
         note=("the env's forward velocity reads the torso's data.xpos, the kinematics of "
               "the last RK4 stage, not the final qpos in the observation; with contacts they "
               "differ by up to a few mm, a per-step forward-reward error up to ~0.1 (max "
               "0.045 over 100 random steps, 0.099 over 2000). The error telescopes: over an "
               "episode the summed forward reward differs by (xpos_T - qpos_T) / dt of the "
               "last step only. The control, contact and healthy terms and the termination "
               "are exact")),
)

for _task in TASKS:
    register_task(_task)
