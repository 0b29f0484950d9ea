"""The ``backend`` fixture every op test file runs on: each compiled backend and kernel path.

One parameter per way an op can run compiled:

- ``cpu-avx512``, ``cpu-avx2``, ``cpu-portable``: the cpu backend's kernel paths
  (``MBRL_FAST_CPU_KERNELS``), and ``cpu-portable-baseline``: the portable path's x86-64
  baseline (SSE2) build, which the portable path runs on x86 CPUs without AVX;
- ``triton``: on a CUDA device where there is one, else in Triton's CPU interpreter
  (``TRITON_INTERPRET=1``, CPU tensors);
- ``cuda``: the CUDA backend (a CUDA device; marked ``gpu``).

A parameter this machine cannot run is skipped with the reason. A test module (or test) says
which capabilities it exercises with ``pytest.mark.op("propagate", "reward.model", ...)``
(keys of ``backends.CAPABILITIES``); a backend that lacks one is skipped, naming it, so a
backend that gains a capability is tested by the same file without an edit.

The test calls the op with ``backend=backend.name`` on inputs moved by ``backend.to(...)``
(CPU tensors for the cpu backend and the interpreter, CUDA tensors otherwise); references
run on the CPU, and ``helpers.assert_close`` compares across devices.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, fields, is_dataclass, replace

import pytest
import torch
from helpers import cpu_path_missing

from mbrl_fast import backends
from mbrl_fast.ops import registry

HAS_CUDA = torch.cuda.is_available()


def _import_interpreted_triton_kernels() -> str:
    """Without CUDA, import triton and the kernel modules for the interpreter: ``@triton.jit``
    (in Triton's own ``triton.language`` helpers too) reads ``TRITON_INTERPRET`` when a module
    is imported, so they are imported here with it set, once, before any test runs. The
    variable itself is set only inside the tests of the ``triton`` parameter (the backend is
    available only while it is), so nothing else in the session sees an interpreted Triton
    backend. Returns why the interpreter cannot run ('' if it can)."""
    if HAS_CUDA:
        return ""
    if "triton" in sys.modules and not triton_knobs_interpret_at_import():
        return "triton was imported before tests/ops/conftest.py, without TRITON_INTERPRET=1"
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        importlib.import_module("triton")
        for module in registry.triton_modules():
            importlib.import_module(f"mbrl_fast.ops._triton.{module}")
    except ImportError as exc:
        return f"triton is not installed ({exc})"
    finally:
        if before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = before
    return ""


def triton_knobs_interpret_at_import() -> bool:
    """Whether the triton already imported decorated its own helpers for the interpreter."""
    import triton.language as tl

    return type(tl.cdiv).__name__ == "InterpretedFunction"


TRITON_MISSING = _import_interpreted_triton_kernels()

CPU_PATHS = ("avx512", "avx2", "portable", "portable-baseline")
PARAMS = [*(f"cpu-{p}" for p in CPU_PATHS), "triton", "cuda"]


@dataclass(frozen=True)
class Backend:
    """One parameter of the ``backend`` fixture."""

    param: str  # "cpu-avx2", "triton", ...
    name: str  # the op's ``backend`` argument: "cpu", "triton" or "cuda"
    device: torch.device  # where its inputs live

    @property
    def interpreted(self) -> bool:
        """Triton in its CPU interpreter (slow: tests may use smaller sizes)."""
        return self.name == "triton" and self.device.type == "cpu"

    def to(self, x):
        """``x`` on this backend's device: a tensor, None, a tuple / list of them, or a
        dataclass of them (MLPParams, ImagineParams, ...; other fields kept)."""
        if x is None or isinstance(x, (int, float, str)):
            return x
        if isinstance(x, torch.Tensor):
            return x.to(self.device)
        if isinstance(x, (tuple, list)):
            return type(x)(self.to(v) for v in x)
        if is_dataclass(x):
            return replace(x, **{f.name: self.to(getattr(x, f.name)) for f in fields(x)
                                 if f.init and _holds_tensors(getattr(x, f.name))})
        return x


def _holds_tensors(v) -> bool:
    if isinstance(v, torch.Tensor):
        return True
    if isinstance(v, (tuple, list)):
        return any(_holds_tensors(t) for t in v)
    return is_dataclass(v) and not isinstance(v, type)


def _skip_reason(param: str, features: tuple[str, ...]) -> str:
    name = param.split("-", 1)[0]
    if features:
        lacking = [f for f in features if name not in backends.CAPABILITIES[f]]
        if lacking:
            return f"{name} does not implement {', '.join(lacking)} (backends.CAPABILITIES)"
    if name == "cpu":
        why = cpu_path_missing(param.removeprefix("cpu-"))
        return f"{param} kernels: {why}" if why else ""
    if name == "triton":
        return TRITON_MISSING
    ok, why = backends.status("cuda")
    if not ok and HAS_CUDA:  # a GPU machine without the module: a failure, not a skip
        pytest.fail(f"cuda backend unavailable on a CUDA machine: {why}")
    return "" if ok else f"cuda: {why}"


@pytest.fixture(params=[pytest.param(p, marks=pytest.mark.gpu)
                        if p == "cuda" or (p == "triton" and HAS_CUDA) else p for p in PARAMS])
def backend(request, monkeypatch):
    """Each compiled backend / kernel path this machine runs (see the module docstring)."""
    features = tuple(f for m in request.node.iter_markers("op") for f in m.args)
    for f in features:
        if f not in backends.CAPABILITIES:
            raise KeyError(f"pytest.mark.op({f!r}): not a key of backends.CAPABILITIES")
    why = _skip_reason(request.param, features)
    if why:
        pytest.skip(why)
    name = request.param.split("-", 1)[0]
    device = torch.device("cuda" if name == "cuda" or (name == "triton" and HAS_CUDA) else "cpu")
    if name == "cpu":
        path = request.param.removeprefix("cpu-")
        monkeypatch.setenv(backends.CPU_KERNELS_ENV_VAR, path.removesuffix("-baseline"))
        baseline = path.endswith("-baseline")
        if baseline:
            backends.cpu_module().set_portable_baseline_only(True)
            request.addfinalizer(lambda: backends.cpu_module().set_portable_baseline_only(False))
    elif name == "triton" and not HAS_CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    yield Backend(request.param, name, device)


@pytest.fixture
def cpu_backend(backend):
    """``backend`` restricted to the cpu kernel paths (tests of cpu-only behaviour, such as
    the kernels' tile boundaries or the numba C callbacks' threading)."""
    if backend.name != "cpu":
        pytest.skip("a test of the cpu backend's kernels")
    return backend
