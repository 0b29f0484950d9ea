"""SkillDynamics (DADS's q): layouts, maximum-likelihood training, the rollout view that
ops.propagate reads, the intrinsic reward through the op, persistence and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import cpu_backends

from mbrl_fast.envs import get_task
from mbrl_fast.envs.point_mass import point_mass_step
from mbrl_fast.models.skill_dynamics import (
    SkillDynamics,
    SkillDynamicsConfig,
    SkillDynamicsTrainer,
    gaussian_log_prob,
    make_skill_dynamics,
)
from mbrl_fast.ops import propagate
from mbrl_fast.ops.skill_reward import reward_from_log_q

LAYOUTS = {"full": dict(omit=(0, 1)), "xy_prior": dict(predict=(0, 1), omit=(0, 1))}


@pytest.fixture(scope="module")
def data():
    """Point-mass transitions of the ideal skill policy a = z (one skill per episode)."""
    rng = np.random.default_rng(0)
    obs, nxt, skills = [], [], []
    for _ in range(30):
        s = np.concatenate([rng.uniform(-1, 1, 2), rng.normal(0, 0.3, 2)])
        z = rng.uniform(-1, 1, 2)
        for _ in range(40):
            s2 = point_mass_step(s, z)
            obs.append(s), nxt.append(s2), skills.append(z)
            s = s2
    return np.array(obs), np.array(skills), np.array(nxt)


def trained(layout, data, steps=300, **kw):
    torch.manual_seed(0)
    q = SkillDynamics(4, 2, hidden=64, seed=0, **LAYOUTS[layout], **kw)
    q.update_normalizers(*data)
    SkillDynamicsTrainer(q, lr=2e-3, seed=0).fit(*data, steps=steps, batch_size=128)
    return q


def test_layouts():
    full = SkillDynamics(4, 2, omit=(0, 1), hidden=8)
    assert (full.p, full.f, full.rollout_dim, full.reads_state) == (4, 2, 4, True)
    prior = SkillDynamics(4, 2, predict=(0, 1), omit=(0, 1), hidden=8)
    assert (prior.p, prior.f, prior.rollout_dim, prior.reads_state) == (2, 0, 3, False)
    obs = torch.randn(5, 4, dtype=torch.float64)
    assert prior.features(obs).shape == (5, 0) and full.features(obs).shape == (5, 2)
    torch.testing.assert_close(full.features(obs), obs[:, 2:].float())
    assert prior.rollout_state(obs)[:, 2].eq(1).all()  # the constant coordinate
    angles = SkillDynamics(3, 1, omit=(0,), angles=(1,), hidden=8)
    assert angles.f == 3  # [s2, sin s1, cos s1]
    ant = make_skill_dynamics(SkillDynamicsConfig(xy_prior=True, hidden=8), get_task("Ant-v5"),
                              2, 0)
    assert ant.predicted == (0, 1) and ant.f == 0


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_learns_the_point_mass_skills(layout, data):
    q = trained(layout, data)
    obs, skill, nxt = data
    err = torch.linalg.vector_norm(q.predict(obs, skill) - q.state(nxt).float(), dim=-1).mean()
    scale = torch.linalg.vector_norm(q.deltas(obs, nxt), dim=-1).mean()
    # without the velocity (x-y prior) the first steps of a skill are not predictable
    assert err / scale < (0.1 if layout == "full" else 0.5)
    lp = q.log_prob(obs, skill, nxt)
    assert lp.shape == (len(obs),) and lp.mean() > -2 * math.log(2 * math.pi) * q.p


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("backend", ["reference", *cpu_backends()])
def test_rollout_view_is_q_iterated(layout, backend, data):
    """propagate on mlp_params() (skill = action, expectation) = predict() applied H times."""
    q = trained(layout, data, steps=40)
    obs, skill, _ = data
    n, h = 6, 10
    start = torch.as_tensor(obs[:n])
    z = torch.as_tensor(skill[:n], dtype=torch.float32)
    out = propagate(q.mlp_params(), q.rollout_state(start), z[:, None, None].expand(
        -1, 1, h, -1).contiguous(), particles=1, mode="expectation", backend=backend).states
    s = q.state(start).float()
    full = start.clone()
    for _ in range(h):
        full[:, list(q.predicted)] = s.double()
        s = q.predict(full, z)
    torch.testing.assert_close(out[:, 0, 0, -1, :q.p], s, rtol=1e-4, atol=1e-4)
    if not q.reads_state:
        assert out[..., -1].eq(1).all()


def test_rollout_view_follows_training(data):
    q = trained("full", data, steps=5)
    first = q.mlp_params()
    assert q.mlp_params() is first  # cached while nothing changed
    SkillDynamicsTrainer(q, seed=1).fit(*data, steps=1, batch_size=16)
    second = q.mlp_params()
    assert second is not first
    assert not torch.equal(first.weights[-1], second.weights[-1])
    assert second.weights[0].data_ptr() == q.mlp.layers[0].weight.data_ptr()  # a view


@pytest.mark.parametrize("fix_variance", [True, False])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_intrinsic_reward_is_the_op_on_q(layout, fix_variance, data):
    q = trained(layout, data, steps=30, fix_variance=fix_variance)
    obs, skill, nxt = (a[:17] for a in data)
    prior = torch.rand(17, 9, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    got = q.intrinsic_reward(obs, skill, nxt, prior)
    with torch.no_grad():  # the same in torch, through q's own log_prob
        cols = [q.log_prob(obs, skill, nxt)] + [q.log_prob(obs, prior[:, i].numpy(), nxt)
                                                for i in range(9)]
    log_q = torch.stack(cols, dim=1)
    torch.testing.assert_close(got.log_q, log_q[:, 0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.reward, reward_from_log_q(log_q, False), rtol=1e-4,
                               atol=1e-4)


def test_state_dict_round_trip(data):
    q = trained("full", data, steps=20)
    fresh = SkillDynamics(4, 2, hidden=64, seed=5, **LAYOUTS["full"])
    fresh.load_state_dict(q.state_dict())
    obs, skill, _ = data
    torch.testing.assert_close(fresh.predict(obs, skill), q.predict(obs, skill))
    torch.testing.assert_close(fresh.mlp_params().biases[-1], q.mlp_params().biases[-1])


def test_gaussian_log_prob():
    t, mu = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 2.0]])
    assert gaussian_log_prob(t, mu, None).item() == pytest.approx(-0.5 - math.log(2 * math.pi))
    lv = torch.tensor([[math.log(4.0), 0.0]])
    want = -0.5 * (1 / 4 + math.log(4)) - math.log(2 * math.pi)
    assert gaussian_log_prob(t, mu, lv).item() == pytest.approx(want)


def test_bad_input():
    with pytest.raises(ValueError, match="skill_dim must be an int >= 1"):
        SkillDynamics(4, 0)
    with pytest.raises(ValueError, match="predict must name"):
        SkillDynamics(4, 2, predict=())
    with pytest.raises(ValueError, match=r"omit must be distinct observation indices in \[0, 4\)"):
        SkillDynamics(4, 2, omit=(4,))
    q = SkillDynamics(4, 2, hidden=8)
    with pytest.raises(ValueError, match=r"skill must be \[B, 2\]"):
        q.inputs(np.zeros((3, 4)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="declares no x-y"):
        make_skill_dynamics(SkillDynamicsConfig(xy_prior=True), get_task("Reacher-v5"), 2, 0)
