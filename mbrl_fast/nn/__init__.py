"""Ensemble layers stored in the kernels' layout (weights [E, in, out], biases [E, out])."""

from mbrl_fast.nn.ensemble import EnsembleLinear, EnsembleMLP, truncated_normal_

__all__ = ["EnsembleLinear", "EnsembleMLP", "truncated_normal_"]
