"""Which compiled backends are available, and which one an op call uses.

Backends, fastest first per device:
  CPU tensors:  ``cpu`` (mbrl_fast._C, C++/OpenMP)         -> ``reference`` (pure torch)
  CUDA tensors: ``cuda`` (mbrl_fast._C_cuda) / ``triton``   -> ``reference``

The ``cpu`` backend has one kernel path per instruction set, chosen at run time
(:func:`cpu_kernels`): ``avx512`` (AVX-512; bf16-packed weights run natively where
the CPU has AVX512-BF16) > ``avx2`` (AVX2 + FMA) > ``portable`` (standard C++). The
environment variable ``MBRL_FAST_CPU_KERNELS=auto|avx512|avx2|portable`` (read at every
call) forces a lower path; forcing one the CPU lacks raises an error naming the missing
CPU features. :func:`cpu_isa` names the fp32 path that runs now, and ``available()``
says which path runs and why.

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
from dataclasses import dataclass
from types import ModuleType
from typing import NamedTuple

import torch

BACKENDS = ("reference", "cpu", "triton", "cuda")
ENV_VAR = "MBRL_FAST_BACKEND"
CPU_KERNELS_ENV_VAR = "MBRL_FAST_CPU_KERNELS"
# The cpu backend's fp32 kernel paths, slowest first; index = csrc CpuIsa id.
CPU_ISAS = ("portable", "avx2", "avx512")

# Which backend auto prefers on a CUDA device, per op where measured otherwise (docs/gpu.md,
# "Measured on an H200"): Triton's ensemble_mlp ran 0.68x (fp32) / 0.43x (bf16) the CUDA
# kernel's time; CUDA won cem_update, mppi_update and noise; propagate is not measured yet.
_GPU_PREFERENCE = ("cuda", "triton")
_GPU_PREFERENCE_BY_OP = {"ensemble_mlp": ("triton", "cuda")}


@functools.lru_cache(maxsize=1)
def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


# What each compiled backend implements (the reference implements everything): the one
# place it is written. The ops' dispatch (:func:`supporting`), ``Reward.fused_on`` and
# :func:`available` read it; a test checks every entry has a launcher (ops/registry.py).
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "ensemble_mlp": ("cpu", "triton", "cuda"),
    "propagate": ("cpu", "triton", "cuda"),
    "propagate.policy": ("cpu", "triton", "cuda"),  # a policy in the loop (actions=None)
    "reward.model": ("cpu", "triton", "cuda"),  # fused in propagate: the model's reward head
    "reward.halfcheetah": ("cpu", "triton", "cuda"),  # fused built-in
    "reward.callback": ("cpu",),  # numba C callbacks are host code
    "noise": ("cpu", "triton", "cuda"),  # philox_uint32, uniform, normal (randint)
    "cem_update": ("cpu", "triton", "cuda"),
    "mppi_update": ("cpu", "triton", "cuda"),
    "truncated_normal": ("cpu", "cuda"),
    "colored_noise": ("cpu",),
    "imagine": ("cpu",),  # Dreamer's imagination rollout, forward and backward
    "skill_reward": ("cpu",),  # DADS's intrinsic reward
}


def supporting(*features: str) -> tuple[str, ...]:
    """The compiled backends that implement every one of ``features`` (CAPABILITIES keys)."""
    for f in features:
        if f not in CAPABILITIES:
            raise KeyError(f"unknown capability {f!r}; known: {sorted(CAPABILITIES)}")
    return tuple(b for b in BACKENDS[1:] if all(b in CAPABILITIES[f] for f in features))


def capabilities(name: str) -> tuple[str, ...]:
    """What backend ``name`` implements (every CAPABILITIES key for the reference)."""
    return tuple(f for f, names in CAPABILITIES.items() if name == "reference" or name in names)


class BackendStatus(NamedTuple):
    """One backend in :func:`available`."""

    available: bool
    reason: str
    capabilities: tuple[str, ...]  # what it implements (CAPABILITIES keys)


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


# ---- the cpu backend's kernel path ------------------------------------------------


@dataclass(frozen=True)
class CpuKernels:
    """The cpu backend's kernel path for a call: the fp32 ISA path, and how bf16 runs."""

    isa: str
    """fp32 path: "avx512", "avx2" or "portable" (one of CPU_ISAS)."""
    native_bf16: bool
    """bf16-packed weights run on AVX512-BF16 instructions (else they are unpacked to fp32
    once, cached per weight tensor and version, and run on the fp32 kernels of ``isa``)."""
    why: str
    """Why this path: forced by the environment, or what the CPU has."""

    @property
    def isa_id(self) -> int:
        return CPU_ISAS.index(self.isa)


