"""elite_update ops: the C++ CPU backend against the reference, semantics, samplers, errors."""

from __future__ import annotations

import math

import pytest
import torch

from mbrl_fast import backends
from mbrl_fast.ops import elite_update as eu
from mbrl_fast.ops import noise

needs_cpu = pytest.mark.skipif(not backends.is_available("cpu"), reason="mbrl_fast._C not built")
SHAPES = [(1, 5, 1, 1), (3, 37, 7, 5), (2, 123, 30, 6), (1, 10, 3, 2)]  # (N, P, H, A)


def _problem(n, p, h, a, seed=0, nan_frac=0.1, ties=False):
    g = torch.Generator().manual_seed(seed)
    samples = torch.randn(n, p, h, a, generator=g)
    returns = torch.randn(n, p, generator=g)
    if ties:
        returns = torch.round(returns * 2) / 2  # many equal returns
    returns[torch.rand(n, p, generator=g) < nan_frac] = math.nan
    mean = torch.randn(n, h, a, generator=g) * 0.3
    var = torch.rand(n, h, a, generator=g)
    return samples, returns, mean, var


# ---- cem_update ----------------------------------------------------------------------


@needs_cpu
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ties", [False, True])
def test_cem_update_cpu_matches_reference(shape, ties):
    n, p, h, a = shape
    samples, returns, mean, var = _problem(*shape, ties=ties)
    for k in sorted({1, min(4, p), p}):  # P = num_elites included
        ref = eu.cem_update(samples, returns, mean, var, num_elites=k, alpha=0.1, epsilon=0.3,
                            backend="reference")
        cpu = eu.cem_update(samples, returns, mean, var, num_elites=k, alpha=0.1, epsilon=0.3,
                            backend="cpu")
        assert torch.equal(ref.elites, cpu.elites)
        torch.testing.assert_close(cpu.mean, ref.mean, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(cpu.var, ref.var, rtol=1e-6, atol=1e-6)
        assert torch.equal(ref.best, cpu.best)
        torch.testing.assert_close(cpu.best_return, ref.best_return, equal_nan=True)
        assert torch.equal(ref.converged, cpu.converged)


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=needs_cpu)])
def test_cem_update_semantics(backend):
    samples, returns, mean, var = _problem(2, 20, 4, 3, nan_frac=0.3)
    returns[1] = math.nan  # a row of NaN: elites by index
    k = 5
    upd = eu.cem_update(samples, returns, mean, var, num_elites=k, alpha=0.0, backend=backend)
    finite = [(-float(r), i) for i, r in enumerate(returns[0].tolist()) if not math.isnan(r)]
    assert upd.elites[0].tolist() == [i for _, i in sorted(finite)][:k]
    assert upd.elites[1].tolist() == list(range(k))
    elites = samples[0, upd.elites[0]]
    torch.testing.assert_close(upd.mean[0], elites.mean(0))
    torch.testing.assert_close(upd.var[0], elites.var(0, unbiased=False))
    torch.testing.assert_close(upd.best[0], samples[0, upd.elites[0, 0]])
    assert upd.best_return[0] == returns[0].nan_to_num(-math.inf).max()
    assert not upd.converged.any()  # epsilon = 0 never stops
    kept = eu.cem_update(samples, returns, mean, var, num_elites=k, alpha=1.0, epsilon=10.0,
                         backend=backend)
    torch.testing.assert_close(kept.mean, mean)
    torch.testing.assert_close(kept.var, var)
    assert kept.converged.all()


# ---- mppi_update ---------------------------------------------------------------------


@needs_cpu
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("temperature", [0.05, 1.0, 30.0])
def test_mppi_update_cpu_matches_reference(shape, temperature):
    samples, returns, _, _ = _problem(*shape, seed=3)
    returns = returns * 10
    if shape[0] > 1:
        returns[1] = math.nan  # all NaN -> uniform
    if shape[0] > 2:
        returns[2, :3] = math.inf
    ref = eu.mppi_update(samples, returns, temperature=temperature, backend="reference")
    cpu = eu.mppi_update(samples, returns, temperature=temperature, backend="cpu")
    torch.testing.assert_close(cpu.weights, ref.weights, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(cpu.mean, ref.mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cpu.var, ref.var, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=needs_cpu)])
