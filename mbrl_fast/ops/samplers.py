"""Action samplers of the sampling planners: PETS's truncated normal (CEM) and iCEM's
colored noise; the elite updates that consume their samples: ops/elite_update.py.

Shapes, batched over N start states: mean / var [N, H, A], lower / upper [A] ->
samples [N, population, H, A]. All float32; math in float64 where noted.

``truncated_normal`` (PETS's sampler by the inverse CDF; no host-side rejection loop)::

    s      = sqrt(min(var, ((mean - lower) / 2)^2, ((upper - mean) / 2)^2))
    [a, b] = [clamp(mean - 2 s, lower, upper), clamp(mean + 2 s, lower, upper)]
    x      = mean + s sqrt(2) erfinv(2 q - 1),  q = Phi((a - mean)/s) + u (Phi((b - mean)/s)
             - Phi((a - mean)/s)), clamped to [a, b];  x = clamp(mean, lower, upper) if s = 0
    u      = noise.uniform([N, P, H, A], seed, offset): element ((n P + p) H + h) A + a

``colored_noise`` (iCEM, Pinneri et al. 2020; Timmer & Koenig 1995, the algorithm of
the ``colorednoise`` package): per (n, p, a) a Gaussian series over the horizon with
power spectrum ~ f^-beta (beta = 0: white, 2: Brownian-like), unit variance::

    F = H // 2 + 1, f_k = k / H (f_0 := f_1),  s_k = f_k^(-beta / 2)
    X_k = s_k (g[.., k, 0] + i g[.., k, 1]);  X_0 and (H even) X_{H/2} real, times sqrt(2)
    y   = irfft(X, H) / sigma,  sigma = the exact std of irfft(X, H)     (H = 1: y = g)
  Unlike ``colorednoise``, whose sigma leaves out the DC term (its output std is
  1.17 at H = 30, beta = 2.5, and 2 at H = 2), y has unit variance at every H.
    x   = clamp(mean + sqrt(var) * y, lower, upper)          (iCEM clips; no truncation)
    g   = noise.normal([N, P, A, F, 2], seed, offset): element (((n P + p) A + a) F + k) 2 + c

Each sampler uses one Philox offset (``SAMPLE_OFFSETS``); callers advance by it.
"""

from __future__ import annotations

import math

import torch

from mbrl_fast import backends
from mbrl_fast.ops import noise, registry

__all__ = ["SAMPLE_OFFSETS", "colored_noise", "colored_noise_reference", "powerlaw_scales",
           "truncated_normal", "truncated_normal_reference"]

SAMPLE_OFFSETS = 1  # Philox offsets one truncated_normal / colored_noise call uses


# ---- validation ------------------------------------------------------------------


