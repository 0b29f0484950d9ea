"""The engine's ops: each module holds the math, the pure-torch reference and the dispatch."""

from mbrl_fast.ops._numba import compile_reward
from mbrl_fast.ops.elite_update import (
    CEMUpdate,
    MPPIUpdate,
    cem_update,
    colored_noise,
    mppi_update,
    truncated_normal,
)
from mbrl_fast.ops.ensemble_mlp import MLPParams, ensemble_mlp, pack_bf16, unpack_bf16
from mbrl_fast.ops.propagate import MODES, OFFSETS_PER_CALL, PropagateResult, propagate
from mbrl_fast.ops.rewards import Reward
from mbrl_fast.ops.skill_reward import SkillReward, skill_reward

__all__ = [
    "MLPParams",
    "ensemble_mlp",
    "pack_bf16",
    "unpack_bf16",
    "MODES",
    "OFFSETS_PER_CALL",
    "PropagateResult",
    "propagate",
    "CEMUpdate",
    "MPPIUpdate",
    "cem_update",
    "mppi_update",
    "truncated_normal",
    "colored_noise",
    "Reward",
    "compile_reward",
    "SkillReward",
    "skill_reward",
]
