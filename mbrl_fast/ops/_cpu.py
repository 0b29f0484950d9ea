"""Launchers for the compiled CPU kernels (``mbrl_fast._C``).

They allocate the outputs, pass addresses and sizes to ``_C`` (which does not link
libtorch and releases the GIL), and turn the kernels' error reports into the
references' exceptions. Inputs were validated by the ops (ensemble_mlp, propagate,
skill_reward, noise, samplers, elite_update); tensors are contiguous float32 on the CPU.
Signatures match the CUDA and Triton launchers of the same op (ops/registry.py). The
imagine launcher, an autograd Function of its own, is ops/_cpu_imagine.py.

Kernel choice (:func:`mbrl_fast.backends.cpu_kernels`, read at every call): the
AVX-512, AVX2 or portable path, forced with ``MBRL_FAST_CPU_KERNELS``. bf16-packed
weights run natively on AVX512-BF16; on any other path they are unpacked to fp32
once (cached per weight tensor and its version) and run on the fp32 kernels: bf16
weights with fp32 activations, within the bf16 tolerance of the reference, at exactly
the fp32 cost (rounding the activations to bf16 as well cost 6% of the AVX2 tile).
"""

from __future__ import annotations

import weakref

import torch

from mbrl_fast import backends
from mbrl_fast.ops import _launch
from mbrl_fast.ops.contract import (
    MLPParams,
    PropagateResult,
    PropagateSpec,
    RewardKind,
    SkillReward,
    SkillRewardSpec,
    unpack_bf16,
)
from mbrl_fast.ops.contract import raise_non_finite as _raise_non_finite

KERNELS_ENV_VAR = backends.CPU_KERNELS_ENV_VAR
_UNPACKED_CACHE_SIZE = 8  # ensembles whose bf16 weights are kept unpacked (2.6 MB each at 5x200x4)
_unpacked: dict[tuple[int, ...], tuple] = {}


def _unpacked_weights(params: MLPParams) -> tuple[torch.Tensor, ...]:
    """params' bf16-packed weights as float32 [E, d_l, d_{l+1}], unpacked once per weight
    tensor (identity, storage and ``_version``: an in-place update unpacks again)."""
    key = tuple(id(w) for w in params.weights)
    stamp = tuple((w.data_ptr(), w._version) for w in params.weights)
    hit = _unpacked.get(key)
    if hit is not None and hit[0] == stamp and all(
            ref() is w for ref, w in zip(hit[2], params.weights, strict=True)):
        return hit[1]
    sizes = params.sizes
    fp32 = tuple(unpack_bf16(w, sizes[l]).contiguous() for l, w in enumerate(params.weights))
    _unpacked.pop(key, None)
    _unpacked[key] = (stamp, fp32, tuple(weakref.ref(w) for w in params.weights))
    while len(_unpacked) > _UNPACKED_CACHE_SIZE:
        _unpacked.pop(next(iter(_unpacked)), None)
    return fp32


_addr = _launch.addr


def mlp_desc(params: MLPParams, kernels: backends.CpuKernels, sizes=None):
    """The ``_C.MLPDesc`` of a network (ops/_launch.fill_mlp_desc, as for CUDA) and the
    weight tensors it points at (the caller keeps them alive for the call: bf16 weights
    the path cannot run natively are unpacked to fp32)."""
    weights, bf16 = params.weights, params.is_bf16
    if bf16 and not kernels.native_bf16:
        weights, bf16 = _unpacked_weights(params), False
    d = _launch.fill_mlp_desc(backends.cpu_module().MLPDesc(), params, sizes, weights, bf16)
    return d, weights


def ensemble_mlp_cpu(x: torch.Tensor, params: MLPParams, sizes):
    """x [E, B, d_0] contiguous -> y [E, B, d_L] or (mean, logvar) [E, B, d_L / 2] each."""
    e, b, _ = x.shape
    d_l = int(sizes[-1])
    width = d_l // 2 if params.gaussian else d_l
    out = torch.empty(e, b, width, dtype=torch.float32)
    logvar = torch.empty(e, b, width, dtype=torch.float32) if params.gaussian else None
    kernels = backends.cpu_kernels()
    mlp, _weights = mlp_desc(params, kernels, sizes)
    backends.cpu_module().ensemble_mlp(mlp, x.data_ptr(), b, out.data_ptr(), _addr(logvar),
                                       kernels.isa_id)
    return (out, logvar) if params.gaussian else out


def propagate_cpu(params: MLPParams, obs: torch.Tensor, actions: torch.Tensor | None,
                  spec: PropagateSpec, policy: MLPParams | None = None) -> PropagateResult:
    """obs [N, D], actions [N, P, H, A] contiguous (or None with a policy in the loop)
    -> PropagateResult with returns per particle [N, P, K] (ops/_launch.py)."""
    s = spec
    reward = _launch.reward_id(s, "cpu")  # a RewardKind id, as every compiled kernel takes
    callback = int(s.reward.address) if reward == RewardKind.CALLBACK else 0
    out = _launch.row_outputs(s, reward != RewardKind.NONE, policy is not None, obs.device)
    kernels = backends.cpu_kernels()
    mod = backends.cpu_module()
    model, _model_weights = mlp_desc(params, kernels)
    pi, _policy_weights = mlp_desc(policy, kernels) if policy is not None else (None, None)
    desc = _launch.fill_propagate_desc(mod.PropagateDesc(), s, params, reward, obs, actions, out)
    desc.callback = callback
    bad = mod.propagate(model, pi, desc, kernels.isa_id)
    if bad[0] >= 0:  # the CPU kernel reports (t, member, n, p, k) itself, not a key
        _raise_non_finite(*bad)
    return _launch.to_result(out, s, params.num_members)


