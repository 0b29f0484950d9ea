"""Replay buffer of real transitions (numpy ring buffer, float64 observations).

Stores obs [D], act [A], next_obs [D], reward, terminated, truncated per transition
in preallocated arrays [capacity, .]. When full, the oldest rows are overwritten.
``total_added`` counts every transition ever added (it keeps growing past capacity).

Observations are kept in float64 so that delta targets ``next_obs - obs`` of
large-offset states (MuJoCo positions) are taken before rounding to float32.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
import torch

from mbrl_fast.models.io import atomic_write_bytes

FIELDS = ("obs", "act", "next_obs", "reward", "terminated", "truncated")


@dataclass
class Transitions:
    """A batch of transitions: obs/next_obs [B, D], act [B, A], reward/terminated/truncated [B]."""

    obs: np.ndarray
    act: np.ndarray
    next_obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return int(self.obs.shape[0])


class ReplayBuffer:
    """Ring buffer of capacity ``capacity`` for obs_dim-D observations and act_dim-D actions."""

    def __init__(self, obs_dim: int, act_dim: int, capacity: int = 1_000_000):
        for name, v in (("obs_dim", obs_dim), ("act_dim", act_dim), ("capacity", capacity)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.obs_dim, self.act_dim, self.capacity = obs_dim, act_dim, capacity
        self.obs = np.zeros((capacity, obs_dim), np.float64)
        self.act = np.zeros((capacity, act_dim), np.float64)
        self.next_obs = np.zeros((capacity, obs_dim), np.float64)
        self.reward = np.zeros(capacity, np.float64)
        self.terminated = np.zeros(capacity, bool)
        self.truncated = np.zeros(capacity, bool)
        self.total_added = 0

    def __len__(self) -> int:
        return min(self.total_added, self.capacity)

    def add(self, obs, act, next_obs, reward, terminated, truncated=False) -> None:
        """Add one transition."""
        self.add_batch(np.asarray(obs)[None], np.asarray(act)[None], np.asarray(next_obs)[None],
                       np.asarray([reward]), np.asarray([terminated]), np.asarray([truncated]))

    def add_batch(self, obs, act, next_obs, reward, terminated, truncated=None) -> None:
        """Add B transitions: obs/next_obs [B, D], act [B, A], reward/terminated/truncated [B]."""
        obs, act, next_obs = (np.asarray(a, np.float64) for a in (obs, act, next_obs))
        b = obs.shape[0]
        reward = np.asarray(reward, np.float64).reshape(-1)
        terminated = np.asarray(terminated, bool).reshape(-1)
        truncated = np.zeros(b, bool) if truncated is None else np.asarray(truncated, bool)
        truncated = truncated.reshape(-1)
        for name, arr, shape in (("obs", obs, (b, self.obs_dim)), ("act", act, (b, self.act_dim)),
                                 ("next_obs", next_obs, (b, self.obs_dim)),
                                 ("reward", reward, (b,)), ("terminated", terminated, (b,)),
                                 ("truncated", truncated, (b,))):
            if arr.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
        idx = (self.total_added + np.arange(b)) % self.capacity
        if b > self.capacity:  # only the last `capacity` rows survive
            keep = slice(b - self.capacity, b)
            obs, act, next_obs = obs[keep], act[keep], next_obs[keep]
            reward, terminated, truncated = reward[keep], terminated[keep], truncated[keep]
            idx = idx[keep]
        self.obs[idx], self.act[idx], self.next_obs[idx] = obs, act, next_obs
        self.reward[idx], self.terminated[idx], self.truncated[idx] = reward, terminated, truncated
        self.total_added += b

    def _order(self) -> np.ndarray:
        """Row indices oldest -> newest."""
        n = len(self)
        start = self.total_added % self.capacity if self.total_added > self.capacity else 0
        return (start + np.arange(n)) % self.capacity

    def _take(self, idx: np.ndarray) -> Transitions:
        return Transitions(*(getattr(self, f)[idx] for f in FIELDS))

    def all(self) -> Transitions:
        """Every stored transition, oldest first."""
        return self._take(self._order())

    def latest(self, n: int) -> Transitions:
        """The newest min(n, len) transitions, oldest first."""
        order = self._order()
        return self._take(order[len(order) - min(max(n, 0), len(order)):])

    def sample(self, batch_size: int, rng: np.random.Generator) -> Transitions:
        """batch_size transitions drawn uniformly with replacement."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return self._take(rng.integers(0, len(self), size=batch_size))

    # ---- as structured records (run-directory journals) --------------------------------
    def record_dtype(self) -> np.dtype:
        """One transition as a numpy structured dtype (the journal schema of the agents
        that collect plain transitions)."""
        d, a = self.obs_dim, self.act_dim
        return np.dtype([("obs", "<f8", (d,)), ("act", "<f8", (a,)), ("next_obs", "<f8", (d,)),
                         ("reward", "<f8"), ("terminated", "?"), ("truncated", "?")])

    def records(self) -> np.ndarray:
        """Every stored transition, oldest first, as records of :meth:`record_dtype`."""
        data = self.all()
        out = np.empty(len(data), self.record_dtype())
        for f in FIELDS:
            out[f] = getattr(data, f)
        return out

    def add_records(self, records: np.ndarray) -> None:
        """Add records of :meth:`record_dtype` (e.g. read back from a journal)."""
        if records.dtype != self.record_dtype():
            raise ValueError(f"records must have dtype {self.record_dtype()}, got {records.dtype}")
        if len(records):
            self.add_batch(*(records[f] for f in FIELDS))

    # ---- persistence ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Tensors only (loads with torch.load(weights_only=True)); stored rows oldest first."""
        data = self.all()
        state = {f: torch.from_numpy(np.ascontiguousarray(getattr(data, f))) for f in FIELDS}
        state.update(obs_dim=self.obs_dim, act_dim=self.act_dim, capacity=self.capacity,
                     total_added=self.total_added)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; ValueError on a mismatch (buffer unchanged)."""
        for key in ("obs_dim", "act_dim", "capacity"):
            if int(state[key]) != getattr(self, key):
                raise ValueError(f"replay buffer {key} mismatch: saved {int(state[key])}, "
                                 f"this buffer {getattr(self, key)}")
        arrays = {f: np.asarray(state[f]) for f in FIELDS}
        n = arrays["obs"].shape[0]
        total = int(state["total_added"])
        if n > self.capacity or n != min(total, self.capacity):
            raise ValueError(f"replay buffer state is inconsistent: {n} rows, total_added {total}")
        fresh = ReplayBuffer(self.obs_dim, self.act_dim, self.capacity)
        fresh.add_batch(*(arrays[f] for f in FIELDS))
        for f in FIELDS:
            setattr(self, f, getattr(fresh, f))
        self.total_added = total
        if total > self.capacity:  # rows were written oldest-first from slot 0; realign the ring
            shift = total % self.capacity
            for f in FIELDS:
                setattr(self, f, np.roll(getattr(self, f), shift, axis=0))

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` (.npz) atomically."""
        buf = io.BytesIO()
        meta = np.array([self.obs_dim, self.act_dim, self.capacity, self.total_added], np.int64)
        data = self.all()
        np.savez(buf, meta=meta, **{f: getattr(data, f) for f in FIELDS})
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReplayBuffer:
        with np.load(path) as z:
            obs_dim, act_dim, capacity, total = (int(v) for v in z["meta"])
            buf = cls(obs_dim, act_dim, capacity)
            state = {f: z[f] for f in FIELDS}
        state.update(obs_dim=obs_dim, act_dim=act_dim, capacity=capacity, total_added=total)
        buf.load_state_dict(state)
        return buf
