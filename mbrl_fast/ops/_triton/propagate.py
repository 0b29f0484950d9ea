"""Triton propagate: the whole horizon in one launch.

Each program of a persistent grid owns tiles of BM particles. A particle's
state stays in registers ``s [BM, DP]`` for all H steps; per step the kernel

1. takes the action (input, or the policy MLP + tanh-Gaussian in the loop),
2. writes the normalized model input ``concat(features(s), a)`` to scratch slot 0
   (with ``params.obs_features``: s is staged in slot 0 and its columns gathered by
   the feature table, then passed through sin / cos; the policy reads the raw s),
3. runs the MLP (ops/_triton/ensemble_mlp.mlp_forward) once per member slot
   that a particle of the tile uses (all slots for ``expectation``), and keeps
   ``mu + exp(lv / 2) * eps`` for the particles drawn to that slot,
4. adds the fused reward (built-in HalfCheetah or the model's reward head),
5. writes states/rewards only when ``return_states``.

Member grouping: with ``tsinf`` the particles are visited sorted by their drawn
member (a device argsort of the draws, no host sync), so a tile of BM particles
almost always needs one member's MLP, not E'. ``ts1`` re-draws every step and
pays one MLP pass per member present in the tile (up to E').

The noise is the reference's, drawn in the kernel with the same counters
(ops/_triton/noise.py): eps ``normal(seed, offset)`` at ``((row * H + t) * D_out + j)``,
members ``randint(seed, offset + 1)`` at ``row * H + t`` (ts1) or ``row`` (tsinf),
policy eps ``normal(seed, offset + 2)`` at ``(row * H + t) * A + j``; row =
``(n * P + p) * K + k``.

A non-finite state is recorded with an atomic min over ``(t, row)`` (the
reference's "first" bad particle) and raised by the launcher, which therefore
reads one int64 back per call.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from mbrl_fast.ops import _launch
from mbrl_fast.ops._triton import ensemble_mlp as tmlp
from mbrl_fast.ops._triton.noise import fill, key_halves, normal_at, randint_at
from mbrl_fast.ops.contract import (
    ACTIVATION_IDS,
    MODE_IDS,
    NO_NON_FINITE,
    MLPParams,
    PropagateResult,
    PropagateSpec,
    RewardKind,
)
from mbrl_fast.ops.features import ObsFeatures

# 8 warps: the per-particle work ([BM, D] Philox + float64 Box-Muller eps, state, head)
# spread over 256 threads; at 4 warps the sm_90 cubin spilled ~1.2 KB/thread (ptxas, no GPU).
PROPAGATE_WARPS = 8
# The kernel's REWARD constexpr takes ops/contract.RewardKind values.
REWARD_NONE = tl.constexpr(int(RewardKind.NONE))
REWARD_MODEL = tl.constexpr(int(RewardKind.MODEL))
REWARD_HALFCHEETAH = tl.constexpr(int(RewardKind.HALFCHEETAH))
_NO_NON_FINITE = tl.constexpr(NO_NON_FINITE)  # ops/contract.py: the non-finite key's "none"


@triton.jit
def halfcheetah_reward(x0, x1, act_sq, dt):
    """RewardKind.HALFCHEETAH (ops/rewards.halfcheetah_reward): x0 / x1 the position before
    and after the step, act_sq = |a|^2."""
    return (x1 - x0) / dt - 0.1 * act_sq


@triton.jit
def gather_features(scratch, s, feat_src, feat_kind, jz, z_ok, jd, d_ok, r, WN: tl.constexpr):
    """features(s) [BM, FP]: s [BM, DP] is staged in scratch slot 0 (free until z is
    written; WN >= D) and its columns feat_src loaded back, then sin / cos by feat_kind.
    The table is re-read per step (L1) rather than held in registers across the loop."""
    src = tl.load(feat_src + jz, mask=z_ok, other=0).to(tl.int32)
    kind = tl.load(feat_kind + jz, mask=z_ok, other=0).to(tl.int32)
    tl.debug_barrier()  # the previous readers of slot 0 are done
    tl.store(scratch + r[:, None] * WN + jd[None, :], s, mask=d_ok[None, :])
    tl.debug_barrier()  # every thread's state columns are stored
    v = tl.load(scratch + r[:, None] * WN + src[None, :])
    return tl.where(kind[None, :] == 1, tl.sin(v), tl.where(kind[None, :] == 2, tl.cos(v), v))


# Seeds and offsets change from call to call: not specialized (no recompilation when one is
# 1 or a multiple of 16), and the Philox helpers call .to() on them, which a value Triton
# specialized to the constant 1 does not have; num_members likewise (randint_at).
@triton.jit(do_not_specialize=["num_members", "seed_lo", "seed_hi", "o0_lo", "o0_hi", "o1_lo",
                               "o1_hi", "o2_lo", "o2_hi"])
def _propagate_kernel(
        obs, actions, perm, members, states, step_rewards, row_returns, taken, bad, scratch,
        w_table, b_table, sizes, num_layers, in_mean, in_std, max_lv, min_lv, slope,
        pw_table, pb_table, psizes, p_layers, p_mean, p_std, p_max_lv, p_min_lv, p_slope,
        feat_src, feat_kind, P, K, H, D, A, F, D_OUT, num_members, rows_total, num_members_all,
        seed_lo, seed_hi, o0_lo, o0_hi, o1_lo, o1_hi, o2_lo, o2_hi, dt,
        MODE: tl.constexpr, REWARD: tl.constexpr, RETURN_STATES: tl.constexpr,
        HAS_PERM: tl.constexpr, POLICY: tl.constexpr, P_NORMALIZE: tl.constexpr,
        NORMALIZE: tl.constexpr, ACT: tl.constexpr, P_ACT: tl.constexpr, BF16: tl.constexpr,
        P_BF16: tl.constexpr, BF16_DOT: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
        BN: tl.constexpr, WN: tl.constexpr, DP: tl.constexpr, AP: tl.constexpr,
        FEATURES: tl.constexpr, FP: tl.constexpr, PRECISION: tl.constexpr):
    # MODE: 0 ts1, 1 tsinf, 2 expectation, 3 fixed (members = [member]).
    # FEATURES: column c of features(s) [F] is feat_kind[c] (0 value, 1 sin, 2 cos) of
    # s[feat_src[c]] (ops/features.py); without, features(s) = s and F = D.
    pid = tl.program_id(0)
    scratch += pid.to(tl.int64) * (3 * BM * WN)
    out_slot = scratch + (1 + (num_layers - 1) % 2) * (BM * WN)
    p_out_slot = scratch + (1 + (p_layers - 1) % 2) * (BM * WN)
    r = tl.arange(0, BM)
    jd = tl.arange(0, DP)
    ja = tl.arange(0, AP)
    d_ok = jd < D
    a_ok = ja < A
    if FEATURES:
        jz = tl.arange(0, FP)  # feature columns of z
        z_ok = jz < F
    else:
        jz = jd
        z_ok = d_ok
    for tile in range(pid, tl.cdiv(rows_total, BM), tl.num_programs(0)):
        idx = tile * BM + r
        row_ok = idx < rows_total
        if HAS_PERM:
            row = tl.load(perm + idx, mask=row_ok, other=0)
        else:
            row = idx.to(tl.int64)
        seq = row // K  # n * P + p
        n_idx = seq // P
        s = tl.load(obs + n_idx[:, None] * D + jd[None, :], mask=row_ok[:, None] & d_ok[None, :],
                    other=0.0)  # [BM, DP]
        if RETURN_STATES:
            tl.store(states + (row * (H + 1))[:, None] * D + jd[None, :], s,
                     mask=row_ok[:, None] & d_ok[None, :])
        total = tl.zeros((BM,), dtype=tl.float32)
        if MODE == 1:
            draw = randint_at(row, num_members, seed_lo, seed_hi, o1_lo, o1_hi)
        else:
            draw = tl.zeros((BM,), dtype=tl.int32)
        for t in range(H):
            if MODE == 0:
                draw = randint_at(row * H + t, num_members, seed_lo, seed_hi, o1_lo, o1_hi)
            # ---- action [BM, AP] ----
            if POLICY:
                v = s
                if P_NORMALIZE:
                    v = (v - tl.load(p_mean + jd, mask=d_ok, other=0.0)[None, :]) / \
                        tl.load(p_std + jd, mask=d_ok, other=1.0)[None, :]
                tl.debug_barrier()
                tl.store(scratch + r[:, None] * WN + jd[None, :], v, mask=d_ok[None, :])
                tmlp.mlp_forward(scratch, pw_table, pb_table, psizes, p_layers, 0, p_slope, P_ACT,
                                 P_BF16, BF16_DOT, BM, BK, BN, WN, PRECISION)
                mu_pi = tl.load(p_out_slot + r[:, None] * WN + ja[None, :], mask=a_ok[None, :],
                                other=0.0)
                raw_pi = tl.load(p_out_slot + r[:, None] * WN + A + ja[None, :],
                                 mask=a_ok[None, :], other=0.0)
                hi_pi = tl.load(p_max_lv + ja, mask=a_ok, other=0.0)
                lo_pi = tl.load(p_min_lv + ja, mask=a_ok, other=0.0)
                lv_pi = tmlp.soft_bound(raw_pi, hi_pi[None, :], lo_pi[None, :])
                eps_pi = normal_at((row * H + t)[:, None] * A + ja[None, :], seed_lo, seed_hi,
                                   o2_lo, o2_hi)
                a = tmlp.tanh(mu_pi + tl.exp(0.5 * lv_pi) * eps_pi)
                a = tl.where(a_ok[None, :], a, 0.0)
                tl.store(taken + (row * H + t)[:, None] * A + ja[None, :], a,
                         mask=row_ok[:, None] & a_ok[None, :])
            else:
                a = tl.load(actions + (seq * H + t)[:, None] * A + ja[None, :],
                            mask=row_ok[:, None] & a_ok[None, :], other=0.0)
            # ---- model input z = normalize(concat(features(s), a)) -> scratch slot 0 ----
            if FEATURES:
                zs = gather_features(scratch, s, feat_src, feat_kind, jz, z_ok, jd, d_ok, r,
                                     WN)  # [BM, FP]
            else:
                zs = s
            za = a
            if NORMALIZE:
                zs = (zs - tl.load(in_mean + jz, mask=z_ok, other=0.0)[None, :]) / \
                    tl.load(in_std + jz, mask=z_ok, other=1.0)[None, :]
                za = (za - tl.load(in_mean + F + ja, mask=a_ok, other=0.0)[None, :]) / \
                    tl.load(in_std + F + ja, mask=a_ok, other=1.0)[None, :]
            tl.debug_barrier()
            tl.store(scratch + r[:, None] * WN + jz[None, :], zs, mask=z_ok[None, :])
            tl.store(scratch + r[:, None] * WN + F + ja[None, :], za, mask=a_ok[None, :])
            # ---- delta over the member slots used by this tile ----
            delta = tl.zeros((BM, DP), dtype=tl.float32)
            r_delta = tl.zeros((BM,), dtype=tl.float32)
            eps = tl.zeros((BM, DP), dtype=tl.float32)
            eps_r = tl.zeros((BM,), dtype=tl.float32)
            if MODE != 2:
                e_idx = (row * H + t) * D_OUT
                eps = normal_at(e_idx[:, None] + jd[None, :], seed_lo, seed_hi, o0_lo, o0_hi)
                if REWARD == REWARD_MODEL:
                    eps_r = normal_at(e_idx + D, seed_lo, seed_hi, o0_lo, o0_hi)
            for slot in range(num_members):
                sel = (draw == slot) & row_ok
                if MODE == 2 or tl.max(sel.to(tl.int32), axis=0) > 0:
                    member = tl.load(members + slot)
                    tmlp.mlp_forward(scratch, w_table, b_table, sizes, num_layers, member, slope,
                                     ACT, BF16, BF16_DOT, BM, BK, BN, WN, PRECISION)
                    mu = tl.load(out_slot + r[:, None] * WN + jd[None, :], mask=d_ok[None, :],
                                 other=0.0)
                    mu_r = tl.load(out_slot + r * WN + D)
                    if MODE == 2:
                        delta += mu
                        r_delta += mu_r
                    else:
                        raw = tl.load(out_slot + r[:, None] * WN + D_OUT + jd[None, :],
                                      mask=d_ok[None, :], other=0.0)
                        hi = tl.load(max_lv + jd, mask=d_ok, other=0.0)
                        lo = tl.load(min_lv + jd, mask=d_ok, other=0.0)
                        lv = tmlp.soft_bound(raw, hi[None, :], lo[None, :])
                        delta = tl.where(sel[:, None], mu + tl.exp(0.5 * lv) * eps, delta)
                        if REWARD == REWARD_MODEL:
                            lv_r = tmlp.soft_bound(tl.load(out_slot + r * WN + D_OUT + D),
                                                   tl.load(max_lv + D), tl.load(min_lv + D))
                            r_delta = tl.where(sel, mu_r + tl.exp(0.5 * lv_r) * eps_r, r_delta)
            if MODE == 2:
                delta = delta / num_members
                r_delta = r_delta / num_members
            nxt = s + delta
            # ---- non-finite check: first (t, row) wins, the member is encoded below ----
            finite = (nxt == nxt) & (tl.abs(nxt) < float("inf"))
            finite = tl.where(d_ok[None, :], finite, True).to(tl.int32)
            is_bad = (tl.min(finite, axis=1) == 0) & row_ok
            if tl.max(is_bad.to(tl.int32), axis=0) > 0:
                if MODE == 2:
                    mem = tl.full((BM,), -1, tl.int64)
                else:
                    mem = tl.load(members + draw, mask=row_ok, other=0).to(tl.int64)
                key = ((t * rows_total + row) * (num_members_all + 1) + mem + 1)
                tl.atomic_min(bad, tl.min(tl.where(is_bad, key, _NO_NON_FINITE), axis=0))
            # ---- reward ----
            if REWARD == REWARD_MODEL:
                rew = r_delta
            elif REWARD == REWARD_HALFCHEETAH:
                x0 = tl.sum(tl.where(jd[None, :] == 0, s, 0.0), axis=1)
                x1 = tl.sum(tl.where(jd[None, :] == 0, nxt, 0.0), axis=1)
                rew = halfcheetah_reward(x0, x1, tl.sum(a * a, axis=1), dt)
            else:
                rew = tl.zeros((BM,), dtype=tl.float32)
            total += rew
            s = nxt
            if RETURN_STATES:
                tl.store(states + (row * (H + 1) + t + 1)[:, None] * D + jd[None, :], s,
                         mask=row_ok[:, None] & d_ok[None, :])
                if REWARD != REWARD_NONE:
                    tl.store(step_rewards + row * H + t, rew, mask=row_ok)
        if REWARD != REWARD_NONE:
            tl.store(row_returns + row, total, mask=row_ok)


@functools.lru_cache(maxsize=32)
def _members_on(values: tuple[int, ...], device: str) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64, device=device)


@functools.lru_cache(maxsize=32)
def _feature_table(features: ObsFeatures, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(src [F], kind [F]) int64 on the device: built once per map, no per-call H2D copy."""
    return features.table(device)