def _cpu_missing(isa: str) -> str:
    """The CPU features kernel path ``isa`` needs that this CPU lacks ('' when none), from
    the compiled module's runtime check. Tests replace it to simulate another CPU."""
    return cpu_module().cpu_isa_missing(CPU_ISAS.index(isa))


def _cpu_has_avx512_bf16() -> bool:
    """Tests replace it, with :func:`_cpu_missing`, to simulate another CPU."""
    return bool(cpu_module().cpu_has_avx512_bf16())


def cpu_kernels() -> CpuKernels:
    """The kernel path a cpu-backend call takes now (reads ``MBRL_FAST_CPU_KERNELS``).

    Raises ValueError for an unknown value of the variable, and BackendUnavailable when
    it forces a path this CPU cannot run (naming the missing features) or when
    ``mbrl_fast._C`` is not built.
    """
    value = os.environ.get(CPU_KERNELS_ENV_VAR, "auto") or "auto"
    if value not in ("auto",) + CPU_ISAS:
        raise ValueError(f"{CPU_KERNELS_ENV_VAR} must be one of auto, avx512, avx2, portable; "
                         f"got {value!r}")
    if value == "auto":
        isa, why = "portable", ""
        for candidate in ("avx512", "avx2"):
            missing = _cpu_missing(candidate)
            if not missing:
                isa = candidate
                break
            why = why or f"the CPU lacks {missing}"
        why = why or "the best path this CPU runs"
    else:
        missing = _cpu_missing(value)
        if missing:
            raise BackendUnavailable(
                f"{CPU_KERNELS_ENV_VAR}={value} asks for the {value} kernels, but this CPU lacks "
                f"{missing}; unset it (auto picks the best path this CPU runs) or choose one of: "
                + ", ".join(i for i in reversed(CPU_ISAS) if not _cpu_missing(i)))
        isa, why = value, f"{CPU_KERNELS_ENV_VAR}={value}"
    return CpuKernels(isa, isa == "avx512" and _cpu_has_avx512_bf16(), why)


def cpu_isa() -> str:
    """The fp32 kernel path the cpu backend runs now: "avx512", "avx2" or "portable"
    ("reference" when mbrl_fast._C is not built: the ops then run the pure-torch
    reference). Raises like :func:`cpu_kernels` for a bad ``MBRL_FAST_CPU_KERNELS``."""
    if _load("mbrl_fast._C")[0] is None:
        return "reference"
    return cpu_kernels().isa


def _cpu_status() -> tuple[bool, str]:
    mod, why = _load("mbrl_fast._C")
    if mod is None:
        return False, why
    try:
        k = cpu_kernels()
    except (ValueError, BackendUnavailable) as exc:
        return True, f"available, but cpu calls raise: {exc}"
    if k.native_bf16:
        bf16 = "AVX512-BF16 for bf16 weights"
    else:
        bf16 = "bf16 weights run as fp32" + ("" if _cpu_has_avx512_bf16() else
                                             ", the CPU lacks AVX512-BF16")
    return True, f"available: {k.isa} ({bf16}; {k.why})"


def status(name: str) -> tuple[bool, str]:
    """(available, reason) for one backend."""
    if name == "reference":
        return True, "available (pure torch)"
    if name == "cpu":
        return _cpu_status()
    if name == "cuda":
        return _cuda_status()
    if name == "triton":
        return _triton_status()
    raise ValueError(f"backend must be one of {BACKENDS + ('auto',)}, got {name!r}")


def available() -> dict[str, BackendStatus]:
    """Every backend with (available, reason, capabilities), e.g. ``{"cpu": (True,
    "available: avx512 (AVX512-BF16 for bf16 weights; the best path this CPU runs)",
    ("ensemble_mlp", "propagate", ...)), ...}``."""
    return {name: BackendStatus(*status(name), capabilities(name)) for name in BACKENDS}


def is_available(name: str) -> bool:
    if name == "cpu":  # cheap: select() asks on every call
        return _load("mbrl_fast._C")[0] is not None
    return status(name)[0]


