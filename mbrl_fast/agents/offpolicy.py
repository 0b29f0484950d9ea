"""The environment loop of the agents built on SAC, and SAC alone as an agent ("sac").

One iteration of the agent protocol is an *epoch*: ``epoch_length`` env steps, each
followed by ``updates_per_step`` SAC updates, then ``eval_episodes`` deterministic
evaluation episodes (the epoch's ``return``)::

    for each env step (g = real transitions collected so far):
        before_step(g)                          MBPO: model training + branched rollouts
        a = uniform(-1, 1) if g < initial_random_steps else pi(a | s)   (policy units)
        s', r, terminated, truncated = env.step(to_env(a));  replay <- (s, a, s', r, ...)
        if g + 1 >= initial_random_steps: updates_per_step x sac.update(sample_batch())

Observations are the task's without unbounded x positions (``Task.obs_view``). Actions
are in policy units [-1, 1] everywhere (the replay buffer, the critics, a
dynamics model); ``policy.to_env`` maps them to the env's bounds at the env step.
Every epoch starts a fresh episode (seeded by (seed, epoch, attempt, episode)), so a run
resumed at an epoch boundary continues exactly; the epoch's last transition is marked
truncated, which SAC bootstraps through like a time limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from mbrl_fast.agents.base import Agent, episode_seed, run_episode
from mbrl_fast.agents.sac import METRICS, SAC, SACBatch, SACConfig, batch_from
from mbrl_fast.models import ReplayBuffer
from mbrl_fast.models.io import rng_state_from_tensors, rng_state_to_tensors
from mbrl_fast.nn.dense import keep_freed_memory

# episode numbers of episode_seed that no env episode of an epoch reaches
_EXPLORE, _EVAL = 1_000_000, 2_000_000
LOSSES = ("critic_loss", "actor_loss", "alpha", "entropy", "q_mean")
EPOCH_FIELDS = ("epoch", "return", "env_steps", "wall_clock_s", "train_return", "env_s",
                "update_s", "eval_s", *LOSSES)


class OffPolicyAgent(Agent):
    """SAC's loop. Config fields it reads: env_id, seed, steps, epoch_length,
    initial_random_steps, updates_per_step, replay_capacity, eval_episodes, torch_threads,
    keep_freed_memory, sac (a SACConfig). Subclasses add to :meth:`before_step`,
    :meth:`sample_batch`, :meth:`extra_metrics` and the state."""

    unit = "epoch"
    budget = "steps"
    FIELDS = EPOCH_FIELDS

    def __init__(self, config, task=None):
        from mbrl_fast.envs import get_task  # envs needs gymnasium: import only when used

        super().__init__(config)
        c = config
        self.task = task if task is not None else get_task(c.env_id)
        try:
            self.env = self.task.make_env()
            self.eval_env = self.task.make_env()
        except TypeError as exc:  # a discrete action space, ...
            raise TypeError(f"{self.name} needs a continuous (gymnasium.spaces.Box) action "
                            f"space: {exc}") from None
        # the observation without unbounded x positions (Task.obs_view)
        self.view = self.task.obs_view()
        if c.torch_threads > 0:
            torch.set_num_threads(c.torch_threads)
        if c.keep_freed_memory:
            keep_freed_memory()
        torch.manual_seed(c.seed)
        t, d = self.task, self.view.obs_dim
        self.sac = SAC(d, t.act_dim, c.sac, action_low=t.action_low, action_high=t.action_high,
                       seed=c.seed)
        self.buffer = ReplayBuffer(d, t.act_dim, c.replay_capacity)
        self.rng = np.random.default_rng(c.seed)  # replay sampling

    @classmethod
    def total_iterations(cls, config) -> int:
        return math.ceil(config.steps / config.epoch_length)

    # ---- hooks ------------------------------------------------------------------------
    def before_step(self, g: int) -> None:
        """Called before real env step ``g`` (0-based count of real transitions)."""

    def sample_batch(self) -> SACBatch:
        """The batch of one SAC update (SAC alone: uniform from the replay buffer)."""
        return batch_from(self.buffer.sample(self.config.sac.batch_size, self.rng))

    def extra_metrics(self) -> dict:
        """More metrics for the epoch's row (subclasses; reset per epoch by them)."""
        return {}

    def on_transition(self, obs, act, next_obs, reward, terminated, truncated) -> None:
        """Called after every real transition (subclasses check things here)."""

    # ---- one epoch -----------------------------------------------------------------------
    def run_iteration(self, index: int, attempt: int = 0,
                      record: Callable[..., None] | None = None) -> dict:
        c = self.config
        start = time.perf_counter()
        # the epoch ends at env step (index + 1) * epoch_length: a resumed epoch continues
        # after the transitions its journal kept instead of running a whole epoch again
        end = min((index + 1) * c.epoch_length, c.steps)
        steps = max(0, end - self.buffer.total_added)
        explore = np.random.default_rng(episode_seed(c.seed, index, attempt, _EXPLORE))
        to_env = self.sac.policy.to_env
        env_s = update_s = 0.0
        losses, n_updates, returns = None, 0, []
        episode, obs, total = 0, None, 0.0
        for t in range(steps):
            if obs is None:
                obs = self.view(self.env.reset(seed=episode_seed(c.seed, index, attempt,
                                                                  episode))[0])
                total = 0.0
            g = self.buffer.total_added
            self.before_step(g)
            if g < c.initial_random_steps:
                act = explore.uniform(-1.0, 1.0, self.task.act_dim)
            else:
                act = self.sac.act(obs)[0].numpy()
            tic = time.perf_counter()
            env_act = to_env(torch.as_tensor(act, dtype=torch.float32)).numpy()
            next_obs, reward, terminated, truncated, _ = self.env.step(
                env_act.astype(self.env.action_space.dtype))
            next_obs = self.view(next_obs)
            env_s += time.perf_counter() - tic
            truncated = bool(truncated) or (t == steps - 1 and not terminated)
            self.buffer.add(obs, act, next_obs, reward, terminated, truncated)
            if record is not None:
                record(obs=obs, act=act, next_obs=next_obs, reward=reward,
                       terminated=bool(terminated), truncated=truncated)
            self.on_transition(obs, act, next_obs, reward, terminated, truncated)
            total += float(reward)
            obs = next_obs
            if terminated or truncated:
                returns.append(total)
                obs, episode = None, episode + 1
            if g + 1 >= c.initial_random_steps:
                tic = time.perf_counter()
                for _ in range(c.updates_per_step):
                    m = torch.stack(list(self.sac.update(self.sample_batch()).values()))
                    losses = m if losses is None else losses + m
                    n_updates += 1
                update_s += time.perf_counter() - tic
        tic = time.perf_counter()
        eval_returns = self.evaluate(c.eval_episodes, seed=episode_seed(c.seed, index, 0, _EVAL))
        eval_s = time.perf_counter() - tic
        means = dict.fromkeys(LOSSES, float("nan"))
        if n_updates:
            means.update({k: v for k, v in zip(METRICS, (losses / n_updates).tolist(),
                                                strict=True) if k in LOSSES})
        row = {"epoch": index, "return": float(np.mean(eval_returns)),
               "env_steps": self.buffer.total_added,
               "train_return": float(np.mean(returns)) if returns else float("nan"),
               "env_s": env_s, "update_s": update_s, "eval_s": eval_s, **means,
               **self.extra_metrics()}
        return self.finish_iteration(index, row, start)

    def evaluate(self, episodes: int, seed: int = 10_000, env=None,
                 on_frame: Callable | None = None) -> list[float]:
        """Returns of deterministic episodes (the policy's tanh(mean) action)."""
        env = env if env is not None else self.eval_env
        to_env = self.sac.policy.to_env
        dtype = env.action_space.dtype

        def act(obs):
            obs = self.view(obs)
            return to_env(self.sac.act(obs, deterministic=True)[0]).numpy().astype(dtype)

        out = []
        for i in range(episodes):
            frame = (lambda *_: on_frame(env)) if on_frame is not None and i == 0 else None
            out.append(run_episode(env, act, seed=seed + i, on_step=frame).total_return)
        return out

    def postfix(self, row: dict) -> dict[str, str]:
        return {"ret": f"{row['return']:.1f}", "steps": str(row["env_steps"]),
                "upd": f"{row['update_s']:.0f}s"}

    # ---- journal records and checkpoints --------------------------------------------------
    def journal_dtype(self) -> np.dtype:
        return self.buffer.record_dtype()

    def restore(self, records: np.ndarray) -> None:
        self.buffer.add_records(records)

    def records(self) -> np.ndarray:
        return self.buffer.records()

    def state_dict(self) -> dict:
        return {"sac": self.sac.state_dict(), "buffer": self.buffer.state_dict(),
                "rng": rng_state_to_tensors(self.rng.bit_generator.state),
                **self.progress_state()}

    def load_state_dict(self, state: dict) -> None:
        self.sac.load_state_dict(state["sac"])
        self.buffer.load_state_dict(state["buffer"])
        self.rng.bit_generator.state = rng_state_from_tensors(state["rng"])
        self.load_progress_state(state)

    def close(self) -> None:
        self.env.close()
        self.eval_env.close()


