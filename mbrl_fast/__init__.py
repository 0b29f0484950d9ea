"""mbrl-fast: a compiled-kernel planning engine for model-based reinforcement learning.

Importing never needs a GPU, a driver, Triton or a compiler: compiled backends
load lazily (see :mod:`mbrl_fast.backends`).
"""

from mbrl_fast import backends
from mbrl_fast.ops import MLPParams, PropagateResult, Reward, ensemble_mlp, propagate

__version__ = "0.1.0"

__all__ = [
    "backends",
    "MLPParams",
    "PropagateResult",
    "Reward",
    "ensemble_mlp",
    "propagate",
    "__version__",
]
