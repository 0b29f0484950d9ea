"""DADS: dynamics-aware unsupervised discovery of skills (Sharma et al. 2020, arXiv:1907.01657).

Algorithm 1 of the paper, on-policy, with the settings of the authors' code
(google-research/dads, configs/*_onpolicy.txt) as defaults::

    every iteration:
        collect M on-policy transitions (num_envs envs in lockstep): each episode draws one
            skill z ~ U[-1, 1]^Z and runs pi(a | s, z) (the observation without x-y, then z)
            for up to episode_steps steps
        fold them into q's normalizers; K1 Adam steps of maximum likelihood on them
            (models/skill_dynamics.py)
        relabel: r = reward_scale * r_z(s, a, s'), DADS's intrinsic reward against L
            skills drawn from the prior per transition, in one compiled call
            (ops.skill_reward)
        K2 SAC updates (agents/sac.py) on minibatches of the M relabelled transitions

Zero-shot planning (planning/skills.py): MPPI over skills scored through q, each skill
held H_Z steps and executed by pi; ``evaluate`` and ``evaluate_goals`` navigate to
random goals (agents/dads_eval.py).

One iteration of the agent protocol is an "epoch" of M env steps; the budget is
``steps``. Every transition goes to the journal with its skill; the agent keeps the
last ``replay_capacity`` of them (``records``), and trains only on the current
iteration's (plus, after a resume, the interrupted attempt's: same policy, so still
on-policy). Actions are stored in policy units [-1, 1].
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from mbrl_fast.agents.base import Agent, episode_seed
from mbrl_fast.agents.sac import SAC, SACBatch, SACConfig
from mbrl_fast.models.io import rng_state_from_tensors, rng_state_to_tensors
from mbrl_fast.models.skill_dynamics import (
    SkillDynamicsConfig,
    SkillDynamicsTrainer,
    make_skill_dynamics,
)
from mbrl_fast.nn.dense import keep_freed_memory
from mbrl_fast.planning.skills import SkillPlanner, SkillPlannerConfig

_EVAL = 3_000_000  # episode numbers of episode_seed no training episode reaches
FIELDS = ("iteration", "return", "env_steps", "wall_clock_s", "intrinsic_reward", "log_q",
          "q_loss", "q_error", "critic_loss", "actor_loss", "alpha", "entropy", "episodes",
          "env_s", "q_s", "reward_s", "update_s", "eval_s", "goal_success",
          "goal_distance_ratio")


@dataclass
class DADSConfig:
    """DADS's hyperparameters; defaults are the authors' on-policy Ant x-y settings
    (google-research/dads configs/ant_xy_onpolicy.txt) unless a field says otherwise."""

    env_id: str = "Ant-v5"
    """Task id (mbrl_fast.envs registry)."""
    seed: int = 0
    """Seeds the networks, the skills, the env resets and every sampler."""
    steps: int = 20_000_000
    """Environment steps of the run (the budget: ``--steps``; the authors' 10,000 epochs
    of 2,000)."""
    env_kwargs: dict = field(default_factory=dict)
    """Extra ``gymnasium.make`` keyword arguments of the training and evaluation envs
    (those the task's reward needs cannot be changed)."""
    skill_dim: int = 2
    """Z: dimension of the continuous skill z in [-1, 1]^Z (``num_skills``)."""
    samples_per_iteration: int = 2000
    """M: on-policy transitions collected per iteration (``collect_steps``)."""
    num_envs: int = 10
    """Envs stepped in lockstep while collecting (one batched policy call per round; each
    runs its own episodes and skills)."""
    episode_steps: int = 200
    """Steps per episode, one skill each (``max_env_steps``; capped by the env's limit)."""
    prior_samples: int = 500
    """L: prior skills per transition in the reward's denominator (the paper's 500; the
    authors' configs use 100)."""
    prior_shared: bool = False
    """One set of L prior samples for all the iteration's transitions (an estimate as
    valid per transition; with the x-y prior the reward then costs M + L passes of q
    instead of M (L + 1)); False: L samples per transition (the authors' code)."""
    policy_obs_limit: int = 0
    """pi and its critics read only the observation's first N coordinates (then without
    x-y); 0: all of them. The Ant preset's 29 are qpos and qvel: the authors' Ant
    observation (their envs/gym_mujoco/ant.py), without Ant-v5's 78 contact forces."""
    include_skill: bool = True
    """Denominator over the transition's own skill and the L samples, reward <= log(L + 1)
    (the authors' code); False: over the L samples only (the paper's eq. 7)."""
    reward_scale: float = 10.0
    """The intrinsic reward's scale in SAC (``1 / agent_entropy``, agent_entropy 0.1)."""
    policy_steps: int = 64
    """K2: SAC updates per iteration (``agent_train_steps``)."""
    replay_capacity: int = 10_000
    """Real transitions kept (``records``; training uses the current iteration's only, as
    the authors' on-policy runs clear their buffer every iteration). Every checkpoint holds
    them: 10,000 Ant transitions are 18 MB."""
    torch_threads: int = 1
    """torch.set_num_threads (0: torch's default). One: SAC and q's small GEMMs run fastest
    on one thread of the project machine's two busy cores (see SAC)."""
    keep_freed_memory: bool = True
    """Call nn.dense.keep_freed_memory() (no page faults per update; process-wide)."""
    eval_every: int = 0
    """Iterations between navigation evaluations in the metrics (0: none)."""
    eval_goals: int = 8
    """Goals per such evaluation (``mbrl-fast eval --goals N`` sets its own)."""
    goal_radius: tuple[float, float] = (10.0, 10.0)
    """Goals are drawn at a distance U[low, high] from the start, in a uniform direction
    (the issue's Ant goals: distance 10)."""
    goal_steps: int = 1000
    """Env steps of a navigation episode."""
    success_ratio: float = 0.1
    """A goal counts as reached when the final distance <= this x the initial one."""
    skill_dynamics: SkillDynamicsConfig = field(
        default_factory=lambda: SkillDynamicsConfig(xy_prior=True))
    """q (x-y prior on by default: the paper's Ant navigation setting)."""
    sac: SACConfig = field(default_factory=lambda: SACConfig(hidden=512, gamma=0.995))
    """The skill policy's SAC (hidden_layer_size 512, agent_gamma 0.995 on-policy, lr 3e-4,
    batch 256, automatic entropy tuning; target entropy -|A| unless set: the authors'
    tf-agents 0.4 default is -|A| / 2, which the Ant preset sets)."""
    planner: SkillPlannerConfig = field(default_factory=SkillPlannerConfig)
    """The latent-space planner of the navigation evaluations (the paper's settings)."""


# Per-task overrides (``--no-preset`` skips them).
PRESETS: dict[str, dict] = {
    # The authors' Ant x-y config, with one set of prior samples per iteration: q reads the
    # skill only, so the reward is then M + L passes of q (0.03 s) instead of M (L + 1)
    # (~5 s per iteration of 2,000 on the project machine's 2 cores).
    # The authors' Ant ends an episode only on a non-finite state (envs/gym_mujoco/ant.py):
    # no unhealthy termination, which would also let SAC escape negative intrinsic rewards.
    # Their policy sees qpos + qvel without x-y (27 numbers, no contact forces) and tunes
    # alpha to tf-agents 0.4's default target entropy, -|A| / 2 = -4.
    "Ant-v5": dict(prior_shared=True, env_kwargs={"terminate_when_unhealthy": False},
                   eval_every=100, policy_obs_limit=29, sac=dict(target_entropy=-4.0)),
    # Sized to learn within minutes on 2 CPU cores (bench/results/learning_dads_pointmass.json).
    # Goals at 5-10: the learned skills move at their top speed (~0.85 per 10 steps), so a
    # navigation ends going back and forth within ~0.7 of its goal (10% of 7).
    "MBRLFast/PointMass-v0": dict(
        steps=300_000, episode_steps=100, samples_per_iteration=1000, policy_steps=128,
        goal_radius=(5.0, 10.0), goal_steps=300, eval_every=25,
        skill_dynamics=dict(hidden=128, xy_prior=False),
        sac=dict(hidden=128, gamma=0.99)),
}


class SkillBuffer:
    """A ring of the last ``capacity`` transitions as records of :meth:`dtype` (the journal
    schema): obs / next_obs [D], act [A] (policy units), reward, terminated, truncated,
    skill [Z]."""

    def __init__(self, obs_dim: int, act_dim: int, skill_dim: int, capacity: int):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"replay_capacity must be an int >= 1, got {capacity!r}")
        self.dtype = np.dtype([("obs", "<f8", (obs_dim,)), ("act", "<f8", (act_dim,)),
                               ("next_obs", "<f8", (obs_dim,)), ("reward", "<f8"),
                               ("terminated", "?"), ("truncated", "?"),
                               ("skill", "<f8", (skill_dim,))])
        self.capacity, self.total_added = capacity, 0
        self.data = np.zeros(capacity, self.dtype)

    def __len__(self) -> int:
        return min(self.total_added, self.capacity)

    def add(self, **fields) -> None:
        row = self.data[self.total_added % self.capacity]
        for name, value in fields.items():
            row[name] = value
        self.total_added += 1

    def add_records(self, records: np.ndarray) -> None:
        if records.dtype != self.dtype:
            raise ValueError(f"records must have dtype {self.dtype}, got {records.dtype}")
        n = len(records)
        idx = (self.total_added + np.arange(n)) % self.capacity
        keep = slice(max(0, n - self.capacity), n)  # only the last `capacity` survive
        self.data[idx[keep]] = records[keep]
        self.total_added += n

    def latest(self, n: int) -> np.ndarray:
        """The newest min(n, len) records, oldest first (a copy)."""
        n = min(max(n, 0), len(self))
        idx = (self.total_added - n + np.arange(n)) % self.capacity
        return self.data[idx]

    def records(self) -> np.ndarray:
        return self.latest(len(self))

    def state_dict(self) -> dict:
        rec = self.records()
        return {"records": torch.from_numpy(rec.view(np.uint8).copy()),
                "total_added": self.total_added, "capacity": self.capacity}

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"replay capacity mismatch: saved {int(state['capacity'])}, "
                             f"this run {self.capacity}")
        raw = state["records"].numpy()
        if raw.size % self.dtype.itemsize:
            raise ValueError("saved records do not fit this run's record schema")
        rec = raw.view(self.dtype)
        self.data = np.zeros(self.capacity, self.dtype)
        self.total_added = 0
        self.add_records(rec)
        self.total_added = int(state["total_added"])
        shift = self.total_added % self.capacity if self.total_added > self.capacity else 0
        self.data = np.roll(self.data, shift)


