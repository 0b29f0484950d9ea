"""ObsFeatures: the reference map, its kernel table, validation, and the models that use it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mbrl_fast.models import DeterministicEnsemble, ProbabilisticEnsemble
from mbrl_fast.ops.features import KIND_COS, KIND_SIN, ObsFeatures, obs_features_reference


def test_reference_by_hand():
    f = ObsFeatures(5, drop=(0,), angles=(3, 1))
    obs = torch.tensor([[10.0, 0.5, 2.0, math.pi, -4.0]])
    want = [[2.0, -4.0, math.sin(math.pi), math.sin(0.5), math.cos(math.pi), math.cos(0.5)]]
    torch.testing.assert_close(obs_features_reference(obs, f), torch.tensor(want))
    assert f.keep == (2, 4) and f.width == 6


def test_table_reproduces_reference():
    f = ObsFeatures(7, drop=(6, 2), angles=(0, 5))
    obs = torch.randn(3, 4, 7) * 5
    src, kind = f.table()
    cols = obs[..., src]
    by_table = torch.where(kind == KIND_SIN, torch.sin(cols),
                           torch.where(kind == KIND_COS, torch.cos(cols), cols))
    torch.testing.assert_close(by_table, obs_features_reference(obs, f))


def test_identity_and_none_pass_through():
    obs = torch.randn(2, 3)
    assert obs_features_reference(obs, None) is obs
    assert obs_features_reference(obs, ObsFeatures(3)) is obs


@pytest.mark.parametrize("kwargs, match", [
    (dict(obs_dim=0), "obs_dim"),
    (dict(obs_dim=3, drop=(3,)), "drop"),
    (dict(obs_dim=3, angles=(1, 1)), "angles"),
    (dict(obs_dim=3, drop=(1,), angles=(1,)), "both dropped and an angle"),
    (dict(obs_dim=2, drop=(0, 1)), "drops every"),
])
def test_bad_maps(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ObsFeatures(**kwargs)


def test_wrong_obs_width():
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        obs_features_reference(torch.zeros(2, 3), ObsFeatures(4, angles=(0,)))


@pytest.mark.parametrize("cls", [ProbabilisticEnsemble, DeterministicEnsemble])
def test_model_reads_features(cls):
    f = ObsFeatures(4, drop=(0,), angles=(1,))
    model = cls(4, 2, ensemble_size=2, num_elites=1, hidden=8, layers=2, obs_features=f, seed=0)
    obs, act = np.random.default_rng(0).normal(size=(5, 4)), np.ones((5, 2))
    x = model.make_inputs(obs, act)
    assert x.shape == (5, f.width + 2) and model.normalizer.size == f.width + 2
    want = obs_features_reference(torch.as_tensor(obs), f)
    torch.testing.assert_close(x[:, :4], want.float())
    params = model.mlp_params()
    assert params.obs_features == f and params.in_features == f.width + 2
    assert model.mlp_params_bf16().obs_features == f
    # a 2 pi turn of the angle is the same input; the dropped x is no input at all
    turned = obs.copy()
    turned[:, 1] += 2 * np.pi
    turned[:, 0] += 100.0
    torch.testing.assert_close(model.make_inputs(turned, act), x, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="obs_features.obs_dim"):
        cls(3, 2, obs_features=f)
