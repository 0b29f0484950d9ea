"""propagate with a policy in the loop (MBPO's branched rollouts): every compiled backend
and kernel path (tests/ops/conftest.py) against the reference, sample for sample.

The policy's actions are drawn from eps_pi = normal(seed, offset + 2), so the taken actions
are compared as well as the states, rewards and returns. Sections: modes, activations,
rewards, bf16 weights, odd sizes and rows spanning the tiles; the noise stream; non-finite
policies and members; fuzzing; the op's bad-input errors for a policy. The cases without a
policy are test_propagate.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers import assert_close, random_mlp_params
from hypothesis import given, settings
from hypothesis import strategies as st
from propagate_cases import (
    FIELDS,
    REWARDS,
    compare_policy,
    kw_for,
    make_policy_case,
    raises_like_reference,
    reward_params,
    run,
)

from mbrl_fast import backends
from mbrl_fast.ops import noise
from mbrl_fast.ops.ensemble_mlp import MLPParams, soft_bound_logvar
from mbrl_fast.ops.features import ObsFeatures
from mbrl_fast.ops.propagate import MODES, propagate
from mbrl_fast.ops.rewards import Reward, halfcheetah_reward

pytestmark = [pytest.mark.op("propagate"), pytest.mark.op("propagate.policy")]


# ---- a policy in the loop (MBPO branched rollouts) ---------------------------------------
# eps_pi is normal(seed, offset + 2): the taken actions are compared sample for sample too.


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy_act", ["relu", "silu"])
@pytest.mark.parametrize("reward", REWARDS)
def test_policy_modes_activations_rewards(backend, mode, policy_act, reward):
    # The model keeps SiLU: the policy's activation is its own (MBPO: ReLU policy).
    D, A = (18, 6) if reward == "halfcheetah" else (5, 3)
    model, policy, obs = make_policy_case(D=D, A=A, policy_act=policy_act,
                                          reward_head=reward == "model")
    H = 2 if backend.interpreted else 6
    got = compare_policy(backend, model, policy, obs, particles=3, horizon=H, seed=3, offset=12,
                         reward=reward, **kw_for(mode))
    assert got.actions.shape == (3, 1, 3, H, A)


@pytest.mark.op("reward.model")
@pytest.mark.parametrize("mode", ["ts1", "tsinf"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_policy_bf16_weights(backend, mode, dtype):
    model, policy, obs = make_policy_case(bf16=dtype == "bf16", policy_hidden=(33, 33))
    compare_policy(backend, model, policy, obs, dtype, particles=2, horizon=5, seed=1,
                   reward="model", **kw_for(mode))


@pytest.mark.op("reward.model")
@pytest.mark.parametrize("case", [
    # (D, A, model hidden, policy hidden, N, K, H)
    (1, 1, (7,), (7,), 1, 1, 1),           # one row, one step, width-1 state and action
    (11, 3, (200, 200), (33, 33), 2, 3, 4),  # Hopper-like sizes, odd widths
    (3, 2, (33,), (200,), 1, 5, 7),
    (17, 5, (7, 33, 7), (16, 16, 16), 3, 1, 3),
])
@pytest.mark.parametrize("mode", ["ts1", "expectation"])
def test_policy_odd_sizes(backend, case, mode):
    D, A, hidden, policy_hidden, N, K, H = case
    model, policy, obs = make_policy_case(D=D, A=A, E=3, hidden=hidden,
                                          policy_hidden=policy_hidden, N=N)
    compare_policy(backend, model, policy, obs, particles=K, horizon=H, seed=2**63 + 5,
                   offset=2**40, reward="model", **kw_for(mode))


@pytest.mark.op("reward.model")
def test_policy_many_rows_span_tiles_members_subset(backend):
    # 37 * 9 = 333 rows: several 96-row cpu tiles per member, tails of every size;
    # 8 * 9 = 72 under the interpreter: three 32-row Triton tiles.
    N = 8 if backend.interpreted else 37
    model, policy, obs = make_policy_case(E=5, N=N, policy_hidden=(40, 40))
    for mode in ("ts1", "tsinf"):
        compare_policy(backend, model, policy, obs, particles=9, horizon=3, mode=mode,
                       members=[0, 2, 4, 2], seed=9, reward="model")


@pytest.mark.parametrize("reward", reward_params(None, "model"))
def test_policy_features_model_reads_features_policy_reads_state(backend, reward):
    features = ObsFeatures(5, drop=(3,), angles=(0, 4))  # F = 6, F + A = 9
    model, policy, obs = make_policy_case(features=features, reward_head=reward == "model")
    obs = obs * 3  # angles of a few turns
    for mode in ("ts1", "tsinf", "fixed"):
        compare_policy(backend, model, policy, obs, particles=2, horizon=4, seed=4,
                       reward=reward, **kw_for(mode))


@pytest.mark.op("reward.halfcheetah")
@pytest.mark.parametrize("return_states", [True, False])
def test_policy_return_states_and_torch_reward(backend, return_states):
    model, policy, obs = make_policy_case(D=18, A=6, reward_head=False)
    plain = Reward("plain", halfcheetah_reward)  # not fused: scored in torch after the rollout
    kw = dict(particles=3, horizon=4, mode="ts1", seed=5, return_states=return_states)
    for reward in ("halfcheetah", plain):
        got = compare_policy(backend, model, policy, obs, reward=reward, **kw)
        assert (got.states is None) == (not return_states)
        assert got.actions.shape == (3, 1, 3, 4, 6)  # taken actions are always returned
    none = run(backend, model, obs, None, policy, particles=3, horizon=4, return_states=False)
    assert none.states is None and none.returns is None and none.actions is not None


def test_policy_noise_is_the_reference_stream(backend):
    """A zero policy with a fixed log-variance: a_t = tanh(std * eps_pi) exposes eps_pi."""
    D, A = 4, 5
    sizes = (D, 3, 2 * A)
    policy = MLPParams(tuple(torch.zeros(1, i, o) for i, o in zip(sizes[:-1], sizes[1:],
                                                                   strict=True)),
                       tuple(torch.zeros(1, o) for o in sizes[1:]), "relu", None, None,
                       torch.zeros(A), torch.full((A,), -1.0))
    model, _, obs = make_policy_case(D=D, A=A, E=2, reward_head=False)
    kw = dict(particles=7, horizon=5, mode="ts1", seed=2**50 + 3, offset=5)
    got = run(backend, model, obs, None, policy, **kw)
    std = torch.exp(0.5 * soft_bound_logvar(torch.zeros(A), policy.max_logvar, policy.min_logvar))
    eps = noise.normal((3, 1, 7, 5, A), kw["seed"], kw["offset"] + 2, backend="reference")
    # the fp32 kernel tolerance (the CUDA kernel's fast-math tanh / exp measured 7e-6 on an
    # H200); another noise stream would move the actions by O(0.1)
    assert_close(got.actions, torch.tanh(std * eps), "fp32", "actions")


def _nan_layer(params: MLPParams, layer: int) -> MLPParams:
    biases = list(params.biases)
    biases[layer] = biases[layer].clone()
    biases[layer][0, 0] = float("nan")
    return replace(params, biases=tuple(biases))


@pytest.mark.parametrize("mode", MODES)
def test_nan_policy_raises_like_reference(backend, mode):
    model, policy, obs = make_policy_case()  # a ReLU policy
    raises_like_reference(backend, model, obs, None, _nan_layer(policy, 0), match="step 0",
                          particles=3, horizon=4, seed=8, **kw_for(mode))


@pytest.mark.op("reward.model")
def test_policy_non_finite_at_a_later_step(backend):
    """ts1 with a NaN member: the first (step, row) that draws it is reported, as the
    reference reports it (a seed where that is not step 0)."""
    model, policy, obs = make_policy_case(E=4, N=2)
    model = _nan_layer(model, 1)  # member 0 is NaN
    kw = dict(particles=2, horizon=6, mode="ts1", reward="model")
    for seed in range(50):
        with pytest.raises(FloatingPointError) as ref:
            propagate(model, obs, None, policy=policy, backend="reference", seed=seed, **kw)
        if "step 0" not in str(ref.value):
            break
    message = raises_like_reference(backend, model, obs, None, policy, seed=seed, **kw)
    assert "step 0" not in message and "member 0" in message


@pytest.mark.skipif(not backends.is_available("cpu"), reason="mbrl_fast._C not built")
def test_auto_runs_the_compiled_kernel():
    """MBPO's rollouts (models/rollouts.branched_rollout, backend "auto") reach the kernel."""
    model, policy, obs = make_policy_case()
    kw = dict(particles=1, horizon=3, mode="ts1", seed=2, reward="model", policy=policy)
    auto = propagate(model, obs, None, backend="auto", **kw)
    cpu = propagate(model, obs, None, backend="cpu", **kw)
    for field in FIELDS:
        assert torch.equal(getattr(auto, field), getattr(cpu, field)), field


