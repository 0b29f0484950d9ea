"""Skill dynamics q(s' | s, z) of DADS (Sharma et al. 2020), in the kernels' layout.

q predicts the change of the *skill-dynamics state* s_q = s[predict] (P coordinates of
the observation, all of them by default) from what it reads of that state and a skill
z in [-1, 1]^Z::

    x      = features(s_q)                       [F]  (``omit`` coordinates left out)
    in     = ([x, z] - in_mean) / in_std         [F + Z]  (running statistics)
    t      = (s'_q - s_q - out_mean) / out_std   [P]      the normalized change (target)
    q(t | s, z) = N(t; mu(in), I)                (DADS's fix_variance: unit variance)
             or N(t; mu(in), diag exp(logvar(in)))    (fix_variance=False: a Gaussian head,
                                                       std soft-bounded to [0.3, 10] as DADS)

mu / logvar are one MLP (``EnsembleMLP`` with one member; DADS: 2 x 512 ReLU), trained by
maximum likelihood (:class:`SkillDynamicsTrainer`). DADS's defaults are a 4-expert
mixture; this is its one-expert case, so that the rollout below is a plain Gaussian MLP.

The x-y prior (the paper's section 6.1; google-research/dads ``reduced_observation=2``
with ``restrict_input_size=2``): ``predict=(x, y)`` and ``omit=(x, y)``, so q models the
x-y displacement and reads nothing of the state: q(delta xy | z). Without the prior,
DADS predicts the change of the whole observation and omits only x-y from the input
(the policy's ``observation_omission``). Both are this class with different indices.

Planning (:meth:`mlp_params`, for ``ops.propagate`` with the skill as the action): the
rollout state is s_q, everything q predicts, so the state rolls forward by
s_q' = s_q + out_mean + out_std * mu (DADS's ``predict_state``: the mean, no noise); q
reads of it only its ``features``. With the x-y prior q reads nothing; the rollout state
then carries one extra constant coordinate (1, read through an all-zero weight row, never
changed), because ``propagate`` rolls a model that reads at least one state feature. The
folded copy (output normalization in the last layer, the padding) is rebuilt only when a
weight or a statistic has changed. :meth:`reward_params` are views of the trained weights
for ``ops.skill_reward`` (targets in the normalized space).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mbrl_fast.models.normalizer import Normalizer
from mbrl_fast.nn.dense import mlp_forward, resolve_backend
from mbrl_fast.nn.ensemble import EnsembleMLP
from mbrl_fast.ops.ensemble_mlp import MLPParams, soft_bound_logvar
from mbrl_fast.ops.features import ObsFeatures, obs_features_reference
from mbrl_fast.ops.skill_reward import SkillReward, skill_reward

STD_MIN, STD_MAX = 0.3, 10.0  # DADS's clip of a learned std (skill_dynamics.py)
_LOG_2PI = math.log(2 * math.pi)


def _indices(name: str, values, dim: int) -> tuple[int, ...]:
    out = tuple(int(i) for i in values)
    if any(i < 0 or i >= dim for i in out) or len(set(out)) != len(out):
        raise ValueError(f"{name} must be distinct observation indices in [0, {dim}), got "
                         f"{list(out)}")
    return out


class SkillDynamics(nn.Module):
    """q(s' | s, z) (module docstring). obs_dim D, skill_dim Z >= 1; predict / omit / angles:
    observation indices (predict: the P coordinates q models, default all; omit: those q
    does not read; angles: those it reads as (sin, cos))."""

    def __init__(self, obs_dim: int, skill_dim: int, *, predict=None, omit=(), angles=(),
                 hidden: int = 512, layers: int = 2, activation: str = "relu",
                 fix_variance: bool = True, seed: int | None = None, backend: str = "auto"):
        super().__init__()
        for name, v in (("obs_dim", obs_dim), ("skill_dim", skill_dim), ("hidden", hidden)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.obs_dim, self.skill_dim = obs_dim, skill_dim
        self.predicted = _indices("predict", range(obs_dim) if predict is None else predict,
                                obs_dim)
        if not self.predicted:
            raise ValueError("predict must name at least one observation coordinate")
        omit, angles = _indices("omit", omit, obs_dim), _indices("angles", angles, obs_dim)
        pos = {i: k for k, i in enumerate(self.predicted)}
        self.p = len(self.predicted)
        drop = tuple(pos[i] for i in omit if i in pos)
        turn = tuple(pos[i] for i in angles if i in pos and i not in omit)
        self.reads_state = len(drop) < self.p
        # q's state features (None: the state as is); F = 0 when q reads the skill only
        self.features_map = (ObsFeatures(self.p, drop=drop, angles=turn)
                             if self.reads_state and (drop or turn) else None)
        self.f = 0 if not self.reads_state else (self.features_map.width if self.features_map
                                                  else self.p)
        self.fix_variance = bool(fix_variance)
        width = self.p if self.fix_variance else 2 * self.p
        self.mlp = EnsembleMLP(1, self.f + skill_dim, width, hidden, layers, activation, seed)
        self.backend = resolve_backend(backend, activation)
        self.in_norm = Normalizer(self.f + skill_dim)
        self.out_norm = Normalizer(self.p)
        self.register_buffer("max_logvar", torch.full((self.p,), 2 * math.log(STD_MAX)))
        self.register_buffer("min_logvar", torch.full((self.p,), 2 * math.log(STD_MIN)))
        self._rollout_cache: tuple[tuple[int, ...], MLPParams] | None = None
        self._bf16_cache: tuple[MLPParams, MLPParams] | None = None  # (fp32 params, packed)

    # ---- data layout ----------------------------------------------------------------------
    def state(self, obs) -> torch.Tensor:
        """obs [..., D] -> the skill-dynamics state s_q = obs[..., predict] [..., P] (float64)."""
        obs = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs)
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"obs must be [..., {self.obs_dim}], got {tuple(obs.shape)}")
        return obs.to(torch.float64)[..., list(self.predicted)]

    def features(self, obs) -> torch.Tensor:
        """obs [B, D] -> what q reads of the state, x [B, F] float32 (F may be 0)."""
        s = self.state(obs)
        if not self.reads_state:
            return s.new_zeros(s.shape[:-1] + (0,)).to(torch.float32)
        return obs_features_reference(s, self.features_map).to(torch.float32)

    def inputs(self, obs, skill) -> torch.Tensor:
        """[B, D], [B, Z] -> q's raw (not normalized) input [x, z] [B, F + Z] float32."""
        skill = torch.as_tensor(skill, dtype=torch.float32)
        if skill.dim() != 2 or skill.shape[1] != self.skill_dim:
            raise ValueError(f"skill must be [B, {self.skill_dim}], got {tuple(skill.shape)}")
        return torch.cat([self.features(obs), skill], dim=1)

    def deltas(self, obs, next_obs) -> torch.Tensor:
        """The raw change s'_q - s_q [B, P], taken in float64 (then float32)."""
        return (self.state(next_obs) - self.state(obs)).to(torch.float32)

    def targets(self, obs, next_obs) -> torch.Tensor:
        """The normalized change t [B, P] float32 (module docstring)."""
        return self.out_norm.normalize(self.deltas(obs, next_obs))

    @torch.no_grad()
    def update_normalizers(self, obs, skill, next_obs) -> None:
        """Fold new transitions into the input and target statistics (before training)."""
        self.in_norm.update(self.inputs(obs, skill).double())
        self.out_norm.update(self.deltas(obs, next_obs).double())

    # ---- the density ------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw inputs [B, F + Z] -> (mu [B, P], logvar [B, P] or None) with autograd."""
        layers = self.mlp.layers
        y = mlp_forward(self.in_norm.normalize(inputs), [layer.weight for layer in layers],
                        [layer.bias for layer in layers], self.mlp.activation, self.backend)[0]
        if self.fix_variance:
            return y, None
        return y[:, :self.p], soft_bound_logvar(y[:, self.p:], self.max_logvar, self.min_logvar)

    def log_prob(self, obs, skill, next_obs) -> torch.Tensor:
        """log q(t | s, z) [B] in the normalized space (autograd through the weights)."""
        mu, logvar = self(self.inputs(obs, skill))
        return gaussian_log_prob(self.targets(obs, next_obs), mu, logvar)

    def intrinsic_reward(self, obs, skill, next_obs, prior: torch.Tensor, *,
                         include_skill: bool = False, backend: str = "auto") -> SkillReward:
        """DADS's reward of B transitions against prior skills [B, L, Z] or [L, Z]
        (``ops.skill_reward``, one compiled call)."""
        with torch.no_grad():
            return skill_reward(self.reward_params(), self.features(obs),
                                self.targets(obs, next_obs),
                                torch.as_tensor(skill, dtype=torch.float32), prior,
                                include_skill=include_skill, backend=backend)

    # ---- kernel views ----------------------------------------------------------------------
    def reward_params(self) -> MLPParams:
        """q in the kernels' layout for ``ops.skill_reward``: views of the weights, the input
        statistics and (fix_variance=False) the log-variance bounds; no copy."""
        gaussian = not self.fix_variance
        return MLPParams(self.mlp.weights(), self.mlp.biases(), self.mlp.activation,
                         self.in_norm.mean32, self.in_norm.std32,
                         self.max_logvar if gaussian else None,
                         self.min_logvar if gaussian else None)

    @property
    def rollout_dim(self) -> int:
        """Width of the rollout state: P, plus the constant coordinate when q reads no state."""
        return self.p + (0 if self.reads_state else 1)

    def rollout_state(self, obs) -> torch.Tensor:
        """obs [N, D] -> the rollout start states [N, rollout_dim] float32."""
        s = self.state(obs).to(torch.float32)
        if self.reads_state:
            return s.contiguous()
        return torch.cat([s, s.new_ones(s.shape[:-1] + (1,))], dim=-1).contiguous()

    def _versions(self) -> tuple[int, ...]:
        tensors = [*self.mlp.parameters(), *self.in_norm.buffers(), *self.out_norm.buffers()]
        return tuple(t._version for t in tensors) + tuple(t.data_ptr() for t in tensors)

    def mlp_params_bf16(self) -> MLPParams:
        """:meth:`mlp_params` with bf16-packed weights (``ops.pack_bf16``; the skill planner's
        ``precision="bf16"``), packed once per version of the fp32 parameters."""
        p = self.mlp_params()
        if self._bf16_cache is None or self._bf16_cache[0] is not p:
            self._bf16_cache = (p, p.to_bf16())
        return self._bf16_cache[1]

    @torch.no_grad()
    def mlp_params(self) -> MLPParams:
        """q as a model of the rollout state for ``ops.propagate`` (skill = action; module
        docstring): a Gaussian head over the raw change of every rollout coordinate, whose
        mean is out_mean + out_std * mu (the log-variance is a placeholder 0: plan with
        propagation="expectation"). Cached until a weight or a statistic changes."""
        key = self._versions()
        if self._rollout_cache is not None and self._rollout_cache[0] == key:
            return self._rollout_cache[1]
        weights, biases = list(self.mlp.weights()), list(self.mlp.biases())
        in_mean, in_std = self.in_norm.mean32, self.in_norm.std32
        features = self.features_map
        d = self.rollout_dim
        if not self.reads_state:  # read the constant coordinate through a zero weight row
            weights[0] = torch.cat([weights[0].new_zeros(1, 1, weights[0].shape[2]), weights[0]],
                                   dim=1)
            in_mean, in_std = torch.cat([in_mean.new_zeros(1), in_mean]), \
                torch.cat([in_std.new_ones(1), in_std])
            features = ObsFeatures(d, drop=tuple(range(self.p)))
        w, b = weights[-1][:, :, :self.p], biases[-1][:, :self.p]
        std, mean = self.out_norm.std32, self.out_norm.mean32
        hidden = w.shape[1]
        mean_w = torch.cat([w * std, w.new_zeros(1, hidden, d - self.p)], dim=2)
        mean_b = torch.cat([b * std + mean, b.new_zeros(1, d - self.p)], dim=1)
        weights[-1] = torch.cat([mean_w, w.new_zeros(1, hidden, d)], dim=2).contiguous()
        biases[-1] = torch.cat([mean_b, b.new_zeros(1, d)], dim=1).contiguous()
        params = MLPParams(tuple(t.contiguous() for t in weights), tuple(biases),
                           self.mlp.activation, in_mean.contiguous(), in_std.contiguous(),
                           torch.zeros(d), torch.full((d,), -10.0), obs_features=features)
        self._rollout_cache = (key, params)
        return params

    @torch.no_grad()
    def predict(self, obs, skill) -> torch.Tensor:
        """The mean next skill-dynamics state s_q + out_mean + out_std * mu [B, P] (float32)."""
        mu, _ = self(self.inputs(obs, skill))
        return self.state(obs).to(torch.float32) + self.out_norm.mean32 + self.out_norm.std32 * mu


def gaussian_log_prob(t: torch.Tensor, mu: torch.Tensor,
                      logvar: torch.Tensor | None) -> torch.Tensor:
    """log N(t; mu, diag exp(logvar)) [B] (unit variance when logvar is None)."""
    if logvar is None:
        nll = (t - mu).square()
    else:
        nll = (t - mu).square() * torch.exp(-logvar) + logvar
    return -0.5 * (nll.sum(dim=-1) + t.shape[-1] * _LOG_2PI)


class SkillDynamicsTrainer:
    """Maximum likelihood for q: Adam on -mean log q(t | s, z) over random minibatches
    (DADS: lr 3e-4, batch 256, K1 steps per iteration on the new on-policy data)."""

    def __init__(self, model: SkillDynamics, lr: float = 3e-4, seed: int = 0):
        self.model = model
        self.optimizer = torch.optim.Adam(model.mlp.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)

    def fit(self, obs, skill, next_obs, steps: int, batch_size: int) -> float:
        """``steps`` gradient steps on batches of ``batch_size`` rows drawn (with
        replacement) from the given transitions; returns the mean loss (-log q) of the steps.
        Fold the data into the normalizers first (:meth:`SkillDynamics.update_normalizers`)."""
        model = self.model
        x = model.inputs(obs, skill)
        t = model.targets(obs, next_obs)
        total = 0.0
        for _ in range(steps):
            idx = torch.randint(0, x.shape[0], (batch_size,), generator=self.generator)
            mu, logvar = model(x[idx])
            loss = -gaussian_log_prob(t[idx], mu, logvar).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach())
        return total / max(1, steps)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.generator.set_state(state["generator"])


