"""Dreamer throughput on the CPU: the compiled imagination op and a full training step against
eager PyTorch of the same networks, measured side by side in one run.

Two measurements, each over implementations run in interleaved order (repeat r runs every
implementation once before repeat r + 1), median over repeats, wall-clock and process CPU
time (CPU time is what a shared, busy machine cannot steal from the process):

  imagine   one imagination batch, forward and backward: B = 2,500 start states (50 x 50),
            H = 15, Dreamer V1's networks (DreamerConfig defaults: GRU 200, latent 30,
            actor 4 x 400, reward 2 x 400, critic 3 x 400 as a slow copy and as the trained
            detached head), 6 actions (HalfCheetah); the loss reads every output, gradients
            go to the actor and the critic (the agent's call).
  update    one Dreamer.update(): world model (50 sequences x 50 steps), imagination from
            all 2,500 posterior states, actor and critic, optimizer steps; HalfCheetah-v5
            dims (obs 17, act 6), a replay of random 1000-step episodes.

Implementations: eager PyTorch fp32 (the op's reference: the specification), eager PyTorch
under torch.autocast(bfloat16) (imagine only), mbrl-fast fp32 and bf16 (compiled kernels).

    python bench/dreamer_throughput.py --threads 1 2 --repeats 3 \\
        --json bench/results/dreamer_throughput_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mbrl_fast.agents.dreamer import Dreamer  # noqa: E402
from mbrl_fast.benchmarks.harness import write_json  # noqa: E402
from mbrl_fast.ops import _cpu_imagine  # noqa: E402
from mbrl_fast.ops.imagine import imagine  # noqa: E402

ZEN = {23: "Zen / Zen 2", 25: "Zen 3 / Zen 4", 26: "Zen 5"}  # AMD cpu family -> core


def cpu_name() -> str:
    """Model name, AMD core generation and the ISA extensions the kernels use."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    info = dict(line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    name = info.get("model name", platform.machine())
    family = int(info.get("cpu family", "0"))
    if info.get("vendor_id") == "AuthenticAMD" and family in ZEN:
        name += f" ({ZEN[family]}, family {family})"
    flags = info.get("flags", "").split()
    isa = [f for f in ("avx512f", "avx512_bf16", "avx2") if f in flags]
    return f"{name}, {' + '.join(isa)}"


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def imagine_case(agent: Dreamer, batch: int, horizon: int, seed: int = 0):
    """A closure: one forward + backward of the agent's imagination call on `batch` states."""
    g = torch.Generator().manual_seed(seed)
    c = agent.config
    h0 = torch.randn(batch, c.model.deter, generator=g)
    z0 = torch.randn(batch, c.model.stoch, generator=g)
    heads = [agent.wm.reward, agent.slow_critic]

    def run(backend: str, precision: str, autocast: bool = False):
        params = agent.wm.imagine_params(agent.actor, heads, agent.critic,
                                         act_min_std=c.act_min_std, act_max_std=c.act_max_std,
                                         act_mean_scale=c.act_mean_scale)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            r = imagine(h0, z0, params, horizon, seed=seed, precision=precision,
                        backend=backend)
            loss = sum(x.float().mean() for x in r.heads) + 1e-3 * (
                torch.log(r.std.float()).mean()
                + torch.log1p(-r.action.float() ** 2 + 1e-6).mean())
        loss.backward()
        agent.actor.zero_grad(set_to_none=True)
        agent.critic.zero_grad(set_to_none=True)

    return run


def filled_agent(env_id: str, **overrides) -> Dreamer:
    """A Dreamer with its replay holding 4 random 1000-step episodes (no env steps taken)."""
    agent = Dreamer(Dreamer.make_config(env_id, preset=None, **overrides))
    rng = np.random.default_rng(0)
    dtype = agent.journal_dtype()
    for _ in range(4):
        rec = np.zeros(1001, dtype)
        rec["obs"] = rng.normal(size=rec["obs"].shape)
        rec["act"] = rng.uniform(-1, 1, size=rec["act"].shape)
        rec["reward"] = rng.normal(size=1001)
        rec["is_first"][0] = True
        rec["is_last"][-1] = True
        agent.restore(rec)
    return agent


