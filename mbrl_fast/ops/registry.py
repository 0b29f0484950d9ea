"""The launchers of every op on every compiled backend: the ops' dispatch looks them up here.

A launcher takes the op's validated, contiguous arguments and returns what the
reference returns, with one exception written in the contract: propagate launchers
return per-particle returns [N, P, K] (ops/contract.PropagateResult); the op averages.

The cpu and cuda launcher modules import nothing optional (their compiled modules load
lazily through :mod:`mbrl_fast.backends`) and are imported here. The Triton launchers
need the optional ``triton`` package, so their modules are imported on first use.
What each backend implements is :data:`mbrl_fast.backends.CAPABILITIES`; a test checks
that this table has a launcher for every entry there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from mbrl_fast import backends
from mbrl_fast.ops import _cpu, _cpu_imagine, _cuda

_LAUNCHERS: dict[str, dict[str, Callable]] = {
    "cpu": {
        "ensemble_mlp": _cpu.ensemble_mlp_cpu,
        "propagate": _cpu.propagate_cpu,
        "noise": _cpu.philox_fill,
        "cem_update": _cpu.cem_update_cpu,
        "mppi_update": _cpu.mppi_update_cpu,
        "truncated_normal": _cpu.truncated_normal_cpu,
        "colored_noise": _cpu.colored_noise_cpu,
        "imagine": _cpu_imagine.imagine_cpu,
        "skill_reward": _cpu.skill_reward_cpu,
    },
    "cuda": {
        "ensemble_mlp": _cuda.ensemble_mlp_cuda,
        "propagate": _cuda.propagate_cuda,
        "noise": _cuda.philox_fill,
        "cem_update": _cuda.cem_update_cuda,
        "mppi_update": _cuda.mppi_update_cuda,
        "truncated_normal": _cuda.truncated_normal_cuda,
    },
}

# op -> (module under mbrl_fast/ops/_triton, launcher name), imported on first use.
_TRITON: dict[str, tuple[str, str]] = {
    "ensemble_mlp": ("ensemble_mlp", "ensemble_mlp_triton"),
    "propagate": ("propagate", "propagate_triton"),
    "noise": ("noise", "fill"),
    "cem_update": ("elite_update", "cem_update_triton"),
    "mppi_update": ("elite_update", "mppi_update_triton"),
}


# (op, backend) -> whether that launcher takes these arguments: limits of a kernel that the
# capability table cannot say (e.g. the CPU imagine kernels' layer and head counts).
_ACCEPTS: dict[tuple[str, str], Callable[..., bool]] = {
    ("imagine", "cpu"): _cpu_imagine.supports,
}


def accepts(op: str, backend: str, *args) -> bool:
    """Whether ``backend``'s launcher of ``op`` runs these arguments (True unless a limit
    in ``_ACCEPTS`` says otherwise)."""
    check = _ACCEPTS.get((op, backend))
    return True if check is None else bool(check(*args))


def triton_modules() -> tuple[str, ...]:
    """The modules under mbrl_fast/ops/_triton that hold launchers (imported on first use;
    the op tests import them ahead to decorate the kernels for Triton's interpreter)."""
    return tuple(sorted({module for module, _ in _TRITON.values()}))


def launcher(op: str, backend: str) -> Callable:
    """The launcher of ``op`` (a CAPABILITIES key naming an op) on compiled ``backend``."""
    if backend not in backends.CAPABILITIES.get(op, ()):
        raise KeyError(f"backends.CAPABILITIES has no {backend!r} launcher for {op!r}")
    if backend == "triton":
        module, name = _TRITON[op]
        return getattr(importlib.import_module(f"mbrl_fast.ops._triton.{module}"), name)
    return _LAUNCHERS[backend][op]
