"""Timing harness: warm-up then the median of repeats, the machine's matmul peak, tables,
and the results file.

Throughput is reported as ratios measured in one run and as achieved GFLOP/s
against the peak of a large torch sgemm measured in the same run, so numbers from
a busy or throttled machine stay comparable with each other.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mbrl_fast.backends import cpuinfo
from mbrl_fast.models.io import atomic_write_bytes


@dataclass(frozen=True)
class Timing:
    """Seconds per call of repeated calls (after warm-up)."""

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    def to_dict(self) -> dict:
        return {"median_s": self.median, "min_s": self.min, "times_s": list(self.times)}


# on_call(name, label, seconds): before a call with seconds=None, after it with its time;
# label is "warm-up i/w" or "repeat i/r". The callback runs outside the timed region.
OnCall = Callable[[str, str, "float | None"], None]


def _check_counts(repeats, warmup) -> None:
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")


def _call(name: str, label: str, fn: Callable[[], object], on_call: OnCall | None) -> float:
    if on_call is not None:
        on_call(name, label, None)
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    if on_call is not None:
        on_call(name, label, seconds)
    return seconds


def time_fn(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1,
            on_call: OnCall | None = None, name: str = "fn") -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times, each timed alone."""
    return time_round_robin({name: fn}, repeats=repeats, warmup=warmup, on_call=on_call)[name]


def time_round_robin(fns: dict[str, Callable[[], object]], *, repeats: int = 5,
                     warmup: int = 1, on_call: OnCall | None = None) -> dict[str, Timing]:
    """Like :func:`time_fn` for several functions, with the repeats interleaved
    (a, b, c, a, b, c, ...): a change of load on a shared machine then slows every
    function alike, so their ratios stay fair."""
    _check_counts(repeats, warmup)
    for name, fn in fns.items():
        for i in range(warmup):
            _call(name, f"warm-up {i + 1}/{warmup}", fn, on_call)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(repeats):
        for name, fn in fns.items():
            times[name].append(_call(name, f"repeat {i + 1}/{repeats}", fn, on_call))
    return {name: Timing(tuple(t)) for name, t in times.items()}


def matmul_peak_gflops(n: int = 4096, *, repeats: int = 3, dtype=torch.float32) -> float:
    """GFLOP/s of an n x n x n torch matmul (2 n^3 FLOP): median of ``repeats``, one warm-up."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    timing = time_fn(lambda: torch.mm(a, b, out=out), repeats=repeats, warmup=1)
    return 2.0 * n**3 / timing.median / 1e9


# The /proc/cpuinfo flags that decide which kernels can run (mbrl-fast's and torch's).
RELEVANT_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
                  "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
                  "amx_tile", "amx_bf16", "amx_int8")
ENV_VARS = ("MBRL_FAST_CPU_KERNELS", "MBRL_FAST_BACKEND", "MKL_ENABLE_INSTRUCTIONS",
            "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_description() -> dict:
    """CPU model, vendor, family/model/stepping and the kernel-relevant flags."""
    info = cpuinfo()
    flags = set(info.get("flags", "").split())
    return {
        "cpu_model": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_vendor": info.get("vendor_id"),
        "cpu_family": info.get("cpu family"),
        "cpu_model_number": info.get("model"),
        "cpu_stepping": info.get("stepping"),
        "cpu_flags": [f for f in RELEVANT_FLAGS if f in flags],
        "machine": platform.machine(),
    }


def kernel_paths() -> dict:
    """What runs the work: mbrl-fast's CPU kernel path (auto) and torch's."""
    from mbrl_fast.benchmarks import isa

    try:
        path, bf16 = isa.cpu_isa(), isa.bf16_native()
    except Exception as exc:  # a bad MBRL_FAST_CPU_KERNELS in the environment
        path, bf16 = f"error: {type(exc).__name__}: {exc}", None
    return {
        "mbrl_fast_isa": path,
        "mbrl_fast_bf16_native": bf16,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_mkl": torch.backends.mkl.is_available(),
        "torch_mkldnn": torch.backends.mkldnn.is_available(),
    }


def load() -> dict:
    """How busy the machine is: load averages and CPU pressure (Linux PSI), where readable."""
    out: dict = {}
    for key, path in (("loadavg", "/proc/loadavg"), ("cpu_pressure", "/proc/pressure/cpu")):
        try:
            with open(path) as f:
                out[key] = f.read().strip()
        except OSError:
            out[key] = None
    return out


def machine_info() -> dict:
    """What a reader needs to compare a result: CPU, kernel paths, threads, environment,
    load, versions, date."""
    import mbrl_fast
    from mbrl_fast import backends

    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        **cpu_description(),
        **kernel_paths(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "env": {name: os.environ.get(name) for name in ENV_VARS},
        "load": load(),  # when the info is taken: the end of a run
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "mbrl_fast_version": mbrl_fast.__version__,
        "backends": {name: status.available for name, status in backends.available().items()},
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(path: str | os.PathLike, data, *, indent: int = 1) -> None:
    """Write a benchmark's result to ``path`` as JSON (``indent``, a final newline), making
    its folder if needed; atomically, so a benchmark killed while writing leaves the
    previous results file whole rather than half of the new one."""
    text = json.dumps(data, indent=indent) + "\n"  # fails before anything is written
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode())


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, columns right-aligned except the first."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]

    def line(values):
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule] + [line(r) for r in cells])


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)
