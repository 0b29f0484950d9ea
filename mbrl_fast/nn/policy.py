"""Gaussian MLP policies, stored in the kernels' layout (one ensemble member).

Two parameterizations of one network (an :class:`~mbrl_fast.nn.EnsembleMLP` with E = 1):
:class:`TanhGaussianPolicy` (SAC, MBPO, DADS: state-dependent variance, tanh-squashed) and
:class:`GaussianPolicy` (MB-MF's distilled policy: a plain Gaussian with a state-independent
log-std, the layout of Stable-Baselines3's PPO / A2C ``MlpPolicy`` actor, see its docstring).

Tanh-squashed Gaussian.

The network is an :class:`~mbrl_fast.nn.EnsembleMLP` with E = 1 (weights [1, in, out]),
so :meth:`TanhGaussianPolicy.mlp_params` hands ``ops.propagate(..., policy=...)`` views
of the weights the optimizer updates, and the compiled rollout samples the same policy
that SAC trains. The math, for an observation s [D] and A action dimensions::

    mu, raw = split(MLP(s))                                    [A] each (MLP out: 2A)
    logvar  = max_lv - softplus(max_lv - raw)                  (ops.ensemble_mlp's
    logvar  = min_lv + softplus(logvar - min_lv)                Gaussian head)
    u       = mu + exp(logvar / 2) * eps,  eps ~ N(0, I)
    a       = tanh(u)                                          in (-1, 1)
    log pi(a | s) = sum_j [ log N(u_j; mu_j, exp(logvar_j))
                            - 2 (log 2 - u_j - softplus(-2 u_j)) ]

The last term is log(1 - tanh(u)^2) written so that it stays finite for large |u|
(Haarnoja et al. 2018, appendix C). ``max_lv = 4`` and ``min_lv = -40`` are fixed
buffers: SAC's usual clamp of log-std to [-20, 2] (SB3, rlkit, softlearning) in
log-variance units, applied as PETS's soft bound instead of a hard clamp, so that the
torch forward and every propagate backend compute one function.

Actions are in policy units [-1, 1]. An environment whose Box is [low, high] gets
``env_action = action_bias + action_scale * a`` with ``action_scale = (high - low) / 2``
and ``action_bias = (high + low) / 2`` (:meth:`to_env`); the replay buffer, the
critics and a learned dynamics model all see policy units, because MBPO's compiled
rollout feeds the model the [-1, 1] actions it samples from :meth:`mlp_params`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mbrl_fast.nn.dense import check_precision, mlp_forward, resolve_backend
from mbrl_fast.nn.ensemble import EnsembleMLP
from mbrl_fast.ops.ensemble_mlp import MLPParams, soft_bound_logvar

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SAC's log-std clamp (SB3, rlkit, softlearning)
MIN_LOGVAR, MAX_LOGVAR = 2 * LOG_STD_MIN, 2 * LOG_STD_MAX  # the same in log-variance units
_LOG_2PI = math.log(2 * math.pi)
_LOG_2 = math.log(2.0)


def torch_default_init_(mlp: EnsembleMLP, generator: torch.Generator | None = None) -> None:
    """nn.Linear's default init per member: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    What SB3's and CleanRL's SAC networks start from (EnsembleMLP's own default is
    PETS's truncated normal).
    """
    with torch.no_grad():
        for layer in mlp.layers:
            bound = 1.0 / math.sqrt(layer.weight.shape[1])
            for p in (layer.weight, layer.bias):
                p.copy_(torch.rand(p.shape, generator=generator) * (2 * bound) - bound)


def check_box_space(space, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) float64 [n] of a bounded 1-D gymnasium Box; a clear error otherwise."""
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    shape = getattr(space, "shape", None)
    if type(space).__name__ != "Box" or low is None or shape is None or len(shape) != 1:
        raise TypeError(f"{name} must be a 1-D gymnasium.spaces.Box (continuous); got "
                        f"{space!r}. SAC needs a Box action space: a Discrete one has no "
                        "tanh-Gaussian policy")
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    if name.startswith("action") and not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(f"{name} must be bounded (finite low and high), got {space!r}")
    return low, high


def check_obs(obs, obs_dim: int, device, name: str = "obs") -> torch.Tensor:
    """obs [B, D] or [D] (numpy or torch) -> float32 [B, D] on ``device``; ValueError
    naming ``name`` and both shapes otherwise."""
    if not isinstance(obs, torch.Tensor):
        obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
    if obs.dim() == 1:
        obs = obs.unsqueeze(0)
    if obs.dim() != 2 or obs.shape[1] != obs_dim:
        raise ValueError(f"{name} must be [B, {obs_dim}] or [{obs_dim}], got "
                         f"{tuple(obs.shape)}")
    return obs.to(device, torch.float32)


