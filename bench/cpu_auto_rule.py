"""Per op and size: the compiled cpu backend (each kernel path) against the reference.

The measurement behind the rule in mbrl_fast/backends.py (``cpu_beats_reference``):
for every op at sizes from one row to a planning step, the seconds per call of
``backend="cpu"`` on each kernel path this CPU runs and of ``backend="reference"``,
and their ratio. Times are the minimum over repeats of the process CPU time (``--clock
cpu``, the default: a shared machine's other jobs do not count) or of wall time
(``--clock wall``), with torch and OpenMP on ``--threads`` threads (set before the
libraries load, so run one thread count per process).

    OMP_NUM_THREADS=1 python bench/cpu_auto_rule.py --threads 1
    python bench/cpu_auto_rule.py --threads 2 --clock wall --json bench/results/cpu_auto_rule.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def sampler_ops(shape, wanted) -> list:
    """(name, fn(backend)) of the elite_update and noise ops on samples of ``shape``."""
    import torch

    from mbrl_fast.ops import elite_update as eu
    from mbrl_fast.ops import noise

    n, p, h, a = shape
    g = torch.Generator().manual_seed(0)
    s, r = torch.randn(n, p, h, a, generator=g), torch.randn(n, p, generator=g)
    m, v = torch.randn(n, h, a, generator=g) * 0.3, torch.rand(n, h, a, generator=g)
    ops = []
    if "elite" in wanted:
        ops += [
            ("cem_update", lambda be: eu.cem_update(s, r, m, v, num_elites=max(1, p // 10),
                                                    backend=be)),
            ("mppi_update", lambda be: eu.mppi_update(s, r, temperature=1.0, backend=be)),
            ("truncated_normal", lambda be: eu.truncated_normal(m, v, -1.0, 1.0, population=p,
                                                                seed=1, backend=be)),
            ("colored_noise", lambda be: eu.colored_noise(m, v, -1.0, 1.0, population=p, beta=2.0,
                                                          seed=1, backend=be)),
        ]
    if "noise" in wanted:
        ops += [("noise.uniform", lambda be: noise.uniform(shape, 1, 2, backend=be)),
                ("noise.normal", lambda be: noise.normal(shape, 1, 2, backend=be))]
    return ops


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--ops", nargs="*", default=["ensemble_mlp", "propagate", "elite", "noise"])
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from mbrl_fast import backends
    from mbrl_fast.ops.ensemble_mlp import ensemble_mlp
    from mbrl_fast.ops.propagate import propagate

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from helpers import random_mlp_params

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    paths = [p for p in ("avx512", "avx2", "portable") if not backends._cpu_missing(p)]

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(args.repeats):
            start = clock()
            fn()
            times.append(clock() - start)
        return min(times)

    def compare(op: str, size: str, fn) -> dict:
        row = {"op": op, "size": size, "reference_s": best(lambda: fn("reference"))}
        for path in paths:
            os.environ[backends.CPU_KERNELS_ENV_VAR] = path
            row[f"{path}_s"] = best(lambda: fn("cpu"))
        os.environ.pop(backends.CPU_KERNELS_ENV_VAR, None)
        print(f"{op:16s} {size:44s} ref {row['reference_s'] * 1e6:10.1f} us  " + "  ".join(
            f"{p} {row[p + '_s'] * 1e6:10.1f} us x{row['reference_s'] / row[p + '_s']:6.2f}"
            for p in paths), flush=True)
        return row

    rows = []
    if "ensemble_mlp" in args.ops:
        for e, b, sizes in [(1, 1, (4, 8, 4)), (5, 1, (24, 200, 200, 36)),
                            (5, 16, (24, 200, 200, 200, 200, 36)),
                            (5, 256, (24, 200, 200, 200, 200, 36)),
                            (5, 4096, (24, 200, 200, 200, 200, 36)),
                            (1, 1, (64, 256, 256, 64)), (1, 64, (64, 256, 256, 64)),
                            (1, 1024, (64, 256, 256, 64)), (1, 8192, (64, 256, 256, 64)),
                            (1, 1, (512, 1024, 1024, 512)), (1, 96, (512, 1024, 1024, 512)),
                            (1, 1024, (512, 1024, 1024, 512)), (7, 300, (33, 70, 70, 70, 10))]:
            p = random_mlp_params(E=e, sizes=sizes)
            x = torch.randn(e, b, sizes[0])
            macs = e * b * sum(i * o for i, o in zip(sizes[:-1], sizes[1:], strict=True))
            rows.append(compare("ensemble_mlp", f"E{e} B{b} {sizes} {macs / 1e6:.2f} MMAC",
                                lambda be, x=x, p=p: ensemble_mlp(x, p, backend=be)))
    if "propagate" in args.ops:
        for n, pp, k, h, hidden in [(1, 1, 1, 1, (32,)), (1, 4, 2, 3, (200, 200)),
                                    (1, 20, 5, 10, (200, 200, 200, 200)),
                                    (1, 100, 20, 30, (200, 200, 200, 200))]:
            p = random_mlp_params(E=5, sizes=(24, *hidden, 36))
            obs = torch.randn(n, 18) * 0.1
            act = torch.rand(n, pp, h, 6) * 2 - 1
            rows.append(compare("propagate", f"N{n} P{pp} K{k} H{h} hidden {hidden}",
                                lambda be, p=p, obs=obs, act=act, k=k: propagate(
                                    p, obs, act, particles=k, reward="halfcheetah",
                                    return_states=False, backend=be)))
    if "elite" in args.ops or "noise" in args.ops:
        for n, p, h, a in [(1, 8, 5, 1), (1, 100, 30, 6), (1, 500, 30, 6), (16, 500, 30, 6)]:
            for op, fn in sampler_ops((n, p, h, a), args.ops):
                rows.append(compare(op, f"N{n} P{p} H{h} A{a}", fn))
    if args.json:
        from mbrl_fast.benchmarks.harness import write_json
        write_json(args.json, {"clock": args.clock,
                               "threads": args.threads or torch.get_num_threads(),
                               "date": time.strftime("%Y-%m-%d"), "paths": paths, "rows": rows})


if __name__ == "__main__":
    main()
