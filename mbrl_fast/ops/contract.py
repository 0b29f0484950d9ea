"""The op contract: the types and ids every backend receives and returns.

A leaf module (it imports torch, ``mbrl_fast.backends`` and ``ops/features.py``, never an
op module or a backend). The compiled backends' launchers (ops/_cpu.py, ops/_cuda.py,
ops/_launch.py, ops/_triton/*) import what they need from here; the op modules
(ops/ensemble_mlp.py, ops/propagate.py, ops/elite_update.py, ...) re-export it, validate
their arguments and dispatch to the launcher ops/registry.py looks up. The dependency
runs one way: op module -> registry -> launchers -> contract.

What each backend implements is one table, :data:`mbrl_fast.backends.CAPABILITIES`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch

from mbrl_fast import backends
from mbrl_fast.ops.features import ObsFeatures

# ---- ensemble MLP ------------------------------------------------------------------

ACTIVATIONS = ("silu", "relu", "tanh", "elu", "leaky_relu", "identity")
ACTIVATION_IDS = {name: i for i, name in enumerate(ACTIVATIONS)}  # shared with csrc


@dataclass(frozen=True)
class MLPParams:
    """An ensemble of MLPs in the layout the kernels read in place (no copy per call).

    weights[l]: [E, d_{l}, d_{l+1}] float32, or bf16 packed [E, ceil(d_l/2), d_{l+1}, 2]
    biases[l]:  [E, d_{l+1}] float32
    """

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    activation: str = "silu"
    in_mean: torch.Tensor | None = None  # [d_0]
    in_std: torch.Tensor | None = None  # [d_0]
    max_logvar: torch.Tensor | None = None  # [d_L / 2]
    min_logvar: torch.Tensor | None = None  # [d_L / 2]
    leaky_slope: float = 0.01
    in_dim: int | None = None  # d_0, needed only for bf16 weights with an odd d_0 and no in_mean
    # How propagate maps a state to the model's input (ops/features.py); d_0 is then
    # F + A. ensemble_mlp itself ignores it: its x already is the model input.
    obs_features: ObsFeatures | None = None

    @property
    def num_members(self) -> int:
        return int(self.biases[0].shape[0])

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer widths (d_0, d_1, ..., d_L)."""
        return (self.in_features,) + tuple(int(b.shape[1]) for b in self.biases)

    @property
    def in_features(self) -> int:
        if self.in_dim is not None:
            return int(self.in_dim)
        if self.in_mean is not None:
            return int(self.in_mean.shape[0])
        w = self.weights[0]
        return int(w.shape[1]) if w.dim() == 3 else 2 * int(w.shape[1])

    @property
    def is_bf16(self) -> bool:
        return self.weights[0].dtype == torch.bfloat16

    def to_bf16(self) -> MLPParams:
        """These params with bf16-packed weights (``pack_bf16``; biases, normalizer and
        bounds shared, not copied). The kernels then read bf16 weights with fp32 activations
        and fp32 accumulation."""
        if self.is_bf16:
            return self
        return replace(self, weights=tuple(pack_bf16(w) for w in self.weights),
                       in_dim=self.in_features)

    @property
    def gaussian(self) -> bool:
        return self.max_logvar is not None

    @property
    def device(self) -> torch.device:
        return self.biases[0].device


def pack_bf16(weight: torch.Tensor) -> torch.Tensor:
    """[E, d_in, d_out] float -> bf16 kernel layout [E, ceil(d_in/2), d_out, 2] (zero-padded)."""
    if weight.dim() != 3:
        raise ValueError(f"weight must be [E, in, out], got shape {tuple(weight.shape)}")
    e, d_in, d_out = weight.shape
    w = weight.detach().to(torch.float32)
    if d_in % 2:
        w = torch.cat([w, w.new_zeros(e, 1, d_out)], dim=1)
    return w.reshape(e, -1, 2, d_out).permute(0, 1, 3, 2).contiguous().to(torch.bfloat16)


def unpack_bf16(packed: torch.Tensor, d_in: int) -> torch.Tensor:
    """bf16 kernel layout [E, ceil(d_in/2), d_out, 2] -> float32 [E, d_in, d_out]."""
    e, half, d_out, two = packed.shape
    w = packed.to(torch.float32).permute(0, 1, 3, 2).reshape(e, 2 * half, d_out)
    return w[:, :d_in]


# ---- propagate -----------------------------------------------------------------------

MODES = ("ts1", "tsinf", "expectation", "fixed")
MODE_IDS = {name: i for i, name in enumerate(MODES)}  # shared with csrc
OFFSETS_PER_CALL = 3  # Philox offsets one propagate call uses: eps, member draws, policy eps


