"""Agents' learning curves on the same axes, and the sample-efficiency target between two.

Reads results of ``bench/learning.py`` (the same task; the first two with common seeds) and
plots them together; with ``--baseline-steps`` it asks, per
seed: what return has the baseline after ``--baseline-steps`` env steps, and after how many
env steps does the candidate first reach it? Writes JSON + PNG::

    python bench/compare_learning.py bench/results/learning_mbmf_halfcheetah.json \\
        bench/results/learning_mbmf_halfcheetah_ppo.json --baseline-steps 1000000 \\
        --within 0.3333 --name mbmf_vs_ppo_halfcheetah

Without ``--baseline-steps`` it only plots (Dreamer's HalfCheetah curve next to PETS's and
SAC's), with the final and best return of each in the JSON.

MB-MF's issue: "MB-MF (all env steps of all three phases counted) reaches the return that PPO
from scratch has after 1,000,000 env steps using <= 1/3 of the env steps".

The baseline's return at N steps is the mean of its last ``--window`` points at or before N
(PPO's points are the mean training-episode return of one chunk, ~20 episodes, so one point
is noisy). The candidate's crossing is its first point at or above that value, in any phase
or only in ``--phases`` (for MB-MF: ``ppo`` asks whether the fine-tuned policy got there, not
the MPC controller). Both are reported; where the candidate's run stops before crossing, the
JSON says how far it got.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def baseline_return(run: dict, steps: int, window: int) -> float | None:
    """Mean of the last ``window`` returns at or before ``steps`` (None if the run is shorter)."""
    points = [r for s, r in zip(run["env_steps"], run["returns"], strict=True) if s <= steps]
    if not points or max(run["env_steps"]) < steps:
        return None
    tail = points[-window:]
    return sum(tail) / len(tail)


def first_crossing(run: dict, threshold: float, phases: set[str] | None) -> int | None:
    """env_steps of the first point with return >= threshold (in ``phases`` if given)."""
    labels = run.get("phase") or [None] * len(run["returns"])
    for s, r, p in zip(run["env_steps"], run["returns"], labels, strict=True):
        if r >= threshold and (phases is None or p in phases):
            return int(s)
    return None


def compare(candidate: dict, baseline: dict, steps: int, within: float, window: int,
            phases: set[str] | None) -> dict:
    seeds = sorted(set(candidate["runs"]) & set(baseline["runs"]), key=int)
    if not seeds:
        raise SystemExit(f"no common seed: candidate {sorted(candidate['runs'])}, "
                         f"baseline {sorted(baseline['runs'])}")
    out = {}
    for s in seeds:
        cand, base = candidate["runs"][s], baseline["runs"][s]
        thr = baseline_return(base, steps, window)
        row = {"baseline_return_at_steps": None if thr is None else round(thr, 1),
               "candidate_steps": max(cand["env_steps"]),
               "candidate_best_return": max(cand["returns"])}
        if thr is None:
            row["note"] = f"the baseline run stops at {max(base['env_steps'])} env steps"
        else:
            for key, ph in (("any_phase", None), ("phases", phases)):
                if key == "phases" and phases is None:
                    continue
                hit = first_crossing(cand, thr, ph)
                row[f"crossing_steps_{key}"] = hit
                row[f"fraction_{key}"] = None if hit is None else round(hit / steps, 4)
            hit = row.get("crossing_steps_phases", row["crossing_steps_any_phase"])
            row["met"] = hit is not None and hit <= within * steps
            if hit is None and max(cand["env_steps"]) < within * steps:
                row["note"] = "the candidate's run stops before the step limit without crossing"
        out[s] = row
    return out


def plot(results: list[dict], per_seed: dict, steps: int | None, within: float | None,
         path: Path, title: str) -> None:
    """Every result's seeds on one plot; the baseline (the second) dashed."""
    from mbrl_fast.curves import plot_curves

    series = {f"{data['label']} seed {s}": [{"env_steps": x, "return": y} for x, y in
                                            zip(run["env_steps"], run["returns"], strict=True)]
              for data in results for s, run in sorted(data["runs"].items())}
    levels = tuple(r["baseline_return_at_steps"] for r in per_seed.values()
                   if r["baseline_return_at_steps"] is not None)
    mark = None if steps is None else (within * steps, f"{within:.3g} x {steps:,}")
    dashed = () if len(results) < 2 else tuple(
        k for k in series if k.startswith(results[1]["label"] + " seed"))
    points = {f"{data['label']} seed {s}: checkpoints, {_episodes(run)}-episode mean +- s.e.":
              [(e["env_steps"], e["mean"], e["standard_error"])
               for e in run["multi_episode_evals"]]
              for data in results for s, run in sorted(data["runs"].items())
              if run.get("multi_episode_evals")}
    path.write_bytes(plot_curves(series, title, xlabel="environment steps (every phase counted)",
                                 levels=levels, step_mark=mark, dashed=dashed, points=points))