def test_mppi_update_semantics(backend):
    samples, returns, _, _ = _problem(3, 16, 2, 2, nan_frac=0.0)
    returns[0, 5] = math.nan
    returns[1] = math.nan
    returns[2, 7] = math.inf
    upd = eu.mppi_update(samples, returns, temperature=0.5, backend=backend)
    expect = torch.softmax(returns[0].nan_to_num(-math.inf) / 0.5, dim=0)
    torch.testing.assert_close(upd.weights[0], expect)
    assert upd.weights[0, 5] == 0
    torch.testing.assert_close(upd.weights[1], torch.full((16,), 1 / 16))
    assert upd.weights[2, 7] == 1 and upd.weights[2].sum() == 1
    torch.testing.assert_close(upd.mean[1], samples[1].mean(0))
    torch.testing.assert_close(upd.mean[2], samples[2, 7])
    torch.testing.assert_close(upd.var[1], samples[1].var(0, unbiased=False))
    cold = eu.mppi_update(samples, returns, temperature=1e-6, backend=backend)  # argmax
    torch.testing.assert_close(cold.mean[0], samples[0, returns[0].nan_to_num(-math.inf).argmax()])


# ---- samplers ------------------------------------------------------------------------


def _moments(n, h, a, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, h, a, generator=g) - 0.5, torch.rand(n, h, a, generator=g) * 0.5


@needs_cpu
@pytest.mark.parametrize("shape", SHAPES)
def test_truncated_normal_cpu_matches_reference(shape):
    n, p, h, a = shape
    mean, var = _moments(n, h, a)
    var[0, 0] = 0.0  # degenerate: the clamped mean
    lower, upper = -torch.rand(a) - 0.2, torch.rand(a) * 0.6
    kw = dict(population=p, seed=7, offset=11)
    ref = eu.truncated_normal(mean, var, lower, upper, backend="reference", **kw)
    cpu = eu.truncated_normal(mean, var, lower, upper, backend="cpu", **kw)
    # Giles' erfinv (rel. 4e-7) times its slope (<= 6.5 inside 2 sigma) times std (<= 0.7)
    torch.testing.assert_close(cpu, ref, rtol=0, atol=5e-6)


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=needs_cpu)])
def test_truncated_normal_statistics(backend):
    n, p, h, a = 2, 4000, 3, 2
    mean, var = torch.zeros(n, h, a), torch.ones(n, h, a)
    x = eu.truncated_normal(mean, var, -10.0, 10.0, population=p, seed=1, backend=backend)
    assert x.shape == (n, p, h, a) and x.abs().max() <= 2.0
    assert abs(x.mean()) < 0.02
    assert abs(x.std() - 0.8796) < 0.02  # std of N(0, 1) truncated to [-2, 2]
    # bounds: the PETS constraint makes s <= distance / 2, so 2 s stays inside them
    mean = torch.tensor([0.7, -0.2]).expand(n, h, a).contiguous()
    lower, upper = torch.tensor([-1.0, -0.5]), torch.tensor([1.0, 0.5])
    x = eu.truncated_normal(mean, var, lower, upper, population=p, seed=2, backend=backend)
    assert (x >= lower).all() and (x <= upper).all()
    s = torch.tensor([0.15, 0.15])  # min(var, ((mean-lower)/2)^2, ((upper-mean)/2)^2)^0.5
    assert ((x - mean[:, None]).abs() <= 2 * s + 1e-6).all()
    assert (x[..., 0].mean() - 0.7).abs() < 0.01 and (x[..., 0].std() / 0.15 - 0.8796).abs() < 0.03


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=needs_cpu)])
def test_samplers_reproducible(backend):
    mean, var = _moments(2, 5, 3)
    for fn, extra in ((eu.truncated_normal, {}), (eu.colored_noise, {"beta": 2.0})):
        a = fn(mean, var, -1.0, 1.0, population=9, seed=3, offset=4, backend=backend, **extra)
        b = fn(mean, var, -1.0, 1.0, population=9, seed=3, offset=4, backend=backend, **extra)
        c = fn(mean, var, -1.0, 1.0, population=9, seed=3, offset=5, backend=backend, **extra)
        assert torch.equal(a, b) and not torch.equal(a, c)


