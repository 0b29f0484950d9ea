"""Planners on a model with known dynamics (next = s + a): optimum, batching, warm start,
reproducibility, termination masking, elite members, validation."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from mbrl_fast.ops import MLPParams
from mbrl_fast.ops.propagate import OFFSETS_PER_CALL
from mbrl_fast.planning import (
    CEMPlanner,
    ICEMPlanner,
    MPPIPlanner,
    Planner,
    RandomShootingPlanner,
)
from mbrl_fast.planning.icem import population_schedule

BOUNDS = ([-1.0, -1.0], [1.0, 1.0])
# Small settings that reach the optimum on this 2-D problem (planning takes ~20 ms each).
PLANNERS = {
    "cem": (CEMPlanner, dict(population=100, num_elites=10, iterations=6), 3),
    "icem": (ICEMPlanner, dict(population=100, num_elites=10, iterations=6), 3),
    "mppi": (MPPIPlanner, dict(population=100, iterations=6, temperature=0.01, noise_std=0.15), 3),
    "rs": (RandomShootingPlanner, dict(population=1000), 1),
}
# The propagate backend "auto" resolves to on CPU tensors (the C++ one, once it is built).
AUTO = ["reference"] + (["auto"] if importlib.util.find_spec("mbrl_fast.ops._cpu") else [])


def make(name, model, reward, backend="reference", seed=0, **over):
    cls, kw, horizon = PLANNERS[name]
    kw = {**kw, "horizon": horizon, "particles": 1, "seed": seed, **over}
    return cls(model, *BOUNDS, reward=reward, backend=backend, **kw)


@pytest.mark.parametrize("name", PLANNERS)
@pytest.mark.parametrize("backend", AUTO)
def test_finds_the_known_optimum(name, backend, model, reward, goal, obs3):
    planner = make(name, model, reward, backend)
    one = planner.plan(obs3[1])  # [D] -> [H, A]
    assert one.shape == (planner.horizon, 2)
    assert (one[0] - (goal - obs3[1])).abs().max() < 0.15
    planner.reset()
    many = planner.plan(obs3)  # [N, D] -> [N, H, A], one propagate call per iteration
    assert many.shape == (3, planner.horizon, 2)
    assert (many[:, 0] - (goal - obs3)).abs().max() < 0.15
    assert ((many >= -1) & (many <= 1)).all()


@pytest.mark.parametrize("name", PLANNERS)
def test_reproducible_for_a_seed(name, model, reward, obs3):
    fast = {} if name == "rs" else {"iterations": 2}
    a, b, c = (make(name, model, reward, seed=s, **fast) for s in (3, 3, 4))
    plans_a = [a.plan(obs3), a.plan(obs3)]
    plans_b = [b.plan(obs3), b.plan(obs3)]
    assert all(torch.equal(x, y) for x, y in zip(plans_a, plans_b, strict=True))
    assert not torch.equal(plans_a[0], c.plan(obs3))
    a.reset(seed=3)  # restarts the noise: the first plan again
    assert torch.equal(a.plan(obs3), plans_a[0])


def test_offsets_advance_by_propagate_and_sampler_use(model, reward, obs3):
    cem = make("cem", model, reward, epsilon=0.0)
    cem.plan(obs3)
    assert cem.offset == 6 * (OFFSETS_PER_CALL + 1)
    rs = make("rs", model, reward)
    rs.plan(obs3)
    assert rs.offset == OFFSETS_PER_CALL + 1


class _Recorder(Planner):
    """Returns its warm-start mean + 0.1: exposes the shift machinery."""

    def _optimize(self, obs, mean):
        self.seen = mean.clone()
        return mean + 0.1 * torch.arange(1, self.horizon + 1, dtype=torch.float32)[:, None]


def test_warm_start_shifts_the_previous_solution_per_environment(model, reward, obs3):
    p = _Recorder(model, [-1.0, 0.0], [1.0, 1.0], reward=reward, horizon=4)
    first = p.plan(obs3)  # starts from the midpoint of the bounds
    assert torch.equal(p.seen, torch.tensor([0.0, 0.5]).expand(3, 4, 2))
    p.plan(obs3)
    assert torch.equal(p.seen[:, :3], first[:, 1:])
    assert torch.equal(p.seen[:, 3], torch.tensor([0.0, 0.5]).expand(3, 2))
    second = p._prev.clone()
    p.plan(obs3, shift=3)
    assert torch.equal(p.seen[:, :1], second[:, 3:]) and (p.seen[:, 1:] == torch.tensor(
        [0.0, 0.5])).all()
    p.plan(obs3[:2])  # a different N: start afresh
    assert torch.equal(p.seen, torch.tensor([0.0, 0.5]).expand(2, 4, 2))
    p.reset()
    p.plan(obs3)
    assert torch.equal(p.seen, torch.tensor([0.0, 0.5]).expand(3, 4, 2))


def test_warm_start_carries_the_solution(model, reward, goal, obs3):
    def mean_error(cold: bool) -> float:
        cem = make("cem", model, reward, iterations=1)  # one iteration alone is not enough
        errors = []
        for _ in range(8):
            if cold:
                cem.reset()
            plan = cem.plan(obs3, shift=0)  # the same state again
            errors.append((plan[:, 0] - (goal - obs3)).abs().mean())
        return float(sum(errors[2:]) / 6)

    warm, cold = mean_error(False), mean_error(True)  # measured: 0.06 and 0.14
    assert warm < 0.7 * cold


def test_icem_keeps_shifted_elites(model, reward, obs3):
    icem = make("icem", model, reward, iterations=2)
    icem.plan(obs3)
    kept = icem._elites
    assert kept.shape == (3, 3, 3, 2)  # int(0.3 * 10) elites of each environment
    assert population_schedule(300, 1.25, 4, 20) == [300, 240, 192, 154]
    assert population_schedule(100, 1.25, 3, 90) == [100, 90, 90]
    icem.reset()
    assert icem._elites is None


def test_termination_zeroes_rewards_after_the_first_terminal_step(model, obs3):
    def alive_bonus(obs, act, next_obs):
        return torch.ones(next_obs.shape[:-1])

    def fell(obs, act, next_obs):  # mbrl-lib style [..., 1] flags
        return (next_obs[..., :1] > 0.25)

    actions = torch.tensor([0.1, 0.0]).expand(1, 2, 5, 2).clone()  # x: 0.1, 0.2, 0.3, ...
    actions[0, 1] = -0.1  # never terminates
    plain = CEMPlanner(model, *BOUNDS, reward=alive_bonus, horizon=5, particles=2,
                       backend="reference")
    masked = CEMPlanner(model, *BOUNDS, reward=alive_bonus, horizon=5, particles=2,
                        termination=fell, backend="reference")
    assert plain.evaluate(obs3[:1], actions).tolist() == [[5.0, 5.0]]
    # terminal at step 2 (x = 0.3): steps 0, 1, 2 count
    torch.testing.assert_close(masked.evaluate(obs3[:1], actions), torch.tensor([[3.0, 5.0]]))


class _Wrapped:
    """A user's model object: mlp_params() and elite_members."""

    def __init__(self, params, elites):
        self.params, self.elite_members = params, elites

    def mlp_params(self):
        return self.params


