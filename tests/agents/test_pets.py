"""PETS agent: config (docstrings, presets), one tiny trial loop, checkpoint continuation."""

import ast
import dataclasses
import inspect

import numpy as np
import pytest
import torch

from mbrl_fast.agents import pets
from mbrl_fast.agents.pets import PETS, PRESETS, PETSConfig, pets_config
from mbrl_fast.models import ModelConfig, TrainConfig
from mbrl_fast.planning import PlannerConfig

pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")

TINY = dict(trials=3, episode_steps=30,
            model=dict(ensemble_size=3, num_elites=2, hidden=16, layers=2),
            train=dict(epochs=2, batch_size=32),
            planner=dict(population=20, num_elites=4, iterations=1, horizon=5, particles=2))


def _field_docstrings(cls) -> dict[str, str]:
    """Attribute docstrings (a string literal right after the field) of a dataclass."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) \
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            docs[node.target.id] = nxt.value.value
    return docs


@pytest.mark.parametrize("cls", [PETSConfig, ModelConfig, TrainConfig, PlannerConfig])
def test_every_config_field_has_a_docstring(cls):
    docs = _field_docstrings(cls)
    missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name, "").strip()]
    assert not missing


def test_published_defaults():
    c = PETSConfig()
    m = c.model
    assert (m.ensemble_size, m.num_elites, m.hidden, m.layers) == (7, 5, 200, 4)
    assert c.model.activation == "silu"
    p = c.planner
    assert (p.name, p.population, p.num_elites, p.iterations, p.alpha) == ("cem", 500, 50, 5, 0.1)
    assert (p.horizon, p.particles, p.propagation) == (30, 20, "tsinf")
    assert (c.episode_steps, c.initial_random_trials, c.train.lr) == (1000, 1, 1e-3)


@pytest.mark.parametrize("env_id", sorted(PRESETS))
def test_presets_build_valid_configs(env_id):
    from mbrl_fast.envs import get_task

    get_task(env_id)  # every preset names a registered task
    c = pets_config(env_id)
    assert c.env_id == env_id and c.planner.num_elites <= c.planner.population
    # overrides merge into the preset section instead of replacing it
    c2 = pets_config(env_id, planner=dict(horizon=7))
    assert c2.planner.horizon == 7 and c2.planner.population == c.planner.population


def test_unknown_env_lists_tasks():
    with pytest.raises(ValueError, match="supported tasks: .*InvertedPendulum-v5"):
        PETS(pets_config("NoSuchEnv-v0"))


def test_trials_collect_train_and_record():
    agent = PETS(pets_config("InvertedPendulum-v5", **TINY))
    seen = []
    row0 = agent.run_iteration(0, record=lambda **t: seen.append(t))
    # the random trial collects episode_steps steps over as many episodes as it takes
    assert row0["episode_steps"] == 30 == agent.buffer.total_added == len(seen)
    row1 = agent.run_iteration(1)
    assert set(row1) == set(pets.TRIAL_FIELDS)
    assert 1 <= row1["episode_steps"] <= 30
    assert row1["env_steps"] == 30 + row1["episode_steps"]
    assert row1["planning_s"] > 0 and row1["training_s"] > 0 and np.isfinite(row1["model_loss"])
    assert row1["wall_clock_s"] >= row0["wall_clock_s"] + row1["training_s"]
    assert agent.iterations_done == 2 and [r["trial"] for r in agent.history] == [0, 1]
    np.testing.assert_array_equal(agent.buffer.all().obs[0], seen[0]["obs"])
    assert set(seen[0]) == set(agent.journal_dtype().names)
    agent.close()


def test_state_dict_continues_identically():
    """A checkpoint after trial 1 + trial 2 == trial 2 of an uninterrupted run."""
    a = PETS(pets_config("InvertedPendulum-v5", **TINY))
    a.run_iteration(0)
    a.run_iteration(1)
    state = a.state_dict()
    b = PETS(pets_config("InvertedPendulum-v5", **TINY))
    b.load_state_dict(state)
    ra, rb = a.run_iteration(2), b.run_iteration(2)
    for key in ("return", "env_steps", "model_loss", "holdout_mse", "episode_steps"):
        assert ra[key] == rb[key]
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)
    a.close()
    b.close()


def test_nan_model_raises_floating_point_error_with_member():
    agent = PETS(pets_config("InvertedPendulum-v5", **TINY))
    agent.run_iteration(0)
    with torch.no_grad():
        agent.model.mlp.layers[-1].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="member"):
        agent.run_iteration(1)
    agent.close()


def test_agent_wires_task_features_shaping_and_precision():
    from mbrl_fast.envs import get_task

    tiny = {**TINY, "planner": {**TINY["planner"], "precision": "bf16", "name": "icem"}}
    agent = PETS(pets_config("MBRLFast/CartpoleSwingup-v0", **tiny))
    task = get_task("MBRLFast/CartpoleSwingup-v0")
    assert agent.model.obs_features == task.obs_features  # theta read as sin / cos
    assert agent.mpc.planner._params().is_bf16
    agent.run_iteration(0)
    agent.run_iteration(1)  # trains on, and plans through, the feature map
    agent.close()
    raw = PETS(pets_config("MBRLFast/CartpoleSwingup-v0", **{**TINY, "model": {
        **TINY["model"], "task_features": False}}))
    assert raw.model.obs_features is None and raw.model.normalizer.size == 4 + 1
    raw.close()
    pendulum = PETS(pets_config("InvertedPendulum-v5", **TINY))
    assert pendulum.mpc.planner.reward.name == "InvertedPendulum-v5+shaping"
    pendulum.close()
    plain = PETS(pets_config("InvertedPendulum-v5", **{**TINY, "planner": {
        **TINY["planner"], "shaping": False}}))
    assert plain.mpc.planner.reward.name == "InvertedPendulum-v5"
    plain.close()


def test_every_task_has_a_preset_and_published_stays_available():
    from mbrl_fast.envs import get_task, list_tasks

    assert {t for t in list_tasks() if get_task(t).has_reward} <= set(PRESETS)
    with pytest.raises(ValueError, match="'MBRLFast/PointMass-v0' has no reward"):
        PETS.make_config("MBRLFast/PointMass-v0")
    published = PETS.make_config("HalfCheetah-v5", preset="published")
    assert (published.planner.population, published.planner.horizon) == (400, 30)
    assert PETS.make_config("HalfCheetah-v5").planner.name == "icem"  # the CPU config
    assert PETS.make_config("HalfCheetah-v5", preset=None) == PETSConfig(env_id="HalfCheetah-v5")
