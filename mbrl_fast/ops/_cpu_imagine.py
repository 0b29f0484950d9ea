"""Launcher of the compiled imagination rollout (``mbrl_fast._C.imagine``): an autograd.Function
whose forward and backward are the C++ kernels (csrc/cpu/imagine*.{h,cpp}).

The kernels read the weights in place ([in, out] float32, contiguous) and prepare per-call
layouts (column panels, bf16 pairs, transposes for the backward); a forward that will be
differentiated keeps every step's activations in a buffer that the backward reads. Inputs
were validated by ops/imagine.py.

Kernel choice: ``MBRL_FAST_CPU_KERNELS`` = ``auto`` (default: AVX-512, with AVX512-BF16 for
bf16, when the CPU has it), ``avx512``, ``avx2`` or ``portable``. This op has no AVX2-specific
kernels: ``avx2`` runs the portable ones, as does a CPU without the requested extension.
"""

from __future__ import annotations

import os
import weakref

import torch

from mbrl_fast import backends
from mbrl_fast.ops import _launch
from mbrl_fast.ops.contract import IMAGINE_ACTIVATION_IDS as ACTIVATION_IDS
from mbrl_fast.ops.contract import ImagineParams, ImagineResult

KERNELS_ENV_VAR = "MBRL_FAST_CPU_KERNELS"
_ISA = {"auto": 2, "avx512": 2, "avx2": 1, "portable": 0}  # csrc ImagineIsa
MAX_LAYERS, MAX_HEADS = 8, 16  # csrc kImMaxLayers, Tile::heads


def requested_isa() -> int:
    value = os.environ.get(KERNELS_ENV_VAR, "auto") or "auto"
    if value not in _ISA:
        raise ValueError(f"{KERNELS_ENV_VAR} must be one of {sorted(_ISA)}, got {value!r}")
    return _ISA[value]


def kernel_name(precision: str = "fp32") -> str:
    """Which kernels a call runs here: 'avx512' or 'portable'."""
    isa = backends.cpu_module().imagine_resolve_isa(requested_isa(), precision == "bf16")
    return "avx512" if isa == 2 else "portable"


def supports(params: ImagineParams) -> bool:
    """The compiled kernels' limits: MLPs of at most 8 layers, at most 16 heads."""
    mlps = (params.prior, params.actor, *params.heads)
    return len(params.heads) <= MAX_HEADS and all(len(m) <= MAX_LAYERS for m in mlps)


_addr = _launch.addr


# The saved activations of a call whose graph is gone, reused by the next forward: a fresh
# buffer of this size (~700 MB at B = 2500 with Dreamer V1's networks) costs its page faults
# on every call, ~20% of the kernels' time when profiled (perf, 1 thread). A buffer returns
# here when its autograd node is freed (not after backward: a retained graph may run it
# again), and the pool keeps one.
_POOL: list[torch.Tensor] = []


def _acquire(numel: int) -> torch.Tensor:
    while _POOL:
        buf = _POOL.pop()
        if buf.numel() >= numel:
            return buf[:numel]
    return torch.empty(numel)


def _release(buf: torch.Tensor | None) -> None:
    if buf is not None:
        _POOL[:] = [buf._base if buf._base is not None else buf]


