"""Learning curves over seeds for any agent: runs the CLI per seed, then writes JSON + PNG.

For one agent and task, for each seed in turn (one process at a time, ``nice -n 19`` by
default)::

    python -m mbrl_fast train AGENT --env ENV --seed S --run-dir ROOT/<name>_s<S>
        [--trials N | --steps N] [--episode-steps N] [--set KEY=VALUE ...]

(an existing run directory is continued with ``--resume DIR``), then reads every run's
metrics (``mbrl_fast.runs.RunDir``) and writes

    bench/results/learning_<name>.json   seeds, commands, per-iteration returns, env steps,
                                         seconds per iteration and the share of every timed
                                         phase (the agent's ``*_s`` metrics), the target and
                                         whether / when it was met, a machine note
    bench/results/learning_<name>.png    return against env steps, one line per seed

<name> is the task's slug, prefixed with the agent unless it is PETS (whose result files
predate the other agents). Usage::

    python bench/learning.py InvertedPendulum-v5 --seeds 0 1 2 --trials 6
    python bench/learning.py Reacher-v5 --seeds 0 --collect-only     # only re-plot
    python bench/learning.py Reacher-v5 --tag cheap --set planner.population=100  # a variant
    python bench/learning.py --agent mbpo Hopper-v5 --seeds 0 --steps 125000
    python bench/learning.py --agent mbpo Hopper-v5 --seeds 0 --collect-only \
        --evals bench/results/eval_mbpo_hopper_zen4_*.json

``--evals``: results of ``mbrl-fast eval RUN_DIR --episodes N --json FILE`` on checkpoints of
these runs (``train --keep-every``), one per file, or of ``eval RUN_DIR --kept --json FILE``,
every kept checkpoint in one file; stored per seed as ``multi_episode_evals`` (env steps,
episodes, mean, std, standard error), drawn on the PNG as means with +- one standard error,
and, where the target is a return, the first checkpoint whose mean reaches it is in the
summary (``multi_episode_target``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# What the issue ("PETS end to end", section 5) asks of each task. kind "trial": one trial's
# return >= threshold; kind "mean_last": the mean of the last `window` trials >= threshold.
TARGETS = {("pets", env): target for env, target in {
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
}.items()}
# DADS (issue 12): the learning curve is the intrinsic return; the targets are on the metrics
# of the in-training navigation evaluations (``eval_every``; kind "metric": the first
# iteration whose ``field`` is >= threshold, or <= it with below=True). The issue's own
# measure is ``mbrl-fast eval RUN_DIR --goals 20`` after training (bench/results/dads_*).
TARGETS.update({
    ("dads", "MBRLFast/PointMass-v0"): dict(
        kind="metric", field="goal_success", threshold=0.9, within=300, max_wall_clock_s=1200.0,
        text=">= 90% of random goals at distance 5-10 reached to <= 10% of the initial "
             "distance, training <= 20 minutes on 2 cores"),
    ("dads", "Ant-v5"): dict(
        kind="metric", field="goal_distance_ratio", threshold=0.4, below=True, within=10_000,
        text="goals at distance 10: mean final distance <= 40% of the initial (x-y prior)"),
})
# Dreamer (issue 13, section 2): an iteration collects `train_every` env steps (200 in the
# small-task presets: one episode), its return is the mean of the evaluation episodes with
# the actor's mode after that iteration's updates.
TARGETS.update({("dreamer", env): target for env, target in {
    "Pendulum-v1": dict(kind="trial", threshold=-250.0, within=100,
                        text="mean evaluation return >= -250 within 20,000 env steps "
                             "(100 iterations of 200 steps)"),
    "MBRLFast/CartpoleSwingup-v0": dict(kind="trial", threshold=150.0, within=250,
                                        max_return=200.0, true_dynamics_return=183.4,
                                        text="mean evaluation return >= 150 of 200 within "
                                             "50,000 env steps (250 iterations of 200 steps)"),
}.items()})
# MBPO (issue 10): an iteration is an epoch of 1,000 env steps (5 of them random), its
# return one deterministic evaluation episode after it.
TARGETS[("mbpo", "Hopper-v5")] = dict(
    kind="trial", threshold=2500.0, within=125,
    text="evaluation return >= 2,500 within 125,000 env steps (125 epochs of 1,000)")
# its preset has 250-step epochs: 20 of them are 5,000 env steps (2 random)
TARGETS[("mbpo", "InvertedPendulum-v5")] = dict(
    kind="trial", threshold=1000.0, within=20,
    text="evaluation return 1,000 within 5,000 env steps (20 epochs of 250)")
METRIC_FIELDS = sorted({t["field"] for t in TARGETS.values() if "field" in t})
# the learners' own diagnostics, kept where an agent logs them (SAC, MBPO, DADS: the critic's
# scale and the entropy temperature; MBPO: the model's holdout error and rollout length);
# an iteration without them (random steps) gets null
LEARNER_FIELDS = ("q_mean", "alpha", "entropy", "holdout_mse", "rollout_length")


def slug(env_id: str) -> str:
    """'MBRLFast/CartpoleSwingup-v0' -> 'cartpoleswingup'."""
    name = env_id.split("/")[-1]
    return re.sub(r"[^a-z0-9]+", "", re.sub(r"-v\d+$", "", name).lower())


def result_name(agent: str, env: str, tag: str = "") -> str:
    base = slug(env) if agent == "pets" else f"{agent}_{slug(env)}"
    return base + (f"_{tag}" if tag else "")


def train_command(args, seed: int, run_dir: Path) -> list[str]:
    """The CLI call that trains (or continues) one seed's run."""
    prefix = ["nice", "-n", str(args.nice)] if args.nice else []
    cmd = prefix + [sys.executable, "-m", "mbrl_fast", "train", args.agent]
    budget = _budget_args(args)
    if (run_dir / "config.yaml").exists():
        return cmd + ["--resume", str(run_dir), "--no-progress"] + budget
    cmd += ["--env", args.env, "--seed", str(seed), "--run-dir", str(run_dir), "--no-progress"]
    cmd += budget
    if args.episode_steps is not None:
        cmd += ["--episode-steps", str(args.episode_steps)]
    for item in args.overrides:
        cmd += ["--set", item]
    return cmd


