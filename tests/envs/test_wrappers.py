"""The agents' env wrappers: action repeat, the recording observation view, and
``make_agent_env`` (Dreamer's errors for observations that do not fit: tests/agents)."""

import numpy as np
import pytest

from mbrl_fast.envs import get_task
from mbrl_fast.envs.wrappers import ActionRepeat, RecordTransitions, make_agent_env


def test_action_repeat_sums_rewards_and_stops_at_the_episode_end():
    env = ActionRepeat(get_task("Pendulum-v1").make_env(), 3)
    env.reset(seed=0)
    inner = get_task("Pendulum-v1").make_env()
    inner.reset(seed=0)
    obs, reward, *_ = env.step(np.array([0.5], np.float32))
    expected = sum(inner.step(np.array([0.5], np.float32))[1] for _ in range(3))
    assert reward == pytest.approx(expected)
    # 200-step episodes: the 67th repeat of 3 stops after 2 steps, truncated
    for _ in range(65):
        _, _, terminated, truncated, _ = env.step(np.array([0.0], np.float32))
        assert not (terminated or truncated)
    *_, truncated, _ = env.step(np.array([0.0], np.float32))
    assert truncated
    with pytest.raises(ValueError, match="repeat must be >= 1"):
        ActionRepeat(get_task("Pendulum-v1").make_env(), 0)


def test_record_transitions_shows_the_view_and_records_full_observations():
    task = get_task("HalfCheetah-v5")  # the task's observation keeps x; its view drops it
    view = task.obs_view()
    seen = []
    env = RecordTransitions(task.make_env(), view, lambda *t: seen.append(t))
    assert env.observation_space.shape == (view.obs_dim,) == (task.obs_dim - 1,)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (view.obs_dim,)
    act = env.action_space.sample()
    next_obs, reward, terminated, truncated, _ = env.step(act)
    assert len(seen) == 1
    full, a, full_next, r, term, trunc = seen[0]
    assert full.shape == full_next.shape == (task.obs_dim,)
    np.testing.assert_array_equal(view(full_next), next_obs)
    np.testing.assert_array_equal(view(full), obs)
    np.testing.assert_array_equal(a, act)
    assert (r, term, trunc) == (reward, terminated, truncated)
    assert full_next[0] != full[0]  # the x position the view hides moved


def test_make_agent_env_repeats_actions_only_when_asked():
    task = get_task("Pendulum-v1")
    plain, repeated = make_agent_env(task), make_agent_env(task, "vector", 2)
    try:
        assert not isinstance(plain, ActionRepeat) and plain.observation_space.shape == (3,)
        assert isinstance(repeated, ActionRepeat) and repeated.repeat == 2
    finally:
        plain.close()
        repeated.close()
