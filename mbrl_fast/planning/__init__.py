"""Sampling planners over learned ensembles (batched over N start states) and the MPC agent.

    CEMPlanner             PETS's cross-entropy method (Chua et al. 2018)
    ICEMPlanner            iCEM: colored noise, kept elites, population decay (Pinneri et al. 2020)
    MPPIPlanner            softmax-weighted updates (Williams et al. 2017)
    RandomShootingPlanner  one uniform batch, best sequence (Nagabandi et al. 2018)
    MPCAgent               act(obs) -> first action(s), replanning every k steps
    PlannerConfig          a planner as config data; make_planner(config, model, task, seed)
"""

from mbrl_fast.planning import calibrate
from mbrl_fast.planning.base import Planner
from mbrl_fast.planning.cem import CEMPlanner
from mbrl_fast.planning.config import PlannerConfig, make_planner
from mbrl_fast.planning.icem import ICEMPlanner
from mbrl_fast.planning.mpc import MPCAgent
from mbrl_fast.planning.mppi import MPPIPlanner
from mbrl_fast.planning.random_shooting import RandomShootingPlanner

__all__ = [
    "Planner",
    "CEMPlanner",
    "ICEMPlanner",
    "MPPIPlanner",
    "RandomShootingPlanner",
    "MPCAgent",
    "PlannerConfig",
    "make_planner",
    "calibrate",
]
