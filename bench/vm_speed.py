"""This machine's speed over time: how much its second core gives, sampled once a second.

The project's machines are 2-core VMs on shared hosts. Timings of the same code move by up
to ~1.7x from one minute to the next (docs/mbpo.md, "This VM's two speeds"): at times the
second vCPU adds ~1.7x to a two-thread kernel, at times almost nothing, as if both vCPUs
were placed on one physical core. This script samples, about once a second for
``--seconds``, in one process (run it with nothing else running):

- ``sac_ms_1``: one SAC gradient step with its sampling (``bench/sac_update.py``'s: Hopper
  sizes, batch 256, the library's one-call update on the CPU kernels, ``--precision``) on
  one thread, the median of ``--updates`` steps;
- ``sac_ms_n``: the same on ``--threads`` threads, and ``speedup`` = ``sac_ms_1 / sac_ms_n``;
- ``gemm_gflops``: a 256 x 256 x 256 fp32 product on one thread (MKL), the core's own rate.

A speedup that drops to ~1 while the one-thread figures hold says the second core is
missing, not that the code got slower. Run it before and after a timing to know which
state the timing fell in::

    python bench/vm_speed.py --seconds 60 --threads 2 --json bench/results/vm_speed_zen4.json

Under sustained load, as in a training run: ``--updates 300 --updates-one 10`` keeps both
threads busy over 90% of the time (one sample ~1 s), and the JSON's ``by_minute`` gives the
median of each minute, so a long run shows whether the two-thread rate drifts with time::

    python bench/vm_speed.py --seconds 1200 --updates 300 --updates-one 10 --json ...
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sac_update import make_ours, random_transitions  # noqa: E402

from mbrl_fast.benchmarks.harness import machine_info, write_json  # noqa: E402
from mbrl_fast.nn.dense import keep_freed_memory  # noqa: E402


def sample(step, updates: int, threads: int, a: torch.Tensor,
           updates_one: int | None = None) -> dict:
    """One sample: ``step(1)`` (one SAC update on a sampled batch) timed ``updates_one``
    (default ``updates``) times on one thread and ``updates`` times on ``threads``,
    medians; then the product on one thread."""
    def step_ms(n_threads: int, count: int) -> float:
        torch.set_num_threads(n_threads)
        step(1)  # the first step after a change of threads is not timed
        steps = []
        for _ in range(count):
            tic = time.perf_counter()
            step(1)
            steps.append(time.perf_counter() - tic)
        return statistics.median(steps) * 1e3

    one, n = step_ms(1, updates_one or updates), step_ms(threads, updates)
    torch.set_num_threads(1)
    tic = time.perf_counter()
    for _ in range(50):
        a @ a
    gemm = 2 * a.shape[0] ** 3 * 50 / (time.perf_counter() - tic) / 1e9
    return {"t": round(time.time(), 1), "sac_ms_1": round(one, 3), "sac_ms_n": round(n, 3),
            "speedup": round(one / n, 3), "gemm_gflops": round(gemm, 1)}


def summary(values: list[float]) -> dict:
    q = np.quantile(values, [0.0, 0.1, 0.5, 0.9, 1.0])
    return dict(zip(("min", "p10", "median", "p90", "max"), (round(float(v), 3) for v in q),
                    strict=True))


def by_minute(samples: list[dict]) -> list[dict]:
    """Each minute from the first sample: its sample count and median two-thread step,
    one-thread step and speedup."""
    t0, out = samples[0]["t"], {}
    for s in samples:
        out.setdefault(int((s["t"] - t0) // 60), []).append(s)
    return [{"minute": m, "samples": len(ss),
             **{k: round(statistics.median(x[k] for x in ss), 3)
                for k in ("sac_ms_n", "sac_ms_1", "speedup")}}
            for m, ss in sorted(out.items())]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="how long to sample")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    p.add_argument("--updates", type=int, default=100, help="SAC steps per sample")
    p.add_argument("--updates-one", type=int, default=None,
                   help="one-thread SAC steps per sample (default: --updates); fewer keep "
                        "the load on both threads, as a training run does")
    p.add_argument("--json", type=Path)
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    for name in ("seconds", "updates", "updates_one"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            flag = "--" + name.replace("_", "-")
            raise SystemExit(f"{flag} must be > 0, got {getattr(args, name)}")
    if args.threads < 2:
        raise SystemExit(f"--threads must be >= 2 (compared with one thread), got {args.threads}")
    keep_freed_memory()  # as MBPO runs
    step, _ = make_ours(random_transitions(), "auto", precision=args.precision)
    a = torch.randn(256, 256)
    sample(step, 20, args.threads, a)  # warm up
    samples, end = [], time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        s = sample(step, args.updates, args.threads, a, args.updates_one)
        samples.append(s)
        print(time.strftime("%H:%M:%S"), f"SAC step {s['sac_ms_1']:.2f} ms on one thread, "
              f"{s['sac_ms_n']:.2f} on {args.threads} ({s['speedup']:.2f}x); 256^3 fp32 "
              f"product {s['gemm_gflops']:.0f} GFLOP/s on one thread", flush=True)
    out = {
        "what": "this VM's speed over time, sampled about once a second in one process: a "
                "SAC step (Hopper sizes, one-call update) on one thread and on --threads, "
                "and a 256^3 fp32 product on one thread",
        "command": "python bench/vm_speed.py " + " ".join(argv or sys.argv[1:]),
        "threads": args.threads, "precision": args.precision, "updates": args.updates,
        "updates_one": args.updates_one or args.updates,
        "summary": {k: summary([s[k] for s in samples])
                    for k in ("sac_ms_1", "sac_ms_n", "speedup", "gemm_gflops")},
        "samples_below_1_3x": sum(s["speedup"] < 1.3 for s in samples),
        "by_minute": by_minute(samples),
        "samples": samples, "machine": machine_info(), "note": args.note}
    print({k: v["median"] for k, v in out["summary"].items()})
    if args.json:
        write_json(args.json, out)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
