"""Dreamer agent: config, the protocol (records, checkpoints, resume), bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mbrl_fast import runs
from mbrl_fast.agents import get_agent
from mbrl_fast.agents.dreamer import PRESETS, Dreamer, DreamerConfig
from mbrl_fast.agents.returns import lambda_returns
from mbrl_fast.config import config_to_dict
from mbrl_fast.models.rssm import WorldModelConfig
from mbrl_fast.ops.imagine import OFFSETS_PER_CALL, imagine

pytest.importorskip("gymnasium")

# A tiny run: 60-step iterations (Pendulum's 200-step episodes cut at 60), 2 updates each.
TINY = dict(steps=180, train_every=60, train_steps=2, prefill=60, action_repeat=1,
            batch_size=4, seq_len=10, horizon=3, actor_layers=1, actor_units=16,
            critic_layers=1, critic_units=16, eval_episodes=1,
            model=dict(deter=16, stoch=8, hidden=16, units=16, layers=1, embed=16))
TINY_SET = ["--set", "train_every=60", "--set", "train_steps=2", "--set", "prefill=60",
            "--set", "batch_size=4", "--set", "seq_len=10", "--set", "horizon=3",
            "--set", "actor_units=16", "--set", "critic_units=16", "--set", "eval_episodes=1",
            "--set", "model.deter=16", "--set", "model.stoch=8", "--set", "model.hidden=16",
            "--set", "model.units=16", "--set", "model.embed=16"]


def tiny(env_id="Pendulum-v1", **overrides):
    return Dreamer.make_config(env_id, **{**TINY, **overrides})


def _field_docstrings(cls) -> dict[str, str]:
    import ast
    import inspect

    body = ast.parse(inspect.getsource(cls)).body[0].body
    return {node.target.id: nxt.value.value for node, nxt in zip(body, body[1:], strict=False)
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)}


@pytest.mark.parametrize("cls", [DreamerConfig, WorldModelConfig])
def test_every_config_field_has_a_docstring(cls):
    docs = _field_docstrings(cls)
    assert not [f.name for f in dataclasses.fields(cls) if not docs.get(f.name, "").strip()]


def test_published_defaults_and_registry():
    c = DreamerConfig()
    m = c.model
    assert (m.deter, m.stoch, m.hidden, m.units, m.lr) == (200, 30, 200, 400, 6e-4)
    assert (c.batch_size, c.seq_len, c.horizon, c.discount, c.lam) == (50, 50, 15, 0.99, 0.95)
    assert (c.actor_layers, c.actor_units, c.actor_lr, c.critic_lr) == (4, 400, 8e-5, 8e-5)
    assert (c.train_every, c.train_steps, c.prefill, c.action_repeat) == (1000, 100, 5000, 2)
    assert get_agent("dreamer") is Dreamer and Dreamer.unit == "epoch"
    assert Dreamer.total_iterations(tiny(steps=181)) == 4


@pytest.mark.parametrize("env_id", sorted(PRESETS))
def test_presets_name_registered_tasks(env_id):
    from mbrl_fast.envs import get_task

    get_task(env_id)
    c = Dreamer.make_config(env_id)
    assert c.env_id == env_id and c.train_every % c.action_repeat == 0


def test_lambda_returns_by_hand():
    r = torch.tensor([[1.0], [2.0]])
    v = torch.tensor([[10.0], [20.0], [30.0]])
    c = torch.full((2, 1), 0.5)
    out = lambda_returns(r, v, c, lam=0.5)
    last = 2.0 + 0.5 * (0.5 * 30.0 + 0.5 * 30.0)
    first = 1.0 + 0.5 * (0.5 * 20.0 + 0.5 * last)
    torch.testing.assert_close(out, torch.tensor([[first], [last]]))


def test_iterations_collect_record_and_train():
    agent = Dreamer(tiny())
    seen = []
    row0 = agent.run_iteration(0, record=lambda **r: seen.append(r))
    # 60 env steps: one episode cut at 60, i.e. 61 records with the reset observation
    assert len(seen) == 61 == len(agent.records()) and seen[0]["is_first"]
    assert seen[-1]["is_last"] and not seen[-1]["is_terminal"]
    assert row0["env_steps"] == 60 and row0["updates"] == 2  # prefill reached: trains
    assert set(row0) == set(Dreamer.FIELDS)
    assert np.isfinite([row0[k] for k in ("model_loss", "actor_loss", "critic_loss")]).all()
    row1 = agent.run_iteration(1)
    assert row1["env_steps"] == 120 and row1["updates"] == 4 and agent.iterations_done == 2
    assert set(seen[0]) == set(agent.journal_dtype().names)
    agent.close()


def _round_trip(state: dict) -> dict:
    """Through torch.save / load(weights_only=True), as a checkpoint goes."""
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_world_model_reads_the_task_features():
    from mbrl_fast.envs import get_task

    agent = Dreamer(tiny("MBRLFast/CartpoleSwingup-v0"))
    assert agent.wm.obs_features == get_task("MBRLFast/CartpoleSwingup-v0").obs_features
    agent.run_iteration(0)
    agent.close()
    raw = Dreamer(tiny("MBRLFast/CartpoleSwingup-v0", task_features=False))
    assert raw.wm.obs_features is None and raw.wm.encoder.layers[0].weight.shape[0] == 4
    raw.close()


@pytest.mark.parametrize("variant", [dict(precision="bf16"),
                                     dict(model={**TINY["model"], "classes": 4}),
                                     dict(backend="reference")])
def test_variants_train(variant):
    """bf16 imagination, 2 x 4 categorical latents, the eager reference op."""
    agent = Dreamer(tiny(**variant))
    row = agent.run_iteration(0)
    assert row["updates"] == 2 and np.isfinite(row["actor_loss"]) and np.isfinite(row["return"])
    agent.close()


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_reinforce_log_prob_rebuilds_the_ops_actions_and_reaches_only_the_actor(backend):
    agent = Dreamer(tiny(actor_grad="reinforce", backend=backend))
    agent.run_iteration(0)  # fills the replay and trains twice
    batch = agent._batch(np.random.default_rng(0))
    _, _, post = agent.wm.loss(**batch, generator=agent.generator)
    params = agent.wm.imagine_params(agent.actor, [agent.wm.reward, agent.slow_critic],
                                     agent.critic, act_min_std=0.1, act_max_std=1.0,
                                     act_mean_scale=5.0)
    start_h, start_z = post.h.detach().flatten(0, 1), post.z.detach().flatten(0, 1)
    traj = imagine(start_h, start_z, params, 3, seed=0, offset=OFFSETS_PER_CALL * agent.updates,
                   backend=backend)
    logp, std = agent._log_prob_of_imagined(traj, params, start_h.shape[0])
    assert logp.shape == (3, start_h.shape[0]) and std.shape == traj.std.shape
    torch.testing.assert_close(std, traj.std.detach(), rtol=1e-5, atol=1e-6)
    # the rebuilt pre-tanh actions are the op's: tanh of them is the imagined action
    mean, sd = traj.mean.detach(), traj.std.detach()
    u = torch.atanh(traj.action.detach().clamp(-1 + 1e-6, 1 - 1e-6))
    expected = torch.distributions.Normal(mean, sd).log_prob(u).sum(-1)
    ok = traj.action.detach().abs().amax(-1) < 0.999  # atanh is exact away from saturation
    assert ok.float().mean() > 0.5
    torch.testing.assert_close(logp.detach()[ok], expected[ok], rtol=1e-3, atol=1e-3)
    agent.wm.zero_grad(set_to_none=True)
    agent.actor.zero_grad(set_to_none=True)
    logp.sum().backward()
    assert all(p.grad is not None for p in agent.actor.parameters())
    assert all(p.grad is None for p in agent.wm.parameters())
    agent.close()


def test_reinforce_trains_and_a_wrong_actor_grad_is_a_clear_error():
    agent = Dreamer(tiny(actor_grad="reinforce"))
    row = agent.run_iteration(0)
    assert row["updates"] == 2 and np.isfinite(row["actor_loss"])
    agent.close()
    with pytest.raises(ValueError, match="actor_grad must be 'dynamics' or 'reinforce'"):
        Dreamer(tiny(actor_grad="straight"))


def test_state_dict_continues_identically():
    a = Dreamer(tiny())
    a.run_iteration(0)
    state = _round_trip(a.state_dict())
    b = Dreamer(tiny())
    b.load_state_dict(state)
    ra, rb = a.run_iteration(1), b.run_iteration(1)
    for key in ("return", "env_steps", "model_loss", "actor_loss", "critic_loss"):
        assert ra[key] == rb[key], key
    for p, q in zip(a.actor.parameters(), b.actor.parameters(), strict=True):
        assert torch.equal(p, q)
    a.close()
    b.close()


def test_nan_in_the_world_model_loss_names_the_term_and_keeps_the_checkpoint(tmp_path):
    config = tiny()
    agent, run = runs.start_run("dreamer", config, tmp_path / "run")
    data = config_to_dict(config)
    runs.train_loop(agent, run, "dreamer", data, progress=False)  # 3 iterations
    agent.close()
    before = run.checkpoint_path.read_bytes()
    config = dataclasses.replace(config, steps=240)
    _, agent, run, attempt = runs.resume_run(tmp_path / "run", extend=240)
    with torch.no_grad():
        agent.wm.reward.layers[-1].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="loss term 'reward' is nan"):
        runs.train_loop(agent, run, "dreamer", config_to_dict(agent.config), attempt,
                        progress=False)
    agent.close()
    assert run.checkpoint_path.read_bytes() == before


def test_sequence_longer_than_every_episode_is_a_clear_error():
    agent = Dreamer(tiny(seq_len=80))
    with pytest.raises(ValueError, match="longer than every stored episode.*61 steps"):
        agent.run_iteration(0)
    agent.close()


class _ImageEnvTask:
    """A task stub whose env observes 64 x 64 images (what a vector config must refuse)."""

    env_id, act_dim = "Images-v0", 1
    action_low, action_high = (-1.0,), (1.0,)

    def make_env(self, **kwargs):
        import gymnasium as gym

        class Images(gym.Env):
            observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
            action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

        return Images()


@pytest.mark.filterwarnings("ignore:.*render_mode:UserWarning")
def test_image_observations_with_a_vector_config_and_the_reverse():
    with pytest.raises(ValueError, match=r"observations are images of shape \(64, 64, 3\).*"
                                         "obs='vector'"):
        Dreamer(tiny(), task=_ImageEnvTask())
    with pytest.raises(ValueError, match="obs='pixels' needs an env that renders"):
        Dreamer(tiny("MBRLFast/CartpoleSwingup-v0", obs="pixels"))
    with pytest.raises(ValueError, match="obs must be 'vector' or 'pixels'"):
        Dreamer(tiny(obs="rgb"))


def test_pixel_observations_from_the_mujoco_renderer():
    pytest.importorskip("mujoco")
    config = tiny("InvertedPendulum-v5", obs="pixels", seq_len=3, train_every=20, prefill=20,
                  model={**TINY["model"], "cnn_depth": 4})
    try:
        agent = Dreamer(config)
    except ValueError as exc:  # no offscreen GL on this machine
        pytest.skip(f"MuJoCo cannot render here: {exc}")
    row = agent.run_iteration(0)
    assert agent.records()["obs"].shape[1:] == (64, 64, 3) and row["updates"] == 2
    agent.close()


def test_cli_train_then_eval(tmp_path, capsys):
    from mbrl_fast.cli import main

    run = tmp_path / "run"
    assert main(["train", "dreamer", "--env", "Pendulum-v1", "--steps", "60", "--run-dir",
                 str(run), "--no-progress", *TINY_SET]) == 0
    assert main(["eval", str(run), "--episodes", "1"]) == 0  # a video, or why not
    out = capsys.readouterr().out
    assert "Pendulum-v1: return" in out and "1 epochs trained" in out
