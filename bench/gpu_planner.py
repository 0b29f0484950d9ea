"""GPU planner benchmark: PETS-HalfCheetah act() and MPPI, Triton vs CUDA vs plain PyTorch.

Run on a GPU machine (docs/gpu.md)::

    python bench/gpu_planner.py                    # full sizes, JSON in bench/results/
    python bench/gpu_planner.py --quick            # small sizes, a smoke run (seconds)
    python bench/gpu_planner.py --fp32-dot tf32x3  # Triton fp32 tl.dot precision to compare

What it measures (CUDA events, median of --reps after --warmup calls):

* ``pets_act``: one PETS planning step as a loop of ops: 5 CEM iterations of
  (truncated-normal sampling -> propagate [N, 500, 30, 6] x 20 TS-inf particles through
  5 members of 4 x 200 SiLU -> CEM update), per backend: ``cuda`` (all-CUDA ops),
  ``triton`` (Triton propagate + update, torch sampler), ``reference`` (the pure-torch
  ops on the GPU: the plain PyTorch baseline); fp32 and bf16.
* ``pets_agent_act``: the public act(), ``MPCAgent(CEMPlanner(backend=...)).act(obs)``
  (numpy in, numpy out, re-planning every call), per GPU backend, fp32 and bf16.
* each act row twice: ``single`` (ONE environment, obs [D]) and ``batch`` (--envs start
  states, default 64, in one call), with ``batch64_over_single`` = batch / single seconds.
* ``mbrl_lib_act``: mbrl-lib 0.2.0's CEM TrajectoryOptimizerAgent (same weights, same
  config, device "cuda"), one environment; every act row's ``speedup_vs_mbrl_lib`` =
  mbrl-lib seconds / the row's one-env seconds (null, with the reason, without mbrl-lib).
* ``targets``: the GPU issue's pass/fail booleans computed from those rows (see
  :func:`issue_targets`), with the GPU's name; ``valid`` only for the full-size run.
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
from mbrl_fast.benchmarks.harness import write_json  # noqa: E402
from mbrl_fast.ops import elite_update, noise  # noqa: E402
from mbrl_fast.ops.ensemble_mlp import MLPParams, ensemble_mlp  # noqa: E402
from mbrl_fast.ops.propagate import propagate  # noqa: E402

GPU_BACKENDS = ("cuda", "triton")
# The GPU issue's targets (one H100, fp32): one-env act() <= 15 ms, >= 30x mbrl-lib's CEM
# agent on the same GPU, 64 envs in one call <= 8x the one-env time.
ACT_MS_MAX, SPEEDUP_MIN, BATCH_RATIO_MAX = 15.0, 30.0, 8.0


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


def agent_act(params, obs, cfg, backend: str):
    """The public act(): MPCAgent(CEMPlanner(backend=...)).act on numpy obs [D] or [N, D].

    Re-plans every call (mbrl-lib's replan_freq=1) and copies the action back to host
    numpy, as mbrl-lib's agent.act does. backend="triton" forces Triton for propagate;
    the elite ops then dispatch "auto" (CEMPlanner.op_backend).
    """
    from mbrl_fast.planning import CEMPlanner, MPCAgent

    planner = CEMPlanner(params, [-1.0] * cfg.act_dim, [1.0] * cfg.act_dim, reward=cfg.reward,
                         horizon=cfg.horizon, population=cfg.population,
                         num_elites=cfg.num_elites, iterations=cfg.iterations, alpha=cfg.alpha,
                         epsilon=0.0, particles=cfg.particles, seed=cfg.seed, backend=backend)
    agent = MPCAgent(planner, replan_every=1)
    obs_np = obs.cpu().numpy()
    obs_np = obs_np[0] if obs.shape[0] == 1 else obs_np  # one env: [D] -> [A]
    return lambda: agent.act(obs_np)


def mbrl_lib_act(cfg, params, obs, reps, warmup, log) -> dict:
    """mbrl-lib 0.2.0's CEM TrajectoryOptimizerAgent on the GPU, one env (obs [1, D])."""
    from mbrl_fast.benchmarks import mbrl_lib_baseline

    reason = mbrl_lib_baseline.unavailable_reason()
    if reason is not None:
        log(f"  mbrl-lib: not measured ({reason})")
        return {"seconds": None, "reason": f"mbrl-lib not importable: {reason}"}
    try:
        agent = mbrl_lib_baseline.make_agent(cfg, params, device="cuda")
    except Exception as exc:
        log(f"  mbrl-lib: agent not built: {type(exc).__name__}: {exc}")
        return {"seconds": None, "reason": f"agent not built: {type(exc).__name__}: {exc}"}
    obs_np = obs[0].cpu().numpy()  # [D]
    return measure("mbrl-lib agent.act fp32 envs=1", lambda: agent.act(obs_np), reps, warmup,
                   log)


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


def ratio(num, den) -> float | None:
    return num / den if num and den else None


def act_row(name: str, make_fn, obs1, obs_n, flop_per_env: float, peak: float, reps: int,
            warmup: int, log) -> dict:
    """act() for ONE env (obs1 [1, D]) and for N envs in one call (obs_n [N, D]).

    make_fn(obs) -> a no-argument callable doing one act(); returns {"single": ...,
    "batch": ..., "batch64_over_single": batch seconds / single seconds}.
    """
    row = {}
    for key, obs in (("single", obs1), ("batch", obs_n)):
        n = obs.shape[0]
        try:
            fn = make_fn(obs)
        except Exception as exc:
            log(f"  {name} envs={n}: not built: {type(exc).__name__}: {exc}")
            row[key] = {"envs": n, "seconds": None, "error": f"{type(exc).__name__}: {exc}"}
            continue
        m = {"envs": n, **measure(f"{name} envs={n}", fn, reps, warmup, log)}
        if m["seconds"]:
            m["ms"] = m["seconds"] * 1e3
            m["tflops"] = flop_per_env * n / m["seconds"] / 1e12
            m["pct_of_peak"] = 100 * m["tflops"] / peak
        row[key] = m
    row["batch64_over_single"] = ratio(row["batch"]["seconds"], row["single"]["seconds"])
    return row


def issue_targets(agent_rows: dict, valid: bool, envs: int = 64) -> dict:
    """The GPU issue's targets, computed from the public act() rows (fp32, per backend).

    The top-level booleans are those of the GPU backend with the fastest one-env act();
    None where a number they need was not measured (e.g. mbrl-lib not importable), and
    ``batch64_le_8x`` None unless the batch row planned 64 environments.
    """
    by_backend = {}
    for be in GPU_BACKENDS:
        row = agent_rows[f"{be}_fp32"]
        sec, speedup, batch = (row["single"]["seconds"], row.get("speedup_vs_mbrl_lib"),
                               row["batch64_over_single"] if envs == 64 else None)
        by_backend[be] = {
            "act_ms_fp32": sec * 1e3 if sec else None,
            "act_ms_fp32_le_15": None if not sec else sec * 1e3 <= ACT_MS_MAX,
            "speedup_vs_mbrl_lib_ge_30": None if speedup is None else speedup >= SPEEDUP_MIN,
            "batch64_le_8x": None if batch is None else batch <= BATCH_RATIO_MAX,
        }
    timed = [be for be in GPU_BACKENDS if by_backend[be]["act_ms_fp32"] is not None]
    best = min(timed, key=lambda be: by_backend[be]["act_ms_fp32"]) if timed else None
    keys = ("act_ms_fp32_le_15", "speedup_vs_mbrl_lib_ge_30", "batch64_le_8x")
    return {"gpu": torch.cuda.get_device_name(),
            **{k: by_backend[best][k] if best else None for k in keys},
            "backend": best, "valid": valid, "by_backend": by_backend,
            "thresholds": {"act_ms_fp32": ACT_MS_MAX, "speedup_vs_mbrl_lib": SPEEDUP_MIN,
                           "batch64_over_single": BATCH_RATIO_MAX}}


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
    cpu_params = make_params(cfg)
    models = {"fp32": cuda_params(cpu_params), "bf16": cuda_params(to_bf16(make_params(cfg)))}
    obs = start_states(cfg, envs).cuda()  # [N, D]
    obs1 = obs[:1]  # [1, D]: the one-environment act()
    r, w = args.reps, args.warmup
    env_flop = mlp_flop_per_row(cfg.sizes) * cfg.population * cfg.particles * cfg.horizon * \
        cfg.iterations

    log(f"act: 1 and {envs} envs x P {cfg.population} x K {cfg.particles} x H {cfg.horizon} "
        f"x {cfg.iterations} iterations ({env_flop / 1e12:.3f} TFLOP per env)")
    out["pets_act"], out["pets_agent_act"] = {}, {}
    for dtype, params in models.items():
        peak = out["peak_tflops"][dtype]
        for be in (*GPU_BACKENDS, "reference"):
            out["pets_act"][f"{be}_{dtype}"] = act_row(
                f"op loop {be} {dtype}", lambda o, p=params, b=be: (lambda: pets_act(p, o, cfg, b)),
                obs1, obs, env_flop, peak, r, w, log)
        for be in GPU_BACKENDS:
            out["pets_agent_act"][f"{be}_{dtype}"] = act_row(
                f"MPCAgent.act {be} {dtype}", lambda o, p=params, b=be: agent_act(p, o, cfg, b),
                obs1, obs, env_flop, peak, r, w, log)
    out["mbrl_lib_act"] = mbrl_lib_act(cfg, cpu_params, obs1, r, w, log)
    for rows in (out["pets_act"], out["pets_agent_act"]):
        for row in rows.values():
            row["speedup_vs_mbrl_lib"] = ratio(out["mbrl_lib_act"]["seconds"],
                                               row["single"]["seconds"])
    full = not args.quick and envs == 64 and cfg.name == "pets-halfcheetah"
    out["targets"] = issue_targets(out["pets_agent_act"], full, envs)
    log("targets: " + json.dumps({k: v for k, v in out["targets"].items() if k != "by_backend"}))

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
    ap.add_argument("--envs", type=int, default=64,
                    help="start states planned in one batched call (also one env is timed)")
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
        print(f"gpu_planner: no CUDA device (torch {torch.__version__}, built with CUDA "
              f"{torch.version.cuda}, {torch.cuda.device_count()} devices visible); "
              "run this on a GPU machine with a CUDA build of torch (docs/gpu.md)",
              file=sys.stderr)
        return 2
    result = run(args)
    gpu = result["device"].replace(" ", "_").replace("/", "_")
    path = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                    f"gpu_planner_{gpu}{'_quick' if args.quick else ''}.json")
    write_json(path, result, indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
