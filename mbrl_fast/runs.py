"""Run directories: config, metrics, learning curve, atomic checkpoints, and resume.

A run directory holds::

    config.yaml          {algo, config}: the full config of the run (dataclass -> YAML)
    metrics.csv          one row per completed trial (TRIAL_FIELDS of the agent)
    learning_curve.png   return against env steps
    checkpoint.pt        agent state after the last completed trial (see below)
    journal/trial_TTTT.attempt_AA.bin   transitions of the trial in progress

Checkpoint (written after every trial, atomically: temp file in the directory,
fsync, os.replace): model, normalizer, optimizer, trainer RNG, replay buffer,
torch RNG, trial counter, wall-clock and the metrics rows. The agent derives the
env / planner seeds of a trial from (seed, trial, attempt), so the checkpoint plus
the trial counter fix everything that follows.

Journal: every real transition is appended to the current trial's journal with
one ``write`` call per transition as it happens, so a process killed at any
point (SIGKILL included) loses no recorded transition. After the checkpoint that
contains a trial's transitions is in place, that trial's journals are deleted.

Resume (``train(..., resume=True)``) from the last consistent state:
  1. read config.yaml, checkpoint.pt and the journals of the interrupted trial,
     and load them into a fresh agent; any error -> CheckpointError, and the
     directory is left exactly as it was;
  2. the interrupted trial's journaled transitions are added to the replay buffer
     (they were real data) and stay journaled until the trial completes;
  3. the interrupted trial is run again from a fresh env reset, as attempt
     ``a + 1`` (new env / planner seeds), so its recorded return, planning and
     training time are those of the complete attempt; ``env_steps`` counts the
     transitions of every attempt. Journals of already checkpointed trials (a kill
     between checkpoint and cleanup) are deleted, metrics.csv is rewritten.
A run killed exactly at a trial boundary continues bit-for-bit as if never stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import struct
from pathlib import Path

import numpy as np
import torch
import yaml

from mbrl_fast.models.io import atomic_torch_save, atomic_write_bytes, fsync_dir

CHECKPOINT_FORMAT = 1
JOURNAL_MAGIC = b"MBRLJRN1"
_JOURNAL_NAME = re.compile(r"trial_(\d{4,})\.attempt_(\d{2,})\.bin$")


class CheckpointError(RuntimeError):
    """A run directory cannot be resumed (corrupt or mismatched files); nothing was changed."""


# ---- configs: dataclass <-> dict, overrides ---------------------------------------------

def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(cls, data: dict, where: str = "config"):
    """Build dataclass ``cls`` from a dict; unknown keys or wrong types -> ValueError."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = config_from_dict(type(default), value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, default, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(value, default, where: str):
    """value converted to the type of ``default`` (int -> float allowed)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise ValueError(f"{where} must be a {type(default).__name__}, got {value!r}")
    return value


def apply_overrides(config, overrides: list[str]):
    """``["planner.population=200", "train.lr=3e-4"]`` applied to a config dataclass."""
    data = config_to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like section.field=value")
        node, parts = data, key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"override {item!r}: {part!r} is not a config section")
            node = node[part]
        if parts[-1] not in node:
            raise ValueError(f"override {item!r}: unknown field {key!r}")
        node[parts[-1]] = yaml.safe_load(raw)
    return config_from_dict(type(config), data)


# ---- journal of the trial in progress ------------------------------------------------------

class Journal:
    """Append-only float64 records [obs D, act A, next_obs D, reward, terminated, truncated]."""

    def __init__(self, path: Path, obs_dim: int, act_dim: int):
        self.path, self.obs_dim, self.act_dim = path, obs_dim, act_dim
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        os.write(self.fd, JOURNAL_MAGIC + struct.pack("<qq", obs_dim, act_dim))
        fsync_dir(path.parent)

    def append(self, obs, act, next_obs, reward, terminated, truncated) -> None:
        row = np.concatenate([np.asarray(obs, np.float64).reshape(-1),
                              np.asarray(act, np.float64).reshape(-1),
                              np.asarray(next_obs, np.float64).reshape(-1),
                              [float(reward), float(terminated), float(truncated)]])
        os.write(self.fd, row.tobytes())  # one write per transition: survives SIGKILL

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_journal(path: Path, obs_dim: int, act_dim: int) -> np.ndarray:
    """[n, 2D + A + 3] complete records (a torn trailing record is dropped)."""
    raw = path.read_bytes()
    header = len(JOURNAL_MAGIC) + 16
    if len(raw) < header or raw[:len(JOURNAL_MAGIC)] != JOURNAL_MAGIC:
        raise CheckpointError(f"journal {path} is corrupt (bad header)")
    dims = struct.unpack("<qq", raw[len(JOURNAL_MAGIC):header])
    if dims != (obs_dim, act_dim):
        raise CheckpointError(f"journal {path} has obs/act dims {dims}, the run has "
                              f"{(obs_dim, act_dim)}")
    width = 2 * obs_dim + act_dim + 3
    n = (len(raw) - header) // (8 * width)
    return np.frombuffer(raw[header:header + n * 8 * width], np.float64).reshape(n, width)


def split_records(rec: np.ndarray, obs_dim: int, act_dim: int) -> tuple:
    d, a = obs_dim, act_dim
    return (rec[:, :d], rec[:, d:d + a], rec[:, d + a:2 * d + a], rec[:, 2 * d + a],
            rec[:, 2 * d + a + 1] > 0.5, rec[:, 2 * d + a + 2] > 0.5)


# ---- the run directory ---------------------------------------------------------------------

class RunDir:
    """Paths and atomic writes of one run directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.config_path = self.path / "config.yaml"
        self.metrics_path = self.path / "metrics.csv"
        self.curve_path = self.path / "learning_curve.png"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.journal_dir = self.path / "journal"

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

    def load_checkpoint(self, algo: str, config: dict) -> dict | None:
        """The checkpoint's agent state, or None if there is none; CheckpointError if bad."""
        if not self.checkpoint_path.exists():
            return None
        try:
            ckpt = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{self.checkpoint_path} is corrupt or unreadable "
                                  f"({type(exc).__name__}: {exc})") from exc
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{self.checkpoint_path}: not a format-{CHECKPOINT_FORMAT} "
                                  "mbrl-fast checkpoint")
        if ckpt.get("algo") != algo:
            raise CheckpointError(f"{self.checkpoint_path} is a {ckpt.get('algo')!r} checkpoint, "
                                  f"config.yaml says {algo!r}")
        saved = {k: v for k, v in ckpt["config"].items() if k != "trials"}
        now = {k: v for k, v in config.items() if k != "trials"}
        if saved != now:
            diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise CheckpointError(f"{self.checkpoint_path} does not match config.yaml "
                                  f"(fields differ: {diff})")
        return ckpt["agent"]

    def save_checkpoint(self, algo: str, config: dict, agent_state: dict) -> None:
        atomic_torch_save({"format": CHECKPOINT_FORMAT, "algo": algo, "config": config,
                           "agent": agent_state}, self.checkpoint_path)

    def journals(self) -> list[tuple[int, int, Path]]:
        """(trial, attempt, path) of every journal file, sorted."""
        if not self.journal_dir.is_dir():
            return []
        out = []
        for p in self.journal_dir.iterdir():
            m = _JOURNAL_NAME.match(p.name)
            if m:
                out.append((int(m.group(1)), int(m.group(2)), p))
        return sorted(out)

    def open_journal(self, trial: int, attempt: int, obs_dim: int, act_dim: int) -> Journal:
        self.journal_dir.mkdir(exist_ok=True)
        return Journal(self.journal_dir / f"trial_{trial:04d}.attempt_{attempt:02d}.bin",
                       obs_dim, act_dim)

    def remove_journals(self, before_trial: int) -> None:
        """Delete journals of trials < before_trial (their data is in the checkpoint)."""
        for trial, _, path in self.journals():
            if trial < before_trial:
                path.unlink()

    def write_metrics(self, rows: list[dict], fields: tuple[str, ...]) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.metrics_path, text.getvalue().encode())

    def plot(self, rows: list[dict], title: str) -> None:
        """learning_curve.png: return against env steps (matplotlib, Agg)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["env_steps"] for r in rows], [r["return"] for r in rows], marker="o")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("trial return")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        atomic_write_bytes(self.curve_path, buf.getvalue())


# ---- the training loop around an agent ----------------------------------------------------

def prepare_resume(run: RunDir, algo: str, config: dict, agent) -> int:
    """Load checkpoint + journals into ``agent`` (resume steps 1-2). Returns the attempt
    number for the interrupted trial. Raises CheckpointError before writing anything."""
    state = run.load_checkpoint(algo, config)
    if state is not None:
        try:
            agent.load_state_dict(state)
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{run.checkpoint_path} does not fit this run's agent "
                                  f"({type(exc).__name__}: {exc})") from exc
    trial, buf = agent.trials_done, agent.buffer
    pending = [(a, p) for t, a, p in run.journals() if t == trial]
    records = [read_journal(p, buf.obs_dim, buf.act_dim) for _, p in pending]
    # ---- everything is loaded and valid; from here on the directory may change ----
    for rec in records:
        if len(rec):
            buf.add_batch(*split_records(rec, buf.obs_dim, buf.act_dim))
    run.remove_journals(trial)
    if agent.history:
        run.write_metrics(agent.history, agent.FIELDS)
    return max(a for a, _ in pending) + 1 if pending else 0


def train_loop(agent, run: RunDir, algo: str, config: dict, trials: int, attempt: int = 0,
               progress: bool = True) -> list[dict]:
    """Run trials agent.trials_done .. trials - 1, checkpointing after each one."""
    from tqdm import tqdm

    bar = tqdm(total=trials, initial=min(agent.trials_done, trials), unit="trial",
               disable=not progress, dynamic_ncols=True)
    buf = agent.buffer
    try:
        for trial in range(agent.trials_done, trials):
            journal = run.open_journal(trial, attempt, buf.obs_dim, buf.act_dim)
            try:
                row = agent.run_trial(trial, attempt, on_transition=journal.append)
            finally:
                journal.close()
            run.save_checkpoint(algo, config, agent.state_dict())
            run.remove_journals(trial + 1)
            run.write_metrics(agent.history, agent.FIELDS)
            run.plot(agent.history, f"{algo} {config.get('env_id', '')} seed {config.get('seed')}")
            attempt = 0
            bar.update(1)
            bar.set_postfix(ret=f"{row['return']:.1f}", steps=row["env_steps"],
                            plan=f"{row['planning_s']:.0f}s", train=f"{row['training_s']:.0f}s")
    finally:
        bar.close()
    return agent.history