class DADS(Agent):
    """Skill dynamics q, the skill policy's SAC, the latent planner (module docstring)."""

    name = "dads"
    Config = DADSConfig
    PRESETS = PRESETS
    FIELDS = FIELDS
    unit = "epoch"
    budget = "steps"
    maximizes_reward = False

    def __init__(self, config: DADSConfig, task=None):
        from mbrl_fast.envs import get_task  # envs needs gymnasium: import only when used

        super().__init__(config)
        c = config
        for name in ("skill_dim", "samples_per_iteration", "num_envs", "episode_steps",
                     "policy_steps", "goal_steps"):
            if not isinstance(getattr(c, name), int) or getattr(c, name) < 1:
                raise ValueError(f"{name} must be an int >= 1, got {getattr(c, name)!r}")
        if not isinstance(c.prior_samples, int) or c.prior_samples < 2:
            raise ValueError(f"prior_samples (L) must be an int >= 2, got {c.prior_samples!r}")
        self.task = task if task is not None else get_task(c.env_id)
        self.envs = [self.task.make_env(**c.env_kwargs) for _ in range(c.num_envs)]
        if not isinstance(c.policy_obs_limit, int) or c.policy_obs_limit < 0:
            raise ValueError(f"policy_obs_limit must be an int >= 0, got {c.policy_obs_limit!r}")
        # the policy's observation: the first policy_obs_limit coordinates, without x-y
        limit = c.policy_obs_limit or self.task.obs_dim
        self.policy_keep = [i for i in self.task.obs_view().keep if i < limit]
        if c.torch_threads > 0:
            torch.set_num_threads(c.torch_threads)
        if c.keep_freed_memory:
            keep_freed_memory()
        torch.manual_seed(c.seed)
        t, z = self.task, c.skill_dim
        self.q = make_skill_dynamics(c.skill_dynamics, t, z, c.seed)
        self.q_trainer = SkillDynamicsTrainer(self.q, c.skill_dynamics.lr, seed=c.seed + 5)
        self.sac = SAC(len(self.policy_keep) + z, t.act_dim, c.sac, action_low=t.action_low,
                       action_high=t.action_high, seed=c.seed)
        self.buffer = SkillBuffer(t.obs_dim, t.act_dim, z, c.replay_capacity)
        self.rng = np.random.default_rng(c.seed)  # SAC minibatches
        self.prior = torch.Generator().manual_seed(c.seed + 7)  # the reward's prior samples
        self.planner = SkillPlanner(self.q, c.planner, seed=c.seed)
        self.episode_steps = min(c.episode_steps, t.max_episode_steps)
        self.pending = 0  # restored records of an interrupted attempt (still on-policy)

    @classmethod
    def total_iterations(cls, config) -> int:
        return math.ceil(config.steps / config.samples_per_iteration)

    # ---- the policy -----------------------------------------------------------------------
    def policy_obs(self, obs, skill) -> torch.Tensor:
        """pi's input [..., D' + Z]: the observation's first ``policy_obs_limit`` coordinates
        without x-y, then the skill (float32)."""
        obs = torch.as_tensor(np.asarray(obs)[..., self.policy_keep], dtype=torch.float32)
        return torch.cat([obs, torch.as_tensor(skill, dtype=torch.float32)], dim=-1)

    def act(self, obs, skill, deterministic: bool = False) -> np.ndarray:
        """obs [N, D], skill [N, Z] -> env actions [N, A] (float64)."""
        a = self.sac.act(self.policy_obs(obs, skill), deterministic=deterministic)
        return self.sac.policy.to_env(a).numpy().astype(np.float64)

    # ---- one iteration --------------------------------------------------------------------
    def run_iteration(self, index: int, attempt: int = 0,
                      record: Callable[..., None] | None = None) -> dict:
        c = self.config
        start = time.perf_counter()
        tic = time.perf_counter()
        # the iteration ends at env step (index + 1) * samples_per_iteration: a resumed one
        # collects only what its journal's kept records (self.pending) leave to do
        end = min((index + 1) * c.samples_per_iteration, c.steps)
        steps = max(0, end - self.buffer.total_added)
        episodes = self.collect(index, attempt, steps, record)
        env_s = time.perf_counter() - tic
        data = self.buffer.latest(self.pending + steps)
        self.pending = 0
        row = {"iteration": index, "env_steps": self.buffer.total_added, "episodes": episodes,
               "env_s": env_s, **self.train(data)}
        tic = time.perf_counter()
        row.update(goal_success=float("nan"), goal_distance_ratio=float("nan"))
        if c.eval_every and (index + 1) % c.eval_every == 0:
            from mbrl_fast.agents.dads_eval import navigate, random_goals

            seed = episode_seed(c.seed, index, 0, _EVAL)
            nav = navigate(self, random_goals(self, c.eval_goals, seed), seed=seed)
            row.update(goal_success=nav["success"], goal_distance_ratio=nav["mean_ratio"])
        row["eval_s"] = time.perf_counter() - tic
        return self.finish_iteration(index, row, start)

    def collect(self, index: int, attempt: int, steps: int,
                record: Callable[..., None] | None) -> int:
        """``steps`` env steps on ``num_envs`` envs in lockstep (one batched policy call per
        round), one skill per episode; returns the episodes started. Env i takes
        ``steps // num_envs`` steps (one more for the first ``steps % num_envs``); its last
        one is marked truncated. Records go env by env within a round."""
        c = self.config
        if steps == 0:  # a resumed iteration whose journal kept all of its records
            return 0
        envs = self.envs[:min(len(self.envs), steps)]
        n = len(envs)
        budget = [steps // n + (i < steps % n) for i in range(n)]
        dtype = envs[0].action_space.dtype
        obs = np.zeros((n, self.task.obs_dim))
        skill = np.zeros((n, c.skill_dim))
        t = np.zeros(n, int)
        episode = 0

        def start(i: int) -> None:
            nonlocal episode
            seed = episode_seed(c.seed, index, attempt, episode)
            skill[i] = np.random.default_rng(seed).uniform(-1.0, 1.0, c.skill_dim)
            obs[i] = envs[i].reset(seed=seed)[0]
            t[i] = 0
            episode += 1

        for i in range(n):
            start(i)
        while any(budget):
            live = [i for i in range(n) if budget[i]]
            act = self.sac.act(self.policy_obs(obs[live], skill[live]))  # [len(live), A]
            env_act = self.sac.policy.to_env(act).numpy().astype(dtype)
            for j, i in enumerate(live):
                next_obs, reward, terminated, truncated, _ = envs[i].step(env_act[j])
                budget[i] -= 1
                t[i] += 1
                truncated = bool(truncated) or t[i] == self.episode_steps or not budget[i]
                fields = dict(obs=obs[i].copy(), act=act[j].numpy(), next_obs=next_obs,
                              reward=float(reward), terminated=bool(terminated),
                              truncated=truncated and not terminated, skill=skill[i].copy())
                self.buffer.add(**fields)
                if record is not None:
                    record(**fields)
                if (terminated or truncated) and budget[i]:
                    start(i)
                else:
                    obs[i] = next_obs
        return episode

    def train(self, data: np.ndarray) -> dict:
        """q on the iteration's transitions, their rewards, SAC on them; the metrics."""
        c = self.config
        obs, skill, nxt = (np.ascontiguousarray(data[f]) for f in ("obs", "skill", "next_obs"))
        tic = time.perf_counter()
        self.q.update_normalizers(obs, skill, nxt)
        q_loss = self.q_trainer.fit(obs, skill, nxt, c.skill_dynamics.steps,
                                    c.skill_dynamics.batch_size)
        q_error = self.prediction_error(obs, skill, nxt)
        q_s = time.perf_counter() - tic
        tic = time.perf_counter()
        n = len(data)
        shape = (c.prior_samples, c.skill_dim) if c.prior_shared else \
            (n, c.prior_samples, c.skill_dim)
        prior = torch.rand(shape, generator=self.prior) * 2 - 1
        out = self.q.intrinsic_reward(obs, skill, nxt, prior, include_skill=c.include_skill)
        reward_s = time.perf_counter() - tic
        tic = time.perf_counter()
        pobs, pnext = self.policy_obs(obs, skill), self.policy_obs(nxt, skill)
        act = torch.as_tensor(np.ascontiguousarray(data["act"]), dtype=torch.float32)
        r = (c.reward_scale * out.reward).contiguous()
        done = torch.as_tensor(np.ascontiguousarray(data["terminated"]), dtype=torch.float32)
        total = None
        for _ in range(c.policy_steps):
            idx = torch.from_numpy(self.rng.integers(0, n, size=c.sac.batch_size))
            m = self.sac.update(SACBatch(pobs[idx], act[idx], r[idx], pnext[idx], done[idx]))
            m = torch.stack([m[k] for k in ("critic_loss", "actor_loss", "alpha", "entropy")])
            total = m if total is None else total + m
        losses = (total / c.policy_steps).tolist()
        intrinsic = float(out.reward.mean())
        return {"return": intrinsic * self.episode_steps, "intrinsic_reward": intrinsic,
                "log_q": float(out.log_q.mean()), "q_loss": q_loss, "q_error": q_error,
                **dict(zip(("critic_loss", "actor_loss", "alpha", "entropy"), losses,
                           strict=True)),
                "q_s": q_s, "reward_s": reward_s, "update_s": time.perf_counter() - tic}

    @torch.no_grad()
    def prediction_error(self, obs, skill, next_obs) -> float:
        """q's one-step error relative to the change it predicts: mean |s'_q - q's mean| /
        mean |s'_q - s_q| (Euclidean norms over the predicted coordinates)."""
        err = torch.linalg.vector_norm(self.q.predict(obs, skill) - self.q.state(next_obs).float(),
                                       dim=-1).mean()
        scale = torch.linalg.vector_norm(self.q.deltas(obs, next_obs), dim=-1).mean()
        return float(err / scale.clamp_min(1e-12))

    # ---- evaluation --------------------------------------------------------------------
    def evaluate(self, episodes: int, seed: int = 10_000, env=None,
                 on_frame: Callable | None = None) -> list[float]:
        """Zero-shot navigation episodes to random goals (one each, drawn from ``seed``):
        the return of an episode is DADS's goal reward, the sum over its steps of
        -||xy - goal||."""
        from mbrl_fast.agents.dads_eval import make_envs, navigate, random_goals

        goals = random_goals(self, episodes, seed)
        envs = None  # the given env (e.g. one that renders) navigates to the first goal
        if env is not None:
            envs = [env, *make_envs(self, episodes - 1, self.config.goal_steps)]
        try:
            out = navigate(self, goals, seed=seed, envs=envs, on_frame=on_frame)
        finally:
            for e in (envs or [])[1:]:
                e.close()
        return [float(r) for r in out["returns"]]

    def evaluate_goals(self, goals: int, seed: int = 10_000, out=None) -> dict:
        """``mbrl-fast eval RUN_DIR --goals N``: the skills' coverage and q's error, zero-shot
        navigation to N random goals; JSON + PNG at ``out`` (a path without suffix)."""
        from mbrl_fast.agents.dads_eval import evaluate_goals

        return evaluate_goals(self, goals, seed, out)

    def postfix(self, row: dict) -> dict[str, str]:
        return {"r_int": f"{row['intrinsic_reward']:.2f}", "steps": str(row["env_steps"]),
                "q_err": f"{row['q_error']:.2f}", "upd": f"{row['update_s']:.0f}s"}

    # ---- journal records and checkpoints --------------------------------------------------
    def journal_dtype(self) -> np.dtype:
        return self.buffer.dtype

    def restore(self, records: np.ndarray) -> None:
        self.buffer.add_records(records)
        self.pending += len(records)

    def records(self) -> np.ndarray:
        return self.buffer.records()

    def state_dict(self) -> dict:
        return {"q": self.q.state_dict(), "q_trainer": self.q_trainer.state_dict(),
                "sac": self.sac.state_dict(), "buffer": self.buffer.state_dict(),
                "rng": rng_state_to_tensors(self.rng.bit_generator.state),
                "prior": self.prior.get_state(), **self.progress_state()}

    def load_state_dict(self, state: dict) -> None:
        self.q.load_state_dict(state["q"])
        self.q_trainer.load_state_dict(state["q_trainer"])
        self.sac.load_state_dict(state["sac"])
        self.buffer.load_state_dict(state["buffer"])
        self.rng.bit_generator.state = rng_state_from_tensors(state["rng"])
        self.prior.set_state(state["prior"])
        self.load_progress_state(state)

    def close(self) -> None:
        for env in self.envs:
            env.close()