def skill_reward_cpu(params: MLPParams, x: torch.Tensor, target: torch.Tensor,
                     skill: torch.Tensor, prior: torch.Tensor,
                     spec: SkillRewardSpec) -> SkillReward:
    """x [M, F], target [M, P], skill [M, Z], prior [M, L, Z] or [L, Z] contiguous ->
    SkillReward (ops/skill_reward.py); q goes in as the MLPDesc every CPU op takes."""
    s = spec
    log_q = torch.empty(s.m, s.l + 1)
    reward = torch.empty(s.m)
    kernels = backends.cpu_kernels()
    mlp, _weights = mlp_desc(params, kernels)  # _weights: alive for the call
    backends.cpu_module().skill_reward(
        mlp, s.m, s.l, s.f, s.z, s.p, s.prior_shared,
        s.include_skill, x.data_ptr() if s.f else 0, target.data_ptr(), skill.data_ptr(),
        prior.data_ptr(), log_q.data_ptr(), reward.data_ptr(), kernels.isa_id)
    return SkillReward(reward, log_q[:, 0], log_q[:, 1:])


# ---- noise, the planners' samplers and the elite updates ---------------------------------

def philox_fill(kind: str, n: int, seed: int, offset: int, device) -> torch.Tensor:
    """[n] samples of stream (seed, offset): int64 uint32 values, or float32 uniform/normal."""
    out = torch.empty(n, dtype=torch.int32 if kind == "uint32" else torch.float32)
    mod = backends.cpu_module()
    if kind == "normal":
        mod.philox_normal(out.data_ptr(), n, seed, offset, backends.cpu_kernels().isa_id)
    else:
        getattr(mod, f"philox_{kind}")(out.data_ptr(), n, seed, offset)
    return out.to(torch.int64) & 0xFFFFFFFF if kind == "uint32" else out


def cem_update_cpu(samples, returns, mean, var, num_elites: int, alpha: float, epsilon: float):
    """samples [N, P, H, A], returns [N, P], mean / var [N, H, A] -> (new_mean, new_var,
    elites [N, K] int64, best [N, H, A], best_return [N], converged [N] bool)."""
    n, p, h, a = samples.shape
    new_mean, new_var, best = (torch.empty(n, h, a) for _ in range(3))
    elites = torch.empty(n, num_elites, dtype=torch.int64)
    best_return = torch.empty(n)
    converged = torch.empty(n, dtype=torch.uint8)
    backends.cpu_module().cem_update(
        _addr(samples), _addr(returns), _addr(mean), _addr(var), n, p, h * a, num_elites, alpha,
        epsilon, _addr(new_mean), _addr(new_var), _addr(elites), _addr(best), _addr(best_return),
        _addr(converged))
    return new_mean, new_var, elites, best, best_return, converged.bool()


def mppi_update_cpu(samples, returns, temperature: float):
    """samples [N, P, H, A], returns [N, P] -> (mean [N, H, A], var [N, H, A], weights [N, P])."""
    n, p, h, a = samples.shape
    mean, var = torch.empty(n, h, a), torch.empty(n, h, a)
    weights = torch.empty(n, p)
    backends.cpu_module().mppi_update(_addr(samples), _addr(returns), n, p, h * a, temperature,
                                      _addr(mean), _addr(var), _addr(weights))
    return mean, var, weights


def truncated_normal_cpu(mean, var, lower, upper, population: int, seed: int, offset: int):
    """mean / var [N, H, A], lower / upper [A] -> samples [N, population, H, A]."""
    n, h, a = mean.shape
    out = torch.empty(n, population, h, a)
    backends.cpu_module().truncated_normal(_addr(mean), _addr(var), _addr(lower), _addr(upper), n,
                                           population, h, a, seed, offset, _addr(out))
    return out


def colored_noise_cpu(mean, var, lower, upper, population: int, scales: list[float],
                      sigma: float, seed: int, offset: int):
    """mean / var [N, H, A], lower / upper [A], the amplitudes s_k [F] and output std sigma
    of ops/samplers.powerlaw_scales -> samples [N, population, H, A]."""
    n, h, a = mean.shape
    scales = torch.tensor(scales, dtype=torch.float64)
    out = torch.empty(n, population, h, a)
    backends.cpu_module().colored_noise(_addr(mean), _addr(var), _addr(lower), _addr(upper), n,
                                        population, h, a, _addr(scales), sigma, seed, offset,
                                        _addr(out))
    return out
