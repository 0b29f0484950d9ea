"""PETS learning curves over seeds: runs the CLI per seed, then writes JSON + PNG (not a test).

For one task, for each seed in turn (one process at a time, ``nice -n 19`` by default)::

    python -m mbrl_fast train pets --env ENV --seed S --trials T --run-dir ROOT/<slug>_s<S>
        [--episode-steps N] [--set KEY=VALUE ...]

(an existing run directory is continued with ``--resume DIR --trials T``), then reads every
run's ``metrics.csv`` / ``config.yaml`` and writes

    bench/results/learning_<slug>.json   seeds, commands, per-trial returns, seconds per
                                         trial, planning / training share, the target and
                                         whether / when it was met, a machine note
    bench/results/learning_<slug>.png    return per trial, one line per seed (+ the target)

Seconds per trial are the agent's wall-clock differences (env + planning + training);
planning share = planning seconds / trial seconds. Usage::

    python bench/learning.py InvertedPendulum-v5 --seeds 0 1 2 --trials 6
    python bench/learning.py Reacher-v5 --seeds 0 --collect-only     # only re-plot
    python bench/learning.py Reacher-v5 --tag cheap --set planner.population=100  # a variant
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

RESULTS = Path(__file__).resolve().parent / "results"

# What the issue ("PETS end to end", section 5) asks of each task. kind "trial": one trial's
# return >= threshold; kind "mean_last": the mean of the last `window` trials >= threshold.
TARGETS = {
    "InvertedPendulum-v5": dict(kind="trial", threshold=950.0, within=6,
                                text="return >= 950 by trial index 5 (trial 0 random, then 5 MPC "
                                     "trials; 1000-step episodes)"),
    "MBRLFast/CartpoleSwingup-v0": dict(kind="trial", threshold=180.0, within=15,
                                        max_return=200.0, true_dynamics_return=183.4,
                                        text=">= 90% of the maximum return 200 (= 180) "
                                             "within 15 trials; CEM on the true dynamics "
                                             "returns 183.4 (seed 0)"),
    "Reacher-v5": dict(kind="mean_last", threshold=-6.0, within=30, window=5,
                       text="mean of the last 5 trials >= -6 within 30 trials"),
    "HalfCheetah-v5": dict(kind="trial", threshold=2000.0, within=30, max_trial_s=300.0,
                           text="return >= 2000 within 30 trials, each trial <= 5 minutes"),
}


def slug(env_id: str) -> str:
    """'MBRLFast/CartpoleSwingup-v0' -> 'cartpoleswingup'."""
    name = env_id.split("/")[-1]
    return re.sub(r"[^a-z0-9]+", "", re.sub(r"-v\d+$", "", name).lower())


def train_command(args, seed: int, run_dir: Path) -> list[str]:
    """The CLI call that trains (or continues) one seed's run."""
    prefix = ["nice", "-n", str(args.nice)] if args.nice else []
    cmd = prefix + [sys.executable, "-m", "mbrl_fast", "train", "pets"]
    if (run_dir / "config.yaml").exists():
        return cmd + ["--resume", str(run_dir), "--trials", str(args.trials), "--no-progress"]
    cmd += ["--env", args.env, "--seed", str(seed), "--run-dir", str(run_dir), "--no-progress"]
    if args.trials is not None:
        cmd += ["--trials", str(args.trials)]
    if args.episode_steps is not None:
        cmd += ["--episode-steps", str(args.episode_steps)]
    for item in args.overrides:
        cmd += ["--set", item]
    return cmd