def _budget_args(args) -> list[str]:
    """["--trials", N] or ["--steps", N] when given (default: the preset's)."""
    for flag in ("trials", "steps"):
        if getattr(args, flag) is not None:
            return [f"--{flag}", str(getattr(args, flag))]
    return []


def read_run(run_dir: Path) -> dict:
    """Per-iteration series of one run directory (metrics + config)."""
    from mbrl_fast.runs import RunDir

    rd = RunDir(run_dir)
    rows = rd.read_metrics()
    algo, config = rd.read_config()
    cum = [float(r["wall_clock_s"]) for r in rows]
    iter_s = [c - p for c, p in zip(cum, [0.0] + cum[:-1], strict=True)]
    total = max(sum(iter_s), 1e-9)
    timed = [k for k in rows[0] if k.endswith("_s") and k != "wall_clock_s"] if rows else []
    out = {
        "run_dir": str(run_dir),
        "agent": algo,
        "config": config,
        "returns": [round(float(r["return"]), 3) for r in rows],
        "env_steps": [int(r["env_steps"]) for r in rows],
        "iteration_s": [round(s, 2) for s in iter_s],
        "shares": {k: round(sum(float(r[k]) for r in rows) / total, 3) for k in timed},
    }
    for k in timed:
        out[k] = [round(float(r[k]), 2) for r in rows]
    if rows and "phase" in rows[0]:  # MB-MF: random / mpc / dagger / ppo per iteration
        out["phase"] = [r["phase"] for r in rows]
    for k in METRIC_FIELDS:  # the fields metric targets read, where the agent has them
        if rows and k in rows[0]:
            out[k] = [round(float(r[k]), 4) for r in rows]
    for k in LEARNER_FIELDS:
        if rows and k in rows[0]:
            out[k] = [_finite_or_none(r[k]) for r in rows]
    if algo == "pets":  # seconds of planning per planned (non-random) env step
        first = config["initial_random_trials"]
        planned = sum(int(r["episode_steps"]) for r in rows[first:])
        out["episode_steps"] = [int(r["episode_steps"]) for r in rows]
        out["planning_s_per_step"] = round(sum(out["planning_s"][first:]) / max(1, planned), 4)
    return out


