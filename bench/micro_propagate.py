"""Micro-benchmark of the CPU propagate kernel at the PETS-HalfCheetah config (not a test).

Config: D = 18, A = 6, E = 5, layers 24 -> 200 x4 -> 36 (SiLU), TS-inf, N = 1,
P = 500, K = 20, H = 30, halfcheetah reward, return_states=False. Counts only the
matmul FLOPs, 2 * rows * (24*200 + 3*200*200 + 200*36) per step, and compares with
the torch fp32 sgemm rate (4096^3) measured in the same run.

    python bench/micro_propagate.py [--repeats 3] [--horizon 30] [--portable]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from mbrl_fast.ops.ensemble_mlp import MLPParams, pack_bf16
from mbrl_fast.ops.propagate import propagate

D, A, E, HIDDEN, WIDTH = 18, 6, 5, 4, 200


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def headline_params(bf16: bool) -> MLPParams:
    g = torch.Generator().manual_seed(0)
    sizes = (D + A,) + (WIDTH,) * HIDDEN + (2 * D,)
    ws, bs = [], []
    for i, o in zip(sizes[:-1], sizes[1:], strict=True):
        w = (torch.rand(E, i, o, generator=g) * 2 - 1) / i**0.5
        ws.append(pack_bf16(w) if bf16 else w.contiguous())
        bs.append((torch.rand(E, o, generator=g) * 2 - 1) / i**0.5)
    return MLPParams(tuple(ws), tuple(bs), "silu", torch.zeros(D + A), torch.ones(D + A),
                     torch.full((D,), 0.5), torch.full((D,), -10.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--horizon", type=int, default=30)
    ap.add_argument("--particles", type=int, default=20)
    ap.add_argument("--population", type=int, default=500)
    ap.add_argument("--portable", action="store_true", help="force the portable kernels")
    args = ap.parse_args()
    if args.portable:
        os.environ["MBRL_FAST_CPU_KERNELS"] = "portable"
    H, P, K = args.horizon, args.population, args.particles
    flops = 2 * P * K * H * ((D + A) * WIDTH + (HIDDEN - 1) * WIDTH**2 + WIDTH * 2 * D)
    obs = torch.randn(1, D)
    actions = torch.rand(1, P, H, A) * 2 - 1
    n = 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    calls = {"sgemm": lambda: torch.mm(a, b)}
    for name in ("fp32", "bf16"):
        params = headline_params(name == "bf16")
        calls[name] = lambda params=params: propagate(
            params, obs, actions, particles=K, mode="tsinf", reward="halfcheetah",
            return_states=False, backend="cpu", seed=1)
    # The machine is shared: interleave the measurements and keep each one's best wall
    # time and best CPU time (CPU seconds do not grow when other processes take the cores).
    for fn in calls.values():
        fn()  # warm-up
    wall = {name: float("inf") for name in calls}
    cpu = dict(wall)
    for _ in range(args.repeats):
        for name, fn in calls.items():
            w, c = timed(fn)
            wall[name], cpu[name] = min(wall[name], w), min(cpu[name], c)
    sgemm = 2 * n**3
    peak, peak_cpu = sgemm / wall["sgemm"] / 1e9, sgemm / cpu["sgemm"] / 1e9
    print(f"torch sgemm {n}^3: {peak:.1f} GFLOP/s, {peak_cpu:.1f} GFLOP per CPU-second "
          f"({torch.get_num_threads()} threads)")
    print(f"propagate: TS-inf, N=1, P={P}, K={K}, H={H}, E={E}, 24-200x{HIDDEN}-36 SiLU, "
          f"{flops / 1e9:.1f} GFLOP of matmul per call")
    for name in ("fp32", "bf16"):
        gf, gf_cpu = flops / wall[name] / 1e9, flops / cpu[name] / 1e9
        print(f"{name}: {wall[name]:.3f} s/propagate, {5 * wall[name]:.2f} s per 5-iteration act, "
              f"{gf:.1f} GFLOP/s = {100 * gf / peak:.0f}% of sgemm; per CPU-second "
              f"{gf_cpu:.1f} = {100 * gf_cpu / peak_cpu:.0f}%")
    print(f"bf16 / fp32 speed-up: {wall['fp32'] / wall['bf16']:.2f}x wall, "
          f"{cpu['fp32'] / cpu['bf16']:.2f}x CPU")

if __name__ == "__main__":
    main()
