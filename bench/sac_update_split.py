"""Where one SAC update's time goes: matrix products against everything else.

    python bench/sac_update_split.py --json bench/results/sac_update_split_cpu.json

The learner is bench/sac_update.py's (Hopper-v5 sizes: obs 11, act 3, 2 x 256 ReLU actor
and twin critics, batch 256, automatic entropy tuning), ``--threads`` threads (one by
default), on pre-sampled batches (sampling is ~1% of an update). For each variant
(``fp32`` on oneDNN's GEMMs, ``fp32-torch`` on torch's baddbmm / MKL, and ``bf16`` where
the CPU has native bf16 GEMMs) it reports:

- ``ms_per_update``: wall-clock, without the profiler (median of ``--rounds`` rounds);
- ``profiled``: from the torch profiler (``--profile-updates`` updates, self CPU time of
  each op), the time in matrix-product ops (``GEMM_OPS``) and in everything else per
  update, with the ten costliest other ops. The profiler adds its own cost to every op,
  so these times run ~20-50% above the wall-clock and overstate the many small ops; they
  say which ops, not how long;
- ``gemm_mflop_per_update``: counted from the products' input shapes (2 M N K each);
- ``gemm_replay_ms``: one update's products (the profiled ops with their shapes, strides
  and dtypes, ReLU epilogues left out) replayed back to back without the profiler, and
  ``other_ms`` = ``ms_per_update`` - that: the time outside the products;
- ``dense_gflops``: the same precision's 256 x 256 x 256 product on as many threads in this
  process (median of 500), the rate a fused update's products could hope for;
- ``fused_bound_ms``: the update's products as they run now with nothing else taking any
  time (``gemm_replay_ms``), and ``fused_bound_dense_ms``: its FLOPs at
  ``dense_gflops``; ``fused_bound_speedup`` = ``ms_per_update`` / the smaller: the most
  that compiling the whole update into one kernel could gain at these GEMM rates.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sac_update import ACT, BATCH, OBS, ROWS, git_commit, random_transitions  # noqa: E402

from mbrl_fast.agents.sac import SAC, SACConfig, batch_from  # noqa: E402
from mbrl_fast.benchmarks.harness import (  # noqa: E402
    machine_info,
    matmul_peak_gflops,
    write_json,
)
from mbrl_fast.models import ReplayBuffer  # noqa: E402
from mbrl_fast.nn.dense import bf16_supported, keep_freed_memory, onednn_available  # noqa: E402

# Matrix-product ops as the profiler names them, and where their operands are in the
# recorded input shapes: (x [..., K], w [N, K]) for oneDNN's linear, (A [M, K], B [K, N])
# for mm, with a leading input (bias) for addmm / baddbmm, batched for bmm / baddbmm.
GEMM_OPS = ("mkldnn::_linear_pointwise", "aten::mm", "aten::addmm", "aten::bmm",
            "aten::baddbmm")


def gemm_flops(name: str, shapes) -> int:
    """FLOPs (2 per multiply-add) of one matrix-product op from its input shapes."""
    shapes = [tuple(s) for s in shapes]
    if name == "mkldnn::_linear_pointwise":
        x, w = shapes[0], shapes[1]
        return 2 * math.prod(x[:-1]) * x[-1] * w[0]
    if name in ("aten::addmm", "aten::baddbmm"):
        shapes = shapes[1:]
    if name in ("aten::mm", "aten::addmm"):
        (m, k), (_, n) = shapes[0], shapes[1]
        return 2 * m * k * n
    if name in ("aten::bmm", "aten::baddbmm"):
        (b, m, k), (_, _, n) = shapes[0], shapes[1]
        return 2 * b * m * k * n
    raise ValueError(f"name must be one of {GEMM_OPS}, got {name!r}")


def _dtype(name: str) -> torch.dtype:
    if name == "float":
        return torch.float32
    if "BFloat16" in name:
        return torch.bfloat16
    raise ValueError(f"a product's operand dtype must be float or bfloat16, got {name!r}")


def gemm_calls(events, updates: int) -> list:
    """The products of the first of ``updates`` profiled updates, as zero-argument calls on
    operands of the recorded shapes, strides and dtypes."""
    events = [e for e in events if e.name in GEMM_OPS]
    if len(events) % updates:
        raise ValueError(f"{len(events)} product ops do not split into {updates} updates")
    calls = []
    for e in events[:len(events) // updates]:
        ts = [torch.randn(1 + sum((n - 1) * d for n, d in zip(sh, st, strict=True)))
              .to(_dtype(dt)).as_strided(sh, st) if sh else None
              for sh, st, dt in zip(e.input_shapes, e.structured_input_strides,
                                    e.input_dtypes, strict=False)]
        if e.name == "mkldnn::_linear_pointwise":
            calls.append(lambda t=ts: torch.ops.mkldnn._linear_pointwise(
                t[0], t[1], t[2], "none", [], ""))
        else:
            fn = getattr(torch, e.name.split("::")[1])
            n = 3 if e.name in ("aten::addmm", "aten::baddbmm") else 2
            calls.append(lambda fn=fn, t=ts[:n]: fn(*t))
    return calls


def time_calls(calls, seconds: float = 1.0) -> float:
    """ms per pass over ``calls``, back to back (median of 5 timed stretches)."""
    for _ in range(5):
        for c in calls:
            c()
    per = []
    for _ in range(5):
        n, tic = 0, time.perf_counter()
        while time.perf_counter() - tic < seconds / 5:
            for c in calls:
                c()
            n += 1
        per.append(1e3 * (time.perf_counter() - tic) / n)
    return statistics.median(per)


def split_profile(events, updates: int) -> dict:
    """Self CPU time of the profiled events: GEMM ops against the rest, per update."""
    gemm_us = other_us = 0.0
    flops = 0
    others: dict[str, float] = {}
    for e in events:
        if e.name in GEMM_OPS:
            gemm_us += e.self_cpu_time_total
            flops += gemm_flops(e.name, e.input_shapes)
        else:
            other_us += e.self_cpu_time_total
            others[e.name] = others.get(e.name, 0.0) + e.self_cpu_time_total
    top = sorted(others.items(), key=lambda kv: -kv[1])[:10]
    gemm_ms = gemm_us / 1e3 / updates
    return dict(gemm_ms_per_update=round(gemm_ms, 3),
                other_ms_per_update=round(other_us / 1e3 / updates, 3),
                gemm_share=round(gemm_us / max(gemm_us + other_us, 1e-9), 3),
                gemm_mflop_per_update=round(flops / 1e6 / updates, 1),
                gemm_gflops=round(flops / updates / max(gemm_ms, 1e-9) / 1e6, 1),
                top_other_ms_per_update={k: round(v / 1e3 / updates, 3) for k, v in top})


def measure_variant(backend: str, precision: str, data, rounds: int, per_round: int,
                    profile_updates: int) -> dict:
    sac = SAC(OBS, ACT, SACConfig(backend=backend, precision=precision), seed=0)
    buffer = ReplayBuffer(OBS, ACT, ROWS)
    buffer.add_batch(data["obs"], data["act"], data["next_obs"], data["reward"],
                     data["terminated"])
    rng = np.random.default_rng(1)
    batches = [batch_from(buffer.sample(BATCH, rng)) for _ in range(64)]
    i = 0

    def run(n: int) -> None:
        nonlocal i
        for _ in range(n):
            sac.update(batches[i % len(batches)])
            i += 1

    run(30)
    wall = []
    for _ in range(rounds):
        tic = time.perf_counter()
        run(per_round)
        wall.append(1e3 * (time.perf_counter() - tic) / per_round)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run(profile_updates)
    out = dict(backend=backend, precision=precision,
               ms_per_update=round(statistics.median(wall), 3),
               ms_per_update_per_round=[round(x, 3) for x in wall])
    events = prof.events()
    out["profiled"] = split_profile(events, profile_updates)
    out["gemm_mflop_per_update"] = out["profiled"].pop("gemm_mflop_per_update")
    out["profiled"].pop("gemm_gflops")
    replay = time_calls(gemm_calls(events, profile_updates))
    out.update(gemm_replay_ms=round(replay, 3),
               gemm_replay_gflops=round(out["gemm_mflop_per_update"] / replay, 1),
               other_ms=round(out["ms_per_update"] - replay, 3))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--updates", type=int, default=50, help="updates per timed round")
    p.add_argument("--profile-updates", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    data = random_transitions()
    result = dict(
        what=f"one SAC update (Hopper-v5 sizes, 2 x 256, batch 256, {args.threads} thread(s)): "
             "matrix products against the rest, and the bound on a fused update",
        command="python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        commit=git_commit(), threads=args.threads,
        load_avg_1min_before=round(os.getloadavg()[0], 2), variants={})
    onednn = "onednn" if onednn_available() else "torch"
    variants = {"fp32": (onednn, "fp32"), "fp32-torch": ("torch", "fp32")}
    if onednn == "onednn" and bf16_supported():
        variants["bf16"] = (onednn, "bf16")
    # the dense rate: one 256 x 256 x 256 product, median of 500
    rates = {p: matmul_peak_gflops(256, repeats=500, dtype=dtype)
             for p, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
             if p == "fp32" or "bf16" in variants}
    result["dense_gflops"] = {k: round(v, 1) for k, v in rates.items()}
    for name, (backend, precision) in variants.items():
        v = measure_variant(backend, precision, data, args.rounds, args.updates,
                            args.profile_updates)
        dense = v["gemm_mflop_per_update"] / rates[precision]  # MFLOP / GFLOP/s = ms
        v.update(fused_bound_ms=v["gemm_replay_ms"], fused_bound_dense_ms=round(dense, 3),
                 fused_bound_speedup=round(v["ms_per_update"]
                                           / min(dense, v["gemm_replay_ms"]), 2))
        result["variants"][name] = v
        print(name, json.dumps(v), flush=True)
    result["machine"] = machine_info()
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
