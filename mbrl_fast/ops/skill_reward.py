"""DADS's intrinsic reward: M transitions x L prior skills through the skill dynamics, in one call.

Sharma et al. 2020 ("Dynamics-Aware Unsupervised Discovery of Skills", eq. 7) reward a
skill z for a transition s -> s' by how much better the skill dynamics q predicts s'
under z than under skills drawn from the prior::

    r_z(s, a, s') = log q(s' | s, z) - log sum_i q(s' | s, z_i) + log L,   z_i ~ p(z)

q is a Gaussian MLP (one member of an ``MLPParams``) over q's input row
``in(m, z) = concat(x_m, z)`` [F + Z], where x_m [F] is what q reads of the state
(its features: no x-y for the paper's x-y prior, F = 0 when q reads the skill only)::

    mu, logvar = ensemble_mlp(in(m, z), params)        [P] each (Gaussian head), or
    mu         = ensemble_mlp(in(m, z), params), logvar = 0   (no head: unit variance,
                                                              DADS's ``fix_variance``)
    l(m, z)    = -1/2 sum_j [ (t_mj - mu_j)^2 exp(-logvar_j) + logvar_j + log 2 pi ]

with t_m [P] the transition's target in q's output space (the normalized state change
for the mbrl_fast SkillDynamics). Then, per transition m, with its own skill z_m and its
prior samples z_{m,1} .. z_{m,L}::

    reward_m = l(m, z_m) - logsumexp_i l(m, z_{m,i}) + log L                (paper)
    reward_m = l(m, z_m) - logsumexp(l(m, z_m), l(m, z_{m,1..L})) + log(L + 1)
                                                          (include_skill: the authors' code,
                                                           google-research/dads, <= log(L + 1))

Shapes: x [M, F] (F may be 0), target [M, P], skill [M, Z], prior [M, L, Z] (per
transition, as the authors' code draws them) or [L, Z] (the same L samples for every
transition); float32. Returns :class:`SkillReward` with reward [M], log_q [M] (l(m, z_m))
and log_q_prior [M, L]. A call is M (L + 1) forward passes of q: the compiled kernel
keeps each tile of rows in cache from the input to the log-density and never stores a
row's activations; the reference below (eager torch, in chunks of rows) is the
specification and the benchmark baseline. When q reads the skill only (F = 0, the x-y
prior) and the prior is shared ([L, Z]), q's output depends on the skill alone and the
kernel runs M + L passes instead of M (L + 1) (the same numbers).
"""

from __future__ import annotations

import math

import torch

from mbrl_fast import backends
from mbrl_fast.ops import registry
from mbrl_fast.ops.contract import MLPParams, SkillReward, SkillRewardSpec
from mbrl_fast.ops.ensemble_mlp import check_params, ensemble_mlp_reference

_LOG_2PI = math.log(2 * math.pi)
REFERENCE_CHUNK_ROWS = 1 << 16  # rows per reference forward ([2^16, 512] fp32 = 128 MiB)


def _tensor(name: str, t, dims: int, shape: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or t.dim() != dims:
        got = f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}"
        raise ValueError(f"skill_reward: {name} must be a float32 tensor {shape}, got {got}")
    return t


def check_args(params: MLPParams, x, target, skill, prior, include_skill) -> SkillRewardSpec:
    """Validate once at the Python boundary; errors name the argument and the expectation."""
    sizes = check_params(params)
    if params.num_members != 1:
        raise ValueError(f"skill_reward: params must be ONE skill-dynamics network (an MLPParams "
                         f"with E = 1), got E = {params.num_members}")
    skill = _tensor("skill", skill, 2, "[M, Z]")
    m, z = skill.shape
    if z < 1:
        raise ValueError(f"skill_reward: the skill dimension Z must be >= 1, got skill "
                         f"{tuple(skill.shape)}")
    if m < 1:
        raise ValueError(f"skill_reward: need at least one transition (M >= 1), got skill "
                         f"{tuple(skill.shape)}")
    x = _tensor("x", x, 2, f"[M={m}, F]")
    if x.shape[0] != m:
        raise ValueError(f"skill_reward: x must be [M={m}, F], got {tuple(x.shape)}")
    f = x.shape[1]
    if not isinstance(prior, torch.Tensor) or prior.dim() not in (2, 3):
        prior = _tensor("prior", prior, 3, f"[M={m}, L, Z={z}] or [L, Z={z}]")
    prior = _tensor("prior", prior, prior.dim(), f"[M={m}, L, Z={z}] or [L, Z={z}]")
    shared = prior.dim() == 2
    if prior.shape[-1] != z or (not shared and prior.shape[0] != m):
        raise ValueError(f"skill_reward: prior must be [M={m}, L, Z={z}] or [L, Z={z}], got "
                         f"{tuple(prior.shape)}")
    l = prior.shape[-2]
    if l < 2:
        raise ValueError(f"skill_reward: need L >= 2 prior samples per transition (the "
                         f"denominator's Monte-Carlo estimate), got L = {l}")
    if sizes[0] != f + z:
        raise ValueError(f"skill_reward: params must read [x, skill] of width F + Z = {f + z}, "
                         f"its input width is {sizes[0]}")
    p = sizes[-1] // 2 if params.gaussian else sizes[-1]
    target = _tensor("target", target, 2, f"[M={m}, P={p}]")
    if tuple(target.shape) != (m, p):
        raise ValueError(f"skill_reward: target must be [M={m}, P={p}] (q's output width), got "
                         f"{tuple(target.shape)}")
    for name, t in (("x", x), ("target", target), ("skill", skill), ("prior", prior)):
        if t.device != params.device:
            raise ValueError(f"skill_reward: {name} is on {t.device}, params on {params.device}")
        if not torch.isfinite(t).all():
            raise ValueError(f"skill_reward: {name} contains NaN or inf")
    return SkillRewardSpec(m, l, f, z, p, shared, bool(include_skill))


