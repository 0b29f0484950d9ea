"""Run directories: config, metrics, learning curve, atomic checkpoints, and resume.

Works for every agent of the protocol in :mod:`mbrl_fast.agents.base`; nothing here
names an agent. A run directory holds::

    config.yaml          {algo, config}: the agent's name and its full config (YAML)
    metrics.csv          one row per completed iteration (the agent's FIELDS)
    learning_curve.png   return against env steps
    tensorboard/         (``--tensorboard``) metrics.csv as TensorBoard scalars
    checkpoint.pt        agent state after the last completed iteration (see below)
    best.pt              a copy of checkpoint.pt from the iteration with the highest return
    checkpoints/iter_NNNN.pt   (``--keep-every K``) copies of checkpoint.pt after every
                         K-th iteration, N the iterations completed (kept, never rotated)
    journal/iter_IIII.attempt_AA.bin   records of the iteration in progress

Checkpoint (written after every iteration, atomically: temp file in the directory,
fsync, os.replace): the agent's ``state_dict()`` (models, optimizers, buffers, RNG
states, the iteration counter, wall-clock and the metrics rows). The agent derives
the env / exploration seeds of an iteration from (seed, iteration, attempt), so the
checkpoint plus the iteration counter fix everything that follows.

Journal: every real record (a transition, with whatever fields the agent's
``journal_dtype()`` declares) is appended to the current iteration's journal with
one ``write`` call as it happens, so a process killed at any point (SIGKILL
included) loses no recorded record. The header holds the record schema. After the
checkpoint that contains an iteration's records is in place, its journals are deleted.

Resume (:func:`prepare_resume`) from the last consistent state:
  1. read config.yaml, checkpoint.pt and the journals of the interrupted iteration,
     and load them into a fresh agent; any error -> CheckpointError, and the
     directory is left exactly as it was;
  2. the interrupted iteration's journaled records go back to the agent
     (``agent.restore``: they were real data) and stay journaled until it completes;
  3. the interrupted iteration is run again, as attempt ``a + 1`` (new env / exploration
     seeds). Agents whose iterations are trials or rollout batches (PETS, MB-MF) run it
     whole, so its return and timings are those of a complete attempt and ``env_steps``
     counts the records of every attempt; agents whose budget is env steps (SAC, MBPO,
     DADS, Dreamer) end it at the env step an uninterrupted run would, collecting only
     what the kept records leave, so the run never exceeds its budget. Journals of already
     checkpointed iterations (a kill between checkpoint and cleanup) are deleted,
     metrics.csv is rewritten.
A run killed exactly at an iteration boundary continues bit-for-bit as if never stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import yaml

from mbrl_fast.config import config_from_dict, config_to_dict, with_fields, without_fields
from mbrl_fast.curves import plot_curves
from mbrl_fast.models.io import atomic_torch_save, atomic_write_bytes, fsync_dir
from mbrl_fast.tensorboard_log import TensorBoardLog, tensorboard_writer_class  # noqa: F401

CHECKPOINT_FORMAT = 1
# config fields that say how a run computes, not what it learns: a resumed run may change
# them (``mbrl-fast train AGENT --resume DIR --set torch_threads=4`` on a larger machine,
# ``--set train.compile=true`` to compile the model's training step from now on). Dotted
# keys name a field of a section; each maps to the values it takes.
class ResumeSetting(NamedTuple):
    what: str  # the values it takes, for error messages
    accepts: Callable[[object], bool]


RESUME_SETTINGS = {
    "torch_threads": ResumeSetting("an integer >= 0", lambda v: isinstance(v, int)
                                   and not isinstance(v, bool) and v >= 0),
    "train.compile": ResumeSetting("true or false", lambda v: isinstance(v, bool)),
}
JOURNAL_MAGIC = b"MBRLJRN2"
_JOURNAL_NAME = re.compile(r"iter_(\d{4,})\.attempt_(\d{2,})\.bin$")
_SNAPSHOT_NAME = re.compile(r"iter_(\d{4,})\.pt$")


class CheckpointError(RuntimeError):
    """A run directory cannot be resumed (corrupt or mismatched files); nothing was changed."""


# ---- journal of the iteration in progress ---------------------------------------------

class Journal:
    """Append-only records of a numpy structured dtype, one ``write`` per record."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.path, self.dtype = path, np.dtype(dtype)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        schema = _schema(self.dtype)
        os.write(self.fd, JOURNAL_MAGIC + struct.pack("<I", len(schema)) + schema)
        fsync_dir(path.parent)

    def append(self, **fields) -> None:
        """One record: every field of the dtype, by name."""
        if set(fields) != set(self.dtype.names):
            raise KeyError(f"journal record needs fields {list(self.dtype.names)}, got "
                           f"{sorted(fields)}")
        rec = np.empty(1, self.dtype)
        for name, value in fields.items():
            rec[name] = value
        os.write(self.fd, rec.tobytes())  # one write per record: survives SIGKILL

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _schema(dtype: np.dtype) -> bytes:
    return json.dumps(dtype.descr).encode()


