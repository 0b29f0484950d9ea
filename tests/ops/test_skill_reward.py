"""skill_reward (DADS's intrinsic reward): every compiled backend and kernel path that has it
(tests/ops/conftest.py) against the reference, edge cases, the paper's formula checked by hand,
and the bad-input errors."""

from __future__ import annotations

import importlib
import math
from dataclasses import replace

import pytest
import torch
from helpers import TOL, random_mlp_params

from mbrl_fast.ops.ensemble_mlp import ensemble_mlp_reference

# the module (mbrl_fast.ops.skill_reward is the function of the same name)
sr = importlib.import_module("mbrl_fast.ops.skill_reward")
OP = pytest.mark.op("skill_reward")


def case(m=7, l=13, f=5, z=3, p=3, hidden=24, gaussian=True, shared=False, bf16=False,
         activation="relu", scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed + 100)
    params = random_mlp_params(E=1, sizes=(f + z, hidden, hidden + 3, 2 * p if gaussian else p),
                               activation=activation, gaussian=gaussian, bf16=bf16, seed=seed)
    x = torch.randn(m, f, generator=g)
    target = torch.randn(m, p, generator=g) * scale
    skill = torch.rand(m, z, generator=g) * 2 - 1
    prior = torch.rand((l, z) if shared else (m, l, z), generator=g) * 2 - 1
    return params, x, target, skill, prior


def run(backend, params, x, target, skill, prior, **kw):
    """skill_reward on ``backend`` (inputs moved to its device)."""
    return sr.skill_reward(*backend.to((params, x, target, skill, prior)), backend=backend.name,
                           **kw)


def nan_output(params):
    """q with a NaN in its first mean output."""
    bad = params.biases[-1].clone()
    bad[0, 0] = float("nan")
    return replace(params, biases=(*params.biases[:-1], bad))


def compare(out, ref, tol):
    for name in sr.SkillReward._fields:
        got, want = getattr(out, name).cpu(), getattr(ref, name)
        assert got.shape == want.shape, name
        scale = want.abs().max().clamp_min(1.0)
        torch.testing.assert_close(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale,
                                   msg=name)


@OP
@pytest.mark.parametrize("kw", [
    dict(),                                  # odd sizes everywhere
    dict(m=1),                               # one transition
    dict(l=2),                               # the smallest L
    dict(m=40, l=500, f=4, z=2, p=4),        # the paper's L, rows spanning many tiles
    dict(f=0, z=2, p=2),                     # q reads the skill only (the x-y prior)
    dict(f=0, z=2, p=2, shared=True),        # ... with shared samples: M + L passes
    dict(m=30, l=200, f=0, z=3, p=2, shared=True, gaussian=False),
    dict(shared=True),                       # one set of prior samples for every transition
    dict(gaussian=False),                    # DADS's fixed unit variance
    dict(activation="silu", hidden=33),
    dict(scale=300.0),                       # large values: log-densities ~ -1e5
])
@pytest.mark.parametrize("include_skill", [False, True])
def test_matches_reference(backend, kw, include_skill):
    params, x, target, skill, prior = case(**kw)
    ref = sr.skill_reward(params, x, target, skill, prior, include_skill=include_skill,
                          backend="reference")
    out = run(backend, params, x, target, skill, prior, include_skill=include_skill)
    assert out.reward.device.type == backend.device.type
    compare(out, ref, TOL["fp32"])


@OP
@pytest.mark.parametrize("kw", [dict(m=9, l=31), dict(f=0, z=2, p=2, shared=True)])
def test_bf16_weights(backend, kw):
    """bf16-packed weights: the reference rounds like the kernels."""
    pb = case(bf16=True, **kw)
    compare(run(backend, *pb), sr.skill_reward(*pb, backend="reference"), TOL["bf16"])


