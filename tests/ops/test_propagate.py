"""propagate: every compiled backend and kernel path (tests/ops/conftest.py) against the
reference, and the reference against the module docstring read literally.

Sections:

- the reference against an oracle that runs the docstring literally (no compiled backend);
- given action sequences: modes, dtypes, fused rewards, member subsets, odd sizes, the
  noise streams, and the rows spanning the kernels' tiles;
- observation features (``params.obs_features``);
- rewards: torch functions, a C callback (cpu only), the built-in HalfCheetah;
- non-finite states: the reference's error, word for word;
- property-based fuzzing against the reference;
- the op's own bad-input errors.

A policy in the loop (MBPO's branched rollouts) is test_propagate_policy.py; the cases and
comparisons both files use are propagate_cases.py.

Every compiled case draws the reference's Philox streams, so the comparison is sample for
sample; tolerances are relative to the largest state / reward / return (helpers.TOL).
Under Triton's CPU interpreter (``backend.interpreted``, slow) the large product tests run
shorter horizons, the fuzz tests fewer examples, and the cases that stress the CPU kernels'
96-row tiles fewer rows (still several of Triton's 32-row tiles).
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
from propagate_cases import (
    HALFCHEETAH_FEATURES,
    REWARDS,
    check_oracle,
    compare,
    compare_policy,
    make_case,
    make_policy_case,
    oracle,
    raises_like_reference,
    reward_params,
    run,
)

from mbrl_fast.ops.ensemble_mlp import MLPParams
from mbrl_fast.ops.features import ObsFeatures
from mbrl_fast.ops.propagate import MODES, propagate
from mbrl_fast.ops.rewards import Reward, RewardKind, halfcheetah_reward

pytestmark = pytest.mark.op("propagate")
policy_in_the_loop = pytest.mark.op("propagate.policy")


# ---- the reference against the docstring read literally ---------------------------------
# The reference groups particle rows by member (each row meets only its own member); the
# oracle runs every member on every row at every step and then picks each row's member, as
# the docstring states it. They must agree to fp32 rounding in every mode.

oracle_case = functools.partial(make_case, D=5, E=4, P=7)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reward", [None, "model", "halfcheetah"])
@pytest.mark.parametrize("bf16", [False, True])
def test_reference_matches_the_literal_docstring(mode, reward, bf16):
    D = 18 if reward == "halfcheetah" else 5
    features = HALFCHEETAH_FEATURES if D == 18 else None
    params, obs, actions = oracle_case(D=D, A=6 if D == 18 else 2, reward_head=reward == "model",
                                       bf16=bf16, features=features)
    check_oracle(params, obs, actions, particles=5, mode=mode,
                 member=2 if mode == "fixed" else None, seed=3, offset=12, reward=reward)


@pytest.mark.parametrize("mode", MODES)
def test_reference_member_subsets_with_repeats_and_empty_groups(mode):
    # members [3, 1, 3]: member 3 drawn twice as often, members 0 and 2 never run.
    params, obs, actions = oracle_case(N=1, P=3, H=4)
    got = check_oracle(params, obs, actions, particles=3, mode=mode,
                       member=0 if mode == "fixed" else None, members=[3, 1, 3],
                       seed=2**63 + 5, offset=2**40,
                       reward=lambda o, a, n: n[..., 0] - (a * a).sum(-1))
    assert got.returns.shape == (1, 3)


@pytest.mark.parametrize("rows", [(1, 1, 1), (1, 1, 7), (3, 4, 5)])
def test_reference_odd_row_counts(rows):
    n, p, k = rows  # down to a single row: a single group of one
    params, obs, actions = oracle_case(E=5, N=n, P=p, H=3)
    for mode in ("ts1", "tsinf"):
        check_oracle(params, obs, actions, particles=k, mode=mode, seed=7)


@pytest.mark.parametrize("mode", MODES)
def test_reference_policy_in_the_loop(mode):
    params, obs, _ = oracle_case(D=4, A=2, reward_head=True)
    policy = random_mlp_params(E=1, sizes=(4, 16, 4), seed=5)
    check_oracle(params, obs, None, policy, particles=4, mode=mode,
                 member=1 if mode == "fixed" else None, horizon=6, reward="model", seed=2)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("step", [0, 3])
def test_reference_non_finite_names_the_first_step_and_row(mode, step):
    params, obs, actions = oracle_case(P=5, H=6)
    actions[1, 3, step, 0] = float("inf")  # start state 1, sequence 3
    actions[1, 4, step + 1, 0] = float("nan")  # a later step: not the one reported
    kw = dict(particles=2, mode=mode, member=1 if mode == "fixed" else None)
    with pytest.raises(FloatingPointError) as want:
        oracle(params, obs, actions, **kw)
    with pytest.raises(FloatingPointError, match=f"step {step} ") as got:
        propagate(params, obs, actions, backend="reference", **kw)
    assert str(got.value) == str(want.value)
    assert "start state 1, sequence 3, particle 0" in str(got.value)


# ---- given action sequences: every backend against the reference -------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("reward", REWARDS)
def test_modes_rewards_dtypes(backend, mode, dtype, reward):
    D = 18 if reward == "halfcheetah" else 4
    params, obs, actions = make_case(D=D, reward_head=reward == "model", bf16=dtype == "bf16",
                                     H=3 if backend.interpreted else 5)
    member = 1 if mode == "fixed" else None
    compare(backend, params, obs, actions, dtype, particles=5, mode=mode, member=member, seed=3,
            offset=12, reward=reward)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reward", REWARDS)
def test_one_member_and_one_row(backend, mode, reward):
    """E = 1, and a single particle row (N = P = K = H = 1) of E = 1 and of E = 3."""
    for E, (N, P, K, H) in ((1, (1, 1, 1, 1)), (3, (1, 1, 1, 1)), (1, (2, 7, 3, 3))):
        params, obs, actions = make_case(D=5, A=3, E=E, hidden=(16,), N=N, P=P, H=H,
                                         reward_head=reward == "model", seed=E + H)
        compare(backend, params, obs, actions, particles=K, mode=mode,
                member=E - 1 if mode == "fixed" else None, seed=7, offset=5, reward=reward)


@pytest.mark.parametrize("mode", MODES)
def test_horizon_one_members_subset_odd_rows(backend, mode):
    # P * K = 7 * 3 = 21 rows, not divisible by E = 4; members is a subset with a repeat.
    params, obs, actions = make_case(E=4, P=7, H=1, N=1)
    compare(backend, params, obs, actions, particles=3, mode=mode,
            member=3 if mode == "fixed" else None, members=[3, 1, 3], seed=2**63 + 5,
            offset=2**40)


@pytest.mark.parametrize("features", [None, ObsFeatures(5, drop=(0,), angles=(2, 4))],
                         ids=["raw", "features"])
@pytest.mark.parametrize("reward", reward_params("model", "halfcheetah"))
@pytest.mark.parametrize("mode", ["ts1", "tsinf"])
def test_members_subset_with_a_duplicate_without_states(backend, features, reward, mode):
    """A fused reward's returns with return_states=False: the kernels skip the stores."""
    params, obs, actions = make_case(D=5, A=3, E=4, features=features, bf16=True, P=5, H=3,
                                     reward_head=reward == "model")
    got = compare(backend, params, obs, actions, "bf16", particles=3, mode=mode,
                  members=[0, 2, 2], seed=3, reward=reward, return_states=False)
    assert got.states is None and got.rewards is None and got.returns.shape == (2, 5)


