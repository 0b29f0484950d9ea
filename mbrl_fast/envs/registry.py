"""The task registry: for an env id, everything a planner needs to know about the task.

A ``Task`` couples a gymnasium environment (made with the keyword arguments its
reward needs) with batched torch functions of one transition::

    reward_fn(obs [..., D], act [..., A], next_obs [..., D])      -> [...]       (obs dtype)
    termination_fn(obs [..., D], act [..., A], next_obs [..., D]) -> [...] bool

evaluated on any leading dims (e.g. [N, P, K, H] particles of a planner).

    task = get_task("HalfCheetah-v5")
    env = task.make_env()                      # obs[0] is x, so the reward is exact
    r = task.reward_fn(obs, act, next_obs)

Users add their own with ``register_task(Task.from_env("MyEnv-v0", my_reward))``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from mbrl_fast.ops import rewards
from mbrl_fast.ops.features import ObsFeatures

try:
    import gymnasium as gym
except ImportError as exc:  # pragma: no cover - exercised only without the [envs] extra
    raise ImportError("mbrl_fast.envs needs gymnasium: pip install 'mbrl-fast[envs]'") from exc

TorchTransitionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def never_terminates(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """termination_fn of tasks without terminal states: all False, shape [...]."""
    return torch.zeros(next_obs.shape[:-1], dtype=torch.bool, device=next_obs.device)


@dataclass(frozen=True, eq=False)  # identity: tasks hold functions and a dict
class Task:
    """One task: the env to make and the batched torch reward / termination of a transition.

    env_id: the gymnasium id (``gymnasium.make(env_id, **env_kwargs)``).
    reward_fn / termination_fn: ``(obs [..., D], act [..., A], next_obs [..., D])`` -> [...]
        (reward in the obs dtype, termination bool).
    obs_dim / act_dim: D and A of the env made with ``env_kwargs``.
    action_low / action_high: the Box action bounds, one float per action dim.
    max_episode_steps: the TimeLimit of the registered env.
    env_kwargs: what ``make_env`` passes to ``gymnasium.make``; ``env_kwargs_note`` says why.
    builtin_reward: the name of the fused reward in ``mbrl_fast.ops.rewards.BUILTIN`` that
        computes the same function, or None.
    reward_exact / termination_exact: True when the function equals the env's reward /
        ``terminated`` for every transition (up to float rounding); ``note`` says where not.
    obs_features: how a dynamics model should read the observation (``ObsFeatures``:
        angles as sin / cos, coordinates the dynamics do not depend on dropped; PETS's
        obs_preproc), or None for the raw observation.
    shaping_fn: optional batched ``(obs, act, next_obs) -> [...]`` added to the reward in
        the planning objective only (:attr:`planning_reward`), for tasks whose reward
        alone leaves the planner without a preference among plans; ``shaping_note`` says
        why. The env's reward, what returns report, is never changed.
    has_reward: False for an env without a task of its own (reward 0 everywhere, e.g. the
        point mass of unsupervised skill discovery); reward-maximizing agents refuse it.
    """

    env_id: str
    reward_fn: TorchTransitionFn
    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    max_episode_steps: int
    termination_fn: TorchTransitionFn = never_terminates
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    env_kwargs_note: str = ""
    builtin_reward: str | None = None
    reward_exact: bool = True
    termination_exact: bool = True
    note: str = ""
    obs_features: ObsFeatures | None = None
    shaping_fn: TorchTransitionFn | None = None
    shaping_note: str = ""
    has_reward: bool = True

    def __post_init__(self):
        if not isinstance(self.env_id, str) or not self.env_id:
            raise ValueError(f"Task: env_id must be a non-empty str, got {self.env_id!r}")
        if self.shaping_fn is not None and not callable(self.shaping_fn):
            raise TypeError(f"Task {self.env_id}: shaping_fn must be None or callable "
                            "fn(obs, act, next_obs) -> Tensor[...]")
        for name in ("reward_fn", "termination_fn"):
            if not callable(getattr(self, name)):
                raise TypeError(f"Task {self.env_id}: {name} must be callable "
                                "fn(obs, act, next_obs) -> Tensor[...]")
        for name in ("obs_dim", "act_dim", "max_episode_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Task {self.env_id}: {name} must be an int >= 1, got {value!r}")
        for name in ("action_low", "action_high"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != self.act_dim:
                raise ValueError(f"Task {self.env_id}: {name} must have act_dim={self.act_dim} "
                                 f"entries, got {len(value)}")
            object.__setattr__(self, name, value)
        if any(lo >= hi for lo, hi in zip(self.action_low, self.action_high, strict=True)):
            raise ValueError(f"Task {self.env_id}: action_low must be < action_high elementwise")
        if self.builtin_reward is not None and self.builtin_reward not in rewards.BUILTIN:
            raise ValueError(f"Task {self.env_id}: builtin_reward must be one of "
                             f"{sorted(rewards.BUILTIN)} or None, got {self.builtin_reward!r}")
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))
        if self.obs_features is not None and (not isinstance(self.obs_features, ObsFeatures)
                                              or self.obs_features.obs_dim != self.obs_dim):
            raise ValueError(f"Task {self.env_id}: obs_features must be None or an ObsFeatures "
                             f"with obs_dim={self.obs_dim}, got {self.obs_features!r}")

    @property
    def reward(self) -> rewards.Reward:
        """The reward for ``mbrl_fast.ops.propagate``: the fused built-in when there is one."""
        if self.builtin_reward is not None:
            return rewards.BUILTIN[self.builtin_reward]
        return rewards.Reward(self.env_id, self.reward_fn)

    @property
    def planning_reward(self) -> rewards.Reward:
        """The planner's objective: :attr:`reward`, plus ``shaping_fn`` when the task has one
        (then a batched torch function: the kernels roll out states, torch scores them)."""
        if self.shaping_fn is None:
            return self.reward
        reward_fn, shaping_fn = self.reward_fn, self.shaping_fn

        def shaped(obs, act, next_obs):
            return reward_fn(obs, act, next_obs) + shaping_fn(obs, act, next_obs)

        return rewards.Reward(f"{self.env_id}+shaping", shaped)

    def obs_view(self) -> ObsView:
        """The observation of agents that learn their own reward (SAC, MBPO): this task's,
        without the coordinates ``obs_features`` drops (see :class:`ObsView`)."""
        return ObsView(self)

    @property
    def planning_termination(self) -> TorchTransitionFn | None:
        """``termination_fn`` for a planner, or None for a task that never terminates (then the
        fused reward needs no states from the rollout)."""
        return None if self.termination_fn is never_terminates else self.termination_fn

    def action_bounds(self, dtype=torch.float32, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(low [A], high [A]) as tensors."""
        return (torch.tensor(self.action_low, dtype=dtype, device=device),
                torch.tensor(self.action_high, dtype=dtype, device=device))

    def make_env(self, **kwargs) -> gym.Env:
        """``gymnasium.make(env_id, **env_kwargs, **kwargs)``, checked against the task.

        kwargs may add options (``render_mode``, ...) but not change one the reward needs.
        """
        for key, value in kwargs.items():
            if key in self.env_kwargs and value != self.env_kwargs[key]:
                raise ValueError(
                    f"make_env({self.env_id!r}): {key}={value!r} conflicts with the task's "
                    f"{key}={self.env_kwargs[key]!r}, which its reward_fn needs "
                    f"({self.env_kwargs_note or 'see the Task'})")
        env = gym.make(self.env_id, **{**self.env_kwargs, **kwargs})
        _check_spaces(env, self.env_id)
        if env.observation_space.shape != (self.obs_dim,):
            env.close()
            raise ValueError(f"make_env({self.env_id!r}): the env's observation space has shape "
                             f"{env.observation_space.shape}, the task expects ({self.obs_dim},)")
        return env

    @classmethod
    def from_env(cls, env_id: str, reward_fn: TorchTransitionFn,
                 termination_fn: TorchTransitionFn = never_terminates, *,
                 env_kwargs: Mapping[str, Any] | None = None, **fields) -> Task:
        """A Task whose dims, bounds and episode length are read from the env itself.

        The env must be registered with gymnasium and have 1-D Box observation and action
        spaces. ``fields``: the remaining Task fields (builtin_reward, reward_exact, note, ...).
        """
        env_kwargs = dict(env_kwargs or {})
        env = gym.make(env_id, **env_kwargs)
        try:
            _check_spaces(env, env_id)
            steps = env.spec.max_episode_steps if env.spec is not None else None
            if steps is None:
                raise ValueError(f"Task.from_env({env_id!r}): the env has no max_episode_steps; "
                                 "register it with one or build the Task by hand")
            return cls(env_id=env_id, reward_fn=reward_fn, termination_fn=termination_fn,
                       obs_dim=int(env.observation_space.shape[0]),
                       act_dim=int(env.action_space.shape[0]),
                       action_low=tuple(env.action_space.low.tolist()),
                       action_high=tuple(env.action_space.high.tolist()),
                       max_episode_steps=int(steps), env_kwargs=env_kwargs, **fields)
        finally:
            env.close()