def _finite_or_none(value: str) -> float | None:
    """A metrics.csv cell as a rounded float, or None where it is empty or not finite."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return round(x, 4) if math.isfinite(x) else None


def first_success(returns: list[float], target: dict) -> int | None:
    """Index of the first trial at which the target holds, or None."""
    if target["kind"] == "metric":
        below = target.get("below", False)
        hits = [i for i, r in enumerate(returns)
                if (r <= target["threshold"] if below else r >= target["threshold"])]
    elif target["kind"] == "trial":
        hits = [i for i, r in enumerate(returns) if r >= target["threshold"]]
    else:
        w = target["window"]
        hits = [i for i in range(w - 1, len(returns))
                if sum(returns[i - w + 1:i + 1]) / w >= target["threshold"]]
    return hits[0] if hits else None


# What a "trial" target's summary rests on: MBPO evaluates one episode per epoch, and one
# episode can reach the threshold by chance (the bf16 Hopper run read 2,864 at 21,000 steps,
# between 572 and 798).
TRIAL_EVIDENCE = (
    "all_seeds_met / trials_to_target: the first iteration whose evaluation (the agent's "
    "eval_episodes, one for MBPO) reaches the threshold; all_seeds_met_multi_episode / "
    "multi_episode_target: the first kept checkpoint whose many-episode mean does "
    "(--evals), where given")


def summarize(agent: str, env: str, runs: dict[int, dict]) -> dict:
    """Target bookkeeping per seed and across seeds."""
    target = TARGETS.get((agent, env))
    out = {}
    if target is None:
        return out
    for run in runs.values():
        hit = first_success(run.get(target.get("field"), run["returns"]), target)
        run["trials_to_target"] = None if hit is None else hit + 1  # trials run, incl. random
        run["target_met"] = hit is not None and hit < target["within"]
        if "max_trial_s" in target:
            run["max_trial_s_ok"] = max(run["iteration_s"]) <= target["max_trial_s"]
        if "max_wall_clock_s" in target:
            spent = sum(run["iteration_s"][:None if hit is None else hit + 1])
            run["wall_clock_to_target_s"] = round(spent, 1) if hit is not None else None
            run["target_met"] = run["target_met"] and spent <= target["max_wall_clock_s"]
    n = min(len(r["returns"]) for r in runs.values())
    out["mean_return_per_trial"] = [round(sum(r["returns"][i] for r in runs.values())
                                          / len(runs), 3) for i in range(n)]
    out["all_seeds_met"] = all(r["target_met"] for r in runs.values())
    last = target["within"] - 1  # the last trial index the target allows
    if n > last:
        out[f"return_at_trial_{last}"] = {s: r["returns"][last] for s, r in runs.items()}
        out[f"mean_return_at_trial_{last}"] = out["mean_return_per_trial"][last]
    out["trials_to_target"] = {s: r["trials_to_target"] for s, r in runs.items()}
    if target["kind"] == "trial":
        out["target_evidence"] = TRIAL_EVIDENCE
        if any("multi_episode_evals" in r for r in runs.values()):
            out["multi_episode_target"] = {s: _evals_reaching(r, target) for s, r in runs.items()}
            out["all_seeds_met_multi_episode"] = all(
                v is not None for v in out["multi_episode_target"].values())
    out["final_return"] = {s: r["returns"][-1] for s, r in runs.items()}
    if "max_return" in target:
        best = {s: max(r["returns"]) for s, r in runs.items()}
        out["best_fraction_of_max"] = {s: round(b / target["max_return"], 3)
                                       for s, b in best.items()}
        out["best_fraction_of_true_dynamics_cem"] = {
            s: round(b / target["true_dynamics_return"], 3) for s, b in best.items()}
    return out


def _evals_reaching(run: dict, target: dict) -> dict | None:
    """The first many-episode evaluation whose mean reaches the target's return, among
    checkpoints within its step budget (None if none does)."""
    steps_per_trial = run["env_steps"][0]  # epochs / trials of equal length
    for ev in run.get("multi_episode_evals", []):
        if (ev["env_steps"] <= target["within"] * steps_per_trial
                and ev["mean"] >= target["threshold"]):
            return {k: ev[k] for k in ("env_steps", "episodes", "mean", "standard_error")}
    return None


def read_evals(paths: list[Path], runs: dict[int, dict]) -> None:
    """Attach ``mbrl-fast eval --json`` results to their seed's run (the file's ``seed``;
    files that predate that field go to the only seed, if there is one)."""
    for path in paths:
        ev = json.loads(path.read_text())
        seed = ev.get("seed")
        if seed is None and len(runs) != 1:
            raise SystemExit(f"{path} does not name its seed and there are {len(runs)} runs")
        seed = next(iter(runs)) if seed is None else int(seed)
        if seed not in runs:
            raise SystemExit(f"{path} is an evaluation of seed {seed}, not of {sorted(runs)}")
        # `eval --kept` files hold one record per kept checkpoint, `eval` files one
        records = ev["evaluations"] if "evaluations" in ev else [ev]
        runs[seed].setdefault("multi_episode_evals", []).extend(
            {"env_steps": r["env_steps"], "episodes": r["episodes"],
             "mean": round(r["mean"], 1), "std": round(r["std"], 1),
             "standard_error": round(r["standard_error"], 1), "file": path.name}
            for r in records)
    for run in runs.values():
        run.get("multi_episode_evals", []).sort(key=lambda e: e["env_steps"])


def machine_note(nice: int | None) -> str:
    """The machine as this process sees it; ``nice`` is the level of the runs this process
    started (None: collected from existing runs, whose level only the note can tell)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    try:
        import torch
        tv = torch.__version__
    except ImportError:
        tv = "?"
    return (f"{platform.node()} {platform.machine()} {os.cpu_count()} cores shared with other "
            f"engineers (load average {load[0]:.1f} at write time), CPU only, torch {tv}, "
            f"python {platform.python_version()}, "
            + ("collected from existing runs (how they ran: see the note)" if nice is None
               else f"runs under nice -n {nice}, one run at a time" if nice
               else "runs not niced, one run at a time"))


