"""Dynamics ensembles: probabilistic (PETS, Chua et al. 2018) and deterministic (MB-MF).

Both predict the state change from a normalized (obs, act)::

    x      = [features(obs), act]                          [B, F + A]
    target = [next_obs - obs, (reward)]                    [B, D_out], D_out = D (+1)
    y      = EnsembleMLP((x - mean) / std)                 [E, B, 2 D_out] or [E, B, D_out]

ProbabilisticEnsemble splits y into mean and a soft-bounded log-variance (same
math as ``ops.ensemble_mlp``'s Gaussian head) and is trained with the Gaussian
NLL of mbrl-lib / PETS, averaged over batch and output dims and summed over members::

    loss = sum_e mean_{b,j} [ (mu - t)^2 exp(-logvar) + logvar ]
           + 0.01 (sum max_logvar - sum min_logvar)
           + sum_l wd_l ||W_l||^2 / 2                      (per-layer L2, see trainer)

``features`` is the ``obs_features`` map (ops/features.py: angles as sin / cos, dropped
coordinates; PETS's obs_preproc), the identity by default (F = D); the planner applies
the same map inside the rollout, from ``mlp_params().obs_features``.

Parameters are stacked [E, in, out] / [E, out] (``mbrl_fast.nn``), so
:meth:`mlp_params` hands the planner views of the trained weights (no copy).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mbrl_fast.models.normalizer import Normalizer
from mbrl_fast.nn import EnsembleMLP
from mbrl_fast.ops.ensemble_mlp import MLPParams, ensemble_mlp, pack_bf16, soft_bound_logvar
from mbrl_fast.ops.features import ObsFeatures, obs_features_reference

# PETS HalfCheetah network (4 hidden layers of 200): L2 weight per affine layer.
PETS_WEIGHT_DECAY = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)


def default_weight_decay(layers: int) -> tuple[float, ...]:
    """PETS's per-layer decay for 4 hidden layers; otherwise 2.5e-5 .. 1e-4 linearly."""
    if layers == 4:
        return PETS_WEIGHT_DECAY
    return tuple(float(v) for v in np.linspace(2.5e-5, 1e-4, layers + 1))


