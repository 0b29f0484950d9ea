"""Size a planner to this machine: measure one planned step and fit it into a time budget.

A planned step costs about population x particles x iterations x horizon model rows
(plus a fixed overhead per call). :func:`time_plan` measures it on this machine with the
model the agent will use (random weights cost the same as trained ones);
:func:`fit_to_budget` shrinks population and particles (the elites in proportion,
never below 2) and then the iterations until a measured step fits ``budget_ms``.
The horizon is never changed and at least 2 elites remain. A budget below the
smallest planner (population 4, 1 particle, 1 iteration, the configured horizon) is
an error that says the smallest budget that works here.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from mbrl_fast.planning.config import PlannerConfig, make_planner

MIN_ELITES = 2
MIN_POPULATION = 2 * MIN_ELITES


class BudgetTooSmall(ValueError):
    """The budget is below what the smallest planner costs on this machine."""


def time_plan(p: PlannerConfig, model, task, *, repeats: int = 3, seed: int = 0) -> float:
    """Median seconds of one planned step (a fresh plan, as at an episode start) after a
    warm-up call; obs drawn near the origin."""
    planner = make_planner(p, model, task, seed)
    obs = np.random.default_rng(seed).normal(scale=0.1, size=task.obs_dim).astype(np.float32)
    planner.plan(obs)  # warm-up: first-call allocations, lazy imports
    times = []
    for _ in range(repeats):
        planner.reset()
        t0 = time.perf_counter()
        planner.plan(obs)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def smallest(p: PlannerConfig) -> PlannerConfig:
    """The cheapest planner of the same kind and horizon (what a budget must at least pay)."""
    return dataclasses.replace(p, population=MIN_POPULATION, num_elites=MIN_ELITES,
                               particles=1, iterations=1)


def scaled(p: PlannerConfig, factor: float) -> PlannerConfig:
    """``p`` with population x particles cut by ``factor`` (< 1), elites in proportion;
    neither grows."""
    root = math.sqrt(factor)
    particles = p.particles if p.propagation == "expectation" else max(1, int(p.particles * root))
    work = p.population * p.particles * factor / particles  # what is left for the population
    population = max(MIN_POPULATION, min(p.population, int(work)))
    elites = max(MIN_ELITES, min(population // 2, round(p.num_elites * population / p.population)))
    return dataclasses.replace(p, population=population, particles=particles, num_elites=elites)


def fit_to_budget(p: PlannerConfig, model, task, budget_ms: float, *,
                  repeats: int = 3) -> tuple[PlannerConfig, float]:
    """The planner ``p``, shrunk until a measured step fits ``budget_ms``: (config, measured
    seconds per step). Raises BudgetTooSmall when even the smallest planner does not fit."""
    if isinstance(budget_ms, bool) or not isinstance(budget_ms, (int, float)) \
            or not math.isfinite(budget_ms) or budget_ms <= 0:
        raise ValueError(f"budget_ms must be a positive number of milliseconds, got {budget_ms!r}")
    budget = budget_ms / 1000.0
    seconds = time_plan(p, model, task, repeats=repeats)
    while seconds > budget:
        if p.population > MIN_POPULATION or (p.particles > 1 and p.propagation != "expectation"):
            smaller = scaled(p, min(0.9, 0.9 * budget / seconds))
        elif p.iterations > 1:
            smaller = dataclasses.replace(p, iterations=p.iterations - 1)
        else:
            raise BudgetTooSmall(
                f"a planned step cannot fit {budget_ms:g} ms on this machine: the smallest "
                f"planner ({describe(p)}) takes {1000 * seconds:.1f} ms with this model; the "
                f"smallest budget that works is {math.ceil(1200 * seconds)} ms")
        p, seconds = smaller, time_plan(smaller, model, task, repeats=repeats)
    return p, seconds


def describe(p: PlannerConfig) -> str:
    """One line: the planner's size."""
    def count(n: int, what: str) -> str:
        return f"{n} {what}{'' if n == 1 else 's'}"

    particles = "expectation over the elite members" if p.propagation == "expectation" else \
        f"{count(p.particles, 'particle')} {p.propagation}"
    elites = "" if p.name in ("mppi", "random") else f", {count(p.num_elites, 'elite')}"
    return (f"{p.name} population {p.population}{elites}, {count(p.iterations, 'iteration')}, "
            f"horizon {p.horizon}, {particles}, {p.precision}")