@needs_cpu
@pytest.mark.parametrize("h", [1, 2, 7, 30])
@pytest.mark.parametrize("beta", [0.0, 2.5])
def test_colored_noise_cpu_matches_reference(h, beta):
    n, p, a = 2, 13, 3
    mean, var = _moments(n, h, a)
    kw = dict(population=p, beta=beta, seed=5, offset=2)
    ref = eu.colored_noise(mean, var, -0.6, 0.6, backend="reference", **kw)
    cpu = eu.colored_noise(mean, var, -0.6, 0.6, backend="cpu", **kw)
    torch.testing.assert_close(cpu, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=needs_cpu)])
def test_colored_noise_statistics(backend):
    n, p, h, a = 1, 3000, 16, 2
    zeros, ones = torch.zeros(n, h, a), torch.ones(n, h, a)
    for beta, lag1 in ((0.0, (-0.05, 0.05)), (2.5, (0.7, 1.0))):
        y = eu.colored_noise(zeros, ones, -100, 100, population=p, beta=beta, seed=9,
                             backend=backend)
        assert abs(y.mean()) < 0.05 and abs(y.std() - 1) < 0.03  # unit variance at every H
        corr = (y[:, :, 1:] * y[:, :, :-1]).mean() / y.var()
        assert lag1[0] < corr < lag1[1]
    white = eu.colored_noise(zeros[:, :1], ones[:, :1], -100, 100, population=5, beta=2.0,
                             seed=9, backend=backend)  # H = 1: the normal stream itself
    g = noise.normal((1, 5, a, 1, 2), 9, 0, backend="reference")[..., 0, 0]
    torch.testing.assert_close(white[:, :, 0], g)
    lower, upper = torch.tensor([-0.1, 0.0]), torch.tensor([0.3, 0.05])
    x = eu.colored_noise(zeros, ones, lower, upper, population=50, beta=1.0, seed=1,
                         backend=backend)
    assert (x >= lower).all() and (x <= upper).all()


# ---- validation ----------------------------------------------------------------------


def test_validation_errors_name_the_argument():
    samples, returns, mean, var = _problem(2, 6, 3, 2)
    with pytest.raises(ValueError, match="num_elites"):
        eu.cem_update(samples, returns, mean, var, num_elites=7)
    with pytest.raises(ValueError, match="num_elites"):
        eu.cem_update(samples, returns, mean, var, num_elites=0)
    with pytest.raises(ValueError, match="alpha"):
        eu.cem_update(samples, returns, mean, var, num_elites=2, alpha=1.5)
    with pytest.raises(ValueError, match="returns"):
        eu.cem_update(samples, returns[:, :5], mean, var, num_elites=2)
    with pytest.raises(ValueError, match="mean"):
        eu.cem_update(samples, returns, mean[:, :2], var[:, :2], num_elites=2)
    with pytest.raises(ValueError, match="samples"):
        eu.cem_update(samples.double(), returns, mean, var, num_elites=2)
    with pytest.raises(ValueError, match="var"):
        eu.cem_update(samples, returns, mean, -var, num_elites=2)
    with pytest.raises(TypeError, match="samples"):
        eu.mppi_update(samples.tolist(), returns, temperature=1.0)
    for t in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="temperature"):
            eu.mppi_update(samples, returns, temperature=t)
    with pytest.raises(ValueError, match="lower"):
        eu.truncated_normal(mean, var, 1.0, 0.0, population=4, seed=0)
    with pytest.raises(ValueError, match="upper"):
        eu.colored_noise(mean, var, -1.0, torch.ones(3), population=4, beta=1.0, seed=0)
    with pytest.raises(ValueError, match="population"):
        eu.truncated_normal(mean, var, -1.0, 1.0, population=0, seed=0)
    with pytest.raises(ValueError, match="beta"):
        eu.colored_noise(mean, var, -1.0, 1.0, population=4, beta=-1.0, seed=0)
    with pytest.raises(ValueError, match="var"):
        eu.truncated_normal(mean, var[:1], -1.0, 1.0, population=4, seed=0)
