"""Compile a user's plain-Python reward of ONE transition into a C callback with numba.

    def cheetah(obs, act, next_obs):          # 1-D float32 arrays [D], [A], [D]
        ctrl = 0.0
        for i in range(act.shape[0]):
            ctrl += act[i] * act[i]
        return (next_obs[0] - obs[0]) / 0.05 - 0.1 * ctrl

    reward = compile_reward(cheetah, obs_dim=18, act_dim=6)
    propagate(params, obs, actions, reward=reward, backend="cpu")   # called per particle in C++

The result is a ``mbrl_fast.ops.rewards.Reward`` with
  address:  a numba ``@cfunc`` with the callback ABI of csrc/include/reward_callback.h
            ``float f(const float* obs, const float* act, const float* next_obs,
                      int64 obs_dim, int64 act_dim)``
  torch_fn: the same compiled function looped over the rows of batched torch tensors
            (obs [..., D], act [..., A], next_obs [..., D] -> float32 [...]), so the
            reference backend and the C++ kernel compute identical numbers.
Both call one ``njit`` of the user's function on the same argument types (1-D C-contiguous
float32 arrays), so they run the same machine code. The C++ kernel calls the callback from
several OpenMP threads at once; numba's nopython code holds no GIL and its globals are
compile-time constants, so a reward written as above is thread-safe.
"""

from __future__ import annotations

import numpy as np
import torch

from mbrl_fast.ops.contract import Reward, RewardKind


def _numba():
    try:
        import numba
    except ImportError as exc:
        raise ImportError("compile_reward needs numba (an optional extra): "
                          "pip install 'mbrl-fast[numba]'") from exc
    return numba


def _check_dim(name: str, value) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"compile_reward: {name} must be an int >= 1, got {value!r}")
    return int(value)


def _try_python(fn, name: str, obs_dim: int, act_dim: int) -> None:
    """Call fn once in plain Python: an out-of-range index raises here (numba does not
    bounds-check, so the compiled code would read past the buffer instead)."""
    g = np.random.default_rng(0)
    obs, act, nxt = (g.standard_normal(n).astype(np.float32) for n in (obs_dim, act_dim, obs_dim))
    try:
        value = fn(obs, act, nxt)
    except Exception as exc:
        raise ValueError(f"compile_reward: {name}(obs [{obs_dim}], act [{act_dim}], "
                         f"next_obs [{obs_dim}]) raised {type(exc).__name__}: {exc}") from exc
    if np.ndim(value) != 0:
        raise ValueError(f"compile_reward: {name} must return one number per transition, "
                         f"got shape {np.shape(value)}")


def compile_reward(fn, obs_dim: int, act_dim: int, name: str | None = None) -> Reward:
    """A Reward whose C callback and batched torch_fn run the numba-compiled ``fn``.

    fn(obs, act, next_obs) -> float over one transition (1-D float32 arrays of sizes
    obs_dim, act_dim, obs_dim; numpy-style indexing, loops, math / numpy scalar functions).
    Raises ImportError without numba, ValueError when fn fails on a sample transition or
    does not compile (with numba's message).
    """
    numba = _numba()
    if not callable(fn):
        raise TypeError(f"compile_reward: fn must be a Python function, got {type(fn).__name__}")
    obs_dim, act_dim = _check_dim("obs_dim", obs_dim), _check_dim("act_dim", act_dim)
    name = name or getattr(fn, "__name__", "reward")
    _try_python(fn, name, obs_dim, act_dim)

    from numba import types

    f32 = types.float32
    row = f32[::1]  # what carray gives and what a row of a C-contiguous 2-D array is
    try:
        user = fn if isinstance(fn, numba.core.registry.CPUDispatcher) else numba.njit(fn)
        user.compile((row, row, row))

        @numba.cfunc(f32(types.CPointer(f32), types.CPointer(f32), types.CPointer(f32),
                         types.int64, types.int64))
        def callback(obs, act, next_obs, d, a):
            return numba.float32(user(numba.carray(obs, (d,)), numba.carray(act, (a,)),
                                      numba.carray(next_obs, (d,))))

        @numba.njit(types.void(f32[:, ::1], f32[:, ::1], f32[:, ::1], f32[::1]))
        def rows(obs, act, next_obs, out):
            for i in range(obs.shape[0]):
                out[i] = numba.float32(user(obs[i], act[i], next_obs[i]))
    except numba.core.errors.NumbaError as exc:
        raise ValueError(f"compile_reward: numba could not compile {name!r} for "
                         f"(obs float32[{obs_dim}], act float32[{act_dim}], next_obs "
                         f"float32[{obs_dim}]) -> float:\n{exc}") from exc

    def torch_fn(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """[..., D], [..., A], [..., D] (broadcast over leading dims) -> float32 [...]."""
        for arg, t, width in (("obs", obs, obs_dim), ("act", act, act_dim),
                              ("next_obs", next_obs, obs_dim)):
            if not isinstance(t, torch.Tensor) or t.dim() < 1 or t.shape[-1] != width:
                raise ValueError(f"{name}: {arg} must be a tensor [..., {width}], got "
                                 f"{tuple(getattr(t, 'shape', ()))}")
        lead = torch.broadcast_shapes(obs.shape[:-1], act.shape[:-1], next_obs.shape[:-1])

        def flat(t, width):  # [..., W] -> contiguous float32 CPU [rows, W]
            t = t.detach().expand(*lead, width).reshape(-1, width)
            return t.to(device="cpu", dtype=torch.float32).contiguous().numpy()

        out = np.empty(int(np.prod(lead, dtype=np.int64)), dtype=np.float32)
        rows(flat(obs, obs_dim), flat(act, act_dim), flat(next_obs, obs_dim), out)
        return torch.from_numpy(out).reshape(lead).to(obs.device)

    torch_fn.__name__ = name
    return Reward(name, torch_fn, kind=RewardKind.CALLBACK, address=int(callback.address),
                  keepalive=(callback, rows, user))
