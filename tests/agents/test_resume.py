"""The agent protocol's resume guarantee, for every agent: a run SIGKILLed inside an
iteration and resumed loses no real record (tests/helpers.py: check_sigkill_resume)."""

import sys

import numpy as np
import pytest
from helpers import check_sigkill_resume

from mbrl_fast.agents import list_agents

pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")

PY = [sys.executable, "-m", "mbrl_fast", "train"]

# Per agent: a small run whose iterations last long enough (~0.1 s per step) for the kill to
# land inside one, and its number of iterations.
RUNS = {
    "pets": (["--env", "InvertedPendulum-v5", "--trials", "5", "--episode-steps", "40",
              "--set", "planner.population=200", "--set", "planner.num_elites=4",
              "--set", "planner.horizon=10", "--set", "planner.particles=10",
              "--set", "planner.iterations=1", "--set", "model.ensemble_size=3",
              "--set", "model.num_elites=2", "--set", "model.hidden=128",
              "--set", "model.layers=2", "--set", "train.epochs=2"], 5),
    "sac": (["--env", "Pendulum-v1", "--steps", "400", "--set", "epoch_length=100",
             "--set", "initial_random_steps=50", "--set", "eval_episodes=1",
             "--set", "updates_per_step=4"], 4),
    "mbpo": (["--env", "InvertedPendulum-v5", "--steps", "240", "--set", "epoch_length=60",
              "--set", "initial_random_steps=40", "--set", "model_train_freq=30",
              "--set", "rollout_batch=500", "--set", "updates_per_step=2",
              "--set", "eval_episodes=1", "--set", "model.hidden=32",
              "--set", "train.epochs=2"], 4),
    "mbmf": (["--env", "InvertedPendulum-v5", "--steps", "256", "--episode-steps", "40",
              "--set", "random_rollouts=10", "--set", "aggregation_iters=2",
              "--set", "mpc_rollouts=2", "--set", "dagger_iters=1", "--set", "dagger_rollouts=2",
              "--set", "dagger_epochs=5", "--set", "ppo_chunk_steps=128",
              "--set", "ppo.n_steps=128", "--set", "ppo.batch_size=32",
              "--set", "model.hidden=32", "--set", "train.epochs=3",
              "--set", "planner.population=200", "--set", "planner.horizon=10"], 6),
    "dads": (["--env", "MBRLFast/PointMass-v0", "--steps", "800",
              "--set", "samples_per_iteration=200", "--set", "episode_steps=50",
              "--set", "prior_samples=50", "--set", "policy_steps=16", "--set", "eval_every=0",
              "--set", "skill_dynamics.hidden=32", "--set", "sac.hidden=64"], 4),
    "dreamer": (["--env", "Pendulum-v1", "--steps", "240", "--set", "train_every=60",
                 "--set", "train_steps=20", "--set", "prefill=60", "--set", "batch_size=4",
                 "--set", "seq_len=10", "--set", "horizon=3", "--set", "actor_units=16",
                 "--set", "critic_units=16", "--set", "eval_episodes=1",
                 "--set", "model.deter=16", "--set", "model.stoch=8", "--set", "model.hidden=16",
                 "--set", "model.units=16", "--set", "model.embed=16"], 4),
}


# agents whose budget is env steps (``--steps``) and whose metrics report env_steps
COUNTS_ENV_STEPS = {"sac", "mbpo", "dads", "dreamer"}


def test_every_registered_agent_has_a_resume_check():
    assert set(list_agents()) <= set(RUNS), "add the new agent to RUNS"


@pytest.mark.parametrize("algo", sorted(RUNS))
def test_sigkill_mid_run_loses_no_record(tmp_path, algo):
    args, iterations = RUNS[algo]
    run = tmp_path / "run"
    train = PY + [algo, *args, "--run-dir", str(run), "--no-progress"]
    resume = PY + [algo, "--resume", str(run), "--no-progress"]
    steps = int(args[args.index("--steps") + 1]) if algo in COUNTS_ENV_STEPS else None
    check_sigkill_resume(run, train, resume, total_iterations=iterations, env_steps=steps)


@pytest.mark.parametrize("algo", sorted(COUNTS_ENV_STEPS))
def test_an_iteration_whose_journal_kept_every_record_collects_nothing_more(algo):
    """Killed after the last step of an iteration but before its checkpoint: the resumed
    iteration restores all of its records, steps no env and still trains and reports."""
    from mbrl_fast.agents import get_agent
    from mbrl_fast.cli import _parser, train_config

    args, _ = RUNS[algo]
    config = train_config(_parser().parse_args(["train", algo, *args]))
    cls = get_agent(algo)
    first, second = cls(config), cls(config)
    try:
        kept = []
        row = first.run_iteration(0, record=lambda **fields: kept.append(fields))
        records = first.records()
        assert len(kept) == len(records) > 0
        second.restore(records)
        again = second.run_iteration(0, attempt=1)
        assert again["env_steps"] == row["env_steps"]
        np.testing.assert_array_equal(second.records(), records)
    finally:
        first.close()
        second.close()