# ---- SAC alone --------------------------------------------------------------------------

@dataclass
class SACAgentConfig:
    """SAC on a task (Haarnoja et al. 2018, arXiv:1812.05905), evaluated every epoch."""

    env_id: str = "Hopper-v5"
    """Task id (mbrl_fast.envs registry)."""
    seed: int = 0
    """Seeds the networks, the noise, the env resets and the replay sampling."""
    steps: int = 1_000_000
    """Environment steps of the run (the budget: ``--steps``)."""
    epoch_length: int = 1000
    """Env steps per iteration; an evaluation follows each (softlearning's epoch)."""
    initial_random_steps: int = 1000
    """Leading env steps with uniform random actions and no updates (the authors'
    softlearning code: n_initial_exploration_steps = 1000; SB3's learning_starts is 100,
    rl-zoo's Hopper 10,000)."""
    updates_per_step: int = 1
    """Gradient steps per env step (the paper: 1)."""
    replay_capacity: int = 1_000_000
    """Real transitions kept."""
    eval_episodes: int = 5
    """Deterministic evaluation episodes per epoch (their mean is the epoch's return)."""
    torch_threads: int = 1
    """torch.set_num_threads (0: torch's default). One: on the project machine's 2 shared
    cores an update took 12.5 ms with 1 thread and 198 ms with 2 while the other core was
    busy; on an idle 2-core Zen 4, two threads made it 1.1-1.5x faster (bench/sac_update.py
    measures both; docs/mbpo.md)."""
    keep_freed_memory: bool = True
    """Call nn.dense.keep_freed_memory() (glibc keeps freed blocks: no page faults per
    update; process-wide)."""
    sac: SACConfig = field(default_factory=SACConfig)
    """The learner's hyperparameters."""


class SACAgent(OffPolicyAgent):
    """SAC alone: the replay buffer is all it learns from."""

    name = "sac"
    Config = SACAgentConfig
    PRESETS = {
        "Pendulum-v1": dict(steps=10_000, eval_episodes=5),
        "InvertedPendulum-v5": dict(steps=20_000),
        "Hopper-v5": dict(steps=125_000),
    }


def train_sac(env_id: str, steps: int, seed: int = 0, config: SACAgentConfig | None = None,
              callback: Callable[[dict], None] | None = None) -> list[tuple[int, float]]:
    """SAC on a task without a run directory: [(env_steps, eval return)] per epoch;
    ``callback(row)`` sees every epoch's metrics row."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    base = config if config is not None else SACAgentConfig()
    c = SACAgentConfig(**{**vars(base), "env_id": env_id, "steps": steps, "seed": seed})
    agent = SACAgent(c)
    try:
        curve = []
        for index in range(SACAgent.total_iterations(c)):
            row = agent.run_iteration(index)
            curve.append((row["env_steps"], row["return"]))
            if callback is not None:
                callback(row)
        return curve
    finally:
        agent.close()

