"""Checkpoints against config.yaml: a changed field is refused, a field added later is not."""

import pytest

from mbrl_fast import runs

SAVED = {"env_id": "Pendulum-v1", "steps": 100, "lr": 1e-3, "model": {"units": 64}}


def _run(tmp_path, saved=SAVED):
    run = runs.RunDir(tmp_path / "run")
    run.write_config("dreamer", saved)
    run.save_checkpoint("dreamer", saved, {"weights": 1})
    return run


def test_field_added_after_the_checkpoint_takes_its_current_value(tmp_path):
    run = _run(tmp_path)
    now = {**SAVED, "actor_grad": "dynamics", "model": {"units": 64, "classes": 0}}
    assert run.load_checkpoint("dreamer", now, "steps") == {"weights": 1}
    # the budget may differ (an extended run); nothing else may
    assert run.load_checkpoint("dreamer", {**now, "steps": 500}, "steps") == {"weights": 1}


@pytest.mark.parametrize("now, field", [
    ({**SAVED, "lr": 3e-4}, "lr"),
    ({**SAVED, "model": {"units": 128}}, "model.units"),
    ({k: v for k, v in SAVED.items() if k != "lr"}, "lr"),  # a field the checkpoint has
])
def test_changed_or_dropped_field_is_refused_by_name(tmp_path, now, field):
    run = _run(tmp_path)
    with pytest.raises(runs.CheckpointError, match=rf"fields differ: \['{field}'\]"):
        run.load_checkpoint("dreamer", now, "steps")
