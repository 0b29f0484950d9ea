"""SAC update throughput: mbrl-fast's SAC against Stable-Baselines3's, in one run.

    python bench/sac_update.py --json bench/results/sac_update_cpu.json

Both learners get Hopper-v5's sizes (obs 11, act 3), 2 x 256 ReLU actor and twin
critics, batch 256, automatic entropy tuning, and a replay buffer pre-filled with the
same 100,000 random transitions. One "update" is what each library does per gradient
step, sampling included: ``SAC.update(batch_from(ReplayBuffer.sample(256)))`` here (as
``train_sac`` does), ``stable_baselines3.SAC.train(gradient_steps=n)`` there. After a
warm-up the variants take turns, ``--updates`` updates each per round for ``--rounds``
rounds, so that a change in the machine's load hits all of them alike; each variant's
figure is the median over rounds, and the ratio is the median of the per-round ratios
(of wall-clock rates, ``vs_sb3``, and of CPU time per update, ``vs_sb3_cpu``).

Phases, each in a fresh Python process: for each thread count, glibc's default malloc,
then ``nn.dense.keep_freed_memory()`` (process-wide, so it applies to SB3 too). Variants:
``mbrl-fast`` (oneDNN GEMMs), ``mbrl-fast-torch`` (the same learner on torch's
baddbmm / MKL GEMMs), ``sb3``; where the CPU has native bf16 GEMMs (AVX512-BF16 / AMX)
also ``mbrl-fast-bf16`` (``SACConfig(precision="bf16")`` on oneDNN; ``vs_fp32``: its
per-round ratio to ``mbrl-fast``); with --compile also the torch path under
torch.compile (the oneDNN path does not lower in Inductor), with its compile time.
Also ``mbrl-fast-cpu`` (the compiled kernels, csrc/cpu/mlp_train*: the whole update's
gradients in one ``_C.sac_grads`` call, ``SAC.compiled_grads``) and, with native bf16
GEMMs, ``mbrl-fast-cpu-bf16``; beside each, ``...-autograd``: the same kernels under the
autograd update (one kernel call per network pass, ``SAC.compiled_update = False``, as
before 2026-12-05's fused update; ``vs_autograd``: the per-round ratio). ``auto_picks``
names the variant that the default ``SACConfig(backend="auto")`` runs at the phase's thread
count (nn/dense.py: the compiled kernels on a Zen 4, the torch path on AVX2-only CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from mbrl_fast import backends
from mbrl_fast.agents.sac import SAC, SACConfig, batch_from
from mbrl_fast.benchmarks.harness import write_json
from mbrl_fast.models import ReplayBuffer
from mbrl_fast.nn.dense import (
    bf16_supported,
    keep_freed_memory,
    onednn_available,
    resolve_backend,
)

OBS, ACT, BATCH, ROWS = 11, 3, 256, 100_000


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
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def random_transitions(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return dict(obs=rng.standard_normal((ROWS, OBS)), act=rng.uniform(-1, 1, (ROWS, ACT)),
                next_obs=rng.standard_normal((ROWS, OBS)), reward=rng.standard_normal(ROWS),
                terminated=rng.random(ROWS) < 0.01)


def make_ours(data, backend: str, compile_: bool = False, precision: str = "fp32",
              fused: bool = True):
    sac = SAC(OBS, ACT, SACConfig(backend=backend, precision=precision), seed=0)
    sac.compiled_update = sac.compiled_update and fused
    buffer = ReplayBuffer(OBS, ACT, ROWS)
    buffer.add_batch(data["obs"], data["act"], data["next_obs"], data["reward"],
                     data["terminated"])
    rng = np.random.default_rng(1)
    compile_s = None
    if compile_:
        tic = time.perf_counter()
        sac.losses = torch.compile(sac.losses)
        for _ in range(3):
            sac.update(batch_from(buffer.sample(BATCH, rng)))
        compile_s = time.perf_counter() - tic

    def run(n: int) -> None:
        for _ in range(n):
            sac.update(batch_from(buffer.sample(BATCH, rng)))

    return run, compile_s


def make_sb3(data):
    import gymnasium as gym
    import stable_baselines3 as sb3
    from stable_baselines3.common.logger import configure

    class Spaces(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (ACT,), np.float32)

        def reset(self, seed=None, options=None):
            return np.zeros(OBS, np.float32), {}

        def step(self, action):
            return np.zeros(OBS, np.float32), 0.0, False, False, {}

    model = sb3.SAC("MlpPolicy", Spaces(), batch_size=BATCH, buffer_size=ROWS,
                    learning_starts=0, policy_kwargs=dict(net_arch=[256, 256]), device="cpu",
                    seed=0)
    rb = model.replay_buffer
    rb.observations[:, 0] = data["obs"]
    rb.next_observations[:, 0] = data["next_obs"]
    rb.actions[:, 0] = data["act"]
    rb.rewards[:, 0] = data["reward"]
    rb.dones[:, 0] = data["terminated"]
    rb.full = True
    model.set_logger(configure(None, [""]))
    return lambda n: model.train(gradient_steps=n, batch_size=BATCH), sb3.__version__


def measure(variants: dict, updates: int, rounds: int, warmup: int) -> dict:
    """Wall-clock updates/s (median over rounds) and CPU ms per update (process time, all
    threads: less sensitive than wall-clock to other processes taking the cores)."""
    for run in variants.values():
        run(warmup)
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    load = [os.getloadavg()[0]]
    for _ in range(rounds):
        for name, run in variants.items():
            tic, cpu_tic = time.perf_counter(), time.process_time()
            run(updates)
            wall[name].append(updates / (time.perf_counter() - tic))
            cpu[name].append(1e3 * (time.process_time() - cpu_tic) / updates)
    load.append(os.getloadavg()[0])
    out = {}
    for name in variants:
        out[name] = dict(updates_per_s=round(statistics.median(wall[name]), 2),
                         cpu_ms_per_update=round(statistics.median(cpu[name]), 3),
                         per_round=[round(x, 2) for x in wall[name]])
        if name != "sb3":
            ratios = [a / b for a, b in zip(wall[name], wall["sb3"], strict=True)]
            cpu_ratios = [b / a for a, b in zip(cpu[name], cpu["sb3"], strict=True)]
            out[name].update(vs_sb3=round(statistics.median(ratios), 3),
                             vs_sb3_cpu=round(statistics.median(cpu_ratios), 3),
                             vs_sb3_per_round=[round(r, 2) for r in ratios])
        fp32 = {"mbrl-fast-bf16": "mbrl-fast", "mbrl-fast-cpu-bf16": "mbrl-fast-cpu"}.get(name)
        if fp32:
            ratios = [a / b for a, b in zip(wall[name], wall[fp32], strict=True)]
            out[name].update(vs_fp32=round(statistics.median(ratios), 3),
                             vs_fp32_per_round=[round(r, 2) for r in ratios])
        if name.startswith("mbrl-fast-cpu") and f"{name}-autograd" in wall:
            ratios = [a / b for a, b in zip(wall[name], wall[f"{name}-autograd"], strict=True)]
            out[name].update(vs_autograd=round(statistics.median(ratios), 3),
                             vs_autograd_per_round=[round(r, 2) for r in ratios])
    out["load_avg_1min_before_after"] = [round(x, 2) for x in load]
    return out


def run_phase(data, threads: int, malloc: bool, args) -> dict:
    """One thread count with glibc's default malloc or after keep_freed_memory()."""
    phase = dict(threads=threads, keep_freed_memory=malloc, pid=os.getpid())
    if malloc:
        phase["keep_freed_memory_applied"] = keep_freed_memory()
    torch.set_num_threads(threads)
    sb3_run, phase["stable_baselines3"] = make_sb3(data)
    # named, not "auto": auto takes torch's GEMMs on CPUs without AVX-512 (nn/dense.py)
    onednn = "onednn" if onednn_available() else "torch"
    variants = {"mbrl-fast": make_ours(data, onednn)[0],
                "mbrl-fast-torch": make_ours(data, "torch")[0], "sb3": sb3_run}
    if onednn == "onednn" and bf16_supported():
        variants["mbrl-fast-bf16"] = make_ours(data, onednn, precision="bf16")[0]
    if backends.is_available("cpu"):  # the compiled kernels (csrc/cpu/mlp_train*)
        variants["mbrl-fast-cpu"] = make_ours(data, "cpu")[0]
        variants["mbrl-fast-cpu-autograd"] = make_ours(data, "cpu", fused=False)[0]
        if bf16_supported():
            variants["mbrl-fast-cpu-bf16"] = make_ours(data, "cpu", precision="bf16")[0]
            variants["mbrl-fast-cpu-bf16-autograd"] = make_ours(data, "cpu", precision="bf16",
                                                                fused=False)[0]
    if args.compile and not malloc:
        variants["mbrl-fast-torch-compiled"], phase["compile_s"] = make_ours(
            data, "torch", compile_=True)
    phase.update(measure(variants, args.updates, args.rounds, args.warmup))
    # the variant the default SACConfig(backend="auto") runs at this thread count
    phase["auto_picks"] = {"onednn": "mbrl-fast", "torch": "mbrl-fast-torch",
                           "cpu": "mbrl-fast-cpu"}[resolve_backend("auto", "relu")]
    return phase


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=50, help="updates per variant per round")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--json", default=None)
    p.add_argument("--phase", type=int, nargs=2, default=None, metavar=("THREADS", "MALLOC"),
                   help=argparse.SUPPRESS)  # internal: run one phase in this process
    args = p.parse_args(argv)
    if args.phase is not None:  # one phase, in this process (a child of the run below)
        threads, malloc = args.phase
        print(json.dumps(run_phase(random_transitions(), threads, bool(malloc), args)),
              flush=True)
        return
    result = dict(
        what="SAC gradient steps per second, sampling included; Hopper-v5 sizes (obs 11, "
             "act 3), batch 256, 2 x 256 ReLU actor and twin critics, auto entropy",
        command="python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        cpu=cpu_name(), cores=os.cpu_count(), torch=torch.__version__, commit=git_commit(),
        onednn_path=onednn_available(), bf16_gemms=bf16_supported(),
        date=time.strftime("%Y-%m-%d %H:%M"),
        updates_per_round=args.updates, rounds=args.rounds, phases=[])
    # Each phase in a fresh process: keep_freed_memory() cannot be undone, so in one
    # process its phases always ran after the others and their rates mixed the malloc
    # setting with the order (docs/mbpo.md).
    for threads, malloc in [(t, malloc) for malloc in (False, True) for t in args.threads]:
        child = [sys.executable, os.path.abspath(__file__), "--phase", str(threads),
                 str(int(malloc)), "--updates", str(args.updates), "--rounds",
                 str(args.rounds), "--warmup", str(args.warmup)] + \
            (["--compile"] if args.compile and threads == args.threads[0] else [])
        proc = subprocess.run(child, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"phase threads={threads} keep_freed_memory={malloc} failed:\n"
                               f"{proc.stderr[-3000:]}")
        phase = json.loads(proc.stdout.strip().splitlines()[-1])
        for key in ("stable_baselines3", "keep_freed_memory_applied"):
            if key in phase:
                result[key] = phase.pop(key)
        result["phases"].append(phase)
        print(json.dumps(phase), flush=True)
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
