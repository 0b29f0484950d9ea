"""The side-by-side planner benchmark: one PETS planning step, four implementations, one run.

Implementations (all plan with the same random ensemble, :mod:`configs`):
  mbrl_fast_fp32  mbrl_fast.planning.CEMPlanner on the fp32 weights (backend auto)
  mbrl_fast_bf16  the same planner on bf16-packed weights (ops.pack_bf16)
  torch_eager     :mod:`torch_eager`, the same algorithm in plain eager PyTorch
  mbrl_lib        mbrl-lib 0.2.0's TrajectoryOptimizerAgent + CEMOptimizer (null if absent)

Measured in the same run: seconds per act (median of ``repeats`` after ``warmup``), the
matmul peak (torch sgemm), achieved GFLOP/s of the useful matmul work
(:func:`configs.matmul_gflop_per_act`) and its share of the peak, the decision quality
of bf16 (its plan scored by the fp32 model on the fp32 plan's noise), latency at
population 100, and batched planning of several start states in one call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mbrl_fast.benchmarks import harness, mbrl_lib_baseline
from mbrl_fast.benchmarks.configs import (
    PlannerBenchConfig,
    make_params,
    matmul_gflop_per_act,
    start_states,
    to_bf16,
)
from mbrl_fast.benchmarks.torch_eager import EagerCEMPlanner
from mbrl_fast.ops.ensemble_mlp import MLPParams
from mbrl_fast.ops.propagate import propagate
from mbrl_fast.ops.rewards import resolve

IMPLEMENTATIONS = ("mbrl_fast_fp32", "mbrl_fast_bf16", "torch_eager", "mbrl_lib")
QUALITY_TOLERANCE = 0.02  # bf16's plan must score within 2% of fp32's
QUALITY_SEED_OFFSET = 7919  # scoring noise: a seed no planner uses


def _planner_kwargs(cfg: PlannerBenchConfig, population: int) -> dict:
    return dict(horizon=cfg.horizon, population=population, num_elites=cfg.num_elites,
                iterations=cfg.iterations, alpha=cfg.alpha, particles=cfg.particles)


def make_mbrl_fast_planner(cfg: PlannerBenchConfig, params: MLPParams, population: int):
    """mbrl_fast.planning.CEMPlanner with TS-inf and the fused built-in reward (PETS's mean
    plan, warm start, no early stop)."""
    from mbrl_fast.planning import CEMPlanner

    a = cfg.act_dim
    # epsilon=0: no early stop, so every implementation runs all iterations (same work).
    return CEMPlanner(params, -torch.ones(a), torch.ones(a), propagation="tsinf",
                      reward=cfg.reward, seed=cfg.seed, epsilon=0.0, backend="auto",
                      **_planner_kwargs(cfg, population))


def make_eager_planner(cfg: PlannerBenchConfig, params: MLPParams, population: int,
                       noise=None) -> EagerCEMPlanner:
    a = cfg.act_dim
    return EagerCEMPlanner(params, -torch.ones(a), torch.ones(a),
                           reward=resolve(cfg.reward).torch_fn, seed=cfg.seed, noise=noise,
                           **_planner_kwargs(cfg, population))


def unavailable(name: str) -> str | None:
    """Why implementation ``name`` cannot run here (None: it can)."""
    if name.startswith("mbrl_fast"):
        try:
            import mbrl_fast.planning as planning
        except ImportError as exc:
            return f"mbrl_fast.planning does not import: {exc}"
        return None if hasattr(planning, "CEMPlanner") else "mbrl_fast.planning has no CEMPlanner"
    if name == "mbrl_lib":
        return mbrl_lib_baseline.unavailable_reason()
    return None


def make_act(name: str, cfg: PlannerBenchConfig, params: MLPParams,
             population: int) -> Callable[[torch.Tensor], object]:
    """A function obs [D] or [N, D] -> plan/action for implementation ``name``."""
    if name == "mbrl_fast_fp32":
        return make_mbrl_fast_planner(cfg, params, population).plan
    if name == "mbrl_fast_bf16":
        return make_mbrl_fast_planner(cfg, to_bf16(params), population).plan
    if name == "torch_eager":
        return make_eager_planner(cfg, params, population).plan
    if name == "mbrl_lib":
        agent = mbrl_lib_baseline.make_agent(cfg, params, population=population)
        return lambda obs: agent.act(obs.numpy())
    raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {name!r}")


def _time_impls(names, cfg, params, population, obs, repeats, warmup,
                log) -> dict[str, harness.Timing]:
    """Seconds per act of each implementation (repeats interleaved round-robin)."""
    acts = {name: make_act(name, cfg, params, population) for name in names}
    timings = harness.time_round_robin({n: (lambda act=act: act(obs)) for n, act in acts.items()},
                                       repeats=repeats, warmup=warmup)
    for name, t in timings.items():
        log(f"  {name:<16} population {population:>4}: {t.median * 1e3:10.2f} ms/act "
            f"(min {t.min * 1e3:.2f})")
    return timings


def _medians(timings: dict) -> dict:
    return {n: (timings[n].median if n in timings else None) for n in IMPLEMENTATIONS}


def _mins(timings: dict) -> dict:
    return {n: (timings[n].min if n in timings else None) for n in IMPLEMENTATIONS}


def decision_quality(cfg: PlannerBenchConfig, params: MLPParams, names) -> dict:
    """mbrl-fast's fp32 and bf16 plans, scored by the fp32 model on one shared noise stream.

    Both planners start from the same seed (the same CEM samples and rollout noise) and
    plan ``cfg.quality_starts`` start states in one batched call each. Every plan
    [H, A] is scored by ``propagate`` with the fp32 weights: the mean return of
    ``cfg.quality_particles`` TS-inf particles on the same (seed, offset) for every plan,
    on the reference backend (the specification). R = the mean over the start states;
    the gap is (R_fp32 - R_bf16) / |R_fp32| (bf16 scoring better is a negative gap).
    The zero-action plan's score is reported for scale (with the benchmark's random,
    untrained weights planning gains little over it: this checks that bf16 does not
    change the decisions, not that the planner is competent).
    """
    seed = cfg.seed + QUALITY_SEED_OFFSET
    obs = start_states(cfg, cfg.quality_starts)  # [S, D]
    shape = (cfg.quality_starts, 1, cfg.horizon, cfg.act_dim)

    def score(plans: torch.Tensor) -> float:  # plans [S, H, A] -> mean return
        res = propagate(params, obs, plans.reshape(shape), particles=cfg.quality_particles,
                        mode="tsinf", seed=seed, offset=0, reward=cfg.reward,
                        return_states=False, backend="reference")
        return float(res.returns.mean())

    returns = {"zero_plan": score(torch.zeros(shape))}
    for name in ("mbrl_fast_fp32", "mbrl_fast_bf16"):
        if name in names:
            returns[name] = score(make_act(name, cfg, params, cfg.population)(obs))
    out = {"returns": returns, "start_states": cfg.quality_starts, "scoring_seed": seed,
           "scoring_offset": 0, "scoring_particles": cfg.quality_particles,
           "tolerance": QUALITY_TOLERANCE}
    if "mbrl_fast_fp32" in returns and "mbrl_fast_bf16" in returns:
        r32, r16 = returns["mbrl_fast_fp32"], returns["mbrl_fast_bf16"]
        gap = (r32 - r16) / max(abs(r32), 1e-12)
        out.update(bf16_relative_gap=gap, bf16_within_tolerance=bool(gap <= QUALITY_TOLERANCE))
    return out


def batched_planning(cfg, params, names, latency: dict, repeats, warmup, log) -> dict:
    """Per-start-state seconds: one call planning ``batch_starts`` states vs one call each.

    The one-call-each time is the latency measurement (same population, one start
    state per call; the time does not depend on the state). mbrl-lib plans one start
    state per call, so it has no batched time.
    """
    n, pop = cfg.batch_starts, cfg.latency_population
    obs = start_states(cfg, n)  # [n, D]
    batchable = [name for name in names if name != "mbrl_lib"]
    acts = {name: make_act(name, cfg, params, pop) for name in batchable}
    timings = harness.time_round_robin({k: (lambda act=act: act(obs)) for k, act in acts.items()},
                                       repeats=repeats, warmup=warmup)
    out = {"starts": n, "population": pop}
    for name in names:
        single = latency[name].median
        batched = timings[name].median / n if name in timings else None
        out[name] = {"batched_s_per_state": batched, "single_s_per_state": single,
                     "batching_speedup": single / batched if batched else None,
                     "batched_min_s_per_state": timings[name].min / n if batched else None,
                     "single_min_s_per_state": latency[name].min}
        log(f"  {name:<16} {n} starts: batched "
            + (f"{batched * 1e3:.2f}" if batched else "-") + f" ms/state, single calls "
            f"{single * 1e3:.2f} ms/state")
    return out


def run(cfg: PlannerBenchConfig, *, repeats: int = 5, warmup: int = 1, implementations=None,
        log: Callable[[str], None] = print) -> dict:
    """Every measurement of the planner benchmark, as the JSON-ready dict."""
    wanted = tuple(implementations or IMPLEMENTATIONS)
    for name in wanted:
        if name not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {name!r}")
    skipped = {name: "not requested" for name in IMPLEMENTATIONS if name not in wanted}
    skipped.update({name: why for name in wanted if (why := unavailable(name)) is not None})
    names = [name for name in IMPLEMENTATIONS if name not in skipped]
    for name in wanted:
        if name in skipped:
            log(f"  {name}: not measured ({skipped[name]})")

    log(f"matmul peak: torch sgemm {cfg.peak_n}^3 ...")
    peak = harness.matmul_peak_gflops(cfg.peak_n)
    peak_bf16 = harness.matmul_peak_gflops(cfg.peak_n, dtype=torch.bfloat16)
    log(f"  fp32 {peak:.1f} GFLOP/s, bf16 {peak_bf16:.1f} GFLOP/s")

    params = make_params(cfg)
    obs = start_states(cfg)[0]  # [D]
    gflop = matmul_gflop_per_act(cfg)
    log(f"planning step ({cfg.name}): population {cfg.population}, {gflop:.1f} GFLOP/act")
    headline = _time_impls(names, cfg, params, cfg.population, obs, repeats, warmup, log)
    seconds_all, seconds_min = _medians(headline), _mins(headline)

    def ratio(base: str, seconds: dict) -> dict:
        b = seconds[base]
        return {n: (b / t if b is not None and t is not None else None)
                for n, t in seconds.items()}

    log(f"latency: population {cfg.latency_population}")
    latency = _time_impls(names, cfg, params, cfg.latency_population, obs, repeats, warmup, log)
    log(f"batched planning: {cfg.batch_starts} start states")
    batched = batched_planning(cfg, params, names, latency, repeats, warmup, log)
    log("decision quality (plans scored by the fp32 model on one noise stream)")
    quality = decision_quality(cfg, params, names)

    gflops = {n: (gflop / t if t else None) for n, t in seconds_all.items()}
    return {
        "benchmark": "planner",
        "seconds_per_act": seconds_all,
        "speedup_vs_mbrl_lib": ratio("mbrl_lib", seconds_all),
        "speedup_vs_torch_eager": ratio("torch_eager", seconds_all),
        # On a shared machine the fastest repeat is the least disturbed one.
        "seconds_per_act_min": seconds_min,
        "speedup_vs_mbrl_lib_min": ratio("mbrl_lib", seconds_min),
        "speedup_vs_torch_eager_min": ratio("torch_eager", seconds_min),
        "times_s": {n: list(t.times) for n, t in headline.items()},
        "matmul_peak_gflops": peak,
        "matmul_peak_gflops_bf16": peak_bf16,
        "matmul_gflop_per_act": gflop,
        "gflops": gflops,
        "pct_of_peak": {n: (100 * g / peak if g is not None else None) for n, g in gflops.items()},
        "gflops_at_min": {n: (gflop / t if t else None) for n, t in seconds_min.items()},
        "decision_quality": quality,
        "latency_pop100": {"population": cfg.latency_population,
                           "seconds_per_act": _medians(latency),
                           "seconds_per_act_min": _mins(latency)},
        "batched16": batched,
        "not_measured": skipped,
        "timing": {"repeats": repeats, "warmup": warmup, "statistic": "median"},
        "machine": harness.machine_info(),
        "config": cfg.to_dict(),
    }


def summary_table(result: dict) -> str:
    """The headline numbers as a plain-text table."""
    rows = []
    for name, t in result["seconds_per_act"].items():
        rows.append([name, t, result["seconds_per_act_min"][name],
                     result["latency_pop100"]["seconds_per_act"][name],
                     result["gflops"][name], result["pct_of_peak"][name],
                     result["speedup_vs_mbrl_lib"][name], result["speedup_vs_mbrl_lib_min"][name],
                     result["speedup_vs_torch_eager"][name]])
    pop = result["config"]["population"]
    lat = result["latency_pop100"]["population"]
    return harness.format_table(
        ["implementation", f"s/act pop{pop}", "(min)", f"s/act pop{lat}", "GFLOP/s", "% peak",
         "x mbrl-lib", "(min)", "x eager"], rows)
