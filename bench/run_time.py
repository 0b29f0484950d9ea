"""A learning run's wall-clock from its own metrics: as recorded, with its disturbed epochs
replaced, and projected to the end of its budget from a finished run of the same task.

Issue 10 asks for the whole MBPO Hopper run in <= 6 h on two cores. A run records every
epoch's phases (metrics.csv: ``update_s``, ``model_s``, ``rollout_s``, ...), but on this
shared VM some epochs ran while the machine did other work (benchmarks and CI paused the
run or took one of its two cores) and some were cut short by a kill and a resume (the
killed process's part of the epoch is not in its record). So the sum of the records is not
what the run takes on a quiet machine. Per run this script reports:

- ``recorded``: the sum of the epochs' wall-clock, and per phase;
- ``cleaned``: each phase's series with every epoch outside ``[m / f, m * f]`` replaced by
  ``m``, the median of its ``--window`` neighbours (default ``f`` 1.5, 9 epochs), and which
  epochs were replaced. A pause reads high, a resumed epoch low; a slow period of the VM
  that lasts longer than half the window is kept as it is;
- ``projected`` (a run short of its budget, given ``--reference``, a finished run of the
  same epochs): the remaining epochs as the reference's cleaned phases, each times the
  ratio of the two runs' medians of that phase over ``--ratio-epochs`` (default the run's
  last 20); and ``scaled_reference``, every epoch so (where the run's own early epochs
  were disturbed for longer than the window; given for a finished run too).

Inputs are run directories (``mbrl-fast train ... --run-dir``) or results of
``bench/learning.py`` (their ``runs`` entry for ``--seed``)::

    python bench/run_time.py /work/runs/mbpo_hopper_bf16c_zen4_s0 \\
        --reference bench/results/learning_mbpo_hopper_zen4.json \\
        --json bench/results/run_time_mbpo_hopper_bf16c_zen4.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABS_FLOOR_S = 5.0  # phases within this of their median are kept whatever the ratio


def read_series(source: Path, seed: str = "0") -> dict:
    """``{"epochs": budget, "phases": {name: [seconds per epoch]}, "env_steps": [...]}``
    from a run directory or a ``bench/learning.py`` result. The phases are the ``*_s``
    columns; ``other_s`` is each epoch's wall-clock the phases do not account for."""
    if source.is_dir():
        sys.path.insert(0, str(ROOT))
        from mbrl_fast.runs import RunDir

        rd = RunDir(source)
        rows, (_, config) = rd.read_metrics(), rd.read_config()
        cum = [float(r["wall_clock_s"]) for r in rows]
        run = {"env_steps": [int(r["env_steps"]) for r in rows], "config": config,
               "iteration_s": [c - p for c, p in zip(cum, [0.0] + cum[:-1], strict=True)]}
        for k in (rows[0] if rows else {}):
            if k.endswith("_s") and k != "wall_clock_s":
                run[k] = [float(r[k]) for r in rows]
    else:
        data = json.loads(source.read_text())
        if seed not in data.get("runs", {}):
            raise SystemExit(f"{source}: no run for seed {seed!r} "
                             f"(has {sorted(data.get('runs', {}))})")
        run = data["runs"][seed]
    if not run["env_steps"]:
        raise SystemExit(f"{source}: no epochs recorded")
    names = [k for k in run if k.endswith("_s") and k != "iteration_s" and isinstance(run[k], list)]
    phases = {k: [float(v) for v in run[k]] for k in names}
    phases["other_s"] = [it - sum(p[i] for p in phases.values())
                         for i, it in enumerate(run["iteration_s"])]
    config = run.get("config", {})
    budget = config.get("steps", run["env_steps"][-1]) // config.get("epoch_length", 1)
    return {"epochs": max(budget, len(run["env_steps"])), "phases": phases,
            "env_steps": run["env_steps"]}


def clean(series: list[float], window: int, factor: float) -> tuple[list[float], list[int]]:
    """``series`` with each value outside [m / factor, m * factor] replaced by m, the median
    of the ``window`` values centred on it (fewer at the ends); and the replaced indices.
    Values within ``ABS_FLOOR_S`` of m are kept (a phase of a few seconds varies by more
    than ``factor`` without meaning anything)."""
    half = window // 2
    out, replaced = [], []
    for i, v in enumerate(series):
        m = statistics.median(series[max(0, i - half):i + half + 1])
        if abs(v - m) > ABS_FLOOR_S and not m / factor <= v <= m * factor:
            out.append(m)
            replaced.append(i)
        else:
            out.append(v)
    return out, replaced



