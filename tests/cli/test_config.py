"""Config overrides: ``--set`` values are typed by the field they set."""

import pytest

from mbrl_fast.agents.dreamer import DreamerConfig
from mbrl_fast.config import apply_overrides, config_from_dict


@pytest.mark.parametrize("raw, expected", [("4e-4", 4e-4), ("3E-4", 3e-4), ("1e3", 1000.0),
                                           ("-2.5e-1", -0.25), (".5", 0.5), ("2", 2.0)])
def test_float_fields_take_exponent_literals(raw, expected):
    # YAML 1.1 (PyYAML) reads "4e-4" as a string; a float field must still take it
    config = apply_overrides(DreamerConfig(), [f"actor_lr={raw}", f"model.lr={raw}"])
    assert config.actor_lr == expected and isinstance(config.actor_lr, float)
    assert config.model.lr == expected


def test_non_numbers_stay_errors_naming_the_field():
    with pytest.raises(ValueError, match=r"config.actor_lr must be a float, got 'fast'"):
        apply_overrides(DreamerConfig(), ["actor_lr=fast"])
    with pytest.raises(ValueError, match=r"config.steps must be a int, got '1e5'"):
        apply_overrides(DreamerConfig(), ["steps=1e5"])  # ints are not read from floats
    with pytest.raises(ValueError, match=r"config.model.lr must be a float"):
        config_from_dict(DreamerConfig, {"model": {"lr": "1e-3x"}})
