"""MBPO: config, rollout schedule, branched rollouts, one tiny epoch, bad input."""

import ast
import dataclasses
import inspect
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import MBPO_TINY, random_mlp_params

from mbrl_fast.agents.mbpo import MBPO, MBPOConfig
from mbrl_fast.agents.sac import batch_from
from mbrl_fast.envs import Task, never_terminates
from mbrl_fast.models import ReplayBuffer
from mbrl_fast.models.rollouts import TransitionPool, Transitions, branched_rollout

pytest.importorskip("mujoco")

TINY = MBPO_TINY


def test_config_docstrings_and_published_defaults():
    tree = ast.parse(inspect.getsource(MBPOConfig))
    body = tree.body[0].body
    documented = {n.target.id for n, nxt in zip(body, body[1:], strict=False)
                  if isinstance(n, ast.AnnAssign) and isinstance(nxt, ast.Expr)}
    assert {f.name for f in dataclasses.fields(MBPOConfig)} <= documented
    c = MBPOConfig()
    m = c.model
    assert (m.ensemble_size, m.num_elites, m.hidden, m.layers, m.activation) == \
        (7, 5, 200, 4, "silu") and m.reward_head
    assert (c.model_train_freq, c.rollout_batch, c.updates_per_step, c.real_ratio) == \
        (250, 100_000, 20, 0.05)
    assert (c.rollout_min_epoch, c.rollout_max_epoch, c.rollout_min_length,
            c.rollout_max_length, c.model_retain_epochs) == (20, 100, 1, 15, 1)
    assert MBPO.make_config("Hopper-v5").sac.target_entropy == -1.0


@pytest.mark.parametrize("env_id", sorted(MBPO.PRESETS))
def test_every_preset_runs_a_tiny_epoch(env_id):
    published = MBPO.PRESETS[env_id]
    c = MBPO.make_config(env_id)
    assert c.env_id == env_id and c.sac.target_entropy == published["sac"]["target_entropy"]
    assert c.updates_per_step == published.get("updates_per_step", 20)
    agent = MBPO(MBPO.make_config(env_id, **TINY))  # the task is registered, and has a
    try:                                             # termination function where it ends
        agent.run_iteration(0)
        row = agent.run_iteration(1)
        assert row["model_transitions"] > 0 and np.isfinite(row["return"])
        assert agent.sac.updates == 2 * (120 - 40 + 1)
    finally:
        agent.close()


def test_train_epochs_sums_the_epochs_of_the_epochs_model_rounds():
    agent = MBPO(MBPO.make_config("InvertedPendulum-v5", **TINY))
    rounds = []
    train = agent.trainer.train
    agent.trainer.train = lambda buffer: rounds.append(train(buffer)) or rounds[-1]
    try:
        assert agent.run_iteration(0)["train_epochs"] == sum(r.epochs for r in rounds) > 0
        first = len(rounds)
        row = agent.run_iteration(1)
        assert len(rounds) - first == 2  # steps 70 and 100 (every 30 after 40 random)
        assert row["train_epochs"] == sum(r.epochs for r in rounds[first:])
    finally:
        agent.close()


def test_rollout_length_schedule():
    agent = MBPO(MBPO.make_config("InvertedPendulum-v5", **{**TINY, "initial_random_steps": 0,
                                                             "rollout_max_length": 15}))
    c = agent.config
    agent.config = dataclasses.replace(c, epoch_length=1000, rollout_min_epoch=20,
                                       rollout_max_epoch=100)
    lengths = [agent.rollout_length(1000 * e) for e in (0, 20, 60, 100, 150)]
    assert lengths == [1, 1, 8, 15, 15]
    agent.close()


def test_branched_rollout_stops_rows_at_their_first_terminal_step():
    params = random_mlp_params(E=4, sizes=(3 + 2, 16, 2 * 4), normalize=False, seed=1)
    policy = random_mlp_params(E=1, sizes=(3, 16, 2 * 2), normalize=False, seed=2)
    start = torch.randn(50, 3)
    done_at = lambda o, a, n: n[..., 0] > 0.3  # noqa: E731
    out = branched_rollout(params, policy, start, 6, members=[0, 2], reward="model",
                           termination=done_at, seed=3)
    free = branched_rollout(params, policy, start, 6, members=[0, 2], reward="model", seed=3)
    assert len(free) == 50 * 6 and not free.terminated.any()
    # replay the rows: each keeps its steps up to and including its first terminal one
    states = free.obs.reshape(6, 50, 3).transpose(0, 1)
    nxt = free.next_obs.reshape(6, 50, 3).transpose(0, 1)
    done = done_at(states, None, nxt)
    first = torch.where(done.any(1), done.float().argmax(1), torch.full((50,), 5))
    assert len(out) == int((first + 1).sum())
    assert int(out.terminated.sum()) == int(done.any(1).sum())
    assert out.act.abs().max() <= 1.0  # the policy's tanh