def plot(agent: str, env: str, runs: dict[int, dict], target: dict | None, path: Path,
         tag: str = "") -> None:
    from mbrl_fast.curves import plot_curves

    series = {f"seed {seed}": [{"env_steps": x, "return": y} for x, y in
                               zip(run["env_steps"], run["returns"], strict=True)]
              for seed, run in sorted(runs.items())}
    title = f"{agent.upper()}{f' [{tag}]' if tag else ''} {env} (2 shared CPU cores)"
    per_step = [r["planning_s_per_step"] for r in runs.values() if "planning_s_per_step" in r]
    if per_step:
        title += f": {sum(per_step) / len(per_step):.2f} s planning per step"
    on_returns = target is not None and "field" not in target
    points = {f"seed {seed}: {_episodes(run)}-episode evaluations (mean +- s.e.)":
              [(e["env_steps"], e["mean"], e["standard_error"])
               for e in run["multi_episode_evals"]]
              for seed, run in sorted(runs.items()) if run.get("multi_episode_evals")}
    path.write_bytes(plot_curves(series, title, points=points,
                                 target=target["threshold"] if on_returns else None))


def _episodes(run: dict) -> str:
    counts = sorted({e["episodes"] for e in run["multi_episode_evals"]})
    return "/".join(str(c) for c in counts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("env")
    p.add_argument("--agent", default="pets", help="registered agent (default pets)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--trials", type=int, default=None, help="default: the task preset")
    budget.add_argument("--steps", type=int, default=None, help="default: the task preset")
    p.add_argument("--episode-steps", type=int, default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--runs-root", type=Path, default=Path("/tmp/mbrl_fast_runs"))
    p.add_argument("--nice", type=int, default=19, help="nice level of the runs (0: none)")
    p.add_argument("--collect-only", action="store_true", help="only read existing runs")
    p.add_argument("--note", default="", help="free text stored in the JSON")
    p.add_argument("--results", type=Path, default=RESULTS, help="where JSON + PNG go")
    p.add_argument("--tag", default="", help="suffix of run dirs and result files (variants)")
    p.add_argument("--evals", type=Path, nargs="+", default=[], metavar="JSON",
                   help="`mbrl-fast eval --json` results of these runs' checkpoints")
    args = p.parse_args(argv)

    name = result_name(args.agent, args.env, args.tag)
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
            commands[seed] = shlex.join(["python", "-m", "mbrl_fast"]
                                        + _replay_args(args.agent, runs[seed], args.env))
        # after every seed, so partial results survive
        write_results(args.agent, args.env, runs, commands, args.note, args.results, name,
                      args.tag, None if args.collect_only else args.nice)
    if args.evals:
        read_evals(args.evals, runs)
        write_results(args.agent, args.env, runs, commands, args.note, args.results, name,
                      args.tag, None if args.collect_only else args.nice)
    return 0


def _replay_args(agent: str, run: dict, env: str) -> list[str]:
    """The fresh-run CLI arguments that reproduce ``run``: ``--no-preset`` and every field
    that differs from the agent config's published defaults, so the command stays valid
    when the task presets change."""
    from mbrl_fast.agents import get_agent
    from mbrl_fast.config import config_to_dict

    cls = get_agent(agent)
    config = run["config"]
    base = config_to_dict(cls.Config())
    out = ["train", agent, "--env", env, "--no-preset", "--seed", str(config["seed"])]
    for key, value in config.items():
        if isinstance(value, dict):
            for k, v in value.items():
                if base[key].get(k, object()) != v:
                    out += ["--set", f"{key}.{k}={v}"]
        elif key not in ("env_id", "seed") and base[key] != value:
            out += ["--set", f"{key}={value}"]
    return out


def write_results(agent: str, env: str, runs: dict[int, dict], commands: dict[int, str],
                  note: str, results: Path, name: str, tag: str = "",
                  nice: int | None = None) -> None:
    if not runs:
        return
    results.mkdir(parents=True, exist_ok=True)
    summary = summarize(agent, env, runs)
    target = TARGETS.get((agent, env))
    data = {"agent": agent, "env": env, "target": target, "seeds": sorted(runs),
            "commands": {str(s): c for s, c in commands.items()},
            "summary": summary, "runs": {str(s): r for s, r in sorted(runs.items())},
            "machine": machine_note(nice), "note": note,
            "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    from mbrl_fast.benchmarks.harness import write_json
    write_json(results / f"learning_{name}.json", data)
    plot(agent, env, runs, target, results / f"learning_{name}.png", tag)
    print(f"wrote {results / f'learning_{name}.json'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
