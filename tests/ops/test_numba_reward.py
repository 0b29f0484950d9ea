"""compile_reward: a plain-Python reward of one transition, compiled by numba into a C
callback (Reward.address) and a batched torch_fn that runs the same machine code."""

from __future__ import annotations

import ctypes
import math
import sys

import pytest
import torch

pytest.importorskip("numba")
from helpers import TOL, random_mlp_params  # noqa: E402

from mbrl_fast.ops import propagate  # noqa: E402
from mbrl_fast.ops._numba import compile_reward  # noqa: E402
from mbrl_fast.ops.contract import RewardKind  # noqa: E402

D, A = 5, 2  # helpers's default ensemble: sizes (D + A = 7, 16, 16, 2 D = 10)
CALLBACK = ctypes.CFUNCTYPE(ctypes.c_float, *[ctypes.POINTER(ctypes.c_float)] * 3,
                            ctypes.c_int64, ctypes.c_int64)


def forward_minus_ctrl(obs, act, next_obs):
    """HalfCheetah-style: (x' - x) / 0.05 - 0.1 |a|^2, with a loop."""
    ctrl = 0.0
    for i in range(act.shape[0]):
        ctrl += act[i] * act[i]
    return (next_obs[0] - obs[0]) / 0.05 - 0.1 * ctrl


def forward_minus_ctrl_torch(obs, act, next_obs):
    return (next_obs[..., 0] - obs[..., 0]) / 0.05 - 0.1 * (act * act).sum(dim=-1)


def pole_tip(obs, act, next_obs):
    """The cart-pole swing-up reward, with math functions."""
    dx = next_obs[0] - 0.6 * math.sin(next_obs[1])
    dy = -0.6 * math.cos(next_obs[1]) - 0.6
    return math.exp(-(dx * dx + dy * dy) / 0.36) - 0.01 * act[0] * act[0]


@pytest.fixture(scope="module")
def compiled():
    return compile_reward(forward_minus_ctrl, D, A)


def random_transitions(lead, d=D, a=A, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*lead, d, generator=g), torch.rand(*lead, a, generator=g) * 2 - 1,
            torch.randn(*lead, d, generator=g))


@pytest.mark.parametrize("lead", [(1,), (7,), (3, 123), (2, 1, 3, 4)])
def test_torch_fn_matches_hand_written_torch(compiled, lead):
    obs, act, nxt = random_transitions(lead)
    out = compiled.torch_fn(obs, act, nxt)
    assert out.shape == lead and out.dtype == torch.float32
    torch.testing.assert_close(out, forward_minus_ctrl_torch(obs, act, nxt), rtol=1e-5, atol=1e-5)


def test_math_functions_match_the_task_reward():
    from mbrl_fast.envs.cartpole_swingup import swingup_reward

    reward = compile_reward(pole_tip, 4, 1, name="tip")
    obs, act, nxt = random_transitions((64,), d=4, a=1)
    assert reward.name == "tip" and reward.kind == RewardKind.CALLBACK
    assert reward.fused_on("cpu") and not reward.fused_on("cuda") and not reward.fused_on("triton")
    torch.testing.assert_close(reward.torch_fn(obs, act, nxt), swingup_reward(obs, act, nxt),
                               rtol=1e-5, atol=1e-6)


def test_c_callback_equals_torch_fn_bitwise(compiled):
    obs, act, nxt = random_transitions((9,))
    fn = CALLBACK(compiled.address)
    ptr = lambda t: t.numpy().ctypes.data_as(ctypes.POINTER(ctypes.c_float))  # noqa: E731
    rows = zip(obs, act, nxt, strict=True)
    via_c = torch.tensor([fn(ptr(o), ptr(a), ptr(n), D, A) for o, a, n in rows])
    assert torch.equal(via_c, compiled.torch_fn(obs, act, nxt))


