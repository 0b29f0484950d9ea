"""The agent protocol: what an agent implements so that everything else works for it.

Run directories, journals and resume (:mod:`mbrl_fast.runs`), ``mbrl-fast train /
eval``, the progress bar and ``bench/learning.py`` look agents up by name in the
registry (:mod:`mbrl_fast.agents`) and use only what is written here; none of
them names an agent. A new agent is one file: a subclass of :class:`Agent` and
its config dataclass, registered in ``mbrl_fast/agents/__init__.py``.

Class attributes
    name      the registry key (``mbrl-fast train <name>``)
    Config    the config dataclass: published defaults, a docstring per field; it has
              ``env_id`` and ``seed`` fields and the budget field below
    PRESETS   ``{env_id: {field: value, section: {...}}}``: per-task overrides of the
              defaults (``--no-preset`` skips them); NAMED_PRESETS ``{name: {env_id: ...}}``
              holds alternatives (``--preset published``)
    FIELDS    the metrics columns, one row per iteration; must include ``env_steps`` and
              ``return`` (the learning curve is return against env steps)
    unit      what one iteration is, for progress bars and messages: "trial" (PETS: one
              episode of data, then training) or "epoch" (MBPO: a fixed number of env
              steps, then an evaluation) or "iteration" (MB-MF: one step of a phased
              schedule: a data-aggregation, DAgger or PPO iteration)
    budget    the Config field that sets the length of the run (``trials``, ``steps``);
              the CLI flag of the same name sets it, and ``--resume --<budget> N`` extends
              a run. :meth:`total_iterations` turns it into iterations.
    maximizes_reward  True (default): the agent maximizes the env's reward, so
              :meth:`make_config` refuses a task without one (``Task.has_reward``);
              False for unsupervised agents (DADS)
    preflight(config, plan_budget_ms) -> (config, lines)
              classmethod, before a fresh run: agents that plan measure a planned step,
              size the planner to a budget and print the estimated time per iteration

Per instance (``Agent.__init__(config)``)
    task      the :class:`mbrl_fast.envs.Task` it runs on (``eval`` renders its env)
    run_iteration(index, attempt, record) -> row
        One iteration. ``record(**fields)`` is called for every real transition the
        moment it happens, with the fields of :meth:`journal_dtype`; the run directory
        appends it to a journal, so a run killed at any point loses nothing. ``attempt``
        > 0 re-runs an interrupted iteration with fresh env / exploration seeds (use
        :func:`episode_seed`). Returns the metrics row (``FIELDS``) and appends it to
        ``history``; ``iterations_done`` becomes ``index + 1``.
    journal_dtype() -> numpy structured dtype of one record (its fields, shapes, types:
        transitions, skills, images, sequence flags ... whatever the agent collects)
    restore(records)  add journaled records of an interrupted iteration back (resume)
    records() -> every real record the agent holds, oldest first (same dtype)
    state_dict() / load_state_dict(state)
        Everything needed to continue after iteration ``iterations_done - 1``: networks,
        optimizers, buffers, RNG states and :meth:`progress_state`. Tensors and plain
        data only (``torch.load(weights_only=True)``).
    evaluate(episodes, seed, env=None, on_frame=None) -> list of episode returns
    postfix(row) -> {label: text} for the progress bar
    close()

:func:`episode_seed` and :func:`run_episode` are the shared episode runner: an
episode's env reset seed and exploration noise derive from (seed, iteration,
attempt, episode), so a run resumed at an iteration boundary continues exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from mbrl_fast.config import with_preset

UNITS = ("trial", "epoch", "iteration")


class Agent:
    """Base class of the agents; see the module docstring for the protocol."""

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    PRESETS: ClassVar[dict[str, dict]] = {}
    NAMED_PRESETS: ClassVar[dict[str, dict[str, dict]]] = {}
    FIELDS: ClassVar[tuple[str, ...]] = ()
    unit: ClassVar[str] = "trial"
    budget: ClassVar[str] = "trials"
    maximizes_reward: ClassVar[bool] = True

    def __init__(self, config):
        self.config = config
        self.iterations_done = 0
        self.wall_clock_s = 0.0  # summed over completed iterations
        self.history: list[dict] = []  # one FIELDS row per completed iteration

    # ---- configs ---------------------------------------------------------------------
    @classmethod
    def make_config(cls, env_id: str, *, preset: str | None = "default", **overrides):
        """The config for ``env_id``: the Config's published defaults, the task's entry of the
        preset named ``preset`` ("default": ``PRESETS``; another name: ``NAMED_PRESETS``;
        None: none), then ``overrides`` (fields, sections as dicts)."""
        if cls.maximizes_reward:
            from mbrl_fast.envs import get_task

            try:
                task = get_task(env_id)
            except (KeyError, ValueError):
                task = None  # an unknown env: the config's own checks name it
            if task is not None and not task.has_reward:
                raise ValueError(f"env_id {env_id!r} has no reward ({task.note}); agent "
                                 f"{cls.name!r} maximizes the env's reward, so it needs a task "
                                 "that has one")
        if preset is None:
            presets = {}
        elif preset == "default":
            presets = cls.PRESETS
        elif preset in cls.NAMED_PRESETS:
            presets = cls.NAMED_PRESETS[preset]
        else:
            raise ValueError(f"unknown preset {preset!r} for agent {cls.name!r}; known: "
                             f"{', '.join(['default', *cls.NAMED_PRESETS])}")
        return with_preset(cls.Config, presets, env_id, **overrides)

    @classmethod
    def preflight(cls, config, plan_budget_ms: float | None = None) -> tuple[object, list[str]]:
        """Before a fresh run: (the config to run, lines to show the user). Agents that plan
        measure a planned step here, size the planner to ``plan_budget_ms`` and estimate
        the time per iteration; the default has nothing to measure."""
        if plan_budget_ms is not None:
            raise ValueError(f"--plan-budget-ms: agent {cls.name!r} does not plan")
        return config, []

    @classmethod
    def total_iterations(cls, config) -> int:
        """Iterations the run's budget asks for (default: the budget field itself)."""
        return int(getattr(config, cls.budget))

    # ---- the protocol (subclasses implement) -------------------------------------------
    def run_iteration(self, index: int, attempt: int = 0,
                      record: Callable[..., None] | None = None) -> dict:
        raise NotImplementedError

    def journal_dtype(self) -> np.dtype:
        raise NotImplementedError

    def restore(self, records: np.ndarray) -> None:
        raise NotImplementedError

    def records(self) -> np.ndarray:
        raise NotImplementedError

    def evaluate(self, episodes: int, seed: int = 10_000, env=None,
                 on_frame: Callable | None = None) -> list[float]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def postfix(self, row: dict) -> dict[str, str]:
        return {"ret": f"{row['return']:.1f}", "steps": str(row["env_steps"])}

    def close(self) -> None:
        pass

    # ---- shared bookkeeping ------------------------------------------------------------
    def progress_state(self) -> dict:
        """The counters every checkpoint holds (merge into :meth:`state_dict`)."""
        return {"iterations_done": self.iterations_done, "wall_clock_s": self.wall_clock_s,
                "history": [dict(r) for r in self.history], "torch_rng": torch.get_rng_state()}

    def load_progress_state(self, state: dict) -> None:
        self.iterations_done = int(state["iterations_done"])
        self.wall_clock_s = float(state["wall_clock_s"])
        self.history = [dict(r) for r in state["history"]]
        torch.set_rng_state(state["torch_rng"])

    def finish_iteration(self, index: int, row: dict, started: float) -> dict:
        """Record a completed iteration: wall-clock, history, counter. Returns ``row``."""
        self.wall_clock_s += time.perf_counter() - started
        row = {"wall_clock_s": self.wall_clock_s, **row}
        missing = [f for f in self.FIELDS if f not in row]
        if missing:
            raise KeyError(f"{type(self).__name__}.run_iteration: metrics row lacks {missing}")
        self.history.append(row)
        self.iterations_done = index + 1
        return row


