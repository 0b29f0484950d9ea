"""The PETS CEM planner in plain eager PyTorch, written as a careful user would.

This is the "plain PyTorch" baseline of the planner benchmark: no compiled
kernels, but no avoidable waste either. Batched ``baddbmm`` over the ensemble
members, every particle of every sequence in one batch (no Python loop over
particles or sequences), ``torch.no_grad``, and one Python loop over CEM
iterations and one over the horizon.

TS-inf (Chua et al. 2018): each particle keeps one ensemble member for the whole
horizon. The particles are grouped by member once per iteration into a padded
``[E, rows_per_member, ...]`` layout so that every step is E batched matmuls; with
the default balanced assignment (a random permutation, as mbrl-lib's
``fixed_model`` does) there is no padding at all.

CEM (PETS): mean mu [N, H, A] starts at the middle of the action box, variance
var = (high - low)^2 / 16; each iteration samples
``a = mu + sqrt(min(var, (mu - low)^2 / 4, (high - mu)^2 / 4)) * z`` with z a standard
normal truncated to [-2, 2], keeps the ``num_elites`` best sequences by mean
particle return and moves ``mu, var <- alpha * (mu, var) + (1 - alpha) *
(elite mean, elite variance)``. The plan is the final mean; the next call starts
from it shifted by one step (warm start, as PETS and mbrl-lib). No early stop: every
call runs all iterations.

Random numbers come from a noise source: :class:`TorchNoise` (the default, a
torch.Generator) or :class:`PhiloxNoise` (the exact stream of mbrl-fast's CEMPlanner,
so tests can compare the two planners on the same samples).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from mbrl_fast.ops.ensemble_mlp import MLPParams, layer_weights_fp32

RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class TorchNoise:
    """The planner's random numbers from one torch.Generator (what a user would write).

    Members are balanced: a random permutation of the rows, modulo E (mbrl-lib's
    ``fixed_model`` assignment), so every member gets the same number of particles.
    """

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def sample_actions(self, mean, var, low, high, population: int) -> torch.Tensor:
        """mean, var [N, H, A] -> [N, P, H, A]: 2-sigma truncated normal, variance bounded
        so that mean +- 2 sigma stays inside [low, high]."""
        bound = torch.minimum((mean - low) ** 2, (high - mean) ** 2) / 4
        std = torch.sqrt(torch.minimum(var, bound))
        n, h, a = mean.shape
        z = torch.nn.init.trunc_normal_(torch.empty(n, population, h, a), 0.0, 1.0, -2.0, 2.0,
                                        generator=self.generator)
        return mean.unsqueeze(1) + std.unsqueeze(1) * z

    def rollout_noise(self, n: int, p: int, k: int, h: int, d: int, num_members: int):
        """(member [rows] int64, eps [rows, H, D]) of one evaluation, row = (n P + p) K + k."""
        rows = n * p * k
        member = torch.randperm(rows, generator=self.generator) % num_members
        return member, torch.randn(rows, h, d, generator=self.generator)


class PhiloxNoise:
    """The random numbers mbrl_fast.planning.CEMPlanner draws, for same-noise comparisons.

    Offsets in call order, as ``Planner.take_offsets``: each sampling takes
    ``SAMPLE_OFFSETS`` (``elite_update.truncated_normal``'s uniform stream), each
    evaluation ``OFFSETS_PER_CALL`` (``propagate``'s TS-inf members and Gaussian eps).
    """

    def __init__(self, seed: int, offset: int = 0):
        self.seed, self.offset = seed, offset

    def _take(self, count: int) -> int:
        first = self.offset
        self.offset += count
        return first

    def sample_actions(self, mean, var, low, high, population: int) -> torch.Tensor:
        from mbrl_fast.ops.elite_update import SAMPLE_OFFSETS, truncated_normal

        return truncated_normal(mean, var, low, high, population=population, seed=self.seed,
                                offset=self._take(SAMPLE_OFFSETS), backend="reference")

    def rollout_noise(self, n: int, p: int, k: int, h: int, d: int, num_members: int):
        from mbrl_fast.ops import noise
        from mbrl_fast.ops.propagate import OFFSETS_PER_CALL

        off = self._take(OFFSETS_PER_CALL)
        eps = noise.normal((n * p * k, h, d), self.seed, off)  # propagate's eps stream
        member = noise.randint((n * p * k,), num_members, self.seed, off + 1)
        return member, eps


class EagerEnsemble:
    """The ensemble's tensors as a user keeps them: W [E, in, out], b [E, 1, out]."""

    def __init__(self, params: MLPParams):
        if not params.gaussian:
            raise ValueError("params must have a Gaussian head (max_logvar/min_logvar)")
        self.weights = [w.contiguous() for w in layer_weights_fp32(params)]  # [E, in, out]
        self.biases = [b.unsqueeze(1).contiguous() for b in params.biases]  # [E, 1, out]
        d_in = params.sizes[0]
        self.in_mean = params.in_mean if params.in_mean is not None else torch.zeros(d_in)
        self.in_std = params.in_std if params.in_std is not None else torch.ones(d_in)
        self.max_logvar = params.max_logvar
        self.min_logvar = params.min_logvar
        self.activation = {"silu": F.silu, "relu": F.relu, "tanh": torch.tanh,
                           "elu": F.elu}[params.activation]
        self.num_members = params.num_members

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [E, B, D + A] -> (mean, logvar) each [E, B, D]."""
        h = (x - self.in_mean) / self.in_std
        last = len(self.weights) - 1
        for l, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if l < last:
                h = self.activation(h)
        d = h.shape[-1] // 2
        mean, raw = h[..., :d], h[..., d:]
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar


def _group_by_member(member: torch.Tensor, num_members: int):
    """Padded grouping of rows by member.

    Returns src [E, M] (row index of each slot; padding repeats a valid row) and
    valid [E, M] bool, with M the largest group.
    """
    order = torch.argsort(member, stable=True)
    counts = torch.bincount(member, minlength=num_members)
    starts = torch.cumsum(counts, 0) - counts
    m = int(counts.max())
    j = torch.arange(m)
    valid = j.unsqueeze(0) < counts.unsqueeze(1)
    pos = torch.minimum(starts.unsqueeze(1) + j.unsqueeze(0),
                        (starts + counts - 1).clamp(min=0).unsqueeze(1))
    return order[pos], valid


class EagerCEMPlanner:
    """PETS CEM + TS-inf in eager PyTorch. ``plan(obs [N, D] or [D]) -> [N, H, A] or [H, A]``."""

    def __init__(self, params: MLPParams, action_low, action_high, *, horizon: int,
                 population: int, num_elites: int, iterations: int, alpha: float,
                 particles: int, reward: RewardFn, seed: int = 0, noise=None):
        if not 1 <= num_elites <= population:
            raise ValueError(f"num_elites must be in [1, population={population}], "
                             f"got {num_elites}")
        self.model = EagerEnsemble(params)
        self.low = torch.as_tensor(action_low, dtype=torch.float32)  # [A]
        self.high = torch.as_tensor(action_high, dtype=torch.float32)  # [A]
        self.horizon, self.population, self.num_elites = horizon, population, num_elites
        self.iterations, self.alpha, self.particles = iterations, alpha, particles
        self.reward = reward
        self.noise = noise if noise is not None else TorchNoise(seed)
        self._prev: torch.Tensor | None = None  # [N, H, A] last plan (warm start)

    @torch.no_grad()
    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Mean TS-inf particle return per sequence: obs [N, D], actions [N, P, H, A] -> [N, P]."""
        n, p, h, a = actions.shape
        k, e = self.particles, self.model.num_members
        rows = n * p * k  # row = (n * P + p) * K + k
        member, eps = self.noise.rollout_noise(n, p, k, h, obs.shape[1], e)
        src, valid = _group_by_member(member, e)  # [E, M]
        eps = eps[src]  # [E, M, H, D]
        act = actions.unsqueeze(2).expand(n, p, k, h, a).reshape(rows, h, a)[src]  # [E, M, H, A]
        state = obs.unsqueeze(1).expand(n, p * k, -1).reshape(rows, -1)[src]  # [E, M, D]
        total = torch.zeros(src.shape)  # [E, M]
        for t in range(h):
            a_t = act[:, :, t]
            mean, logvar = self.model(torch.cat([state, a_t], dim=-1))
            nxt = state + mean + torch.exp(0.5 * logvar) * eps[:, :, t]
            total += self.reward(state, a_t, nxt)
            state = nxt
        returns = torch.zeros(rows)
        returns[src[valid]] = total[valid]
        return returns.view(n, p, k).mean(dim=-1)

    @torch.no_grad()
    def plan(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [D] -> [H, A] or [N, D] -> [N, H, A]; warm-started from the previous plan."""
        single = obs.dim() == 1
        obs = obs.reshape(-1, obs.shape[-1]).to(torch.float32)  # [N, D]
        n, h, a = obs.shape[0], self.horizon, self.low.shape[0]
        mu = ((self.low + self.high) / 2).expand(n, h, a).clone()  # [N, H, A]
        if self._prev is not None and self._prev.shape[0] == n:
            mu[:, :-1] = self._prev[:, 1:]  # shift by the one step executed since
        var = ((self.high - self.low) ** 2 / 16).expand(n, h, a).clone()
        for _ in range(self.iterations):
            actions = self.noise.sample_actions(mu, var, self.low, self.high, self.population)
            returns = self.evaluate(obs, actions)  # [N, P]
            idx = returns.topk(self.num_elites, dim=1).indices  # [N, K]
            elites = actions[torch.arange(n).unsqueeze(1), idx]  # [N, K, H, A]
            mu = self.alpha * mu + (1 - self.alpha) * elites.mean(dim=1)
            var = self.alpha * var + (1 - self.alpha) * elites.var(dim=1, unbiased=False)
        self._prev = mu
        return mu[0] if single else mu
