"""Triton CEM / MPPI updates (ops/elite_update.py is the specification), on device.

``cem_update``: one program per start state n. The P returns become uint64 keys
``orderable_bits(return) << 32 | ~p`` (NaN lowest, -0 == +0), sorted descending with
``tl.sort``: best return first, ties to the lower p, NaN last -- the reference's
``elite_order``. Mean and variance over the K elites in float64, momentum in float64,
rounded to float32 once.

``mppi_update``: one program per (n, panel of BLOCK_C columns); the softmax weights
are recomputed in float64 per program in P-chunks (max, sum, then weighted moments),
with the reference's special cases (NaN -> weight 0, +inf returns share everything,
no usable return -> uniform).

Neither reads anything back to the host: a planner iteration stays asynchronous.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_C = 64  # columns (H * A) per step / program
MAX_SORT_P = 16384  # one program sorts P keys in registers


@triton.jit
def _cem_kernel(samples, returns, mean, var, new_mean, new_var, elites, best, best_return,
                converged, P, HA, K, alpha: tl.float64, epsilon: tl.float64, BLOCK_P: tl.constexpr,
                BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr):
    # samples [N, P, HA], returns [N, P], mean / var [N, HA]; elites [N, K] int64
    n = tl.program_id(0).to(tl.int64)
    p = tl.arange(0, BLOCK_P)
    v = tl.load(returns + n * P + p, mask=p < P, other=float("nan"))
    v = tl.where(v == 0.0, 0.0, v)  # -0 ranks with +0
    u = v.to(tl.uint32, bitcast=True)
    u = tl.where((u & 0x80000000) != 0, ~u, u | 0x80000000)
    u = tl.where(v != v, 0, u)  # NaN (and padding, higher p) below every number
    key = (u.to(tl.uint64) << 32) | (~p.to(tl.uint32)).to(tl.uint64)
    key = tl.sort(key, descending=True)
    order = (~(key & 0xFFFFFFFF).to(tl.uint32)).to(tl.int64)
    tl.store(elites + n * K + p, order, mask=p < K)
    tl.debug_barrier()  # the elite indices are visible to every thread of the program
    k = tl.arange(0, BLOCK_K)
    k_ok = k < K
    e = tl.load(elites + n * K + k, mask=k_ok, other=0)
    e0 = tl.load(elites + n * K)
    tl.store(best_return + n, tl.load(returns + n * P + e0))
    vmax = tl.zeros((BLOCK_C,), dtype=tl.float64) - 1.0
    for c0 in range(0, HA, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        c_ok = c < HA
        m2 = k_ok[:, None] & c_ok[None, :]
        x = tl.load(samples + (n * P + e)[:, None] * HA + c[None, :], mask=m2, other=0.0)
        x = x.to(tl.float64)
        m = tl.sum(x, axis=0) / K
        d = tl.where(m2, x - m[None, :], 0.0)
        s = tl.sum(d * d, axis=0) / K
        old_m = tl.load(mean + n * HA + c, mask=c_ok, other=0.0).to(tl.float64)
        old_v = tl.load(var + n * HA + c, mask=c_ok, other=0.0).to(tl.float64)
        nm = (alpha * old_m + (1.0 - alpha) * m).to(tl.float32)
        nv = (alpha * old_v + (1.0 - alpha) * s).to(tl.float32)
        tl.store(new_mean + n * HA + c, nm, mask=c_ok)
        tl.store(new_var + n * HA + c, nv, mask=c_ok)
        vmax = tl.maximum(vmax, tl.where(c_ok, nv.to(tl.float64), -1.0))
        tl.store(best + n * HA + c, tl.load(samples + (n * P + e0) * HA + c, mask=c_ok), mask=c_ok)
    tl.store(converged + n, (tl.max(vmax, axis=0) < epsilon).to(tl.uint8))


@triton.jit
def _softmax_e(z, top):
    """exp(z - top) with the +inf / all -inf cases of the reference (float64)."""
    pos_inf = top == float("inf")
    neg_inf = top == -float("inf")
    e = tl.exp(tl.where(pos_inf | neg_inf, 0.0, z - top))
    return tl.where(pos_inf, (z == float("inf")).to(tl.float64), tl.where(neg_inf, 1.0, e))


@triton.jit
def _load_z(returns, n, p0, P, temperature, BLOCK_P: tl.constexpr):
    p = p0 + tl.arange(0, BLOCK_P)
    z = tl.load(returns + n * P + p, mask=p < P, other=float("nan")).to(tl.float64) / temperature
    return p, tl.where(z != z, -float("inf"), z)


@triton.jit
def _mppi_kernel(samples, returns, mean, var, weights, P, HA, temperature: tl.float64,
                 BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    # samples [N, P, HA], returns [N, P] -> mean / var [N, HA], weights [N, P]
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < HA
    top = tl.cast(-float("inf"), tl.float64)
    for p0 in range(0, P, BLOCK_P):
        p, z = _load_z(returns, n, p0, P, temperature, BLOCK_P)
        top = tl.maximum(top, tl.max(z, axis=0))
    total = tl.cast(0.0, tl.float64)
    for p0 in range(0, P, BLOCK_P):
        p, z = _load_z(returns, n, p0, P, temperature, BLOCK_P)
        total += tl.sum(tl.where(p < P, _softmax_e(z, top), 0.0), axis=0)
    m = tl.zeros((BLOCK_C,), dtype=tl.float64)
    for p0 in range(0, P, BLOCK_P):
        p, z = _load_z(returns, n, p0, P, temperature, BLOCK_P)
        w = tl.where(p < P, _softmax_e(z, top) / total, 0.0)
        if tl.program_id(1) == 0:
            tl.store(weights + n * P + p, w.to(tl.float32), mask=p < P)
        x = tl.load(samples + (n * P + p)[:, None] * HA + c[None, :],
                    mask=(p < P)[:, None] & c_ok[None, :], other=0.0)
        m += tl.sum(w[:, None] * x.to(tl.float64), axis=0)
    s = tl.zeros((BLOCK_C,), dtype=tl.float64)
    for p0 in range(0, P, BLOCK_P):
        p, z = _load_z(returns, n, p0, P, temperature, BLOCK_P)
        w = tl.where(p < P, _softmax_e(z, top) / total, 0.0)
        x = tl.load(samples + (n * P + p)[:, None] * HA + c[None, :],
                    mask=(p < P)[:, None] & c_ok[None, :], other=0.0)
        d = x.to(tl.float64) - m[None, :]
        s += tl.sum(w[:, None] * d * d, axis=0)
    tl.store(mean + n * HA + c, m.to(tl.float32), mask=c_ok)
    tl.store(var + n * HA + c, s.to(tl.float32), mask=c_ok)


def cem_update_triton(samples, returns, mean, var, num_elites: int, alpha: float, epsilon: float):
    """samples [N, P, H, A], returns [N, P], mean / var [N, H, A] -> (new_mean, new_var,
    elites [N, K] int64, best [N, H, A], best_return [N], converged [N] bool)."""
    n, p, h, a = samples.shape
    if p > MAX_SORT_P:
        raise ValueError(f"elite_update: the triton cem_update sorts at most {MAX_SORT_P} "
                         f"samples per row, got P = {p}")
    dev = samples.device
    new_mean, new_var, best = (torch.empty(n, h, a, device=dev) for _ in range(3))
    elites = torch.empty(n, num_elites, dtype=torch.int64, device=dev)
    best_return = torch.empty(n, device=dev)
    converged = torch.empty(n, dtype=torch.uint8, device=dev)
    _cem_kernel[(n,)](samples, returns, mean, var, new_mean, new_var, elites, best, best_return,
                      converged, p, h * a, num_elites, float(alpha), float(epsilon),
                      BLOCK_P=max(16, triton.next_power_of_2(p)),
                      BLOCK_K=max(16, triton.next_power_of_2(num_elites)), BLOCK_C=BLOCK_C,
                      num_warps=8 if p > 2048 else 4, enable_fp_fusion=True)
    return new_mean, new_var, elites, best, best_return, converged.bool()


def mppi_update_triton(samples, returns, temperature: float):
    """samples [N, P, H, A], returns [N, P] -> (mean [N, H, A], var [N, H, A], weights [N, P])."""
    n, p, h, a = samples.shape
    dev = samples.device
    mean, var = torch.empty(n, h, a, device=dev), torch.empty(n, h, a, device=dev)
    weights = torch.empty(n, p, device=dev)
    block_p = min(128, max(16, triton.next_power_of_2(p)))
    _mppi_kernel[(n, triton.cdiv(h * a, BLOCK_C))](samples, returns, mean, var, weights, p, h * a,
                                                   float(temperature), BLOCK_P=block_p,
                                                   BLOCK_C=BLOCK_C, enable_fp_fusion=True)
    return mean, var, weights
