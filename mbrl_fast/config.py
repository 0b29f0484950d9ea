"""Config dataclasses as plain data: to / from dicts, ``--set`` overrides, task presets.

Every agent's config is a dataclass (nested dataclasses for its sections) whose
fields carry a one-line docstring and the published default. Run directories
store it as YAML (``config_to_dict``); the CLI rebuilds it with type checks
(``config_from_dict``) and applies ``section.field=value`` overrides
(``apply_overrides``); ``with_preset`` layers a task's preset over the defaults.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import yaml


def config_to_dict(config) -> dict:
    """Nested plain data (tuples as lists, so that it dumps as YAML)."""
    return _plain(dataclasses.asdict(config))


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_from_dict(cls, data: dict, where: str = "config"):
    """Build dataclass ``cls`` from a dict; unknown keys or wrong types -> ValueError."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    defaults = cls()
    for name, value in data.items():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = config_from_dict(type(default), value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, default, f"{where}.{name}")
    return cls(**kwargs)


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(value, default, where: str):
    """value converted to the type of ``default`` (int -> float allowed)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 3e-4 (no dot) as a string
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple))
        value = tuple(value) if ok else value
    else:
        ok = True
    if not ok:
        raise ValueError(f"{where} must be a {type(default).__name__}, got {value!r}")
    return value


def apply_overrides(config, overrides: list[str]):
    """``["planner.population=200", "train.lr=3e-4"]`` applied to a config dataclass."""
    data = config_to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like section.field=value")
        _set_field(data, key, yaml.safe_load(raw), f"override {item!r}")
    return config_from_dict(type(config), data)


def with_fields(config, values: Mapping):
    """``config`` with the fields named by dotted keys replaced (``{"train.compile": True}``),
    types checked as config_from_dict checks them; ValueError for a field it lacks."""
    data = config_to_dict(config)
    for key, value in values.items():
        _set_field(data, key, value, type(config).__name__)
    return config_from_dict(type(config), data)


def without_fields(data: Mapping, keys) -> dict:
    """Plain config data less the fields named by dotted ``keys`` (absent ones ignored)."""
    out = dict(data)
    for key in keys:
        head, _, rest = key.partition(".")
        if rest and isinstance(out.get(head), Mapping):
            out[head] = without_fields(out[head], [rest])
        elif not rest:
            out.pop(head, None)
    return out


def _set_field(data: dict, key: str, value, where: str) -> None:
    """data's field ``key`` (dotted: section.field) <- value; ValueError naming ``where``."""
    node, parts = data, key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ValueError(f"{where}: {part!r} is not a config section (field {key!r})")
        node = node[part]
    if parts[-1] not in node:
        raise ValueError(f"{where}: unknown field {key!r}")
    node[parts[-1]] = value


def merge(base: Mapping, update: Mapping) -> dict:
    """``update`` over ``base``, recursing into sections (dicts) present in both."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def with_preset(cls, presets: Mapping[str, Mapping], env_id: str, **overrides):
    """``cls(env_id=env_id)`` with the task's preset (if any) and then ``overrides`` applied.

    Presets and overrides are dicts of top-level fields, sections as nested dicts
    (``model=dict(hidden=64)``); unknown fields raise ValueError.
    """
    data = merge(config_to_dict(cls(env_id=env_id)), presets.get(env_id, {}))
    return config_from_dict(cls, merge(data, overrides))