@pytest.mark.parametrize("policy", [False, pytest.param(True, marks=policy_in_the_loop)],
                         ids=["actions", "policy"])
@pytest.mark.parametrize("mode", ["ts1", "tsinf"])
@pytest.mark.op("reward.model")
def test_last_offsets(backend, policy, mode):
    """offset = 2**64 - 10: the counters of offset + 1 and + 2 still within 64 bits."""
    kw = dict(particles=3, mode=mode, seed=1, offset=2**64 - 10, reward="model")
    if policy:
        model, pol, obs = make_policy_case(E=3, hidden=(16,), policy_hidden=(16,), N=4)
        compare_policy(backend, model, pol, obs, horizon=3, **kw)
    else:
        params, obs, actions = make_case(D=5, A=3, reward_head=True, H=3)
        compare(backend, params, obs, actions, **kw)


def test_noise_is_the_reference_stream(backend):
    """A zero network: every step adds std * eps, so the states expose eps sample for sample."""
    D, A, E = 7, 2, 2
    sizes = (D + A, 5, 2 * D)
    zeros = [torch.zeros(E, i, o) for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    params = MLPParams(tuple(zeros), tuple(torch.zeros(E, o) for o in sizes[1:]), "silu", None,
                       None, torch.zeros(D), torch.full((D,), -1.0))
    P = 7 if backend.interpreted else 37  # 63 rows: two 32-row Triton tiles
    obs, actions = torch.zeros(1, D), torch.zeros(1, P, 6, A)
    kw = dict(particles=9, seed=2**50 + 3, offset=5)
    ref = propagate(params, obs, actions, backend="reference", **kw)
    got = run(backend, params, obs, actions, **kw)
    torch.testing.assert_close(got.states.diff(dim=3).cpu(), ref.states.diff(dim=3),
                               rtol=1e-6, atol=1e-6)


def test_many_rows_span_tiles(backend):
    # 2 * 50 * 7 = 700 rows: several 96-row cpu tiles per member, tails of every size;
    # 2 * 10 * 7 = 140 rows under the interpreter: five 32-row Triton tiles, a tail of 12.
    P = 10 if backend.interpreted else 50
    params, obs, actions = make_case(E=5, hidden=(40, 40, 40), P=P, H=3)
    for mode in ("ts1", "tsinf"):
        compare(backend, params, obs, actions, particles=7, mode=mode, members=[0, 2, 4], seed=9)


@pytest.mark.parametrize("rows", [5, 50, 95])
def test_few_rows_with_enough_work_split_over_threads(backend, rows):
    """Fewer rows than one 96-row cpu tile per thread, but work enough for a thread team
    (> 2e6 multiply-adds): the cpu kernel splits them into smaller tiles, one per thread.
    The samples belong to rows, so the result is the reference's."""
    H = 4 if backend.interpreted else 12
    params, obs, actions = make_case(E=3, hidden=(128, 128), N=1, P=rows, H=H)
    for mode in ("expectation", "tsinf", "fixed"):
        compare(backend, params, obs, actions, particles=1, mode=mode,
                member=1 if mode == "fixed" else None, seed=6)


@pytest.mark.op("reward.model")
def test_return_states_false_and_returns(backend):
    params, obs, actions = make_case(reward_head=True)
    kw = dict(particles=4, reward="model", seed=1)
    got = run(backend, params, obs, actions, return_states=False, **kw)
    ref = propagate(params, obs, actions, backend="reference", **kw)
    assert got.states is None and got.rewards is None
    assert_close(got.returns, ref.returns, what="returns")
    assert_close(ref.rewards.sum(-1).mean(-1), got.returns.cpu(), what="returns = mean_k sum_t r")
    none = run(backend, params, obs, actions, particles=4, return_states=False)
    assert none.states is None and none.rewards is None and none.returns is None


# ---- observation features ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("reward", REWARDS)
def test_obs_features(backend, mode, dtype, reward):
    """The model reads features(s_t): sin / cos of angles, dropped entries (ops/features.py)."""
    if reward == "halfcheetah":
        features, D = HALFCHEETAH_FEATURES, 18
    else:  # F = 2 + 2 * 2 = 6 from D = 5: an odd input width F + A = 7 with A = 1
        features, D = ObsFeatures(5, drop=(3,), angles=(0, 4)), 5
    P, H = (3, 3) if backend.interpreted else (5, 5)  # 24 rows: one Triton tile
    params, obs, actions = make_case(D=D, A=6 if D == 18 else 1, reward_head=reward == "model",
                                     bf16=dtype == "bf16", features=features, P=P, H=H)
    member = 1 if mode == "fixed" else None
    got = compare(backend, params, obs, actions, dtype, particles=4, mode=mode, member=member,
                  seed=11, reward=reward)
    # Not the raw state: the same weights reading raw inputs would be a different model.
    assert got.states.shape == (2, P, 4, H + 1, D)


@pytest.mark.parametrize("features", [ObsFeatures(5, angles=(1,)),  # F = 6
                                      ObsFeatures(5, drop=(0, 3)),  # F = 3
                                      ObsFeatures(5)],  # F = D: the no-features path
                         ids=["angles-only", "drop-only", "identity"])
@pytest.mark.op("reward.halfcheetah")
def test_obs_features_one_row(backend, features):
    """N = P = K = H = 1 with each kind of map alone."""
    params, obs, actions = make_case(D=5, A=3, hidden=(16,), N=1, P=1, H=1, features=features,
                                     seed=5)
    compare(backend, params, obs, actions, particles=1, mode="ts1", seed=6, reward="halfcheetah")


def test_obs_features_torch_reward_and_angles_only(backend):
    params, obs, actions = make_case(D=3, features=ObsFeatures(3, angles=(0, 1, 2)), H=4)

    def reward(o, a, n):
        return torch.cos(n[..., 0]) - 0.1 * (a * a).sum(-1)

    compare(backend, params, obs, actions, particles=3, mode="tsinf", reward=reward, seed=5)


def test_obs_features_change_the_rollout(backend):
    """Guard against a backend that ignores the map: wrapping an angle by 2 pi leaves the
    prediction unchanged with features and changes it without."""
    features = ObsFeatures(4, angles=(1,))
    params, obs, actions = make_case(features=features)
    shifted = obs.clone()
    shifted[:, 1] += 2 * torch.pi
    kw = dict(particles=3, mode="expectation")
    a = run(backend, params, obs, actions, **kw).states.cpu()
    b = run(backend, params, shifted, actions, **kw).states.cpu()
    torch.testing.assert_close((b - a)[..., 1], torch.full_like(a[..., 1], 2 * torch.pi))
    torch.testing.assert_close(torch.cat([(b - a)[..., :1], (b - a)[..., 2:]], -1),
                               torch.zeros_like(a[..., :3]), atol=1e-4, rtol=0)


# ---- rewards: torch functions, C callbacks, the built-in HalfCheetah ----------------------


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_torch_reward_function(backend, dtype):
    params, obs, actions = make_case(bf16=dtype == "bf16")

    def reward(o, a, n):
        return (n - o).sum(-1) - 0.5 * (a * a).sum(-1)

    compare(backend, params, obs, actions, dtype, particles=3, mode="ts1", reward=reward, seed=4)
    got = run(backend, params, obs, actions, particles=3, reward=reward, return_states=False)
    assert got.states is None and got.returns.shape == (2, 3)


CALLBACK = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.POINTER(ctypes.c_float),
                            ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float),
                            ctypes.c_int64, ctypes.c_int64)