class TanhGaussianPolicy(nn.Module):
    """pi(a | s) = tanh(N(mu(s), exp(logvar(s)))): obs [B, D] -> actions [B, A] in [-1, 1].

    ``hidden``/``layers`` as :class:`EnsembleMLP` (SAC: 2 hidden layers of 256, ReLU).
    ``action_low``/``action_high`` [A]: the environment's bounds, used only by
    :meth:`to_env` / :meth:`from_env` (default [-1, 1]: scale 1, bias 0).
    ``backend``: how the training forward / backward runs (nn/dense.py: 'auto',
    'onednn', 'torch'); every choice computes the same function. ``precision``: that
    forward / backward's GEMMs in 'fp32' or 'bf16' (nn/dense.py; the weights stay fp32).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2,
                 activation: str = "relu", action_low=None, action_high=None,
                 seed: int | None = None, backend: str = "auto", precision: str = "fp32"):
        super().__init__()
        for name, v in (("obs_dim", obs_dim), ("act_dim", act_dim), ("hidden", hidden)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.mlp = EnsembleMLP(1, obs_dim, 2 * act_dim, hidden, layers, activation, seed=seed)
        self.backend = resolve_backend(backend, activation)
        self.precision = check_precision(precision)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        torch_default_init_(self.mlp, gen)
        self.register_buffer("max_logvar", torch.full((act_dim,), MAX_LOGVAR))
        self.register_buffer("min_logvar", torch.full((act_dim,), MIN_LOGVAR))
        low = -np.ones(act_dim) if action_low is None else np.asarray(action_low, np.float64)
        high = np.ones(act_dim) if action_high is None else np.asarray(action_high, np.float64)
        if low.shape != (act_dim,) or high.shape != (act_dim,) or not (high > low).all():
            raise ValueError(f"action_low/action_high must be [{act_dim}] with high > low, got "
                             f"{low.tolist()} / {high.tolist()}")
        self.register_buffer("action_scale", torch.tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer("action_bias", torch.tensor((high + low) / 2, dtype=torch.float32))

    def check_obs(self, obs: torch.Tensor, name: str = "obs") -> torch.Tensor:
        """obs [B, D] or [D] float -> float32 [B, D]; ValueError naming ``name`` otherwise."""
        return check_obs(obs, self.obs_dim, self.action_scale.device, name)

    def _raw(self, obs: torch.Tensor, weight_grad_rows: int | None = None) -> torch.Tensor:
        """obs [B, D] -> the MLP's output [B, 2A] = (mean, raw log-variance)."""
        layers = self.mlp.layers
        return mlp_forward(obs, [layer.weight for layer in layers],
                           [layer.bias for layer in layers], self.mlp.activation, self.backend,
                           weight_grad_rows, self.precision)[0]

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [B, D] -> (mean, logvar) [B, A] each: ``ops.ensemble_mlp`` of mlp_params()."""
        mean, raw = self._raw(obs).split(self.act_dim, dim=-1)
        return mean, soft_bound_logvar(raw, self.max_logvar, self.min_logvar)

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None,
               eps: torch.Tensor | None = None,
               weight_grad_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized sample: obs [B, D] -> (action [B, A] in [-1, 1], log_prob [B]).

        ``eps`` [B, A] standard normal noise may be given (else drawn from ``generator``).
        ``weight_grad_rows`` n: only rows [:n] train the weights (nn.dense.mlp_forward).
        Same function as ``squash(*self(obs), eps)``, with one autograd node for the head.
        """
        h = self._raw(obs, weight_grad_rows)
        if eps is None:
            eps = torch.randn((h.shape[0], self.act_dim), generator=generator, device=h.device)
        return _TanhGaussianHead.apply(h, eps, self.max_logvar, self.min_logvar)

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False,
            generator: torch.Generator | None = None) -> torch.Tensor:
        """obs [B, D] or [D] -> action [B, A] in [-1, 1] (tanh(mean) when deterministic)."""
        obs = self.check_obs(obs)
        if deterministic:
            return torch.tanh(self(obs)[0])
        return self.sample(obs, generator)[0]

    def to_env(self, action: torch.Tensor) -> torch.Tensor:
        """Policy units [-1, 1] -> the environment's [low, high]: bias + scale * action."""
        return self.action_bias + self.action_scale * action

    def from_env(self, env_action: torch.Tensor) -> torch.Tensor:
        """The environment's [low, high] -> policy units [-1, 1] (inverse of :meth:`to_env`)."""
        return (env_action - self.action_bias) / self.action_scale

    def mlp_params(self) -> MLPParams:
        """Views (no copy) of the weights for ``ops.ensemble_mlp`` / ``ops.propagate``."""
        return MLPParams(self.mlp.weights(), self.mlp.biases(), self.mlp.activation,
                         max_logvar=self.max_logvar, min_logvar=self.min_logvar)


