"""SAC alone learning a task (a sanity check of agents/sac.py against published SAC curves).

    python bench/sac_learning.py --env Hopper-v5 --steps 100000 --seed 0 \\
        --json bench/results/sac_learning_hopper.json

Writes the evaluation curve (mean return of deterministic episodes every ``eval_every``
env steps, wall-clock, update time, mean losses) to the JSON after every evaluation, so
a run that is stopped early keeps what it measured; --png plots it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

import torch

from mbrl_fast.agents.sac import SACConfig, train_sac


def cpu_name() -> str:
    """Model name and the SIMD extensions that matter here (from /proc/cpuinfo)."""
    name, flags = platform.processor() or "unknown", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    have = line.split(":", 1)[1].split()
                    flags = [x for x in ("avx2", "avx512f", "avx512_bf16", "amx_tile")
                             if x in have]
                    break
    except OSError:
        pass
    return f"{name} ({', '.join(flags)})" if flags else name


def git_commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--json", required=True)
    p.add_argument("--png", default=None)
    args = p.parse_args(argv)
    config = SACConfig(eval_every=args.eval_every, eval_episodes=args.eval_episodes)
    out = dict(
        what=f"SAC alone (mbrl_fast.agents.sac, published defaults) on {args.env}, seed "
             f"{args.seed}: mean return of {args.eval_episodes} deterministic episodes",
        command="python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        cpu=cpu_name(), cores=os.cpu_count(), torch=torch.__version__, commit=git_commit(),
        torch_threads=config.torch_threads, config=dataclasses.asdict(config),
        started=time.strftime("%Y-%m-%d %H:%M:%S"), curve=[])

    def record(row: dict) -> None:
        out["curve"].append({k: round(v, 4) if isinstance(v, float) else v
                             for k, v in row.items()})
        print(out["curve"][-1], flush=True)
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, args.json)

    train_sac(args.env, args.steps, seed=args.seed, config=config, callback=record)
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["env_steps"] for r in out["curve"]]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(steps, [r["eval_return"] for r in out["curve"]], marker="o")
        ax.set(xlabel="env steps", ylabel="eval return", title=f"SAC {args.env} seed {args.seed}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)


if __name__ == "__main__":
    main()