@dataclass
class SkillDynamicsConfig:
    """q and its training (DADS defaults: google-research/dads configs, hidden_layer_size 512,
    skill_dyn_train_steps 32 on-policy, skill_dynamics_lr 3e-4, batch 256, fix_variance 1)."""

    hidden: int = 512
    """Width of each hidden layer."""
    layers: int = 2
    """Hidden layers."""
    activation: str = "relu"
    """Hidden activation."""
    fix_variance: bool = True
    """Unit variance in the normalized target space (DADS); False: a learned Gaussian head."""
    xy_prior: bool = False
    """The paper's x-y prior: q predicts only the task's x-y (the coordinates its
    ``obs_features`` drop) and reads nothing of the state, q(delta xy | z)."""
    lr: float = 3e-4
    """Adam learning rate."""
    batch_size: int = 256
    """Transitions per gradient step."""
    steps: int = 32
    """K1: gradient steps per iteration on the iteration's on-policy transitions."""


def make_skill_dynamics(c: SkillDynamicsConfig, task, skill_dim: int,
                        seed: int) -> SkillDynamics:
    """q for ``task``: x-y (the task's dropped coordinates) never read; with ``xy_prior``
    only they are predicted (module docstring)."""
    feats = task.obs_features
    drop = feats.drop if feats is not None else ()
    angles = feats.angles if feats is not None else ()
    if c.xy_prior and not drop:
        raise ValueError(f"skill_dynamics.xy_prior: task {task.env_id} declares no x-y "
                         "coordinates (its obs_features drop none)")
    return SkillDynamics(task.obs_dim, skill_dim, predict=drop if c.xy_prior else None,
                         omit=drop, angles=angles, hidden=c.hidden, layers=c.layers,
                         activation=c.activation, fix_variance=c.fix_variance, seed=seed)
