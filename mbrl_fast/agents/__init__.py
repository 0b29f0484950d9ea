"""Agents: each a published algorithm's loop with a Config dataclass of its published defaults.

The registry maps a name to the module that defines the agent, imported on first
use (``get_agent("pets")``), so that importing this package needs neither
gymnasium nor any agent's dependencies. Every agent follows the protocol of
:mod:`mbrl_fast.agents.base`; ``register_agent`` adds one of your own.
"""

from __future__ import annotations

import importlib

from mbrl_fast.agents.base import Agent, Episode, check_units, episode_seed, run_episode

# name -> "module:Class"; the modules import their heavy dependencies lazily.
_BUILTIN = {
    "pets": "mbrl_fast.agents.pets:PETS",
    "sac": "mbrl_fast.agents.offpolicy:SACAgent",
    "mbpo": "mbrl_fast.agents.mbpo:MBPO",
    "mbmf": "mbrl_fast.agents.mbmf:MBMF",
    "dads": "mbrl_fast.agents.dads:DADS",
    "dreamer": "mbrl_fast.agents.dreamer:Dreamer",
}
_LOADED: dict[str, type[Agent]] = {}


def register_agent(cls: type[Agent], *, overwrite: bool = False) -> type[Agent]:
    """Add an :class:`Agent` subclass under ``cls.name`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise TypeError(f"register_agent: need an Agent subclass, got {cls!r}")
    check_units(cls)
    known = _LOADED.get(cls.name)
    if known is not None and known is not cls and not overwrite:
        raise ValueError(f"register_agent: an agent named {cls.name!r} is already registered; "
                         "pass overwrite=True to replace it")
    _LOADED[cls.name] = cls
    return cls


def get_agent(name: str) -> type[Agent]:
    """The agent class registered as ``name`` (ValueError naming the known ones)."""
    if name not in _LOADED:
        if name not in _BUILTIN:
            raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(list_agents())}")
        module, cls_name = _BUILTIN[name].split(":")
        register_agent(getattr(importlib.import_module(module), cls_name))
    return _LOADED[name]


def list_agents() -> list[str]:
    """Every registered agent name, sorted."""
    return sorted(set(_BUILTIN) | set(_LOADED))


__all__ = ["Agent", "Episode", "episode_seed", "get_agent", "list_agents", "register_agent",
           "run_episode"]
