"""Evaluating a run's checkpoints: what ``mbrl-fast eval`` measures and writes.

One checkpoint (``eval``, ``eval --best``, ``eval --checkpoint FILE``) gives one record.
``eval --kept`` evaluates every checkpoint ``train --keep-every`` kept, in order, with the
same episodes and reset seeds; with ``--json`` its file holds one record per checkpoint and
is rewritten (atomically) after each, so a killed evaluation resumes where it stopped and a
later call evaluates only the checkpoints kept since.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

from mbrl_fast import runs
from mbrl_fast.models.io import atomic_write_bytes


def episode_stats(returns: list[float]) -> dict:
    """Mean, population std, standard error, min and max of the episodes' returns."""
    n = len(returns)
    mean = sum(returns) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / n)
    return dict(episodes=n, mean=mean, std=std, standard_error=std / math.sqrt(n),
                min=min(returns), max=max(returns), returns=list(returns))


def checkpoint_record(agent, checkpoint: str, returns: list[float], seconds: float) -> dict:
    """One evaluated checkpoint: where the run was when it was written (iterations, env
    steps, the run's own wall-clock and last logged return) and what the episodes scored."""
    last = agent.history[-1] if agent.history else {}
    return dict(checkpoint=checkpoint, iterations_trained=agent.iterations_done,
                env_steps=last.get("env_steps"), run_wall_clock_s=last.get("wall_clock_s"),
                last_logged_return=last.get("return"), **episode_stats(returns),
                eval_seconds=seconds)


def evaluate(agent, episodes: int, seed: int, **kwargs) -> tuple[list[float], float]:
    """(returns, seconds) of ``episodes`` deterministic episodes from reset seed ``seed``."""
    t0 = time.perf_counter()
    returns = agent.evaluate(episodes, seed=seed, **kwargs)
    return list(returns), time.perf_counter() - t0


def row(record: dict) -> str:
    """A record as one line of the printed table."""
    steps = record["env_steps"]
    return (f"{record['checkpoint']:<26} {record['iterations_trained']:>6} "
            f"{steps if steps is not None else '?':>9} {record['mean']:>10.1f} "
            f"{record['std']:>8.1f} {record['standard_error']:>6.1f} "
            f"{record['min']:>9.1f} {record['max']:>9.1f}")


HEADER = (f"{'checkpoint':<26} {'iters':>6} {'env steps':>9} {'mean':>10} {'std':>8} "
          f"{'s.e.':>6} {'min':>9} {'max':>9}")


def evaluate_kept(run_dir: str | Path, episodes: int, seed: int, json_path: Path | None,
                  machine: dict, log: Callable[[str], None] = print) -> tuple[list[dict], int]:
    """Evaluate every kept checkpoint of ``run_dir`` (``checkpoints/iter_NNNN.pt``) with
    ``episodes`` episodes from reset seed ``seed``; with ``json_path``, skip the ones that
    file already holds (same episodes and seed, else ValueError) and rewrite it after each.
    Returns the records, oldest checkpoint first, and how many were evaluated now."""
    run = runs.RunDir(run_dir)
    algo, _ = run.read_config()  # not a run directory: CheckpointError
    kept = run.snapshots()
    if not kept:
        raise runs.CheckpointError(f"{run.path} keeps no checkpoints (pass --keep-every K "
                                   "to `mbrl-fast train`)")
    data = _read_kept_file(json_path, run, algo, episodes, seed)
    done = {r["checkpoint"]: r for r in data["evaluations"]}
    held = len(done)
    log(HEADER)
    for _, path in kept:
        name = str(path.relative_to(run.path))
        if name in done:
            log(row(done[name]) + "  (already in the file)")
            continue
        _, agent, _ = runs.load_run(run.path, checkpoint=name)
        try:
            returns, seconds = evaluate(agent, episodes, seed)
            record = checkpoint_record(agent, name, returns, seconds)
            data["env_id"] = agent.config.env_id
            data["seed"] = getattr(agent.config, "seed", None)
        finally:
            agent.close()
        done[name] = record
        log(row(record))
        if json_path is not None:
            data["evaluations"] = sorted(done.values(), key=_iterations)
            data["machine"] = machine
            atomic_write_bytes(json_path, (json.dumps(data, indent=1) + "\n").encode())
    return sorted(done.values(), key=_iterations), len(done) - held


def _iterations(record: dict) -> int:
    return record["iterations_trained"]


def _read_kept_file(json_path: Path | None, run: runs.RunDir, algo: str, episodes: int,
                    seed: int) -> dict:
    """The ``eval --kept --json`` file so far, or a new one."""
    fresh = dict(what="mbrl-fast eval --kept: deterministic evaluation episodes of every "
                      "checkpoint a run kept (train --keep-every)",
                 command=f"mbrl-fast eval {run.path} --kept --episodes {episodes} "
                         f"--seed {seed}" + (f" --json {json_path}" if json_path else ""),
                 run_dir=str(run.path), algo=algo, episodes=episodes,
                 first_reset_seed=seed, evaluations=[])
    if json_path is None or not json_path.exists():
        return fresh
    try:
        data = json.loads(json_path.read_text())
        held = (data["episodes"], data["first_reset_seed"], data["evaluations"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--json {json_path} exists and is not an `eval --kept` file "
                         f"({type(exc).__name__}: {exc}); give another path") from None
    if Path(data.get("run_dir", run.path)).resolve() != run.path.resolve():
        raise ValueError(f"--json {json_path} holds evaluations of {data['run_dir']}, not of "
                         f"{run.path}; give another path")
    if held[:2] != (episodes, seed):
        raise ValueError(f"--json {json_path} holds evaluations with {held[0]} episodes from "
                         f"reset seed {held[1]}, not {episodes} from {seed}; give the same "
                         "--episodes and --seed to add to it, or another path")
    return data
