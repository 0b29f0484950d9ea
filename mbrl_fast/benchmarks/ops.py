"""Op-level benchmark: op x backend x dtype x size -> seconds, GFLOP/s, % of the matmul peak.

Every op runs on every backend available here (``reference``, the pure-torch
specification, and ``cpu``, the compiled kernels, once per kernel path in ``isas``:
``auto`` or a path forced with MBRL_FAST_CPU_KERNELS, see :mod:`isa`), on the sizes of
the PETS HalfCheetah planner (:mod:`configs`). Each row names its kernel path (``isa``).
GFLOP counts the useful matmul work:

  ensemble_mlp  x [E, B, d_0] through all E members: 2 E B sum_l d_l d_{l+1}
  propagate     P x K particles, one TS-inf member each, H steps: 2 P K H sum_l d_l d_{l+1}

noise and elite_update do no matmul: their rows report time and items/s only.
A backend that is missing or cannot run an op is listed with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mbrl_fast import backends
from mbrl_fast.benchmarks import harness, isa
from mbrl_fast.benchmarks.configs import PlannerBenchConfig, get_config, make_params, to_bf16
from mbrl_fast.benchmarks.progress import Progress

BACKENDS = ("reference", "cpu")


@dataclass(frozen=True)
class Case:
    """One measurement: ``make(backend)`` returns the zero-argument call to time."""

    op: str
    dtype: str
    size: str
    gflop: float | None  # useful matmul work per call
    items: int  # elements produced per call (samples, rows, ...)
    make: Callable[[str], Callable[[], object]]


def _mlp_flop_per_row(cfg: PlannerBenchConfig) -> int:
    s = cfg.sizes
    return 2 * sum(a * b for a, b in zip(s[:-1], s[1:], strict=True))


def cases(cfg: PlannerBenchConfig, quick: bool = False) -> list[Case]:
    """The measured cases; ``quick`` shrinks every size (for tests and smoke runs)."""
    from mbrl_fast.ops import elite_update, ensemble_mlp, noise, propagate

    fp32 = make_params(cfg)
    weights = {"fp32": fp32, "bf16": to_bf16(fp32)}
    per_row = _mlp_flop_per_row(cfg)
    e, d, a, h = cfg.ensemble_size, cfg.obs_dim, cfg.act_dim, cfg.horizon
    g = torch.Generator().manual_seed(cfg.seed)
    out: list[Case] = []

    mlp_rows = (64, 512) if quick else (100, 2_000, 10_000)
    for dtype, params in weights.items():
        for b in mlp_rows:
            x = torch.randn(e, b, cfg.sizes[0], generator=g)
            out.append(Case("ensemble_mlp", dtype, f"E={e} B={b}", e * b * per_row / 1e9, e * b,
                            lambda be, x=x, p=params: lambda: ensemble_mlp(x, p, backend=be)))

    pops = (cfg.latency_population,) if quick else (25, cfg.latency_population, cfg.population)
    obs = 0.1 * torch.randn(1, d, generator=g)
    for dtype, params in weights.items():
        for p in pops:
            act = torch.rand(1, p, h, a, generator=g) * 2 - 1
            rows = p * cfg.particles
            out.append(Case(
                "propagate", dtype, f"P={p} K={cfg.particles} H={h}", rows * h * per_row / 1e9,
                rows * h,
                lambda be, act=act, p=params: lambda: propagate(
                    p, obs, act, particles=cfg.particles, mode="tsinf", seed=1,
                    reward=cfg.reward, return_states=False, backend=be)))

    n_noise = 2**16 if quick else cfg.population * cfg.particles * h * d  # one act's eps
    for kind in ("normal", "uniform"):
        fn = getattr(noise, kind)
        out.append(Case(f"noise.{kind}", "fp32", f"n={n_noise}", None, n_noise,
                        lambda be, fn=fn: lambda: fn((n_noise,), 3, 0, backend=be)))

    p = cfg.latency_population if quick else cfg.population
    samples = torch.rand(1, p, h, a, generator=g) * 2 - 1
    returns = torch.randn(1, p, generator=g)
    mean, var = torch.zeros(1, h, a), torch.full((1, h, a), 0.25)
    k = min(cfg.num_elites, p)
    out.append(Case("cem_update", "fp32", f"P={p} H={h} A={a} K={k}", None, p * h * a,
                    lambda be: lambda: elite_update.cem_update(
                        samples, returns, mean, var, num_elites=k, alpha=cfg.alpha, backend=be)))
    out.append(Case("mppi_update", "fp32", f"P={p} H={h} A={a}", None, p * h * a,
                    lambda be: lambda: elite_update.mppi_update(
                        samples, returns, temperature=0.5, backend=be)))
    out.append(Case("truncated_normal", "fp32", f"P={p} H={h} A={a}", None, p * h * a,
                    lambda be: lambda: elite_update.truncated_normal(
                        mean, var, -1.0, 1.0, population=p, seed=5, backend=be)))
    return out


def run(cfg: PlannerBenchConfig | None = None, *, repeats: int = 3, warmup: int = 1,
        quick: bool = False, peak_n: int | None = None, isas=("auto",), log=print) -> dict:
    """Time every case on the reference and on the cpu backend per kernel path in ``isas``;
    returns the JSON-ready dict."""
    cfg = cfg or get_config("pets-halfcheetah")
    paths = tuple(dict.fromkeys(isas))
    for path in paths:
        if path not in ("auto",) + isa.PATHS:
            raise ValueError(f"kernel path must be one of {('auto',) + isa.PATHS}, got {path!r}")
    n = peak_n or (512 if quick else cfg.peak_n)
    progress = Progress(log, phase_width=40)
    progress.note(f"matmul peak: torch sgemm {n}^3 ...")
    peak = harness.matmul_peak_gflops(n)
    progress.note(f"  {peak:.1f} GFLOP/s")
    skipped = {p: why for p in paths if p != "auto" and (why := isa.unavailable(p))}
    for path, why in skipped.items():
        progress.note(f"cpu[{path}]: not timed: {why}")
    runs = [("reference", None)] + [("cpu", p) for p in paths]
    all_cases = cases(cfg, quick)
    for case in all_cases:
        for be, path in runs:
            if path not in skipped:
                progress.expect(_label(be, path), _work(case), warmup + repeats)
    rows: list[dict] = []
    for i, case in enumerate(all_cases):
        ref = None
        for be, path in runs:
            on_call = progress.on_call(f"{i + 1}/{len(all_cases)} {case.op} {case.dtype} "
                                       f"{case.size}", _work(case))
            row = _measure(case, be, path, repeats, warmup, peak, on_call, skipped.get(path))
            if be == "reference":
                ref = row
            elif ref["seconds"] and row["seconds"]:
                row["speedup_vs_reference"] = ref["seconds"] / row["seconds"]
            rows.append(row)
            if row["seconds"] is None and path not in skipped:
                progress.note(f"  {case.op} {_label(be, path)} {case.dtype} {case.size}: "
                              f"{row['note']}")
    return {"benchmark": "ops", "matmul_peak_gflops": peak, "matmul_peak_n": n,
            "rows": rows, "timing": {"repeats": repeats, "warmup": warmup,
                                     "statistic": "median", "wall_s": progress.elapsed()},
            "isas": list(paths), "machine": harness.machine_info(), "config": cfg.to_dict(),
            "quick": quick}


def _work(case: Case) -> float:
    """The progress estimate's weight of one call: its GFLOP, or for the ops without a
    matmul 20 FLOP per item produced (only the estimate of the time left uses it)."""
    return case.gflop if case.gflop is not None else 20e-9 * case.items


def _label(backend: str, path: str | None) -> str:
    return backend if path is None else f"{backend}[{path}]"


def _measure(case: Case, backend: str, path: str | None, repeats: int, warmup: int,
             peak: float, on_call, skip: str | None = None) -> dict:
    row = {"op": case.op, "backend": backend, "isa": path, "dtype": case.dtype,
           "size": case.size, "seconds": None, "gflops": None, "pct_of_peak": None,
           "items_per_s": None, "speedup_vs_reference": None, "note": None}
    try:
        ok, why = backends.status(backend)
        if not ok:
            raise backends.BackendUnavailable(why)
        if skip is not None:
            raise backends.BackendUnavailable(skip)
        with isa.forced(path):
            row["isa"] = isa.cpu_isa() if backend == "cpu" else None  # what auto resolves to
            call = case.make(backend)
            call()  # fails fast if this backend cannot run the case
            t = harness.time_fn(call, repeats=repeats, warmup=warmup, on_call=on_call,
                                name=_label(backend, path)).median
    except (backends.BackendUnavailable, ImportError, NotImplementedError, ValueError) as exc:
        row["note"] = f"unavailable: {exc}"
        return row
    row.update(seconds=t, items_per_s=case.items / t)
    if case.gflop is not None:
        row["gflops"] = case.gflop / t
        row["pct_of_peak"] = 100 * row["gflops"] / peak
    return row


def table(result: dict) -> str:
    rows = [[r["op"], r["backend"], r.get("isa"), r["dtype"], r["size"],
             None if r["seconds"] is None else r["seconds"] * 1e3, r["gflops"],
             r["pct_of_peak"], r["items_per_s"], r["speedup_vs_reference"],
             "" if r["note"] is None else r["note"][:72]]
            for r in result["rows"]]
    return harness.format_table(["op", "backend", "kernels", "dtype", "size", "ms", "GFLOP/s",
                                 "% peak", "items/s", "x ref", "note"], rows)
