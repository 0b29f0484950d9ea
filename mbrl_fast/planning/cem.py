"""Cross-entropy method planner as in PETS (Chua et al. 2018), batched over N start states.

Per call, from the warm-started mean and PETS's initial variance ((high - low) / 4)^2::

    repeat `iterations` times (an environment stops early once max var < epsilon):
        samples  = truncated_normal(mean, var, bounds)        [N, P, H, A]  (2-sigma, bound-
                                                                            constrained var)
        returns  = propagate(model, obs, samples)             [N, P]        (one call)
        mean, var = cem_update(samples, returns, mean, var)   top-K elites, momentum alpha
    return mean                (or, with return_mean=False, the best sample seen)

Defaults are PETS's: population 500, 50 elites, 5 iterations, alpha 0.1, epsilon 0.001,
horizon 30, 20 particles, TS-inf propagation.
"""

from __future__ import annotations

import torch

from mbrl_fast.ops import elite_update
from mbrl_fast.planning.base import Planner, check_float, check_int


class CEMPlanner(Planner):
    """PETS's CEM. See :class:`Planner` for model, bounds, reward, termination, seed, backend.

    population: samples per iteration P; num_elites: K <= P; iterations; alpha: momentum
    in [0, 1]; epsilon: per-environment early stop on max var (0 disables);
    return_mean: return the final mean (PETS) rather than the best sample seen.
    """

    def __init__(self, model, action_low, action_high, *, reward, horizon: int = 30,
                 population: int = 500, num_elites: int = 50, iterations: int = 5,
                 alpha: float = 0.1, epsilon: float = 0.001, return_mean: bool = True,
                 particles: int = 20, propagation: str = "tsinf", termination=None,
                 seed: int = 0, backend: str = "auto", precision: str = "fp32"):
        self.population = check_int("population", population)
        self.num_elites = check_int("num_elites", num_elites)
        if num_elites > population:
            raise ValueError(f"num_elites ({num_elites}) must not exceed population ({population})")
        self.iterations = check_int("iterations", iterations)
        self.alpha = check_float("alpha", alpha, 0.0, 1.0)
        self.epsilon = check_float("epsilon", epsilon, 0.0)
        self.return_mean = bool(return_mean)
        super().__init__(model, action_low, action_high, reward=reward, horizon=horizon,
                         particles=particles, propagation=propagation, termination=termination,
                         seed=seed, backend=backend, precision=precision)

    def _optimize(self, obs: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        n = obs.shape[0]
        var = self.initial_var(n)  # [N, H, A]
        best, best_return = mean.clone(), torch.full((n,), -torch.inf, device=mean.device)
        done = torch.zeros(n, dtype=torch.bool, device=mean.device)
        for _ in range(self.iterations):
            samples = elite_update.truncated_normal(
                mean, var, self.action_low, self.action_high, population=self.population,
                seed=self.seed, offset=self.sample_offset(), backend=self.op_backend)
            returns = self.evaluate(obs, samples)  # [N, P]
            upd = elite_update.cem_update(samples, returns, mean, var, num_elites=self.num_elites,
                                          alpha=self.alpha, epsilon=self.epsilon,
                                          backend=self.op_backend)
            live = ~done[:, None, None]
            mean = torch.where(live, upd.mean, mean)
            var = torch.where(live, upd.var, var)
            better = (upd.best_return > best_return) & ~done  # NaN compares False
            best = torch.where(better[:, None, None], upd.best, best)
            best_return = torch.where(better, upd.best_return, best_return)
            done |= upd.converged
            if bool(done.all()):
                break
        return mean if self.return_mean else best