def _update_fn(agent: Dreamer):
    rng = np.random.default_rng(1)
    return lambda: agent.update(agent._batch(rng))


def measure(cases: dict, repeats: int, warmup: int) -> dict:
    """{name: fn}: interleaved repeats -> {name: {wall_s, cpu_s (medians), all}}."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    out = {name: {"wall": [], "cpu": []} for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            w, c = timed(fn)
            out[name]["wall"].append(round(w, 4))
            out[name]["cpu"].append(round(c, 4))
            print(f"  {name}: wall {w:.3f} s, cpu {c:.3f} s", flush=True)
    return {name: {"wall_s": statistics.median(v["wall"]), "cpu_s": statistics.median(v["cpu"]),
                   "wall_all": v["wall"], "cpu_all": v["cpu"]} for name, v in out.items()}


def ratios(result: dict, baseline: str) -> dict:
    base = result[baseline]
    return {name: {"wall": round(base["wall_s"] / r["wall_s"], 2),
                   "cpu": round(base["cpu_s"] / r["cpu_s"], 2)} for name, r in result.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch", type=int, default=2500, help="imagination start states")
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--skip-update", action="store_true", help="only the imagination batch")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    load_start = os.getloadavg()[0]
    agent = filled_agent("HalfCheetah-v5")
    run = imagine_case(agent, args.batch, args.horizon)
    results = {"imagine": {}, "update": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"imagine, B={args.batch}, H={args.horizon}, {threads} thread(s):", flush=True)
        res = measure({
            "eager torch fp32": lambda: run("reference", "fp32"),
            "eager torch autocast bf16": lambda: run("reference", "fp32", autocast=True),
            "mbrl-fast fp32": lambda: run("cpu", "fp32"),
            "mbrl-fast bf16": lambda: run("cpu", "bf16"),
        }, args.repeats, args.warmup)
        results["imagine"][threads] = {"times": res, "speedup_vs_eager_fp32":
                                       ratios(res, "eager torch fp32")}
        if args.skip_update:
            continue
        print(f"update (batch 50 x 50), {threads} thread(s):", flush=True)
        agents = {name: filled_agent("HalfCheetah-v5", backend=be, precision=prec,
                                     torch_threads=threads)
                  for name, be, prec in (("eager torch fp32", "reference", "fp32"),
                                         ("mbrl-fast fp32", "cpu", "fp32"),
                                         ("mbrl-fast bf16", "cpu", "bf16"))}
        res = measure({name: _update_fn(a) for name, a in agents.items()}, args.repeats,
                      args.warmup)
        results["update"][threads] = {"times": res, "speedup_vs_eager_fp32":
                                      ratios(res, "eager torch fp32")}
        for a in agents.values():
            a.close()
    agent.close()

    c = agent.config
    data = {
        "benchmark": "dreamer_throughput",
        "command": shlex.join(["python", "bench/dreamer_throughput.py",
                               *(argv if argv is not None else sys.argv[1:])]),
        "cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads,
        "kernels": {"fp32": _cpu_imagine.kernel_name("fp32"),
                    "bf16": _cpu_imagine.kernel_name("bf16")},
        "torch": torch.__version__, "python": platform.python_version(),
        "load_average_1min_at_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "config": {"batch": args.batch, "horizon": args.horizon, "deter": c.model.deter,
                   "stoch": c.model.stoch, "hidden": c.model.hidden, "units": c.model.units,
                   "actor": [c.actor_layers, c.actor_units],
                   "critic": [c.critic_layers, c.critic_units], "act_dim": 6, "obs_dim": 17,
                   "update_batch": [c.batch_size, c.seq_len]},
        "results": results,
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(json.dumps({part: {t: v["speedup_vs_eager_fp32"] for t, v in res.items()}
                      for part, res in results.items()}, indent=1))
    if args.json:
        write_json(args.json, data)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