def check_units(cls: type[Agent]) -> None:
    """Registry-time checks of an agent class (clear errors for a half-written agent)."""
    for attr in ("name", "Config", "FIELDS"):
        if not getattr(cls, attr, None):
            raise TypeError(f"agent {cls.__name__} must define {attr}")
    if cls.unit not in UNITS:
        raise TypeError(f"agent {cls.__name__}: unit must be one of {UNITS}, got {cls.unit!r}")
    if not {"env_steps", "return"} <= set(cls.FIELDS):
        raise TypeError(f"agent {cls.__name__}: FIELDS must include 'env_steps' and 'return'")
    names = {f for f in getattr(cls.Config, "__dataclass_fields__", {})}
    for field in ("env_id", "seed", cls.budget):
        if field not in names:
            raise TypeError(f"agent {cls.__name__}: {cls.Config.__name__} has no {field!r} field")


# ---- the shared episode runner ---------------------------------------------------------

def episode_seed(seed: int, iteration: int, attempt: int, episode: int = 0) -> int:
    """A 32-bit seed for one episode, independent across (seed, iteration, attempt, episode)."""
    return int(np.random.SeedSequence([seed, iteration, attempt, episode]).generate_state(1)[0])


@dataclass
class Episode:
    """What :func:`run_episode` returns."""

    total_return: float
    steps: int
    terminated: bool
    act_s: float  # seconds spent in the policy / planner


