"""The side-by-side planner benchmark: one PETS planning step, every implementation, one run.

Rows (all plan with the same random ensemble, :mod:`configs`):
  mbrl_fast_fp32         mbrl_fast.planning.CEMPlanner on the fp32 weights (backend auto: the
                         compiled kernels on the path ``isa.cpu_isa()`` names)
  mbrl_fast_fp32_<path>  the same with MBRL_FAST_CPU_KERNELS=<path> (avx512, avx2, portable;
                         one row per path in ``isas``; skipped, with the reason, where the
                         build or the CPU cannot run that path)
  mbrl_fast_bf16         the same planner on bf16-packed weights (ops.pack_bf16)
  mbrl_fast_reference    the same planner with backend="reference" (pure torch: the fallback
                         where nothing compiled runs)
  torch_eager            :mod:`torch_eager`, the same algorithm in plain eager PyTorch
  mbrl_lib               mbrl-lib 0.2.0's TrajectoryOptimizerAgent + CEMOptimizer (null if absent)

Measured in the same run: seconds per act (median of ``repeats`` after ``warmup``, repeats
interleaved over the rows), the matmul peak (torch sgemm), achieved GFLOP/s of the useful
matmul work (:func:`configs.matmul_gflop_per_act`) and its share of the peak, the
decision quality of bf16 (its plan scored by the fp32 model on the fp32 plan's noise),
latency at population ``latency_population`` (100), and batched planning of several start
states in one call. Every call is reported as it runs, with an estimate of the time left
(:mod:`progress`).

``quick=True`` (the CLI's ``--quick``, for a first look in about a minute): the latency
population only (100; its latency is then the headline measurement), at most 2 repeats
after 1 warm-up, no batched planning, decision quality on 2 start states and a 2048^3
sgemm peak. The result's ``quick`` field lists what was reduced from what.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import torch

from mbrl_fast.benchmarks import harness, isa, mbrl_lib_baseline
from mbrl_fast.benchmarks.configs import (
    PlannerBenchConfig,
    make_params,
    matmul_gflop_per_act,
    start_states,
    to_bf16,
)
from mbrl_fast.benchmarks.progress import Progress
from mbrl_fast.benchmarks.torch_eager import EagerCEMPlanner
from mbrl_fast.ops.ensemble_mlp import MLPParams
from mbrl_fast.ops.propagate import propagate
from mbrl_fast.ops.rewards import resolve

IMPLEMENTATIONS = ("mbrl_fast_fp32", "mbrl_fast_bf16", "mbrl_fast_reference", "torch_eager",
                   "mbrl_lib")
FORCED = "mbrl_fast_fp32_"  # + a kernel path: the fp32 planner on that path
QUALITY_TOLERANCE = 0.02  # bf16's plan must score within 2% of fp32's
QUALITY_SEED_OFFSET = 7919  # scoring noise: a seed no planner uses
# --quick: its reductions, and when its last timed round must end (seconds into the run;
# the decision-quality plans and the JSON follow, a few seconds at population 100).
QUICK = {"repeats": 2, "warmup": 1, "quality_starts": 2, "peak_n": 2048, "deadline_s": 100.0}


def row_names(implementations=None, isas=()) -> list[str]:
    """The rows of a run, in table order: forced kernel paths follow mbrl_fast_fp32."""
    wanted = tuple(implementations or IMPLEMENTATIONS)
    for name in wanted:
        if name not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {name!r}")
    for path in isas:
        if path not in ("auto",) + isa.PATHS:
            raise ValueError(f"kernel path must be one of {('auto',) + isa.PATHS}, got {path!r}")
    rows = []
    for name in IMPLEMENTATIONS:
        if name in wanted:
            rows.append(name)
        if name == "mbrl_fast_fp32":
            rows += [FORCED + p for p in dict.fromkeys(isas) if p != "auto"]
    return rows


def _forced_path(name: str) -> str | None:
    return name[len(FORCED):] if name.startswith(FORCED) else None


def _planner_kwargs(cfg: PlannerBenchConfig, population: int) -> dict:
    return dict(horizon=cfg.horizon, population=population, num_elites=cfg.num_elites,
                iterations=cfg.iterations, alpha=cfg.alpha, particles=cfg.particles)


def make_mbrl_fast_planner(cfg: PlannerBenchConfig, params: MLPParams, population: int,
                           backend: str = "auto"):
    """mbrl_fast.planning.CEMPlanner with TS-inf and the fused built-in reward (PETS's mean
    plan, warm start, no early stop)."""
    from mbrl_fast.planning import CEMPlanner

    a = cfg.act_dim
    # epsilon=0: no early stop, so every implementation runs all iterations (same work).
    return CEMPlanner(params, -torch.ones(a), torch.ones(a), propagation="tsinf",
                      reward=cfg.reward, seed=cfg.seed, epsilon=0.0, backend=backend,
                      **_planner_kwargs(cfg, population))


def make_eager_planner(cfg: PlannerBenchConfig, params: MLPParams, population: int,
                       noise=None) -> EagerCEMPlanner:
    a = cfg.act_dim
    return EagerCEMPlanner(params, -torch.ones(a), torch.ones(a),
                           reward=resolve(cfg.reward).torch_fn, seed=cfg.seed, noise=noise,
                           **_planner_kwargs(cfg, population))


def unavailable(name: str) -> str | None:
    """Why row ``name`` cannot run here (None: it can)."""
    if name.startswith("mbrl_fast"):
        try:
            import mbrl_fast.planning as planning
        except ImportError as exc:
            return f"mbrl_fast.planning does not import: {exc}"
        if not hasattr(planning, "CEMPlanner"):
            return "mbrl_fast.planning has no CEMPlanner"
        path = _forced_path(name)
        return None if path is None else isa.unavailable(path)
    if name == "mbrl_lib":
        return mbrl_lib_baseline.unavailable_reason()
    return None


def row_info(name: str) -> dict:
    """What a row runs: backend, weights, and the kernel path (``isa``) that does the work."""
    torch_path = f"torch ({torch.backends.cpu.get_cpu_capability()})"
    if name in ("torch_eager", "mbrl_lib"):
        return {"backend": "torch", "precision": "fp32", "isa": torch_path}
    if name == "mbrl_fast_reference":
        return {"backend": "reference", "precision": "fp32", "isa": torch_path}
    path = _forced_path(name)
    if path is not None:
        return {"backend": "cpu", "precision": "fp32", "isa": path, isa.ENV_VAR: path}
    try:
        info = {"backend": "auto", "precision": name[len("mbrl_fast_"):], "isa": isa.cpu_isa()}
        if name == "mbrl_fast_bf16":
            info["bf16_native"] = isa.bf16_native()
    except Exception as exc:  # a bad MBRL_FAST_CPU_KERNELS in the environment
        info = {"backend": "auto", "isa": f"error: {exc}"}
    return info


def make_act(name: str, cfg: PlannerBenchConfig, params: MLPParams,
             population: int) -> Callable[[torch.Tensor], object]:
    """A function obs [D] or [N, D] -> plan/action for row ``name``."""
    path = _forced_path(name)
    if path is not None:
        plan = make_mbrl_fast_planner(cfg, params, population, backend="cpu").plan

        def act(obs):
            with isa.forced(path):
                return plan(obs)

        return act
    if name == "mbrl_fast_fp32":
        return make_mbrl_fast_planner(cfg, params, population).plan
    if name == "mbrl_fast_bf16":
        return make_mbrl_fast_planner(cfg, to_bf16(params), population).plan
    if name == "mbrl_fast_reference":
        return make_mbrl_fast_planner(cfg, params, population, backend="reference").plan
    if name == "torch_eager":
        return make_eager_planner(cfg, params, population).plan
    if name == "mbrl_lib":
        agent = mbrl_lib_baseline.make_agent(cfg, params, population=population)
        return lambda obs: agent.act(obs.numpy())
    raise ValueError(f"implementation must be one of {IMPLEMENTATIONS} or {FORCED}<path>, "
                     f"got {name!r}")


def _time_rows(names, cfg, params, population, obs, repeats, warmup, progress: Progress,
               phase: str, deadline_s: float | None = None) -> dict[str, harness.Timing]:
    """Seconds per act of each row (repeats interleaved round-robin), reported as they run.

    With ``deadline_s`` (quick runs) the repeats run one round at a time, and a round
    starts only when the progress estimate says it ends before ``deadline_s`` seconds
    into the run: at least one round, at most ``repeats``.
    """
    acts = {name: make_act(name, cfg, params, population) for name in names}
    fns = {n: (lambda act=act: act(obs)) for n, act in acts.items()}
    gflop = matmul_gflop_per_act(cfg, population, starts=obs.shape[0] if obs.dim() == 2 else 1)
    on_call = progress.on_call(phase, gflop)
    if deadline_s is None:
        return harness.time_round_robin(fns, repeats=repeats, warmup=warmup, on_call=on_call)
    timings = harness.time_round_robin(fns, repeats=1, warmup=warmup, on_call=on_call)
    for done in range(1, repeats):
        round_s = sum(progress.estimate(n, gflop) for n in names)
        if progress.elapsed() + round_s > deadline_s:
            progress.note(f"  {phase}: {done} of {repeats} repeats (the next round, "
                          f"~{round_s:.0f} s, would end after the quick run's "
                          f"{deadline_s:.0f} s)")
            for n in names:
                progress.drop(n, gflop, repeats - done)
            break
        more = harness.time_round_robin(fns, repeats=1, warmup=0, on_call=on_call)
        timings = {n: harness.Timing(timings[n].times + more[n].times) for n in names}
    return timings


def _per_row(timings: dict, rows, stat: str) -> dict:
    return {n: (getattr(timings[n], stat) if n in timings else None) for n in rows}


def decision_quality(cfg: PlannerBenchConfig, params: MLPParams, names,
                     progress: Progress | None = None) -> dict:
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
    gflop = matmul_gflop_per_act(cfg, starts=cfg.quality_starts)

    def score(plans: torch.Tensor) -> float:  # plans [S, H, A] -> mean return
        res = propagate(params, obs, plans.reshape(shape), particles=cfg.quality_particles,
                        mode="tsinf", seed=seed, offset=0, reward=cfg.reward,
                        return_states=False, backend="reference")
        return float(res.returns.mean())

    returns = {"zero_plan": score(torch.zeros(shape))}
    for name in ("mbrl_fast_fp32", "mbrl_fast_bf16"):
        if name in names:
            act = make_act(name, cfg, params, cfg.population)
            if progress is not None:
                progress.call("quality", name, "plan 1/1", gflop, None)
            start = time.perf_counter()
            plans = act(obs)  # [S, H, A]
            if progress is not None:
                progress.call("quality", name, "plan 1/1", gflop, time.perf_counter() - start)
            returns[name] = score(plans)
    out = {"returns": returns, "start_states": cfg.quality_starts, "scoring_seed": seed,
           "scoring_offset": 0, "scoring_particles": cfg.quality_particles,
           "tolerance": QUALITY_TOLERANCE}
    if "mbrl_fast_fp32" in returns and "mbrl_fast_bf16" in returns:
        r32, r16 = returns["mbrl_fast_fp32"], returns["mbrl_fast_bf16"]
        gap = (r32 - r16) / max(abs(r32), 1e-12)
        out.update(bf16_relative_gap=gap, bf16_within_tolerance=bool(gap <= QUALITY_TOLERANCE))
    return out


def batched_planning(cfg, params, names, latency: dict, repeats, warmup,
                     progress: Progress) -> dict:
    """Per-start-state seconds: one call planning ``batch_starts`` states vs one call each.

    The one-call-each time is the latency measurement (same population, one start
    state per call; the time does not depend on the state). mbrl-lib plans one start
    state per call, so it has no batched time.
    """
    n, pop = cfg.batch_starts, cfg.latency_population
    obs = start_states(cfg, n)  # [n, D]
    batchable = [name for name in names if name != "mbrl_lib"]
    timings = _time_rows(batchable, cfg, params, pop, obs, repeats, warmup, progress,
                         f"{n} starts")
    out = {"starts": n, "population": pop}
    for name in names:
        single = latency[name].median
        batched = timings[name].median / n if name in timings else None
        out[name] = {"batched_s_per_state": batched, "single_s_per_state": single,
                     "batching_speedup": single / batched if batched else None,
                     "batched_min_s_per_state": timings[name].min / n if batched else None,
                     "single_min_s_per_state": latency[name].min}
    return out


def _quick(cfg: PlannerBenchConfig, repeats: int, warmup: int):
    """--quick's reductions -> (cfg, repeats, warmup, {what: [from, to] or a note})."""
    want = dict(population=cfg.latency_population, quality_starts=QUICK["quality_starts"],
                peak_n=QUICK["peak_n"])
    reduced = {k: [getattr(cfg, k), v] for k, v in want.items() if getattr(cfg, k) > v}
    cfg = replace(cfg, **{k: v for k, (_, v) in reduced.items()})
    for key, value in (("repeats", repeats), ("warmup", warmup)):
        if value > QUICK[key]:
            reduced[key] = [value, QUICK[key]]
    reduced["batched_planning"] = "not measured"
    return cfg, min(repeats, QUICK["repeats"]), min(warmup, QUICK["warmup"]), reduced


