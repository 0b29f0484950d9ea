"""propagate's reference against the module docstring read literally.

The reference groups particle rows by member (each row meets only its own member); the
oracle here runs every member on every row at every step and then picks each row's
member, as the docstring states it. They must agree to fp32 rounding in every mode.
No compiled backend is needed (these run where ``mbrl_fast._C`` is not built).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers import random_mlp_params

from mbrl_fast.ops import noise
from mbrl_fast.ops.contract import raise_non_finite_row
from mbrl_fast.ops.ensemble_mlp import ensemble_mlp_reference
from mbrl_fast.ops.features import ObsFeatures, obs_features_reference
from mbrl_fast.ops.propagate import MODES, _member_indices, check_args, propagate


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


def make_case(D=5, A=2, E=4, head=False, bf16=False, N=2, P=7, H=5, seed=0, features=None):
    d_out = D + 1 if head else D
    f = D if features is None else features.width
    params = random_mlp_params(E=E, sizes=(f + A, 24, 24, 2 * d_out), bf16=bf16, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    return (replace(params, obs_features=features), torch.randn(N, D, generator=g) * 3,
            torch.rand(N, P, H, A, generator=g) * 2 - 1)


def check(params, obs, actions, policy=None, **kw):
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


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reward", [None, "model", "halfcheetah"])
@pytest.mark.parametrize("bf16", [False, True])
def test_matches_the_literal_docstring(mode, reward, bf16):
    D = 18 if reward == "halfcheetah" else 5
    features = ObsFeatures(18, drop=(0,), angles=(2,)) if D == 18 else None
    params, obs, actions = make_case(D=D, A=6 if D == 18 else 2, head=reward == "model",
                                     bf16=bf16, features=features)
    check(params, obs, actions, particles=5, mode=mode, member=2 if mode == "fixed" else None,
          seed=3, offset=12, reward=reward)


@pytest.mark.parametrize("mode", MODES)
def test_member_subsets_with_repeats_and_empty_groups(mode):
    # members [3, 1, 3]: member 3 drawn twice as often, members 0 and 2 never run.
    params, obs, actions = make_case(E=4, N=1, P=3, H=4)
    got = check(params, obs, actions, particles=3, mode=mode,
                member=0 if mode == "fixed" else None, members=[3, 1, 3], seed=2**63 + 5,
                offset=2**40, reward=lambda o, a, n: n[..., 0] - (a * a).sum(-1))
    assert got.returns.shape == (1, 3)


@pytest.mark.parametrize("rows", [(1, 1, 1), (1, 1, 7), (3, 4, 5)])
def test_odd_row_counts(rows):
    n, p, k = rows  # down to a single row: a single group of one
    params, obs, actions = make_case(E=5, N=n, P=p, H=3)
    for mode in ("ts1", "tsinf"):
        check(params, obs, actions, particles=k, mode=mode, seed=7)


@pytest.mark.parametrize("mode", MODES)
def test_policy_in_the_loop(mode):
    params, obs, _ = make_case(D=4, A=2, head=True)
    policy = random_mlp_params(E=1, sizes=(4, 16, 4), seed=5)
    check(params, obs, None, policy, particles=4, mode=mode, member=1 if mode == "fixed" else None,
          horizon=6, reward="model", seed=2)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("step", [0, 3])
def test_non_finite_names_the_first_step_and_row(mode, step):
    params, obs, actions = make_case(P=5, H=6)
    actions[1, 3, step, 0] = float("inf")  # start state 1, sequence 3
    actions[1, 4, step + 1, 0] = float("nan")  # a later step: not the one reported
    kw = dict(particles=2, mode=mode, member=1 if mode == "fixed" else None)
    with pytest.raises(FloatingPointError) as want:
        oracle(params, obs, actions, **kw)
    with pytest.raises(FloatingPointError, match=f"step {step} ") as got:
        propagate(params, obs, actions, backend="reference", **kw)
    assert str(got.value) == str(want.value)
    assert "start state 1, sequence 3, particle 0" in str(got.value)
