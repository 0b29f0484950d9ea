"""iCEM (Pinneri et al. 2020, "Sample-efficient Cross-Entropy Method for Real-time Planning").

CEM with four of the paper's changes, batched over N start states::

    P_i      = max(min_population, ceil(population * decay^-i))       population decay
    samples  = colored_noise(mean, var, bounds, beta)   [N, P_i, H, A]  power-law noise over H
             + the best keep_fraction * K elites: at i = 0 those of the previous plan call,
               shifted by the executed steps (tail from fresh samples); later, this call's
             + the mean itself at the last iteration
    returns  = propagate(...);  mean, var = cem_update(...) with momentum alpha
    return the best sequence seen (or, with return_mean=True, the final mean)

Defaults follow the paper's main setting: population 300, 10 elites, 3 iterations,
decay 1.25, beta 2.5, keep fraction 0.3, alpha 0.1, horizon 30; min population 2 K.
"""

from __future__ import annotations

import math

import torch

from mbrl_fast.ops import elite_update
from mbrl_fast.planning.base import Planner, check_float, check_int


def population_schedule(population: int, decay: float, iterations: int,
                        min_population: int) -> list[int]:
    """Fresh samples per iteration: max(min_population, ceil(population * decay^-i))."""
    return [max(min_population, math.ceil(round(population * decay**-i, 6)))
            for i in range(iterations)]


def shift_sequences(seq: torch.Tensor, shift: int, tail: torch.Tensor) -> torch.Tensor:
    """[N, M, H, A] sequences advanced by ``shift`` steps, the last steps taken from tail."""
    h = seq.shape[2]
    if shift >= h:
        return tail.clone()
    return torch.cat([seq[:, :, shift:], tail[:, :, h - shift:]], dim=2)


class ICEMPlanner(Planner):
    """iCEM. See :class:`Planner` for model, bounds, reward, termination, seed, backend.

    population: fresh samples at the first iteration; num_elites K; iterations;
    decay: population decay factor per iteration (>= 1); min_population (default 2 K, >= K);
    beta: colored-noise exponent (0 white, 2.5 default, task-specific in the paper);
    keep_fraction: fraction of the K elites carried to the next iteration and, shifted,
    to the next plan call; alpha: momentum; return_mean: return the mean, not the best.
    """

    def __init__(self, model, action_low, action_high, *, reward, horizon: int = 30,
                 population: int = 300, num_elites: int = 10, iterations: int = 3,
                 decay: float = 1.25, min_population: int | None = None, beta: float = 2.5,
                 keep_fraction: float = 0.3, alpha: float = 0.1, return_mean: bool = False,
                 particles: int = 20, propagation: str = "tsinf", termination=None,
                 seed: int = 0, backend: str = "auto", precision: str = "fp32"):
        self.population = check_int("population", population)
        self.num_elites = check_int("num_elites", num_elites)
        self.min_population = check_int("min_population", 2 * num_elites if min_population
                                        is None else min_population)
        if self.num_elites > min(self.population, self.min_population):
            raise ValueError(f"num_elites ({num_elites}) must not exceed population "
                             f"({population}) nor min_population ({self.min_population})")
        self.iterations = check_int("iterations", iterations)
        self.decay = check_float("decay", decay, 1.0)
        self.beta = check_float("beta", beta, 0.0, 9.99)
        self.keep_fraction = check_float("keep_fraction", keep_fraction, 0.0, 1.0)
        self.num_kept = int(self.keep_fraction * self.num_elites)
        self.alpha = check_float("alpha", alpha, 0.0, 1.0)
        self.return_mean = bool(return_mean)
        self._elites: torch.Tensor | None = None  # [N, num_kept, H, A] of the last call
        super().__init__(model, action_low, action_high, reward=reward, horizon=horizon,
                         particles=particles, propagation=propagation, termination=termination,
                         seed=seed, backend=backend, precision=precision)

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self._elites = None

    def _optimize(self, obs: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        n = obs.shape[0]
        var = self.initial_var(n)
        best, best_return = mean.clone(), torch.full((n,), -torch.inf, device=mean.device)
        kept = self._elites if self._elites is not None and self._elites.shape[0] == n else None
        sizes = population_schedule(self.population, self.decay, self.iterations,
                                    self.min_population)
        for i, size in enumerate(sizes):
            fresh = elite_update.colored_noise(
                mean, var, self.action_low, self.action_high, population=size, beta=self.beta,
                seed=self.seed, offset=self.sample_offset(), backend=self.op_backend)
            parts = [fresh]  # [N, P_i, H, A]
            if kept is not None and kept.shape[1] > 0:
                if i == 0:  # last call's elites, advanced by the executed steps
                    kept = shift_sequences(kept, self.last_shift, fresh[:, : kept.shape[1]])
                parts.append(kept)
            if i == self.iterations - 1:
                parts.append(mean[:, None])
            samples = torch.cat(parts, dim=1).contiguous()
            returns = self.evaluate(obs, samples)
            upd = elite_update.cem_update(samples, returns, mean, var, num_elites=self.num_elites,
                                          alpha=self.alpha, backend=self.op_backend)
            mean, var = upd.mean, upd.var
            better = upd.best_return > best_return
            best = torch.where(better[:, None, None], upd.best, best)
            best_return = torch.where(better, upd.best_return, best_return)
            idx = upd.elites[:, : self.num_kept]  # [N, num_kept]
            h, a = samples.shape[2:]
            kept = samples.gather(1, idx[:, :, None, None].expand(-1, -1, h, a))
        self._elites = kept
        return mean if self.return_mean else best