def _dtype_from_schema(schema) -> np.dtype:
    return np.dtype([(f[0], f[1]) if len(f) == 2 else (f[0], f[1], tuple(f[2])) for f in schema])


def read_journal(path: Path, dtype: np.dtype | None = None) -> np.ndarray:
    """The complete records of a journal (a torn trailing record is dropped). With
    ``dtype``, the journal must hold records of exactly that schema (CheckpointError).

    A journal cut before its header was complete (the process killed between creating the
    file and writing the header) holds no record: it reads as empty (of ``dtype``)."""
    raw = path.read_bytes()
    magic = len(JOURNAL_MAGIC)
    if raw[:magic] != JOURNAL_MAGIC[:len(raw)]:
        raise CheckpointError(f"journal {path} is corrupt (bad header)")
    size = struct.unpack("<I", raw[magic:magic + 4])[0] if len(raw) >= magic + 4 else None
    if size is None or len(raw) < magic + 4 + size:  # torn header: no record was written
        return np.empty(0, np.dtype(dtype) if dtype is not None else np.uint8)
    header = magic + 4 + size
    try:
        schema = json.loads(raw[magic + 4:header])
        found = _dtype_from_schema(schema)
    except (ValueError, TypeError, IndexError) as exc:
        raise CheckpointError(f"journal {path} is corrupt (bad schema)") from exc
    if dtype is not None and schema != json.loads(_schema(np.dtype(dtype))):
        raise CheckpointError(f"journal {path} holds records {schema}, this run's agent "
                              f"writes {json.loads(_schema(np.dtype(dtype)))}")
    n = (len(raw) - header) // found.itemsize
    return np.frombuffer(raw, found, count=n, offset=header).copy()


# ---- the run directory ---------------------------------------------------------------------