class _Ensemble(nn.Module):
    """What both ensembles share: normalizer, stacked MLP, elites, kernel views."""

    gaussian: bool = False

    def __init__(self, obs_dim: int, act_dim: int, ensemble_size: int, num_elites: int,
                 hidden: int, layers: int, activation: str, reward_head: bool,
                 weight_decay, seed: int | None, obs_features: ObsFeatures | None):
        super().__init__()
        for name, v in (("obs_dim", obs_dim), ("act_dim", act_dim),
                        ("ensemble_size", ensemble_size), ("hidden", hidden)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not isinstance(num_elites, int) or not 1 <= num_elites <= ensemble_size:
            raise ValueError(f"num_elites must be an int in [1, ensemble_size={ensemble_size}], "
                             f"got {num_elites!r}")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        if obs_features is not None:
            if not isinstance(obs_features, ObsFeatures):
                raise TypeError(f"obs_features must be an ObsFeatures or None, got "
                                f"{type(obs_features).__name__}")
            if obs_features.obs_dim != obs_dim:
                raise ValueError(f"obs_features.obs_dim ({obs_features.obs_dim}) must equal "
                                 f"obs_dim ({obs_dim})")
            if obs_features.is_identity:
                obs_features = None
        self.obs_features = obs_features
        in_dim = (obs_dim if obs_features is None else obs_features.width) + act_dim
        self.ensemble_size, self.num_elites = ensemble_size, num_elites
        self.reward_head = bool(reward_head)
        self.out_dim = obs_dim + int(self.reward_head)  # D_out
        width = 2 * self.out_dim if self.gaussian else self.out_dim
        self.mlp = EnsembleMLP(ensemble_size, in_dim, width, hidden, layers, activation, seed)
        self.normalizer = Normalizer(in_dim)
        wd = default_weight_decay(layers) if weight_decay is None else tuple(weight_decay)
        if len(wd) != layers + 1:
            raise ValueError(f"weight_decay needs one value per affine layer ({layers + 1}), "
                             f"got {len(wd)}")
        self.weight_decay = wd
        self.register_buffer("elites", torch.arange(num_elites, dtype=torch.int64))
        self._bf16_cache: tuple[tuple[int, ...], MLPParams] | None = None

    # ---- data layout ------------------------------------------------------------------
    def make_inputs(self, obs, act, dtype=torch.float32) -> torch.Tensor:
        """[B, D], [B, A] (numpy or torch) -> [B, F + A] (features, not normalized) in dtype
        (float64 for the normalizer's statistics)."""
        obs, act = torch.as_tensor(obs), torch.as_tensor(act)
        if obs.dim() != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs must be [B, {self.obs_dim}], got {tuple(obs.shape)}")
        if act.dim() != 2 or act.shape != (obs.shape[0], self.act_dim):
            raise ValueError(f"act must be [{obs.shape[0]}, {self.act_dim}], "
                             f"got {tuple(act.shape)}")
        obs = obs.to(torch.float64)  # sin / cos of float64 angles, then one rounding
        return torch.cat([obs_features_reference(obs, self.obs_features), act.to(torch.float64)],
                         dim=1).to(dtype)

    def make_targets(self, obs, next_obs, reward=None) -> torch.Tensor:
        """Delta targets [B, D_out]: next_obs - obs (difference taken in float64), (+ reward)."""
        obs = torch.as_tensor(obs, dtype=torch.float64)
        delta = torch.as_tensor(next_obs, dtype=torch.float64) - obs
        if self.reward_head:
            if reward is None:
                raise ValueError("reward is required: this model has a reward head")
            reward = torch.as_tensor(reward, dtype=torch.float64).reshape(-1, 1)
            delta = torch.cat([delta, reward], dim=1)
        return delta.to(torch.float32)

    # ---- elites -------------------------------------------------------------------------
    @property
    def elite_members(self) -> list[int]:
        """Indices of the num_elites members with the best validation MSE (sorted by MSE)."""
        return [int(i) for i in self.elites]

    def set_elites(self, order) -> None:
        """Keep the first num_elites of ``order`` (member indices, best first)."""
        order = [int(i) for i in order][: self.num_elites]
        if len(order) != self.num_elites or not all(0 <= i < self.ensemble_size for i in order):
            raise ValueError(f"elites must be {self.num_elites} member indices in "
                             f"[0, {self.ensemble_size}), got {order}")
        self.elites.copy_(torch.tensor(order, dtype=torch.int64))

    # ---- kernel views -------------------------------------------------------------------
    def _logvar_bounds(self):
        return None, None

    def mlp_params(self) -> MLPParams:
        """The model in the kernels' layout: views of the parameters (no copy).

        Stays valid while training (Adam and load_state_dict update in place).
        """
        max_lv, min_lv = self._logvar_bounds()
        return MLPParams(self.mlp.weights(), self.mlp.biases(), self.mlp.activation,
                         self.normalizer.mean32, self.normalizer.std32, max_lv, min_lv,
                         obs_features=self.obs_features)

    def _versions(self) -> tuple[int, ...]:
        tensors = list(self.parameters()) + [self.normalizer.mean32, self.normalizer.std32]
        return tuple(t._version for t in tensors) + tuple(t.data_ptr() for t in tensors)

    def mlp_params_bf16(self) -> MLPParams:
        """bf16-packed weights (``ops.pack_bf16``), packed once and cached until any
        parameter or the normalizer changes (tracked by the tensors' version counters)."""
        key = self._versions()
        if self._bf16_cache is None or self._bf16_cache[0] != key:
            p = self.mlp_params()
            packed = tuple(pack_bf16(w) for w in p.weights)
            params = MLPParams(packed, tuple(b.clone() for b in p.biases), p.activation,
                               p.in_mean.clone(), p.in_std.clone(),
                               None if p.max_logvar is None else p.max_logvar.clone(),
                               None if p.min_logvar is None else p.min_logvar.clone(),
                               obs_features=p.obs_features)
            self._bf16_cache = (key, params)
        return self._bf16_cache[1]

    def decay_loss(self) -> torch.Tensor:
        return self.mlp.decay_loss(self.weight_decay)


class ProbabilisticEnsemble(_Ensemble):
    """PETS's probabilistic ensemble: E Gaussian MLPs over delta-state (+ reward) targets.

    Defaults are mbrl-lib's ``gaussian_mlp_ensemble``: 7 members, 5 elites, 4 hidden
    layers of 200, SiLU. ``learn_logvar_bounds`` trains max/min logvar (init 0.5 / -10)
    as in the original PETS code.
    """

    gaussian = True

    def __init__(self, obs_dim: int, act_dim: int, ensemble_size: int = 7, num_elites: int = 5,
                 hidden: int = 200, layers: int = 4, activation: str = "silu",
                 reward_head: bool = False, learn_logvar_bounds: bool = True,
                 weight_decay=None, seed: int | None = None,
                 obs_features: ObsFeatures | None = None):
        super().__init__(obs_dim, act_dim, ensemble_size, num_elites, hidden, layers,
                         activation, reward_head, weight_decay, seed, obs_features)
        self.max_logvar = nn.Parameter(torch.full((self.out_dim,), 0.5),
                                       requires_grad=learn_logvar_bounds)
        self.min_logvar = nn.Parameter(torch.full((self.out_dim,), -10.0),
                                       requires_grad=learn_logvar_bounds)

    def _logvar_bounds(self):
        return self.max_logvar.detach(), self.min_logvar.detach()

    def forward(self, x: torch.Tensor, precision: str = "fp32"):
        """x [E, B, F + A] (make_inputs) -> (mean, logvar) [E, B, D_out] each (autograd);
        ``precision``: of the MLP's products (EnsembleMLP.forward)."""
        y = self.mlp(self.normalizer.normalize(x), precision)
        d = self.out_dim
        return y[..., :d], soft_bound_logvar(y[..., d:], self.max_logvar, self.min_logvar)

    def loss(self, x: torch.Tensor, target: torch.Tensor,
             precision: str = "fp32") -> torch.Tensor:
        """Gaussian NLL (module docstring), x [E, B, F + A], target [E, B, D_out]; no decay."""
        mean, logvar = self(x, precision)
        nll = ((mean - target) ** 2 * torch.exp(-logvar) + logvar).mean(dim=(1, 2)).sum()
        return nll + 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())

    def predict_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[0]

    @torch.no_grad()
    def predict(self, obs, act, backend: str = "auto"):
        """obs [B, D], act [B, A] -> (mean, logvar) [E, B, D_out] of the targets via the op."""
        return ensemble_mlp(self.make_inputs(obs, act), self.mlp_params(), backend=backend)


