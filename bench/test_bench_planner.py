"""pytest-benchmark view of the planner benchmark: seconds per planning step per implementation.

Run: ``pytest bench/test_bench_planner.py`` (minutes: mbrl-lib takes seconds per step at
population 500). ``mbrl-fast bench planner`` measures the same and also writes the JSON
with GFLOP/s, % of peak, decision quality and batched planning.
MBRL_FAST_BENCH_CONFIG=tiny runs the small config.
"""

from __future__ import annotations

import os

import pytest

from mbrl_fast.benchmarks import planner
from mbrl_fast.benchmarks.configs import get_config, make_params, matmul_gflop_per_act, start_states

CFG = get_config(os.environ.get("MBRL_FAST_BENCH_CONFIG", "pets-halfcheetah"))
PARAMS = make_params(CFG)
POPULATIONS = sorted({CFG.latency_population, CFG.population})


@pytest.mark.parametrize("population", POPULATIONS, ids=lambda p: f"pop{p}")
@pytest.mark.parametrize("name", planner.IMPLEMENTATIONS)
def test_planning_step(benchmark, name, population):
    why = planner.unavailable(name)
    if why is not None:
        pytest.skip(f"{name}: {why}")
    act = planner.make_act(name, CFG, PARAMS, population)
    obs = start_states(CFG)[0]
    gflop = matmul_gflop_per_act(CFG, population)
    benchmark.extra_info.update(implementation=name, population=population, gflop=gflop)
    benchmark.pedantic(act, args=(obs,), rounds=3, warmup_rounds=1, iterations=1)
    benchmark.extra_info["gflops"] = gflop / benchmark.stats.stats.median


@pytest.mark.parametrize("name", ["mbrl_fast_fp32", "mbrl_fast_bf16", "torch_eager"])
def test_batched_planning(benchmark, name):
    """One call planning ``batch_starts`` start states at the latency population."""
    why = planner.unavailable(name)
    if why is not None:
        pytest.skip(f"{name}: {why}")
    act = planner.make_act(name, CFG, PARAMS, CFG.latency_population)
    obs = start_states(CFG, CFG.batch_starts)
    benchmark.extra_info.update(implementation=name, starts=CFG.batch_starts)
    benchmark.pedantic(act, args=(obs,), rounds=3, warmup_rounds=1, iterations=1)
