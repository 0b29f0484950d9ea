"""MLPParams from torch modules (one copy / views) and the "any model" step callable."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mbrl_fast import CEMPlanner, ensemble_mlp
from mbrl_fast.integrations import (
    SequentialEnsemble,
    mlp_params_from_sequentials,
    mlp_params_from_stacked,
)
from mbrl_fast.nn import EnsembleLinear
from mbrl_fast.ops.ensemble_mlp import ensemble_mlp_reference, soft_bound_logvar
from mbrl_fast.planning.step_model import StepModel

D, A, H = 3, 2, 16


def member(seed: int, act=nn.SiLU, sizes=(D + A, H, H, 2 * D)) -> nn.Sequential:
    torch.manual_seed(seed)
    mods = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        mods.append(nn.Linear(d_in, d_out))
        if i < len(sizes) - 2:
            mods.append(act())
    return nn.Sequential(*mods)


@pytest.mark.parametrize("act,name", [(nn.SiLU, "silu"), (nn.ReLU, "relu"), (nn.Tanh, "tanh"),
                                      (lambda: nn.LeakyReLU(0.2), "leaky_relu")])
def test_sequentials_match_the_modules(act, name):
    members = [member(e, act) for e in range(3)]
    params = mlp_params_from_sequentials(members, gaussian=True, max_logvar=0.5, min_logvar=-10.0)
    assert params.activation == name and params.sizes == (D + A, H, H, 2 * D)
    x = torch.randn(3, 11, D + A)
    mean, logvar = ensemble_mlp(x, params)
    for e, m in enumerate(members):
        y = m(x[e]).detach()
        torch.testing.assert_close(mean[e], y[:, :D], rtol=1e-4, atol=1e-5)
        lv = soft_bound_logvar(y[:, D:], torch.full((D,), 0.5), torch.full((D,), -10.0))
        torch.testing.assert_close(logvar[e], lv, rtol=1e-4, atol=1e-5)


def test_sequentials_copy_once_and_the_ensemble_follows_training():
    members = [member(e) for e in range(2)]
    params = mlp_params_from_sequentials(members)
    assert params.weights[0].data_ptr() != members[0][0].weight.data_ptr()
    model = SequentialEnsemble(members)
    before = model.mlp_params()
    with torch.no_grad():
        members[1][2].weight.add_(1.0)  # a training step on member 1, layer 1
    after = model.mlp_params()
    assert after is before  # same buffers, refreshed in place
    torch.testing.assert_close(after.weights[1][1], members[1][2].weight.detach().t())


def test_mismatched_member_shapes_name_the_layer_and_both_shapes():
    members = [member(0), member(1, sizes=(D + A, H, 2 * H, 2 * D))]
    with pytest.raises(ValueError, match=r"layer 1 \(Linear\) of member 1 has weight "
                                         r"\[out=32, in=16\], member 0's layer 1 has "
                                         r"\[out=16, in=16\]"):
        mlp_params_from_sequentials(members)


def test_unsupported_layer_names_itself_and_lists_the_supported():
    bad = nn.Sequential(nn.Linear(D + A, H), nn.BatchNorm1d(H), nn.Linear(H, D))
    with pytest.raises(TypeError, match=r"module 1 \(BatchNorm1d.*not supported; supported: "
                                        r"nn.Linear.*nn.SiLU"):
        mlp_params_from_sequentials([bad])
    with pytest.raises(TypeError, match="after the last linear layer"):
        mlp_params_from_sequentials([nn.Sequential(nn.Linear(2, 2), nn.Tanh())])


def test_stacked_layers_are_views():
    layers = nn.Sequential(EnsembleLinear(4, D + A, H), nn.ReLU(), EnsembleLinear(4, H, 2 * D))
    params = mlp_params_from_stacked(layers, gaussian=True, max_logvar=0.5, min_logvar=-10.0,
                                     in_mean=torch.zeros(D + A), in_std=torch.ones(D + A))
    for lin, w, b in zip(layers[::2], params.weights, params.biases, strict=True):
        assert w.data_ptr() == lin.weight.data_ptr() and b.data_ptr() == lin.bias.data_ptr()
    with torch.no_grad():
        layers[0].weight.mul_(2.0)  # the planner sees training
    torch.testing.assert_close(params.weights[0], layers[0].weight.detach())
    with pytest.raises(ValueError, match=r"layer 1 \(EnsembleLinear\) has weight \[E, in=8"):
        mlp_params_from_stacked([EnsembleLinear(4, D + A, H), nn.ReLU(),
                                 EnsembleLinear(4, 8, D)])


# ---- any model: a torch callable ----------------------------------------------------------

def _one_member_params():
    return mlp_params_from_sequentials([member(3)], gaussian=True, max_logvar=0.5,
                                       min_logvar=-10.0)


def _step_of(params):
    """The same one-member Gaussian MLP as a plain callable: (mean, logvar) of the next state."""
    def step(state, action):
        mean, logvar = ensemble_mlp_reference(torch.cat([state, action], -1)[None], params)
        return state + mean[0], logvar[0]
    return step


def _reward(obs, act, next_obs):
    return -(next_obs ** 2).sum(-1) - 0.1 * (act ** 2).sum(-1)


@pytest.mark.parametrize("propagation", ["tsinf", "expectation"])
def test_step_callable_plans_what_the_compiled_path_plans(propagation):
    params = _one_member_params()
    obs = torch.randn(4, D)
    kw = dict(reward=_reward, horizon=5, population=32, num_elites=4, iterations=2,
              particles=3, propagation=propagation, seed=7)
    compiled = CEMPlanner(params, -torch.ones(A), torch.ones(A), **kw)
    anymodel = CEMPlanner(_step_of(params), -torch.ones(A), torch.ones(A), **kw)
    assert isinstance(anymodel.model, StepModel)
    seqs = torch.rand(4, 6, 5, A) * 2 - 1
    torch.testing.assert_close(anymodel.evaluate(obs, seqs), compiled.evaluate(obs, seqs),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(anymodel.plan(obs), compiled.plan(obs), rtol=1e-3, atol=1e-3)


def test_step_callable_errors():
    planner = CEMPlanner(lambda s, a: s[:, :1], -torch.ones(A), torch.ones(A), reward=_reward,
                         horizon=3, population=8, num_elites=2, iterations=1, particles=1)
    with pytest.raises(ValueError, match=r"next_state must be a tensor \[R=8, D=3\]"):
        planner.plan(torch.zeros(D))
    with pytest.raises(ValueError, match="reward='model'"):
        CEMPlanner(lambda s, a: s, -torch.ones(A), torch.ones(A), reward="model", horizon=3,
                   population=8, num_elites=2, iterations=1).plan(torch.zeros(D))
