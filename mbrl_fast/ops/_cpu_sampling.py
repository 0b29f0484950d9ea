"""Launchers for the compiled CPU sampling kernels (``mbrl_fast._C``): noise, the
planners' samplers and the elite updates.

Like ops/_cpu.py they allocate the outputs and pass addresses and sizes to ``_C``;
inputs were validated by the ops (ops/noise.py, ops/samplers.py, ops/elite_update.py)
and are contiguous float32 CPU tensors. Signatures match the CUDA and Triton launchers
of the same op (ops/registry.py looks them up).
"""

from __future__ import annotations

import torch

from mbrl_fast import backends
from mbrl_fast.ops._cpu import philox_fill_cpu

_MASK32 = 0xFFFFFFFF


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def philox_fill(kind: str, n: int, seed: int, offset: int, device) -> torch.Tensor:
    """[n] samples of stream (seed, offset): int64 uint32 values, or float32 uniform/normal."""
    out = torch.empty(n, dtype=torch.int32 if kind == "uint32" else torch.float32)
    philox_fill_cpu(kind, out, seed, offset)
    return out.to(torch.int64) & _MASK32 if kind == "uint32" else out


def cem_update_cpu(samples, returns, mean, var, num_elites: int, alpha: float, epsilon: float):
    """samples [N, P, H, A], returns [N, P], mean / var [N, H, A] -> (new_mean, new_var,
    elites [N, K] int64, best [N, H, A], best_return [N], converged [N] bool)."""
    n, p, h, a = samples.shape
    new_mean, new_var, best = (torch.empty(n, h, a) for _ in range(3))
    elites = torch.empty(n, num_elites, dtype=torch.int64)
    best_return = torch.empty(n)
    converged = torch.empty(n, dtype=torch.uint8)
    backends.cpu_module().cem_update(
        _ptr(samples), _ptr(returns), _ptr(mean), _ptr(var), n, p, h * a, num_elites, alpha,
        epsilon, _ptr(new_mean), _ptr(new_var), _ptr(elites), _ptr(best), _ptr(best_return),
        _ptr(converged))
    return new_mean, new_var, elites, best, best_return, converged.bool()


def mppi_update_cpu(samples, returns, temperature: float):
    """samples [N, P, H, A], returns [N, P] -> (mean [N, H, A], var [N, H, A], weights [N, P])."""
    n, p, h, a = samples.shape
    mean, var = torch.empty(n, h, a), torch.empty(n, h, a)
    weights = torch.empty(n, p)
    backends.cpu_module().mppi_update(_ptr(samples), _ptr(returns), n, p, h * a, temperature,
                                      _ptr(mean), _ptr(var), _ptr(weights))
    return mean, var, weights


def truncated_normal_cpu(mean, var, lower, upper, population: int, seed: int, offset: int):
    """mean / var [N, H, A], lower / upper [A] -> samples [N, population, H, A]."""
    n, h, a = mean.shape
    out = torch.empty(n, population, h, a)
    backends.cpu_module().truncated_normal(_ptr(mean), _ptr(var), _ptr(lower), _ptr(upper), n,
                                           population, h, a, seed, offset, _ptr(out))
    return out


def colored_noise_cpu(mean, var, lower, upper, population: int, scales: list[float],
                      sigma: float, seed: int, offset: int):
    """mean / var [N, H, A], lower / upper [A], the amplitudes s_k [F] and output std sigma
    of ops/samplers.powerlaw_scales -> samples [N, population, H, A]."""
    n, h, a = mean.shape
    scales = torch.tensor(scales, dtype=torch.float64)
    out = torch.empty(n, population, h, a)
    backends.cpu_module().colored_noise(_ptr(mean), _ptr(var), _ptr(lower), _ptr(upper), n,
                                        population, h, a, _ptr(scales), sigma, seed, offset,
                                        _ptr(out))
    return out
