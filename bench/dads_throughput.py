"""DADS's two hot loops, compiled against eager torch, in one run.

    python bench/dads_throughput.py --json bench/results/dads_throughput_cpu.json

1. The intrinsic reward of M = 2,000 transitions against L = 500 prior skills per
   transition: ``ops.skill_reward`` (one compiled call: M (L + 1) forward passes of q, the
   Gaussian log-density and the log-sum-exp fused) against its pure-torch reference (the
   same math in eager torch: q on the expanded [M (L + 1), F + Z] rows in chunks of 2^16,
   batched matmuls, then log-density and logsumexp), with fp32 weights and with
   bf16-packed weights (AVX512-BF16; the reference rounds the same way).
2. One latent-planner decision (the paper's H_P = 1, H_Z = 10, 50 candidates, 10
   refinements, for N = 1 and N = 20 start states): ``SkillPlanner`` with the compiled
   ops (propagate, mppi_update, Philox noise) against the same planner on the ops'
   references (``backend="reference"``: the rollout as an eager torch loop over steps);
   also with q's weights in bf16 (``SkillPlannerConfig.precision="bf16"``).

q networks: the point-mass preset's (reads vx, vy; predicts the 4-D change; 2 x 128 ReLU),
the paper's Ant q with the x-y prior (reads the skill only, predicts delta x-y; 2 x 512)
and the paper's Ant q without it (reads the 105 coordinates after x-y; predicts all 107;
2 x 512). Weights are random (they cost what trained ones do). Variants take turns,
round after round, so that a change in the machine's load hits all of them alike; each
figure is the median over rounds and each ratio the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time

import torch

from mbrl_fast.benchmarks.harness import write_json
from mbrl_fast.models.skill_dynamics import SkillDynamics
from mbrl_fast.ops.ensemble_mlp import MLPParams, pack_bf16
from mbrl_fast.ops.skill_reward import skill_reward
from mbrl_fast.planning.skills import SkillPlanner, SkillPlannerConfig, goal_reward

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sac_update import cpu_name, git_commit  # noqa: E402

NETS = {  # name: (obs_dim, SkillDynamics kwargs)
    "pointmass_2x128": (4, dict(omit=(0, 1), hidden=128)),
    "ant_xy_prior_2x512": (107, dict(predict=(0, 1), omit=(0, 1), hidden=512)),
    "ant_full_2x512": (107, dict(omit=(0, 1), hidden=512)),
}


def cpu_family() -> str:
    """x86 family / model from /proc/cpuinfo (family 26 = AMD Zen 5)."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("cpu family", "model") and key.strip() not in info:
                    info[key.strip()] = value.strip()
                if len(info) == 2:
                    break
    except OSError:
        return "unknown"
    zen = {"25": " (AMD Zen 3 / Zen 4)", "26": " (AMD Zen 5)"}.get(info.get("cpu family"), "")
    return f"family {info.get('cpu family')} model {info.get('model')}{zen}"


def make_q(name: str, seed: int = 0) -> SkillDynamics:
    d, kw = NETS[name]
    q = SkillDynamics(d, 2, seed=seed, **kw)
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(4096, d, generator=g, dtype=torch.float64)
    nxt = obs + 0.1 * torch.randn(4096, d, generator=g, dtype=torch.float64)
    q.update_normalizers(obs, torch.rand(4096, 2, generator=g) * 2 - 1, nxt)
    return q


def bf16(p: MLPParams) -> MLPParams:
    return MLPParams(tuple(pack_bf16(w) for w in p.weights), p.biases, p.activation, p.in_mean,
                     p.in_std, p.max_logvar, p.min_logvar)


def rounds_of(variants: dict, rounds: int) -> dict:
    """{name: fn} -> seconds per call [rounds] per variant, interleaved, after a warm-up."""
    for fn in variants.values():
        fn()
    times = {k: [] for k in variants}
    for _ in range(rounds):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def summarize(times: dict, baseline: str) -> dict:
    out = {k: {"median_s": round(statistics.median(v), 5), "all_s": [round(x, 5) for x in v]}
           for k, v in times.items()}
    for k, v in times.items():
        if k != baseline:
            out[k]["speedup_vs_" + baseline] = round(statistics.median(
                b / x for b, x in zip(times[baseline], v, strict=True)), 2)
    return out


