"""TensorBoard scalars of a run directory's metrics rows (``mbrl-fast train --tensorboard``;
:func:`mbrl_fast.runs.train_loop` writes them)."""

from __future__ import annotations

import os

import numpy as np


def tensorboard_writer_class():
    """torch's SummaryWriter, or ImportError saying what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch.utils.tensorboard imports the tensorboard package
        raise ImportError("TensorBoard logging needs the tensorboard package: pip install "
                          "tensorboard (or mbrl-fast[tensorboard])") from exc
    return SummaryWriter


class TensorBoardLog:
    """metrics.csv mirrored as TensorBoard scalars in ``log_dir`` (``RUN_DIR/tensorboard``).

    Every numeric field of ``fields`` (the agent's FIELDS, metrics.csv's columns) is one
    scalar (tag = the field's name) at global step = the row's ``env_steps``, with the
    run's own ``wall_clock_s`` as the event's wall time, so TensorBoard's "Relative" axis
    is the run's wall-clock (its "Wall" axis then counts from 1970 and means nothing).
    Rows come only from completed iterations, after their checkpoint, like metrics.csv.

    Resumable like the rest of the directory: opened on a run that has rows already (a
    resume), the writer writes all of the checkpoint's rows again, so that the scalars are
    complete even where TensorBoard was turned on only now or a kill fell between a
    checkpoint and its scalars; and it first hides every earlier event (TensorBoard's
    ``purge_step``: an event file's start marker discards the earlier files' events at
    steps >= its step), so no row shows twice and nothing the checkpoint does not hold
    shows at all.
    """

    def __init__(self, log_dir: str | os.PathLike, rows: list[dict], fields: tuple[str, ...]):
        writer_class = tensorboard_writer_class()
        self.fields = tuple(f for f in fields if f != "env_steps")
        self.writer = writer_class(str(log_dir), purge_step=0 if rows else None)
        for index, row in enumerate(rows):
            self.add(row, index)
        self.writer.flush()

    def add(self, row: dict, index: int) -> None:
        """One metrics row (``index``: its iteration, the step if it has no env_steps)."""
        step = int(row.get("env_steps", index))
        walltime = row.get("wall_clock_s")
        for name in self.fields:
            value = row.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                continue  # a text field (MB-MF's phase) or one the row does not have
            self.writer.add_scalar(name, float(value), step,
                                   walltime=None if walltime is None else float(walltime))

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