class RewardKind(enum.IntEnum):
    """How r_t is computed; the value is the reward id every compiled kernel receives
    (csrc/include/builtin_rewards.h ``RewardKind``, the Triton kernel's ``REWARD``).
    Which backend fuses which kind: ``backends.CAPABILITIES["reward.<kind>"]``."""

    TORCH = -1  # a batched torch function, applied to the rolled-out states (never fused)
    NONE = 0  # no reward
    MODEL = 1  # the model's reward head: the last of its D + 1 outputs
    HALFCHEETAH = 2  # built-in: (x_{t+1} - x_t) / dt - 0.1 |a_t|^2
    CALLBACK = 3  # a C function pointer (numba): host code, called by the CPU kernel

    @property
    def feature(self) -> str:
        """Its row in the capability table, e.g. "reward.halfcheetah"."""
        return f"reward.{self.name.lower()}"


@dataclass(frozen=True)
class Reward:
    """A reward the propagate op understands (ops/rewards.py: the three forms).

    torch_fn: batched reference ``(obs, act, next_obs) -> [...]`` (every kind has one).
    kind: what a kernel computes inside the rollout (TORCH: nothing, torch_fn scores the
      states afterwards); a non-zero ``address`` makes it CALLBACK.
    dt: the control step of built-ins that difference positions (HalfCheetah), passed
      to the kernels as a parameter.
    address: a C function pointer with the callback ABI of csrc/include/reward_callback.h.
    """

    name: str
    torch_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    kind: RewardKind = RewardKind.TORCH
    dt: float = 0.0
    address: int = 0
    keepalive: object = None  # whatever owns the code behind ``address``

    def __post_init__(self):
        if self.address and self.kind == RewardKind.TORCH:
            object.__setattr__(self, "kind", RewardKind.CALLBACK)
        if self.kind == RewardKind.CALLBACK and not self.address:
            raise ValueError(f"Reward {self.name!r}: kind CALLBACK needs a function address")
        if self.kind == RewardKind.HALFCHEETAH and not self.dt > 0:
            raise ValueError(f"Reward {self.name!r}: kind HALFCHEETAH needs its control step "
                             f"dt > 0, got {self.dt!r}")
        if self.kind in (RewardKind.NONE, RewardKind.MODEL):
            raise ValueError(f"Reward {self.name!r}: kind {self.kind.name} is not a Reward "
                             "(pass reward=None or reward='model' to propagate)")

    def fused_on(self, backend: str) -> bool:
        """True when ``backend``'s propagate kernel applies it inside the rollout (else the
        kernel returns states and ``torch_fn`` scores them in one batched call)."""
        return backend in backends.CAPABILITIES.get(self.kind.feature, ())


def reward_kind(reward) -> RewardKind:
    """The RewardKind of a validated propagate reward (None | "model" | Reward)."""
    if reward is None:
        return RewardKind.NONE
    if isinstance(reward, str) and reward == "model":
        return RewardKind.MODEL
    return reward.kind


@dataclass(frozen=True)
class PropagateSpec:
    """The validated arguments of one propagate call (what every backend receives)."""

    n: int
    p: int
    k: int
    h: int
    d: int
    a: int
    d_out: int
    mode: str
    member: int
    members: torch.Tensor  # [E'] int64
    seed: int
    offset: int
    reward: object  # None | "model" | Reward
    return_states: bool

    @property
    def rows(self) -> int:
        """Particles in the call: row = (n P + p) K + k."""
        return self.n * self.p * self.k


@dataclass
class PropagateResult:
    """What propagate returns. A launcher returns ``returns`` per particle [N, P, K]
    (sum over t); the op averages over the K particles in one place."""

    states: torch.Tensor | None  # [N, P, K, H + 1, D]
    rewards: torch.Tensor | None  # [N, P, K, H]
    returns: torch.Tensor | None  # [N, P] (launchers: [N, P, K])
    actions: torch.Tensor | None = None  # [N, P, K, H, A] (policy in the loop only)


# ---- imagine (ops/imagine.py) ---------------------------------------------------------

# The imagine kernels number their activations on their own (csrc/cpu/imagine.h), not as
# ACTIVATION_IDS above: these ids mean something to the imagine kernels only.
IMAGINE_ACTIVATIONS = ("elu", "silu", "relu", "tanh")
IMAGINE_ACTIVATION_IDS = {name: i for i, name in enumerate(IMAGINE_ACTIVATIONS)}
IMAGINE_STOCH = ("gaussian", "categorical")
IMAGINE_PRECISIONS = ("fp32", "bf16")
IMAGINE_OFFSETS_PER_CALL = 2  # Philox offsets one imagine call uses: eps, latent noise

Layer = tuple[torch.Tensor, torch.Tensor]  # (weight [in, out], bias [out])


