"""Which compiled backends are available, and which one an op call uses.

Backends, fastest first per device:
  CPU tensors:  ``cpu`` (mbrl_fast._C, C++/OpenMP/AVX-512)  -> ``reference`` (pure torch)
  CUDA tensors: ``cuda`` (mbrl_fast._C_cuda) / ``triton``   -> ``reference``

Every op takes ``backend="auto" | "reference" | "cpu" | "triton" | "cuda"``.
``auto`` picks the fastest available backend that supports the call and falls
back to the next one; an explicitly requested backend that is unavailable, or
that cannot run these arguments, raises. The environment variable
``MBRL_FAST_BACKEND`` replaces ``auto`` (not explicit requests) for every call.

Modules load lazily: importing mbrl_fast never needs a GPU, a driver or Triton.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Sequence
from types import ModuleType

import torch

BACKENDS = ("reference", "cpu", "triton", "cuda")
ENV_VAR = "MBRL_FAST_BACKEND"

# Which backend auto prefers on a CUDA device. Measured rule (see README,
# "Backends"); the GPU issue refines it per op.
_GPU_PREFERENCE = ("cuda", "triton")


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend is not available or cannot run the call."""


@functools.cache
def _load(name: str) -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module(name), "available"
    except Exception as exc:  # ImportError, OSError from a missing driver, ...
        return None, f"{type(exc).__name__}: {exc}"


def cpu_module() -> ModuleType:
    """The compiled CPU module ``mbrl_fast._C`` (raises BackendUnavailable if not built)."""
    mod, why = _load("mbrl_fast._C")
    if mod is None:
        raise BackendUnavailable(f"backend 'cpu' is unavailable: {why}")
    return mod


def cuda_module() -> ModuleType:
    """The compiled CUDA module ``mbrl_fast._C_cuda`` (raises BackendUnavailable)."""
    ok, why = _cuda_status()
    if not ok:
        raise BackendUnavailable(f"backend 'cuda' is unavailable: {why}")
    return _load("mbrl_fast._C_cuda")[0]


def _cuda_status() -> tuple[bool, str]:
    mod, why = _load("mbrl_fast._C_cuda")
    if mod is None:
        return False, f"mbrl_fast._C_cuda was not built or does not load ({why})"
    if not torch.cuda.is_available():
        return False, "torch reports no CUDA device"
    return True, "available"


def _triton_status() -> tuple[bool, str]:
    mod, why = _load("triton")
    if mod is None:
        return False, f"triton is not installed ({why})"
    if torch.cuda.is_available() or triton_interpret():
        where = " (TRITON_INTERPRET=1, CPU tensors)" if triton_interpret() else ""
        return True, "available" + where
    return False, "no CUDA device (set TRITON_INTERPRET=1 to run Triton kernels on CPU tensors)"


def triton_interpret() -> bool:
    """True when Triton runs in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def status(name: str) -> tuple[bool, str]:
    """(available, reason) for one backend."""
    if name == "reference":
        return True, "available (pure torch)"
    if name == "cpu":
        mod, why = _load("mbrl_fast._C")
        return (mod is not None), ("available" if mod is not None else why)
    if name == "cuda":
        return _cuda_status()
    if name == "triton":
        return _triton_status()
    raise ValueError(f"backend must be one of {BACKENDS + ('auto',)}, got {name!r}")


def available() -> dict[str, tuple[bool, str]]:
    """Every backend with (available, reason): ``{"cpu": (True, "available"), ...}``."""
    return {name: status(name) for name in BACKENDS}


def is_available(name: str) -> bool:
    return status(name)[0]


def select(backend: str, device: torch.device, supported: Sequence[str], op: str) -> str:
    """The backend an op call runs on.

    ``supported``: the backends that can run this particular call (the op knows,
    e.g. a feature the compiled kernel lacks). ``reference`` is always implied.
    """
    if backend not in BACKENDS + ("auto",):
        raise ValueError(f"backend must be one of {BACKENDS + ('auto',)}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get(ENV_VAR, "auto") or "auto"
        if backend not in BACKENDS + ("auto",):
            raise ValueError(f"{ENV_VAR} must be one of {BACKENDS + ('auto',)}, got {backend!r}")
    if backend != "auto":
        ok, why = status(backend)
        if not ok:
            raise BackendUnavailable(f"{op}: backend {backend!r} is unavailable: {why}")
        if backend != "reference" and backend not in supported:
            raise BackendUnavailable(f"{op}: backend {backend!r} does not support this call")
        if not _device_ok(backend, device):
            raise BackendUnavailable(f"{op}: backend {backend!r} cannot run on device {device}")
        return backend
    order = _GPU_PREFERENCE if device.type == "cuda" else ("cpu", "triton")
    for name in order:
        if name in supported and _device_ok(name, device) and is_available(name):
            if name == "triton" and device.type == "cpu":
                continue  # the interpreter is for tests, never an automatic choice
            return name
    return "reference"


def _device_ok(name: str, device: torch.device) -> bool:
    if name == "reference":
        return True
    if name == "cpu":
        return device.type == "cpu"
    if name == "cuda":
        return device.type == "cuda"
    return device.type == "cuda" or (device.type == "cpu" and triton_interpret())