def propagate_triton(params: MLPParams, obs: torch.Tensor, actions: torch.Tensor | None,
                     spec: PropagateSpec, policy: MLPParams | None = None) -> PropagateResult:
    """obs [N, D], actions [N, P, H, A] (or None with a policy) -> PropagateResult with
    returns per particle [N, P, K] (ops/_launch.py). The reward must be one the Triton kernel
    fuses (backends.CAPABILITIES); ops.propagate scores the others with torch."""
    s = spec
    dev = obs.device
    rows = s.rows
    sizes = params.sizes
    psizes = policy.sizes if policy is not None else (1,)
    feats = params.obs_features
    feats = None if feats is None or feats.is_identity else feats
    f = s.d if feats is None else feats.width
    wn = tmlp.width(sizes, psizes, (s.d,))  # slot 0 also stages s [D] for the features
    slots = _launch.member_slots(s)
    members = _members_on(slots, str(dev))
    perm = _launch.tsinf_order(s, fill, dev)
    reward_id = _launch.reward_id(s, "triton")
    out = _launch.row_outputs(s, reward_id != 0, policy is not None, dev)
    bad = out.bad
    unused = lambda t: t if t is not None else obs  # noqa: E731  (a pointer never read)
    tiles = triton.cdiv(rows, tmlp.BM)
    grid = tmlp.num_programs(tiles, dev)
    scratch = torch.empty(grid, 3, tmlp.BM, wn, dtype=torch.float32, device=dev)
    w_t, b_t, size_t = tmlp.param_tables(params, sizes)
    pol = policy if policy is not None else params
    pw_t, pb_t, psize_t = tmlp.param_tables(pol, pol.sizes)
    dummy = params.biases[0]
    opt = lambda t: t if t is not None else dummy  # noqa: E731
    f_src, f_kind = _feature_table(feats, str(dev)) if feats is not None else (bad, bad)
    seed_lo, seed_hi, o0_lo, o0_hi = key_halves(s.seed, s.offset)
    o1_lo, o1_hi = key_halves(0, s.offset + 1)[2:]
    o2_lo, o2_hi = key_halves(0, s.offset + 2)[2:]
    _propagate_kernel[(grid,)](
        obs, unused(actions), perm if perm is not None else bad, members,
        unused(out.states), unused(out.rewards), unused(out.returns), unused(out.taken), bad,
        scratch,
        w_t, b_t, size_t, len(params.weights), opt(params.in_mean), opt(params.in_std),
        params.max_logvar, params.min_logvar, float(params.leaky_slope),
        pw_t, pb_t, psize_t, len(pol.weights), opt(pol.in_mean), opt(pol.in_std),
        opt(pol.max_logvar), opt(pol.min_logvar), float(pol.leaky_slope),
        f_src, f_kind, s.p, s.k, s.h, s.d, s.a, f, s.d_out, len(slots), rows, params.num_members,
        seed_lo, seed_hi, o0_lo, o0_hi, o1_lo, o1_hi, o2_lo, o2_hi, _launch.reward_dt(s),
        MODE=MODE_IDS[s.mode], REWARD=reward_id, RETURN_STATES=s.return_states,
        HAS_PERM=perm is not None, POLICY=policy is not None,
        P_NORMALIZE=pol.in_mean is not None, NORMALIZE=params.in_mean is not None,
        ACT=ACTIVATION_IDS[params.activation], P_ACT=ACTIVATION_IDS[pol.activation],
        BF16=params.is_bf16, P_BF16=pol.is_bf16, BF16_DOT=tmlp.bf16_dot(), BM=tmlp.BM,
        BK=tmlp.BK, BN=tmlp.panel(wn), WN=wn, DP=triton.next_power_of_2(max(s.d, 2)),
        AP=triton.next_power_of_2(max(s.a, 2)), FEATURES=feats is not None,
        FP=triton.next_power_of_2(max(f, 2)), PRECISION=tmlp.FP32_DOT,
        num_warps=PROPAGATE_WARPS, enable_fp_fusion=True)
    return _launch.to_result(out, s, params.num_members)