def _numbered(lo: int, n: int) -> Transitions:
    """n transitions whose every field holds its number lo, lo + 1, ..."""
    x = torch.arange(lo, lo + n, dtype=torch.float32)
    return Transitions(x[:, None].expand(-1, 2), x[:, None], x, x[:, None].expand(-1, 2), x)


def test_transition_pool_keeps_the_newest():
    pool = TransitionPool(2, 1, 5)
    pool.add(_numbered(0, 3))
    pool.add(_numbered(3, 4))  # wraps: 7 added, capacity 5
    assert len(pool) == 5 and sorted(pool.data["reward"].tolist()) == [2, 3, 4, 5, 6]
    pool.resize(2)
    assert len(pool) == 2 and sorted(pool.data["reward"].tolist()) == [5, 6]
    pool.resize(4)
    pool.add(_numbered(7, 1))
    assert sorted(pool.data["reward"][:3].tolist()) == [5, 6, 7]
    assert set(pool.sample(50).reward.tolist()) == {5, 6, 7}


def test_transition_pool_rows_keep_their_fields_together():
    """The fields share one row per transition (column views of one tensor): every sampled
    row's five fields come from the same transition, with the shapes they were added in."""
    d, a, n = 3, 2, 40
    k = torch.arange(n, dtype=torch.float32)
    pool = TransitionPool(d, a, 64)
    pool.add(Transitions(k[:, None] * 10 + torch.arange(d), -k[:, None] - torch.arange(a) / 10,
                         k + 0.5, k[:, None] * 100 + torch.arange(d), (k % 2 == 1).float()))
    out = pool.sample(300, torch.Generator().manual_seed(0))
    assert (out.obs.shape, out.act.shape, out.reward.shape, out.next_obs.shape,
            out.terminated.shape) == ((300, d), (300, a), (300,), (300, d), (300,))
    row = out.reward - 0.5
    assert len(set(row.tolist())) > 20
    torch.testing.assert_close(out.obs, row[:, None] * 10 + torch.arange(d))
    torch.testing.assert_close(out.act, -row[:, None] - torch.arange(a) / 10)
    torch.testing.assert_close(out.next_obs, row[:, None] * 100 + torch.arange(d))
    torch.testing.assert_close(out.terminated, (row % 2 == 1).float())
    pool.resize(16)  # the newest 16 survive a reallocation, still row by row
    torch.testing.assert_close(pool.data["obs"][:16, 0], (k[-16:] * 10))
    torch.testing.assert_close(pool.data["terminated"][:16], (k[-16:] % 2 == 1).float())


def test_one_tiny_epoch_trains_model_and_sac():
    agent = MBPO(MBPO.make_config("InvertedPendulum-v5", **TINY))
    try:
        seen = []
        row0 = agent.run_iteration(0, record=lambda **r: seen.append(r))
        row1 = agent.run_iteration(1)
        assert set(MBPO.FIELDS) <= set(row1) and row1["env_steps"] == 120 == len(agent.buffer)
        assert len(seen) == 60 and row0["rollout_length"] == 1
        assert row1["model_transitions"] > 0 and np.isfinite(row1["holdout_mse"])
        assert agent.sac.updates == 2 * (120 - 40 + 1)
    finally:
        agent.close()


def test_bf16_rollouts_stay_close_to_fp32():
    agent = MBPO(MBPO.make_config("InvertedPendulum-v5", **TINY, rollout_precision="bf16"))
    try:
        assert agent.run_iteration(0)["model_transitions"] > 0  # the agent's bf16 rounds
        params, policy = agent.model.mlp_params(), agent.sac.policy_params()
        start = torch.as_tensor(agent.buffer.sample(64, agent.rng).obs, dtype=torch.float32)
        run = lambda m, p: branched_rollout(m, p, start, 3, members=agent.model.elite_members,  # noqa: E731
                                            seed=5, backend="cpu")
        fp32, bf16 = run(params, policy), run(agent.model.mlp_params_bf16(), policy.to_bf16())
        assert policy.to_bf16().is_bf16 and not policy.is_bf16
        # same noise, weights rounded to 8 mantissa bits: close, not equal
        scale = fp32.next_obs.abs().max()
        err = (fp32.next_obs - bf16.next_obs).abs().max()
        assert 0 < err < 0.05 * scale
    finally:
        agent.close()
    with pytest.raises(ValueError, match="rollout_precision"):
        MBPO(MBPO.make_config("InvertedPendulum-v5", **TINY, rollout_precision="fp16"))


