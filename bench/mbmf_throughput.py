"""MB-MF throughput on the CPU: one random-shooting decision against eager PyTorch, and a
DAgger relabelling pass batched against one planner call per state.

  decision   one MPC action of MB-MF's HalfCheetah controller: 1,000 uniform sequences of
             20 steps from one state through the paper's 2 x 500 ReLU network (one member,
             the model reads the task's 18 features of the 18-D observation: x dropped, the
             pitch as sin / cos) with HalfCheetah's reward, the best first action.
             mbrl-fast: RandomShootingPlanner (one compiled ops.propagate call, fused reward),
             fp32 and bf16 weights (AVX512-BF16 where the CPU has it).
             eager: the same in plain PyTorch (torch.rand samples, a Python loop over the
             horizon, addmm + relu, the reward in torch, argmax), as a careful user writes it.
  relabel    MB-MF's DAgger labelling of S learner states (default 10,000): the planner
             called on chunks of ``--chunk`` start states (N states x 1,000 sequences in one
             propagate call; the agent's relabel_batch) against one call per state. Subsets
             (``--batched``, ``--singles`` states) may be timed and scaled to S (the JSON
             says which).

Timings are medians over interleaved repeats (harness.time_round_robin), wall-clock; weights
are random (a trained network costs the same). Threads: torch.set_num_threads(t) for both.

    nice python bench/mbmf_throughput.py --threads 1 2 --json bench/results/mbmf_throughput_cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mbrl_fast.benchmarks.harness import machine_info, time_round_robin  # noqa: E402
from mbrl_fast.envs import get_task  # noqa: E402
from mbrl_fast.models import ModelConfig, make_ensemble  # noqa: E402
from mbrl_fast.ops.features import obs_features_reference  # noqa: E402
from mbrl_fast.planning import RandomShootingPlanner  # noqa: E402

POPULATION, HORIZON = 1000, 20


def setup(seed: int = 0):
    task = get_task("HalfCheetah-v5")
    model = make_ensemble(ModelConfig(ensemble_size=1, num_elites=1, hidden=500, layers=2,
                                      activation="relu", probabilistic=False), task, seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a plausible normalizer (random weights cost what trained ones do)
        model.normalizer.mean32.copy_(torch.randn(model.normalizer.mean32.shape, generator=g))
        model.normalizer.std32.copy_(torch.rand(model.normalizer.std32.shape, generator=g) + .5)
    planners = {precision: RandomShootingPlanner(
        model.gaussian_view(), task.action_low, task.action_high, reward=task.reward,
        horizon=HORIZON, population=POPULATION, particles=1, propagation="expectation",
        seed=seed, precision=precision) for precision in ("fp32", "bf16")}
    return task, model, planners


class EagerRandomShooting:
    """Random shooting in plain eager PyTorch over the same network (no compiled ops)."""

    def __init__(self, task, model, seed: int = 0):
        p = model.mlp_params()
        self.w = [w[0] for w in p.weights]  # [in, out]
        self.b = [b[0] for b in p.biases]
        self.mean, self.std = p.in_mean, p.in_std
        self.features = p.obs_features
        self.reward = task.reward_fn
        self.low, self.high = task.action_bounds()
        self.gen = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def plan(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [N, D] -> first actions [N, A]."""
        n, a = obs.shape[0], self.low.shape[0]
        u = torch.rand(n, POPULATION, HORIZON, a, generator=self.gen)
        acts = self.low + (self.high - self.low) * u  # [N, P, H, A]
        s = obs.unsqueeze(1).expand(n, POPULATION, -1).reshape(n * POPULATION, -1)
        ret = torch.zeros(n * POPULATION)
        flat = acts.reshape(n * POPULATION, HORIZON, a)
        for t in range(HORIZON):
            at = flat[:, t]
            x = torch.cat([obs_features_reference(s, self.features), at], dim=1)
            h = (x - self.mean) / self.std
            for i, (w, b) in enumerate(zip(self.w, self.b, strict=True)):
                h = torch.addmm(b, h, w)
                if i < len(self.w) - 1:
                    h = torch.relu_(h)
            nxt = s + h
            ret += self.reward(s, at, nxt)
            s = nxt
        best = ret.reshape(n, POPULATION).argmax(dim=1)
        return acts[torch.arange(n), best, 0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--states", type=int, default=10_000, help="relabelled states (reported)")
    ap.add_argument("--batched", type=int, default=10_000,
                    help="states actually relabelled in batched calls (scaled to --states)")
    ap.add_argument("--chunk", type=int, default=100, help="states per batched planner call")
    ap.add_argument("--singles", type=int, default=200, help="single calls actually timed")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    task, model, planners = setup()
    planner = planners["fp32"]
    eager = EagerRandomShooting(task, model)
    g = torch.Generator().manual_seed(1)
    state = torch.randn(1, task.obs_dim, generator=g)
    states = torch.randn(args.states, task.obs_dim, generator=g)
    flop = 2 * POPULATION * HORIZON * sum(w.numel() for w in eager.w)  # multiply-adds x 2
    out = {"decision": {}, "relabel": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"threads {threads}: decision", flush=True)
        t = time_round_robin({"mbrl_fast_fp32": lambda: planners["fp32"].plan(state),
                              "mbrl_fast_bf16": lambda: planners["bf16"].plan(state),
                              "eager_torch": lambda: eager.plan(state)},
                             repeats=args.repeats, warmup=2)
        slow = t["eager_torch"].median
        row = {"eager_torch_ms": round(1e3 * slow, 2),
               "eager_torch_gflops": round(flop / slow / 1e9, 1)}
        for prec in ("fp32", "bf16"):
            fast = t[f"mbrl_fast_{prec}"].median
            row.update({f"mbrl_fast_{prec}_ms": round(1e3 * fast, 2),
                        f"speedup_{prec}": round(slow / fast, 2),
                        f"mbrl_fast_{prec}_gflops": round(flop / fast / 1e9, 1)})
            print(f"  mbrl-fast {prec} {1e3 * fast:.1f} ms, eager {1e3 * slow:.1f} ms: "
                  f"{slow / fast:.1f}x", flush=True)
        row["all_s"] = {k: [round(x, 5) for x in v.times] for k, v in t.items()}
        out["decision"][f"{threads}_threads"] = row

        print(f"threads {threads}: relabel {args.batched} states", flush=True)
        planner.plan(states[: args.chunk])  # warm-up: first call at this N allocates
        t0 = time.perf_counter()
        for i in range(0, args.batched, args.chunk):
            planner.plan(states[i:i + args.chunk])
        batched_timed = time.perf_counter() - t0
        batched = batched_timed * args.states / args.batched
        t0 = time.perf_counter()
        for i in range(args.singles):
            planner.plan(states[i:i + 1])
        singles = time.perf_counter() - t0
        single_total = singles * args.states / args.singles
        out["relabel"][f"{threads}_threads"] = {
            "states": args.states, "chunk": args.chunk, "batched_states_timed": args.batched,
            "batched_timed_s": round(batched_timed, 2),
            "batched_s_scaled_to_states": round(batched, 1),
            "single_calls_timed": args.singles, "single_calls_timed_s": round(singles, 2),
            "single_calls_s_scaled_to_states": round(single_total, 1),
            "ratio": round(single_total / batched, 2),
            "per_state_ms": {"batched": round(1e3 * batched / args.states, 3),
                             "single": round(1e3 * singles / args.singles, 3)}}
        print(f"  batched {batched:.1f} s; single calls {singles:.1f} s for {args.singles} -> "
              f"{single_total:.0f} s for {args.states}: {single_total / batched:.2f}x",
              flush=True)
    result = {
        "what": "MB-MF throughput: one random-shooting decision (1000 x 20, 2 x 500 ReLU, "
                "HalfCheetah-v5 obs 18 / 18 model features / act 6) vs eager PyTorch; DAgger "
                "relabelling batched vs one planner call per state",
        "note": (f"relabelling: {args.batched} states timed in batched calls of {args.chunk}, "
                 f"{args.singles} in single calls; both times scaled linearly to "
                 f"{args.states} states (planning cost is per state: 1000 x 20 rollouts)"),
        "command": " ".join(["python", "bench/mbmf_throughput.py", *(argv or sys.argv[1:])]),
        "results": out, "machine": machine_info()}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