def run(cfg: PlannerBenchConfig, *, repeats: int = 5, warmup: int = 1, implementations=None,
        isas=(), quick: bool = False, log: Callable[[str], None] = print) -> dict:
    """Every measurement of the planner benchmark, as the JSON-ready dict."""
    rows, wanted = row_names(None, isas), row_names(implementations, isas)
    reduced = {}
    if quick:
        cfg, repeats, warmup, reduced = _quick(cfg, repeats, warmup)
    skipped = {name: "not requested" for name in rows if name not in wanted}
    skipped.update({name: why for name in wanted if (why := unavailable(name)) is not None})
    names = [name for name in rows if name not in skipped]
    separate_latency = cfg.latency_population != cfg.population
    progress = Progress(log)
    load_at_start = harness.load()
    log(f"planner benchmark ({cfg.name}{', QUICK' if quick else ''}): population "
        f"{cfg.population}" + (f" and {cfg.latency_population}" if separate_latency else "")
        + f", {warmup} warm-up + {repeats} timed calls per row, rows interleaved")
    for name in names:
        log(f"  {name:<26} {row_info(name)}")
    for name, why in skipped.items():
        if why != "not requested":
            log(f"  {name:<26} not measured: {why}")

    calls = warmup + repeats
    for name in names:
        progress.expect(name, matmul_gflop_per_act(cfg), calls)
        if separate_latency:
            progress.expect(name, matmul_gflop_per_act(cfg, cfg.latency_population), calls)
        if not quick and name != "mbrl_lib":
            progress.expect(name, matmul_gflop_per_act(cfg, cfg.latency_population,
                                                       cfg.batch_starts), calls)
        if name in ("mbrl_fast_fp32", "mbrl_fast_bf16"):
            progress.expect(name, matmul_gflop_per_act(cfg, starts=cfg.quality_starts))

    progress.note(f"matmul peak: torch sgemm {cfg.peak_n}^3, fp32 and bf16 ...")
    peak = harness.matmul_peak_gflops(cfg.peak_n)
    peak_bf16 = harness.matmul_peak_gflops(cfg.peak_n, dtype=torch.bfloat16)
    progress.note(f"  fp32 {peak:.1f} GFLOP/s, bf16 {peak_bf16:.1f} GFLOP/s")

    params = make_params(cfg)
    obs = start_states(cfg)[0]  # [D]
    gflop = matmul_gflop_per_act(cfg)
    progress.note(f"planning step: population {cfg.population}, {gflop:.1f} GFLOP/act")
    headline = _time_rows(names, cfg, params, cfg.population, obs, repeats, warmup, progress,
                          f"pop {cfg.population}", QUICK["deadline_s"] if quick else None)
    timed = min((len(t.times) for t in headline.values()), default=repeats)
    if timed < repeats:
        reduced["repeats"] = [reduced.get("repeats", [repeats])[0], timed]
    seconds_all = _per_row(headline, rows, "median")
    seconds_min = _per_row(headline, rows, "min")

    def ratio(base: str, seconds: dict) -> dict:
        b = seconds.get(base)
        return {n: (b / t if b is not None and t is not None else None)
                for n, t in seconds.items()}

    if separate_latency:
        progress.note(f"latency: population {cfg.latency_population}")
        latency = _time_rows(names, cfg, params, cfg.latency_population, obs, repeats, warmup,
                             progress, f"pop {cfg.latency_population}")
    else:
        latency = headline
    batched = None
    if not quick:
        progress.note(f"batched planning: {cfg.batch_starts} start states in one call")
        batched = batched_planning(cfg, params, names, latency, repeats, warmup, progress)
    progress.note("decision quality (plans scored by the fp32 model on one noise stream)")
    quality = decision_quality(cfg, params, names, progress)
    progress.note("done")

    gflops = {n: (gflop / t if t else None) for n, t in seconds_all.items()}
    return {
        "benchmark": "planner",
        "quick": {"reduced": reduced} if quick else None,
        "implementations": {n: row_info(n) for n in names},
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
                           "seconds_per_act": _per_row(latency, rows, "median"),
                           "seconds_per_act_min": _per_row(latency, rows, "min"),
                           "measured_as": "its own calls" if separate_latency
                           else "the headline calls (same population)"},
        "batched16": batched,
        "not_measured": skipped,
        "timing": {"repeats": timed, "warmup": warmup, "statistic": "median",
                   "wall_s": progress.elapsed()},
        "machine": {**harness.machine_info(), "load_at_start": load_at_start},
        "config": cfg.to_dict(),
    }