def test_model_object_with_elite_members(make_model, reward, goal, obs3):
    # member 1 moves the wrong way; planning only with the elite member 0 finds the goal
    wrapped = _Wrapped(make_model(members=2, flipped=(1,)), [0])
    plan = make("cem", wrapped, reward, particles=4).plan(obs3)
    assert (plan[:, 0] - (goal - obs3)).abs().max() < 0.15
    wrapped.elite_members = [1]  # read at every plan call
    plan = make("cem", wrapped, reward, particles=4).plan(obs3)
    assert (plan[:, 0] - (obs3 - goal)).abs().max() < 0.15


def test_constructor_validation(model, reward):
    with pytest.raises(ValueError, match="num_elites"):
        CEMPlanner(model, *BOUNDS, reward=reward, population=10, num_elites=11)
    with pytest.raises(ValueError, match="num_elites"):
        ICEMPlanner(model, *BOUNDS, reward=reward, num_elites=10, min_population=5)
    with pytest.raises(ValueError, match="action_low"):
        CEMPlanner(model, [1.0, 1.0], [0.0, 0.0], reward=reward)
    with pytest.raises(ValueError, match="action_low"):
        CEMPlanner(model, [0.0], [1.0, 1.0], reward=reward)
    with pytest.raises(ValueError, match="propagation"):
        CEMPlanner(model, *BOUNDS, reward=reward, propagation="fixed")
    with pytest.raises(ValueError, match="temperature"):
        MPPIPlanner(model, *BOUNDS, reward=reward, temperature=0.0)
    with pytest.raises(ValueError, match="noise_std"):
        MPPIPlanner(model, *BOUNDS, reward=reward, noise_std=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="reward"):
        RandomShootingPlanner(model, *BOUNDS, reward=None)
    with pytest.raises(ValueError, match="horizon"):
        RandomShootingPlanner(model, *BOUNDS, reward=reward, horizon=0)
    with pytest.raises(ValueError, match="seed"):
        CEMPlanner(model, *BOUNDS, reward=reward, seed=None)
    with pytest.raises(TypeError, match="model"):
        CEMPlanner(object(), *BOUNDS, reward=reward)
    with pytest.raises(ValueError, match="obs"):
        make("rs", model, reward).plan(torch.zeros(1, 1, 2))


@pytest.mark.parametrize("name", PLANNERS)
def test_bf16_precision_plans_on_the_packed_weights(name, model, reward):
    """precision='bf16' rolls out model.mlp_params_bf16(): same optimum, different weights."""
    from mbrl_fast.models import ProbabilisticEnsemble

    ens = ProbabilisticEnsemble(2, 2, ensemble_size=2, num_elites=1, hidden=8, layers=1, seed=0)
    planner = make(name, ens, reward, backend="auto", precision="bf16")
    assert planner._params().is_bf16 and planner._params() is ens.mlp_params_bf16()
    assert make(name, ens, reward, backend="auto")._params().weights[0].dtype == torch.float32
    with pytest.raises(TypeError, match="bf16"):
        make(name, model, reward, precision="bf16")  # fp32 MLPParams: nothing to read
    with pytest.raises(ValueError, match="precision"):
        make(name, ens, reward, precision="fp16")


def test_bf16_precision_reaches_the_optimum(model, reward, goal, obs3):
    from mbrl_fast.ops import pack_bf16

    fp32 = model
    bf16 = MLPParams(tuple(pack_bf16(w) for w in fp32.weights), fp32.biases, fp32.activation,
                     max_logvar=fp32.max_logvar, min_logvar=fp32.min_logvar, in_dim=4)
    plan = make("cem", bf16, reward, backend="auto", precision="bf16").plan(obs3)
    assert (plan[:, 0] - (goal - obs3)).abs().max() < 0.15
