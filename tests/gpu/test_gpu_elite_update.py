"""GPU elite updates (triton, cuda launchers) against ops/elite_update.py's references.

The op's dispatch (ops/elite_update.py) routes CUDA tensors to these launchers once
it lists the GPU backends; until then the launchers are tested directly. Skipped
without CUDA.
"""

from __future__ import annotations

import pytest
import torch

from mbrl_fast import backends
from mbrl_fast.ops import elite_update as eu

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def launchers(name: str):
    if name == "triton":
        from mbrl_fast.ops._triton import elite_update as mod

        return mod.cem_update_triton, mod.mppi_update_triton
    backends.cuda_module()  # raises BackendUnavailable with the reason
    from mbrl_fast.ops import _cuda as mod

    return mod.cem_update_cuda, mod.mppi_update_cuda


def case(n, p, h, a, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = torch.randn(n, p, h, a, generator=g)
    returns = torch.randn(n, p, generator=g).mul(100).round()  # rounding makes ties
    if p > 3:
        returns[0, 2], returns[-1, 1], returns[-1, 0] = float("nan"), -0.0, 0.0
    return samples, returns, torch.randn(n, h, a, generator=g), torch.rand(n, h, a, generator=g)


@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (3, 7, 3, 2, 3), (64, 500, 30, 6, 50),
                                   (2, 8192, 10, 6, 64), (2, 300, 2, 6, 300)])
def test_cem_update(backend, shape):
    n, p, h, a, k = shape
    cem, _ = launchers(backend)
    s, r, mean, var = case(n, p, h, a)
    ref = eu.cem_update_reference(s, r, mean, var, k, 0.1, 0.5)
    got = [t.cpu() for t in cem(s.cuda(), r.cuda(), mean.cuda(), var.cuda(), k, 0.1, 0.5)]
    assert torch.equal(got[2], ref.elites)
    assert torch.allclose(got[0], ref.mean, rtol=1e-6, atol=1e-7)
    assert torch.allclose(got[1], ref.var, rtol=1e-6, atol=1e-7)
    assert torch.equal(got[3], ref.best)
    assert torch.equal(got[4], ref.best_return)
    assert torch.equal(got[5], ref.converged)


@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 7, 3, 2), (64, 8192, 100, 6)])
@pytest.mark.parametrize("temperature", [0.5, 7.0])
def test_mppi_update(backend, shape, temperature):
    _, mppi = launchers(backend)
    s, r, _, _ = case(*shape)
    ref = eu.mppi_update_reference(s, r, temperature)
    got = [t.cpu() for t in mppi(s.cuda(), r.cuda(), temperature)]
    for g, f in zip(got, ("mean", "var", "weights"), strict=True):
        assert torch.allclose(g, getattr(ref, f), rtol=1e-5, atol=1e-7), f


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_mppi_special_rows(backend):
    _, mppi = launchers(backend)
    r = torch.randn(3, 9)
    r[0, 3] = r[0, 5] = float("inf")
    r[1] = float("nan")
    s = torch.randn(3, 9, 2, 2)
    ref = eu.mppi_update_reference(s, r, 1.0)
    got = [t.cpu() for t in mppi(s.cuda(), r.cuda(), 1.0)]
    for g, f in zip(got, ("mean", "var", "weights"), strict=True):
        assert torch.allclose(g, getattr(ref, f), rtol=1e-5, atol=1e-7), f


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (4, 500, 30, 6)])
def test_truncated_normal_cuda(shape):
    backends.cuda_module()
    from mbrl_fast.ops._cuda import truncated_normal_cuda

    n, p, h, a = shape
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(n, h, a, generator=g) * 2 - 1
    var = torch.rand(n, h, a, generator=g)
    var[0, 0, 0] = 0.0
    lower, upper = -torch.ones(a), torch.ones(a)
    ref = eu.truncated_normal_reference(mean, var, lower, upper, p, 3, 4)
    got = truncated_normal_cuda(mean.cuda(), var.cuda(), lower.cuda(), upper.cuda(), p, 3, 4).cpu()
    # erfinvf / erff and fast-math division against torch's float erf / erfinv
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5)
