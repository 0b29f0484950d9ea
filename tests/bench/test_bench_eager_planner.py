"""The benchmark's eager-PyTorch planner against the ops' references and mbrl-fast's planner."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from mbrl_fast import backends
from mbrl_fast.benchmarks import configs
from mbrl_fast.benchmarks.torch_eager import (
    EagerCEMPlanner,
    EagerEnsemble,
    PhiloxNoise,
    TorchNoise,
    _group_by_member,
)
from mbrl_fast.ops.ensemble_mlp import ensemble_mlp_reference
from mbrl_fast.ops.propagate import propagate
from mbrl_fast.ops.rewards import halfcheetah_reward

CFG = configs.get_config("tiny")


def _params(seed=0, **cfg_overrides):
    """The tiny ensemble with a non-trivial input normalizer."""
    cfg = replace(CFG, seed=seed, **cfg_overrides)
    p = configs.make_params(cfg)
    g = torch.Generator().manual_seed(seed + 100)
    d_in = cfg.sizes[0]
    return cfg, replace(p, in_mean=0.1 * torch.randn(d_in, generator=g),
                        in_std=torch.rand(d_in, generator=g) + 0.5)


def _planner(cfg, params, noise, population=None):
    a = cfg.act_dim
    return EagerCEMPlanner(params, -torch.ones(a), torch.ones(a), horizon=cfg.horizon,
                           population=population or cfg.population, num_elites=cfg.num_elites,
                           iterations=cfg.iterations, alpha=cfg.alpha, particles=cfg.particles,
                           reward=halfcheetah_reward, noise=noise)


def test_eager_ensemble_matches_reference():
    cfg, params = _params()
    x = torch.randn(cfg.ensemble_size, 13, cfg.sizes[0])
    mean, logvar = EagerEnsemble(params)(x)
    ref_mean, ref_logvar = ensemble_mlp_reference(x, params)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logvar, ref_logvar, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("members,e", [([2, 0, 2, 2, 1, 0, 2], 4), ([0, 0, 0], 1),
                                       ([1, 0, 1, 0], 2)])
def test_group_by_member_covers_every_row_once(members, e):
    member = torch.tensor(members)
    src, valid = _group_by_member(member, e)
    assert src.shape[0] == e
    assert sorted(src[valid].tolist()) == list(range(len(members)))
    for j in range(e):  # every valid slot of member j holds a row of member j
        assert (member[src[j][valid[j]]] == j).all()
    assert valid.sum(dim=1).tolist() == torch.bincount(member, minlength=e).tolist()


@pytest.mark.parametrize("n,p,k", [(1, 1, 1), (2, 5, 3), (1, 7, 4)])
def test_evaluate_matches_propagate_on_the_same_noise(n, p, k):
    """Same Philox stream: the eager rollout equals propagate's reference (TS-inf)."""
    cfg, params = _params(seed=3)
    planner = _planner(replace(cfg, particles=k), params, PhiloxNoise(seed=11, offset=6))
    g = torch.Generator().manual_seed(5)
    obs = 0.1 * torch.randn(n, cfg.obs_dim, generator=g)
    actions = torch.rand(n, p, cfg.horizon, cfg.act_dim, generator=g) * 2 - 1
    got = planner.evaluate(obs, actions)
    ref = propagate(params, obs, actions, particles=k, mode="tsinf", seed=11, offset=6,
                    reward="halfcheetah", backend="reference").returns
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-3)


def test_torch_noise_samples_a_bounded_truncated_normal():
    noise = TorchNoise(0)
    mean = torch.tensor([[[0.0, 0.9, -0.5]]])  # [1, 1, 3]
    var = torch.tensor([[[0.04, 1.0, 1.0]]])
    x = noise.sample_actions(mean, var, -torch.ones(3), torch.ones(3), 20_000)  # [1, P, 1, 3]
    s = torch.tensor([0.2, 0.05, 0.25])  # sqrt(min(var, ((mean -+ bound) / 2)^2))
    assert (x >= -1).all() and (x <= 1).all()
    assert ((x - mean).abs() <= 2 * s + 1e-6).all()
    var_trunc = 1 - 4 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2))
    torch.testing.assert_close(x.var(dim=1)[0, 0], s**2 * var_trunc, rtol=0.05, atol=0)
    member, eps = noise.rollout_noise(2, 5, 3, 4, 6, num_members=5)
    assert torch.bincount(member).tolist() == [6] * 5  # balanced, like mbrl-lib's fixed_model
    assert eps.shape == (30, 4, 6)


def test_eager_rollout_agrees_in_distribution_with_propagate():
    """Default (torch) noise and balanced members vs propagate's Philox stream: same mean."""
    cfg, params = _params(seed=4)
    k = 3000
    planner = _planner(replace(cfg, particles=1), params, TorchNoise(1))
    obs = configs.start_states(cfg)  # [1, D]
    actions = torch.rand(1, 1, cfg.horizon, cfg.act_dim, generator=torch.Generator().manual_seed(2))
    eager = planner.evaluate(obs, actions.expand(1, k, -1, -1).contiguous())[0]  # [k] one each
    ref = propagate(params, obs, actions, particles=k, mode="tsinf", seed=9, reward="halfcheetah",
                    backend="reference").rewards.sum(-1)[0, 0]  # [k]
    stderr = (eager.var() / k + ref.var() / k).sqrt()
    assert abs(float(eager.mean() - ref.mean())) < 4 * float(stderr)


def test_plan_shapes_bounds_and_warm_start():
    cfg, params = _params()
    planner = _planner(cfg, params, TorchNoise(0))
    obs = configs.start_states(cfg, 2)
    plans = planner.plan(obs)
    assert plans.shape == (2, cfg.horizon, cfg.act_dim)
    assert (plans.abs() <= 1).all()
    assert planner.plan(obs[0]).shape == (cfg.horizon, cfg.act_dim)
    with pytest.raises(ValueError, match="num_elites"):
        _planner(replace(cfg, num_elites=cfg.population + 1), params, TorchNoise(0))


def _mbrl_fast_planner(cfg, params, backend):
    from mbrl_fast.planning import CEMPlanner

    a = cfg.act_dim
    return CEMPlanner(params, -torch.ones(a), torch.ones(a), reward="halfcheetah",
                      horizon=cfg.horizon, population=cfg.population, num_elites=cfg.num_elites,
                      iterations=cfg.iterations, alpha=cfg.alpha, epsilon=0.0,
                      particles=cfg.particles, propagation="tsinf", seed=cfg.seed, backend=backend)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_eager_planner_plans_what_mbrl_fast_plans_on_the_same_noise(backend):
    """Same Philox stream, same config: the same plans, call after call (warm start too)."""
    if not backends.is_available(backend):
        pytest.skip(f"backend {backend!r} is not built here")
    cfg, params = _params(seed=2, iterations=3)
    fast = _mbrl_fast_planner(cfg, params, backend)
    eager = _planner(cfg, params, PhiloxNoise(seed=cfg.seed))
    obs = configs.start_states(cfg, 2)
    for _ in range(2):
        torch.testing.assert_close(eager.plan(obs), fast.plan(obs), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(eager.plan(obs[1]), fast.plan(obs[1]), rtol=1e-4, atol=1e-4)