def _tensor(name: str, t, shape: tuple, device=None) -> torch.Tensor:
    """A float32 tensor of ``shape`` (None entries: any size >= 1)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"elite_update: {name} must be a float32 tensor {_fmt(shape)}, got "
                        f"{type(t).__name__}")
    if t.dtype != torch.float32:
        raise ValueError(f"elite_update: {name} must be a float32 tensor {_fmt(shape)}, "
                         f"got {t.dtype}")
    sizes_ok = all(s is None or t.shape[i] == s for i, s in enumerate(shape))
    if t.dim() != len(shape) or not sizes_ok or any(d < 1 for d in t.shape):
        raise ValueError(f"elite_update: {name} must have shape {_fmt(shape)}, "
                         f"got {tuple(t.shape)}")
    if device is not None and t.device != device:
        raise ValueError(f"elite_update: {name} must be on {device}, got {t.device}")
    return t.contiguous()


def _fmt(shape) -> str:
    return "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"


def _moments(mean, var, device=None):
    mean = _tensor("mean", mean, (None, None, None), device)
    var = _tensor("var", var, tuple(mean.shape), mean.device)
    if not torch.isfinite(mean).all():
        raise ValueError("elite_update: mean contains NaN or inf")
    if not (var >= 0).all() or not torch.isfinite(var).all():
        raise ValueError("elite_update: var must be finite and >= 0")
    return mean, var


def _bounds(lower, upper, a: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    out = []
    for name, b in (("lower", lower), ("upper", upper)):
        b = torch.as_tensor(b, dtype=torch.float32, device=device).reshape(-1)
        if b.numel() == 1:
            b = b.expand(a)
        if b.shape != (a,) or not torch.isfinite(b).all():
            raise ValueError(f"elite_update: {name} must be finite [A={a}], got {tuple(b.shape)}")
        out.append(b.contiguous())
    if (out[0] > out[1]).any():
        raise ValueError("elite_update: lower must be <= upper in every action dimension")
    return out[0], out[1]


def _check_int(name: str, value, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"elite_update: {name} must be an int >= {low}, got {value!r}")
    return value


# ---- truncated normal / colored noise ------------------------------------------------


def truncated_normal_reference(mean, var, lower, upper, population: int, seed: int,
                               offset: int) -> torch.Tensor:
    n, h, a = mean.shape
    u = noise.uniform((n, population, h, a), seed, offset, device=mean.device, backend="reference")
    lb, ub = (mean - lower) * 0.5, (upper - mean) * 0.5
    s = torch.sqrt(torch.minimum(var, torch.minimum(lb * lb, ub * ub)))  # [N, H, A]
    lo = torch.minimum(torch.maximum(mean - 2.0 * s, lower), upper)
    hi = torch.minimum(torch.maximum(mean + 2.0 * s, lower), upper)
    pos = s > 0
    s_safe = torch.where(pos, s, torch.ones_like(s))
    cdf_lo = 0.5 * (1.0 + torch.erf((lo - mean) / s_safe * _SQRT1_2))
    cdf_hi = 0.5 * (1.0 + torch.erf((hi - mean) / s_safe * _SQRT1_2))
    q = cdf_lo[:, None] + u * (cdf_hi - cdf_lo)[:, None]  # [N, P, H, A]
    x = mean[:, None] + s[:, None] * (_SQRT2 * torch.erfinv(2.0 * q - 1.0))
    x = torch.minimum(torch.maximum(x, lo[:, None]), hi[:, None])
    at_mean = torch.minimum(torch.maximum(mean, lower), upper)[:, None]
    return torch.where(pos[:, None], x, at_mean)


_SQRT2 = 1.4142135623730951
_SQRT1_2 = 0.7071067811865476


def powerlaw_scales(h: int, beta: float) -> tuple[list[float], float]:
    """Amplitudes s_k [F = H // 2 + 1] and the exact output std sigma of colored noise."""
    if h == 1:
        return [1.0], _SQRT2  # one real coefficient sqrt(2) g: y = g
    f = [k / h for k in range(h // 2 + 1)]
    f[0] = f[1]
    s = [fk ** (-beta / 2.0) for fk in f]
    # Var(irfft) of the coefficients below: DC and Nyquist (real, x sqrt(2)) count 2 s^2,
    # the others (k and H - k) 4 s^2; all over H^2.
    twice = s[1:-1] if h % 2 == 0 else s[1:]
    nyquist = 2.0 * s[-1] ** 2 if h % 2 == 0 else 0.0
    power = 2.0 * s[0] ** 2 + 4.0 * sum(x * x for x in twice) + nyquist
    return s, math.sqrt(power) / h


def colored_noise_reference(mean, var, lower, upper, population: int, beta: float, seed: int,
                            offset: int) -> torch.Tensor:
    n, h, a = mean.shape
    scales, sigma = powerlaw_scales(h, beta)
    f = len(scales)
    g = noise.normal((n, population, a, f, 2), seed, offset, device=mean.device,
                     backend="reference").double()
    s = torch.tensor(scales, dtype=torch.float64, device=mean.device)
    re, im = g[..., 0] * s, g[..., 1] * s  # [N, P, A, F]
    im[..., 0] = 0.0
    re[..., 0] *= _SQRT2
    if h % 2 == 0:
        im[..., -1] = 0.0
        re[..., -1] *= _SQRT2
    y = torch.fft.irfft(torch.complex(re, im), n=h, dim=-1) / sigma  # [N, P, A, H]
    y = y.transpose(2, 3).float()  # [N, P, H, A]
    x = mean[:, None] + torch.sqrt(var)[:, None] * y
    return torch.minimum(torch.maximum(x, lower), upper)


def _sampler_args(mean, var, lower, upper, population, seed, offset):
    mean, var = _moments(mean, var)
    lower, upper = _bounds(lower, upper, mean.shape[2], mean.device)
    _check_int("population", population, 1)
    noise._check_key(seed, offset)
    return mean, var, lower, upper


def truncated_normal(mean: torch.Tensor, var: torch.Tensor, lower, upper, *, population: int,
                     seed: int, offset: int = 0, backend: str = "auto") -> torch.Tensor:
    """PETS's bound-constrained truncated normal: mean / var [N, H, A], lower / upper [A]
    -> samples [N, population, H, A] (module docstring; uniform stream (seed, offset))."""
    mean, var, lower, upper = _sampler_args(mean, var, lower, upper, population, seed, offset)
    name = backends.select(backend, mean.device, backends.supporting("truncated_normal"),
                           "elite_update.truncated_normal")
    if name == "reference":
        return truncated_normal_reference(mean, var, lower, upper, population, seed, offset)
    return registry.launcher("truncated_normal", name)(mean, var, lower, upper, population, seed,
                                                       offset)


def colored_noise(mean: torch.Tensor, var: torch.Tensor, lower, upper, *, population: int,
                  beta: float, seed: int, offset: int = 0, backend: str = "auto") -> torch.Tensor:
    """iCEM's colored-noise sampler: mean / var [N, H, A], lower / upper [A], exponent beta
    >= 0 -> samples [N, population, H, A] (module docstring; normal stream (seed, offset))."""
    mean, var, lower, upper = _sampler_args(mean, var, lower, upper, population, seed, offset)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 10:
        raise ValueError(f"elite_update: beta must be a float in [0, 10), got {beta!r}")
    name = backends.select(backend, mean.device, backends.supporting("colored_noise"),
                           "elite_update.colored_noise")
    if name == "reference":
        return colored_noise_reference(mean, var, lower, upper, population, float(beta), seed,
                                       offset)
    scales, sigma = powerlaw_scales(mean.shape[1], float(beta))
    return registry.launcher("colored_noise", name)(mean, var, lower, upper, population, scales,
                                                    sigma, seed, offset)