def _episodes(run: dict) -> str:
    """The episode counts of a run's many-episode evaluations (bench/learning.py --evals)."""
    return "/".join(str(n) for n in sorted({e["episodes"] for e in run["multi_episode_evals"]}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, nargs="+",
                   help="learning_*.json: the agent under test, then the baseline, then any "
                        "others to plot alongside")
    p.add_argument("--baseline-steps", type=int,
                   help="ask the target question at this many baseline steps (else only plot)")
    p.add_argument("--within", type=float, default=1 / 3,
                   help="the candidate must cross within this fraction of --baseline-steps")
    p.add_argument("--window", type=int, default=3, help="baseline points averaged")
    p.add_argument("--phases", nargs="*", help="candidate phases that count (default: any)")
    p.add_argument("--labels", nargs="+", default=None, help="legend names (default: file names)")
    p.add_argument("--name", required=True, help="output: bench/results/learning_<name>.*")
    p.add_argument("--title", default="", help="plot title (default: the question asked)")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)

    if args.labels and len(args.labels) != len(args.results):
        raise SystemExit(f"--labels: one per result ({len(args.results)}), got {len(args.labels)}")
    results = [json.loads(f.read_text()) for f in args.results]
    for data, f, label in zip(results, args.results, args.labels or [None] * len(results),
                              strict=True):
        if data["env"] != results[0]["env"]:
            raise SystemExit(f"different tasks: {results[0]['env']} vs {data['env']}")
        data["label"] = label or f.stem.removeprefix("learning_")
    phases = set(args.phases) if args.phases else None
    out = {"command": "python bench/compare_learning.py " + " ".join(argv or sys.argv[1:]),
           "env": results[0]["env"], "results": [str(f) for f in args.results]}
    per_seed = {}
    if args.baseline_steps is not None:
        if len(results) < 2:
            raise SystemExit("--baseline-steps needs a candidate and a baseline result")
        candidate, baseline = results[:2]
        per_seed = compare(candidate, baseline, args.baseline_steps, args.within, args.window,
                           phases)
        out.update(
            what=f"{candidate['label']} vs {baseline['label']} on {candidate['env']}: the "
                 f"baseline's return after {args.baseline_steps:,} env steps (mean of its last "
                 f"{args.window} points), reached by the candidate within {args.within:.4g} of "
                 f"those steps?",
            phases_counted=sorted(phases) if phases else "any", per_seed=per_seed,
            all_seeds_met=all(r.get("met") for r in per_seed.values()))
    else:
        out["what"] = " vs ".join(d["label"] for d in results) + f" on {results[0]['env']}"
        out["final_return"] = {d["label"]: {s: r["returns"][-1] for s, r in d["runs"].items()}
                               for d in results}
        out["best_return"] = {d["label"]: {s: max(r["returns"]) for s, r in d["runs"].items()}
                              for d in results}
    out.update(note=args.note, written=time.strftime("%Y-%m-%d %H:%M:%S"))
    RESULTS.mkdir(exist_ok=True)
    from mbrl_fast.benchmarks.harness import write_json
    write_json(RESULTS / f"learning_{args.name}.json", out)
    plot(results, per_seed, args.baseline_steps, args.within,
         RESULTS / f"learning_{args.name}.png", args.title or out["what"])
    print(json.dumps(per_seed or out["final_return"], indent=1))
    print(f"wrote {RESULTS / f'learning_{args.name}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
