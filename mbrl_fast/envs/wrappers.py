"""Env wrappers agents put around a task's env: action repeat, rendered pixel observations,
a recording observation view; ``make_agent_env`` builds a task's env with the first two."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np


class ActionRepeat(gym.Wrapper):
    """Apply each action ``repeat`` times (fewer if the episode ends first), summing rewards."""

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        if repeat < 1:
            raise ValueError(f"ActionRepeat: repeat must be >= 1, got {repeat}")
        self.repeat = repeat

    def step(self, action):
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


class PixelObservation(gym.ObservationWrapper):
    """The env's rendered ``rgb_array`` frame (H x W x 3 uint8) as the observation; the env must
    be made with ``render_mode="rgb_array"`` and the frame size (MuJoCo: width, height)."""

    def __init__(self, env: gym.Env, size: tuple[int, int] = (64, 64)):
        super().__init__(env)
        self.size = tuple(size)
        self.observation_space = gym.spaces.Box(0, 255, (*self.size, 3), np.uint8)

    def observation(self, observation):
        frame = self.env.render()
        if frame is None or tuple(frame.shape) != (*self.size, 3):
            got = None if frame is None else tuple(frame.shape)
            raise ValueError(f"PixelObservation: the env rendered {got}, not {(*self.size, 3)}")
        return np.ascontiguousarray(frame, dtype=np.uint8)


class RecordTransitions(gym.Wrapper):
    """Show the learner ``view(obs)`` (an observation view such as ``Task.obs_view``, whose
    ``keep`` indices make the observation space) and hand every transition, with the env's
    full observations, to ``record(obs, act, next_obs, reward, terminated, truncated)``."""

    def __init__(self, env: gym.Env, view, record):
        super().__init__(env)
        keep = list(view.keep)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(space.low[keep], space.high[keep],
                                                dtype=space.dtype)
        self.view, self.record = view, record
        self._obs = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return self.view(obs), info

    def step(self, action):
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self.record(self._obs, action, next_obs, reward, terminated, truncated)
        self._obs = next_obs
        return self.view(next_obs), reward, terminated, truncated, info


def make_agent_env(task, obs: str = "vector", action_repeat: int = 1) -> gym.Env:
    """The task's env with ``action_repeat`` and, for obs='pixels', 64 x 64 rendered frames
    (Dreamer's observation). ValueError when the env's observations do not fit ``obs``."""
    if obs == "pixels":
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless offscreen rendering
        try:
            env = task.make_env(render_mode="rgb_array", width=64, height=64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"obs='pixels' needs an env that renders 64 x 64 rgb_array frames; "
                             f"{task.env_id} does not ({exc}); use obs='vector'") from exc
    else:
        env = task.make_env()
    shape = env.observation_space.shape
    if obs == "vector" and len(shape) != 1:
        env.close()
        raise ValueError(f"{task.env_id}: observations are images of shape {shape} but the config "
                         "says obs='vector'; set obs='pixels' (--set obs=pixels)")
    if obs == "pixels" and len(shape) == 1:
        env = PixelObservation(env)
    elif obs == "pixels" and tuple(shape) != (64, 64, 3):
        env.close()
        raise ValueError(f"{task.env_id}: obs='pixels' needs 64 x 64 x 3 images, the env's "
                         f"observations have shape {shape}")
    if action_repeat > 1:
        env = ActionRepeat(env, action_repeat)
    return env
