"""A growing log of structured records, oldest first: the storage under agents that keep
every real transition (MB-MF's data of all phases, Dreamer's episode replay).

Records are one numpy structured dtype; the log doubles its array when it fills, so adding
n records costs O(n) amortized, and hands out views or copies of what it holds. A run
directory's journal holds the same records, so a resumed agent extends a fresh log with
what the journal read back.
"""

from __future__ import annotations

import numpy as np
import torch


def make_record(dtype: np.dtype, **fields) -> np.ndarray:
    """One record of ``dtype`` (an array of one), fields by name, the others zero."""
    rec = np.zeros(1, dtype)
    for name, value in fields.items():
        rec[name] = value
    return rec


class RecordLog:
    """Every record added, oldest first, of dtype ``dtype``."""

    def __init__(self, dtype: np.dtype, capacity: int = 1024):
        self.dtype = np.dtype(dtype)
        if not self.dtype.names:
            raise ValueError(f"RecordLog: dtype must be a structured dtype, got {self.dtype}")
        self._data = np.zeros(max(int(capacity), 1), self.dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, **fields) -> np.ndarray:
        """One record, fields by name (the others zero); returns it (an array of one)."""
        rec = make_record(self.dtype, **fields)
        self.extend(rec)
        return rec

    def extend(self, records: np.ndarray) -> None:
        """Records in order (e.g. a journal's); ValueError for another dtype."""
        records = np.asarray(records)
        if records.dtype != self.dtype:
            raise ValueError(f"records of dtype {records.dtype}, this log holds {self.dtype}")
        n = len(records)
        if self._n + n > len(self._data):
            grown = np.zeros(max(2 * len(self._data), self._n + n), self.dtype)
            grown[:self._n] = self._data[:self._n]
            self._data = grown
        self._data[self._n:self._n + n] = records
        self._n += n

    def view(self) -> np.ndarray:
        """Every record held, oldest first, without a copy (valid until the next add)."""
        return self._data[:self._n]

    def records(self) -> np.ndarray:
        """Every record held, oldest first (a copy)."""
        return self._data[:self._n].copy()

    def clear(self) -> None:
        self._n = 0

    # ---- checkpoints: the records' bytes as one uint8 tensor ---------------------------
    def to_tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.records().view(np.uint8))

    def load_tensor(self, raw: torch.Tensor, what: str = "records") -> None:
        """Replace the log's records by ``to_tensor``'s bytes; ValueError, nothing changed,
        when they are not whole records of this dtype."""
        raw = raw.numpy()
        if raw.size % self.dtype.itemsize:
            raise ValueError(f"{what} of {raw.size} bytes are not whole records of "
                             f"{self.dtype.itemsize} bytes")
        records = raw.view(self.dtype).copy()
        self.clear()
        self.extend(records)
