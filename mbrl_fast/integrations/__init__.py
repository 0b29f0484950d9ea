"""Adapters to what users already run; each module imports its third-party library lazily.

    torch_modules  MLPParams from per-member ``nn.Sequential`` (one documented copy) or from
                   stacked ensemble layers (views, no copy)
    mbrl_lib       mbrl-lib's GaussianMLP as MLPParams (views) and a drop-in
                   TrajectoryOptimizerAgent (one line of an mbrl-lib PETS script changes)
    sb3            an MPC policy with Stable-Baselines3's ``predict`` (VecEnvs planned in one
                   call), an SB3 actor as the policy inside ``ops.propagate``, and
                   ``load_policy_into_ppo``: MB-MF's distilled policy into a PPO model
    ray_sweep      ``mbrl-fast sweep``: seeds x config overrides of any agent on Ray, every
                   trial a resumable run directory

A plain torch callable ``step(state, action)`` is a model too: the planners accept it
directly (:mod:`mbrl_fast.planning.step_model`). See docs/integrations.md.

Importing this package imports none of mbrl-lib, Stable-Baselines3 or Ray.
"""

from mbrl_fast.integrations.torch_modules import (
    SUPPORTED_LAYERS,
    SequentialEnsemble,
    mlp_params_from_sequentials,
    mlp_params_from_stacked,
)

__all__ = [
    "SUPPORTED_LAYERS",
    "SequentialEnsemble",
    "mlp_params_from_sequentials",
    "mlp_params_from_stacked",
]