def summarize(series: dict, window: int, factor: float) -> dict:
    phases = series["phases"]
    cleaned = {k: clean(v, window, factor) for k, v in phases.items()}
    return {
        "epochs_recorded": len(series["env_steps"]),
        "epochs_budget": series["epochs"],
        "recorded_h": round(sum(sum(v) for v in phases.values()) / 3600, 3),
        "cleaned_h": round(sum(sum(c) for c, _ in cleaned.values()) / 3600, 3),
        "recorded_phase_h": {k: round(sum(v) / 3600, 3) for k, v in phases.items()},
        "cleaned_phase_h": {k: round(sum(c) / 3600, 3) for k, (c, _) in cleaned.items()},
        "replaced_epochs": {k: r for k, (_, r) in cleaned.items() if r},
        "cleaned": {k: c for k, (c, _) in cleaned.items()},
    }


def project(run: dict, reference: dict, shared: slice) -> dict:
    """Two projections of the run to its budget, from the ratio of the two runs' medians
    of each phase over the epochs ``shared``: ``projected_h``, the run's cleaned epochs and
    then the reference's cleaned epochs, each phase scaled, from there to the budget; and
    ``scaled_reference_h``, every epoch from the scaled reference (for a run whose own
    early epochs are too disturbed to stand for themselves)."""
    n, budget = run["epochs_recorded"], run["epochs_budget"]
    if reference["epochs_recorded"] < budget:
        raise SystemExit(f"the reference has {reference['epochs_recorded']} epochs, fewer than "
                         f"the run's budget ({budget}): it cannot stand for the rest")
    if not 0 <= shared.start < shared.stop <= n:
        raise SystemExit(f"the ratio's epochs {shared.start}-{shared.stop - 1} are not all "
                         f"recorded (0-{n - 1})")
    ratios, rest, whole = {}, 0.0, 0.0
    for k, ours in run["cleaned"].items():
        theirs = reference["cleaned"].get(k)
        if theirs is None:
            raise SystemExit(f"the reference has no {k!r} phase")
        a, b = statistics.median(ours[shared]), statistics.median(theirs[shared])
        ratios[k] = round(a / b, 4) if b > 0 else 1.0
        rest += sum(theirs[n:budget]) * ratios[k]
        whole += sum(theirs[:budget]) * ratios[k]
    own = sum(sum(c) for c in run["cleaned"].values())
    return {"ratio_epochs": [shared.start, shared.stop - 1], "phase_ratio": ratios,
            "remaining_epochs": budget - n, "remaining_h": round(rest / 3600, 3),
            "projected_h": round((own + rest) / 3600, 3),
            "scaled_reference_h": round(whole / 3600, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a run directory or a bench/learning.py result")
    p.add_argument("--reference", type=Path,
                   help="a finished run of the same budget, to project an unfinished one")
    p.add_argument("--seed", default="0", help="the seed's run in a learning result")
    p.add_argument("--window", type=int, default=9, help="epochs in each median (odd)")
    p.add_argument("--factor", type=float, default=1.5,
                   help="epochs beyond median * factor or below median / factor are replaced")
    p.add_argument("--ratio-epochs", type=int, nargs=2, metavar=("FIRST", "LAST"),
                   help="the epochs whose medians give the phase ratios (default: the run's "
                        "last 20)")
    p.add_argument("--json", type=Path, help="write the result here")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    if args.window < 1 or args.window % 2 == 0:
        raise SystemExit(f"--window must be an odd number >= 1, got {args.window}")
    if args.factor <= 1.0:
        raise SystemExit(f"--factor must be > 1, got {args.factor}")

    run = summarize(read_series(args.run, args.seed), args.window, args.factor)
    out = {"command": "python bench/run_time.py " + " ".join(argv or sys.argv[1:]),
           "run": str(args.run), "window": args.window, "factor": args.factor,
           "abs_floor_s": ABS_FLOOR_S, "result": run}
    if args.reference is not None:
        ref = summarize(read_series(args.reference, args.seed), args.window, args.factor)
        out["reference"] = {"source": str(args.reference), "result": ref}
        # a finished run gets one too: remaining 0, projected_h = cleaned_h, and the
        # scaled reference stands in for its own disturbed early epochs
        n = run["epochs_recorded"]
        first, last = args.ratio_epochs or (max(0, n - 20), n - 1)
        out["projection"] = project(run, ref, slice(first, last + 1))
    for part in (out["result"], out.get("reference", {}).get("result", {})):
        part.pop("cleaned", None)  # per-epoch series: in the run's own metrics
    out.update(note=args.note, written=time.strftime("%Y-%m-%d %H:%M:%S"))
    print(json.dumps({k: v for k, v in out.items() if k not in ("command", "note")}, indent=1))
    if args.json:
        sys.path.insert(0, str(ROOT))
        from mbrl_fast.benchmarks.harness import write_json

        write_json(args.json, out)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
