"""Launchers for the compiled CUDA kernels (``mbrl_fast._C_cuda``).

They allocate the outputs on the inputs' device, pass device addresses, sizes and
torch's current stream (an int) to ``_C_cuda`` (which does not link libtorch and
releases the GIL), and turn the kernels' reports into the references' exceptions.
Inputs were validated by the ops; tensors are contiguous float32 on one CUDA device.
"""

from __future__ import annotations

import torch

from mbrl_fast import backends
from mbrl_fast.ops import _launch
from mbrl_fast.ops.contract import (
    MLPParams,
    PropagateResult,
    PropagateSpec,
)


def _stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


_addr = _launch.addr


def mlp_desc(params: MLPParams, sizes=None):
    """The ``_C_cuda.MLPDesc`` of an ensemble (addresses of its tensors, read in place)."""
    return _launch.fill_mlp_desc(backends.cuda_module().MLPDesc(), params, sizes)


def philox_fill(kind: str, n: int, seed: int, offset: int, device) -> torch.Tensor:
    """[n] samples of stream (seed, offset): int64 uint32 values, or float32 uniform/normal."""
    out = torch.empty(n, dtype=torch.int32 if kind == "uint32" else torch.float32, device=device)
    if n:
        getattr(backends.cuda_module(), f"philox_{kind}")(out.data_ptr(), n, seed, offset,
                                                          _stream(out.device))
    return out.to(torch.int64) & 0xFFFFFFFF if kind == "uint32" else out


def ensemble_mlp_cuda(x: torch.Tensor, params: MLPParams, sizes):
    """x [E, B, d_0] contiguous -> y [E, B, d_L] or (mean, logvar) [E, B, d_L / 2] each."""
    e, b, _ = x.shape
    d_last = int(sizes[-1])
    width = d_last // 2 if params.gaussian else d_last
    out = torch.empty(e, b, width, dtype=torch.float32, device=x.device)
    logvar = torch.empty_like(out) if params.gaussian else None
    backends.cuda_module().ensemble_mlp(mlp_desc(params, sizes), x.data_ptr(), b, out.data_ptr(),
                                        _addr(logvar), _stream(x.device))
    return (out, logvar) if params.gaussian else out


def propagate_cuda(params: MLPParams, obs: torch.Tensor, actions: torch.Tensor | None,
                   spec: PropagateSpec, policy: MLPParams | None = None) -> PropagateResult:
    """obs [N, D], actions [N, P, H, A] (or None with a policy) -> PropagateResult with
    returns per particle [N, P, K] (ops/_launch.py). The reward must be one the CUDA kernel
    fuses (backends.CAPABILITIES); ops.propagate scores the others with torch."""
    s = spec
    dev = obs.device
    reward_id = _launch.reward_id(s, "cuda")
    out = _launch.row_outputs(s, reward_id != 0, policy is not None, dev)
    desc = _launch.fill_propagate_desc(backends.cuda_module().PropagateDesc(), s, params,
                                       reward_id, obs, actions, out)
    desc.return_states, desc.num_members_all = s.return_states, params.num_members
    order = _launch.tsinf_order(s, philox_fill, dev)  # kept alive until the launch
    desc.order, desc.bad = _addr(order), out.bad.data_ptr()
    backends.cuda_module().propagate(mlp_desc(params), None if policy is None else mlp_desc(policy),
                                     desc, _stream(dev))
    return _launch.to_result(out, s, params.num_members)


# ---- elite_update (ops/elite_update.py: CEMUpdate / MPPIUpdate fields) ------------


def cem_update_cuda(samples, returns, mean, var, num_elites: int, alpha: float, epsilon: float):
    """samples [N, P, H, A], returns [N, P], mean / var [N, H, A] -> (new_mean, new_var,
    elites [N, K] int64, best [N, H, A], best_return [N], converged [N] bool)."""
    n, p, h, a = samples.shape
    dev = samples.device
    new_mean, new_var, best = (torch.empty(n, h, a, device=dev) for _ in range(3))
    elites = torch.empty(n, num_elites, dtype=torch.int64, device=dev)
    best_return = torch.empty(n, device=dev)
    converged = torch.empty(n, dtype=torch.uint8, device=dev)
    backends.cuda_module().cem_update(
        samples.data_ptr(), returns.data_ptr(), mean.data_ptr(), var.data_ptr(), n, p, h * a,
        num_elites, alpha, epsilon, new_mean.data_ptr(), new_var.data_ptr(), elites.data_ptr(),
        best.data_ptr(), best_return.data_ptr(), converged.data_ptr(), _stream(dev))
    return new_mean, new_var, elites, best, best_return, converged.bool()


def mppi_update_cuda(samples, returns, temperature: float):
    """samples [N, P, H, A], returns [N, P] -> (mean [N, H, A], var [N, H, A], weights [N, P])."""
    n, p, h, a = samples.shape
    dev = samples.device
    mean, var = torch.empty(n, h, a, device=dev), torch.empty(n, h, a, device=dev)
    weights = torch.empty(n, p, device=dev)
    backends.cuda_module().mppi_update(samples.data_ptr(), returns.data_ptr(), n, p, h * a,
                                       temperature, mean.data_ptr(), var.data_ptr(),
                                       weights.data_ptr(), _stream(dev))
    return mean, var, weights


def truncated_normal_cuda(mean, var, lower, upper, population: int, seed: int, offset: int):
    """mean / var [N, H, A], lower / upper [A] -> samples [N, population, H, A]."""
    n, h, a = mean.shape
    out = torch.empty(n, population, h, a, device=mean.device)
    backends.cuda_module().truncated_normal(mean.data_ptr(), var.data_ptr(), lower.data_ptr(),
                                            upper.data_ptr(), n, population, h, a, seed, offset,
                                            out.data_ptr(), _stream(mean.device))
    return out
