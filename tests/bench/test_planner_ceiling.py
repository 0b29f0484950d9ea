"""bench/planner_ceiling.py: planning on the exact dynamics must not move the real episode.

Its first version handed ``mujoco.rollout`` the env's own MjData, which a rollout leaves at
the end of its last trajectory, so the episode went on from a candidate's future state.
With one candidate the executed actions are the candidate's first ones, so the episode must
equal a fresh env stepped with them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import load_bench_script

pytest.importorskip("mujoco")


def _load():
    return load_bench_script("planner_ceiling")


@pytest.mark.parametrize("env_id,hold", [("Swimmer-v5", 1), ("Hopper-v5", 2)])
def test_the_episode_is_the_executed_actions_and_nothing_else(tmp_path, env_id, hold):
    from mbrl_fast.envs import get_task

    steps, horizon = 6, 3
    out = tmp_path / "r.json"
    code = _load().main(["--env", env_id, "--population", "1", "--horizon", str(horizon),
                         "--hold", str(hold), "--steps", str(steps), "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())

    task = get_task(env_id)
    rng = np.random.default_rng(0)
    low, high = np.asarray(task.action_low), np.asarray(task.action_high)
    kwargs = {"terminate_when_unhealthy": False} if env_id == "Hopper-v5" else {}
    env = task.make_env(**kwargs)
    env.reset(seed=0)
    total, t = 0.0, 0
    while t < steps:
        action = rng.uniform(low, high, size=(1, horizon, len(low)))[0, 0]
        for _ in range(min(hold, steps - t)):
            total += float(env.step(action.astype(env.action_space.dtype))[1])
            t += 1
    assert result["return_through_falls"] == pytest.approx(round(total, 2), abs=0.011)
    assert result["return_per_100_steps"] == [pytest.approx(round(total, 2), abs=0.011)]


def test_cem_executes_the_mean_it_computed(tmp_path):
    """One sample, one elite, no momentum: the mean is that sample, its first action is
    executed and the rest, shifted, is the next step's mean."""
    from mbrl_fast.envs import get_task

    steps, horizon = 5, 3
    out = tmp_path / "r.json"
    code = _load().main(["--env", "Swimmer-v5", "--population", "1", "--cem-iterations", "1",
                         "--elites", "1", "--alpha", "0", "--horizon", str(horizon),
                         "--steps", str(steps), "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["planner"] == "cem"

    task = get_task("Swimmer-v5")
    rng = np.random.default_rng(0)
    low, high = np.asarray(task.action_low), np.asarray(task.action_high)
    std = (high - low) / 4
    mean = np.broadcast_to((low + high) / 2, (horizon, len(low))).copy()
    env = task.make_env()
    env.reset(seed=0)
    total = 0.0
    for _ in range(steps):
        x = np.clip(mean + std * np.clip(rng.standard_normal((1, horizon, len(low))), -2, 2),
                    low, high)[0]
        total += float(env.step(x[0].astype(env.action_space.dtype))[1])
        mean = np.concatenate([x[1:], (low + high)[None] / 2])
    assert result["return_through_falls"] == pytest.approx(round(total, 2), abs=0.011)