class ObsView:
    """A task's observation without the coordinates its ``obs_features`` drop.

    Tasks keep x positions in the observation because their reward reads them (forward
    velocity = dx / dt); an agent that learns the reward from the env's (SAC, MBPO) works
    on the standard observation without them, since they grow without bound and neither
    the dynamics nor the termination depend on them (that is what ``drop`` declares).

    view(obs) [..., D] -> [..., D'];  expand(x) [..., D'] -> [..., D] with zeros where
    the dropped coordinates were;  ``termination`` is the task's on expanded states
    (None for a task that never terminates);  ``obs_features`` maps the angles of the
    task's map onto the reduced observation. ``obs_dim`` / ``act_dim`` / ``obs_features``
    make it usable where a model is built for a task (``make_ensemble``).
    """

    def __init__(self, task: Task):
        feats = task.obs_features
        drop = set(feats.drop) if feats is not None else set()
        self.task, self.full_dim = task, task.obs_dim
        self.keep = tuple(i for i in range(task.obs_dim) if i not in drop)
        self.obs_dim, self.act_dim = len(self.keep), task.act_dim
        position = {old: new for new, old in enumerate(self.keep)}
        angles = tuple(position[i] for i in (feats.angles if feats is not None else ()))
        self.obs_features = ObsFeatures(self.obs_dim, angles=angles) if angles else None
        self.is_identity = not drop

    def __call__(self, obs):
        return obs if self.is_identity else obs[..., list(self.keep)]

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_identity:
            return x
        out = x.new_zeros(*x.shape[:-1], self.full_dim)
        out[..., list(self.keep)] = x
        return out

    @property
    def termination(self) -> TorchTransitionFn | None:
        done = self.task.planning_termination
        if done is None or self.is_identity:
            return done
        return lambda obs, act, next_obs: done(self.expand(obs), act, self.expand(next_obs))


