"""Shared test helpers: random ensembles in the kernels' layout, backend lists.

Import as ``from helpers import ...`` (tests/ is on sys.path via its conftest.py)."""

from __future__ import annotations

import torch

from mbrl_fast import backends
from mbrl_fast.ops.ensemble_mlp import MLPParams, pack_bf16

# Tolerances (relative to the output's scale), per weight dtype.
TOL = {"fp32": dict(rtol=1e-4, atol=1e-5), "bf16": dict(rtol=2e-2, atol=2e-2)}


def random_mlp_params(E=3, sizes=(7, 16, 16, 10), activation="silu", gaussian=True,
                      bf16=False, normalize=True, seed=0, device="cpu", scale=1.0) -> MLPParams:
    """An ensemble with PyTorch-like init; sizes = (d_0, ..., d_L)."""
    g = torch.Generator().manual_seed(seed)
    weights, biases = [], []
    for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = scale / d_in**0.5
        w = (torch.rand(E, d_in, d_out, generator=g) * 2 - 1) * bound
        b = (torch.rand(E, d_out, generator=g) * 2 - 1) * bound
        weights.append(pack_bf16(w) if bf16 else w)
        biases.append(b)
    in_mean = in_std = max_lv = min_lv = None
    if normalize:
        in_mean = torch.randn(sizes[0], generator=g) * 0.1
        in_std = torch.rand(sizes[0], generator=g) + 0.5
    if gaussian:
        max_lv = torch.full((sizes[-1] // 2,), 0.5) + torch.rand(sizes[-1] // 2, generator=g) * 0.1
        min_lv = torch.full((sizes[-1] // 2,), -10.0)
    to = lambda t: None if t is None else t.to(device).contiguous()  # noqa: E731
    return MLPParams(tuple(to(w) for w in weights), tuple(to(b) for b in biases), activation,
                     to(in_mean), to(in_std), to(max_lv), to(min_lv), in_dim=sizes[0])


def cpu_backends() -> list[str]:
    """Compiled backends that run on CPU tensors here (the interpreter only for triton)."""
    names = [n for n in ("cpu",) if backends.is_available(n)]
    if backends.triton_interpret() and backends.is_available("triton"):
        names.append("triton")
    return names


def cpu_path_missing(path: str) -> str:
    """Why the cpu backend's kernel path ``path`` ("avx512", "avx2", "portable", or
    "portable-baseline": its x86-64 baseline build) cannot run here ('' when it can)."""
    if not backends.is_available("cpu"):
        return "mbrl_fast._C not built"
    missing = backends._cpu_missing(path.removesuffix("-baseline"))
    return f"this CPU lacks {missing}" if missing else ""