@dataclass(frozen=True)
class ImagineParams:
    """The networks of one imagination rollout, weights as [in, out] (``x @ W + b``).

    img_in: ([S + A, Hi], [Hi]); gru: ([Hi + D, 3D], [3D]); prior: layers D -> ... -> 2S
    (gaussian) or G*C (categorical); actor: layers D + S -> ... -> 2A; heads: one MLP per
    head, D + S -> ... -> out_k.
    """

    img_in: Layer
    gru: Layer
    prior: tuple[Layer, ...]
    actor: tuple[Layer, ...]
    heads: tuple[tuple[Layer, ...], ...] = ()
    detached_heads: int = 0  # the last k heads read stop-gradient features (a critic's regression)
    stoch: str = "gaussian"
    classes: int = 0  # C (categorical): S = G * C
    activation: str = "elu"
    unimix: float = 0.01
    z_min_std: float = 0.1
    act_min_std: float = 0.1
    act_max_std: float = 1.0
    act_mean_scale: float = 5.0

    # ---- sizes ----------------------------------------------------------------------
    @property
    def deter(self) -> int:
        return int(self.gru[1].shape[0]) // 3

    @property
    def hidden(self) -> int:
        return int(self.img_in[1].shape[0])

    @property
    def act_dim(self) -> int:
        return int(self.actor[-1][1].shape[0]) // 2

    @property
    def stoch_dim(self) -> int:
        return int(self.img_in[0].shape[0]) - self.act_dim

    @property
    def groups(self) -> int:
        return self.stoch_dim // self.classes if self.stoch == "categorical" else 0

    # ---- a flat tuple of tensors (the autograd.Function's inputs) and back ----------------
    def tensors(self) -> list[torch.Tensor]:
        out = [*self.img_in, *self.gru]
        for mlp in (self.prior, self.actor, *self.heads):
            for w, b in mlp:
                out += [w, b]
        return out

    def with_tensors(self, tensors) -> ImagineParams:
        it = iter(tensors)

        def layers(n):
            return tuple((next(it), next(it)) for _ in range(n))

        img_in, gru = layers(1)[0], layers(1)[0]
        prior, actor = layers(len(self.prior)), layers(len(self.actor))
        heads = tuple(layers(len(h)) for h in self.heads)
        return replace(self, img_in=img_in, gru=gru, prior=prior, actor=actor, heads=heads)

    def detach(self) -> ImagineParams:
        return self.with_tensors([t.detach() for t in self.tensors()])

    def options(self) -> dict:
        """The non-tensor fields."""
        skip = {"img_in", "gru", "prior", "actor", "heads"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


@dataclass
class ImagineResult:
    """What :func:`imagine` returns (see the module docstring for the math)."""

    h: torch.Tensor  # [H+1, B, D]
    z: torch.Tensor  # [H+1, B, S]
    action: torch.Tensor  # [H, B, A]
    mean: torch.Tensor  # [H, B, A]
    std: torch.Tensor  # [H, B, A]
    heads: list[torch.Tensor]  # [H+1, B, out_k] each

    @property
    def feat(self) -> torch.Tensor:
        """[H+1, B, D + S]: the features the heads read."""
        return torch.cat([self.h, self.z], -1)


# ---- skill_reward (ops/skill_reward.py) ------------------------------------------------

class SkillReward(NamedTuple):
    """What skill_reward returns (ops/skill_reward.py)."""

    reward: torch.Tensor  # [M]
    log_q: torch.Tensor  # [M]    l(m, z_m)
    log_q_prior: torch.Tensor  # [M, L] l(m, z_{m,i})


class SkillRewardSpec(NamedTuple):
    """The validated sizes of one call (what every backend receives)."""

    m: int
    l: int
    f: int
    z: int
    p: int
    prior_shared: bool
    include_skill: bool


# ---- the non-finite report -----------------------------------------------------------
#
# A kernel that meets a non-finite state records the key
#     (t * rows + row) * (E + 1) + member + 1          (member -1: expectation)
# with an atomic min into one int64 initialised to NO_NON_FINITE, so the launcher reads one
# int64 back per call and reports the first bad (step, row), as the reference does.

NO_NON_FINITE = 2**63 - 1  # the key's "none yet" value: int64 max, above every key


def raise_non_finite(t: int, member: int, n: int, p: int, k: int) -> None:
    raise FloatingPointError(
        f"propagate: the model produced a non-finite state at step {t} (member {member}, "
        f"start state {n}, sequence {p}, particle {k}); check the model's weights and "
        "normalizer, or the action bounds")


def raise_non_finite_row(t: int, member: int, row: int, spec: PropagateSpec) -> None:
    """:func:`raise_non_finite` for particle row ``row`` = (n P + p) K + k."""
    raise_non_finite(t, member, row // (spec.p * spec.k), (row // spec.k) % spec.p, row % spec.k)


def raise_non_finite_key(key: int, spec: PropagateSpec, num_members_all: int) -> None:
    """Raise for a kernel's key (see above); nothing when key == NO_NON_FINITE."""
    if key == NO_NON_FINITE:
        return
    mem = key % (num_members_all + 1) - 1
    t, row = divmod(key // (num_members_all + 1), spec.rows)
    raise_non_finite_row(t, mem, row, spec)