def summary_table(result: dict) -> str:
    """The headline numbers as a plain-text table (a first line says when it was quick)."""
    info = result.get("implementations", {})
    skipped = result.get("not_measured", {})
    rows = []
    for name, t in result["seconds_per_act"].items():
        kernels = "(not measured)" if name in skipped else info.get(name, {}).get("isa")
        rows.append([name, kernels, t, result["seconds_per_act_min"][name],
                     result["latency_pop100"]["seconds_per_act"][name],
                     result["gflops"][name], result["pct_of_peak"][name],
                     result["speedup_vs_mbrl_lib"][name], result["speedup_vs_mbrl_lib_min"][name],
                     result["speedup_vs_torch_eager"][name]])
    pop = result["config"]["population"]
    lat = result["latency_pop100"]["population"]
    machine = result["machine"]
    head = (f"{machine['cpu_model']} (family {machine.get('cpu_family')} model "
            f"{machine.get('cpu_model_number')}), {machine['torch_threads']} threads, "
            f"mbrl-fast kernels: {machine.get('mbrl_fast_isa')}")
    quick = result.get("quick")
    if quick is not None:
        what = ", ".join(f"{k} {v[0]} -> {v[1]}" if isinstance(v, list) else f"{k} {v}"
                         for k, v in quick["reduced"].items())
        head = f"QUICK RUN (reduced: {what})\n{head}"
    table = harness.format_table(
        ["implementation", "kernels", f"s/act pop{pop}", "(min)", f"s/act pop{lat}", "GFLOP/s",
         "% peak", "x mbrl-lib", "(min)", "x eager"], rows)
    notes = "".join(f"\n  {name} not measured: {why}" for name, why in skipped.items()
                    if why != "not requested")
    return f"{head}\n{table}{notes}"
