"""Which CPU kernel path mbrl-fast runs, and forcing one for a measurement.

The cpu backend reads ``MBRL_FAST_CPU_KERNELS`` (``auto`` or a path: ``avx512``,
``avx2``, ``portable``) at every call, so a benchmark times one path by setting the
variable around its calls (:func:`forced`). Builds without the ISA dispatch accept only
``auto`` and ``portable``; :func:`cpu_isa` then derives the path from the CPU check of
``mbrl_fast._C``, and forcing another path is reported as unavailable, with the reason.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from mbrl_fast import backends

ENV_VAR = "MBRL_FAST_CPU_KERNELS"
PATHS = ("avx512", "avx2", "portable")  # fastest first


def cpu_isa() -> str:
    """The fp32 kernel path a cpu-backend call takes now: "avx512", "avx2", "portable", or
    "reference" when ``mbrl_fast._C`` is not built. Raises (ValueError, or the backend's
    error naming the missing CPU features) for a path this build or CPU cannot run."""
    fn = getattr(backends, "cpu_isa", None)
    if fn is not None:
        return fn()
    if not backends.is_available("cpu"):
        return "reference"
    value = os.environ.get(ENV_VAR, "auto") or "auto"
    if value not in ("auto", "portable"):
        raise ValueError(f"{ENV_VAR}={value}: this build of mbrl_fast._C has only the auto and "
                         "portable kernel choices (no ISA dispatch)")
    if value == "portable":
        return "portable"
    return "avx512" if backends.cpu_module().cpu_has_avx512() else "portable"


def bf16_native() -> bool | None:
    """Whether bf16-packed weights run on AVX512-BF16 instructions now (None: no _C)."""
    if not backends.is_available("cpu"):
        return None
    kernels = getattr(backends, "cpu_kernels", None)
    if kernels is not None:
        return bool(kernels().native_bf16)
    return cpu_isa() == "avx512" and bool(backends.cpu_module().cpu_has_avx512_bf16())


@contextlib.contextmanager
def forced(path: str | None) -> Iterator[None]:
    """Run the body with ``MBRL_FAST_CPU_KERNELS=path`` (None: auto), then restore it."""
    old = os.environ.get(ENV_VAR)
    if path is None or path == "auto":
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = path
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old


def unavailable(path: str) -> str | None:
    """Why kernel path ``path`` cannot be forced here (None: it can)."""
    if path not in PATHS:
        raise ValueError(f"kernel path must be one of {PATHS}, got {path!r}")
    if not backends.is_available("cpu"):
        return f"mbrl_fast._C is not built ({backends.status('cpu')[1]})"
    try:
        with forced(path):
            got = cpu_isa()
    except Exception as exc:  # ValueError, BackendUnavailable naming the missing features
        return str(exc)
    return None if got == path else f"{ENV_VAR}={path} runs the {got} kernels"