def _check_spaces(env: gym.Env, env_id: str) -> None:
    """Planners need continuous 1-D actions and flat observations."""
    act, obs = env.action_space, env.observation_space
    if not isinstance(act, gym.spaces.Box) or len(act.shape) != 1:
        env.close()
        raise TypeError(f"{env_id}: mbrl_fast tasks need a 1-D gymnasium.spaces.Box action space "
                        f"(continuous actions), got {act}; wrap the env (e.g. map a Box to its "
                        "discrete actions) before registering it")
    if not isinstance(obs, gym.spaces.Box) or len(obs.shape) != 1:
        env.close()
        raise TypeError(f"{env_id}: mbrl_fast tasks need a 1-D gymnasium.spaces.Box observation "
                        f"space, got {obs}; flatten it with gymnasium.wrappers.FlattenObservation")


_TASKS: dict[str, Task] = {}


def register_task(task: Task, *, overwrite: bool = False) -> Task:
    """Add a task to the registry (``overwrite=True`` to replace one with the same env_id)."""
    if not isinstance(task, Task):
        raise TypeError(f"register_task: task must be a mbrl_fast.envs.Task, got "
                        f"{type(task).__name__}")
    if task.env_id in _TASKS and not overwrite and _TASKS[task.env_id] is not task:
        raise ValueError(f"register_task: {task.env_id!r} is already registered; pass "
                         "overwrite=True to replace it")
    _TASKS[task.env_id] = task
    return task


def get_task(env_id: str) -> Task:
    """The registered Task for a gymnasium env id (ValueError for an unknown one)."""
    if env_id not in _TASKS:
        raise ValueError(
            f"unknown task {env_id!r}; supported tasks: {', '.join(list_tasks())}. To add one, "
            "write batched torch reward_fn(obs, act, next_obs) (and termination_fn) and call "
            "mbrl_fast.envs.register_task(mbrl_fast.envs.Task.from_env(env_id, reward_fn, "
            "termination_fn, env_kwargs={...}))")
    return _TASKS[env_id]


def list_tasks() -> list[str]:
    """The registered env ids, sorted."""
    return sorted(_TASKS)
