"""cem_update and mppi_update (ops/elite_update.py): every compiled backend and kernel path
(tests/ops/conftest.py) against the reference -- elites, best samples, best returns and the
convergence flags exactly, moments to float tolerance -- the reference's semantics by hand, and
the bad-input errors. Their samplers (ops/samplers.py): tests/ops/test_samplers.py."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from mbrl_fast.ops import elite_update as eu

# Triton's interpreter evaluates both sides of the mppi kernel's tl.where on numpy arrays: the
# discarded side is inf - inf for a row of +inf or all-NaN returns, and numpy warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in subtract")
CEM = pytest.mark.op("cem_update")
MPPI = pytest.mark.op("mppi_update")

# (N, P, H, A, K), returns from problem(). The first four (the former Triton interpreter
# cases): ties from rounding, a NaN return, -0.0 / +0.0 (P > 3), K from 1 to P; then K = 1,
# H A = 180 (three 64-column panels of the Triton kernel) and K = P. CEM_LARGE: PETS-sized
# batches and a P of 8192 sorted in one program.
CEM_SHAPES = [(1, 1, 1, 1, 1), (3, 7, 3, 2, 3), (2, 123, 5, 3, 10), (2, 300, 2, 6, 300),
              (3, 37, 7, 5, 1), (2, 123, 30, 6, 4), (1, 5, 1, 1, 5)]
CEM_LARGE = [(64, 500, 30, 6, 50), (2, 8192, 10, 6, 64)]  # 27-43 s each interpreted: skipped
# (N, P, H, A): the CEM shapes', then several P-chunks of 128 and H A = 600 in 10 panels.
MPPI_SHAPES = [(1, 1, 1, 1), (3, 7, 3, 2), (2, 123, 5, 3), (2, 300, 2, 6), (3, 37, 7, 5),
               (2, 123, 30, 6), (2, 8192, 10, 6)]
MPPI_GPU = (64, 8192, 100, 6)  # 1.3 GB of samples: run where the backend's device is CUDA


def problem(n, p, h, a, seed=0, nonfinite=False):
    """samples, returns, mean, var: returns rounded (ties), with a NaN and -0.0 / +0.0 when
    P > 3; ``nonfinite``: also 30% NaN, a few -inf and +inf, and (N > 1) an all-NaN row."""
    g = torch.Generator().manual_seed(seed)
    samples = torch.randn(n, p, h, a, generator=g)
    returns = torch.randn(n, p, generator=g).mul(100).round()  # rounding makes ties
    if p > 3:
        returns[0, 2], returns[-1, 1], returns[-1, 0] = math.nan, -0.0, 0.0
    mean, var = torch.randn(n, h, a, generator=g), torch.rand(n, h, a, generator=g)
    if nonfinite:
        returns[torch.rand(n, p, generator=g) < 0.3] = math.nan
        returns[0, 1::5] = -math.inf
        returns[-1, 3::7] = math.inf
        if n > 1:
            returns[1] = math.nan
    return samples, returns, mean, var


def assert_near(got, ref, rtol, atol, what):
    """|got - ref| <= atol + rtol |ref| elementwise, NaN and +-inf where ref has them; got may
    live on another device (rtol = atol = 0: equal)."""
    torch.testing.assert_close(got.cpu(), ref, rtol=rtol, atol=atol, equal_nan=True,
                               msg=lambda m: f"{what}: {m}")


def assert_equal(got, ref, what):
    got = got.cpu()
    assert got.dtype == ref.dtype and torch.equal(got, ref), f"{what}: not equal"


# ---- cem_update ----------------------------------------------------------------------


def check_cem(backend, shape, nonfinite, alpha=0.1, epsilon=0.5):
    n, p, h, a, k = shape
    s, r, mean, var = problem(n, p, h, a, nonfinite=nonfinite)
    ref = eu.cem_update_reference(s, r, mean, var, k, alpha, epsilon)
    got = eu.cem_update(*backend.to((s, r, mean, var)), num_elites=k, alpha=alpha,
                        epsilon=epsilon, backend=backend.name)
    assert got.elites.device.type == backend.device.type
    assert_equal(got.elites, ref.elites, "elites")
    assert_near(got.mean, ref.mean, 1e-6, 1e-7, "mean")
    assert_near(got.var, ref.var, 1e-6, 1e-7, "var")
    assert_equal(got.best, ref.best, "best")
    assert_near(got.best_return, ref.best_return, 0.0, 0.0, "best_return")
    assert torch.equal(got.best_return.cpu().signbit(), ref.best_return.signbit())
    assert_equal(got.converged, ref.converged, "converged")


@CEM
@pytest.mark.parametrize("nonfinite", [False, True])
@pytest.mark.parametrize("shape", CEM_SHAPES)
def test_cem_update_matches_reference(backend, shape, nonfinite):
    check_cem(backend, shape, nonfinite)


@CEM
@pytest.mark.parametrize("shape", CEM_LARGE)
def test_cem_update_planner_sizes(backend, shape):
    if backend.interpreted:
        pytest.skip("27-43 s in Triton's interpreter; the sizes above run the same code there")
    check_cem(backend, shape, nonfinite=False)


@CEM
@pytest.mark.parametrize("alpha,epsilon", [(0.0, 0.0), (1.0, 0.3), (0.5, math.inf)])
def test_cem_update_momentum_and_stop(backend, alpha, epsilon):
    check_cem(backend, (3, 37, 7, 5, 4), nonfinite=False, alpha=alpha, epsilon=epsilon)


def _check_cem_semantics(run):
    samples, returns, mean, var = problem(2, 20, 4, 3, seed=1, nonfinite=True)
    k = 5
    upd = run(samples, returns, mean, var, num_elites=k, alpha=0.0)
    finite = [(-r, i) for i, r in enumerate(returns[0].tolist()) if not math.isnan(r)]
    assert upd.elites[0].tolist() == [i for _, i in sorted(finite)][:k]
    assert upd.elites[1].tolist() == list(range(k))  # a row of NaN: elites by index
    elites = samples[0, upd.elites[0]]
    torch.testing.assert_close(upd.mean[0], elites.mean(0))
    torch.testing.assert_close(upd.var[0], elites.var(0, unbiased=False))
    torch.testing.assert_close(upd.best[0], samples[0, upd.elites[0, 0]])
    assert upd.best_return[0] == returns[0].nan_to_num(-math.inf).max()
    assert math.isnan(upd.best_return[1])
    assert not upd.converged.any()  # epsilon = 0 never stops
    kept = run(samples, returns, mean, var, num_elites=k, alpha=1.0, epsilon=10.0)
    torch.testing.assert_close(kept.mean, mean)
    torch.testing.assert_close(kept.var, var)
    assert kept.converged.all()


def test_reference_cem_update_semantics():
    _check_cem_semantics(lambda *t, **kw: eu.cem_update(*t, backend="reference", **kw))


@CEM
def test_cem_update_semantics(backend):
    def run(*tensors, **kw):
        upd = eu.cem_update(*backend.to(tensors), backend=backend.name, **kw)
        return eu.CEMUpdate(*(getattr(upd, f.name).cpu() for f in dataclasses.fields(upd)))

    _check_cem_semantics(run)


# ---- mppi_update ---------------------------------------------------------------------


def check_mppi(backend, s, r, temperature):
    ref = eu.mppi_update_reference(s, r, temperature)
    got = eu.mppi_update(*backend.to((s, r)), temperature=temperature, backend=backend.name)
    assert got.weights.device.type == backend.device.type
    for f in ("mean", "var", "weights"):
        assert_near(getattr(got, f), getattr(ref, f), 1e-5, 1e-7, f)


@MPPI
@pytest.mark.parametrize("nonfinite", [False, True])
@pytest.mark.parametrize("temperature", [0.05, 0.5, 7.0, 30.0])
@pytest.mark.parametrize("shape", MPPI_SHAPES)
def test_mppi_update_matches_reference(backend, shape, temperature, nonfinite):
    s, r, _, _ = problem(*shape, seed=3, nonfinite=nonfinite)
    check_mppi(backend, s, r, temperature)


@MPPI
@pytest.mark.parametrize("temperature", [0.5, 7.0])
def test_mppi_update_gpu_size(backend, temperature):
    if backend.device.type != "cuda":
        pytest.skip(f"{MPPI_GPU}: 1.3 GB of samples, a GPU's size (P-chunks and column panels "
                    "run above at smaller N)")
    s, r, _, _ = problem(*MPPI_GPU)
    check_mppi(backend, s, r, temperature)


@MPPI
def test_mppi_update_plus_inf_and_all_nan_rows(backend):
    g = torch.Generator().manual_seed(0)
    r = torch.randn(3, 9, generator=g)
    r[0, 3] = r[0, 5] = math.inf  # +inf returns share all the weight
    r[1] = math.nan  # no usable return: uniform
    s = torch.randn(3, 9, 2, 2, generator=g)
    check_mppi(backend, s, r, 1.0)


def _check_mppi_semantics(run):
    g = torch.Generator().manual_seed(2)
    samples, returns = torch.randn(3, 16, 2, 2, generator=g), torch.randn(3, 16, generator=g)
    returns[0, 5] = math.nan
    returns[1] = math.nan
    returns[2, 7] = math.inf
    upd = run(samples, returns, temperature=0.5)
    expect = torch.softmax(returns[0].nan_to_num(-math.inf) / 0.5, dim=0)
    torch.testing.assert_close(upd.weights[0], expect)
    assert upd.weights[0, 5] == 0
    torch.testing.assert_close(upd.weights[1], torch.full((16,), 1 / 16))
    assert upd.weights[2, 7] == 1 and upd.weights[2].sum() == 1
    torch.testing.assert_close(upd.mean[1], samples[1].mean(0))
    torch.testing.assert_close(upd.mean[2], samples[2, 7])
    torch.testing.assert_close(upd.var[1], samples[1].var(0, unbiased=False))
    cold = run(samples, returns, temperature=1e-6)  # argmax
    torch.testing.assert_close(cold.mean[0], samples[0, returns[0].nan_to_num(-math.inf).argmax()])


def test_reference_mppi_update_semantics():
    _check_mppi_semantics(lambda *t, **kw: eu.mppi_update(*t, backend="reference", **kw))


@MPPI
def test_mppi_update_semantics(backend):
    def run(*tensors, **kw):
        upd = eu.mppi_update(*backend.to(tensors), backend=backend.name, **kw)
        return eu.MPPIUpdate(upd.mean.cpu(), upd.var.cpu(), upd.weights.cpu())

    _check_mppi_semantics(run)


# ---- both ------------------------------------------------------------------------------


@pytest.mark.op("cem_update", "mppi_update")
def test_non_contiguous_inputs(backend):
    s, r, mean, var = problem(2, 40, 6, 3, seed=5)
    st = s.transpose(2, 3).contiguous().transpose(2, 3)  # [N, P, H, A] in another layout
    rt = r.t().contiguous().t()
    assert not st.is_contiguous() and not rt.is_contiguous()
    ref = eu.cem_update_reference(s, r, mean, var, 7, 0.1, 0.5)
    got = eu.cem_update(*backend.to((st, rt, mean, var)), num_elites=7, backend=backend.name,
                        alpha=0.1, epsilon=0.5)
    assert_equal(got.elites, ref.elites, "elites")
    assert_near(got.mean, ref.mean, 1e-6, 1e-7, "mean")
    ref = eu.mppi_update_reference(s, r, 2.0)
    got = eu.mppi_update(*backend.to((st, rt)), temperature=2.0, backend=backend.name)
    assert_near(got.mean, ref.mean, 1e-5, 1e-7, "mppi mean")


def test_validation_errors_name_the_argument():
    samples, returns, mean, var = problem(2, 6, 3, 2)
    with pytest.raises(ValueError, match="num_elites"):
        eu.cem_update(samples, returns, mean, var, num_elites=7)
    with pytest.raises(ValueError, match="num_elites"):
        eu.cem_update(samples, returns, mean, var, num_elites=0)
    with pytest.raises(ValueError, match="alpha"):
        eu.cem_update(samples, returns, mean, var, num_elites=2, alpha=1.5)
    with pytest.raises(ValueError, match="epsilon"):
        eu.cem_update(samples, returns, mean, var, num_elites=2, epsilon=-1.0)
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
    for t in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="temperature"):
            eu.mppi_update(samples, returns, temperature=t)
