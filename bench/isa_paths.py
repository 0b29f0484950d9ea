"""The PETS-HalfCheetah planning step on each CPU kernel path, against torch sgemm and mbrl-lib.

One process, everything interleaved round-robin (sgemm, each path, mbrl-lib, repeat), so a
change of load on a shared machine slows every entry alike and the ratios stay fair:

  sgemm      torch.mm 4096^3 fp32 (the machine's matmul rate as torch runs it)
  <path>     mbrl_fast.planning.CEMPlanner, fp32 (and ``--bf16``: bf16-packed weights), with
             MBRL_FAST_CPU_KERNELS=<path> set before every call (avx512, avx2, portable;
             portable-baseline: portable's SSE2 build, _C.set_portable_baseline_only)
  mbrl_lib   mbrl-lib 0.2.0's TrajectoryOptimizerAgent + CEMOptimizer on the same weights

Reported per population: seconds per act (median), GFLOP/s of the useful matmul work
(mbrl_fast.benchmarks.configs.matmul_gflop_per_act), its share of the sgemm rate measured in
the same run, and mbrl-lib's time over ours.

On a shared machine, ``--threads 1 --clock cpu`` (with OMP_NUM_THREADS=1) times process
CPU seconds: other jobs then slow nothing but the caches. Wall time with several threads
on an oversubscribed machine penalizes libraries that synchronize threads per op (each
OpenMP join waits for a descheduled thread).

To emulate an AVX2-only machine on an AVX-512 one, restrict torch too (before it loads):

    MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 \\
        python bench/isa_paths.py --paths avx2 --json bench/results/isa_avx2_emulated.json

(``torch_isa`` in the output records what torch reports; MKL's instruction switch is recorded
as given, see docs/cpu.md for what it does on AMD CPUs.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from mbrl_fast import backends
from mbrl_fast.benchmarks import configs, harness, mbrl_lib_baseline
from mbrl_fast.planning import CEMPlanner


def sgemm_fn(n: int):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    out = torch.empty(n, n)
    return lambda: torch.mm(a, b, out=out)


def planner_fn(cfg, params, population: int, path: str):
    planner = CEMPlanner(params, -torch.ones(cfg.act_dim), torch.ones(cfg.act_dim),
                         reward=cfg.reward, horizon=cfg.horizon, population=population,
                         num_elites=cfg.num_elites, iterations=cfg.iterations, alpha=cfg.alpha,
                         epsilon=0.0, particles=cfg.particles, propagation="tsinf",
                         seed=cfg.seed, backend="cpu")
    obs = configs.start_states(cfg)[0]

    baseline = path == "portable-baseline"

    def act():
        os.environ[backends.CPU_KERNELS_ENV_VAR] = path.removesuffix("-baseline")
        backends.cpu_module().set_portable_baseline_only(baseline)
        try:
            return planner.plan(obs)
        finally:
            os.environ.pop(backends.CPU_KERNELS_ENV_VAR, None)
            backends.cpu_module().set_portable_baseline_only(False)

    return act


def mbrl_lib_fn(cfg, params, population: int):
    agent = mbrl_lib_baseline.make_agent(cfg, params, population=population)
    obs = configs.start_states(cfg)[0].numpy()
    return lambda: agent.act(obs)


def round_robin(fns: dict, repeats: int, warmup: int, log, clock=time.perf_counter
                ) -> dict[str, list[float]]:
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        log(f"    warmed up {name}")
    times = {name: [] for name in fns}
    for rep in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
        log(f"    repeat {rep + 1}/{repeats}: " + ", ".join(
            f"{n} {t[-1]:.3f} s" for n, t in times.items()))
    return times


def main(argv=None) -> dict:
    runnable = [p for p in ("avx512", "avx2", "portable") if not backends._cpu_missing(p)]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--populations", type=int, nargs="+", default=[500, 100])
    ap.add_argument("--paths", nargs="*", default=runnable,
                    choices=("avx512", "avx2", "portable", "portable-baseline"),
                    help="kernel paths (portable-baseline: the portable path's x86-64 baseline "
                    "build, which x86 CPUs without AVX run)")
    ap.add_argument("--bf16", action="store_true", help="also time bf16-packed weights per path")
    ap.add_argument("--no-mbrl-lib", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--sgemm-n", type=int, default=4096)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: seconds per act; cpu: process CPU seconds (with --threads 1, "
                    "robust to other jobs on a shared machine)")
    ap.add_argument("--threads", type=int, help="torch and OpenMP threads (default: torch's)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    log = print
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    cfg = configs.get_config("pets-halfcheetah")
    params = configs.make_params(cfg)
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": harness.machine_info(),
        "torch_isa": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "clock": args.clock,
        "env": {k: os.environ.get(k) for k in ("MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY",
                                              "OMP_NUM_THREADS")},
        "cpu_backend": backends.available()["cpu"][1],
        "config": cfg.to_dict(),
        "populations": {},
    }
    log(f"{out['machine'].get('cpu_model', '?')}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__} ({out['torch_isa']}), env {out['env']}")
    log(f"cpu backend: {out['cpu_backend']}")
    sg_flop = 2.0 * args.sgemm_n**3
    for pop in args.populations:
        gflop = configs.matmul_gflop_per_act(cfg, pop)
        log(f"population {pop}: {gflop:.1f} GFLOP per act")
        fns = {"sgemm": sgemm_fn(args.sgemm_n)}
        for path in args.paths:
            fns[f"{path}_fp32"] = planner_fn(cfg, params, pop, path)
            if args.bf16:
                fns[f"{path}_bf16"] = planner_fn(cfg, configs.to_bf16(params), pop, path)
        if not args.no_mbrl_lib and mbrl_lib_baseline.unavailable_reason() is None:
            fns["mbrl_lib"] = mbrl_lib_fn(cfg, params, pop)
        times = round_robin(fns, args.repeats, args.warmup, log, clock)
        med = {n: statistics.median(t) for n, t in times.items()}
        sgemm = sg_flop / med["sgemm"] / 1e9
        rows = {"sgemm": {"gflops": sgemm, "times_s": times["sgemm"]}}
        log(f"  {'':14s} {'s/act':>8s} {'GFLOP/s':>8s} {'% sgemm':>8s} {'x mbrl-lib':>10s}")
        log(f"  {'torch sgemm':14s} {'':>8s} {sgemm:8.1f} {100.0:8.0f}")
        for name, t in med.items():
            if name == "sgemm":
                continue
            rate = gflop / t
            vs_lib = med["mbrl_lib"] / t if "mbrl_lib" in med else None
            rows[name] = {"s_per_act": t, "gflops": rate, "pct_of_sgemm": 100 * rate / sgemm,
                          "speedup_vs_mbrl_lib": vs_lib, "times_s": times[name]}
            log(f"  {name:14s} {t:8.3f} {rate:8.1f} {100 * rate / sgemm:8.0f} "
                + (f"{vs_lib:10.2f}" if vs_lib else ""))
        out["populations"][str(pop)] = {"gflop_per_act": gflop, "results": rows}
    if args.json:
        harness.write_json(args.json, out)
        log(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