def test_torch_fn_broadcasts_and_converts(compiled):
    """act [N, 1, A] broadcast against particles [N, K, D]; float64 / strided inputs."""
    obs, _, nxt = random_transitions((4, 6))
    act = random_transitions((4, 1))[1]
    expected = compiled.torch_fn(obs, act.expand(4, 6, A).contiguous(), nxt)
    assert torch.equal(compiled.torch_fn(obs, act, nxt), expected)
    assert torch.equal(compiled.torch_fn(obs.double(), act, nxt.double()), expected)
    assert torch.equal(compiled.torch_fn(obs.mT.contiguous().mT, act, nxt), expected)
    assert compiled.torch_fn(obs[0, 0], act[0, 0], nxt[0, 0]).shape == ()
    with pytest.raises(ValueError, match=r"obs must be a tensor \[\.\.\., 5\]"):
        compiled.torch_fn(obs[..., :4], act, nxt)


def test_index_error_names_the_function():
    def past_the_end(obs, act, next_obs):
        return next_obs[D]

    with pytest.raises(ValueError, match="past_the_end.*IndexError"):
        compile_reward(past_the_end, D, A)


def _python_only(x):
    return x


def test_numba_failure_names_the_function_and_shows_numbas_message():
    def uses_python_helper(obs, act, next_obs):
        return _python_only(next_obs[0])

    with pytest.raises(ValueError, match="could not compile 'uses_python_helper'") as err:
        compile_reward(uses_python_helper, D, A)
    assert "_python_only" in str(err.value)  # numba's typing error names the culprit


def test_bad_arguments():
    with pytest.raises(ValueError, match="obs_dim"):
        compile_reward(forward_minus_ctrl, 0, A)
    with pytest.raises(ValueError, match="act_dim"):
        compile_reward(forward_minus_ctrl, D, 1.5)
    with pytest.raises(TypeError, match="fn"):
        compile_reward("forward", D, A)
    with pytest.raises(ValueError, match="one number"):
        compile_reward(lambda o, a, n: n, D, A)


def test_missing_numba_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)
    with pytest.raises(ImportError, match=r"mbrl-fast\[numba\]"):
        compile_reward(forward_minus_ctrl, D, A)


@pytest.mark.op("propagate", "reward.callback")
@pytest.mark.parametrize("mode", ["tsinf", "ts1", "expectation"])
@pytest.mark.parametrize("n, p, k, h", [(1, 1, 1, 1), (2, 3, 7, 4)])
def test_propagate_calls_the_callback_like_the_reference(backend, compiled, mode, n, p, k, h):
    """Every backend with ``reward.callback`` (tests/ops/conftest.py): the cpu kernel paths."""
    params = random_mlp_params(E=3, sizes=(D + A, 16, 16, 2 * D), seed=1)
    g = torch.Generator().manual_seed(2)
    obs = torch.randn(n, D, generator=g)
    actions = torch.rand(n, p, h, A, generator=g) * 2 - 1
    kw = dict(particles=k, mode=mode, seed=3, reward=compiled)
    ref = propagate(params, obs, actions, backend="reference", **kw)
    cpu = propagate(backend.to(params), backend.to(obs), backend.to(actions),
                    backend=backend.name, **kw)
    torch.testing.assert_close(cpu.states, ref.states, **TOL["fp32"])
    # the reward divides state differences by 0.05: allow 20x the state tolerance
    torch.testing.assert_close(cpu.rewards, ref.rewards, rtol=1e-4, atol=2e-4)
    torch.testing.assert_close(cpu.returns, ref.returns, rtol=1e-4, atol=2e-4 * h)
    # and the rewards are those of the states the kernel returned
    s, taken = cpu.states, actions.unsqueeze(2).expand(n, p, k, h, A)
    torch.testing.assert_close(cpu.rewards, compiled.torch_fn(s[..., :-1, :], taken, s[..., 1:, :]),
                               rtol=1e-5, atol=1e-5)
