"""Triton Philox-4x32-10 streams, bit-identical to mbrl_fast/ops/noise.py.

Element ``i`` of stream ``(seed, offset)`` is component ``i % 4`` of Philox-4x32-10
on counter ``(i // 4 lo, i // 4 hi, offset lo, offset hi)`` with key
``(seed lo, seed hi)``. The rounds are written out with ``tl.umulhi`` (the same
recurrence as ``tl.philox``/Random123, checked against the reference in
tests/ops/test_noise.py, the triton parameter) so the counter layout is ours, not Triton's.

The device functions here (``philox4``, ``uint32_at``, ``normal_at``,
``randint_at``) are also called by the propagate kernel, so the rollout draws
exactly the samples of the reference.

Seeds and offsets travel as four 32-bit halves (``lo``/``hi`` < 2**32): Triton
types a Python int argument by its value (i32, u32, i64 or u64), splitting keeps
one code path for every value.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_MASK32 = 0xFFFFFFFF
# 2**-24: a 24-bit integer k -> (k + 0.5) * 2**-24 in (0, 1), exact in float32
# (ops/noise.py UNIFORM_SCALE).
UNIFORM_SCALE = tl.constexpr(2.0**-24)
# One program fills BLOCK counter blocks = 4 * BLOCK elements. 256 blocks over 4 warps
# (2 per thread): at 1024 the float64 Box-Muller of the normal kernel spilled 1 KB/thread
# on sm_90 (ptxas via triton 3.9, no GPU); the launch is memory-bound either way.
_BLOCK = 256


@triton.jit
def philox4(c0, c1, c2, c3, k0, k1):
    """Philox-4x32-10 on uint32 counters (c0..c3) and key (k0, k1); returns 4 uint32."""
    for _ in tl.static_range(10):
        hi0 = tl.umulhi(c0, 0xD2511F53)
        lo0 = c0 * 0xD2511F53
        hi1 = tl.umulhi(c2, 0xCD9E8D57)
        lo1 = c2 * 0xCD9E8D57
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = k0 + 0x9E3779B9
        k1 = k1 + 0xBB67AE85
    return c0, c1, c2, c3


@triton.jit
def philox_block(block, seed_lo, seed_hi, off_lo, off_hi):
    """The 4 uint32 of counter block ``block`` (int64 tensor) of stream (seed, offset)."""
    c0 = (block & 0xFFFFFFFF).to(tl.uint32)
    c1 = (block >> 32).to(tl.uint32)
    c2 = c0 * 0 + off_lo.to(tl.uint32)
    c3 = c0 * 0 + off_hi.to(tl.uint32)
    return philox4(c0, c1, c2, c3, seed_lo.to(tl.uint32), seed_hi.to(tl.uint32))


@triton.jit
def uint32_at(i, seed_lo, seed_hi, off_lo, off_hi):
    """uint32 element ``i`` (int64 tensor) of the stream."""
    x0, x1, x2, x3 = philox_block(i >> 2, seed_lo, seed_hi, off_lo, off_hi)
    comp = i & 3
    return tl.where(comp == 0, x0, tl.where(comp == 1, x1, tl.where(comp == 2, x2, x3)))


@triton.jit
def randint_at(i, high, seed_lo, seed_hi, off_lo, off_hi):
    """int32 element ``i`` of ``randint(high)``: (x * high) >> 32, in [0, high)."""
    x = uint32_at(i, seed_lo, seed_hi, off_lo, off_hi).to(tl.uint64)
    return ((x * high.to(tl.uint64)) >> 32).to(tl.int32)


@triton.jit
def box_muller(xa, xb, use_sin):
    """Box-Muller in float64 on uint32 (xa, xb): r cos(theta) or r sin(theta), to float32."""
    ua = ((xa >> 8).to(tl.float64) + 0.5) * UNIFORM_SCALE
    ub = ((xb >> 8).to(tl.float64) + 0.5) * UNIFORM_SCALE
    r = tl.sqrt(-2.0 * tl.log(ua))
    theta = 6.283185307179586 * ub
    return tl.where(use_sin, r * tl.sin(theta), r * tl.cos(theta)).to(tl.float32)


@triton.jit
def normal_at(i, seed_lo, seed_hi, off_lo, off_hi):
    """float32 standard normal element ``i`` (int64 tensor) of the stream."""
    x0, x1, x2, x3 = philox_block(i >> 2, seed_lo, seed_hi, off_lo, off_hi)
    comp = i & 3
    first = comp < 2
    return box_muller(tl.where(first, x0, x2), tl.where(first, x1, x3), (comp & 1) == 1)


@triton.jit(do_not_specialize=["n", "seed_lo", "seed_hi", "off_lo", "off_hi"])
def _fill_kernel(out, n, seed_lo, seed_hi, off_lo, off_hi, KIND: tl.constexpr,
                 BLOCK: tl.constexpr):
    # KIND: 0 uint32 (stored as int64), 1 uniform, 2 normal. out [n]
    block = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    x0, x1, x2, x3 = philox_block(block, seed_lo, seed_hi, off_lo, off_hi)
    base = block * 4
    if KIND == 0:
        v0, v1, v2, v3 = x0.to(tl.int64), x1.to(tl.int64), x2.to(tl.int64), x3.to(tl.int64)
    elif KIND == 1:
        v0 = ((x0 >> 8).to(tl.float32) + 0.5) * UNIFORM_SCALE
        v1 = ((x1 >> 8).to(tl.float32) + 0.5) * UNIFORM_SCALE
        v2 = ((x2 >> 8).to(tl.float32) + 0.5) * UNIFORM_SCALE
        v3 = ((x3 >> 8).to(tl.float32) + 0.5) * UNIFORM_SCALE
    else:
        v0 = box_muller(x0, x1, False)
        v1 = box_muller(x0, x1, True)
        v2 = box_muller(x2, x3, False)
        v3 = box_muller(x2, x3, True)
    tl.store(out + base, v0, mask=base < n)
    tl.store(out + base + 1, v1, mask=base + 1 < n)
    tl.store(out + base + 2, v2, mask=base + 2 < n)
    tl.store(out + base + 3, v3, mask=base + 3 < n)


KINDS = {"uint32": 0, "uniform": 1, "normal": 2}


def key_halves(seed: int, offset: int) -> tuple[int, int, int, int]:
    """(seed lo, seed hi, offset lo, offset hi), each in [0, 2**32)."""
    return seed & _MASK32, seed >> 32, offset & _MASK32, offset >> 32


def fill(kind: str, n: int, seed: int, offset: int, device) -> torch.Tensor:
    """[n] samples of stream (seed, offset): int64 uint32 values, or float32 uniform/normal."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")
    out = torch.empty(n, dtype=torch.int64 if kind == "uint32" else torch.float32, device=device)
    if n == 0:
        return out
    grid = (triton.cdiv(triton.cdiv(n, 4), _BLOCK),)
    _fill_kernel[grid](out, n, *key_halves(seed, offset), KIND=KINDS[kind], BLOCK=_BLOCK,
                        enable_fp_fusion=True)
    return out
