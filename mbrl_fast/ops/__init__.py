"""The engine's ops: each module holds the math, the pure-torch reference and the dispatch."""

from mbrl_fast.ops.ensemble_mlp import MLPParams, ensemble_mlp, pack_bf16, unpack_bf16
from mbrl_fast.ops.propagate import MODES, PropagateResult, propagate
from mbrl_fast.ops.rewards import Reward

__all__ = [
    "MLPParams",
    "ensemble_mlp",
    "pack_bf16",
    "unpack_bf16",
    "MODES",
    "PropagateResult",
    "propagate",
    "Reward",
]
