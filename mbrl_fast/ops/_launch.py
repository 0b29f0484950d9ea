"""Launcher glue the compiled backends share (ops/_cpu.py, ops/_cuda.py,
ops/_triton/propagate.py): the MLPDesc and PropagateDesc fields the CPU and CUDA modules
both take (csrc/include/mlp_desc.h; the PropagateDesc of csrc/cpu/propagate.h and
csrc/cuda/ops_cuda.h), the reward id and dt a kernel gets, the member slots and the TS-inf
visiting order, the per-row output buffers and their reshape into the contract's result,
and the decoding of the non-finite report.

The kernels of every backend see particles as rows, row = (n P + p) K + k, and write
states [rows, H + 1, D], rewards [rows, H], per-row returns [rows] and taken actions
[rows, H, A]; :func:`to_result` views them as the contract's shapes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mbrl_fast import backends
from mbrl_fast.ops.contract import (
    ACTIVATION_IDS,
    MODE_IDS,
    NO_NON_FINITE,
    MLPParams,
    PropagateResult,
    PropagateSpec,
    Reward,
    RewardKind,
    raise_non_finite_key,
    reward_kind,
)
from mbrl_fast.ops.features import ObsFeatures


def addr(t: torch.Tensor | None) -> int:
    """A tensor's address for the compiled modules, 0 for None."""
    return 0 if t is None else t.data_ptr()


def fill_mlp_desc(d, params: MLPParams, sizes: Sequence[int] | None = None,
                  weights: Sequence[torch.Tensor] | None = None, bf16: bool | None = None):
    """Set the fields of a compiled module's ``MLPDesc`` ``d`` (csrc/include/mlp_desc.h, one
    struct for _C and _C_cuda): addresses of params' tensors, read in place. ``weights`` /
    ``bf16``: what the kernel reads instead of params' own (the CPU's fp32 unpacking of bf16
    weights its path cannot run); the caller keeps them alive for the call."""
    weights = params.weights if weights is None else weights
    d.sizes = [int(s) for s in (sizes if sizes is not None else params.sizes)]
    d.weights = [w.data_ptr() for w in weights]
    d.biases = [b.data_ptr() for b in params.biases]
    d.members = params.num_members
    d.bf16 = params.is_bf16 if bf16 is None else bf16
    d.activation = ACTIVATION_IDS[params.activation]
    d.slope = float(params.leaky_slope)
    d.in_mean, d.in_std = addr(params.in_mean), addr(params.in_std)
    d.max_logvar, d.min_logvar = addr(params.max_logvar), addr(params.min_logvar)
    return d


