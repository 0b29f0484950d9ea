"""Sizing a planner to a time budget (planning/calibrate.py), on a synthetic cost model:
the tests check the sizing rules, not this machine's speed."""

import dataclasses

import pytest

from mbrl_fast.planning import PlannerConfig, calibrate


def _cost(p: PlannerConfig, model, task, *, repeats=3, seed=0) -> float:
    """Seconds of a planned step: linear in the rows rolled out, plus a fixed overhead."""
    particles = 5 if p.propagation == "expectation" else p.particles  # all elite members
    return 1e-4 + 2e-8 * p.population * particles * p.iterations * p.horizon


@pytest.fixture(autouse=True)
def synthetic_timer(monkeypatch):
    monkeypatch.setattr(calibrate, "time_plan", _cost)


@pytest.mark.parametrize("propagation", ["tsinf", "ts1", "expectation"])
@pytest.mark.parametrize("budget_ms", [0.5, 2.0, 20.0, 100.0])
def test_fits_the_budget_without_breaking_the_planner(propagation, budget_ms):
    p = PlannerConfig(population=500, num_elites=50, iterations=5, horizon=30, particles=20,
                      propagation=propagation)
    fitted, seconds = calibrate.fit_to_budget(p, None, None, budget_ms)
    assert seconds <= budget_ms / 1000 and seconds == _cost(fitted, None, None)
    assert fitted.horizon == p.horizon and fitted.name == p.name
    assert 2 <= fitted.num_elites <= fitted.population // 2 or fitted.num_elites == 2
    assert fitted.population <= p.population and fitted.particles <= p.particles
    assert fitted.iterations <= p.iterations
    if propagation == "expectation":
        assert fitted.particles == p.particles  # particles mean nothing there


def test_a_planner_that_fits_is_unchanged():
    p = PlannerConfig(population=100, particles=2, horizon=10, iterations=2)
    assert calibrate.fit_to_budget(p, None, None, 1000.0)[0] == p


def test_budget_below_the_smallest_planner_says_the_smallest_that_works():
    p = PlannerConfig(horizon=30)
    smallest = calibrate.smallest(p)
    floor = _cost(smallest, None, None)
    with pytest.raises(calibrate.BudgetTooSmall, match="smallest budget that works is") as exc:
        calibrate.fit_to_budget(p, None, None, 0.5 * floor * 1000)
    said = int(str(exc.value).rsplit("is ", 1)[1].split()[0])
    assert said >= floor * 1000  # the budget it names does fit
    assert calibrate.fit_to_budget(p, None, None, said)[1] <= said / 1000


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf"), "100", True])
def test_bad_budget_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="budget_ms must be a positive number"):
        calibrate.fit_to_budget(PlannerConfig(), None, None, bad)


def test_scaled_keeps_at_least_two_elites_and_never_grows():
    p = PlannerConfig(population=10, num_elites=5, particles=2)
    for factor in (0.99, 0.5, 0.1, 1e-6):
        q = calibrate.scaled(p, factor)
        assert q.num_elites >= 2 and q.population >= 4
        assert q.population <= p.population and q.particles <= p.particles
    assert dataclasses.replace(p, population=4, num_elites=2, particles=1) == \
        calibrate.scaled(p, 1e-6)
