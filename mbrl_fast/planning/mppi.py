"""MPPI planner (Williams et al. 2017), batched over N start states.

Per call, from the warm-started mean::

    repeat `iterations` times:
        samples = clamp(mean + noise_std * eps, low, high)   eps ~ N(0, 1)  [N, P, H, A]
        returns = propagate(model, obs, samples)                            [N, P]
        mean    = sum_p softmax(returns / temperature)_p samples[:, p]       (mppi_update)
    return mean

noise_std is fixed (default (high - low) / 4, PETS's initial std). Defaults otherwise
follow mbrl-lib's PETS-MPPI HalfCheetah setting: population 350, 5 iterations,
temperature 1 / gamma = 1 / 0.9. The temperature is in units of return: scale it with
the task's reward.
"""

from __future__ import annotations

import torch

from mbrl_fast.ops import elite_update, noise
from mbrl_fast.planning.base import Planner, check_float, check_int


class MPPIPlanner(Planner):
    """MPPI. See :class:`Planner` for model, bounds, reward, termination, seed, backend.

    population P; iterations; temperature > 0; noise_std: float or [A] (None:
    (high - low) / 4).
    """

    def __init__(self, model, action_low, action_high, *, reward, horizon: int = 30,
                 population: int = 350, iterations: int = 5, temperature: float = 1 / 0.9,
                 noise_std=None, particles: int = 20, propagation: str = "tsinf",
                 termination=None, seed: int = 0, backend: str = "auto",
                 precision: str = "fp32"):
        self.population = check_int("population", population)
        self.iterations = check_int("iterations", iterations)
        self.temperature = check_float("temperature", temperature, 0.0, low_open=True)
        super().__init__(model, action_low, action_high, reward=reward, horizon=horizon,
                         particles=particles, propagation=propagation, termination=termination,
                         seed=seed, backend=backend, precision=precision)
        if noise_std is None:
            std = (self.action_high - self.action_low) * 0.25
        else:
            std = torch.as_tensor(noise_std, dtype=torch.float32,
                                  device=self.action_low.device).reshape(-1)
            if std.numel() == 1:
                std = std.expand(self.action_dim)
            if std.shape != (self.action_dim,) or not (torch.isfinite(std).all() and
                                                       (std >= 0).all()):
                raise ValueError(f"noise_std must be a float or [A={self.action_dim}], finite "
                                 f"and >= 0, got {noise_std!r}")
        self.noise_std = std.contiguous()  # [A]

    def _optimize(self, obs: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        n, h, a = mean.shape
        for _ in range(self.iterations):
            eps = noise.normal((n, self.population, h, a), self.seed, self.sample_offset(),
                               device=mean.device, backend=self.op_backend)
            samples = torch.clamp(mean[:, None] + self.noise_std * eps, self.action_low,
                                  self.action_high)  # [N, P, H, A]
            returns = self.evaluate(obs, samples)
            mean = elite_update.mppi_update(samples, returns, temperature=self.temperature,
                                            backend=self.op_backend).mean
        return mean