@functools.lru_cache(maxsize=32)
def feature_lists(features: ObsFeatures | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(src [F], kind [F]) of the model input map on the host: the kernels take the table
    in their descriptor; ((), ()) for features(s) = s."""
    if features is None or features.is_identity:
        return (), ()
    src, kind = features.table()
    return tuple(src.tolist()), tuple(kind.tolist())


def reward_id(spec: PropagateSpec, backend: str) -> int:
    """The RewardKind the kernel computes; raises for a reward ``backend`` does not fuse
    (the op scores those with torch after the rollout, see ops/propagate.py)."""
    kind = reward_kind(spec.reward)
    if kind != RewardKind.NONE and backend not in backends.CAPABILITIES.get(kind.feature, ()):
        raise ValueError(f"propagate_{backend}: reward {getattr(spec.reward, 'name', kind)!r} "
                         f"({kind.name}) is not fused in the {backend} kernel "
                         f"(backends.CAPABILITIES); call it through ops.propagate")
    return int(kind)


def reward_dt(spec: PropagateSpec) -> float:
    """The reward's control step dt (0.0 when it has none)."""
    return float(spec.reward.dt) if isinstance(spec.reward, Reward) else 0.0


def member_slots(spec: PropagateSpec) -> tuple[int, ...]:
    """The member of each slot a particle may draw (fixed: the one member)."""
    return (spec.member,) if spec.mode == "fixed" else tuple(int(m) for m in spec.members.tolist())


FillFn = Callable[[str, int, int, int, torch.device], torch.Tensor]


def tsinf_order(spec: PropagateSpec, fill_uint32: FillFn, device) -> torch.Tensor | None:
    """[rows] int64 particle order sorted by drawn member slot (a device argsort, no host
    sync), so a tile of particles almost always needs one member's MLP instead of up to
    E'; None when there is nothing to sort (not tsinf, or one slot). ``fill_uint32`` is the
    backend's Philox fill: the draws are the kernel's, randint(seed, offset + 1)."""
    m = len(member_slots(spec))
    if spec.mode != "tsinf" or m < 2:
        return None
    x = fill_uint32("uint32", spec.rows, spec.seed, spec.offset + 1, device)
    return torch.argsort((x * m) >> 32, stable=True)


@dataclass
class RowOutputs:
    """The kernel's output buffers, per particle row (None: not written)."""

    states: torch.Tensor | None  # [rows, H + 1, D] when return_states
    rewards: torch.Tensor | None  # [rows, H] when return_states and a reward
    returns: torch.Tensor | None  # [rows] sum_t r_t when a reward
    taken: torch.Tensor | None  # [rows, H, A] with a policy in the loop
    bad: torch.Tensor  # [1] int64 non-finite key, NO_NON_FINITE when none


def row_outputs(spec: PropagateSpec, has_reward: bool, has_policy: bool, device) -> RowOutputs:
    s, rows = spec, spec.rows
    f32 = dict(dtype=torch.float32, device=device)
    return RowOutputs(
        states=torch.empty(rows, s.h + 1, s.d, **f32) if s.return_states else None,
        rewards=torch.empty(rows, s.h, **f32) if s.return_states and has_reward else None,
        returns=torch.empty(rows, **f32) if has_reward else None,
        taken=torch.empty(rows, s.h, s.a, **f32) if has_policy else None,
        bad=torch.full((1,), NO_NON_FINITE, dtype=torch.int64, device=device),
    )


def to_result(out: RowOutputs, spec: PropagateSpec, num_members_all: int) -> PropagateResult:
    """Raise the reference's FloatingPointError for a recorded non-finite state (one int64
    read back per call), else the launcher result: returns per particle [N, P, K]."""
    raise_non_finite_key(int(out.bad.item()), spec, num_members_all)
    s = spec
    view = lambda t, *shape: None if t is None else t.view(s.n, s.p, s.k, *shape)  # noqa: E731
    return PropagateResult(states=view(out.states, s.h + 1, s.d), rewards=view(out.rewards, s.h),
                           returns=view(out.returns), actions=view(out.taken, s.h, s.a))


def fill_propagate_desc(desc, spec: PropagateSpec, params: MLPParams, reward: int, obs, actions,
                        out: RowOutputs):
    """Set the fields the CPU and CUDA ``PropagateDesc`` share (the call's sizes, mode,
    reward id and dt, member slots, input features, Philox stream, and the addresses of
    the inputs and the row outputs); each launcher adds its own (CPU: the callback; CUDA:
    return_states, the TS-inf order, the non-finite key and num_members_all)."""
    s = spec
    desc.n, desc.p, desc.k, desc.h = s.n, s.p, s.k, s.h
    desc.d, desc.a, desc.d_out = s.d, s.a, s.d_out
    desc.mode, desc.reward = MODE_IDS[s.mode], reward
    desc.members = list(member_slots(s))
    desc.feat_src, desc.feat_kind = feature_lists(params.obs_features)
    desc.seed, desc.offset, desc.dt = s.seed, s.offset, reward_dt(s)
    desc.obs, desc.actions = obs.data_ptr(), addr(actions)
    desc.states, desc.rewards = addr(out.states), addr(out.rewards)
    desc.row_returns, desc.taken = addr(out.returns), addr(out.taken)
    return desc
