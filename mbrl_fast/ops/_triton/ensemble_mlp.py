"""Triton ensemble MLP: one fused kernel for normalization, every layer, activation and head.

Layout. Each program owns a tile of BM rows of one member and a private fp32
scratch ``[3, BM, WN]`` (slot 0: the layer-0 input, slots 1/2: ping-pong
activations; WN = next power of two >= the widest layer). Layer l reads its
input from the scratch in K-chunks of BK columns, multiplies by the member's
weight chunk ``[BK, d_l]`` with ``tl.dot`` (fp32 in IEEE precision; bf16
weights: bf16 operands, fp32 accumulation) and writes ``act(acc + b)`` back.
The scratch is a few tens of KiB per program and stays in L1/L2; a CTA barrier
orders each layer's stores before the next layer's loads (a __syncthreads makes
a block's global writes visible to the whole block).

Weights are read in place: the kernel gets a small int64 table of the layers'
data pointers (cast back with ``.to(tl.pointer_type(...))``) and the layer
widths, so any depth runs through one compiled kernel per (activation, dtype,
head) combination. The grid is persistent (a fixed number of programs loops
over the tiles) so the scratch stays bounded.

The device functions ``activate``, ``soft_bound`` and ``mlp_forward`` are shared
with the propagate kernel.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from mbrl_fast import backends
from mbrl_fast.ops.contract import ACTIVATION_IDS, MLPParams

BM = 32  # rows per tile: tl.dot needs >= 16
PANEL = 64  # output columns per tl.dot panel (BN)
BK = 32  # K-chunk of a layer: one [BM, BK] input load + one [BK, WN] weight load per dot
# Persistent programs per SM (scratch 3 x BM x WN x 4 B = 96 KiB at WN = 256; 2 per SM
# keeps the live scratch within L1 + L2). To be tuned on a GPU (docs/gpu.md).
PROGRAMS_PER_SM = 2
# fp32 tl.dot precision: "ieee" keeps the 1e-4 tolerance of the reference; "tf32x3"
# is the faster near-fp32 alternative to measure (bench/gpu_planner.py --fp32-dot).
FP32_DOT = "ieee"


@triton.jit
def softplus(x):
    """log(1 + exp(x)), stable: max(x, 0) + log(1 + exp(-|x|)) (no log1p: interpreter)."""
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def tanh(x):
    """tanh via exp(-2|x|) (libdevice tanh is unavailable in the interpreter)."""
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def activate(x, slope, ACT: tl.constexpr):
    """ACT ids as ops/ensemble_mlp.ACTIVATIONS: silu, relu, tanh, elu, leaky_relu, identity."""
    if ACT == 0:
        return x / (1.0 + tl.exp(-x))
    elif ACT == 1:
        return tl.where((x > 0.0) | (x != x), x, 0.0)  # NaN stays NaN, as torch.relu
    elif ACT == 2:
        return tanh(x)
    elif ACT == 3:
        return tl.where(x > 0, x, tl.exp(x) - 1.0)
    elif ACT == 4:
        return tl.where(x > 0, x, x * slope)
    else:
        return x


@triton.jit
def soft_bound(raw, max_lv, min_lv):
    """PETS log-variance bounds: min + softplus(max - softplus(max - raw) - min)."""
    lv = max_lv - softplus(max_lv - raw)
    return min_lv + softplus(lv - min_lv)


@triton.jit
def mlp_forward(scratch, w_table, b_table, sizes, num_layers, member, slope,
                ACT: tl.constexpr, BF16: tl.constexpr, BF16_DOT: tl.constexpr,
                BM: tl.constexpr, BK: tl.constexpr, BN: tl.constexpr, WN: tl.constexpr,
                PRECISION: tl.constexpr):
    """Run all layers of ``member`` on the BM rows in scratch slot 0.

    scratch [3, BM, WN] fp32 (this program's); the output is left in slot
    ``1 + (num_layers - 1) % 2``. Rows beyond the caller's batch are computed
    on whatever slot 0 holds and must be masked by the caller.
    """
    r = tl.arange(0, BM)[:, None]
    kk = tl.arange(0, BK)
    nn = tl.arange(0, BN)
    member = tl.zeros([], tl.int64) + member  # a Python int (the policy: 0) or a scalar tensor
    tl.debug_barrier()  # the caller's slot-0 stores / last reads are done
    for l in range(num_layers):
        d_in = tl.load(sizes + l)
        d_out = tl.load(sizes + l + 1)
        src = scratch + tl.where(l == 0, 0, 1 + (l - 1) % 2) * (BM * WN)
        dst = scratch + (1 + l % 2) * (BM * WN)
        if BF16:
            w = tl.load(w_table + l).to(tl.pointer_type(tl.bfloat16))
            w = w + member * ((d_in + 1) // 2) * d_out * 2
        else:
            w = tl.load(w_table + l).to(tl.pointer_type(tl.float32))
            w = w + member * d_in * d_out
        b = tl.load(b_table + l).to(tl.pointer_type(tl.float32)) + member * d_out
        for n0 in range(0, d_out, BN):  # output panels of BN columns
            n = n0 + nn
            n_ok = n < d_out
            acc = tl.zeros((BM, BN), dtype=tl.float32)
            for k0 in range(0, d_in, BK):
                k = k0 + kk
                h = tl.load(src + r * WN + k[None, :], mask=k[None, :] < d_in, other=0.0)
                w_mask = (k[:, None] < d_in) & n_ok[None, :]
                if BF16:
                    # packed [ceil(in/2), out, 2]: (k, n) at ((k // 2) * out + n) * 2 + k % 2
                    pair = (k[:, None] // 2) * d_out + n[None, :]
                    wk = tl.load(w + pair * 2 + (k[:, None] % 2), mask=w_mask, other=0.0)
                    if BF16_DOT:
                        acc = tl.dot(h.to(tl.bfloat16), wk, acc)
                    else:  # interpreter: bf16 x bf16 products are exact in fp32, same result
                        acc = tl.dot(h.to(tl.bfloat16).to(tl.float32), wk.to(tl.float32), acc)
                else:
                    wk = tl.load(w + k[:, None] * d_out + n[None, :], mask=w_mask, other=0.0)
                    acc = tl.dot(h, wk, acc, input_precision=PRECISION)
            acc += tl.load(b + n, mask=n_ok, other=0.0)[None, :]
            if l < num_layers - 1:
                acc = activate(acc, slope, ACT)
            tl.store(dst + r * WN + n[None, :], acc, mask=n_ok[None, :])
        tl.debug_barrier()  # stores visible before the next layer (or the caller) reads


@triton.jit
def _ensemble_mlp_kernel(x, y, logvar, scratch, w_table, b_table, sizes, num_layers,
                         in_mean, in_std, max_lv, min_lv, E, B, slope,
                         NORMALIZE: tl.constexpr, GAUSSIAN: tl.constexpr, ACT: tl.constexpr,
                         BF16: tl.constexpr, BF16_DOT: tl.constexpr, BM: tl.constexpr,
                         BK: tl.constexpr, BN: tl.constexpr, WN: tl.constexpr,
                         PRECISION: tl.constexpr):
    # x [E, B, d0]; y [E, B, dL] or mean [E, B, dL/2] with logvar [E, B, dL/2]
    pid = tl.program_id(0)
    scratch += pid.to(tl.int64) * (3 * BM * WN)
    tiles_per_member = tl.cdiv(B, BM)
    r = tl.arange(0, BM)
    nb = tl.arange(0, BN)
    kk = tl.arange(0, BK)
    d0 = tl.load(sizes)
    d_last = tl.load(sizes + num_layers)
    out_slot = scratch + (1 + (num_layers - 1) % 2) * (BM * WN)
    for tile in range(pid, E * tiles_per_member, tl.num_programs(0)):
        e = tile // tiles_per_member
        rows = (tile % tiles_per_member) * BM + r
        row_ok = rows < B
        grow = e.to(tl.int64) * B + rows  # row in [E * B]
        for k0 in range(0, d0, BK):
            k = k0 + kk
            k_ok = k < d0
            v = tl.load(x + grow[:, None] * d0 + k[None, :], mask=row_ok[:, None] & k_ok[None, :],
                        other=0.0)
            if NORMALIZE:
                mean = tl.load(in_mean + k, mask=k_ok, other=0.0)
                std = tl.load(in_std + k, mask=k_ok, other=1.0)
                v = (v - mean[None, :]) / std[None, :]
            tl.store(scratch + r[:, None] * WN + k[None, :], v, mask=k_ok[None, :])
        mlp_forward(scratch, w_table, b_table, sizes, num_layers, e, slope, ACT, BF16, BF16_DOT,
                    BM, BK, BN, WN, PRECISION)
        width = d_last // 2 if GAUSSIAN else d_last
        for c0 in range(0, width, BN):  # output panels: [BM, BN] tiles, not [BM, WN]
            n = c0 + nb
            m = n < width
            out_mask = row_ok[:, None] & m[None, :]
            v = tl.load(out_slot + r[:, None] * WN + n[None, :], mask=m[None, :], other=0.0)
            tl.store(y + grow[:, None] * width + n[None, :], v, mask=out_mask)
            if GAUSSIAN:
                raw = tl.load(out_slot + r[:, None] * WN + width + n[None, :], mask=m[None, :],
                              other=0.0)
                hi = tl.load(max_lv + n, mask=m, other=0.0)
                lo = tl.load(min_lv + n, mask=m, other=0.0)
                lv = soft_bound(raw, hi[None, :], lo[None, :])
                tl.store(logvar + grow[:, None] * width + n[None, :], lv, mask=out_mask)
        tl.debug_barrier()  # the outputs are read before the next tile rewrites the scratch


# ---- launcher helpers (shared with propagate) ---------------------------------


@functools.lru_cache(maxsize=64)
def _tables(ptrs_w: tuple[int, ...], ptrs_b: tuple[int, ...], sizes: tuple[int, ...],
            device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Keyed by pointer values: a table holds only those values, so a reused address
    # maps to an identical table. Built once per parameter set (no per-call H2D copy).
    return (torch.tensor(ptrs_w, dtype=torch.int64, device=device),
            torch.tensor(ptrs_b, dtype=torch.int64, device=device),
            torch.tensor(sizes, dtype=torch.int32, device=device))


def param_tables(params: MLPParams, sizes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weight pointer table [L] int64, bias pointer table [L] int64, sizes [L + 1] int32)."""
    return _tables(tuple(w.data_ptr() for w in params.weights),
                   tuple(b.data_ptr() for b in params.biases),
                   tuple(int(s) for s in sizes), str(params.device))


def width(*size_lists) -> int:
    """WN: next power of two (>= 16, a tl.dot minimum) covering every layer width."""
    return max(16, triton.next_power_of_2(max(max(s) for s in size_lists)))


def panel(wn: int) -> int:
    """BN: output columns per dot panel (a [BM, WN] accumulator took 255 registers/thread
    at WN = 256 on sm_90; panels of 64 keep the tile in registers, see docs/gpu.md)."""
    return min(PANEL, wn)


def num_programs(num_tiles: int, device: torch.device) -> int:
    """Persistent grid size: PROGRAMS_PER_SM per SM on a GPU; 3 in the interpreter
    (small, and below the tile count in the tests so the tile loop is exercised)."""
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        return max(1, min(num_tiles, PROGRAMS_PER_SM * sms))
    return max(1, min(num_tiles, 3))


def launch_options(wn: int) -> dict:
    """4 warps: at WN = 256 the sm_90 cubin of the ensemble kernel takes 168 registers/thread
    (fp32) / 168 (bf16) at 4 warps vs 176 / 128 at 8, so 4 warps fit 3 CTAs per SM (ptxas via
    triton 3.9, no GPU: occupancy only, timings in bench/gpu_planner.py). fp fusion (fma
    contraction) on, as in the CUDA build, and stated so triton 3.9 does not warn."""
    return {"num_warps": 4, "enable_fp_fusion": True}


def bf16_dot() -> bool:
    """bf16 tl.dot returns garbage in the interpreter (triton 3.9): there, multiply the
    bf16-rounded operands in fp32 (exact products, the same result)."""
    return not backends.triton_interpret()


def ensemble_mlp_triton(x: torch.Tensor, params: MLPParams, sizes):
    """x [E, B, d0] contiguous float32 -> y [E, B, dL] or (mean, logvar) [E, B, dL/2] each."""
    e, b, _ = x.shape
    num_layers = len(params.weights)
    wn = width(sizes)
    d_last = sizes[-1]
    out_w = d_last // 2 if params.gaussian else d_last
    y = torch.empty(e, b, out_w, dtype=torch.float32, device=x.device)
    logvar = torch.empty_like(y) if params.gaussian else y
    tiles = e * triton.cdiv(b, BM)
    grid = num_programs(tiles, x.device)
    scratch = torch.empty(grid, 3, BM, wn, dtype=torch.float32, device=x.device)
    w_table, b_table, size_table = param_tables(params, sizes)
    dummy = params.biases[0]  # never read when the matching flag is off
    _ensemble_mlp_kernel[(grid,)](
        x, y, logvar, scratch, w_table, b_table, size_table, num_layers,
        params.in_mean if params.in_mean is not None else dummy,
        params.in_std if params.in_std is not None else dummy,
        params.max_logvar if params.gaussian else dummy,
        params.min_logvar if params.gaussian else dummy,
        e, b, float(params.leaky_slope),
        NORMALIZE=params.in_mean is not None, GAUSSIAN=params.gaussian,
        ACT=ACTIVATION_IDS[params.activation], BF16=params.is_bf16, BF16_DOT=bf16_dot(),
        BM=BM, BK=BK, BN=panel(wn), WN=wn, PRECISION=FP32_DOT, **launch_options(wn))
    return (y, logvar) if params.gaussian else y
