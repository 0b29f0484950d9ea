"""Triton kernels without a GPU: under the interpreter against the references, and
compiled to sm_80 / sm_90 cubins by Triton's own NVIDIA backend.

``TRITON_INTERPRET`` is read when triton is imported, so every group runs in a
subprocess (this file as a script) with its own environment: nothing leaks into
other test modules. The script prints one JSON object ``{case: [error, bound]}``;
the test fails on any case whose error exceeds its bound, naming the cases.

Interpreter limits (triton 3.9): bf16 ``tl.dot`` returns garbage there, so the
bf16 kernels multiply the bf16-rounded operands in fp32 under the interpreter
(exact products, same result; ``BF16_DOT``) -- the real bf16 ``tl.dot`` path is
covered by the ``compile`` group and by tests/gpu. The kernels avoid libdevice
tanh / log1p (tanh and softplus are written with exp/log).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

GROUPS = ("noise", "ensemble_mlp", "propagate", "elite_update", "compile")


def _run_group(group: str, cache_dir) -> dict:
    env = dict(os.environ, TRITON_INTERPRET="0" if group == "compile" else "1",
               TRITON_CACHE_DIR=str(cache_dir), TRITON_DEFAULT_FP_FUSION="1")
    env.pop("MBRL_FAST_BACKEND", None)
    proc = subprocess.run([sys.executable, __file__, group], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, \
        f"{group} script failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("group", GROUPS)
def test_triton_group(group, tmp_path):
    results = _run_group(group, tmp_path)
    assert len(results) >= 4, f"{group}: only {len(results)} cases ran"
    bad = {case: v for case, v in results.items() if not v[0] <= v[1]}
    assert not bad, f"{group}: {len(bad)}/{len(results)} cases over tolerance: {bad}"


# ---- the subprocess side ------------------------------------------------------------


def _err(got, ref, rtol, atol):
    """[max |got - ref|, rtol * max |ref| + atol] (NaN-aware: NaN must meet NaN)."""
    import torch

    if ref is None or got is None:
        return [0.0 if got is None and ref is None else float("inf"), 0.0]
    if got.shape != ref.shape or got.dtype != ref.dtype:
        return [float("inf"), 0.0]
    nan = torch.isnan(ref)
    if not torch.equal(nan, torch.isnan(got)):
        return [float("inf"), 0.0]
    g, r = got[~nan].double(), ref[~nan].double()
    if r.numel() == 0:
        return [0.0, 0.0]
    return [float((g - r).abs().max()), rtol * float(r.abs().max()) + atol]


def _exact(got, ref):
    import torch

    return [0.0 if torch.equal(got, ref) else 1.0, 0.0]


def _noise_cases():
    from mbrl_fast.ops import noise

    out = {}
    for seed, offset in [(0, 0), (1, 1), (2**64 - 1, 2**63 + 7), (12345, 2**32 + 3)]:
        for n in (1, 7, 4 * 1024 * 2 + 5):
            for kind, fn in (("uint32", noise.philox_uint32), ("uniform", noise.uniform),
                             ("normal", noise.normal)):
                ref = fn((n,), seed, offset, backend="reference")
                got = fn((n,), seed, offset, backend="triton")
                out[f"{kind} seed={seed} offset={offset} n={n}"] = _exact(got, ref)
    return out


def _mlp_cases():
    import torch
    from helpers import TOL, random_mlp_params

    from mbrl_fast.ops.ensemble_mlp import ACTIVATIONS, ensemble_mlp, ensemble_mlp_reference

    out = {}
    g = torch.Generator().manual_seed(0)
    for e in (1, 3):
        for b in (1, 7, 45):
            for act in ACTIVATIONS:
                for gaussian, bf16, shared_x in ((True, False, False), (False, False, True),
                                                 (True, True, False)):
                    dtype = "bf16" if bf16 else "fp32"
                    p = random_mlp_params(E=e, sizes=(7, 16, 33, 10), activation=act,
                                          gaussian=gaussian, bf16=bf16, normalize=True, seed=b)
                    x = torch.randn(*((b, 7) if shared_x else (e, b, 7)), generator=g)
                    ref = ensemble_mlp_reference(x.expand(e, -1, -1) if shared_x else x, p)
                    got = ensemble_mlp(x, p, backend="triton")
                    refs, gots = (ref, got) if gaussian else ((ref,), (got,))
                    for i, (rr, gg) in enumerate(zip(refs, gots, strict=True)):
                        out[f"E={e} B={b} {act} gaussian={gaussian} {dtype} out{i}"] = \
                            _err(gg, rr, **TOL[dtype])
    # no normalizer, deeper net, wide odd layer (several K-chunks and a 256-wide tile)
    p = random_mlp_params(E=2, sizes=(6, 40, 200, 40, 7), activation="elu", gaussian=False,
                          normalize=False)
    x = torch.randn(2, 33, 6, generator=g)
    out["deep wide no-normalizer"] = _err(ensemble_mlp(x, p, backend="triton"),
                                          ensemble_mlp_reference(x, p), **TOL["fp32"])
    return out


def _propagate_cases():
    import torch
    from helpers import TOL, random_mlp_params

    from mbrl_fast.ops.propagate import MODES, propagate

    out = {}
    D, A = 5, 3
    fields = ("states", "rewards", "returns", "actions")

    def compare(name, params, obs, actions, dtype="fp32", **kw):
        ref = propagate(params, obs, actions, backend="reference", **kw)
        got = propagate(params, obs, actions, backend="triton", **kw)
        for f in fields:
            out[f"{name} {f}"] = _err(getattr(got, f), getattr(ref, f), **TOL[dtype])

    g = torch.Generator().manual_seed(3)
    for e in (1, 3):
        for mode in MODES:
            for reward in (None, "model", "halfcheetah"):
                for (n, p, k, h) in ((1, 1, 1, 1), (2, 7, 3, 3)):
                    d_out = D + 1 if reward == "model" else D
                    params = random_mlp_params(E=e, sizes=(D + A, 16, 2 * d_out), seed=e + h)
                    obs = torch.randn(n, D, generator=g)
                    act = torch.rand(n, p, h, A, generator=g) * 2 - 1
                    compare(f"E={e} {mode} reward={reward} N={n} P={p} K={k} H={h}", params, obs,
                            act, particles=k, mode=mode, member=e - 1 if mode == "fixed" else None,
                            seed=7, offset=5, reward=reward)
    params = random_mlp_params(E=4, sizes=(D + A, 24, 24, 2 * D), bf16=True)
    obs, act = torch.randn(2, D, generator=g), torch.rand(2, 5, 3, A, generator=g) * 2 - 1
    for mode in MODES:
        compare(f"bf16 {mode}", params, obs, act, "bf16", particles=3, mode=mode, member=1,
                seed=2, reward="halfcheetah")
    compare("members subset with a duplicate, no states", params, obs, act, "bf16", particles=3,
            mode="tsinf", members=[0, 2, 2], seed=3, reward="halfcheetah", return_states=False)
    compare("torch reward", params, obs, act, "bf16", particles=2, mode="ts1", seed=4,
            reward=lambda s, a, s2: s2.sum(-1) - s[..., 1] * a[..., 0])
    model = random_mlp_params(E=3, sizes=(D + A, 16, 2 * (D + 1)))
    policy = random_mlp_params(E=1, sizes=(D, 16, 2 * A), seed=9)
    for mode in ("ts1", "tsinf"):
        compare(f"policy in the loop {mode}", model, torch.randn(4, D, generator=g), None,
                particles=3, mode=mode, seed=1, offset=2**64 - 10, reward="model", policy=policy,
                horizon=3)
    _feature_cases(compare, g, A)
    # a non-finite state raises the reference's error, naming the same particle
    params = random_mlp_params(E=2, sizes=(D + A, 16, 2 * D))
    params.biases[-1][1, 2] = float("inf")
    messages = []
    for backend in ("reference", "triton"):
        try:
            propagate(params, obs, act, particles=3, mode="ts1", seed=3, backend=backend)
            messages.append(None)
        except FloatingPointError as exc:
            messages.append(str(exc))
    out["non-finite error"] = [0.0 if messages[0] and messages[0] == messages[1] else 1.0, 0.0]
    return out


def _feature_cases(compare, g, A):
    """params.obs_features: the model reads concat(features(s), a) (ops/features.py)."""
    from dataclasses import replace

    import torch
    from helpers import random_mlp_params

    from mbrl_fast.ops.features import ObsFeatures

    def model(features, d_out, e=3, bf16=False, seed=5):
        sizes = (features.width + A, 16, 2 * d_out)
        return replace(random_mlp_params(E=e, sizes=sizes, bf16=bf16, seed=seed),
                       obs_features=features)

    feats = ObsFeatures(6, drop=(0,), angles=(2, 4))  # F = 7: odd, and F + A != D + A
    obs = torch.randn(2, 6, generator=g) * 3  # angles of a few turns: sin / cos wrap
    act = torch.rand(2, 7, 3, A, generator=g) * 2 - 1
    for mode in ("ts1", "tsinf", "expectation", "fixed"):
        for reward in (None, "halfcheetah", "model"):
            compare(f"features {mode} reward={reward}", model(feats, 7 if reward == "model" else 6),
                    obs, act, particles=3, mode=mode, member=1, seed=7, offset=5, reward=reward)
    compare("features bf16 tsinf", model(feats, 6, e=4, bf16=True), obs, act, "bf16",
            particles=3, mode="tsinf", seed=2, reward="halfcheetah")
    compare("features members subset, no states", model(feats, 7), obs, act, particles=2,
            mode="tsinf", members=[2, 0], seed=3, reward="model", return_states=False)
    compare("features torch reward", model(feats, 6), obs, act, particles=2, mode="ts1", seed=4,
            reward=lambda s, a, s2: torch.cos(s2[..., 2]) - 0.1 * (a * a).sum(-1))
    one = torch.rand(1, 1, 1, A, generator=g) * 2 - 1
    for name, f in (("angles only", ObsFeatures(5, angles=(1,))),  # F = 6
                    ("drop only", ObsFeatures(5, drop=(0, 3))),  # F = 3
                    ("identity", ObsFeatures(5))):  # F = D: the no-features path
        start = torch.randn(1, 5, generator=g) * 3
        compare(f"features {name} N=P=K=H=1", model(f, 5), start, one, particles=1, mode="ts1",
                seed=6, reward="halfcheetah")
    policy = random_mlp_params(E=1, sizes=(6, 16, 2 * A), seed=9)  # reads the raw state
    for mode in ("ts1", "tsinf"):
        compare(f"features policy in the loop {mode}", model(feats, 7), obs, None, particles=3,
                mode=mode, seed=1, offset=11, reward="model", policy=policy, horizon=3)


def _elite_cases():
    import torch

    from mbrl_fast.ops import elite_update as eu
    from mbrl_fast.ops._triton import elite_update as te

    out = {}
    g = torch.Generator().manual_seed(0)
    shapes = ((1, 1, 1, 1, 1), (3, 7, 3, 2, 3), (2, 123, 5, 3, 10), (2, 300, 2, 6, 300))
    for (n, p, h, a, k) in shapes:
        s = torch.randn(n, p, h, a, generator=g)
        r = torch.randn(n, p, generator=g).mul(100).round()  # rounding makes ties
        if p > 3:
            r[0, 2], r[-1, 1], r[-1, 0] = float("nan"), -0.0, 0.0
        mean, var = torch.randn(n, h, a, generator=g), torch.rand(n, h, a, generator=g)
        ref = eu.cem_update_reference(s, r, mean, var, k, 0.1, 0.5)
        got = te.cem_update_triton(s, r, mean, var, k, 0.1, 0.5)
        case = f"cem N={n} P={p} H={h} A={a} K={k}"
        out[f"{case} elites"] = _exact(got[2], ref.elites)
        out[f"{case} mean"] = _err(got[0], ref.mean, 1e-6, 1e-7)
        out[f"{case} var"] = _err(got[1], ref.var, 1e-6, 1e-7)
        out[f"{case} best"] = _exact(got[3], ref.best)
        out[f"{case} best_return"] = _err(got[4], ref.best_return, 0.0, 0.0)
        out[f"{case} converged"] = _exact(got[5], ref.converged)
        for temp in (0.5, 7.0):
            ref = eu.mppi_update_reference(s, r, temp)
            got = te.mppi_update_triton(s, r, temp)
            for i, f in enumerate(("mean", "var", "weights")):
                out[f"mppi N={n} P={p} T={temp} {f}"] = _err(got[i], getattr(ref, f), 1e-5, 1e-7)
    r = torch.randn(3, 9, generator=g)
    r[0, 3] = r[0, 5] = float("inf")
    r[1] = float("nan")
    s = torch.randn(3, 9, 2, 2, generator=g)
    ref, got = eu.mppi_update_reference(s, r, 1.0), te.mppi_update_triton(s, r, 1.0)
    for i, f in enumerate(("mean", "var", "weights")):
        out[f"mppi +inf / all-NaN rows {f}"] = _err(got[i], getattr(ref, f), 1e-5, 1e-7)
    return out


def _compile_cases():
    """Compile every kernel variant the launchers produce to sm_80 and sm_90 cubins.

    The launchers run on CPU tensors with each ``kernel[grid](...)`` call recorded
    instead of launched (outputs stay uninitialized); the recorded arguments give the
    signature Triton's JIT would build on a GPU. Catches what the interpreter cannot:
    type errors in loops, real bf16 tl.dot, register / shared-memory limits.
    """
    from dataclasses import replace

    import torch
    import triton
    from helpers import random_mlp_params
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    from mbrl_fast.ops._triton import elite_update as te
    from mbrl_fast.ops._triton import ensemble_mlp as tm
    from mbrl_fast.ops._triton import noise as tn
    from mbrl_fast.ops._triton import propagate as tp
    from mbrl_fast.ops.features import ObsFeatures
    from mbrl_fast.ops.propagate import check_args

    calls = []
    JITFunction.__getitem__ = lambda fn, grid: lambda *a, **kw: calls.append((fn, a, kw))
    for kind in tn.KINDS:
        tn.fill(kind, 10, 2**40, 3, "cpu")
    for bf16 in (False, True):
        for gaussian in (False, True):
            p = random_mlp_params(E=3, sizes=(24, 200, 200, 36), bf16=bf16, gaussian=gaussian)
            tm.ensemble_mlp_triton(torch.randn(3, 5, 24), p, p.sizes)
    obs = torch.randn(2, 18)
    act = torch.randn(2, 3, 4, 6)
    pol = random_mlp_params(E=1, sizes=(18, 64, 12))
    cheetah = ObsFeatures(18, drop=(0,), angles=(2,))  # F = 18: model input F + A = 24
    for mode, reward, bf16, policy, feats in (("ts1", "halfcheetah", False, None, None),
                                              ("tsinf", "model", True, None, None),
                                              ("expectation", None, False, None, None),
                                              ("fixed", "model", False, pol, None),
                                              ("tsinf", "halfcheetah", False, None, cheetah),
                                              ("ts1", "model", True, pol, cheetah)):
        d_out = 19 if reward == "model" else 18
        p = random_mlp_params(E=5, sizes=(24, 200, 200, 200, 2 * d_out), bf16=bf16)
        p = replace(p, obs_features=feats)
        spec = check_args(p, obs, None if policy else act, 3, mode, 1, None, 0, 0, reward, True,
                          policy, 4 if policy else None)
        tp.propagate_triton(p, obs, None if policy else act, spec, policy)
    s, r = torch.randn(2, 500, 4, 3), torch.randn(2, 500)
    te.cem_update_triton(s, r, s[:, 0], s[:, 0].abs(), 50, 0.1, 0.0)
    te.mppi_update_triton(s, r, 1.0)

    dtypes = {torch.float32: "fp32", torch.int64: "i64", torch.int32: "i32",
              torch.bfloat16: "bf16", torch.uint8: "u8"}

    def scalar_type(v):
        if isinstance(v, bool):
            return "i1"
        if isinstance(v, float):
            return "fp32"
        if -2**31 <= v < 2**31:
            return "i32"
        return "u32" if v < 2**32 else "i64" if v < 2**63 else "u64"

    out = {}
    for fn, args, kw in calls:
        values = dict(zip((p.name for p in fn.params), args, strict=False)) | kw
        options = {k: values.pop(k) for k in ("num_warps", "enable_fp_fusion") if k in values}
        sig, constexprs = {}, {}
        for prm in fn.params:
            v = values[prm.name]
            if prm.is_constexpr:
                sig[prm.name], constexprs[prm.name] = "constexpr", v
            elif prm.annotation_type:
                sig[prm.name] = prm.annotation_type
            elif isinstance(v, torch.Tensor):
                sig[prm.name] = "*" + dtypes[v.dtype]
            else:
                sig[prm.name] = scalar_type(v)
        for cap in (80, 90):
            name = f"{fn.__name__} sm_{cap} {sorted(constexprs.items())}"
            try:
                binary = triton.compile(ASTSource(fn, sig, constexprs),
                                        target=GPUTarget("cuda", cap, 32), options=options)
                out[name] = [0.0 if binary.asm.get("cubin") else 1.0, 0.0]
            except Exception as exc:  # report, do not stop: every variant is a case
                out[name] = [1.0, 0.0]
                print(f"{name}: {type(exc).__name__}: {str(exc)[:2000]}", file=sys.stderr)
    return out


def _main(group: str) -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # helpers
    import warnings

    warnings.filterwarnings("error", module="mbrl_fast")
    cases = {"noise": _noise_cases, "ensemble_mlp": _mlp_cases, "propagate": _propagate_cases,
             "elite_update": _elite_cases, "compile": _compile_cases}[group]
    print(json.dumps(cases()))


if __name__ == "__main__":
    _main(sys.argv[1])
