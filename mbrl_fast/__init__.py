"""mbrl-fast: a compiled-kernel planning engine for model-based reinforcement learning.

Importing never needs a GPU, a driver, Triton, numba or a compiler: compiled
backends load lazily (see :mod:`mbrl_fast.backends`).

Layers: ``ops`` (kernels + references) -> ``nn`` / ``models`` -> ``planning`` ->
``envs`` -> ``agents`` -> ``cli``.
"""

from mbrl_fast import backends
from mbrl_fast.ops import (
    MLPParams,
    PropagateResult,
    Reward,
    compile_reward,
    ensemble_mlp,
    propagate,
)
from mbrl_fast.planning import (
    CEMPlanner,
    ICEMPlanner,
    MPCAgent,
    MPPIPlanner,
    RandomShootingPlanner,
)

__version__ = "0.1.0"

__all__ = [
    "backends",
    "MLPParams",
    "PropagateResult",
    "Reward",
    "compile_reward",
    "ensemble_mlp",
    "propagate",
    "CEMPlanner",
    "ICEMPlanner",
    "MPPIPlanner",
    "RandomShootingPlanner",
    "MPCAgent",
    "__version__",
]