class DeterministicEnsemble(_Ensemble):
    """E deterministic MLPs over delta-state (+ reward) targets, trained with MSE
    (summed over members, averaged over batch and outputs). MB-MF (Nagabandi et al.
    2018) uses one member: ``ensemble_size=1, num_elites=1``."""

    gaussian = False

    def __init__(self, obs_dim: int, act_dim: int, ensemble_size: int = 5, num_elites: int = 5,
                 hidden: int = 200, layers: int = 4, activation: str = "silu",
                 reward_head: bool = False, weight_decay=None, seed: int | None = None,
                 obs_features: ObsFeatures | None = None):
        super().__init__(obs_dim, act_dim, ensemble_size, num_elites, hidden, layers,
                         activation, reward_head, weight_decay, seed, obs_features)

    def forward(self, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        """x [E, B, F + A] (make_inputs) -> prediction [E, B, D_out] (autograd);
        ``precision``: of the MLP's products (EnsembleMLP.forward)."""
        return self.mlp(self.normalizer.normalize(x), precision)

    def loss(self, x: torch.Tensor, target: torch.Tensor,
             precision: str = "fp32") -> torch.Tensor:
        return ((self(x, precision) - target) ** 2).mean(dim=(1, 2)).sum()

    def predict_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    @torch.no_grad()
    def predict(self, obs, act, backend: str = "auto") -> torch.Tensor:
        """obs [B, D], act [B, A] -> prediction [E, B, D_out] of the targets via the op."""
        return ensemble_mlp(self.make_inputs(obs, act), self.mlp_params(), backend=backend)

    def gaussian_view(self) -> ZeroVarianceView:
        """This model as ``ops.propagate`` takes it (a Gaussian head), for the planners."""
        return ZeroVarianceView(self)


class ZeroVarianceView:
    """A :class:`DeterministicEnsemble` as a planner's model: ``mlp_params()`` with a
    Gaussian head whose log-variance is pinned near -39 (std ~3e-9).

    ``ops.propagate`` takes Gaussian heads only; the last layer gets D_out zero columns
    for the log-variance (soft-bounded to max = min = -40), so "expectation" rolls out
    the members' mean and "ts1" / "tsinf" add noise of ~1e-9 to it. The padded last layer
    is a copy, remade when a parameter or the normalizer changes (version counters); the
    other layers are views. Cost: D_out more outputs of the last layer (HalfCheetah's
    2 x 500 model: 18 of 270k multiply-adds per row, < 4%).
    """

    LOGVAR = -40.0

    def __init__(self, model: DeterministicEnsemble):
        self.model = model
        self._cache: tuple[tuple[int, ...], MLPParams] | None = None
        self._bf16: tuple[MLPParams, MLPParams] | None = None

    @property
    def elite_members(self) -> list[int]:
        return self.model.elite_members

    def mlp_params(self) -> MLPParams:
        key = self.model._versions()
        if self._cache is None or self._cache[0] != key:
            p = self.model.mlp_params()
            w, b = p.weights[-1].detach(), p.biases[-1].detach()  # [E, h, D_out], [E, D_out]
            bound = torch.full((w.shape[-1],), self.LOGVAR, device=w.device)
            params = MLPParams((*p.weights[:-1], torch.cat([w, torch.zeros_like(w)], -1)),
                               (*p.biases[:-1], torch.cat([b, torch.zeros_like(b)], -1)),
                               p.activation, p.in_mean, p.in_std, bound, bound.clone(),
                               obs_features=p.obs_features)
            self._cache = (key, params)
        return self._cache[1]

    def mlp_params_bf16(self) -> MLPParams:
        """:meth:`mlp_params` with bf16-packed weights (planner ``precision="bf16"``)."""
        p = self.mlp_params()
        if self._bf16 is None or self._bf16[0] is not p:
            self._bf16 = (p, p.to_bf16())
        return self._bf16[1]
