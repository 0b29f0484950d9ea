"""GPU planner benchmark: PETS-HalfCheetah act() and MPPI, Triton vs CUDA vs plain PyTorch.

Run on a GPU machine (docs/gpu.md)::

    python bench/gpu_planner.py                    # full sizes, JSON in bench/results/
    python bench/gpu_planner.py --quick            # small sizes, a smoke run (seconds)
    python bench/gpu_planner.py --fp32-dot tf32x3  # Triton fp32 tl.dot precision to compare

What it measures (CUDA events, median of --reps after --warmup calls):

* ``pets_act``: one PETS planning step batched over --envs start states: 5 CEM
  iterations of (truncated-normal sampling -> propagate [N, 500, 30, 6] x 20 TS-inf
  particles through 5 members of 4 x 200 SiLU -> CEM update), per backend:
  ``cuda`` (all-CUDA ops), ``triton`` (Triton propagate + update, torch sampler),
  ``reference`` (the pure-torch ops on the GPU: the plain PyTorch baseline), and
  ``planner_auto`` (mbrl_fast.planning.CEMPlanner with backend="auto"), fp32 and bf16.
* ``mppi_act``: --mppi-samples sequences x horizon --mppi-horizon through a small MLP
  (one member, 2 x 64 SiLU, expectation mode) -> MPPI update, per backend.
* per op, per backend: ensemble_mlp, propagate, cem_update, mppi_update, noise; the
  Triton / CUDA time ratio; TFLOP/s of the matmul work against the measured torch
  matmul peak (fp32 without TF32, and bf16).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mbrl_fast import backends  # noqa: E402
from mbrl_fast.benchmarks.configs import get_config, make_params, start_states, to_bf16  # noqa: E402
from mbrl_fast.ops import elite_update, noise  # noqa: E402
from mbrl_fast.ops.ensemble_mlp import MLPParams, ensemble_mlp  # noqa: E402
from mbrl_fast.ops.propagate import propagate  # noqa: E402

GPU_BACKENDS = ("cuda", "triton")


def gpu_seconds(fn: Callable[[], object], reps: int, warmup: int) -> float:
    """Median seconds of fn() with CUDA events (the device time of the whole call)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def matmul_peak_tflops(dtype: torch.dtype, n: int = 8192) -> float:
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    return 2 * n**3 / gpu_seconds(lambda: a @ b, reps=10, warmup=3) / 1e12


def mlp_flop_per_row(sizes) -> int:
    return 2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def cuda_params(params: MLPParams) -> MLPParams:
    move = lambda t: None if t is None else t.cuda().contiguous()  # noqa: E731
    return MLPParams(tuple(map(move, params.weights)), tuple(map(move, params.biases)),
                     params.activation, move(params.in_mean), move(params.in_std),
                     move(params.max_logvar), move(params.min_logvar), params.leaky_slope)