class GaussianPolicy(nn.Module):
    """pi(a | s) = N(mu(s), diag(exp(log_std))^2): obs [B, D] -> actions [B, A], unsquashed.

    The layout of Stable-Baselines3's PPO / A2C ``MlpPolicy`` actor, so that
    ``integrations.sb3.load_policy_into_ppo`` copies it into a PPO model one tensor per
    tensor: ``layers`` hidden layers of ``hidden`` units (SB3: 2 x 64, tanh) with the
    mean head last (SB3's ``action_net``), and one state-independent ``log_std`` [A]
    parameter (SB3's ``log_std``). Actions are in the environment's units, as PPO's are
    (PPO clips them to the Box when it steps the env); no tanh, because PPO's default
    actor has none and a squashed policy could not be loaded into it.

    MB-MF distills the MPC controller into the mean by regression (:meth:`imitation_loss`);
    ``log_std_init`` is the exploration std PPO starts from (Nagabandi et al.'s code:
    std 0.5 for the TRPO fine-tuning).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 64, layers: int = 2,
                 activation: str = "tanh", log_std_init: float = 0.0,
                 seed: int | None = None):
        super().__init__()
        for name, v in (("obs_dim", obs_dim), ("act_dim", act_dim), ("hidden", hidden)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.mlp = EnsembleMLP(1, obs_dim, act_dim, hidden, layers, activation, seed=seed)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        torch_default_init_(self.mlp, gen)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def check_obs(self, obs, name: str = "obs") -> torch.Tensor:
        return check_obs(obs, self.obs_dim, self.log_std.device, name)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, D] -> mean action [B, A] (autograd)."""
        layers = self.mlp.layers
        return mlp_forward(obs, [layer.weight for layer in layers],
                           [layer.bias for layer in layers], self.mlp.activation)[0]

    @torch.no_grad()
    def act(self, obs, deterministic: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
        """obs [B, D] or [D] -> action [B, A]: the mean, or a sample when not deterministic."""
        mean = self(self.check_obs(obs))
        if deterministic:
            return mean
        return mean + self.log_std.exp() * torch.randn(mean.shape, generator=generator)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log pi(action | obs) [B] for obs [B, D], action [B, A]."""
        z = (action - self(obs)) * torch.exp(-self.log_std)
        return (-0.5 * (z.square() + _LOG_2PI) - self.log_std).sum(dim=-1)

    def imitation_loss(self, obs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the mean action against target actions [B, A]
        (Nagabandi et al.'s behaviour-cloning loss; log_std is not trained by it)."""
        return (self(obs) - target).square().mean()

    def mlp_params(self) -> MLPParams:
        """Views (no copy) of the mean network for ``ops.ensemble_mlp`` (identity head)."""
        return MLPParams(self.mlp.weights(), self.mlp.biases(), self.mlp.activation)


def squash(mean: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor):
    """(tanh(u), log pi) for u = mean + exp(logvar / 2) eps; shapes [B, A] -> [B, A], [B]."""
    u = mean + torch.exp(0.5 * logvar) * eps
    # log N(u; mean, var) = -(eps^2 + logvar + log 2 pi) / 2, and
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), finite for any u
    log_prob = -0.5 * (eps.square() + logvar + _LOG_2PI) - 2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))
    return torch.tanh(u), log_prob.sum(dim=-1)


class _TanhGaussianHead(torch.autograd.Function):
    """(h = [mean, raw] [B, 2A], eps [B, A]) -> (tanh(u) [B, A], log pi [B]): the soft
    log-variance bound and :func:`squash` in one node, with the backward written out::

        d log pi / du = 2 tanh(u),  d tanh(u) / du = 1 - tanh(u)^2,  d log pi / d lv = -1/2
        du / d lv = std eps / 2,    d lv / d raw = sigmoid(lv1 - min) sigmoid(max - raw)

    (lv1 = max - softplus(max - raw), the first bound). Checked against autograd through
    soft_bound_logvar + squash in tests/agents/test_sac.py.
    """

    @staticmethod
    def forward(ctx, h, eps, max_logvar, min_logvar):
        mean, raw = h.chunk(2, dim=-1)
        lv1 = max_logvar - F.softplus(max_logvar - raw)
        logvar = min_logvar + F.softplus(lv1 - min_logvar)
        std = torch.exp(0.5 * logvar)
        u = torch.addcmul(mean, std, eps)
        a = torch.tanh(u)
        log_prob = (-0.5 * (eps.square() + logvar + _LOG_2PI)
                    - 2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))).sum(dim=-1)
        ctx.save_for_backward(raw, lv1, std, eps, a, max_logvar, min_logvar)
        return a, log_prob

    @staticmethod
    def backward(ctx, grad_a, grad_log_prob):
        raw, lv1, std, eps, a, max_logvar, min_logvar = ctx.saved_tensors
        g_lp = grad_log_prob.unsqueeze(-1)
        g_u = grad_a * (1.0 - a.square()) + 2.0 * g_lp * a
        g_lv = 0.5 * (g_u * std * eps - g_lp)
        g_raw = g_lv * torch.sigmoid(lv1 - min_logvar) * torch.sigmoid(max_logvar - raw)
        return torch.cat([g_u, g_raw], dim=-1), None, None, None
