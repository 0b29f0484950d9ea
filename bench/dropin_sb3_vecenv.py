"""SB3 VecEnv of 8 envs: one MPCPolicy planning all 8 in one call per step vs. 8 single-env
MPCPolicies (one planner each), in one run.

Env: a ``DummyVecEnv`` of 8 InvertedPendulum-v5; model: a PETS ensemble with random weights
(what a planner costs does not depend on what the weights learned); planners from the
task's reward. Throughput: env steps per second over ``--steps`` VecEnv steps (predict +
``VecEnv.step``), after a warm-up, alternating the two ways each round. Two planner sizes:
a real-time MPC one and the task's PETS preset.

    python bench/dropin_sb3_vecenv.py --json bench/results/dropin_sb3_vecenv.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

N_ENVS = 8
SIZES = {  # name: (model layers, hidden, population, elites, particles, horizon, iterations)
    "realtime": (2, 32, 64, 8, 4, 10, 3),
    "preset": (3, 64, 300, 30, 10, 25, 5),  # the InvertedPendulum-v5 PETS preset
}


def make_policy(size: str, task, seed: int):
    from mbrl_fast.integrations.sb3 import MPCPolicy
    from mbrl_fast.models import ProbabilisticEnsemble
    from mbrl_fast.planning import CEMPlanner

    layers, hidden, pop, elites, k, h, iters = SIZES[size]
    model = ProbabilisticEnsemble(task.obs_dim, task.act_dim, ensemble_size=5, num_elites=5,
                                  hidden=hidden, layers=layers, seed=0)
    planner = CEMPlanner(model, task.action_low, task.action_high, reward=task.reward,
                         termination=task.termination_fn, horizon=h, population=pop,
                         num_elites=elites, iterations=iters, particles=k, seed=seed)
    return MPCPolicy(planner)


def measure(size: str, steps: int, rounds: int) -> dict:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from mbrl_fast.envs import get_task

    task = get_task("InvertedPendulum-v5")
    env = DummyVecEnv([task.make_env] * N_ENVS)
    env.seed(0)
    batched = make_policy(size, task, 0)
    singles = [make_policy(size, task, i) for i in range(N_ENVS)]

    def predict_batched(obs, starts):
        return batched.predict(obs, episode_start=starts)[0]

    def predict_singles(obs, starts):
        return np.stack([p.predict(obs[i], episode_start=starts[i:i + 1])[0]
                         for i, p in enumerate(singles)])

    def run(predict) -> float:
        obs, starts = env.reset(), np.ones(N_ENVS, bool)
        predict(obs, starts)  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            obs, _, dones, _ = env.step(predict(obs, starts))
            starts = dones
        return N_ENVS * steps / (time.perf_counter() - t0)

    ways = {"batched_one_call": predict_batched, "eight_single_planners": predict_singles}
    rates = {w: [] for w in ways}
    for _ in range(rounds):
        for w, fn in ways.items():
            rates[w].append(run(fn))
    best = {w: max(r) for w, r in rates.items()}
    return {"config": dict(zip(("layers", "hidden", "population", "elites", "particles",
                                "horizon", "iterations"), SIZES[size], strict=True)),
            "env_steps_per_s": best, "all_rates": rates,
            "speedup_batched": best["batched_one_call"] / best["eight_single_planners"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {size: measure(size, args.steps, args.rounds) for size in SIZES}
    for size, r in results.items():
        print(f"{size}: batched {r['env_steps_per_s']['batched_one_call']:.1f} env steps/s, "
              f"8 single planners {r['env_steps_per_s']['eight_single_planners']:.1f} -> "
              f"{r['speedup_batched']:.2f}x")
    if args.json:
        from mbrl_fast.benchmarks.harness import write_json
        write_json(args.json, {
            "what": __doc__.split("\n\n")[0], "command": "python " + " ".join(sys.argv),
            "cpu": "AMD EPYC (Zen 5, AVX-512), 2 cores shared with other jobs",
            "load_average": os.getloadavg(), "threads": args.threads,
            "torch": torch.__version__, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