def log_density(params: MLPParams, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """l = log N(target; q(inputs)) (module docstring): inputs [R, F + Z], target [R, P] -> [R]."""
    out = ensemble_mlp_reference(inputs.unsqueeze(0), params)
    if params.gaussian:
        mu, logvar = out[0][0], out[1][0]
        nll = (target - mu).square() * torch.exp(-logvar) + logvar
    else:
        nll = (target - out[0]).square()
    return -0.5 * (nll.sum(dim=-1) + target.shape[-1] * _LOG_2PI)


def reward_from_log_q(log_q: torch.Tensor, include_skill: bool) -> torch.Tensor:
    """log_q [M, L + 1] (column 0: the transition's skill) -> reward [M]."""
    denominator = log_q if include_skill else log_q[:, 1:]
    return log_q[:, 0] - torch.logsumexp(denominator, dim=1) + math.log(denominator.shape[1])


def skill_reward_reference(params: MLPParams, x, target, skill, prior,
                           spec: SkillRewardSpec) -> SkillReward:
    """The specification (module docstring), in chunks of whole transitions."""
    s = spec
    per = s.l + 1
    chunk = max(1, REFERENCE_CHUNK_ROWS // per)
    parts = []
    for m0 in range(0, s.m, chunk):
        m1 = min(s.m, m0 + chunk)
        prior_c = prior.expand(m1 - m0, -1, -1) if s.prior_shared else prior[m0:m1]
        skills = torch.cat([skill[m0:m1].unsqueeze(1), prior_c], dim=1)  # [m, L + 1, Z]
        xs = x[m0:m1].unsqueeze(1).expand(-1, per, -1)
        inputs = torch.cat([xs, skills], dim=-1).reshape(-1, s.f + s.z)
        targets = target[m0:m1].unsqueeze(1).expand(-1, per, -1).reshape(-1, s.p)
        parts.append(log_density(params, inputs, targets).reshape(m1 - m0, per))
    log_q = torch.cat(parts)
    return SkillReward(reward_from_log_q(log_q, s.include_skill), log_q[:, 0], log_q[:, 1:])


def skill_reward(params: MLPParams, x: torch.Tensor, target: torch.Tensor, skill: torch.Tensor,
                 prior: torch.Tensor, *, include_skill: bool = False,
                 backend: str = "auto") -> SkillReward:
    """DADS's intrinsic reward of M transitions against L prior skills (module docstring).

    x [M, F], target [M, P], skill [M, Z], prior [M, L, Z] or [L, Z], float32 (non-contiguous
    inputs are copied). A non-finite log-density raises FloatingPointError naming the
    transition.
    """
    spec = check_args(params, x, target, skill, prior, include_skill)
    name = backends.select(backend, skill.device, backends.supporting("skill_reward"),
                           "skill_reward")
    if name == "reference":
        out = skill_reward_reference(params, x, target, skill, prior, spec)
    else:
        out = registry.launcher("skill_reward", name)(
            params, x.contiguous(), target.contiguous(), skill.contiguous(), prior.contiguous(),
            spec)
    bad = ~torch.isfinite(out.reward)
    if bad.any():
        m = int(bad.nonzero()[0, 0])
        raise FloatingPointError(f"skill_reward: the skill dynamics gave a non-finite "
                                 f"log-density for transition {m}; check its weights and "
                                 "normalizers")
    return out
