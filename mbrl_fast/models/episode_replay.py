"""Replay of whole episodes for sequence models (Dreamer): records in arrival order, windows of
length L sampled inside one episode.

A record is one step of an episode (numpy structured dtype, fields chosen by the agent); the
field ``is_first`` marks the first step of every episode, so the records alone say where the
episodes are. Episodes are kept whole and never evicted (Dreamer V1 keeps every episode;
100k steps of a 17-D task are ~10 MB). Sampling picks a window uniformly among all length-L
windows that lie inside one episode.
"""

from __future__ import annotations

import numpy as np
import torch

from mbrl_fast.models.records import RecordLog, make_record


class EpisodeReplay:
    """Records of dtype ``dtype`` (must have a bool ``is_first`` field), oldest first."""

    def __init__(self, dtype: np.dtype):
        self.dtype = np.dtype(dtype)
        if "is_first" not in (self.dtype.names or ()):
            raise ValueError("EpisodeReplay: the record dtype needs an 'is_first' field")
        self.log = RecordLog(self.dtype)
        self._starts: list[int] = []  # index of every episode's first record
        self.steps = 0  # records that are not the first of an episode (one action each)

    def __len__(self) -> int:
        return len(self.log)

    def add(self, **fields) -> None:
        """One record, every field by name."""
        self.add_records(make_record(self.dtype, **fields))

    def add_records(self, records: np.ndarray) -> None:
        """Records in order (e.g. a journal's). A first record that is not ``is_first`` continues
        the last episode."""
        records = np.asarray(records)
        if records.dtype != self.dtype:
            raise ValueError(f"EpisodeReplay: records of dtype {records.dtype}, this replay "
                             f"holds {self.dtype}")
        n, start = len(records), len(self.log)
        if n == 0:
            return
        self.log.extend(records)
        firsts = np.flatnonzero(records["is_first"]) + start
        if not self._starts and (len(firsts) == 0 or firsts[0] != start):
            self._starts.append(start)  # data that starts mid-episode: its own episode
        self._starts.extend(int(i) for i in firsts)
        self.steps += int(n - records["is_first"].sum())

    def records(self) -> np.ndarray:
        """Every record held, oldest first (a copy)."""
        return self.log.records()

    def episode_lengths(self) -> np.ndarray:
        bounds = np.array(self._starts + [len(self.log)], dtype=np.int64)
        return np.diff(bounds)

    def sample(self, batch: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """[batch, length] records: windows inside one episode, uniform over all such windows.

        ValueError naming the longest episode when no episode holds ``length`` steps."""
        lengths = self.episode_lengths()
        longest = int(lengths.max()) if len(lengths) else 0
        if longest < length:
            raise ValueError(f"sequence length {length} is longer than every stored episode "
                             f"(the longest has {longest} steps, {len(lengths)} episodes "
                             f"stored): lower seq_len to at most {longest}")
        windows = np.maximum(lengths - length + 1, 0)
        starts = np.array(self._starts, dtype=np.int64)
        cum = np.cumsum(windows)
        pick = rng.integers(0, cum[-1], size=batch)
        episode = np.searchsorted(cum, pick, side="right")
        begin = starts[episode] + pick - (cum[episode] - windows[episode])
        index = begin[:, None] + np.arange(length)[None, :]
        return self.log.view()[index]

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Tensors only: one per field, plus the counters."""
        data = self.log.view()
        return {"fields": {name: torch.from_numpy(np.ascontiguousarray(data[name]))
                           for name in self.dtype.names}}

    def load_state_dict(self, state: dict) -> None:
        fields = state["fields"]
        if set(fields) != set(self.dtype.names):
            raise ValueError(f"replay fields mismatch: saved {sorted(fields)}, this replay "
                             f"{sorted(self.dtype.names)}")
        n = len(fields["is_first"])
        records = np.zeros(n, self.dtype)
        for name in self.dtype.names:
            value = fields[name].numpy()
            if value.shape[1:] != records[name].shape[1:]:
                raise ValueError(f"replay field {name!r}: saved shape {value.shape[1:]}, this "
                                 f"replay {records[name].shape[1:]}")
            records[name] = value
        self.log, self._starts, self.steps = RecordLog(self.dtype), [], 0
        self.add_records(records)