# ---- fuzzing against the reference -------------------------------------------------------
# Hypothesis runs inside the test (the backend fixture is per test, not per example); fewer
# examples under Triton's interpreter.


@pytest.mark.op("reward.model")
def test_policy_fuzz_against_reference(backend):
    @settings(max_examples=5 if backend.interpreted else 25, deadline=None)
    @given(E=st.integers(1, 4), D=st.integers(1, 6), A=st.integers(1, 4),
           width=st.integers(1, 40), pwidth=st.integers(1, 40), layers=st.integers(1, 3),
           N=st.integers(1, 3), K=st.integers(1, 4), H=st.integers(1, 4),
           mode=st.sampled_from(MODES),
           acts=st.sampled_from([("silu", "relu"), ("relu", "silu"), ("tanh", "elu")]),
           head=st.booleans(), bf16=st.booleans(), seed=st.integers(0, 2**64 - 4))
    def check(E, D, A, width, pwidth, layers, N, K, H, mode, acts, head, bf16, seed):
        model, policy, obs = make_policy_case(D=D, A=A, E=E, hidden=(width,) * layers,
                                              policy_hidden=(pwidth,) * layers,
                                              model_act=acts[0], policy_act=acts[1],
                                              reward_head=head, bf16=bf16, N=N,
                                              seed=seed % 1000)
        compare_policy(backend, model, policy, obs, "bf16" if bf16 else "fp32", particles=K,
                       horizon=H, mode=mode, member=seed % E if mode == "fixed" else None,
                       seed=seed, offset=seed // 7, reward="model" if head else None)

    check()


# ---- the op's own bad-input errors --------------------------------------------------------


def test_bad_policy_inputs():
    model, policy, obs = make_policy_case()
    acts = torch.zeros(3, 1, 4, 3)
    with pytest.raises(ValueError, match="actions"):
        propagate(model, obs, acts, policy=policy, horizon=4)
    with pytest.raises(ValueError, match="horizon"):
        propagate(model, obs, None, policy=policy)
    wide = random_mlp_params(E=1, sizes=(6, 7, 6))
    with pytest.raises(ValueError, match="policy"):
        propagate(model, obs, None, policy=wide, horizon=4)
    two = random_mlp_params(E=2, sizes=(5, 7, 6))
    with pytest.raises(ValueError, match="policy"):
        propagate(model, obs, None, policy=two, horizon=4)
