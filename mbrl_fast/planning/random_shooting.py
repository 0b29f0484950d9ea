"""Random shooting (Nagabandi et al. 2018, MB-MF): one uniform batch, keep the best.

    samples = low + (high - low) * u,  u ~ U(0, 1)   [N, P, H, A]  (noise.uniform, one offset)
    returns = propagate(model, obs, samples)        [N, P]
    return samples[n, argmax_p returns[n, p]]        (NaN returns rank last)
"""

from __future__ import annotations

import torch

from mbrl_fast.ops import elite_update, noise
from mbrl_fast.planning.base import Planner, check_int


class RandomShootingPlanner(Planner):
    """Random shooting. See :class:`Planner` for model, bounds, reward, termination, seed,
    backend. population: the number of uniform sequences P. No warm start is used."""

    def __init__(self, model, action_low, action_high, *, reward, horizon: int = 30,
                 population: int = 1000, particles: int = 20, propagation: str = "tsinf",
                 termination=None, seed: int = 0, backend: str = "auto",
                 precision: str = "fp32"):
        self.population = check_int("population", population)
        super().__init__(model, action_low, action_high, reward=reward, horizon=horizon,
                         particles=particles, propagation=propagation, termination=termination,
                         seed=seed, backend=backend, precision=precision)

    def _optimize(self, obs: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        n, h, a = mean.shape
        u = noise.uniform((n, self.population, h, a), self.seed, self.sample_offset(),
                          device=mean.device, backend=self.op_backend)
        samples = self.action_low + (self.action_high - self.action_low) * u
        returns = self.evaluate(obs, samples)  # [N, P]
        best = elite_update.elite_order(returns)[:, 0]  # [N]
        return samples[torch.arange(n, device=samples.device), best]
