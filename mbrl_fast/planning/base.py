"""What every sampling planner shares: the model, bounds, rollouts, noise counter, warm start.

A planner maximizes the expected return of an action sequence [H, A] from a start
state under a learned ensemble, for N start states at once: each optimizer
iteration evaluates all N x P candidate sequences in ONE ``ops.propagate`` call.

Random numbers: a planner owns a Philox key ``(seed, offset)``. Every propagate
call takes ``ops.propagate.OFFSETS_PER_CALL`` offsets and every sampler call
``ops.elite_update.SAMPLE_OFFSETS``, in call order, so a planner built with the
same seed and fed the same observations plans the same actions.

Warm start: ``plan`` shifts the previous solution (per environment) by ``shift``
steps (the actions executed since) and fills the tail with the midpoint of the
action bounds, as PETS and mbrl-lib do.

Termination (mbrl-lib's convention): with ``termination(obs, act, next_obs) -> bool``,
a particle's reward counts up to and including its first terminal step; later
rewards are zeroed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mbrl_fast.ops.elite_update import SAMPLE_OFFSETS
from mbrl_fast.ops.ensemble_mlp import MLPParams
from mbrl_fast.ops.propagate import OFFSETS_PER_CALL, propagate
from mbrl_fast.planning.step_model import StepModel, is_step_model

PROPAGATION_MODES = ("ts1", "tsinf", "expectation")
PRECISIONS = ("fp32", "bf16")
_U64 = 1 << 64


def check_int(name: str, value, low: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def check_float(name: str, value, low: float, high: float = math.inf, *,
                low_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be a float in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def as_obs_tensor(obs, device) -> torch.Tensor:
    """numpy or torch obs [D] or [N, D] -> float32 tensor on ``device``."""
    if not isinstance(obs, torch.Tensor):
        obs = torch.as_tensor(np.asarray(obs, dtype=np.float32))
    obs = obs.to(device=device, dtype=torch.float32)
    if obs.dim() not in (1, 2) or obs.shape[-1] < 1:
        raise ValueError(f"obs must be [D] or [N, D], got {tuple(obs.shape)}")
    return obs


class Planner:
    """Base class: subclasses implement ``_optimize(obs [N, D], mean [N, H, A]) -> [N, H, A]``.

    model: an ``MLPParams`` (Gaussian head over D or D + 1 outputs), or an object with
        ``mlp_params() -> MLPParams`` and optionally ``elite_members`` (list[int] | None,
        passed to propagate as ``members``); both are read at every ``plan`` call. Or any
        model: a torch callable ``step(state [R, D], action [R, A]) -> next_state`` or
        ``(mean, logvar)``, rolled out by the reference loop of :mod:`.step_model` (slower).
    action_low, action_high: array-like [A], finite, low <= high.
    reward: anything ``ops.propagate`` accepts (built-in name, Reward, batched torch
        fn(obs, act, next_obs) -> [...], or "model" for a learned reward head).
    termination: optional batched torch fn(obs, act, next_obs) -> bool [...].
    horizon H, particles K per sequence, propagation in ("ts1", "tsinf", "expectation").
    seed: the planner's Philox seed; backend: for propagate and the elite ops.
    precision: "fp32", or "bf16" to roll out on bf16-packed weights (``ops.pack_bf16``;
        AVX512-BF16 on the CPU, 1.7x faster per PETS-HalfCheetah act than fp32, with the
        same plan, see README's benchmark): from ``model.mlp_params_bf16()`` (the model
        ensembles cache the packing while their weights are unchanged), or an MLPParams
        that already is bf16.
    """

    def __init__(self, model, action_low, action_high, *, reward, horizon: int = 30,
                 particles: int = 20, propagation: str = "tsinf", termination=None,
                 seed: int = 0, backend: str = "auto", precision: str = "fp32"):
        if is_step_model(model):
            model = StepModel(model)
        elif not isinstance(model, MLPParams) and not callable(getattr(model, "mlp_params", None)):
            raise TypeError("model must be an MLPParams, have a mlp_params() method, or be a "
                            f"torch callable step(state, action), got {type(model).__name__}")
        self.model = model
        self.horizon = check_int("horizon", horizon)
        self.particles = check_int("particles", particles)
        if propagation not in PROPAGATION_MODES:
            raise ValueError(f"propagation must be one of {PROPAGATION_MODES}, got {propagation!r}")
        self.propagation = propagation
        if reward is None:
            raise ValueError("reward must be given: a built-in name, a Reward, a batched torch "
                             "fn(obs, act, next_obs) or 'model'")
        self.reward = reward
        if termination is not None and not callable(termination):
            raise TypeError(f"termination must be None or callable, got "
                            f"{type(termination).__name__}")
        self.termination = termination
        self.backend = backend
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "bf16" and not callable(getattr(model, "mlp_params_bf16", None)) and \
                not (isinstance(model, MLPParams) and model.is_bf16):
            raise TypeError("precision='bf16' needs a model with mlp_params_bf16() (the mbrl_fast "
                            "ensembles) or bf16-packed MLPParams (ops.pack_bf16)")
        self.precision = precision
        device = self.model.device if isinstance(model, StepModel) else self._params().device
        low = torch.as_tensor(np.asarray(action_low, dtype=np.float32), device=device).reshape(-1)
        high = torch.as_tensor(np.asarray(action_high, dtype=np.float32), device=device).reshape(-1)
        if low.shape != high.shape or low.numel() < 1:
            raise ValueError(f"action_low and action_high must both be [A], got {tuple(low.shape)} "
                             f"and {tuple(high.shape)}")
        if not (torch.isfinite(low).all() and torch.isfinite(high).all()) or (low > high).any():
            raise ValueError("action_low and action_high must be finite with low <= high")
        self.action_low, self.action_high = low.contiguous(), high.contiguous()
        self.action_dim = int(low.numel())
        self._prev: torch.Tensor | None = None  # [N, H, A] last solution
        self.last_shift = 1  # the shift of the current plan call
        self._set_seed(seed)

    # ---- the public verbs ----------------------------------------------------

    def plan(self, obs, *, shift: int = 1) -> torch.Tensor:
        """obs [D] -> [H, A], or [N, D] -> [N, H, A]: the planned action sequences.

        shift: steps executed since the previous plan (the warm-start shift).
        """
        obs_t = as_obs_tensor(obs, self.action_low.device)
        single = obs_t.dim() == 1
        obs_t = obs_t.reshape(-1, obs_t.shape[-1]).contiguous()  # [N, D]
        self.last_shift = check_int("shift", shift, 0)
        mean = self._warm_start(obs_t.shape[0], shift)  # [N, H, A]
        solution = self._optimize(obs_t, mean)
        self._prev = solution.detach().clone()  # the caller may write to what we return
        return solution[0] if single else solution

    def reset(self, seed: int | None = None) -> None:
        """Forget the warm start (a new episode); with ``seed``, also restart the noise."""
        self._prev = None
        if seed is not None:
            self._set_seed(seed)

    def _set_seed(self, seed: int) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < _U64:
            raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
        self.seed, self.offset = seed, 0

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Expected returns [N, P] of action sequences actions [N, P, H, A] from obs [N, D]."""
        masked = self.termination is not None
        if isinstance(self.model, StepModel):  # any model: the reference rollout loop
            result = self.model.rollout(
                obs, actions, particles=self.particles, mode=self.propagation, seed=self.seed,
                offset=self.take_offsets(OFFSETS_PER_CALL), reward=self.reward,
                return_states=masked)
        else:
            result = propagate(
                self._params(), obs, actions, particles=self.particles, mode=self.propagation,
                members=getattr(self.model, "elite_members", None), seed=self.seed,
                offset=self.take_offsets(OFFSETS_PER_CALL), reward=self.reward,
                return_states=masked, backend=self.backend)
        if not masked:
            return result.returns
        states = result.states  # [N, P, K, H + 1, D]
        act = actions.unsqueeze(2).expand(-1, -1, self.particles, -1, -1)
        done = self.termination(states[..., :-1, :], act, states[..., 1:, :])
        rewards = result.rewards  # [N, P, K, H]
        done = torch.as_tensor(done, device=rewards.device)
        if done.numel() != rewards.numel():
            raise ValueError(f"termination must return one flag per transition "
                             f"{tuple(rewards.shape)}, got {tuple(done.shape)}")
        done = done.reshape(rewards.shape).to(torch.int32)
        ended_before = (done.cumsum(dim=-1) - done) > 0  # terminated at an earlier step
        return rewards.masked_fill(ended_before, 0.0).sum(dim=-1).mean(dim=-1)

    # ---- helpers for subclasses ------------------------------------------------

    def take_offsets(self, count: int) -> int:
        """The next ``count`` Philox offsets of this planner (returns the first)."""
        first = self.offset
        if first + count > _U64:
            raise OverflowError("the planner's Philox offset counter is exhausted; reset(seed)")
        self.offset = first + count
        return first

    def sample_offset(self) -> int:
        return self.take_offsets(SAMPLE_OFFSETS)

    @property
    def op_backend(self) -> str:
        """Backend for the sampler and elite_update ops: the planner's, unless it is "cuda"
        or "triton", which not every sampler implements (backends.CAPABILITIES); "auto"
        then picks the fastest backend that does, on the samples' device."""
        return self.backend if self.backend in ("auto", "reference", "cpu") else "auto"

    def initial_mean(self, n: int) -> torch.Tensor:
        """[N, H, A] midpoint of the bounds."""
        mid = (self.action_low + self.action_high) * 0.5
        return mid.expand(n, self.horizon, -1).clone()

    def initial_var(self, n: int) -> torch.Tensor:
        """[N, H, A] ((high - low) / 4)^2, PETS's initial variance."""
        var = ((self.action_high - self.action_low) * 0.25) ** 2
        return var.expand(n, self.horizon, -1).clone()

    def _warm_start(self, n: int, shift: int) -> torch.Tensor:
        mean = self.initial_mean(n)
        if self._prev is not None and self._prev.shape[0] == n and shift < self.horizon:
            mean[:, : self.horizon - shift] = self._prev[:, shift:]
        return mean

    def _params(self) -> MLPParams:
        if isinstance(self.model, MLPParams):
            return self.model
        return self.model.mlp_params_bf16() if self.precision == "bf16" else self.model.mlp_params()

    def _optimize(self, obs: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
