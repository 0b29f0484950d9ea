"""The planners' samplers (ops/samplers.py): truncated_normal and colored_noise on every compiled
backend and kernel path that has them (tests/ops/conftest.py) against the reference, sample for
sample on the same Philox stream; their statistics, reproducibility and bad-input errors."""

from __future__ import annotations

import pytest
import torch

from mbrl_fast.ops import noise, samplers

TRUNCATED = pytest.mark.op("truncated_normal")
COLORED = pytest.mark.op("colored_noise")
SHAPES = [(1, 1, 1, 1), (1, 5, 1, 1), (1, 10, 3, 2), (3, 37, 7, 5), (2, 123, 30, 6),
          (4, 500, 30, 6)]  # (N, P, H, A)

# truncated_normal against torch's erf / erfinv: the cpu kernels' erfinv is Giles'
# single-precision approximation (rel. 4e-7) times its slope (<= 6.5 inside 2 sigma) times the
# std (<= 0.7 here); a GPU's erfinvf / erff and fast-math division are looser.
TRUNCATED_TOL = {"cpu": dict(rtol=0.0, atol=5e-6)}
GPU_TOL = dict(rtol=1e-4, atol=1e-5)


def _moments(n, h, a, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, h, a, generator=g) - 0.5, torch.rand(n, h, a, generator=g) * 0.5


def _bounds(a, kind, seed=2):
    """Random asymmetric bounds, some inside mean +- 2 s ("tight"), or [-1, 1] ("unit")."""
    if kind == "unit":
        return -torch.ones(a), torch.ones(a)
    g = torch.Generator().manual_seed(seed)
    return -torch.rand(a, generator=g) - 0.2, torch.rand(a, generator=g) * 0.6


# ---- truncated_normal ------------------------------------------------------------------


@TRUNCATED
@pytest.mark.parametrize("bounds", ["tight", "unit"])
@pytest.mark.parametrize("shape", SHAPES)
def test_truncated_normal_matches_reference(backend, shape, bounds):
    n, p, h, a = shape
    mean, var = _moments(n, h, a)
    if bounds == "unit":
        mean, var = mean * 2, var * 2  # mean in [-1, 1], var in [0, 1]
    var[0, 0] = 0.0  # degenerate: the clamped mean
    lower, upper = _bounds(a, bounds)
    kw = dict(population=p, seed=7, offset=11)
    ref = samplers.truncated_normal(mean, var, lower, upper, backend="reference", **kw)
    got = samplers.truncated_normal(*backend.to((mean, var, lower, upper)), backend=backend.name,
                                    **kw)
    assert got.device.type == backend.device.type
    torch.testing.assert_close(got.cpu(), ref, **TRUNCATED_TOL.get(backend.name, GPU_TOL))


def _check_truncated_normal_statistics(run):
    n, p, h, a = 2, 4000, 3, 2
    mean, var = torch.zeros(n, h, a), torch.ones(n, h, a)
    x = run(mean, var, torch.tensor(-10.0), torch.tensor(10.0), population=p, seed=1)
    assert x.shape == (n, p, h, a) and x.abs().max() <= 2.0
    assert abs(x.mean()) < 0.02
    assert abs(x.std() - 0.8796) < 0.02  # std of N(0, 1) truncated to [-2, 2]
    # bounds: the PETS constraint makes s <= distance / 2, so 2 s stays inside them
    mean = torch.tensor([0.7, -0.2]).expand(n, h, a).contiguous()
    lower, upper = torch.tensor([-1.0, -0.5]), torch.tensor([1.0, 0.5])
    x = run(mean, var, lower, upper, population=p, seed=2)
    assert (x >= lower).all() and (x <= upper).all()
    s = torch.tensor([0.15, 0.15])  # min(var, ((mean-lower)/2)^2, ((upper-mean)/2)^2)^0.5
    assert ((x - mean[:, None]).abs() <= 2 * s + 1e-6).all()
    assert (x[..., 0].mean() - 0.7).abs() < 0.01 and (x[..., 0].std() / 0.15 - 0.8796).abs() < 0.03


def test_reference_truncated_normal_statistics():
    _check_truncated_normal_statistics(
        lambda *t, **kw: samplers.truncated_normal(*t, backend="reference", **kw))


@TRUNCATED
def test_truncated_normal_statistics(backend):
    _check_truncated_normal_statistics(
        lambda *t, **kw: samplers.truncated_normal(*backend.to(t), backend=backend.name,
                                                   **kw).cpu())


def _check_reproducible(fn, device="cpu", **kw):
    mean, var = (t.to(device) for t in _moments(2, 5, 3))
    a = fn(mean, var, -1.0, 1.0, population=9, seed=3, offset=4, **kw)
    b = fn(mean, var, -1.0, 1.0, population=9, seed=3, offset=4, **kw)
    c = fn(mean, var, -1.0, 1.0, population=9, seed=3, offset=5, **kw)
    d = fn(mean, var, -1.0, 1.0, population=9, seed=4, offset=4, **kw)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)


