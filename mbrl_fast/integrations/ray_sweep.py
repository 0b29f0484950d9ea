"""``mbrl-fast sweep``: a grid of seeds x config overrides of any registered agent, on Ray.

    mbrl-fast sweep pets --env InvertedPendulum-v5 --seeds 0 1 2 3 \\
        --grid planner.population=100,300 --set trials=5 [--address HOST:6379] [--out DIR]

Trials. Every (grid point, seed) is one trial: the agent's config (task preset, then
``--set``, then the grid point's values, then the seed) run in a normal run directory
``OUT/<grid point>/seed<S>`` (:mod:`mbrl_fast.runs`: config.yaml, metrics.csv,
checkpoint and journal). A trial whose directory already holds a run resumes it
(``runs.resume_run``: a rerun of the same sweep continues, never overwrites; a larger
budget extends it); one whose directory holds a run of another config is an error
naming the directory and the fields that differ. Sweeps run the config as given: no
planner sizing (``train --plan-budget-ms``) happens.

Ray. Each trial is one Ray task asking for ``cpus_per_trial`` CPUs; Ray runs as many at
once as the cluster has CPUs for. Inside the task the worker process pins itself to
``cpus_per_trial`` cores of its node that no other trial holds (node-local lock files,
released by the kernel even when the process is killed) and sets torch's and OpenMP's
threads to that count. A worker lost mid-trial (killed, OOM, node gone) makes Ray retry
the task (``max_retries``), which resumes the trial's run directory from its checkpoint
and journal: no recorded transition is lost. Local Ray by default (``num_cpus`` CPUs);
``address`` joins an existing cluster and is checked first (a TCP connect with a timeout),
so an unreachable address is an error within seconds instead of a hang.

Results. Every trial returns its metrics rows; the driver writes ``OUT/sweep.csv`` (one
row per trial and iteration: config, seed, run_dir, attempt info and the agent's metrics
columns) and ``OUT/sweep.png`` (per grid point: mean +- std of the return over seeds
against env steps). The run directories need a filesystem shared by the nodes only for
resuming a trial on another node; the CSV and PNG are gathered through Ray either way.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import os
import re
import socket
import time
from pathlib import Path

RAY_PORT, RAY_CLIENT_PORT = 6379, 10001
CONNECT_TIMEOUT_S = 5.0


class SweepError(Exception):
    """A user-facing sweep error (bad grid, unreachable cluster, conflicting run directory)."""


@dataclasses.dataclass(frozen=True)
class Trial:
    label: str  # the grid point, "default" without --grid
    seed: int
    overrides: tuple[str, ...]  # --set items, then the grid point's, then seed=S
    run_dir: str


# ---- planning the trials (driver side, before Ray starts) ------------------------------------

def parse_grid(items: list[str]) -> list[tuple[str, list[str]]]:
    """``["planner.population=100,300"]`` -> ``[("planner.population", ["100", "300"])]``."""
    grid = []
    for item in items:
        key, sep, values = item.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not vals:
            raise SweepError(f"--grid {item!r} must look like section.field=v1,v2,...")
        if key in (k for k, _ in grid):
            raise SweepError(f"--grid names {key!r} twice")
        grid.append((key, vals))
    return grid


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+-]+", "_", text)


def plan_trials(agent: str, env: str, seeds: list[int], sets: list[str], grid: list[str],
                out: str | os.PathLike, preset: str | None = "default") -> list[Trial]:
    """Every trial of the sweep, each config built and validated now (SweepError on a bad
    override), so that a typo fails before any worker starts."""
    if not seeds:
        raise SweepError("--seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds repeats a seed: {seeds}")
    points = parse_grid(grid)
    combos = itertools.product(*[[f"{k}={v}" for v in vals] for k, vals in points])
    trials = []
    for combo in combos:
        label = ",".join(combo) or "default"
        for seed in seeds:
            overrides = (*sets, *combo, f"seed={seed}")
            trial = Trial(label, int(seed), overrides,
                          str(Path(out) / _slug(label) / f"seed{seed}"))
            trial_config(agent, env, trial, preset)  # validate
            trials.append(trial)
    return trials


def trial_config(agent: str, env: str, trial: Trial, preset: str | None = "default"):
    from mbrl_fast.agents import get_agent
    from mbrl_fast.config import apply_overrides

    try:
        cls = get_agent(agent)
        return apply_overrides(cls.make_config(env, preset=preset), list(trial.overrides))
    except (ValueError, TypeError) as exc:
        raise SweepError(f"trial {trial.label} seed {trial.seed}: {exc}") from None


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """SweepError unless a TCP connection to the cluster's head opens within ``timeout``."""
    if address in ("auto", "local"):
        return
    client = address.startswith("ray://")
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep:
        host, port = hostport, str(RAY_CLIENT_PORT if client else RAY_PORT)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise SweepError(
            f"cannot reach a Ray cluster at {address!r} ({type(exc).__name__}: {exc}; checked "
            f"within {timeout:.0f} s). Start one with `ray start --head` on the head node and "
            "pass its address (HOST:6379, or ray://HOST:10001 for Ray Client), or leave out "
            "--address to run on a local Ray") from None