class RunDir:
    """Paths and atomic writes of one run directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.config_path = self.path / "config.yaml"
        self.metrics_path = self.path / "metrics.csv"
        self.curve_path = self.path / "learning_curve.png"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.best_path = self.path / "best.pt"
        self.snapshot_dir = self.path / "checkpoints"
        self.journal_dir = self.path / "journal"
        self.tensorboard_dir = self.path / "tensorboard"

    def read_config(self) -> tuple[str, dict]:
        if not self.config_path.is_file():
            raise CheckpointError(f"{self.path} is not a run directory (no config.yaml)")
        try:
            data = yaml.safe_load(self.config_path.read_text())
            return str(data["algo"]), dict(data["config"])
        except Exception as exc:
            raise CheckpointError(f"{self.config_path} is corrupt: {exc}") from exc

    def write_config(self, algo: str, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump({"algo": algo, "config": config}, sort_keys=False)
        atomic_write_bytes(self.config_path, text.encode())

    def load_checkpoint(self, algo: str, config: dict, budget: str,
                        path: Path | None = None) -> dict | None:
        """The checkpoint's agent state, or None if there is none; CheckpointError if bad.

        ``budget``: the config field that may differ (a resumed run may be extended).
        ``path``: another checkpoint of this run (``best_path``); default checkpoint.pt."""
        path = self.checkpoint_path if path is None else Path(path)
        if not path.exists():
            return None
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path} is corrupt or unreadable "
                                  f"({type(exc).__name__}: {exc})") from exc
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not a format-{CHECKPOINT_FORMAT} "
                                  "mbrl-fast checkpoint")
        if ckpt.get("algo") != algo:
            raise CheckpointError(f"{path} is a {ckpt.get('algo')!r} checkpoint, "
                                  f"config.yaml says {algo!r}")
        ignore = (budget, *RESUME_SETTINGS)
        diff = _config_diff(without_fields(ckpt["config"], ignore),
                            without_fields(config, ignore))
        if diff:
            raise CheckpointError(f"{path} does not match config.yaml "
                                  f"(fields differ: {diff})")
        return ckpt["agent"]

    def save_checkpoint(self, algo: str, config: dict, agent_state: dict) -> None:
        atomic_torch_save({"format": CHECKPOINT_FORMAT, "algo": algo, "config": config,
                           "agent": agent_state}, self.checkpoint_path)

    def save_best(self) -> None:
        """best.pt <- checkpoint.pt (atomically; called when the last completed iteration
        has the highest return so far)."""
        atomic_write_bytes(self.best_path, self.checkpoint_path.read_bytes())

    def snapshot_path(self, iterations: int) -> Path:
        """checkpoints/iter_NNNN.pt: the kept checkpoint after ``iterations`` iterations."""
        return self.snapshot_dir / f"iter_{iterations:04d}.pt"

    def save_snapshot(self, iterations: int) -> None:
        """checkpoints/iter_NNNN.pt <- checkpoint.pt (atomically; called after the
        ``iterations``-th iteration's checkpoint)."""
        self.snapshot_dir.mkdir(exist_ok=True)
        atomic_write_bytes(self.snapshot_path(iterations), self.checkpoint_path.read_bytes())

    def snapshots(self) -> list[tuple[int, Path]]:
        """(iterations, path) of every kept checkpoint, sorted."""
        if not self.snapshot_dir.is_dir():
            return []
        found = ((_SNAPSHOT_NAME.match(p.name), p) for p in self.snapshot_dir.iterdir())
        return sorted((int(m.group(1)), p) for m, p in found if m)

    def journals(self) -> list[tuple[int, int, Path]]:
        """(iteration, attempt, path) of every journal file, sorted."""
        if not self.journal_dir.is_dir():
            return []
        out = []
        for p in self.journal_dir.iterdir():
            m = _JOURNAL_NAME.match(p.name)
            if m:
                out.append((int(m.group(1)), int(m.group(2)), p))
        return sorted(out)

    def open_journal(self, iteration: int, attempt: int, dtype: np.dtype) -> Journal:
        self.journal_dir.mkdir(exist_ok=True)
        return Journal(self.journal_dir / f"iter_{iteration:04d}.attempt_{attempt:02d}.bin",
                       dtype)

    def remove_journals(self, before: int) -> None:
        """Delete journals of iterations < before (their records are in the checkpoint)."""
        for iteration, _, path in self.journals():
            if iteration < before:
                path.unlink()

    def write_metrics(self, rows: list[dict], fields: tuple[str, ...]) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.metrics_path, text.getvalue().encode())

    def read_metrics(self) -> list[dict]:
        """metrics.csv as dicts of numbers (ints where they are ints, else floats or text)."""
        if not self.metrics_path.is_file():
            return []
        with open(self.metrics_path, newline="") as f:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]

    def plot(self, rows: list[dict], title: str) -> None:
        """learning_curve.png: return against env steps. Without matplotlib: a warning, no
        PNG (the metrics are in metrics.csv)."""
        try:
            png = plot_curves({"": rows}, title)
        except ImportError as exc:
            warnings.warn(f"learning_curve.png not written: {exc} (pip install matplotlib)",
                          RuntimeWarning, stacklevel=2)
            return
        atomic_write_bytes(self.curve_path, png)


