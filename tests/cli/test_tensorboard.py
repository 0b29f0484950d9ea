"""`mbrl-fast train --tensorboard`: metrics.csv mirrored as TensorBoard scalars, and a
resumed run shows each row once, with metrics.csv's values."""

from pathlib import Path

import pytest
from helpers import metrics_rows, train_pets_tiny

from mbrl_fast import runs
from mbrl_fast.cli import main

pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")
pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)


def _accumulator(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(Path(run_dir) / "tensorboard"))
    acc.Reload()
    return acc


def _assert_mirrors_metrics(run_dir, fields=("return", "model_loss", "planning_s", "trial")):
    rows, acc = metrics_rows(run_dir), _accumulator(run_dir)
    for field in fields:
        events = acc.Scalars(field)
        assert [e.step for e in events] == [int(r["env_steps"]) for r in rows], field
        for e, r in zip(events, rows, strict=True):
            assert e.value == pytest.approx(float(r[field]), rel=1e-6, abs=1e-6), field
            assert e.wall_time == pytest.approx(float(r["wall_clock_s"]), rel=1e-6)
    assert "env_steps" not in acc.Tags()["scalars"]  # it is the step


def test_train_writes_the_metrics_as_scalars(tmp_path):
    run = tmp_path / "run"
    assert train_pets_tiny(run, "--tensorboard") == 0
    assert len(metrics_rows(run)) == 2
    _assert_mirrors_metrics(run)
    tags = set(_accumulator(run).Tags()["scalars"])
    from mbrl_fast.agents.pets import TRIAL_FIELDS

    assert tags == set(TRIAL_FIELDS) - {"env_steps"}


def test_a_resumed_run_keeps_writing_and_shows_each_row_once(tmp_path):
    run = tmp_path / "run"
    assert train_pets_tiny(run, "--tensorboard") == 0
    # an event the checkpoint does not back (here: a stray value at a logged step) is
    # hidden once the run resumes and writes its rows again
    writer = runs.tensorboard_writer_class()(str(run / "tensorboard"))
    writer.add_scalar("return", 12345.0, int(metrics_rows(run)[1]["env_steps"]))
    writer.close()
    assert main(["train", "pets", "--resume", str(run), "--trials", "3",
                 "--no-progress"]) == 0  # no --tensorboard: the directory has it
    assert len(metrics_rows(run)) == 3
    _assert_mirrors_metrics(run)


def test_tensorboard_can_be_turned_on_when_resuming(tmp_path):
    run = tmp_path / "run"
    assert train_pets_tiny(run) == 0
    assert not (run / "tensorboard").exists()
    assert main(["train", "pets", "--resume", str(run), "--trials", "3", "--no-progress",
                 "--tensorboard"]) == 0
    _assert_mirrors_metrics(run)  # the two earlier rows too


def test_text_fields_are_left_out(tmp_path):
    log = runs.TensorBoardLog(tmp_path / "tensorboard", [],
                              ("iteration", "phase", "return", "env_steps", "wall_clock_s"))
    log.add(dict(iteration=0, phase="mpc", **{"return": -3.5}, env_steps=10,
                 wall_clock_s=2.0), 0)
    log.add(dict(iteration=1, phase="dagger", **{"return": 1.5}, env_steps=20,
                 wall_clock_s=4.0), 1)
    log.close()
    acc = _accumulator(tmp_path)
    assert set(acc.Tags()["scalars"]) == {"iteration", "return", "wall_clock_s"}
    assert [(e.step, e.value) for e in acc.Scalars("return")] == [(10, -3.5), (20, 1.5)]


def test_without_the_package_it_is_a_clear_error_and_nothing_is_written(tmp_path,
                                                                         monkeypatch, capsys):
    def missing():
        raise ImportError("TensorBoard logging needs the tensorboard package: pip install "
                          "tensorboard (or mbrl-fast[tensorboard])")

    monkeypatch.setattr(runs, "tensorboard_writer_class", missing)
    run = tmp_path / "run"
    assert train_pets_tiny(run, "--tensorboard") == 2
    err = capsys.readouterr().err
    assert "--tensorboard" in err and "pip install tensorboard" in err
    assert not run.exists()