# ---- auto on CPU tensors: the compiled kernels unless the reference is measured faster ----
#
# bench/cpu_auto_rule.py times every op at sizes from one row to a planning step, compiled
# (each kernel path) against the reference. Measured on AMD EPYC (Zen 5, AVX-512 +
# AVX512-BF16), torch 2.13.0 (MKL sgemm), 1 thread, CPU time, minimum of 9 calls
# (bench/results/cpu_auto_rule_1thread.json; ratio = reference time / compiled time):
#   propagate, elite_update ops, noise: compiled faster on every path at every size, 1.5x
#     (colored noise, N1 P500 H30 A6) to 67x (noise, 40 values); the reference runs every
#     member on every row and a Python loop over steps.
#   ensemble_mlp: avx512 1.09-3.6x at every size; avx2 1.03-2.0x, 0.96x (equal within run-
#     to-run noise, 0.96-1.09x) at batch 1024 through 512-1024-1024-512, and 0.55x at batch
#     1 through those layers (one row is padded to a 4-row block; torch runs a
#     matrix-vector product); portable (the generic C++, here its AVX build) 0.56-0.78x
#     from 6 MMAC on (MKL's sgemm beats auto-vectorized code; one point near equal runs
#     0.83-1.33x: E5 B4096 at 200 wide), 1.05-1.8x at 0.1 MMAC and below (the reference's
#     per-layer launches dominate), 0.74x at 0.26 MMAC.
# Threads are not in a 1-thread measurement: the kernels split work over (member, 96-row
# tile) tasks, torch's matmul over every thread, so with fewer tasks than threads the
# reference gets the threads the kernel leaves idle.
_PORTABLE_MLP_MAX_MACS = 150_000  # portable ensemble_mlp: compiled only below this
_BATCH1_MLP_MAX_MACS_PER_ROW = 500_000  # batch < 4 rows: compiled only below this per row
_FEW_TASKS_MLP_MAX_MACS = 2_000_000  # fewer tasks than threads: compiled only below this


def cpu_beats_reference(op: str, size: dict | None = None) -> bool:
    """Whether auto runs the compiled cpu kernels for this call (else the reference): the
    measured rule above. ``size`` for ensemble_mlp: ``{"members": E, "batch": B,
    "sizes": (d_0, ..., d_L)}``; the other ops need none (compiled always wins)."""
    if op != "ensemble_mlp" or size is None:
        return True
    e, b, sizes = size["members"], size["batch"], size["sizes"]
    per_row = sum(i * o for i, o in zip(sizes[:-1], sizes[1:], strict=True))
    macs = e * b * per_row
    if cpu_kernels().isa == "portable" and macs >= _PORTABLE_MLP_MAX_MACS:
        return False
    if b < 4 and per_row >= _BATCH1_MLP_MAX_MACS_PER_ROW:
        return False
    tasks = e * -(-b // 96)
    return tasks >= torch.get_num_threads() or macs < _FEW_TASKS_MLP_MAX_MACS


def select(backend: str, device: torch.device, supported: Sequence[str], op: str,
           size: dict | None = None) -> str:
    """The backend an op call runs on.

    ``supported``: the backends that can run this particular call (the op knows,
    e.g. a feature the compiled kernel lacks). ``reference`` is always implied.
    ``size``: what :func:`cpu_beats_reference` needs to choose for this op (auto on CPU
    tensors runs the reference where it is measured faster).
    """
    if backend not in BACKENDS + ("auto",):
        raise ValueError(f"backend must be one of {BACKENDS + ('auto',)}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get(ENV_VAR, "auto") or "auto"
        if backend not in BACKENDS + ("auto",):
            raise ValueError(f"{ENV_VAR} must be one of {BACKENDS + ('auto',)}, got {backend!r}")
    if backend != "auto":
        if not is_available(backend):
            raise BackendUnavailable(f"{op}: backend {backend!r} is unavailable: "
                                     f"{status(backend)[1]}")
        if backend != "reference" and backend not in supported:
            raise BackendUnavailable(f"{op}: backend {backend!r} does not support this call")
        if not _device_ok(backend, device):
            raise BackendUnavailable(f"{op}: backend {backend!r} cannot run on device {device}")
        return backend
    if device.type == "cuda":
        order = _GPU_PREFERENCE_BY_OP.get(op, _GPU_PREFERENCE)
    else:
        order = ("cpu", "triton")
    for name in order:
        if name in supported and _device_ok(name, device) and is_available(name):
            if name == "triton" and device.type == "cpu":
                continue  # the interpreter is for tests, never an automatic choice
            if name == "cpu" and not cpu_beats_reference(op, size):
                continue
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
