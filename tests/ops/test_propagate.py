"""propagate: the compiled CPU kernel (AVX-512 and portable) against the reference.

Every case uses the same Philox streams as the reference, so the comparison is
sample for sample; tolerances are relative to the largest state / return.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import replace

import pytest
import torch
from helpers import assert_close, random_mlp_params
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrl_fast import backends
from mbrl_fast.ops.ensemble_mlp import MLPParams
from mbrl_fast.ops.features import ObsFeatures
from mbrl_fast.ops.propagate import MODES, propagate
from mbrl_fast.ops.rewards import Reward, RewardKind, halfcheetah_reward

pytestmark = pytest.mark.skipif(not backends.is_available("cpu"), reason="mbrl_fast._C not built")



def make_case(D=4, A=2, E=3, hidden=(24, 24), reward_head=False, bf16=False, N=2, P=3, H=5, seed=0,
              features: ObsFeatures | None = None):
    d_out = D + 1 if reward_head else D
    f = D if features is None else features.width
    params = random_mlp_params(E=E, sizes=(f + A, *hidden, 2 * d_out), bf16=bf16, seed=seed)
    params = replace(params, obs_features=features)
    g = torch.Generator().manual_seed(seed + 1)
    # Angles of a few turns, so sin / cos wrap.
    return params, torch.randn(N, D, generator=g) * 3, torch.rand(N, P, H, A, generator=g) * 2 - 1


def compare(params, obs, actions, dtype="fp32", **kw):
    ref = propagate(params, obs, actions, backend="reference", **kw)
    got = propagate(params, obs, actions, backend="cpu", **kw)
    for field in ("states", "rewards", "returns"):
        assert_close(getattr(got, field), getattr(ref, field), dtype, field)
    return got


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("reward", [None, "model", "halfcheetah"])
def test_modes_rewards_dtypes(kernels, mode, dtype, reward):
    D = 18 if reward == "halfcheetah" else 4
    params, obs, actions = make_case(D=D, reward_head=reward == "model", bf16=dtype == "bf16")
    member = 1 if mode == "fixed" else None
    compare(params, obs, actions, dtype, particles=5, mode=mode, member=member, seed=3, offset=12,
            reward=reward)


HALFCHEETAH_FEATURES = ObsFeatures(18, drop=(0,), angles=(2,))  # the task's: F = 18


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("reward", [None, "model", "halfcheetah"])
def test_obs_features(kernels, mode, dtype, reward):
    """The model reads features(s_t): sin / cos of angles, dropped entries (ops/features.py)."""
    if reward == "halfcheetah":
        features, D = HALFCHEETAH_FEATURES, 18
    else:  # F = 2 + 2 * 2 = 6 from D = 5: an odd input width F + A = 7 with A = 1
        features, D = ObsFeatures(5, drop=(3,), angles=(0, 4)), 5
    params, obs, actions = make_case(D=D, A=6 if D == 18 else 1, reward_head=reward == "model",
                                     bf16=dtype == "bf16", features=features, P=5)
    member = 1 if mode == "fixed" else None
    got = compare(params, obs, actions, dtype, particles=4, mode=mode, member=member, seed=11,
                  reward=reward)
    # Not the raw state: the same weights reading raw inputs would be a different model.
    assert got.states.shape == (2, 5, 4, 6, D)


def test_obs_features_torch_reward_and_angles_only(kernels):
    params, obs, actions = make_case(D=3, features=ObsFeatures(3, angles=(0, 1, 2)), H=4)

    def reward(o, a, n):
        return torch.cos(n[..., 0]) - 0.1 * (a * a).sum(-1)

    compare(params, obs, actions, particles=3, mode="tsinf", reward=reward, seed=5)


def test_obs_features_change_the_rollout():
    """Guard against a backend that ignores the map: wrapping an angle by 2 pi leaves the
    prediction unchanged with features and changes it without."""
    features = ObsFeatures(4, angles=(1,))
    params, obs, actions = make_case(features=features)
    shifted = obs.clone()
    shifted[:, 1] += 2 * torch.pi
    kw = dict(particles=3, mode="expectation", backend="cpu")
    a = propagate(params, obs, actions, **kw).states
    b = propagate(params, shifted, actions, **kw).states
    torch.testing.assert_close((b - a)[..., 1], torch.full_like(a[..., 1], 2 * torch.pi))
    torch.testing.assert_close(torch.cat([(b - a)[..., :1], (b - a)[..., 2:]], -1),
                               torch.zeros_like(a[..., :3]), atol=1e-4, rtol=0)


def test_obs_features_bad_inputs():
    features = ObsFeatures(4, drop=(0,))
    params, obs, actions = make_case(features=features)
    with pytest.raises(ValueError, match="obs_features"):
        propagate(params, obs[:, :3], actions, backend="cpu")
    raw, _, _ = make_case()  # input width D + A = 6, but the map needs F + A = 5
    with pytest.raises(ValueError, match="F \\+ A"):
        propagate(replace(raw, obs_features=features), obs, actions, backend="cpu")
    with pytest.raises(TypeError, match="obs_features"):
        propagate(replace(raw, obs_features=(0,)), obs, actions, backend="cpu")


@pytest.mark.parametrize("mode", MODES)
def test_horizon_one_members_subset_odd_rows(kernels, mode):
    # P * K = 7 * 3 = 21 rows, not divisible by E = 4; members is a subset with a repeat.
    params, obs, actions = make_case(E=4, P=7, H=1, N=1)
    compare(params, obs, actions, particles=3, mode=mode, member=3 if mode == "fixed" else None,
            members=[3, 1, 3], seed=2**63 + 5, offset=2**40)


def test_many_rows_span_tiles(kernels):
    # 2 * 50 * 7 = 700 rows: several 96-row tiles per member, tails of every size.
    params, obs, actions = make_case(E=5, hidden=(40, 40, 40), P=50, H=3)
    for mode in ("ts1", "tsinf"):
        compare(params, obs, actions, particles=7, mode=mode, members=[0, 2, 4], seed=9)


def test_return_states_false_and_returns(kernels):
    params, obs, actions = make_case(reward_head=True)
    kw = dict(particles=4, reward="model", seed=1)
    got = propagate(params, obs, actions, backend="cpu", return_states=False, **kw)
    ref = propagate(params, obs, actions, backend="reference", **kw)
    assert got.states is None and got.rewards is None
    assert_close(got.returns, ref.returns, what="returns")
    assert_close(ref.rewards.sum(-1).mean(-1), got.returns, what="returns = mean_k sum_t r")
    none = propagate(params, obs, actions, backend="cpu", particles=4, return_states=False)
    assert none.states is None and none.rewards is None and none.returns is None


def test_torch_reward_function(kernels):
    params, obs, actions = make_case()

    def reward(o, a, n):
        return (n - o).sum(-1) - 0.5 * (a * a).sum(-1)

    compare(params, obs, actions, particles=3, mode="ts1", reward=reward, seed=4)
    got = propagate(params, obs, actions, backend="cpu", particles=3, reward=reward,
                    return_states=False)
    assert got.states is None and got.returns.shape == (2, 3)


CALLBACK = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.POINTER(ctypes.c_float),
                            ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float),
                            ctypes.c_int64, ctypes.c_int64)


def test_c_callback_reward(kernels):
    """A C function pointer with the ABI of csrc/include/reward_callback.h (here from ctypes)."""

    def py_reward(obs, act, nxt, obs_dim, act_dim):
        return (nxt[obs_dim - 1] - obs[0]) * 2.0 - sum(act[j] * act[j] for j in range(act_dim))

    fn = CALLBACK(py_reward)

    def torch_reward(o, a, n):
        return (n[..., -1] - o[..., 0]) * 2.0 - (a * a).sum(-1)

    reward = Reward("ctypes", torch_reward, address=ctypes.cast(fn, ctypes.c_void_p).value,
                    keepalive=fn)
    params, obs, actions = make_case(P=2, H=3)
    for mode in ("ts1", "expectation"):
        compare(params, obs, actions, particles=3, mode=mode, reward=reward, seed=6)


def test_builtin_halfcheetah_matches_torch_reward():
    params, obs, actions = make_case(D=18, A=6, H=4)
    fused = propagate(params, obs, actions, backend="cpu", particles=3, reward="halfcheetah")
    unfused = propagate(params, obs, actions, backend="cpu", particles=3,
                        reward=Reward("plain", halfcheetah_reward))
    assert_close(fused.rewards, unfused.rewards, what="rewards")


def test_builtin_halfcheetah_takes_its_dt():
    """The kernel divides by Reward.dt (a PropagateDesc field), not a fixed 0.05."""
    params, obs, actions = make_case(D=18, A=6, H=4)
    fn = functools.partial(halfcheetah_reward, dt=0.02)
    cheetah = Reward("cheetah_dt", fn, kind=RewardKind.HALFCHEETAH, dt=0.02)
    assert cheetah.fused_on("cpu")
    compare(params, obs, actions, particles=3, reward=cheetah, seed=2)
    with pytest.raises(ValueError, match="dt > 0"):
        Reward("no_dt", fn, kind=RewardKind.HALFCHEETAH)


def _with_nan_member(params: MLPParams, member: int) -> MLPParams:
    biases = list(params.biases)
    biases[-1] = biases[-1].clone()
    biases[-1][member, 0] = float("nan")
    return MLPParams(params.weights, tuple(biases), params.activation, params.in_mean,
                     params.in_std, params.max_logvar, params.min_logvar)


@pytest.mark.parametrize("mode", MODES)
def test_nan_weights_raise_like_reference(kernels, mode):
    params, obs, actions = make_case(E=3, P=4)
    params = _with_nan_member(params, 2)
    kw = dict(particles=5, mode=mode, member=2 if mode == "fixed" else None, seed=8)
    with pytest.raises(FloatingPointError) as ref:
        propagate(params, obs, actions, backend="reference", **kw)
    with pytest.raises(FloatingPointError, match="step 0") as got:
        propagate(params, obs, actions, backend="cpu", **kw)
    assert str(got.value) == str(ref.value)
    assert ("member -1" if mode == "expectation" else "member 2") in str(got.value)


@pytest.mark.parametrize("mode", ["ts1", "tsinf"])
def test_non_finite_at_a_later_step(kernels, mode):
    params, obs, actions = make_case(P=5, H=6)
    actions[1, 3, 4, 0] = float("inf")  # start state 1, sequence 3 blows up at step 4
    with pytest.raises(FloatingPointError) as ref:
        propagate(params, obs, actions, backend="reference", particles=2, mode=mode)
    with pytest.raises(FloatingPointError, match="step 4") as got:
        propagate(params, obs, actions, backend="cpu", particles=2, mode=mode)
    assert str(got.value) == str(ref.value)


def test_bad_inputs():
    params, obs, actions = make_case()
    bad_obs = obs.clone()
    bad_obs[0, 0] = float("nan")
    with pytest.raises(ValueError, match="obs"):
        propagate(params, bad_obs, actions, backend="cpu")
    with pytest.raises(ValueError, match="mode"):
        propagate(params, obs, actions, mode="ts2", backend="cpu")
    with pytest.raises(ValueError, match="members"):
        propagate(params, obs, actions, members=[0, 3], backend="cpu")
    with pytest.raises(ValueError, match="actions"):
        propagate(params, obs, actions[:1], backend="cpu")
    with pytest.raises(ValueError, match="reward"):
        propagate(params, obs, actions, reward="model", backend="cpu")


@settings(max_examples=30, deadline=None)
@given(E=st.integers(1, 4), D=st.integers(1, 5), A=st.integers(1, 3), width=st.integers(1, 20),
       layers=st.integers(1, 3), N=st.integers(1, 2), P=st.integers(1, 4), K=st.integers(1, 4),
       H=st.integers(1, 4), mode=st.sampled_from(MODES), head=st.booleans(), bf16=st.booleans(),
       seed=st.integers(0, 2**64 - 4), data=st.data())
def test_fuzz_against_reference(E, D, A, width, layers, N, P, K, H, mode, head, bf16, seed, data):
    roles = data.draw(st.lists(st.sampled_from("kda"), min_size=D, max_size=D))  # keep/drop/angle
    if all(r == "d" for r in roles):
        roles[0] = "k"
    features = ObsFeatures(D, drop=[i for i, r in enumerate(roles) if r == "d"],
                           angles=[i for i, r in enumerate(roles) if r == "a"])
    params, obs, actions = make_case(D=D, A=A, E=E, hidden=(width,) * layers, reward_head=head,
                                     bf16=bf16, N=N, P=P, H=H, seed=seed % 1000,
                                     features=data.draw(st.sampled_from([None, features])))
    members = data.draw(st.lists(st.integers(0, E - 1), min_size=1, max_size=E))
    member = data.draw(st.integers(0, E - 1))
    compare(params, obs, actions, "bf16" if bf16 else "fp32", particles=K, mode=mode,
            member=member if mode == "fixed" else None, members=members, seed=seed,
            offset=seed // 7, reward="model" if head else None)


def test_noise_is_the_reference_stream(kernels):
    """A zero network: every step adds std * eps, so the states expose eps sample for sample."""
    D, A, E = 7, 2, 2
    sizes = (D + A, 5, 2 * D)
    zeros = [torch.zeros(E, i, o) for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    params = MLPParams(tuple(zeros), tuple(torch.zeros(E, o) for o in sizes[1:]), "silu", None,
                       None, torch.zeros(D), torch.full((D,), -1.0))
    obs, actions = torch.zeros(1, D), torch.zeros(1, 37, 6, A)
    kw = dict(particles=9, seed=2**50 + 3, offset=5)
    ref = propagate(params, obs, actions, backend="reference", **kw)
    got = propagate(params, obs, actions, backend="cpu", **kw)
    torch.testing.assert_close(got.states.diff(dim=3), ref.states.diff(dim=3), rtol=1e-6, atol=1e-6)