def test_reference_samplers_reproducible():
    _check_reproducible(samplers.truncated_normal, backend="reference")
    _check_reproducible(samplers.colored_noise, backend="reference", beta=2.0)


@TRUNCATED
def test_truncated_normal_reproducible(backend):
    _check_reproducible(samplers.truncated_normal, backend.device, backend=backend.name)


# ---- colored_noise ---------------------------------------------------------------------


@COLORED
@pytest.mark.parametrize("h", [1, 2, 7, 30])
@pytest.mark.parametrize("beta", [0.0, 2.5])
def test_colored_noise_matches_reference(backend, h, beta):
    n, p, a = 2, 13, 3
    mean, var = _moments(n, h, a)
    kw = dict(population=p, beta=beta, seed=5, offset=2)
    ref = samplers.colored_noise(mean, var, -0.6, 0.6, backend="reference", **kw)
    got = samplers.colored_noise(*backend.to((mean, var)), -0.6, 0.6, backend=backend.name, **kw)
    assert got.device.type == backend.device.type
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-6, atol=1e-6)


def _check_colored_noise_statistics(run):
    n, p, h, a = 1, 3000, 16, 2
    zeros, ones = torch.zeros(n, h, a), torch.ones(n, h, a)
    for beta, lag1 in ((0.0, (-0.05, 0.05)), (2.5, (0.7, 1.0))):
        y = run(zeros, ones, -100, 100, population=p, beta=beta, seed=9)
        assert abs(y.mean()) < 0.05 and abs(y.std() - 1) < 0.03  # unit variance at every H
        corr = (y[:, :, 1:] * y[:, :, :-1]).mean() / y.var()
        assert lag1[0] < corr < lag1[1]
    white = run(zeros[:, :1], ones[:, :1], -100, 100, population=5, beta=2.0,
                seed=9)  # H = 1: the normal stream itself
    g = noise.normal((1, 5, a, 1, 2), 9, 0, backend="reference")[..., 0, 0]
    torch.testing.assert_close(white[:, :, 0], g)
    lower, upper = torch.tensor([-0.1, 0.0]), torch.tensor([0.3, 0.05])
    x = run(zeros, ones, lower, upper, population=50, beta=1.0, seed=1)
    assert (x >= lower).all() and (x <= upper).all()


def test_reference_colored_noise_statistics():
    _check_colored_noise_statistics(
        lambda *t, **kw: samplers.colored_noise(*t, backend="reference", **kw))


@COLORED
def test_colored_noise_statistics(backend):
    _check_colored_noise_statistics(
        lambda *t, **kw: samplers.colored_noise(*backend.to(t), backend=backend.name,
                                                **kw).cpu())


@COLORED
def test_colored_noise_reproducible(backend):
    _check_reproducible(samplers.colored_noise, backend.device, backend=backend.name, beta=2.0)


def test_powerlaw_scales_give_unit_variance():
    """sigma is the exact std of irfft of the scaled coefficients, at odd and even H."""
    for h in (1, 2, 3, 8, 31):
        for beta in (0.0, 1.0, 2.5):
            y = samplers.colored_noise_reference(
                torch.zeros(1, h, 1), torch.ones(1, h, 1), torch.tensor(-1e9),
                torch.tensor(1e9), population=4000, beta=beta, seed=h, offset=0)
            assert abs(float(y.var()) - 1) < 0.08, (h, beta)  # 3.5 standard errors


# ---- validation ------------------------------------------------------------------------


def test_validation_errors_name_the_argument():
    mean, var = _moments(2, 3, 2)
    with pytest.raises(ValueError, match="lower"):
        samplers.truncated_normal(mean, var, 1.0, 0.0, population=4, seed=0)
    with pytest.raises(ValueError, match="upper"):
        samplers.colored_noise(mean, var, -1.0, torch.ones(3), population=4, beta=1.0, seed=0)
    with pytest.raises(ValueError, match="lower"):
        samplers.truncated_normal(mean, var, -float("inf"), 1.0, population=4, seed=0)
    with pytest.raises(ValueError, match="population"):
        samplers.truncated_normal(mean, var, -1.0, 1.0, population=0, seed=0)
    with pytest.raises(ValueError, match="beta"):
        samplers.colored_noise(mean, var, -1.0, 1.0, population=4, beta=-1.0, seed=0)
    with pytest.raises(ValueError, match="var"):
        samplers.truncated_normal(mean, var[:1], -1.0, 1.0, population=4, seed=0)
    with pytest.raises(ValueError, match="var"):
        samplers.truncated_normal(mean, -var, -1.0, 1.0, population=4, seed=0)
    with pytest.raises(ValueError, match="mean"):
        samplers.colored_noise(mean.double(), var, -1.0, 1.0, population=4, beta=1.0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        samplers.truncated_normal(mean, var, -1.0, 1.0, population=4, seed=-1)
