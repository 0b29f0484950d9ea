"""Ensemble layers stored in the kernels' layout (weights [E, in, out], biases [E, out])."""

from mbrl_fast.nn.ensemble import EnsembleLinear, EnsembleMLP, truncated_normal_
from mbrl_fast.nn.policy import GaussianPolicy, TanhGaussianPolicy

__all__ = ["EnsembleLinear", "EnsembleMLP", "GaussianPolicy", "TanhGaussianPolicy",
           "truncated_normal_"]