def run_episode(env, act: Callable[[np.ndarray], Any], *, seed: int, max_steps: int = math.inf,
                on_step: Callable[..., None] | None = None,
                reset: Callable[[int], None] | None = None) -> Episode:
    """One episode of ``env`` from ``env.reset(seed=seed)`` for at most ``max_steps`` steps.

    act(obs) -> action; reset(seed) is called after the env reset (e.g. to reset a
    planner's warm start and noise); on_step(obs, act, next_obs, reward, terminated,
    truncated) sees every transition (``truncated`` is also True when ``max_steps`` cut
    the episode).
    """
    obs, _ = env.reset(seed=seed)
    if reset is not None:
        reset(seed)
    total, steps, act_s, terminated = 0.0, 0, 0.0, False
    while steps < max_steps:
        t0 = time.perf_counter()
        action = act(obs)
        act_s += time.perf_counter() - t0
        next_obs, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        truncated = bool(truncated) or (steps >= max_steps and not terminated)
        if on_step is not None:
            on_step(obs, action, next_obs, reward, bool(terminated), truncated)
        total += float(reward)
        if terminated or truncated:
            break
        obs = next_obs
    return Episode(total, steps, bool(terminated), act_s)


def step_active(envs: list, obs: np.ndarray, actions: np.ndarray, active: np.ndarray, *,
                dtype=None, last: bool = False,
                on_step: Callable[..., None] | None = None) -> np.ndarray:
    """One lockstep round of a batch of envs: env i, for each i with ``active[i]`` in order,
    steps with ``actions[i]`` (cast to ``dtype`` when given); ``obs[i]`` becomes its next
    observation and ``active[i]`` False once its episode ends (``last``: this round is the
    last one, so every transition is truncated). on_step(i, obs, act, next_obs, reward,
    terminated, truncated) sees each transition. Returns the rewards [N], 0 where inactive."""
    rewards = np.zeros(len(envs))
    for i in np.flatnonzero(active):
        act = actions[i] if dtype is None else actions[i].astype(dtype)
        next_obs, reward, terminated, truncated, _ = envs[i].step(act)
        truncated = bool(truncated) or (last and not terminated)
        if on_step is not None:
            on_step(i, obs[i].copy(), act, next_obs, reward, bool(terminated), truncated)
        obs[i], rewards[i] = next_obs, float(reward)
        active[i] = not (terminated or truncated)
    return rewards
