"""`mbrl-fast train AGENT --resume DIR --set ...`: the settings a resumed run may change
(runs.RESUME_SETTINGS) beyond the thread count (tests/cli/test_cli.py)."""

import pytest
from helpers import train_pets_tiny
from test_cli import _snapshot

from mbrl_fast import runs
from mbrl_fast.cli import main

pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")


def test_a_resumed_run_may_start_compiling_its_model_training(tmp_path, capsys):
    """``--resume --set train.compile=true``: the run's config.yaml and its trainer take the
    option, the checkpoint (written without it) still loads; an agent without a model
    (SAC) says that it has no such field, and nothing is written."""
    run = tmp_path / "r"
    assert train_pets_tiny(run, trials=2) == 0
    _, agent, _, _ = runs.resume_run(run, settings={"train.compile": True})
    try:
        assert agent.config.train.compile is True and agent.trainer.compile is True
        assert agent.iterations_done == 2
    finally:
        agent.close()
    _, config = runs.RunDir(run).read_config()
    assert config["train"]["compile"] is True and config["trials"] == 2
    _, agent, _, _ = runs.resume_run(run, settings={"train.compile": False})  # and back
    agent.close()
    assert runs.RunDir(run).read_config()[1]["train"]["compile"] is False

    sac_run = tmp_path / "sac"
    assert main(["train", "sac", "--env", "Pendulum-v1", "--steps", "20", "--run-dir",
                 str(sac_run), "--no-progress", "--set", "epoch_length=10", "--set",
                 "initial_random_steps=20", "--set", "eval_episodes=1"]) == 0
    before = _snapshot(sac_run)
    assert main(["train", "sac", "--resume", str(sac_run), "--set", "train.compile=true"]) == 2
    err = capsys.readouterr().err
    assert "'train.compile'" in err and "no such setting to change" in err
    assert _snapshot(sac_run) == before
