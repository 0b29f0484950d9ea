"""The mbrl-lib baseline runs the benchmark's ensemble and reward (skipped without mbrl-lib)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mbrl_fast.benchmarks import configs, mbrl_lib_baseline
from mbrl_fast.ops.ensemble_mlp import ensemble_mlp_reference
from mbrl_fast.ops.rewards import halfcheetah_reward

pytestmark = pytest.mark.skipif(mbrl_lib_baseline.unavailable_reason() is not None,
                                reason=f"mbrl-lib: {mbrl_lib_baseline.unavailable_reason()}")
CFG = configs.get_config("tiny")


def _agent(cfg=CFG, params=None):
    params = params if params is not None else configs.make_params(cfg)
    return mbrl_lib_baseline.make_agent(cfg, params), params


def test_mbrl_lib_model_computes_the_benchmark_ensemble():
    g = torch.Generator().manual_seed(0)
    params = replace(configs.make_params(CFG), in_mean=0.1 * torch.randn(CFG.sizes[0], generator=g),
                     in_std=torch.rand(CFG.sizes[0], generator=g) + 0.5)
    one_d = mbrl_lib_baseline.make_model_env(CFG, params).dynamics_model
    x = torch.randn(CFG.ensemble_size, 9, CFG.sizes[0], generator=g)
    with torch.no_grad():
        mean, logvar = one_d.model._default_forward(one_d.input_normalizer.normalize(x))
    ref_mean, ref_logvar = ensemble_mlp_reference(x, params)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logvar, ref_logvar, rtol=1e-5, atol=1e-5)


def test_mbrl_lib_reward_reads_the_step_start_state():
    env = mbrl_lib_baseline.make_model_env(CFG, configs.make_params(CFG))
    obs = configs.start_states(CFG, 10).numpy()
    state = env.reset(obs, return_as_np=False)
    act = torch.rand(10, CFG.act_dim) * 2 - 1
    next_obs, reward, _, _ = env.step(act, state, sample=False)
    expected = halfcheetah_reward(torch.from_numpy(obs), act, torch.as_tensor(next_obs))
    np.testing.assert_allclose(reward[:, 0], expected.numpy(), rtol=1e-5, atol=1e-5)


def test_mbrl_lib_agent_plans_in_bounds_with_the_config():
    agent, _ = _agent()
    cem = agent.optimizer.optimizer
    assert (cem.population_size, cem.elite_num, cem.num_iterations) == (
        CFG.population, CFG.num_elites, CFG.iterations)
    action = agent.act(configs.start_states(CFG)[0].numpy())
    assert action.shape == (CFG.act_dim,) and np.all(np.abs(action) <= 1)


def test_mbrl_lib_needs_particles_divisible_by_members():
    with pytest.raises(ValueError, match="multiple of the ensemble size"):
        _agent(replace(CFG, population=7, particles=3))