@pytest.mark.op("reward.callback")
def test_c_callback_reward(backend):
    """A C function pointer with the ABI of csrc/include/reward_callback.h (here from ctypes)."""

    def py_reward(obs, act, nxt, obs_dim, act_dim):
        return (nxt[obs_dim - 1] - obs[0]) * 2.0 - sum(act[j] * act[j] for j in range(act_dim))

    fn = CALLBACK(py_reward)

    def torch_reward(o, a, n):
        return (n[..., -1] - o[..., 0]) * 2.0 - (a * a).sum(-1)

    reward = Reward("ctypes", torch_reward, address=ctypes.cast(fn, ctypes.c_void_p).value,
                    keepalive=fn)
    assert reward.fused_on(backend.name)
    params, obs, actions = make_case(P=2, H=3)
    for mode in ("ts1", "expectation"):
        compare(backend, params, obs, actions, particles=3, mode=mode, reward=reward, seed=6)


@pytest.mark.op("reward.halfcheetah")
def test_builtin_halfcheetah_matches_torch_reward(backend):
    params, obs, actions = make_case(D=18, A=6, H=4)
    fused = run(backend, params, obs, actions, particles=3, reward="halfcheetah")
    unfused = run(backend, params, obs, actions, particles=3,
                  reward=Reward("plain", halfcheetah_reward))
    assert_close(fused.rewards, unfused.rewards.cpu(), what="rewards")