def _config_diff(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """Fields whose values differ, sections compared field by field. A field the saved
    config lacks was added to the agent's config after the checkpoint was written: it takes
    its current value (a new field's default keeps the old behaviour), so older runs resume."""
    out = []
    for key in sorted(saved):
        a, b = saved[key], now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def check_resume_setting(key: str, value):
    """``value`` if it is one that RESUME_SETTINGS allows for ``key``, else ValueError."""
    if key not in RESUME_SETTINGS:
        raise ValueError(f"a resumed run may change only {list(RESUME_SETTINGS)} (and extend "
                         f"its budget), not {key!r}")
    if not RESUME_SETTINGS[key].accepts(value):
        raise ValueError(f"{key} must be {RESUME_SETTINGS[key].what}, got {value!r}")
    return value


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# ---- the training loop around an agent ----------------------------------------------------

def prepare_resume(run: RunDir, algo: str, config: dict, agent) -> int:
    """Load checkpoint + journals into ``agent`` (resume steps 1-2). Returns the attempt
    number for the interrupted iteration. Raises CheckpointError before writing anything."""
    state = run.load_checkpoint(algo, config, agent.budget)
    if state is not None:
        try:
            agent.load_state_dict(state)
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{run.checkpoint_path} does not fit this run's agent "
                                  f"({type(exc).__name__}: {exc})") from exc
    current = agent.iterations_done
    pending = [(a, p) for i, a, p in run.journals() if i == current]
    dtype = agent.journal_dtype()
    records = [read_journal(p, dtype) for _, p in pending]
    # ---- everything is loaded and valid; from here on the directory may change ----
    for rec in records:
        if len(rec):
            agent.restore(rec)
    run.remove_journals(current)
    if agent.history:
        run.write_metrics(agent.history, agent.FIELDS)
    return max(a for a, _ in pending) + 1 if pending else 0


def last_is_best(rows: list[dict]) -> bool:
    """Whether the last row's return is finite and above every earlier one's (the first
    row is the best so far; a tie keeps the earlier)."""
    if not rows or not np.isfinite(rows[-1].get("return", float("nan"))):
        return False
    earlier = [r.get("return") for r in rows[:-1]]
    earlier = [x for x in earlier if x is not None and np.isfinite(x)]
    return not earlier or rows[-1]["return"] > max(earlier)


def train_loop(agent, run: RunDir, algo: str, config: dict, attempt: int = 0,
               progress: bool = True, tensorboard: bool = False,
               keep_every: int | None = None) -> list[dict]:
    """Run iterations agent.iterations_done .. total - 1, checkpointing after each one.

    ``tensorboard``: also mirror each completed iteration's metrics row as TensorBoard
    scalars (:class:`TensorBoardLog`; needs the tensorboard package).
    ``keep_every`` K: also keep a copy of the checkpoint after every K-th iteration
    (``checkpoints/iter_NNNN.pt``), to evaluate the run at those points later."""
    from tqdm import tqdm

    if keep_every is not None and (not isinstance(keep_every, int) or keep_every < 1):
        raise ValueError(f"keep_every must be an int >= 1, got {keep_every!r}")
    tb = TensorBoardLog(run.tensorboard_dir, agent.history, agent.FIELDS) if tensorboard else None
    # a kill may have fallen between the checkpoint and its copies
    if last_is_best(agent.history):
        run.save_best()
    done = agent.iterations_done
    if keep_every and done and done % keep_every == 0 and not run.snapshot_path(done).exists():
        run.save_snapshot(done)
    total = agent.total_iterations(agent.config)
    bar = tqdm(total=total, initial=min(agent.iterations_done, total), unit=agent.unit,
               disable=not progress, dynamic_ncols=True)
    title = f"{algo} {config.get('env_id', '')} seed {config.get('seed')}"
    try:
        for index in range(agent.iterations_done, total):
            journal = run.open_journal(index, attempt, agent.journal_dtype())
            try:
                row = agent.run_iteration(index, attempt, record=journal.append)
            finally:
                journal.close()
            run.save_checkpoint(algo, config, agent.state_dict())
            if last_is_best(agent.history):
                run.save_best()
            if keep_every and (index + 1) % keep_every == 0:
                run.save_snapshot(index + 1)
            run.remove_journals(index + 1)
            run.write_metrics(agent.history, agent.FIELDS)
            run.plot(agent.history, title)
            if tb is not None:
                tb.add(row, index)
                tb.flush()
            attempt = 0
            bar.update(1)
            bar.set_postfix(agent.postfix(row))
    finally:
        bar.close()
        if tb is not None:
            tb.close()
    return agent.history


