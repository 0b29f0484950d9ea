"""Agents: each a published algorithm's loop with a Config dataclass of its published defaults."""

from mbrl_fast.agents.pets import PETS, PRESETS, PETSConfig, pets_config

__all__ = ["PETS", "PETSConfig", "PRESETS", "pets_config"]