@pytest.mark.op("reward.halfcheetah")
def test_builtin_halfcheetah_takes_its_dt(backend):
    """The kernel divides by Reward.dt (a PropagateDesc field), not a fixed 0.05."""
    params, obs, actions = make_case(D=18, A=6, H=4)
    fn = functools.partial(halfcheetah_reward, dt=0.02)
    cheetah = Reward("cheetah_dt", fn, kind=RewardKind.HALFCHEETAH, dt=0.02)
    assert cheetah.fused_on(backend.name)
    compare(backend, params, obs, actions, particles=3, reward=cheetah, seed=2)
    with pytest.raises(ValueError, match="dt > 0"):
        Reward("no_dt", fn, kind=RewardKind.HALFCHEETAH)


# ---- non-finite states: the reference's error --------------------------------------------


def _with_bad_member(params: MLPParams, member: int, value: float, column: int) -> MLPParams:
    biases = list(params.biases)
    biases[-1] = biases[-1].clone()
    biases[-1][member, column] = value
    return replace(params, biases=tuple(biases))


# (Triton's interpreter warns of the inf - inf / inf * 0 its numpy ops meet on the way.)
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value,column", [(float("nan"), 0), (float("inf"), 2)],
                         ids=["nan", "inf"])
def test_non_finite_weights_raise_like_reference(backend, mode, value, column):
    params, obs, actions = make_case(E=3, P=4, H=2 if backend.interpreted else 5)
    params = _with_bad_member(params, 2, value, column)
    kw = dict(particles=5, mode=mode, member=2 if mode == "fixed" else None, seed=8)
    message = raises_like_reference(backend, params, obs, actions, match="step 0", **kw)
    assert ("member -1" if mode == "expectation" else "member 2") in message


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("mode", ["ts1", "tsinf"])
def test_non_finite_at_a_later_step(backend, mode):
    params, obs, actions = make_case(P=5, H=6)
    actions[1, 3, 4, 0] = float("inf")  # start state 1, sequence 3 blows up at step 4
    raises_like_reference(backend, params, obs, actions, match="step 4", particles=2, mode=mode)


