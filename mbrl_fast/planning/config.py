"""A planner as config data, and the planner it builds for a model and a task.

Every planning agent (PETS, MB-MF, DADS's latent planner, ...) keeps a
``PlannerConfig`` section in its config and calls :func:`make_planner`; the task
supplies the reward, the planning-only shaping, the termination function and the
action bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from mbrl_fast.planning.cem import CEMPlanner
from mbrl_fast.planning.icem import ICEMPlanner
from mbrl_fast.planning.mppi import MPPIPlanner
from mbrl_fast.planning.random_shooting import RandomShootingPlanner

PLANNERS = ("cem", "icem", "mppi", "random")


@dataclass
class PlannerConfig:
    """MPC planner (PETS: CEM, population 500, 50 elites, 5 iterations, alpha 0.1)."""

    name: str = "cem"
    """One of 'cem', 'icem', 'mppi', 'random' (random shooting, Nagabandi et al. 2018)."""
    population: int = 500
    """Candidate action sequences per iteration."""
    num_elites: int = 50
    """Elite sequences refitting the CEM / iCEM distribution."""
    iterations: int = 5
    """Optimizer iterations per action (random shooting: always 1)."""
    alpha: float = 0.1
    """Momentum: new mean = alpha * old + (1 - alpha) * elite mean."""
    horizon: int = 30
    """Planning horizon H (steps)."""
    particles: int = 20
    """Particles per sequence for the expected return."""
    propagation: str = "tsinf"
    """Particle propagation: 'tsinf' (PETS TS-inf), 'ts1' or 'expectation'."""
    backend: str = "auto"
    """ops backend for propagate / elite updates: auto, reference, cpu, triton, cuda."""
    precision: str = "fp32"
    """Rollout weights: 'fp32', or 'bf16' (packed once per training round; faster on CPUs with
    AVX512-BF16, see README's benchmark; elsewhere it runs the fp32 kernels)."""
    beta: float = 2.5
    """iCEM only: colored-noise exponent (Pinneri et al. 2020: 0 white ... 2.5 smooth)."""
    keep_fraction: float = 0.3
    """iCEM only: fraction of the elites kept for the next iteration and the next step."""
    decay: float = 1.25
    """iCEM only: population decay per iteration."""
    shaping: bool = True
    """Add the task's planning-only shaping term (Task.shaping_fn) to the objective."""


def make_planner(p: PlannerConfig, model, task, seed: int):
    """The configured planner over ``model`` with the task's reward, termination and bounds.

    task: a :class:`mbrl_fast.envs.Task` (or anything with its ``reward``,
    ``planning_reward``, ``planning_termination``, ``action_low`` / ``action_high``).
    A model with a learned reward head plans on it (``reward="model"``).
    """
    if getattr(model, "reward_head", False):
        reward = "model"
    else:
        reward = task.planning_reward if p.shaping else task.reward
    common = dict(reward=reward, horizon=p.horizon, particles=p.particles,
                  propagation=p.propagation, termination=task.planning_termination, seed=seed,
                  backend=p.backend, precision=p.precision)
    low, high = task.action_low, task.action_high
    if p.name == "cem":
        return CEMPlanner(model, low, high, population=p.population, num_elites=p.num_elites,
                          iterations=p.iterations, alpha=p.alpha, **common)
    if p.name == "icem":
        return ICEMPlanner(model, low, high, population=p.population, num_elites=p.num_elites,
                           iterations=p.iterations, alpha=p.alpha, beta=p.beta,
                           keep_fraction=p.keep_fraction, decay=p.decay, **common)
    if p.name == "mppi":
        return MPPIPlanner(model, low, high, population=p.population, iterations=p.iterations,
                           **common)
    if p.name == "random":
        return RandomShootingPlanner(model, low, high, population=p.population, **common)
    raise ValueError(f"planner.name must be one of {PLANNERS}, got {p.name!r}")