class _Imagine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, meta, start_h, start_z, eps, noise_z, *tensors):
        params, horizon, precision, tile_rows = meta
        p = params.with_tensors(tensors)
        b, d, s, a = start_h.shape[0], p.deter, p.stoch_dim, p.act_dim
        h = start_h.new_empty(horizon + 1, b, d)
        z = start_h.new_empty(horizon + 1, b, s)
        action, mean, std = (start_h.new_empty(horizon, b, a) for _ in range(3))
        heads = [start_h.new_empty(horizon + 1, b, head[-1][1].shape[0]) for head in p.heads]
        io = [start_h, start_z, eps, noise_z, h, z, action, mean, std] + [None] * 7
        # a forward that will be differentiated keeps every step's activations (the backward
        # reads them instead of recomputing the rollout)
        saved = None
        if any(ctx.needs_input_grad):
            saved = _acquire(backends.cpu_module().imagine_saved_floats(
                *_sizes(p, b, horizon), tile_rows))
            weakref.finalize(ctx, _release, saved)
        _call(False, p, b, horizon, precision, tile_rows, [None] * (2 * len(tensors)), io, heads,
              [None] * len(heads), saved)
        ctx.meta = meta
        ctx.save_for_backward(eps, noise_z, h, z, saved, *tensors)
        ctx.set_materialize_grads(False)
        return (h, z, action, mean, std, *heads)

    @staticmethod
    def backward(ctx, dh, dz, daction, dmean, dstd, *dheads):
        params, horizon, precision, tile_rows = ctx.meta
        eps, noise_z, h, z, saved, *tensors = ctx.saved_tensors
        p = params.with_tensors(tensors)
        needs = ctx.needs_input_grad
        b = h.shape[1]
        d_start_h = h.new_empty(b, p.deter) if needs[1] else None
        d_start_z = h.new_empty(b, p.stoch_dim) if needs[2] else None
        grads = []
        for i in range(0, len(tensors), 2):  # (weight, bias) pairs: both or neither
            want = needs[5 + i] or needs[6 + i]
            grads += [torch.empty_like(tensors[i]) if want else None,
                      torch.empty_like(tensors[i + 1]) if want else None]
        c = lambda t: None if t is None else t.contiguous()  # noqa: E731
        io = [None, None, eps, noise_z, h, z, None, None, None, c(dh), c(dz), c(daction),
              c(dmean), c(dstd), d_start_h, d_start_z]
        _call(True, p, b, horizon, precision, tile_rows, grads, io, [None] * len(p.heads),
              [c(g) for g in dheads], saved)
        out = [None, d_start_h, d_start_z, None, None]
        for i, g in enumerate(grads):
            out.append(g if needs[5 + i] else None)
        return tuple(out)


def _sizes(p: ImagineParams, b: int, horizon: int):
    """(dims, stoch kind, activation, layer in, layer out, counts): the kernels' flat size
    arguments."""
    tensors = p.tensors()
    weights = tensors[0::2]
    dims = [b, horizon, p.deter, p.stoch_dim, p.act_dim, p.hidden, p.classes]
    counts = [len(p.prior), len(p.actor), *(len(hd) for hd in p.heads), p.detached_heads]
    return (dims, 0 if p.stoch == "gaussian" else 1, ACTIVATION_IDS[p.activation],
            [int(w.shape[0]) for w in weights], [int(w.shape[1]) for w in weights], counts)


def _call(backward, p: ImagineParams, b, horizon, precision, tile_rows, grads, io, heads, dheads,
          saved):
    tensors = p.tensors()
    dims, stoch, activation, ins, outs, counts = _sizes(p, b, horizon)
    consts = [p.unimix, p.z_min_std, p.act_min_std, p.act_max_std, p.act_mean_scale]
    backends.cpu_module().imagine(
        backward, dims, stoch, activation, consts, precision == "bf16", ins,
        outs, [t.data_ptr() for t in tensors[0::2]], [t.data_ptr() for t in tensors[1::2]],
        [_addr(g) for g in grads[0::2]], [_addr(g) for g in grads[1::2]], counts,
        [_addr(t) for t in io], [_addr(t) for t in heads], [_addr(t) for t in dheads],
        _addr(saved), 0 if saved is None else saved.numel(), requested_isa(), tile_rows)


def imagine_cpu(start_h, start_z, params: ImagineParams, horizon: int, eps, noise_z,
                precision: str, tile_rows: int = 0) -> ImagineResult:
    """The op on the compiled kernels; differentiable like the reference."""
    tensors = [t.contiguous() for t in params.tensors()]
    meta = (params.detach(), horizon, precision, tile_rows)
    out = _Imagine.apply(meta, start_h.contiguous(), start_z.contiguous(), eps.contiguous(),
                         noise_z.contiguous(), *tensors)
    h, z, action, mean, std, *heads = out
    return ImagineResult(h, z, action, mean, std, list(heads))