# ---- starting, resuming and evaluating runs (the CLI and sweeps call these) ----------------

def start_run(algo: str, config, path: str | os.PathLike):
    """A fresh run of agent ``algo`` with ``config`` in a new directory ``path``.
    Returns (agent, RunDir); raises FileExistsError if ``path`` already holds a run."""
    from mbrl_fast.agents import get_agent

    run = RunDir(path)
    if run.config_path.exists():
        raise FileExistsError(f"{path} already holds a run; resume it instead")
    agent = get_agent(algo)(config)
    run.write_config(algo, config_to_dict(config))
    return agent, run


def resume_run(path: str | os.PathLike, *, extend: int | None = None,
               settings: dict | None = None):
    """The agent of run directory ``path`` with its checkpoint and journals loaded.

    extend: a new value of the agent's budget field (``trials``, ``steps``) to run longer.
    settings: new values of fields in RESUME_SETTINGS (how the run computes, e.g. on a
    machine with more cores), dotted keys for a section's field (``{"train.compile":
    True}``). Either is written to config.yaml once the run has loaded.
    Returns (algo, agent, RunDir, attempt). CheckpointError (directory untouched) when the
    run cannot be resumed; ValueError (untouched too) for a setting it may not change or
    that this agent's config does not have.
    """
    settings = {key: check_resume_setting(key, value)
                for key, value in (settings or {}).items()}
    from mbrl_fast.agents import get_agent

    run = RunDir(path)
    algo, data = run.read_config()
    try:
        cls = get_agent(algo)
        config = config_from_dict(cls.Config, data)
    except ValueError as exc:
        raise CheckpointError(f"{run.config_path}: {exc}") from None
    if extend is not None:
        config = dataclasses.replace(config, **{cls.budget: extend})
    if settings:
        try:
            config = with_fields(config, settings)
        except ValueError as exc:
            raise ValueError(f"{exc}: this agent's runs have no such setting to change") from None
    agent = cls(config)
    try:
        attempt = prepare_resume(run, algo, config_to_dict(config), agent)
    except BaseException:
        agent.close()
        raise
    if extend is not None or settings:
        run.write_config(algo, config_to_dict(config))
    return algo, agent, run, attempt


def load_run(path: str | os.PathLike, best: bool = False, checkpoint: str | None = None):
    """(algo, agent, RunDir) with the last checkpoint loaded, for evaluation (read only);
    ``best``: best.pt instead (the iteration with the highest return); ``checkpoint``:
    another file of this run, relative to its directory (``checkpoints/iter_0080.pt``)."""
    from mbrl_fast.agents import get_agent

    run = RunDir(path)
    algo, data = run.read_config()
    try:
        cls = get_agent(algo)
        config = config_from_dict(cls.Config, data)
    except ValueError as exc:
        raise CheckpointError(f"{run.config_path}: {exc}") from None
    if best and checkpoint is not None:
        raise ValueError("give best or checkpoint, not both")
    ckpt_path = (run.best_path if best else run.checkpoint_path if checkpoint is None
                 else run.path / checkpoint)
    state = run.load_checkpoint(algo, config_to_dict(config), cls.budget, ckpt_path)
    if state is None and checkpoint is not None:
        kept = ", ".join(str(p.relative_to(run.path)) for _, p in run.snapshots()) or "none"
        raise CheckpointError(f"{run.path} has no {checkpoint} (kept checkpoints: {kept})")
    if state is None:
        raise CheckpointError(f"{run.path} has no {ckpt_path.name} yet " + (
            "(it is written when a completed iteration sets a new best return)" if best
            else f"(no {cls.unit} has completed)"))
    agent = cls(config)
    try:
        agent.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        agent.close()
        raise CheckpointError(f"{ckpt_path} does not fit this run's agent "
                              f"({type(exc).__name__}: {exc})") from exc
    return algo, agent, run