def small_mlp(d: int, a: int) -> MLPParams:
    g = torch.Generator().manual_seed(0)
    sizes = (d + a, 64, 64, 2 * d)
    ws = [(torch.rand(1, i, o, generator=g) * 2 - 1) / i**0.5
          for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    bs = [torch.zeros(1, o) for o in sizes[1:]]
    return cuda_params(MLPParams(tuple(ws), tuple(bs), "silu", None, None,
                                 torch.full((d,), 0.5), torch.full((d,), -10.0)))


# ---- the planning loops, one per backend --------------------------------------------


def update_fns(backend: str):
    """(sampler, cem_update, mppi_update) running on the device for this backend."""
    if backend == "cuda":
        from mbrl_fast.ops import _cuda as c

        return c.truncated_normal_cuda, c.cem_update_cuda, c.mppi_update_cuda
    ref_sampler = elite_update.truncated_normal_reference

    def ref_cem(s, r, m, v, k, alpha, eps):
        u = elite_update.cem_update_reference(s, r, m, v, k, alpha, eps)
        return u.mean, u.var

    def ref_mppi(s, r, t):
        u = elite_update.mppi_update_reference(s, r, t)
        return u.mean, u.var, u.weights

    if backend == "triton":
        from mbrl_fast.ops._triton import elite_update as t

        return ref_sampler, t.cem_update_triton, t.mppi_update_triton
    return ref_sampler, ref_cem, ref_mppi


def pets_act(params, obs, cfg, backend: str):
    sampler, cem, _ = update_fns(backend)
    n, h, a = obs.shape[0], cfg.horizon, cfg.act_dim
    lower, upper = -torch.ones(a, device="cuda"), torch.ones(a, device="cuda")
    mean = torch.zeros(n, h, a, device="cuda")
    var = torch.full((n, h, a), 0.25, device="cuda")  # ((high - low) / 4)^2
    prop_backend = "reference" if backend == "reference" else backend
    for i in range(cfg.iterations):
        samples = sampler(mean, var, lower, upper, cfg.population, cfg.seed, 4 * i)
        res = propagate(params, obs, samples, particles=cfg.particles, mode="tsinf",
                        reward=cfg.reward, return_states=False, seed=cfg.seed, offset=4 * i + 1,
                        backend=prop_backend)
        mean, var = cem(samples, res.returns, mean, var, cfg.num_elites, cfg.alpha, 0.0)[:2]
    return mean[:, 0]


def planner_auto_act(params, obs, cfg):
    from mbrl_fast.planning import CEMPlanner

    planner = CEMPlanner(params, [-1.0] * cfg.act_dim, [1.0] * cfg.act_dim, reward=cfg.reward,
                         horizon=cfg.horizon, population=cfg.population,
                         num_elites=cfg.num_elites, iterations=cfg.iterations, alpha=cfg.alpha,
                         epsilon=0.0, particles=cfg.particles, seed=cfg.seed, backend="auto")
    return lambda: planner.plan(obs)


def mppi_act(params, obs, samples, backend: str, temperature: float = 1.0):
    _, _, mppi = update_fns(backend)
    res = propagate(params, obs, samples, particles=1, mode="expectation", reward="halfcheetah",
                    return_states=False, backend=backend)
    return mppi(samples, res.returns, temperature)[0]


# ---- measurements --------------------------------------------------------------------


def measure(name: str, fn, reps: int, warmup: int, log) -> dict:
    try:
        sec = gpu_seconds(fn, reps, warmup)
        log(f"  {name:<40s} {sec * 1e3:10.3f} ms")
        return {"seconds": sec}
    except Exception as exc:  # one failing backend must not hide the others' numbers
        log(f"  {name:<40s} FAILED: {type(exc).__name__}: {exc}")
        return {"seconds": None, "error": f"{type(exc).__name__}: {exc}"}


def run(args, log=print) -> dict:
    cfg = get_config("tiny" if args.quick else "pets-halfcheetah")
    envs = 4 if args.quick else args.envs
    mppi_p, mppi_h = (256, 10) if args.quick else (args.mppi_samples, args.mppi_horizon)
    if args.fp32_dot:
        from mbrl_fast.ops._triton import ensemble_mlp as tmlp

        tmlp.FP32_DOT = args.fp32_dot
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "python": platform.python_version(), "backends": {k: list(v) for k, v in
                                                             backends.available().items()},
           "config": cfg.to_dict(), "envs": envs, "triton_fp32_dot": args.fp32_dot or "ieee",
           "mppi": {"samples": mppi_p, "horizon": mppi_h, "mlp": [24, 64, 64, 36]},
           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    log(f"{out['device']}: matmul peak ...")
    out["peak_tflops"] = {"fp32": matmul_peak_tflops(torch.float32),
                          "bf16": matmul_peak_tflops(torch.bfloat16)}
    log(f"  fp32 {out['peak_tflops']['fp32']:.1f}  bf16 {out['peak_tflops']['bf16']:.1f} TFLOP/s")
    fp32 = cuda_params(make_params(cfg))
    models = {"fp32": fp32, "bf16": cuda_params(to_bf16(make_params(cfg)))}
    obs = start_states(cfg, envs).cuda()
    r, w = args.reps, args.warmup
    act_flop = mlp_flop_per_row(cfg.sizes) * envs * cfg.population * cfg.particles * \
        cfg.horizon * cfg.iterations

    log(f"pets_act: {envs} envs x P {cfg.population} x K {cfg.particles} x H {cfg.horizon} "
        f"x {cfg.iterations} iterations ({act_flop / 1e12:.2f} TFLOP)")
    out["pets_act"] = {}
    for dtype, params in models.items():
        for be in (*GPU_BACKENDS, "reference"):
            row = measure(f"{be} {dtype}", lambda p=params, b=be: pets_act(p, obs, cfg, b),
                          r, w, log)
            if row["seconds"]:
                row["tflops"] = act_flop / row["seconds"] / 1e12
                row["pct_of_peak"] = 100 * row["tflops"] / out["peak_tflops"][dtype]
            out["pets_act"][f"{be}_{dtype}"] = row
        out["pets_act"][f"planner_auto_{dtype}"] = measure(
            f"planner_auto {dtype}", planner_auto_act(params, obs, cfg), r, w, log)

    small = small_mlp(cfg.obs_dim, cfg.act_dim)
    mppi_samples = torch.rand(envs, mppi_p, mppi_h, cfg.act_dim, device="cuda") * 2 - 1
    mppi_flop = mlp_flop_per_row(small.sizes) * envs * mppi_p * mppi_h
    log(f"mppi_act: {envs} envs x {mppi_p} samples x H {mppi_h} ({mppi_flop / 1e12:.3f} TFLOP)")
    out["mppi_act"] = {}
    for be in (*GPU_BACKENDS, "reference"):
        row = measure(be, lambda b=be: mppi_act(small, obs, mppi_samples, b), r, w, log)
        if row["seconds"]:
            row["tflops"] = mppi_flop / row["seconds"] / 1e12
        out["mppi_act"][be] = row

    out["ops"] = op_timings(cfg, models, obs, envs, mppi_samples, out["peak_tflops"], r, w, log)
    return out


def op_timings(cfg, models, obs, envs, mppi_samples, peak, reps, warmup, log) -> dict:
    """Each op alone at the PETS sizes, per backend, with the Triton / CUDA ratio."""
    p, k, h, a = cfg.population, cfg.particles, cfg.horizon, cfg.act_dim
    g = torch.Generator(device="cuda").manual_seed(0)
    actions = torch.rand(envs, p, h, a, device="cuda", generator=g) * 2 - 1
    rows = envs * p * k
    x = torch.randn(cfg.ensemble_size, rows // cfg.ensemble_size, cfg.sizes[0], device="cuda")
    returns = torch.randn(envs, p, device="cuda", generator=g)
    mean = torch.zeros(envs, h, a, device="cuda")
    var = torch.full_like(mean, 0.25)
    mppi_returns = torch.randn(mppi_samples.shape[:2], device="cuda", generator=g)
    flop_row = mlp_flop_per_row(cfg.sizes)
    cases = {}
    for dtype, params in models.items():
        cases[f"ensemble_mlp {dtype} rows={x.shape[0] * x.shape[1]}"] = (
            flop_row * x.shape[0] * x.shape[1], dtype,
            {be: (lambda b=be, q=params: ensemble_mlp(x, q, backend=b)) for be in GPU_BACKENDS})
        cases[f"propagate {dtype} tsinf N={envs} P={p} K={k} H={h}"] = (
            flop_row * rows * h, dtype,
            {be: (lambda b=be, q=params: propagate(q, obs, actions, particles=k, mode="tsinf",
                                                   reward=cfg.reward, return_states=False,
                                                   backend=b)) for be in GPU_BACKENDS})
    fns = {be: update_fns(be) for be in GPU_BACKENDS}
    cases[f"cem_update N={envs} P={p} K={cfg.num_elites}"] = (0, None, {
        be: (lambda f=fns[be][1]: f(actions, returns, mean, var, cfg.num_elites, 0.1, 0.0))
        for be in GPU_BACKENDS})
    cases[f"mppi_update N={envs} P={mppi_samples.shape[1]} H={mppi_samples.shape[2]}"] = (0, None, {
        be: (lambda f=fns[be][2]: f(mppi_samples, mppi_returns, 1.0)) for be in GPU_BACKENDS})
    cases["noise.normal n=2^26"] = (0, None, {
        be: (lambda b=be: noise.normal((1 << 26,), 1, 2, device="cuda", backend=b))
        for be in GPU_BACKENDS})
    out = {}
    for name, (flop, dtype, by_backend) in cases.items():
        log(f"op {name}")
        row = {be: measure(be, fn, reps, warmup, log) for be, fn in by_backend.items()}
        for be in GPU_BACKENDS:
            if flop and row[be]["seconds"]:
                row[be]["tflops"] = flop / row[be]["seconds"] / 1e12
                row[be]["pct_of_peak"] = 100 * row[be]["tflops"] / peak[dtype]
        if row["cuda"]["seconds"] and row["triton"]["seconds"]:
            row["triton_over_cuda"] = row["triton"]["seconds"] / row["cuda"]["seconds"]
            log(f"  triton / cuda = {row['triton_over_cuda']:.2f}")
        out[name] = row
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--envs", type=int, default=64, help="start states planned in one call")
    ap.add_argument("--mppi-samples", type=int, default=8192)
    ap.add_argument("--mppi-horizon", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--fp32-dot", choices=["ieee", "tf32x3", "tf32"], default=None,
                    help="Triton fp32 tl.dot precision (default: the library's, ieee)")
    ap.add_argument("--out", default=None,
                    help="JSON path (default bench/results/gpu_planner_<gpu>.json)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_planner: no CUDA device; run this on a GPU machine (docs/gpu.md)")
        return 2
    result = run(args)
    gpu = result["device"].replace(" ", "_").replace("/", "_")
    path = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                    f"gpu_planner_{gpu}{'_quick' if args.quick else ''}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