# ---- fuzzing against the reference -------------------------------------------------------
# Hypothesis runs inside the test (the backend fixture is per test, not per example); fewer
# examples under Triton's interpreter.


@pytest.mark.op("reward.model")
def test_fuzz_against_reference(backend):
    @settings(max_examples=8 if backend.interpreted else 30, deadline=None)
    @given(E=st.integers(1, 4), D=st.integers(1, 5), A=st.integers(1, 3),
           width=st.integers(1, 20), layers=st.integers(1, 3), N=st.integers(1, 2),
           P=st.integers(1, 4), K=st.integers(1, 4), H=st.integers(1, 4),
           mode=st.sampled_from(MODES), head=st.booleans(), bf16=st.booleans(),
           seed=st.integers(0, 2**64 - 4), data=st.data())
    def check(E, D, A, width, layers, N, P, K, H, mode, head, bf16, seed, data):
        # each state entry kept, dropped or read as an angle
        roles = data.draw(st.lists(st.sampled_from("kda"), min_size=D, max_size=D))
        if all(r == "d" for r in roles):
            roles[0] = "k"
        features = ObsFeatures(D, drop=[i for i, r in enumerate(roles) if r == "d"],
                               angles=[i for i, r in enumerate(roles) if r == "a"])
        params, obs, actions = make_case(D=D, A=A, E=E, hidden=(width,) * layers,
                                         reward_head=head, bf16=bf16, N=N, P=P, H=H,
                                         seed=seed % 1000,
                                         features=data.draw(st.sampled_from([None, features])))
        members = data.draw(st.lists(st.integers(0, E - 1), min_size=1, max_size=E))
        member = data.draw(st.integers(0, E - 1))
        compare(backend, params, obs, actions, "bf16" if bf16 else "fp32", particles=K,
                mode=mode, member=member if mode == "fixed" else None, members=members,
                seed=seed, offset=seed // 7, reward="model" if head else None)

    check()


# ---- the op's own bad-input errors --------------------------------------------------------


def test_bad_inputs():
    params, obs, actions = make_case()
    bad_obs = obs.clone()
    bad_obs[0, 0] = float("nan")
    with pytest.raises(ValueError, match="obs"):
        propagate(params, bad_obs, actions)
    with pytest.raises(ValueError, match="mode"):
        propagate(params, obs, actions, mode="ts2")
    with pytest.raises(ValueError, match="members"):
        propagate(params, obs, actions, members=[0, 3])
    with pytest.raises(ValueError, match="actions"):
        propagate(params, obs, actions[:1])
    with pytest.raises(ValueError, match="reward"):
        propagate(params, obs, actions, reward="model")


def test_obs_features_bad_inputs():
    features = ObsFeatures(4, drop=(0,))
    params, obs, actions = make_case(features=features)
    with pytest.raises(ValueError, match="obs_features"):
        propagate(params, obs[:, :3], actions)
    raw, _, _ = make_case()  # input width D + A = 6, but the map needs F + A = 5
    with pytest.raises(ValueError, match="F \\+ A"):
        propagate(replace(raw, obs_features=features), obs, actions)
    with pytest.raises(TypeError, match="obs_features"):
        propagate(replace(raw, obs_features=(0,)), obs, actions)
