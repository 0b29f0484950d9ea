"""Particle propagation through a probabilistic ensemble for a whole horizon, in one call.

For N start states s_0[n] [D], P action sequences a[n, p] [H, A] each, and K
particles per sequence, every particle (n, p, k) is rolled out for t = 0..H-1::

    z      = concat(features(s_t), a_t)                         [F + A]
    mu, lv = ensemble_mlp(z) of member e_t (Gaussian head)       [D_out] each
    delta  = mu + exp(lv / 2) * eps[n, p, k, t]                 (no eps in "expectation")
    s_{t+1} = s_t + delta[:D]                                   (delta-state targets)
    r_t    = reward(s_t, a_t, s_{t+1})   or delta[D] with reward="model"

D_out is D (dynamics only) or D + 1 (a learned reward head as the last output).
``features`` is ``params.obs_features`` (ops/features.py: angles as sin/cos, dropped
coordinates), F its width; without one, features(s) = s and F = D.

Propagation modes (Chua et al. 2018), with ``members`` the usable member indices
(default: all E; e.g. the elites) and E' = len(members):
  ``ts1``          e_t = members[randint(E')] re-drawn every step, per particle
  ``tsinf``        e   = members[randint(E')] drawn once per particle, fixed over the horizon
  ``expectation``  delta = mean over members of mu (no sampling)
  ``fixed``        e = ``member`` (an index into the full ensemble) for every particle

Random numbers (ops/noise.py), so every backend draws the same samples:
  eps      normal(seed, offset)     [N, P, K, H, D_out]
  members  randint(seed, offset+1)  [N, P, K, H] for ts1, [N, P, K] for tsinf
  policy   normal(seed, offset+2)   [N, P, K, H, A]   (only with a policy in the loop)
A call uses the offsets [offset, offset + 3); callers advance ``offset`` by
``OFFSETS_PER_CALL``.

Policy in the loop (MBPO branched rollouts): with ``policy`` (an MLPParams with
one member and a Gaussian head over A outputs) and ``actions=None``, actions are
``a_t = tanh(mu_pi + exp(lv_pi / 2) * eps_pi)`` of the current state; pass the
horizon as ``horizon``. The returned ``actions`` then hold what was taken.

Returns ``PropagateResult``:
  states  [N, P, K, H + 1, D]  (s_0 .. s_H; when ``return_states``)
  rewards [N, P, K, H]         (when a reward is given and ``return_states``)
  returns [N, P]               mean over the K particles of sum_t r_t (when a reward is given)
  actions [N, P, K, H, A]      only with a policy in the loop

A non-finite state raises FloatingPointError naming the step, member and sequence.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from mbrl_fast import backends
from mbrl_fast.ops import noise, registry, rewards
from mbrl_fast.ops.contract import (
    MODE_IDS,
    MODES,
    OFFSETS_PER_CALL,
    MLPParams,
    PropagateResult,
    PropagateSpec,
    Reward,
    raise_non_finite,
    raise_non_finite_row,
)
from mbrl_fast.ops.ensemble_mlp import check_params, ensemble_mlp_reference
from mbrl_fast.ops.features import obs_features_reference

__all__ = ["MODES", "MODE_IDS", "OFFSETS_PER_CALL", "PropagateResult", "PropagateSpec",
           "check_args", "propagate", "propagate_reference", "raise_non_finite",
           "score_states"]


def _bad(name: str, expected: str, got) -> ValueError:
    return ValueError(f"propagate: {name} must be {expected}, got {got}")


def check_args(params, obs, actions, particles, mode, member, members, seed, offset, reward,
               return_states, policy=None, horizon=None) -> PropagateSpec:
    """Validate once at the Python boundary; errors name the argument and the expectation."""
    sizes = check_params(params)
    if not params.gaussian:
        raise _bad("params", "an MLPParams with a Gaussian head (max_logvar/min_logvar)", "none")
    if mode not in MODES:
        raise _bad("mode", f"one of {MODES}", repr(mode))
    if not isinstance(obs, torch.Tensor) or obs.dtype != torch.float32 or obs.dim() != 2:
        raise TypeError(f"propagate: obs must be a float32 tensor [N, D], got "
                        f"{getattr(obs, 'dtype', type(obs).__name__)} "
                        f"{tuple(getattr(obs, 'shape', ()))}")
    n, d = obs.shape
    if n < 1:
        raise _bad("obs", "[N >= 1, D]", tuple(obs.shape))
    if not torch.isfinite(obs).all():
        raise ValueError("propagate: obs (the start states) contains NaN or inf")
    if obs.device != params.device:
        raise _bad("obs", f"on {params.device} like params", obs.device)
    if policy is not None:
        psizes = check_params(policy, "policy")
        if policy.num_members != 1 or not policy.gaussian or psizes[0] != d:
            raise _bad("policy", f"one member with a Gaussian head and {d} inputs", psizes)
        if actions is not None:
            raise _bad("actions", "None when a policy is in the loop", tuple(actions.shape))
        if not isinstance(horizon, int) or horizon < 1:
            raise _bad("horizon", "an int >= 1 with a policy in the loop", horizon)
        if not isinstance(particles, int) or particles < 1:
            raise _bad("particles", "an int >= 1", particles)
        a = psizes[-1] // 2
        p, h = 1, horizon
    else:
        if not isinstance(actions, torch.Tensor) or actions.dtype != torch.float32:
            raise TypeError(f"propagate: actions must be a float32 tensor [N, P, H, A], got "
                            f"{getattr(actions, 'dtype', type(actions).__name__)}")
        if actions.dim() != 4 or actions.shape[0] != n:
            raise _bad("actions", f"[N={n}, P, H, A]", tuple(actions.shape))
        _, p, h, a = actions.shape
        if p < 1 or h < 1 or a < 1:
            raise _bad("actions", "[N, P >= 1, H >= 1, A >= 1]", tuple(actions.shape))
        if actions.device != params.device:
            raise _bad("actions", f"on {params.device} like params", actions.device)
    feats = params.obs_features
    if feats is not None and feats.obs_dim != d:
        raise _bad("params.obs_features", f"ObsFeatures with obs_dim D = {d}", feats.obs_dim)
    f = d if feats is None else feats.width
    if sizes[0] != f + a:
        what = "D + A" if feats is None else "F + A (F: params.obs_features.width)"
        raise _bad("params", f"input width {what} = {f + a}", sizes[0])
    d_out = sizes[-1] // 2
    if d_out not in (d, d + 1):
        raise _bad("params", f"a Gaussian head over D = {d} or D + 1 = {d + 1} outputs", d_out)
    if not isinstance(particles, int) or isinstance(particles, bool) or particles < 1:
        raise _bad("particles", "an int >= 1", repr(particles))
    e = params.num_members
    if members is None:
        members = torch.arange(e, dtype=torch.int64)
    else:
        members = torch.as_tensor(members, dtype=torch.int64).reshape(-1).cpu()
        if members.numel() < 1 or members.min() < 0 or members.max() >= e:
            raise _bad("members", f"a non-empty list of indices in [0, {e})", members.tolist())
    if mode == "fixed":
        if not isinstance(member, int) or not 0 <= member < e:
            raise _bad("member", f"an int in [0, {e}) with mode='fixed'", repr(member))
    else:
        member = -1
    if reward == "model":
        if d_out != d + 1:
            raise _bad("reward", "not 'model' unless params has a reward head (D + 1 outputs)",
                       "'model'")
    elif reward is not None:
        reward = rewards.resolve(reward)
    noise._check_key(seed, offset)
    if offset + OFFSETS_PER_CALL > 2**64:
        raise _bad("offset", f"< 2**64 - {OFFSETS_PER_CALL}", offset)
    return PropagateSpec(n, p, particles, h, d, a, d_out, mode, member, members, seed, offset,
                         reward, bool(return_states))


def _member_indices(spec: PropagateSpec, device) -> torch.Tensor:
    """[N, P, K, H] int64 member of each particle at each step (ts1 / tsinf / fixed)."""
    s = spec
    if s.mode == "fixed":
        return torch.full((s.n, s.p, s.k, s.h), s.member, dtype=torch.int64, device=device)
    m = s.members.numel()
    if s.mode == "ts1":
        draw = noise.randint((s.n, s.p, s.k, s.h), m, s.seed, s.offset + 1, device=device,
                             backend="reference")
    else:
        draw = noise.randint((s.n, s.p, s.k), m, s.seed, s.offset + 1, device=device,
                             backend="reference")
        draw = draw.unsqueeze(-1).expand(-1, -1, -1, s.h)
    return s.members.to(device)[draw]


def _select_members(params: MLPParams, idx: torch.Tensor) -> MLPParams:
    """The ensemble of members ``idx`` [E'] (in that order; repeats allowed)."""
    idx = idx.cpu()
    if idx.numel() == params.num_members and bool((idx == torch.arange(idx.numel())).all()):
        return params
    idx = idx.to(params.device)
    return replace(params, weights=tuple(w.index_select(0, idx) for w in params.weights),
                   biases=tuple(b.index_select(0, idx) for b in params.biases))


def _padded_groups(member: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows grouped by member in a layout [groups, M] padded to the largest group M, so
    that one bmm per layer runs every row through its own member only.

    member [S, rows] int64 in [0, groups) (S steps) -> src [S, groups * M], the row in each
    slot (a padding slot repeats its group's first row; its output is never read), and
    slot [S, rows], each row's slot. One host sync (M) for all S steps.
    """
    steps, rows = member.shape
    order = torch.argsort(member, dim=1, stable=True)  # [S, rows] rows grouped by member
    counts = torch.zeros(steps, groups, dtype=torch.int64, device=member.device)
    counts.scatter_add_(1, member, torch.ones_like(member))
    m = int(counts.max())
    first = counts.cumsum(1) - counts  # [S, groups] sorted position of each group's first row
    grouped = member.gather(1, order)  # [S, rows] the member of each sorted position
    rank = torch.arange(rows, device=member.device) - first.gather(1, grouped)
    slot = torch.empty_like(member).scatter_(1, order, grouped * m + rank)
    pad = order.gather(1, first.clamp(max=rows - 1))  # [S, groups] a row of each group
    src = pad.repeat_interleave(m, dim=1)  # [S, groups * M], then the real rows over it
    src.scatter_(1, slot, torch.arange(rows, device=member.device).expand(steps, -1))
    return src, slot


def propagate_reference(params: MLPParams, obs, actions, spec: PropagateSpec, policy=None):
    """The specification (see module docstring). Returns PropagateResult.

    Each particle row runs only through its own member: the rows are grouped by member
    in a layout [E', M] padded to the largest group (E' the members in use) and one bmm
    per layer runs each group through its member (:func:`_padded_groups`). With tsinf
    and fixed the members never change, so the rows stay in that layout for the whole
    horizon and are put back in order at the end; ts1 regroups every step (all steps'
    layouts computed in one call). Expectation runs every member of ``members`` on
    every row.
    """
    s = spec
    dev = obs.device
    rows = s.n * s.p * s.k  # row = (n P + p) K + k
    # Time-major [H, rows, ...]: each step reads and writes contiguous rows.
    eps = noise.normal((s.n, s.p, s.k, s.h, s.d_out), s.seed, s.offset, device=dev,
                       backend="reference").reshape(rows, s.h, s.d_out).transpose(0, 1)
    start = torch.arange(rows, device=dev) // (s.p * s.k)  # [rows] start state of each row
    if policy is not None:
        eps_pi = noise.normal((s.n, s.p, s.k, s.h, s.a), s.seed, s.offset + 2, device=dev,
                              backend="reference").reshape(rows, s.h, s.a).transpose(0, 1)
        taken = torch.empty(s.h, rows, s.a, device=dev)
    else:
        taken = actions.unsqueeze(2).expand(-1, -1, s.k, -1, -1).reshape(rows, s.h, s.a)
        taken = taken.transpose(0, 1)  # [H, rows, A]
    fixed_layout = None  # tsinf / fixed: the loop runs on slots; slot[row] is a row's slot
    if s.mode == "expectation":
        ensemble = _select_members(params, s.members)  # repeats count twice in the mean
    else:
        member_of = _member_indices(s, dev).reshape(rows, s.h)
        used = torch.unique(member_of if s.mode == "ts1" else member_of[:, 0])  # [E'] sorted
        ensemble = _select_members(params, used)
        group = torch.searchsorted(used, member_of.T.contiguous())  # [H, rows] in [0, E')
        src, slot = _padded_groups(group if s.mode == "ts1" else group[:1], used.numel())
        if s.mode != "ts1":
            fixed_layout = slot[0]
            eps, taken = eps.index_select(1, src[0]), taken.index_select(1, src[0])
            start = start[src[0]]
            if policy is not None:
                eps_pi = eps_pi.index_select(1, src[0])
    eps, taken = eps.contiguous(), taken.contiguous()
    e = ensemble.num_members
    states = torch.empty(s.h + 1, start.shape[0], s.d, device=dev)  # [H + 1, rows or slots, D]
    states[0] = obs[start]
    model_rewards = []
    for t in range(s.h):
        if policy is not None:
            mu_pi, lv_pi = ensemble_mlp_reference(states[t].unsqueeze(0), policy)
            taken[t] = torch.tanh(mu_pi[0] + torch.exp(0.5 * lv_pi[0]) * eps_pi[t])
        z = torch.cat([obs_features_reference(states[t], params.obs_features), taken[t]], dim=-1)
        if s.mode == "expectation":
            mu, _ = ensemble_mlp_reference(z.expand(e, -1, -1), ensemble)
            delta = mu.mean(dim=0)  # [rows, D_out]
        else:
            if fixed_layout is not None:  # z already is [E' * M, F + A] in slot order
                mu, logvar = ensemble_mlp_reference(z.view(e, -1, z.shape[-1]), ensemble)
                mu, logvar = mu.reshape(-1, s.d_out), logvar.reshape(-1, s.d_out)
            else:  # ts1: this step's layout, and back to row order
                mu, logvar = ensemble_mlp_reference(z[src[t]].view(e, -1, z.shape[-1]), ensemble)
                mu, logvar = mu.reshape(-1, s.d_out)[slot[t]], logvar.reshape(-1, s.d_out)[slot[t]]
            delta = mu + torch.exp(0.5 * logvar) * eps[t]
        torch.add(states[t], delta[:, : s.d], out=states[t + 1])
        if s.reward == "model":
            model_rewards.append(delta[:, s.d])
    if fixed_layout is not None:  # slots back to rows (padding slots dropped)
        states = states.index_select(1, fixed_layout)
        taken = taken.index_select(1, fixed_layout)
        model_rewards = [r[fixed_layout] for r in model_rewards]
    # A non-finite entry stays non-finite (s_{t+1} = s_t + delta): the last state tells
    # whether there is one, and the first step with one, and its first row, are found as a
    # check after every step would find them.
    if not bool(torch.isfinite(states[-1]).all()):
        bad = ~torch.isfinite(states[1:]).all(dim=-1)  # [H, rows]
        t = int(bad.any(dim=1).nonzero()[0, 0])
        r = int(bad[t].nonzero()[0, 0])
        mem = -1 if s.mode == "expectation" else int(member_of[r, t])
        raise_non_finite_row(t, mem, r, s)
    out_rewards = returns = None
    if s.reward == "model":
        out_rewards = torch.stack(model_rewards, dim=1)  # [rows, H]
    elif s.reward is not None:
        out_rewards = s.reward.torch_fn(states[:-1], taken, states[1:]).transpose(0, 1)
    if out_rewards is not None:
        out_rewards = out_rewards.reshape(s.n, s.p, s.k, s.h)
        returns = out_rewards.sum(dim=-1).mean(dim=-1)
    return PropagateResult(
        states=states.transpose(0, 1).reshape(s.n, s.p, s.k, s.h + 1, s.d)
        if s.return_states else None,
        rewards=out_rewards if s.return_states else None,
        returns=returns,
        actions=taken.transpose(0, 1).reshape(s.n, s.p, s.k, s.h, s.a) if policy is not None
        else None,
    )


def propagate(params: MLPParams, obs: torch.Tensor, actions: torch.Tensor | None, *,
              particles: int = 20, mode: str = "tsinf", member: int | None = None,
              members=None, seed: int = 0, offset: int = 0, reward=None,
              return_states: bool = True, policy: MLPParams | None = None,
              horizon: int | None = None, backend: str = "auto") -> PropagateResult:
    """Roll N x P action sequences x K particles through the ensemble for the whole horizon.

    obs [N, D], actions [N, P, H, A] float32 (non-contiguous inputs are copied);
    see the module docstring for modes, noise offsets and outputs.
    """
    spec = check_args(params, obs, actions, particles, mode, member, members, seed, offset,
                      reward, return_states, policy, horizon)
    obs = obs.contiguous()
    actions = actions.contiguous() if actions is not None else None
    features = ("propagate", "propagate.policy") if policy is not None else ("propagate",)
    name = backends.select(backend, obs.device, backends.supporting(*features), "propagate")
    if name == "reference":
        return propagate_reference(params, obs, actions, spec, policy)
    # A reward this backend's kernel does not apply inside the rollout (a plain torch
    # function; a numba callback off the CPU): roll out states, then score every
    # transition in one batched torch call.
    torch_reward = isinstance(spec.reward, Reward) and not spec.reward.fused_on(name)
    run = replace(spec, reward=None, return_states=True) if torch_reward else spec
    result = registry.launcher("propagate", name)(params, obs, actions, run, policy)
    if torch_reward:
        return score_states(result, actions, spec)
    # The launchers return per-particle returns [N, P, K]: the mean over K, here only.
    returns = None if result.returns is None else result.returns.mean(dim=-1)
    return replace(result, returns=returns)


def score_states(result: PropagateResult, actions, spec: PropagateSpec) -> PropagateResult:
    """Apply a batched torch reward to rolled-out states (for rewards no kernel fuses)."""
    states = result.states  # [N, P, K, H + 1, D]
    if result.actions is not None:
        act = result.actions
    else:
        act = actions.unsqueeze(2).expand(-1, -1, spec.k, -1, -1)
    step_rewards = spec.reward.torch_fn(states[..., :-1, :], act, states[..., 1:, :])
    return PropagateResult(
        states=states if spec.return_states else None,
        rewards=step_rewards if spec.return_states else None,
        returns=step_rewards.sum(dim=-1).mean(dim=-1),
        actions=result.actions,
    )
