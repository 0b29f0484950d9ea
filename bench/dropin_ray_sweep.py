"""4 seeds of PETS: ``mbrl-fast sweep`` on a local Ray with 2 CPUs vs. the same 4 runs back to
back with 1 thread each, in one run.

Back to back: 4 fresh processes one after another, each running the sweep's own trial
function (``ray_sweep.run_trial``: the same run directory code, no Ray) with 1 thread
(torch and OpenMP). Sweep: ``mbrl-fast sweep`` end to end (its process start and Ray's
start included; the sweep's own time without them is recorded too).

    python bench/dropin_ray_sweep.py --json bench/results/dropin_ray_sweep.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ENV = "InvertedPendulum-v5"
SETS = ["trials=2", "episode_steps=100", "planner.population=100", "planner.num_elites=10"]


def back_to_back(seeds, out: str) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    for seed in seeds:
        code = ("from mbrl_fast.agents import get_agent; from mbrl_fast.integrations import "
                f"ray_sweep as s; t = s.plan_trials('pets', {ENV!r}, [{seed}], {SETS!r}, [], "
                f"{out!r})[0]; s.run_trial(get_agent('pets'), {ENV!r}, t, 'default', 1)")
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - t0


def sweep(seeds, out: str) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "mbrl_fast", "sweep", "pets", "--env", ENV, "--seeds",
           *map(str, seeds), "--num-cpus", "2", "--out", out]
    for s in SETS:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    total = time.perf_counter() - t0
    inner = float(re.search(r"sweep: \d+ trials in ([\d.]+) s", proc.stderr).group(1))
    return total, inner


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        sequential = back_to_back(args.seeds, os.path.join(tmp, "seq"))
        total, inner = sweep(args.seeds, os.path.join(tmp, "sweep"))
    result = {"back_to_back_s": sequential, "sweep_total_s": total,
              "sweep_without_ray_start_s": inner, "ratio_sweep_total": total / sequential,
              "ratio_sweep_without_ray_start": inner / sequential}
    print(json.dumps(result, indent=1))
    if args.json:
        from mbrl_fast.benchmarks.harness import write_json
        write_json(args.json, {
            "what": __doc__.split("\n\n")[0], "command": "python " + " ".join(sys.argv),
            "cpu": "AMD EPYC (Zen 5, AVX-512), 2 cores shared with other jobs",
            "load_average_before_after": [load_before, os.getloadavg()],
            "config": {"env": ENV, "seeds": args.seeds, "set": SETS}, "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