def test_a_discrete_action_space_is_a_clear_error():
    task = Task("CartPole-v1", lambda o, a, n: o[..., 0], obs_dim=4, act_dim=1,
                action_low=(-1.0,), action_high=(1.0,), max_episode_steps=500)
    with pytest.raises(TypeError, match="mbpo needs a continuous .*Box"):
        MBPO(MBPOConfig(env_id="CartPole-v1", **TINY_FLAT), task=task)


TINY_FLAT = {k: v for k, v in TINY.items() if not isinstance(v, dict)}


def test_a_task_that_terminates_without_a_termination_fn_is_a_clear_error():
    from mbrl_fast.envs import get_task

    real = get_task("InvertedPendulum-v5")
    task = dataclasses.replace(real, termination_fn=never_terminates)
    agent = MBPO(MBPO.make_config("InvertedPendulum-v5", **TINY), task=task)
    try:
        with pytest.raises(ValueError, match="no termination_fn.*register the task"):
            agent.run_iteration(0)
    finally:
        agent.close()


def test_a_non_finite_rollout_names_step_and_member():
    agent = MBPO(MBPO.make_config("InvertedPendulum-v5", **TINY))
    try:
        agent.run_iteration(0)
        with torch.no_grad():
            agent.model.mlp.layers[-1].bias.fill_(float("nan"))
        agent.trainer.train = lambda buffer: _no_training(agent)  # keep the broken weights
        with pytest.raises(FloatingPointError, match="step 0 .*member"):
            agent.run_iteration(1)
    finally:
        agent.close()


def _no_training(agent):
    from mbrl_fast.models.trainer import TrainResult

    e = agent.model.ensemble_size
    return TrainResult(0, float("nan"), [0.0] * e, list(range(e)), 0, 0)


def test_gym_discrete_env_exists():  # the discrete-action test needs gymnasium's CartPole
    assert isinstance(gym.make("CartPole-v1").action_space, gym.spaces.Discrete)


def test_sample_batch_puts_the_real_rows_first_then_the_pools():
    """MBPO.sample_batch builds its batch in one [B, width] tensor: round(real_ratio * B)
    rows of the real buffer, then pool rows gathered straight in; the same rows and values
    as sampling each source on its own with the same generators, field by field."""
    d, a, b = 3, 2, 20
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(d, a, 100)
    buffer.add_batch(rng.standard_normal((50, d)), rng.uniform(-1, 1, (50, a)),
                     rng.standard_normal((50, d)), rng.standard_normal(50), rng.random(50) < 0.5)
    k = torch.arange(40, dtype=torch.float32)
    pool = TransitionPool(d, a, 64)
    pool.add(Transitions(k[:, None] * 10 + torch.arange(d), -k[:, None] - torch.arange(a) / 10,
                         k + 0.5, k[:, None] * 100 + torch.arange(d), (k % 2 == 1).float()))
    agent = SimpleNamespace(config=SimpleNamespace(sac=SimpleNamespace(batch_size=b),
                                                   real_ratio=0.25),
                            buffer=buffer, pool=pool, rng=np.random.default_rng(1),
                            _sampler=torch.Generator().manual_seed(2))
    got = MBPO.sample_batch(agent)
    real = batch_from(buffer.sample(5, np.random.default_rng(1)))
    fake = pool.sample(b - 5, torch.Generator().manual_seed(2))
    fake = (fake.obs, fake.act, fake.reward, fake.next_obs, fake.terminated)
    for g, r, f in zip(got, real, fake, strict=True):
        assert g.dtype == torch.float32 and g.shape[0] == b
        assert torch.equal(g[:5], r) and torch.equal(g[5:], f)
    rows = torch.empty(b - 5, pool.width)  # sample_rows fills a given tensor the same way
    pool.sample_rows(b - 5, torch.Generator().manual_seed(2), out=rows)
    assert all(torch.equal(x, y) for x, y in zip(pool.fields(rows), fake, strict=True))