# ---- one trial (worker side) --------------------------------------------------------------------

class _PinnedCores:
    """Hold ``count`` cores of this node that no other trial holds: an exclusive flock per
    core (released by the kernel when the process dies), then sched_setaffinity."""

    def __init__(self, count: int):
        self.fds: list[int] = []
        self.cores: list[int] = []
        self.previous = None
        if not hasattr(os, "sched_setaffinity"):
            return
        import fcntl
        import tempfile

        lock_dir = Path(tempfile.gettempdir()) / "mbrl_fast_sweep_cores"
        lock_dir.mkdir(exist_ok=True)
        self.previous = os.sched_getaffinity(0)
        for core in sorted(self.previous):
            if len(self.cores) == count:
                break
            fd = os.open(lock_dir / f"core{core}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.fds.append(fd)
            self.cores.append(core)
        if len(self.cores) == count:
            os.sched_setaffinity(0, self.cores)
        else:  # more trials than cores here: run unpinned rather than share a pinned core
            self.release()

    def release(self) -> None:
        for fd in self.fds:
            os.close(fd)  # closing drops the flock
        self.fds, self.cores = [], []
        if self.previous is not None:
            os.sched_setaffinity(0, self.previous)


def run_trial(agent_cls, env: str, trial: Trial, preset: str | None, threads: int) -> dict:
    """Start or resume ``trial``'s run directory and train it to its budget. Runs in a Ray
    worker (or in-process); returns the trial, its metrics rows and where it ran."""
    import torch

    from mbrl_fast import runs
    from mbrl_fast.agents import register_agent
    from mbrl_fast.config import config_to_dict

    register_agent(agent_cls, overwrite=True)  # an agent registered by the driver's code
    algo = agent_cls.name
    pinned = _PinnedCores(threads)
    before = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    try:
        config = trial_config(algo, env, trial, preset)
        want = config_to_dict(config)
        run_dir = runs.RunDir(trial.run_dir)
        started_at, attempt, resumed = 0, 0, run_dir.config_path.exists()
        if resumed:
            found_algo, found = run_dir.read_config()
            budget = agent_cls.budget
            diff = sorted(k for k in set(found) | set(want)
                          if k != budget and found.get(k) != want.get(k))
            if found_algo != algo or diff:
                raise SweepError(f"{trial.run_dir} holds a {found_algo!r} run of another config "
                                 f"(fields differ: {diff or ['algo']}); use another --out")
            extend = want[budget] if found.get(budget) != want[budget] else None
            _, agent, run, attempt = runs.resume_run(trial.run_dir, extend=extend)
            started_at = agent.iterations_done
        else:
            agent, run = runs.start_run(algo, config, trial.run_dir)
        t0 = time.perf_counter()
        try:
            history = runs.train_loop(agent, run, algo, config_to_dict(agent.config), attempt,
                                      progress=False)
        finally:
            agent.close()
        return {"trial": dataclasses.asdict(trial), "rows": [dict(r) for r in history],
                "resumed": resumed, "resumed_at": started_at, "attempt": attempt,
                "host": socket.gethostname(), "pid": os.getpid(), "cores": list(pinned.cores),
                "threads": threads,
                "seconds": time.perf_counter() - t0}
    finally:
        pinned.release()
        torch.set_num_threads(before[0])  # the worker process may run other tasks next
        if before[1] is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before[1]


# ---- the sweep (driver side) ---------------------------------------------------------------------

def run_sweep(agent: str, env: str, seeds: list[int], *, sets: list[str] = (),
              grid: list[str] = (), out: str | os.PathLike | None = None,
              address: str | None = None, num_cpus: int | None = None,
              cpus_per_trial: int = 1, preset: str | None = "default", max_retries: int = 3,
              log=print) -> dict:
    """Run the sweep on Ray; returns {"trials", "results", "csv", "png", "seconds"}.

    address: None for a local Ray with ``num_cpus`` CPUs (default: all), else a cluster
    address (checked first). Raises SweepError for user errors."""
    from mbrl_fast.agents import get_agent

    if cpus_per_trial < 1:
        raise SweepError(f"--cpus-per-trial must be >= 1, got {cpus_per_trial}")
    try:
        cls = get_agent(agent)
    except ValueError as exc:
        raise SweepError(str(exc)) from None
    out = Path(out or Path("sweeps") / _slug(f"{agent}-{env}"))
    trials = plan_trials(agent, env, list(seeds), list(sets), list(grid), out, preset)
    try:
        import ray
    except ImportError:
        raise SweepError("sweeps need Ray: pip install 'mbrl-fast[ray]' (ray>=2.9)") from None
    if address:
        check_address(address)
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = dict(include_dashboard=False, logging_level="WARNING", log_to_driver=True)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    t0 = time.perf_counter()
    try:
        task = ray.remote(num_cpus=cpus_per_trial, max_retries=max_retries)(run_trial)
        log(f"sweep: {len(trials)} trials ({len(trials) // len(seeds)} configs x {len(seeds)} "
            f"seeds) on {int(ray.cluster_resources().get('CPU', 0))} Ray CPUs, "
            f"{cpus_per_trial} per trial; run directories under {out}")
        futures = {task.remote(cls, env, t, preset, cpus_per_trial): t for t in trials}
        results = []
        while futures:
            done, _ = ray.wait(list(futures), num_returns=1)
            trial = futures.pop(done[0])
            try:
                res = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:  # the trial itself raised
                cause = exc.cause if isinstance(exc.cause, SweepError) else exc
                raise SweepError(f"trial {trial.label} seed {trial.seed} failed: {cause}") from None
            except ray.exceptions.RayError as exc:  # its worker was lost max_retries + 1 times
                raise SweepError(f"trial {trial.label} seed {trial.seed}: its worker was lost "
                                 f"{max_retries + 1} times ({type(exc).__name__}); its run "
                                 f"directory {trial.run_dir} resumes on the next sweep") from None
            results.append(res)
            last = res["rows"][-1] if res["rows"] else {}
            note = (f" (resumed at iteration {res['resumed_at']}, attempt {res['attempt']})"
                    if res["resumed"] else "")
            log(f"  done {trial.label} seed {trial.seed}: return "
                f"{last.get('return', float('nan')):.2f} after {len(res['rows'])} "
                f"iterations{note}")
    finally:
        if started_here:
            ray.shutdown()
    seconds = time.perf_counter() - t0
    results.sort(key=lambda r: (r["trial"]["label"], r["trial"]["seed"]))
    csv_path = write_csv(results, out / "sweep.csv", cls.FIELDS)
    png_path = write_png(results, out / "sweep.png", f"{agent} {env}: mean +- std over seeds")
    log(f"sweep: {len(results)} trials in {seconds:.1f} s; {csv_path}"
        + (f", {png_path}" if png_path else ""))
    return {"trials": trials, "results": results, "csv": csv_path, "png": png_path,
            "seconds": seconds}


def write_csv(results: list[dict], path: Path, fields) -> Path:
    """One row per trial and iteration."""
    head = ["config", "seed", "run_dir", "resumed", "resumed_at", "attempt", "iteration"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=head + list(fields), extrasaction="ignore")
        writer.writeheader()
        for res in results:
            t = res["trial"]
            for i, row in enumerate(res["rows"]):
                writer.writerow({"config": t["label"], "seed": t["seed"], "run_dir": t["run_dir"],
                                 "resumed": res["resumed"], "resumed_at": res["resumed_at"],
                                 "attempt": res["attempt"], "iteration": i, **row})
    return path


def write_png(results: list[dict], path: Path, title: str) -> Path | None:
    """Per config: mean +- std over seeds of the return at each iteration, against the mean
    env steps. None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import numpy as np

    by_config: dict[str, list[list[dict]]] = {}
    for res in results:
        by_config.setdefault(res["trial"]["label"], []).append(res["rows"])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, seeds in by_config.items():
        n = min(len(rows) for rows in seeds)
        if n == 0:
            continue
        ret = np.array([[r["return"] for r in rows[:n]] for rows in seeds], dtype=float)
        steps = np.array([[r["env_steps"] for r in rows[:n]] for rows in seeds]).mean(axis=0)
        mean, std = ret.mean(axis=0), ret.std(axis=0)
        ax.plot(steps, mean, marker="o", ms=3, label=f"{label} ({len(seeds)} seeds)")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