def bench_reward(name: str, m: int, l: int, rounds: int) -> dict:
    q = make_q(name)
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(m, q.obs_dim, generator=g, dtype=torch.float64)
    nxt = obs + 0.1 * torch.randn(m, q.obs_dim, generator=g, dtype=torch.float64)
    x, t = q.features(obs), q.targets(obs, nxt)
    skill = torch.rand(m, 2, generator=g) * 2 - 1
    prior = torch.rand(m, l, 2, generator=g) * 2 - 1
    p32 = q.reward_params()
    p16 = bf16(p32)
    variants = {
        "eager_torch": lambda: skill_reward(p32, x, t, skill, prior, backend="reference"),
        "compiled_fp32": lambda: skill_reward(p32, x, t, skill, prior, backend="cpu"),
        "compiled_bf16": lambda: skill_reward(p16, x, t, skill, prior, backend="cpu"),
    }
    ref, fp32 = variants["eager_torch"](), variants["compiled_fp32"]()
    ref16 = skill_reward(p16, x, t, skill, prior, backend="reference")
    out = summarize(rounds_of(variants, rounds), "eager_torch")
    macs = m * (l + 1) * sum(a * b for a, b in zip(p32.sizes[:-1], p32.sizes[1:], strict=True))
    for v in out.values():
        v["gflop_per_s"] = round(2 * macs / v["median_s"] / 1e9, 1)
    return {"net": name, "sizes": list(p32.sizes), "M": m, "L": l, "rows": m * (l + 1),
            "variants": out,
            "max_abs_diff_fp32_vs_eager": float((fp32.reward - ref.reward).abs().max()),
            "max_abs_diff_bf16_vs_bf16_reference": float(
                (variants["compiled_bf16"]().reward - ref16.reward).abs().max())}


def bench_planner(name: str, n: int, rounds: int) -> dict:
    q = make_q(name)
    g = torch.Generator().manual_seed(2)
    obs = torch.randn(n, q.obs_dim, generator=g, dtype=torch.float64).float()
    goals = torch.randn(n, 2, generator=g) * 5
    rp = q.predicted.index(0), q.predicted.index(1)
    reward = goal_reward(goals, coords=rp)
    planners = {"eager_torch": SkillPlanner(q, SkillPlannerConfig(backend="reference")),
                "compiled": SkillPlanner(q, SkillPlannerConfig(backend="cpu")),
                "compiled_bf16": SkillPlanner(q, SkillPlannerConfig(backend="cpu",
                                                                    precision="bf16"))}
    plans = {}

    def decide(k):
        planners[k].reset(0)
        plans[k] = planners[k].plan(obs, reward)

    out = summarize(rounds_of({k: (lambda k=k: decide(k)) for k in planners}, rounds),
                    "eager_torch")
    return {"net": name, "N": n, "config": "H_P=1, H_Z=10, K=50, R=10 (paper)",
            "variants": out,
            "max_abs_diff_of_the_plans": float((plans["compiled"] - plans["eager_torch"]).abs()
                                               .max()),
            "max_abs_diff_of_the_plans_bf16": float((plans["compiled_bf16"]
                                                     - plans["eager_torch"]).abs().max())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=None)
    p.add_argument("--rounds", type=int, default=3, help="rounds of the reward benchmark")
    p.add_argument("--planner-rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch / OpenMP threads")
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    m, l = (200, 50) if args.quick else (2000, 500)
    load0 = os.getloadavg()
    result = {"command": shlex.join(["python", "bench/dads_throughput.py",
                                     *(argv if argv is not None else sys.argv[1:])]),
              "cpu": cpu_name(), "cpu_family": cpu_family(),
              "torch_threads": torch.get_num_threads(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
              "torch": torch.__version__, "commit": git_commit(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_start": load0,
              "reward": [], "planner": []}
    for name in NETS:
        r = bench_reward(name, m, l, args.rounds)
        print(json.dumps(r), flush=True)
        result["reward"].append(r)
    for name in ("pointmass_2x128", "ant_xy_prior_2x512"):
        for n in (1, 20):
            r = bench_planner(name, n, args.planner_rounds)
            print(json.dumps(r), flush=True)
            result["planner"].append(r)
    result["load_average_end"] = os.getloadavg()
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
