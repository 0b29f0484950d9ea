"""Launchers for the compiled CPU kernels (``mbrl_fast._C``).

They allocate the outputs, pass addresses and sizes to ``_C`` (which does not link
libtorch and releases the GIL), and turn the kernels' error reports into the
references' exceptions. Inputs were validated by the op (ops/ensemble_mlp.py,
ops/propagate.py); tensors are contiguous float32 on the CPU.

Kernel choice: the AVX-512 kernels (AVX512-BF16 for bf16 weights) when the CPU
has them, else portable C++ loops. The one switch, for testing the fallback:
``MBRL_FAST_CPU_KERNELS=portable`` forces the portable kernels (default ``auto``).
"""

from __future__ import annotations

import os

import torch

from mbrl_fast import backends
from mbrl_fast.ops.ensemble_mlp import ACTIVATION_IDS, MLPParams
from mbrl_fast.ops.propagate import MODE_IDS, PropagateResult, PropagateSpec, _raise_non_finite
from mbrl_fast.ops.rewards import Reward

KERNELS_ENV_VAR = "MBRL_FAST_CPU_KERNELS"
_REWARD_NONE, _REWARD_MODEL, _REWARD_BUILTIN, _REWARD_CALLBACK = range(4)  # csrc RewardKind


def _portable() -> bool:
    value = os.environ.get(KERNELS_ENV_VAR, "auto") or "auto"
    if value not in ("auto", "portable"):
        raise ValueError(f"{KERNELS_ENV_VAR} must be 'auto' or 'portable', got {value!r}")
    return value == "portable"


def _addr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def _mlp_args(params: MLPParams, sizes) -> tuple:
    """The MLP arguments every _C entry point takes first (csrc make_mlp_view)."""
    return (
        [int(s) for s in sizes],
        [w.data_ptr() for w in params.weights],
        [b.data_ptr() for b in params.biases],
        params.num_members,
        params.is_bf16,
        ACTIVATION_IDS[params.activation],
        float(params.leaky_slope),
        _addr(params.in_mean),
        _addr(params.in_std),
        _addr(params.max_logvar),
        _addr(params.min_logvar),
    )


def ensemble_mlp_cpu(x: torch.Tensor, params: MLPParams, sizes):
    """x [E, B, d_0] contiguous -> y [E, B, d_L] or (mean, logvar) [E, B, d_L / 2] each."""
    e, b, _ = x.shape
    d_l = int(sizes[-1])
    width = d_l // 2 if params.gaussian else d_l
    out = torch.empty(e, b, width, dtype=torch.float32)
    logvar = torch.empty(e, b, width, dtype=torch.float32) if params.gaussian else None
    backends.cpu_module().ensemble_mlp(*_mlp_args(params, sizes), x.data_ptr(), b, out.data_ptr(),
                                       _addr(logvar), _portable())
    return (out, logvar) if params.gaussian else out


def _reward_args(reward) -> tuple[int, int, int]:
    """(kind, builtin id, callback address) for the kernel."""
    if reward is None:
        return _REWARD_NONE, -1, 0
    if reward == "model":
        return _REWARD_MODEL, -1, 0
    if isinstance(reward, Reward) and reward.builtin_id >= 0:
        return _REWARD_BUILTIN, reward.builtin_id, 0
    if isinstance(reward, Reward) and reward.address:
        return _REWARD_CALLBACK, -1, int(reward.address)
    raise ValueError(f"propagate: the cpu kernel cannot apply reward {reward!r} inside the rollout")


def propagate_cpu(params: MLPParams, obs: torch.Tensor, actions: torch.Tensor,
                  spec: PropagateSpec) -> PropagateResult:
    """obs [N, D], actions [N, P, H, A] contiguous -> PropagateResult (see ops/propagate.py)."""
    s = spec
    kind, builtin_id, callback = _reward_args(s.reward)
    states = torch.empty(s.n, s.p, s.k, s.h + 1, s.d) if s.return_states else None
    rewards = torch.empty(s.n, s.p, s.k, s.h) if s.return_states and kind else None
    returns = torch.empty(s.n, s.p) if kind else None
    members = s.members.to(torch.int64).contiguous()
    feats = params.obs_features
    src, feat_kind = (None, None) if feats is None or feats.is_identity else feats.table()
    bad = backends.cpu_module().propagate(
        *_mlp_args(params, params.sizes), s.n, s.p, s.k, s.h, s.d, s.a, s.d_out, MODE_IDS[s.mode],
        s.member, members.data_ptr(), members.numel(), s.seed, s.offset, kind, builtin_id,
        callback, _addr(src), _addr(feat_kind), 0 if src is None else src.numel(),
        obs.data_ptr(), actions.data_ptr(), _addr(states), _addr(rewards), _addr(returns),
        _portable())
    if bad[0] >= 0:
        _raise_non_finite(*bad)
    return PropagateResult(states=states, rewards=rewards, returns=returns)
