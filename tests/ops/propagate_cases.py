"""Cases and comparisons shared by the propagate tests (test_propagate.py: given action
sequences; test_propagate_policy.py: a policy in the loop), and the oracle that runs the
op's docstring literally (the reference's own specification test)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers import assert_close, random_mlp_params

from mbrl_fast.ops import noise
from mbrl_fast.ops.contract import raise_non_finite_row
from mbrl_fast.ops.ensemble_mlp import ensemble_mlp_reference
from mbrl_fast.ops.features import ObsFeatures, obs_features_reference
from mbrl_fast.ops.propagate import _member_indices, check_args, propagate

FIELDS = ("states", "rewards", "returns", "actions")
HALFCHEETAH_FEATURES = ObsFeatures(18, drop=(0,), angles=(2,))  # the task's: F = 18
_NEEDS = {"model": "reward.model", "halfcheetah": "reward.halfcheetah"}


def reward_params(*kinds):
    """pytest params of fused reward kinds, each marked with the capability it needs."""
    return [pytest.param(r, marks=pytest.mark.op(_NEEDS[r])) if r in _NEEDS else r
            for r in kinds]


REWARDS = reward_params(None, "model", "halfcheetah")


def make_case(D=4, A=2, E=3, hidden=(24, 24), reward_head=False, bf16=False, N=2, P=3, H=5, seed=0,
              features: ObsFeatures | None = None):
    """(params, obs [N, D], actions [N, P, H, A]): the model reads (features(s), a)."""
    d_out = D + 1 if reward_head else D
    f = D if features is None else features.width
    params = random_mlp_params(E=E, sizes=(f + A, *hidden, 2 * d_out), bf16=bf16, seed=seed)
    params = replace(params, obs_features=features)
    g = torch.Generator().manual_seed(seed + 1)
    # Angles of a few turns, so sin / cos wrap.
    return params, torch.randn(N, D, generator=g) * 3, torch.rand(N, P, H, A, generator=g) * 2 - 1


def make_policy_case(D=5, A=3, E=4, hidden=(33, 33), policy_hidden=(7,), model_act="silu",
                     policy_act="relu", reward_head=True, bf16=False, N=3, seed=0, features=None):
    """(model, policy, obs): the model reads (features(s), a), the policy the raw state."""
    d_out = D + 1 if reward_head else D
    f = D if features is None else features.width
    model = random_mlp_params(E=E, sizes=(f + A, *hidden, 2 * d_out), activation=model_act,
                              bf16=bf16, seed=seed)
    model = replace(model, obs_features=features)
    policy = random_mlp_params(E=1, sizes=(D, *policy_hidden, 2 * A), activation=policy_act,
                               bf16=bf16, seed=seed + 7)
    obs = torch.randn(N, D, generator=torch.Generator().manual_seed(seed + 1))
    return model, policy, obs


def run(backend, params, obs, actions, policy=None, **kw):
    """propagate on ``backend`` (inputs moved to its device)."""
    return propagate(backend.to(params), backend.to(obs), backend.to(actions),
                     policy=backend.to(policy), backend=backend.name, **kw)


def compare(backend, params, obs, actions, dtype="fp32", policy=None, **kw):
    """``backend`` against the reference (on the CPU inputs), every output."""
    ref = propagate(params, obs, actions, policy=policy, backend="reference", **kw)
    got = run(backend, params, obs, actions, policy, **kw)
    for field in FIELDS:
        assert_close(getattr(got, field), getattr(ref, field), dtype, field)
    if policy is not None:
        assert bool((got.actions.abs() <= 1).all())
    return got


def compare_policy(backend, model, policy, obs, dtype="fp32", **kw):
    return compare(backend, model, obs, None, dtype, policy=policy, **kw)


def kw_for(mode, **kw):
    return dict(mode=mode, member=1 if mode == "fixed" else None, **kw)


def raises_like_reference(backend, params, obs, actions, policy=None, match=None, **kw) -> str:
    """Both the reference and ``backend`` raise FloatingPointError, with the same message."""
    with pytest.raises(FloatingPointError) as ref:
        propagate(params, obs, actions, policy=policy, backend="reference", **kw)
    with pytest.raises(FloatingPointError, match=match) as got:
        run(backend, params, obs, actions, policy, **kw)
    assert str(got.value) == str(ref.value)
    return str(got.value)


# ---- the docstring read literally (the reference's oracle) ------------------------------


def oracle(params, obs, actions, policy=None, **kw):
    """Every member on every row, then the row's member picked (E times the work)."""
    s = check_args(params, obs, actions, kw.get("particles", 20), kw.get("mode", "tsinf"),
                   kw.get("member"), kw.get("members"), kw.get("seed", 0), kw.get("offset", 0),
                   kw.get("reward"), True, policy, kw.get("horizon"))
    rows = s.n * s.p * s.k
    eps = noise.normal((s.n, s.p, s.k, s.h, s.d_out), s.seed, s.offset).reshape(rows, s.h, -1)
    eps_pi = noise.normal((s.n, s.p, s.k, s.h, s.a), s.seed, s.offset + 2).reshape(rows, s.h, -1)
    if s.mode != "expectation":
        member_of = _member_indices(s, obs.device).reshape(rows, s.h)
    state = obs.repeat_interleave(s.p * s.k, dim=0)  # [rows, D]
    act = None if actions is None else actions.repeat_interleave(s.k, dim=1).reshape(rows, s.h, -1)
    states, taken, rewards = [state], [], []
    for t in range(s.h):
        if policy is not None:
            mu_pi, lv_pi = ensemble_mlp_reference(state.unsqueeze(0), policy)
            a_t = torch.tanh(mu_pi[0] + torch.exp(0.5 * lv_pi[0]) * eps_pi[:, t])
        else:
            a_t = act[:, t]
        z = torch.cat([obs_features_reference(state, params.obs_features), a_t], dim=-1)
        z = z.expand(params.num_members, -1, -1)
        mu, logvar = ensemble_mlp_reference(z, params)  # [E, rows, D_out] each
        if s.mode == "expectation":
            delta = mu[s.members].mean(dim=0)
        else:
            e, r = member_of[:, t], torch.arange(rows)
            delta = mu[e, r] + torch.exp(0.5 * logvar[e, r]) * eps[:, t]
        nxt = state + delta[:, : s.d]
        bad = ~torch.isfinite(nxt).all(dim=-1)
        if bad.any():
            r = int(bad.nonzero()[0, 0])
            mem = -1 if s.mode == "expectation" else int(member_of[r, t])
            raise_non_finite_row(t, mem, r, s)
        if s.reward == "model":
            rewards.append(delta[:, s.d])
        elif s.reward is not None:
            rewards.append(s.reward.torch_fn(state, a_t, nxt))
        state = nxt
        states.append(state)
        taken.append(a_t)
    out = {"states": torch.stack(states, 1).reshape(s.n, s.p, s.k, s.h + 1, s.d),
           "actions": torch.stack(taken, 1).reshape(s.n, s.p, s.k, s.h, s.a)}
    if rewards:
        out["rewards"] = torch.stack(rewards, 1).reshape(s.n, s.p, s.k, s.h)
        out["returns"] = out["rewards"].sum(-1).mean(-1)
    return out


def check_oracle(params, obs, actions, policy=None, **kw):
    want = oracle(params, obs, actions, policy, **kw)
    got = propagate(params, obs, actions, policy=policy, backend="reference", **kw)
    for name, ref in want.items():
        if name == "actions" and policy is None:
            assert got.actions is None
            continue
        out = getattr(got, name)
        assert out.shape == ref.shape, name
        # Rows meet their member in a different batch than in the oracle: fp32 rounding.
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    return got
