"""The Triton kernels compiled to sm_80 / sm_90 cubins by Triton's own NVIDIA backend, with no
GPU: catches what the interpreter (the ``triton`` parameter of every op test file, see
tests/ops/conftest.py) cannot -- type errors in loops, real bf16 ``tl.dot``, register and
shared-memory limits.

Runs in a subprocess (this file as a script) with ``TRITON_INTERPRET=0``: the op tests import
the kernels for the interpreter, and ``@triton.jit`` decides at import. The script prints one
JSON object ``{variant: [error, bound]}``; the test fails on any variant that did not compile,
naming it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")


def test_every_kernel_variant_compiles_for_sm80_and_sm90(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path),
               TRITON_DEFAULT_FP_FUSION="1")
    env.pop("MBRL_FAST_BACKEND", None)
    proc = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, f"script failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) >= 4, f"only {len(results)} variants compiled"
    bad = sorted(case for case, (err, bound) in results.items() if not err <= bound)
    assert not bad, f"{len(bad)}/{len(results)} variants failed to compile: {bad}"


# ---- the subprocess side ------------------------------------------------------------


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
    # Every scalar a launcher passes as 1 (one member, row, particle, step, elite; seed and
    # offset 1): Triton's JIT turns an int argument equal to 1 into the constant 1 unless the
    # kernel lists it in do_not_specialize, and a kernel that calls .to() on it fails to compile.
    p1 = random_mlp_params(E=1, sizes=(7, 16, 2 * 7))  # D 6 + reward, A 1
    tm.ensemble_mlp_triton(torch.randn(1, 1, 7), p1, p1.sizes)
    pol1 = random_mlp_params(E=1, sizes=(6, 8, 2))
    for mode, policy in (("ts1", None), ("tsinf", None), ("fixed", pol1)):
        a1 = None if policy else torch.randn(1, 1, 1, 1)
        spec = check_args(p1, torch.randn(1, 6), a1, 1, mode, 0, None, 1, 1, "model", True,
                          policy, 1 if policy else None)
        tp.propagate_triton(p1, torch.randn(1, 6), a1, spec, policy)
    s1, r1 = torch.randn(1, 1, 1, 1), torch.randn(1, 1)
    te.cem_update_triton(s1, r1, s1[:, 0], s1[:, 0].abs(), 1, 0.1, 0.0)
    te.mppi_update_triton(s1, r1, 1.0)

    dtypes = {torch.float32: "fp32", torch.int64: "i64", torch.int32: "i32",
              torch.bfloat16: "bf16", torch.uint8: "u8"}

    try:  # the JIT's own rule for a scalar's type (the constant 1 too): triton 3.6 and 3.9 have it
        from triton._C.libtriton import native_specialize_impl
        from triton.backends.compiler import BaseBackend
    except ImportError:
        native_specialize_impl = None

    def scalar_type(prm, v):
        if native_specialize_impl is not None and not isinstance(v, float):
            return native_specialize_impl(BaseBackend, v, False, not prm.do_not_specialize,
                                          True)[0]
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
                sig[prm.name] = scalar_type(prm, v)
                if sig[prm.name] == "constexpr":  # an int equal to 1, as the JIT passes it
                    constexprs[prm.name] = v
        for cap in (80, 90):
            name = f"{fn.__name__} sm_{cap} {sorted(constexprs.items(), key=str)}"
            try:
                binary = triton.compile(ASTSource(fn, sig, constexprs),
                                        target=GPUTarget("cuda", cap, 32), options=options)
                out[name] = [0.0 if binary.asm.get("cubin") else 1.0, 0.0]
            except Exception as exc:  # report, do not stop: every variant is a case
                out[name] = [1.0, 0.0]
                print(f"{name}: {type(exc).__name__}: {str(exc)[:2000]}", file=sys.stderr)
    return out


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # helpers
    import warnings

    warnings.filterwarnings("error", module="mbrl_fast")
    print(json.dumps(_compile_cases()))
