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
             called on ``--chunk`` start states (N states x 1,000 sequences in one propagate
             call; the agent's relabel_batch) against ``--chunk`` calls of one state each,
             interleaved; the per-state time is scaled to S. Also ops.propagate alone at 1
             and ``--chunk`` states per call (where batching could pay, if anywhere).

Timings are medians over interleaved repeats (harness.time_round_robin), wall-clock; weights
are random (a trained network costs the same). Threads: torch.set_num_threads(t) for both.

    nice python bench/mbmf_throughput.py --threads 1 2 --json bench/results/mbmf_throughput_cpu.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mbrl_fast.benchmarks.harness import machine_info, time_round_robin, write_json  # noqa: E402
from mbrl_fast.envs import get_task  # noqa: E402
from mbrl_fast.models import ModelConfig, make_ensemble  # noqa: E402
from mbrl_fast.ops.features import obs_features_reference  # noqa: E402
from mbrl_fast.ops.propagate import propagate  # noqa: E402
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


class _Cycle:
    """Successive slices of ``k`` rows of ``x``, wrapping around."""

    def __init__(self, x: torch.Tensor, k: int):
        self.x, self.k, self.i = x, k, 0

    def next(self) -> torch.Tensor:
        if self.i + self.k > len(self.x):
            self.i = 0
        self.i += self.k
        return self.x[self.i - self.k:self.i]


def time_relabel(planner, task, states: torch.Tensor, chunk: int, repeats: int) -> dict:
    """One planner call on ``chunk`` states against ``chunk`` single calls (interleaved,
    different states every call), and ops.propagate alone at 1 and ``chunk`` states."""
    chunks, singles = _Cycle(states, chunk), _Cycle(states, 1)

    def single_calls():
        for _ in range(chunk):
            planner.plan(singles.next())

    t = time_round_robin({"batched": lambda: planner.plan(chunks.next()), "single": single_calls},
                         repeats=repeats, warmup=1)
    per_state = {k: v.median / chunk for k, v in t.items()}
    obs, params = states[:chunk], planner._params()
    g = torch.Generator().manual_seed(2)
    u = torch.rand(chunk, POPULATION, HORIZON, task.act_dim, generator=g) * 2 - 1

    def rollouts(n):
        return lambda: propagate(params, obs[:n], u[:n], particles=1, mode="expectation",
                                 seed=0, offset=0, reward=planner.reward, return_states=False)

    prop = time_round_robin({n: rollouts(n) for n in (1, chunk)}, repeats=repeats, warmup=1)
    return {"chunk": chunk,
            "per_state_ms": {k: round(1e3 * v, 2) for k, v in per_state.items()},
            "ratio_single_over_batched": round(per_state["single"] / per_state["batched"], 3),
            "propagate_only_per_state_ms": {f"{n}_per_call": round(1e3 * v.median / n, 2)
                                            for n, v in prop.items()},
            "all_s": {k: [round(x, 4) for x in v.times] for k, v in t.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--states", type=int, default=10_000, help="relabelled states (scaled to)")
    ap.add_argument("--chunk", type=int, default=100, help="states per batched planner call")
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

        print(f"threads {threads}: relabel, {args.chunk} states per call vs single calls",
              flush=True)
        row = time_relabel(planner, task, states, args.chunk, args.repeats)
        row["states"] = args.states
        row["s_for_states"] = {k: round(v * args.states / 1e3, 1)
                               for k, v in row["per_state_ms"].items()}
        out["relabel"][f"{threads}_threads"] = row
        ms = row["per_state_ms"]
        print(f"  per state: batched {ms['batched']:.1f} ms, single {ms['single']:.1f} ms: "
              f"{row['ratio_single_over_batched']:.2f}x; propagate alone "
              f"{row['propagate_only_per_state_ms']}", flush=True)
    result = {
        "what": "MB-MF throughput: one random-shooting decision (1000 x 20, 2 x 500 ReLU, "
                "HalfCheetah-v5 obs 18 / 18 model features / act 6) vs eager PyTorch; DAgger "
                "relabelling batched vs one planner call per state",
        "note": (f"relabelling: one planner call on {args.chunk} states against {args.chunk} "
                 f"single calls, interleaved, median of {args.repeats} (different states every "
                 f"call); per-state times x {args.states} states. propagate_only: the op "
                 f"alone (no sampling, no argmax) on 1 and {args.chunk} states per call"),
        "command": " ".join(["python", "bench/mbmf_throughput.py", *(argv or sys.argv[1:])]),
        "results": out, "machine": machine_info()}
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
