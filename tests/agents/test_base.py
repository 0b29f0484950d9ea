"""The shared episode helpers of agents/base.py: lockstep rounds of a batch of envs."""

import numpy as np

from mbrl_fast.agents.base import step_active


class CountingEnv:
    """obs = steps taken; reward = the action's first coordinate; ends after ``length``
    steps (terminated when ``terminates``, else truncated by the env)."""

    def __init__(self, length: int, terminates: bool):
        self.length, self.terminates, self.t, self.actions = length, terminates, 0, []

    def step(self, action):
        self.actions.append(action)
        self.t += 1
        done = self.t >= self.length
        return (np.array([float(self.t)]), float(action[0]),
                done and self.terminates, done and not self.terminates, {})


def test_step_active_steps_only_live_envs_and_reports_ends():
    envs = [CountingEnv(1, True), CountingEnv(2, False), CountingEnv(5, True)]
    obs = np.zeros((3, 1))
    active = np.array([True, True, True])
    seen = []

    def on_step(i, o, a, nxt, r, term, trunc):
        seen.append((i, float(o[0]), float(nxt[0]), r, term, trunc))

    actions = np.array([[1.0], [2.0], [3.0]])
    rewards = step_active(envs, obs, actions, active, on_step=on_step)
    np.testing.assert_array_equal(rewards, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(active, [False, True, True])  # env 0 terminated
    rewards = step_active(envs, obs, actions, active, dtype=np.float32, on_step=on_step)
    np.testing.assert_array_equal(rewards, [0.0, 2.0, 3.0])  # env 0 not stepped again
    np.testing.assert_array_equal(active, [False, False, True])  # env 1 truncated
    assert len(envs[0].actions) == 1 and envs[2].actions[-1].dtype == np.float32
    rewards = step_active(envs, obs, actions, active, last=True, on_step=on_step)
    assert not active.any()  # the last round ends env 2 by truncation
    np.testing.assert_array_equal(obs[:, 0], [1.0, 2.0, 3.0])
    assert seen == [(0, 0.0, 1.0, 1.0, True, False), (1, 0.0, 1.0, 2.0, False, False),
                    (2, 0.0, 1.0, 3.0, False, False), (1, 1.0, 2.0, 2.0, False, True),
                    (2, 1.0, 2.0, 3.0, False, False), (2, 2.0, 3.0, 3.0, False, True)]