@OP
def test_non_contiguous_inputs(backend):
    params, x, target, skill, prior = case(m=6, l=9)
    ref = sr.skill_reward(params, x, target, skill, prior, backend="reference")
    xt, tt = x.t().contiguous().t(), target.t().contiguous().t()
    pt = prior.transpose(0, 1).contiguous().transpose(0, 1)
    assert not (xt.is_contiguous() or tt.is_contiguous() or pt.is_contiguous())
    compare(run(backend, params, xt, tt, skill, pt), ref, TOL["fp32"])


def test_reference_is_the_papers_formula():
    """Against a direct per-row evaluation of log N and the sum of q's (no log-sum-exp)."""
    params, x, target, skill, prior = case(m=3, l=5, f=2, z=2, p=2)
    out = sr.skill_reward(params, x, target, skill, prior, backend="reference")
    for m in range(3):
        def log_q(zv, m=m):
            mu, lv = ensemble_mlp_reference(torch.cat([x[m], zv])[None, None], params)
            var = lv[0, 0].exp()
            d = target[m] - mu[0, 0]
            return float((-0.5 * (d * d / var + torch.log(2 * math.pi * var))).sum())
        own, alts = log_q(skill[m]), [log_q(prior[m, i]) for i in range(5)]
        paper = own - math.log(sum(math.exp(a) for a in alts)) + math.log(5)
        code = math.log(6) - math.log(1 + sum(math.exp(a - own) for a in alts))
        assert out.reward[m].item() == pytest.approx(paper, abs=1e-4)
        assert out.log_q[m].item() == pytest.approx(own, abs=1e-4)
        inc = sr.skill_reward(params, x, target, skill, prior, include_skill=True,
                              backend="reference")
        assert inc.reward[m].item() == pytest.approx(code, abs=1e-4)


def test_reward_is_high_for_the_predictive_skill():
    """q that predicts target = 10 skill: the true skill scores near log L, others lower."""
    w = 10 * torch.eye(2)[None]
    params = sr.MLPParams((w,), (torch.zeros(1, 2),), "identity")
    skill = torch.tensor([[0.5, -0.5], [-0.9, 0.1]])
    prior = torch.rand(2, 100, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = sr.skill_reward(params, torch.zeros(2, 0), 10 * skill, skill, prior)
    assert (out.reward > 2.0).all() and (out.reward <= math.log(100) + 1).all()
    wrong = sr.skill_reward(params, torch.zeros(2, 0), -10 * skill, skill, prior)
    assert (wrong.reward < out.reward - 1).all()


def test_bad_inputs_name_the_argument():
    params, x, target, skill, prior = case()
    call = lambda **kw: sr.skill_reward(**{**dict(params=params, x=x, target=target,  # noqa: E731
                                                  skill=skill, prior=prior), **kw})
    with pytest.raises(ValueError, match="L >= 2"):
        call(prior=prior[:, :1])
    with pytest.raises(ValueError, match="skill dimension Z must be >= 1"):
        call(skill=skill[:, :0])
    with pytest.raises(ValueError, match=r"target must be \[M=7, P=3\]"):
        call(target=target[:, :2])
    with pytest.raises(ValueError, match="prior must be"):
        call(prior=prior[:3])
    with pytest.raises(ValueError, match="input width"):
        call(x=x[:, :4])
    with pytest.raises(ValueError, match="x must be a float32"):
        call(x=x.double())
    with pytest.raises(ValueError, match="target contains NaN"):
        call(target=target.clone().fill_(float("nan")))
    two = random_mlp_params(E=2, sizes=(8, 16, 6))
    with pytest.raises(ValueError, match="E = 2"):
        call(params=two)
    with pytest.raises(FloatingPointError, match="transition 0"):
        call(params=nan_output(params), backend="reference")


@OP
def test_non_finite_log_density_names_the_transition(backend):
    params, x, target, skill, prior = case()
    with pytest.raises(FloatingPointError, match="transition 0"):
        run(backend, nan_output(params), x, target, skill, prior)
