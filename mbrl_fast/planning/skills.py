"""DADS's latent-space planner: MPPI over sequences of skills, scored through the skill dynamics.

Sharma et al. 2020, Algorithm 2, with the details of the authors' ``eval_mppi``
(google-research/dads, dads_off.py). For N start states at once, a plan is H_P skills
z_1 .. z_{H_P} in [-1, 1]^Z, each held for H_Z env steps::

    means mu_1 .. mu_{H_P} [N, H_P, Z] (warm: the previous plan shifted by one skill;
        a new slot starts at a draw from N(0, I), or 0 with init_mean="zero")
    repeat R (refine_steps) times:
        z[n, k, i] = clip(mu_i + sqrt(prior_var) eps, -1, 1)        K candidates, eps ~ N(0, I)
        z[n, k, i] = beta z[n, k, i - 1] + (1 - beta) z[n, k, i]      i >= 1 (smoothing beta)
        r[n, k]    = sum over the H_P H_Z predicted steps of reward(s_t, z, s_{t+1})
                     (ops.propagate: the skill is the action, held H_Z steps; the mean of
                     q, propagation "expectation", as DADS's predict_state)
        mu         = sum_k softmax_k(gamma r[n]) z[n, k]              (ops.mppi_update)
    execute mu_1 for H_Z steps with the skill policy pi(a | s, mu_1); shift the plan

Defaults are the paper's: H_P = 1, H_Z = 10, K = 50 candidates, R = 10, gamma = 10,
beta = 0.9, prior variance 1.5 (the authors' ``prior_type=normal`` MPPI).

The goal is a reward over predicted rollout states (``SkillDynamics.rollout_state``:
the skill-dynamics state, x-y first for the tasks here): a built-in name or
``ops.Reward`` that the kernels fuse (e.g. ``compile_reward`` of a plain-Python
function: numba, called inside the compiled rollout), or a batched torch function
``fn(obs, skill, next_obs) -> [...]``, called once per refinement on the rolled-out
states [N, K, 1, H, D] (so a goal tensor [N, 1, 1, 1, C] gives every start state its
own goal: :func:`goal_reward`). It must return one value per predicted state.

Random numbers come from the planner's Philox key (seed, offset), like every planner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mbrl_fast.ops import noise, rewards
from mbrl_fast.ops.elite_update import mppi_update
from mbrl_fast.ops.propagate import OFFSETS_PER_CALL, propagate
from mbrl_fast.planning.base import PRECISIONS, as_obs_tensor, check_float, check_int

INIT_MEANS = ("sample", "zero")


@dataclass
class SkillPlannerConfig:
    """The latent planner (Sharma et al. 2020, appendix; google-research/dads configs)."""

    plan_horizon: int = 1
    """H_P: skills per plan."""
    skill_horizon: int = 10
    """H_Z: env steps each skill is held (``primitive_horizon``)."""
    candidates: int = 50
    """K: candidate skill sequences per refinement (``num_candidate_sequences``)."""
    refine_steps: int = 10
    """R: MPPI refinements per decision."""
    gamma: float = 10.0
    """MPPI weights softmax(gamma * return) (``mppi_gamma``)."""
    smoothing: float = 0.9
    """beta: each sampled skill is beta * the previous one + (1 - beta) * itself (H_P > 1)."""
    prior_var: float = 1.5
    """Variance of the sampling distribution around the means (the authors' 1.5 I)."""
    init_mean: str = "sample"
    """A new plan slot's mean: 'sample' (a draw from N(0, I), the authors' code) or 'zero'."""
    backend: str = "auto"
    """ops backend of the rollouts and updates: auto, reference, cpu."""
    precision: str = "fp32"
    """Weights of the rollouts: "fp32", or "bf16" (q's weights packed by ``ops.pack_bf16``
    and multiplied as bf16 with fp32 accumulation: AVX512-BF16 where the CPU has it)."""


def goal_reward(goal, coords=(0, 1)) -> rewards.Reward:
    """-||next_obs[..., coords] - goal|| per predicted state (DADS's navigation reward).

    goal: [C] for every start state, or [N, C] (one per start state; broadcast over the
    planner's states [N, K, 1, H, D])."""
    goal = torch.as_tensor(goal, dtype=torch.float32)
    coords = [int(c) for c in coords]
    if goal.dim() not in (1, 2) or goal.shape[-1] != len(coords):
        raise ValueError(f"goal must be [{len(coords)}] or [N, {len(coords)}], got "
                         f"{tuple(goal.shape)}")
    target = goal if goal.dim() == 1 else goal[:, None, None, None, :]

    def reward(obs, skill, next_obs):
        return -torch.linalg.vector_norm(next_obs[..., coords] - target, dim=-1)

    return rewards.Reward("goal", reward)


class SkillPlanner:
    """Algorithm 2 (module docstring) over ``dynamics``: an object with ``mlp_params()`` (a
    Gaussian MLP of the rollout state with the skill as the action), ``rollout_state(obs)``
    and ``skill_dim`` (:class:`mbrl_fast.models.skill_dynamics.SkillDynamics`)."""

    def __init__(self, dynamics, config: SkillPlannerConfig | None = None, *, seed: int = 0):
        c = self.config = config if config is not None else SkillPlannerConfig()
        for name in ("plan_horizon", "skill_horizon", "candidates", "refine_steps"):
            check_int(f"config.{name}", getattr(c, name))
        check_float("config.gamma", c.gamma, 0.0, low_open=True)
        check_float("config.smoothing", c.smoothing, 0.0, 1.0)
        check_float("config.prior_var", c.prior_var, 0.0)
        if c.init_mean not in INIT_MEANS:
            raise ValueError(f"config.init_mean must be one of {INIT_MEANS}, got {c.init_mean!r}")
        if c.precision not in PRECISIONS:
            raise ValueError(f"config.precision must be one of {PRECISIONS}, got {c.precision!r}")
        needs = ("mlp_params", "rollout_state") + (("mlp_params_bf16",) if c.precision == "bf16"
                                                   else ())
        for attr in needs:
            if not callable(getattr(dynamics, attr, None)):
                raise TypeError(f"dynamics must have {attr}() (a SkillDynamics), got "
                                f"{type(dynamics).__name__}")
        self.dynamics = dynamics
        self.skill_dim = check_int("dynamics.skill_dim", int(dynamics.skill_dim))
        self._means: torch.Tensor | None = None  # [N, H_P, Z]
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        """Forget the plan (a new episode); with ``seed``, restart the noise stream."""
        self._means = None
        if seed is not None:
            if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
                raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
            self.seed, self.offset = seed, 0

    def _offsets(self, count: int) -> int:
        first = self.offset
        self.offset += count
        return first

    def _fresh(self, n: int, slots: int) -> torch.Tensor:
        shape = (n, slots, self.skill_dim)
        if self.config.init_mean == "zero":
            return torch.zeros(shape)
        return noise.normal(shape, self.seed, self._offsets(1), backend=self._op_backend)

    @property
    def _op_backend(self) -> str:
        return self.config.backend if self.config.backend in ("auto", "reference", "cpu") \
            else "auto"

    def plan(self, obs, reward) -> torch.Tensor:
        """obs [D] -> skill [Z], or [N, D] -> [N, Z]: the skill to execute for H_Z steps."""
        c = self.config
        obs_t = as_obs_tensor(obs, "cpu")
        single = obs_t.dim() == 1
        obs_t = obs_t.reshape(-1, obs_t.shape[-1])
        n = obs_t.shape[0]
        reward = rewards.resolve(reward)
        start = self.dynamics.rollout_state(obs_t)  # [N, D_r]
        means = self._means if self._means is not None and self._means.shape[0] == n \
            else self._fresh(n, c.plan_horizon)
        std = math.sqrt(c.prior_var)
        for _ in range(c.refine_steps):
            eps = noise.normal((n, c.candidates, c.plan_horizon, self.skill_dim), self.seed,
                               self._offsets(1), backend=self._op_backend)
            cand = torch.clamp(means[:, None] + std * eps, -1.0, 1.0)  # [N, K, H_P, Z]
            for i in range(1, c.plan_horizon):
                cand[:, :, i] = c.smoothing * cand[:, :, i - 1] + (1 - c.smoothing) * cand[:, :, i]
            returns = self.evaluate(start, cand, reward)
            means = mppi_update(cand, returns, temperature=1.0 / c.gamma,
                                backend=self._op_backend).mean
        self._means = torch.cat([means[:, 1:], self._fresh(n, 1)], dim=1)
        chosen = means[:, 0].clone()
        return chosen[0] if single else chosen

    def evaluate(self, start: torch.Tensor, skills: torch.Tensor, reward) -> torch.Tensor:
        """Returns [N, K] of skill sequences [N, K, H_P, Z] from rollout states [N, D_r]."""
        c = self.config
        reward = rewards.resolve(reward)
        actions = skills.repeat_interleave(c.skill_horizon, dim=2).contiguous()  # [N,K,H,Z]
        common = dict(particles=1, mode="expectation", seed=self.seed,
                      offset=self._offsets(OFFSETS_PER_CALL), backend=c.backend)
        params = self.dynamics.mlp_params_bf16() if c.precision == "bf16" else \
            self.dynamics.mlp_params()
        if reward.kind != rewards.RewardKind.TORCH:  # fused where the backend can (propagate)
            return propagate(params, start, actions, reward=reward, return_states=False,
                             **common).returns
        states = propagate(params, start, actions, **common).states  # [N, K, 1, H + 1, D]
        n, k, h = actions.shape[0], actions.shape[1], actions.shape[2]
        r = reward.torch_fn(states[..., :-1, :], actions[:, :, None], states[..., 1:, :])
        expected = (n, k, 1, h)
        if not isinstance(r, torch.Tensor) or tuple(r.shape) != expected:
            got = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
            raise ValueError(f"the goal reward must return one value per predicted state: "
                             f"expected shape {expected} for states "
                             f"{tuple(states[..., 1:, :].shape)}, got {got}")
        return r.to(torch.float32).sum(dim=-1).mean(dim=-1)
