"""Any model: the same CEM plan with a torch step callable (reference rollout loop) vs. the
compiled path, on an equivalent MLP, in one run.

The model is a one-member Gaussian MLP (HalfCheetah sizes: obs 18, act 6, 4 x 200 SiLU):
as ``MLPParams`` for the compiled planner, and as the ``nn.Sequential`` it was built from,
wrapped in a plain ``step(state, action) -> (mean, logvar)``, for the step-model planner.
Both plan with the same seed, so they draw the same noise; the JSON records the gap between
their plans. Median of ``--repeats`` plan calls after a warm-up, alternating.

    python bench/dropin_step_model.py --json bench/results/dropin_step_model.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from torch import nn

from mbrl_fast import CEMPlanner
from mbrl_fast.benchmarks.harness import write_json
from mbrl_fast.integrations import mlp_params_from_sequentials
from mbrl_fast.ops.ensemble_mlp import soft_bound_logvar

D, A = 18, 6
CONFIGS = {  # name: (hidden, layers, population, particles, horizon, iterations)
    "pets-halfcheetah-small": (200, 4, 100, 10, 15, 3),
    "realtime-small-model": (64, 2, 64, 4, 10, 3),
}


def build(hidden: int, layers: int):
    torch.manual_seed(0)
    sizes = [D + A] + [hidden] * layers + [2 * D]
    mods = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        mods.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            mods.append(nn.SiLU())
    net = nn.Sequential(*mods)
    max_lv, min_lv = torch.full((D,), 0.5), torch.full((D,), -10.0)
    params = mlp_params_from_sequentials([net], gaussian=True, max_logvar=max_lv,
                                         min_logvar=min_lv)

    def step(state, action):  # what a user writes around their own module
        y = net(torch.cat([state, action], dim=-1))
        return state + y[:, :D], soft_bound_logvar(y[:, D:], max_lv, min_lv)
    return params, step


def reward(obs, act, next_obs):
    return (next_obs[..., 0] - obs[..., 0]) / 0.05 - 0.1 * (act * act).sum(-1)


def measure(name: str, repeats: int) -> dict:
    hidden, layers, pop, k, h, iters = CONFIGS[name]
    params, step = build(hidden, layers)
    kw = dict(reward=reward, horizon=h, population=pop, num_elites=max(2, pop // 10),
              iterations=iters, particles=k, seed=0)
    planners = {"compiled": CEMPlanner(params, -torch.ones(A), torch.ones(A), **kw),
                "step_model": CEMPlanner(step, -torch.ones(A), torch.ones(A), **kw)}
    obs = torch.randn(D) * 0.1
    times = {n: [] for n in planners}
    plans = {}
    with torch.no_grad():
        for p in planners.values():
            p.plan(obs)  # warm-up
        for _ in range(repeats):
            for n, p in planners.items():
                p.reset(seed=0)
                t0 = time.perf_counter()
                plans[n] = p.plan(obs)
                times[n].append(time.perf_counter() - t0)
    med = {n: statistics.median(t) for n, t in times.items()}
    return {"config": dict(zip(("hidden", "layers", "population", "particles", "horizon",
                                "iterations"), CONFIGS[name], strict=True)),
            "seconds_per_plan": med, "times": times,
            "slowdown_step_model_vs_compiled": med["step_model"] / med["compiled"],
            "max_abs_plan_gap": float((plans["compiled"] - plans["step_model"]).abs().max())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {name: measure(name, args.repeats) for name in CONFIGS}
    for name, r in results.items():
        print(f"{name}: compiled {r['seconds_per_plan']['compiled']:.3f} s, step model "
              f"{r['seconds_per_plan']['step_model']:.3f} s per plan -> "
              f"{r['slowdown_step_model_vs_compiled']:.1f}x slower")
    if args.json:
        write_json(args.json, {
            "what": __doc__.split("\n\n")[0], "command": "python " + " ".join(sys.argv),
            "cpu": "AMD EPYC (Zen 5, AVX-512), 2 cores shared with other jobs",
            "load_average": os.getloadavg(), "threads": args.threads,
            "torch": torch.__version__, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
