"""Two builds of the compiled module in one process: SAC's update or an MLP call on each, in turn.

    git worktree add /tmp/base BASE_COMMIT && cmake -S /tmp/base -B /tmp/base-build \\
        -DCMAKE_BUILD_TYPE=Release -G Ninja && ninja -C /tmp/base-build _C
    python bench/sac_update_ab.py --base /tmp/base-build/_C.cpython-311-x86_64-linux-gnu.so \\
        --precision bf16 --threads 1 --rounds 40 --json bench/results/sac_update_ab.json

A kernel change moves SAC's update by a few percent, less than this VM's drift between
processes (+-10-20%, docs/mbpo.md "The drift"), so the two builds share one process: the
installed ``mbrl_fast._C`` ("new") and the module at ``--base`` ("base", loaded under
another package name), with ``backends.cpu_module`` pointed at one or the other for each
round. One learner (``bench/sac_update.py``'s ``make_ours``: Hopper sizes, batch 256, the
compiled one-call update, sampling included) runs ``--updates`` updates per round on
each, the order alternating between rounds. ``--workload model`` or ``critic`` runs one of
``bench/mlp_train_paths.py``'s calls through the compiled path instead (MBPO's ensemble,
7 x 4 x 200 SiLU, or SAC's twin critics: a training forward and backward, ``--updates``
steps per round). Reported: each build's median ms per update (per step) and the median
(and range) over rounds of base / new, > 1 where the new build is faster. Both builds must
run the same kernel path (``MBRL_FAST_CPU_KERNELS`` applies to both).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mlp_train_paths import CALLS, make_step  # noqa: E402
from sac_update import git_commit, make_ours, random_transitions  # noqa: E402

from mbrl_fast import backends  # noqa: E402
from mbrl_fast.benchmarks.harness import machine_info, write_json  # noqa: E402
from mbrl_fast.nn.dense import keep_freed_memory  # noqa: E402


def load_base(path: str):
    """The module built at ``path`` (a _C shared object), under the name ``ab_base._C``."""
    if not os.path.isfile(path):
        raise SystemExit(f"--base: no such file {path!r} (a built _C*.so)")
    spec = importlib.util.spec_from_file_location("ab_base._C", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="the other build's _C*.so")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--updates", type=int, default=100,
                   help="updates (MLP steps) per round and build")
    p.add_argument("--workload", choices=["sac", *CALLS], default="sac",
                   help="SAC's update, or one of bench/mlp_train_paths.py's calls")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    for name in ("threads", "rounds", "updates"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the agents run
    builds = {"base": load_base(args.base), "new": backends.cpu_module()}
    ms = {k: [] for k in builds}
    current = {"module": builds["new"]}
    installed = backends.cpu_module
    backends.cpu_module = lambda: current["module"]  # what the kernels' callers ask for
    try:
        if args.workload == "sac":
            run, _ = make_ours(random_transitions(), "cpu", precision=args.precision)
        else:
            step, _ = make_step(args.workload, "cpu", args.precision)

            def run(n: int) -> None:
                for _ in range(n):
                    step()
        for module in builds.values():  # warm-up: each build's workspaces and code
            current["module"] = module
            run(20)
        for r in range(args.rounds):
            for name in (("base", "new") if r % 2 == 0 else ("new", "base")):
                current["module"] = builds[name]
                tic = time.perf_counter()
                run(args.updates)
                ms[name].append((time.perf_counter() - tic) / args.updates * 1e3)
    finally:
        backends.cpu_module = installed
    ratios = [b / n for b, n in zip(ms["base"], ms["new"], strict=True)]
    if args.workload == "sac":
        what, unit = ("SAC's update (Hopper sizes, the compiled one-call update, sampling "
                      "included)"), "ms_per_update"
    else:
        what, unit = (f"one training forward + backward of bench/mlp_train_paths.py's "
                      f"{args.workload!r} call {CALLS[args.workload]} through the compiled "
                      "path"), "ms_per_step"
    out = {
        "what": what + " on two builds of mbrl_fast._C in one process, rounds interleaved; "
                "base_over_new > 1: the new build is faster",
        "command": "python bench/sac_update_ab.py " + " ".join(argv or sys.argv[1:]),
        "commit": git_commit(),
        "workload": args.workload,
        "precision": args.precision,
        "threads": args.threads,
        unit: {k: round(statistics.median(v), 3) for k, v in ms.items()},
        "base_over_new": {"median": round(statistics.median(ratios), 3),
                          "min": round(min(ratios), 3), "max": round(max(ratios), 3)},
        "ms_per_round": {k: [round(x, 3) for x in v] for k, v in ms.items()},
        "machine": machine_info(),
    }
    print(args.workload, args.precision, args.threads, out[unit], out["base_over_new"], flush=True)
    if args.json:
        write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
