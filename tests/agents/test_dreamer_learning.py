"""Dreamer learns: Pendulum-v1 with reduced networks, seed 0, the compiled imagination op.

The one real learning check. Measured 2026-12-02 on the project machine (2 busy cores,
1 thread): the mean evaluation return (3 episodes, the actor's mode) goes from -1333 after
the random first iteration to -567 at 4,800 env steps (-478 at 5,000) in ~75 s; with
bf16 imagination -563 at 5,400 steps. The test stops at the first iteration at or above
-700 (an improvement of > 600 over random) and allows 6,000 env steps.
"""

import pytest

from mbrl_fast.agents.dreamer import Dreamer

pytest.importorskip("gymnasium")

REDUCED = dict(steps=6000, train_every=200, train_steps=40, prefill=200, action_repeat=2,
               batch_size=16, seq_len=32, horizon=15, actor_layers=2, actor_units=64,
               critic_layers=2, critic_units=64, eval_episodes=3, seed=0,
               model=dict(deter=64, stoch=16, hidden=64, units=64, embed=64, layers=2))


@pytest.mark.slow
def test_dreamer_improves_pendulum_within_6000_steps():
    config = Dreamer.make_config("Pendulum-v1", **REDUCED)
    agent = Dreamer(config)
    returns = []
    try:
        for i in range(Dreamer.total_iterations(config)):
            returns.append(agent.run_iteration(i)["return"])
            if returns[-1] >= -700:
                break
    finally:
        agent.close()
    assert returns[0] < -1100  # one episode of random actions, then 40 updates: no skill yet
    assert max(returns) >= -700, returns
