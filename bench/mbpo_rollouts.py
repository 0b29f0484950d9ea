"""MBPO's branched model rollouts: the compiled CPU propagate (policy in the loop) against the
same rollout in eager PyTorch, in one run.

    OMP_NUM_THREADS=1 python bench/mbpo_rollouts.py --threads 1 --clock cpu \\
        --json bench/results/mbpo_rollouts_1thread_cpu.json

One rollout = ``rollout_batch`` start states x k steps (MBPO: 100,000 x 1..15) at Hopper's
sizes: obs 11, act 3; the model an ensemble of 7 members 14 -> 200 x4 -> 2 x 12 (SiLU,
Gaussian head over the state delta and a learned reward), 5 of them elites; the policy
SAC's 11 -> 256 x2 -> 2 x 3 (ReLU, tanh-Gaussian). Each step: policy forward, sample
a = tanh(mu + std eps), a random elite per row (TS1), s' = s + mu + std eps, r from the
reward head. Both sides return every state, action and reward (what MBPO keeps; the
termination function is applied to them afterwards and costs both sides the same).

  <path>     ``ops.propagate(..., policy=..., mode="ts1", backend="cpu")`` (what
             ``models.rollouts.branched_rollout`` calls), MBRL_FAST_CPU_KERNELS=<path>
  <path>-bf16  the same with the model's and the policy's weights bf16-packed
             (``MLPParams.to_bf16``: MBPO's ``rollout_precision="bf16"``); by default on the
             paths where AVX512-BF16 runs them natively (elsewhere they are unpacked to fp32
             and cost what fp32 does)
  eager      a plain torch loop as mbrl-lib's MBPO (``rollout_model_and_populate_sac_buffer``)
             writes it: per step the SAC actor (addmm), its sample, the elites' forward on
             rows shuffled into equal groups per member (mbrl-lib's ``random_model``
             propagation: one baddbmm per layer), the Gaussian sample; ``torch.no_grad``
  reference  ``ops.propagate(..., backend="reference")``, what MBPO ran on CPU before the
             kernel took policy calls (k = 1 only unless --reference-all: ~5-10 s a step)

Entries run round-robin (a change of load hits all alike); each figure is the median of
``--repeats`` after a warm-up, and ratios are eager / path. The JSON records the machine
(CPU, kernel paths, threads) and the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from mbrl_fast import backends
from mbrl_fast.benchmarks import harness, isa
from mbrl_fast.ops.ensemble_mlp import MLPParams
from mbrl_fast.ops.propagate import propagate

OBS, ACT, MEMBERS, ELITES = 11, 3, 7, 5
MODEL_HIDDEN, MODEL_LAYERS, POLICY_HIDDEN, POLICY_LAYERS = 200, 4, 256, 2


def random_mlp(members: int, sizes: tuple[int, ...], activation: str, max_lv: float,
               min_lv: float, seed: int, normalize: bool) -> MLPParams:
    """nn.Linear-like init, in the kernels' layout (what ProbabilisticEnsemble and
    TanhGaussianPolicy hand to propagate)."""
    g = torch.Generator().manual_seed(seed)
    ws, bs = [], []
    for i, o in zip(sizes[:-1], sizes[1:], strict=True):
        ws.append(((torch.rand(members, i, o, generator=g) * 2 - 1) / i**0.5).contiguous())
        bs.append(((torch.rand(members, o, generator=g) * 2 - 1) / i**0.5).contiguous())
    half = sizes[-1] // 2
    mean = torch.randn(sizes[0], generator=g) * 0.1 if normalize else None
    std = torch.rand(sizes[0], generator=g) + 0.5 if normalize else None
    return MLPParams(tuple(ws), tuple(bs), activation, mean, std, torch.full((half,), max_lv),
                     torch.full((half,), min_lv))


def hopper_networks() -> tuple[MLPParams, MLPParams]:
    model = random_mlp(MEMBERS, (OBS + ACT,) + (MODEL_HIDDEN,) * MODEL_LAYERS + (2 * (OBS + 1),),
                       "silu", 0.5, -10.0, seed=0, normalize=True)
    policy = random_mlp(1, (OBS,) + (POLICY_HIDDEN,) * POLICY_LAYERS + (2 * ACT,), "relu",
                        4.0, -40.0, seed=1, normalize=False)  # SAC's log-std [-20, 2]
    return model, policy


def soft_bound(raw, max_lv, min_lv):
    lv = max_lv - F.softplus(max_lv - raw)
    return min_lv + F.softplus(lv - min_lv)


class EagerRollout:
    """The rollout in plain torch: obs [N, D] -> (states [N, k+1, D], actions [N, k, A],
    rewards [N, k])."""

    def __init__(self, model: MLPParams, policy: MLPParams, elites: list[int], seed: int):
        idx = torch.tensor(elites)
        self.mw = [w[idx].contiguous() for w in model.weights]  # [E', in, out]
        self.mb = [b[idx].unsqueeze(1).contiguous() for b in model.biases]  # [E', 1, out]
        self.in_mean, self.in_std = model.in_mean, model.in_std
        self.m_max, self.m_min = model.max_logvar, model.min_logvar
        self.pw = [w[0].contiguous() for w in policy.weights]  # [in, out] (nn.Linear's W^T)
        self.pb = [b[0].contiguous() for b in policy.biases]
        self.p_max, self.p_min = policy.max_logvar, policy.min_logvar
        self.g = torch.Generator().manual_seed(seed)

    def act(self, obs):
        h = obs
        for l, (w, b) in enumerate(zip(self.pw, self.pb, strict=True)):
            h = torch.addmm(b, h, w)
            if l < len(self.pw) - 1:
                h = F.relu(h)
        mu, raw = h.chunk(2, dim=-1)
        std = torch.exp(0.5 * soft_bound(raw, self.p_max, self.p_min))
        return torch.tanh(mu + std * torch.randn(mu.shape, generator=self.g))

    def model_step(self, obs, act):
        n, e = obs.shape[0], len(self.mw)
        perm = torch.randperm(n, generator=self.g)  # a random elite per row, equal groups
        x = torch.cat([obs, act], dim=-1)[perm]
        h = ((x - self.in_mean) / self.in_std).view(e, n // e, -1)
        for l, (w, b) in enumerate(zip(self.mw, self.mb, strict=True)):
            h = torch.baddbmm(b, h, w)
            if l < len(self.mw) - 1:
                h = F.silu(h)
        mu, raw = h.reshape(n, -1).chunk(2, dim=-1)
        std = torch.exp(0.5 * soft_bound(raw, self.m_max, self.m_min))
        delta = torch.empty_like(mu)
        delta[perm] = mu + std * torch.randn(mu.shape, generator=self.g)  # back to row order
        return obs + delta[:, :-1], delta[:, -1]

    @torch.no_grad()
    def __call__(self, obs, k: int):
        states, actions, rewards = [obs], [], []
        for _ in range(k):
            a = self.act(states[-1])
            nxt, r = self.model_step(states[-1], a)
            states.append(nxt)
            actions.append(a)
            rewards.append(r)
        return torch.stack(states, 1), torch.stack(actions, 1), torch.stack(rewards, 1)


def compiled_fn(model, policy, obs, k: int, path: str, elites: list[int]):
    backend = "reference" if path == "reference" else "cpu"
    if path.endswith("-bf16"):
        path, model, policy = path.removesuffix("-bf16"), model.to_bf16(), policy.to_bf16()

    def rollout():
        with isa.forced(None if path == "reference" else path):
            return propagate(model, obs, None, particles=1, mode="ts1", members=elites, seed=0,
                             reward="model", return_states=True, policy=policy, horizon=k,
                             backend=backend)

    return rollout


def main(argv=None) -> dict:
    runnable = [p for p in ("avx512", "avx2") if isa.unavailable(p) is None]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--paths", nargs="*", default=runnable, choices=isa.PATHS)
    ap.add_argument("--bf16-paths", nargs="*", choices=isa.PATHS,
                    default=["avx512"] if "avx512" in runnable and isa.bf16_native() else [],
                    help="paths also timed with bf16 weights (default: where AVX512-BF16 runs)")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 15], help="rollout lengths k")
    ap.add_argument("--rollout-batch", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--reference-all", action="store_true", help="also time the reference at k > 1")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU seconds (with --threads 1: robust to other jobs)")
    ap.add_argument("--threads", type=int, help="torch and OpenMP threads (default: torch's)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    n = args.rollout_batch - args.rollout_batch % ELITES  # equal elite groups for the eager loop
    model, policy = hopper_networks()
    elites = list(range(ELITES))
    obs = torch.randn(n, OBS, generator=torch.Generator().manual_seed(2))
    macs_per_row_step = sum(int(w.shape[1] * w.shape[2]) for w in model.weights) + sum(
        int(w.shape[1] * w.shape[2]) for w in policy.weights)
    out = {
        "what": "MBPO branched rollout, Hopper sizes: compiled CPU propagate vs eager torch",
        "command": "python bench/mbpo_rollouts.py " + " ".join(argv or sys.argv[1:]),
        "load_at_start": harness.load(),
        "clock": args.clock,
        "torch_threads": torch.get_num_threads(),
        "cpu_backend": backends.available()["cpu"][1],
        "config": {"rollout_batch": n, "obs": OBS, "act": ACT, "members": MEMBERS,
                   "elites": ELITES, "model": f"{OBS + ACT}-{MODEL_HIDDEN}x{MODEL_LAYERS}-"
                   f"{2 * (OBS + 1)} silu", "policy": f"{OBS}-{POLICY_HIDDEN}x{POLICY_LAYERS}-"
                   f"{2 * ACT} relu", "mode": "ts1", "reward": "model head",
                   "gflop_per_step": 2 * macs_per_row_step * n / 1e9},
        "steps": {},
    }
    print(f"{out['cpu_backend']}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"clock {args.clock}; {n} rows, {out['config']['gflop_per_step']:.1f} GFLOP per step")
    for k in args.steps:
        paths = args.paths + [f"{p}-bf16" for p in args.bf16_paths]
        fns = {path: compiled_fn(model, policy, obs, k, path, elites) for path in paths}
        eager = EagerRollout(model, policy, elites, seed=3)
        fns["eager"] = lambda eager=eager, k=k: eager(obs, k)
        if not args.no_reference and (k == 1 or args.reference_all):
            fns["reference"] = compiled_fn(model, policy, obs, k, "reference", elites)
        for fn in fns.values():
            for _ in range(args.warmup):
                fn()
        times = {name: [] for name in fns}
        for rep in range(args.repeats):
            for name, fn in fns.items():
                start = clock()
                fn()
                times[name].append(clock() - start)
            print(f"  k={k} repeat {rep + 1}/{args.repeats}: "
                  + ", ".join(f"{name} {t[-1]:.2f} s" for name, t in times.items()), flush=True)
        med = {name: statistics.median(t) for name, t in times.items()}
        gflop = out["config"]["gflop_per_step"] * k
        rows = {}
        for name, t in med.items():
            rows[name] = {"s_per_rollout": t, "s_per_step": t / k, "gflops": gflop / t,
                          "eager_over_this": med["eager"] / t, "times_s": times[name]}
            print(f"  k={k:2d} {name:11s} {t:8.2f} s  {t / k:6.3f} s/step  {gflop / t:6.1f} GFLOP/s"
                  f"  eager / this {med['eager'] / t:5.2f}x")
        out["steps"][str(k)] = rows
    out["machine"] = harness.machine_info()  # its load is the load at the end
    if args.json:
        harness.write_json(args.json, out)
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
