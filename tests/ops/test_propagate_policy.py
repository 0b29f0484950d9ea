"""propagate with a policy in the loop (MBPO branched rollouts): the compiled CPU kernel on
every ISA path against the reference.

Same Philox streams as the reference (eps_pi: normal(seed, offset + 2)), so states,
rewards, returns and the taken actions are compared sample for sample; tolerances are
relative to the largest entry, as in test_propagate.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers import assert_close, random_mlp_params
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrl_fast import backends
from mbrl_fast.ops import noise
from mbrl_fast.ops.ensemble_mlp import MLPParams, soft_bound_logvar
from mbrl_fast.ops.features import ObsFeatures
from mbrl_fast.ops.propagate import MODES, propagate
from mbrl_fast.ops.rewards import Reward, halfcheetah_reward

pytestmark = pytest.mark.skipif(not backends.is_available("cpu"), reason="mbrl_fast._C not built")

FIELDS = ("states", "rewards", "returns", "actions")


def make_case(D=5, A=3, E=4, hidden=(33, 33), policy_hidden=(7,), model_act="silu",
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


def compare(model, policy, obs, dtype="fp32", **kw):
    ref = propagate(model, obs, None, policy=policy, backend="reference", **kw)
    got = propagate(model, obs, None, policy=policy, backend="cpu", **kw)
    for field in FIELDS:
        assert_close(getattr(got, field), getattr(ref, field), dtype, field)
    assert bool((got.actions.abs() <= 1).all())
    return got


def kw_for(mode, **kw):
    return dict(mode=mode, member=1 if mode == "fixed" else None, **kw)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy_act", ["relu", "silu"])
@pytest.mark.parametrize("reward", [None, "model", "halfcheetah"])
def test_modes_activations_rewards(kernels, mode, policy_act, reward):
    # The model keeps SiLU: the policy's activation is its own (MBPO: ReLU policy).
    D, A = (18, 6) if reward == "halfcheetah" else (5, 3)
    model, policy, obs = make_case(D=D, A=A, policy_act=policy_act, reward_head=reward == "model")
    got = compare(model, policy, obs, particles=3, horizon=6, seed=3, offset=12, reward=reward,
                  **kw_for(mode))
    assert got.actions.shape == (3, 1, 3, 6, A)


@pytest.mark.parametrize("mode", ["ts1", "tsinf"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_bf16_weights(kernels, mode, dtype):
    model, policy, obs = make_case(bf16=dtype == "bf16", policy_hidden=(33, 33))
    compare(model, policy, obs, dtype, particles=2, horizon=5, seed=1, reward="model",
            **kw_for(mode))


@pytest.mark.parametrize("case", [
    # (D, A, model hidden, policy hidden, N, K, H)
    (1, 1, (7,), (7,), 1, 1, 1),           # one row, one step, width-1 state and action
    (11, 3, (200, 200), (33, 33), 2, 3, 4),  # Hopper-like sizes, odd widths
    (3, 2, (33,), (200,), 1, 5, 7),
    (17, 5, (7, 33, 7), (16, 16, 16), 3, 1, 3),
])
@pytest.mark.parametrize("mode", ["ts1", "expectation"])
def test_odd_sizes(kernels, case, mode):
    D, A, hidden, policy_hidden, N, K, H = case
    model, policy, obs = make_case(D=D, A=A, E=3, hidden=hidden, policy_hidden=policy_hidden, N=N)
    compare(model, policy, obs, particles=K, horizon=H, seed=2**63 + 5, offset=2**40,
            reward="model", **kw_for(mode))


def test_many_rows_span_tiles_members_subset(kernels):
    # 37 * 9 = 333 rows: several 96-row tiles per member, tails of every size.
    model, policy, obs = make_case(E=5, N=37, policy_hidden=(40, 40))
    for mode in ("ts1", "tsinf"):
        compare(model, policy, obs, particles=9, horizon=3, mode=mode, members=[0, 2, 4, 2],
                seed=9, reward="model")


def test_features_model_reads_features_policy_reads_state(kernels):
    features = ObsFeatures(5, drop=(3,), angles=(0, 4))  # F = 6, F + A = 9
    model, policy, obs = make_case(features=features, reward_head=False)
    obs = obs * 3  # angles of a few turns
    for mode in ("ts1", "fixed"):
        compare(model, policy, obs, particles=2, horizon=4, seed=4, **kw_for(mode))


@pytest.mark.parametrize("return_states", [True, False])
def test_return_states_and_torch_reward(kernels, return_states):
    model, policy, obs = make_case(D=18, A=6, reward_head=False)
    plain = Reward("plain", halfcheetah_reward)  # not fused: scored in torch after the rollout
    kw = dict(particles=3, horizon=4, mode="ts1", seed=5, return_states=return_states)
    for reward in ("halfcheetah", plain):
        got = compare(model, policy, obs, reward=reward, **kw)
        assert (got.states is None) == (not return_states)
        assert got.actions.shape == (3, 1, 3, 4, 6)  # taken actions are always returned
    none = propagate(model, obs, None, policy=policy, backend="cpu", particles=3, horizon=4,
                     return_states=False)
    assert none.states is None and none.returns is None and none.actions is not None


def test_policy_noise_is_the_reference_stream(kernels):
    """A zero policy with a fixed log-variance: a_t = tanh(std * eps_pi) exposes eps_pi."""
    D, A = 4, 5
    sizes = (D, 3, 2 * A)
    policy = MLPParams(tuple(torch.zeros(1, i, o) for i, o in zip(sizes[:-1], sizes[1:],
                                                                   strict=True)),
                       tuple(torch.zeros(1, o) for o in sizes[1:]), "relu", None, None,
                       torch.zeros(A), torch.full((A,), -1.0))
    model, _, obs = make_case(D=D, A=A, E=2, reward_head=False)
    kw = dict(particles=7, horizon=5, mode="ts1", seed=2**50 + 3, offset=5)
    got = propagate(model, obs, None, policy=policy, backend="cpu", **kw)
    std = torch.exp(0.5 * soft_bound_logvar(torch.zeros(A), policy.max_logvar, policy.min_logvar))
    eps = noise.normal((3, 1, 7, 5, A), kw["seed"], kw["offset"] + 2, backend="reference")
    torch.testing.assert_close(got.actions, torch.tanh(std * eps), rtol=1e-6, atol=1e-6)


def _nan_layer(params: MLPParams, layer: int) -> MLPParams:
    biases = list(params.biases)
    biases[layer] = biases[layer].clone()
    biases[layer][0, 0] = float("nan")
    return replace(params, biases=tuple(biases))


@pytest.mark.parametrize("mode", MODES)
def test_nan_policy_raises_like_reference(kernels, mode):
    model, policy, obs = make_case()
    kw = dict(particles=3, horizon=4, seed=8, **kw_for(mode))
    policy = _nan_layer(policy, 0)
    with pytest.raises(FloatingPointError) as ref:
        propagate(model, obs, None, policy=policy, backend="reference", **kw)
    with pytest.raises(FloatingPointError, match="step 0") as got:
        propagate(model, obs, None, policy=policy, backend="cpu", **kw)
    assert str(got.value) == str(ref.value)


def test_non_finite_at_a_later_step(kernels):
    """ts1 with a NaN member: the first (step, row) that draws it is reported, as the
    reference reports it (a seed where that is not step 0)."""
    model, policy, obs = make_case(E=4, N=2)
    model = _nan_layer(model, 1)  # member 0 is NaN
    kw = dict(particles=2, horizon=6, mode="ts1", reward="model")
    for seed in range(50):
        with pytest.raises(FloatingPointError) as ref:
            propagate(model, obs, None, policy=policy, backend="reference", seed=seed, **kw)
        if "step 0" not in str(ref.value):
            break
    with pytest.raises(FloatingPointError) as got:
        propagate(model, obs, None, policy=policy, backend="cpu", seed=seed, **kw)
    assert str(got.value) == str(ref.value)
    assert "step 0" not in str(got.value) and "member 0" in str(got.value)


def test_bad_policy_inputs():
    model, policy, obs = make_case()
    acts = torch.zeros(3, 1, 4, 3)
    with pytest.raises(ValueError, match="actions"):
        propagate(model, obs, acts, policy=policy, horizon=4, backend="cpu")
    with pytest.raises(ValueError, match="horizon"):
        propagate(model, obs, None, policy=policy, backend="cpu")
    wide = random_mlp_params(E=1, sizes=(6, 7, 6))
    with pytest.raises(ValueError, match="policy"):
        propagate(model, obs, None, policy=wide, horizon=4, backend="cpu")
    two = random_mlp_params(E=2, sizes=(5, 7, 6))
    with pytest.raises(ValueError, match="policy"):
        propagate(model, obs, None, policy=two, horizon=4, backend="cpu")


@settings(max_examples=25, deadline=None)
@given(E=st.integers(1, 4), D=st.integers(1, 6), A=st.integers(1, 4), width=st.integers(1, 40),
       pwidth=st.integers(1, 40), layers=st.integers(1, 3), N=st.integers(1, 3),
       K=st.integers(1, 4), H=st.integers(1, 4), mode=st.sampled_from(MODES),
       acts=st.sampled_from([("silu", "relu"), ("relu", "silu"), ("tanh", "elu")]),
       head=st.booleans(), bf16=st.booleans(), seed=st.integers(0, 2**64 - 4))
def test_fuzz_against_reference(E, D, A, width, pwidth, layers, N, K, H, mode, acts, head, bf16,
                                seed):
    model, policy, obs = make_case(D=D, A=A, E=E, hidden=(width,) * layers,
                                   policy_hidden=(pwidth,) * layers, model_act=acts[0],
                                   policy_act=acts[1], reward_head=head, bf16=bf16, N=N,
                                   seed=seed % 1000)
    compare(model, policy, obs, "bf16" if bf16 else "fp32", particles=K, horizon=H, mode=mode,
            member=seed % E if mode == "fixed" else None, seed=seed, offset=seed // 7,
            reward="model" if head else None)


def test_auto_runs_the_compiled_kernel():
    """MBPO's rollouts (models/rollouts.branched_rollout, backend "auto") reach the kernel."""
    model, policy, obs = make_case()
    kw = dict(particles=1, horizon=3, mode="ts1", seed=2, reward="model", policy=policy)
    auto = propagate(model, obs, None, backend="auto", **kw)
    cpu = propagate(model, obs, None, backend="cpu", **kw)
    for field in FIELDS:
        assert torch.equal(getattr(auto, field), getattr(cpu, field)), field
