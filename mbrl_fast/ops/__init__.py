"""The engine's ops: each module holds the math, the pure-torch reference and the dispatch."""

from mbrl_fast.ops._numba import compile_reward
from mbrl_fast.ops.contract import (
    MODES,
    OFFSETS_PER_CALL,
    MLPParams,
    PropagateResult,
    Reward,
    RewardKind,
    pack_bf16,
    unpack_bf16,
)
from mbrl_fast.ops.elite_update import CEMUpdate, MPPIUpdate, cem_update, mppi_update
from mbrl_fast.ops.ensemble_mlp import ensemble_mlp
from mbrl_fast.ops.propagate import propagate
from mbrl_fast.ops.samplers import colored_noise, truncated_normal
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
    "RewardKind",
    "compile_reward",
    "SkillReward",
    "skill_reward",
]