def read_run(run_dir: Path) -> dict:
    """Per-trial series of one run directory (metrics.csv + config.yaml)."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())["config"]
    cum = [float(r["wall_clock_s"]) for r in rows]
    trial_s = [c - p for c, p in zip(cum, [0.0] + cum[:-1], strict=True)]
    planning = [float(r["planning_s"]) for r in rows]
    training = [float(r["training_s"]) for r in rows]
    return {
        "run_dir": str(run_dir),
        "config": config,
        "returns": [round(float(r["return"]), 3) for r in rows],
        "episode_steps": [int(r["episode_steps"]) for r in rows],
        "env_steps": [int(r["env_steps"]) for r in rows],
        "trial_s": [round(s, 2) for s in trial_s],
        "planning_s": [round(s, 2) for s in planning],
        "training_s": [round(s, 2) for s in training],
        "planning_share": round(sum(planning) / max(sum(trial_s), 1e-9), 3),
        "training_share": round(sum(training) / max(sum(trial_s), 1e-9), 3),
        "planning_s_per_step": round(sum(planning[config["initial_random_trials"]:])
                                     / max(1, sum(int(r["episode_steps"]) for r in
                                                  rows[config["initial_random_trials"]:])), 4),
    }


def first_success(returns: list[float], target: dict) -> int | None:
    """Index of the first trial at which the target holds, or None."""
    if target["kind"] == "trial":
        hits = [i for i, r in enumerate(returns) if r >= target["threshold"]]
    else:
        w = target["window"]
        hits = [i for i in range(w - 1, len(returns))
                if sum(returns[i - w + 1:i + 1]) / w >= target["threshold"]]
    return hits[0] if hits else None


def summarize(env: str, runs: dict[int, dict]) -> dict:
    """Target bookkeeping per seed and across seeds."""
    target = TARGETS.get(env)
    out = {}
    if target is None:
        return out
    for run in runs.values():
        hit = first_success(run["returns"], target)
        run["trials_to_target"] = None if hit is None else hit + 1  # trials run, incl. random
        run["target_met"] = hit is not None and hit < target["within"]
        if "max_trial_s" in target:
            run["max_trial_s_ok"] = max(run["trial_s"]) <= target["max_trial_s"]
    n = min(len(r["returns"]) for r in runs.values())
    out["mean_return_per_trial"] = [round(sum(r["returns"][i] for r in runs.values())
                                          / len(runs), 3) for i in range(n)]
    out["all_seeds_met"] = all(r["target_met"] for r in runs.values())
    last = target["within"] - 1  # the last trial index the target allows
    if n > last:
        out[f"return_at_trial_{last}"] = {s: r["returns"][last] for s, r in runs.items()}
        out[f"mean_return_at_trial_{last}"] = out["mean_return_per_trial"][last]
    out["trials_to_target"] = {s: r["trials_to_target"] for s, r in runs.items()}
    out["final_return"] = {s: r["returns"][-1] for s, r in runs.items()}
    if "max_return" in target:
        best = {s: max(r["returns"]) for s, r in runs.items()}
        out["best_fraction_of_max"] = {s: round(b / target["max_return"], 3)
                                       for s, b in best.items()}
        out["best_fraction_of_true_dynamics_cem"] = {
            s: round(b / target["true_dynamics_return"], 3) for s, b in best.items()}
    return out


def machine_note() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    try:
        import torch
        tv = torch.__version__
    except ImportError:
        tv = "?"
    return (f"{platform.node()} {platform.machine()} {os.cpu_count()} cores shared with other "
            f"engineers (load average {load[0]:.1f} at write time), CPU only, torch {tv}, "
            f"python {platform.python_version()}, runs under nice -n 19, one run at a time")


def plot(env: str, runs: dict[int, dict], target: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for seed, run in sorted(runs.items()):
        line, = ax.plot(range(len(run["returns"])), run["returns"], marker="o", ms=3,
                        label=f"seed {seed}")
        if target and target["kind"] == "mean_last":
            w, r = target["window"], run["returns"]
            ax.plot(range(w - 1, len(r)), [sum(r[i - w + 1:i + 1]) / w for i in
                                           range(w - 1, len(r))],
                    color=line.get_color(), lw=2, alpha=0.5, label=f"seed {seed}, mean of {w}")
    if target:
        ax.axhline(target["threshold"], color="k", ls="--", lw=1, label="target")
        if "true_dynamics_return" in target:
            ax.axhline(target["true_dynamics_return"], color="g", ls=":", lw=1,
                       label="CEM on true dynamics")
    per_step = sum(r["planning_s_per_step"] for r in runs.values()) / len(runs)
    ax.set_title(f"PETS {env}: {per_step:.2f} s planning per step (2 shared CPU cores)",
                 fontsize=10)
    ax.set_xlabel("trial (trial 0: random actions)")
    ax.set_ylabel("trial return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("env")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--trials", type=int, default=None, help="default: the task preset")
    p.add_argument("--episode-steps", type=int, default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--runs-root", type=Path, default=Path("/tmp/pets_runs"))
    p.add_argument("--nice", type=int, default=19, help="nice level of the runs (0: none)")
    p.add_argument("--collect-only", action="store_true", help="only read existing runs")
    p.add_argument("--note", default="", help="free text stored in the JSON")
    p.add_argument("--results", type=Path, default=RESULTS, help="where JSON + PNG go")
    p.add_argument("--tag", default="", help="suffix of run dirs and result files (variants)")
    args = p.parse_args(argv)

    name = slug(args.env) + (f"_{args.tag}" if args.tag else "")
    runs, commands = {}, {}
    for seed in args.seeds:
        run_dir = args.runs_root / f"{name}_s{seed}"
        if not args.collect_only:
            cmd = train_command(args, seed, run_dir)
            print("+", shlex.join(cmd), flush=True)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
        if (run_dir / "metrics.csv").exists():
            runs[seed] = read_run(run_dir)
            commands[seed] = shlex.join(["python", "-m", "mbrl_fast"] + _replay_args(runs[seed],
                                                                                     args.env))
        # after every seed, so partial results survive
        write_results(args.env, runs, commands, args.note, args.results, name)
    return 0


def _replay_args(run: dict, env: str) -> list[str]:
    """The fresh-run CLI arguments that reproduce ``run``: ``--no-preset`` and every model /
    train / planner field that differs from PETSConfig's published defaults, so the command
    stays valid when the task presets change."""
    from mbrl_fast.agents.pets import PETSConfig
    from mbrl_fast.runs import config_to_dict

    config = run["config"]
    base = config_to_dict(PETSConfig())
    out = ["train", "pets", "--env", env, "--no-preset", "--seed", str(config["seed"]),
           "--trials", str(config["trials"]), "--episode-steps", str(config["episode_steps"])]
    for key, value in config.items():
        if isinstance(value, dict):
            for k, v in value.items():
                if base[key][k] != v:
                    out += ["--set", f"{key}.{k}={v}"]
        elif key not in ("env_id", "seed", "trials", "episode_steps") and base[key] != value:
            out += ["--set", f"{key}={value}"]
    return out


def write_results(env: str, runs: dict[int, dict], commands: dict[int, str], note: str,
                  results: Path, name: str) -> None:
    if not runs:
        return
    results.mkdir(parents=True, exist_ok=True)
    summary = summarize(env, runs)
    data = {"env": env, "target": TARGETS.get(env), "seeds": sorted(runs),
            "commands": {str(s): c for s, c in commands.items()},
            "summary": summary, "runs": {str(s): r for s, r in sorted(runs.items())},
            "machine": machine_note(), "note": note,
            "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    (results / f"learning_{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    plot(env, runs, TARGETS.get(env), results / f"learning_{name}.png")
    print(f"wrote {results / f'learning_{name}.json'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
