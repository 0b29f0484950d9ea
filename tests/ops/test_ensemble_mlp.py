"""ensemble_mlp: every compiled backend and kernel path (tests/ops/conftest.py) against the
reference, and the op's bad-input errors."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close, cpu_backends, random_mlp_params

from mbrl_fast.ops.ensemble_mlp import ACTIVATIONS, MLPParams, ensemble_mlp

pytestmark = pytest.mark.op("ensemble_mlp")


def run(backend, x, params):
    """ensemble_mlp on ``backend`` (inputs moved to its device)."""
    return ensemble_mlp(backend.to(x), backend.to(params), backend=backend.name)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_every_activation(backend, activation, dtype):
    params = random_mlp_params(E=3, sizes=(7, 33, 16, 10), activation=activation,
                               bf16=dtype == "bf16")
    x = torch.randn(3, 123, 7, generator=torch.Generator().manual_seed(1)) * 2
    ref = ensemble_mlp(x, params, backend="reference")
    assert_close(run(backend, x, params), ref, dtype)


@pytest.mark.parametrize("E,B,sizes", [(1, 1, (5, 13, 3)), (2, 7, (5, 13, 3)), (1, 123, (3, 1, 4)),
                                       (3, 123, (24, 200, 200, 36)), (2, 97, (9, 17, 31, 65, 2)),
                                       # widths of whole 64s: the kernels copy weight panels
                                       (2, 13, (7, 64, 128, 10)), (1, 5, (3, 256, 18)),
                                       # K > 256 (panels larger than a 32 KB L1), packed or not
                                       (1, 101, (5, 300, 520, 7)), (2, 40, (3, 257, 512, 6))])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("normalize,gaussian", [(True, True), (False, False), (True, False)])
def test_shapes_and_options(backend, E, B, sizes, dtype, normalize, gaussian):
    gaussian = gaussian and sizes[-1] % 2 == 0
    params = random_mlp_params(E=E, sizes=sizes, bf16=dtype == "bf16", normalize=normalize,
                               gaussian=gaussian, seed=B)
    x = torch.randn(E, B, sizes[0], generator=torch.Generator().manual_seed(2))
    got = run(backend, x, params)
    assert isinstance(got, tuple) == gaussian
    assert_close(got, ensemble_mlp(x, params, backend="reference"), dtype)


@pytest.mark.parametrize("B", [1, 2, 3, 5, 11, 13, 25, 95, 96, 97, 191, 193])
def test_batch_sizes_across_tile_and_block_boundaries(backend, B):
    """Short tiles run 4-row blocks, tiles of a multiple of 12 / 24 rows taller ones."""
    params = random_mlp_params(E=2, sizes=(6, 40, 33, 8), seed=B)
    x = torch.randn(2, B, 6, generator=torch.Generator().manual_seed(B))
    ref = ensemble_mlp(x, params, backend="reference")
    assert_close(run(backend, x, params), ref, "fp32")


# Triton's interpreter evaluates exp() in numpy, which warns on the overflow the kernels
# are written to absorb (exp -> inf, then x / inf -> 0); the results are checked.
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_extreme_preactivations(backend, activation):
    """|pre-activations| up to ~300: the vectorized exp clamps its argument; silu of a large
    negative value once came out NaN (1 + exp(-x) = inf, then 0 * inf in the reciprocal)."""
    params = random_mlp_params(E=1, sizes=(4, 16, 6), activation=activation, scale=60.0,
                               normalize=False)
    x = torch.randn(1, 200, 4, generator=torch.Generator().manual_seed(3)) * 10
    ref = ensemble_mlp(x, params, backend="reference")
    got = run(backend, x, params)
    assert all(torch.isfinite(t).all() for t in got)
    assert_close(got, ref, "fp32")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_propagates_like_torch(backend, activation):
    """A NaN weight makes NaN outputs on every activation, as in torch (a max(x, 0) ReLU on
    the GPU backends once mapped NaN to 0, hiding a broken policy from propagate's check)."""
    params = random_mlp_params(E=2, sizes=(4, 8, 8, 6), activation=activation, gaussian=False)
    params.biases[0][1, 3] = float("nan")  # member 1, one hidden unit
    x = torch.randn(2, 9, 4, generator=torch.Generator().manual_seed(5))
    ref = ensemble_mlp(x, params, backend="reference")
    got = run(backend, x, params).cpu()
    assert torch.isnan(ref[1]).all() and not torch.isnan(ref[0]).any()
    assert torch.equal(torch.isnan(got), torch.isnan(ref))
    assert_close(got[0], ref[0], "fp32")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bf16_hidden_activations_within_one_ulp(backend, activation):
    """The bf16 path's hidden activation, seen alone: identity weights and inputs exact in
    bf16, so the output is act(x) as the kernel stores it. Each value is within one bf16 ulp
    of the reference's rounding; where the kernel rounds too (AVX512-BF16 path), at most
    1% differ at all. The AVX-512 bf16 SiLU uses a shorter exp and reciprocal than the
    fp32 one (0.3-0.5% of values one ulp off); a 6% error in its polynomial passed
    assert_close's bf16 tolerance and fails here."""
    d = 48
    eye = torch.eye(d).unsqueeze(0)
    params = MLPParams((eye, eye.clone()), (torch.zeros(1, d), torch.zeros(1, d)),
                       activation).to_bf16()
    x = (torch.randn(1, 600, d, generator=torch.Generator().manual_seed(7)) * 6).bfloat16().float()
    ref = ensemble_mlp(x, params, backend="reference")
    got = run(backend, x, params).cpu()
    ulp = torch.exp2(torch.floor(torch.log2(ref.abs().clamp_min(2.0**-126))) - 7)
    assert ((got - ref).abs() <= ulp).all(), f"max {float(((got - ref).abs() / ulp).max()):.2f} ulp"
    # Where the kernel rounds its hidden layer. Triton's interpreter (3.9) converts to bf16
    # by truncation, not to nearest like the GPU: ~60% of values one ulp toward zero.
    if torch.equal(got, got.bfloat16().float()) and not backend.interpreted:
        assert (got != ref).float().mean() <= 0.01


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
def test_gaussian_head_bounds_are_applied(backend):
    params = random_mlp_params(E=2, sizes=(4, 8, 6), scale=30.0)  # large raw logvars
    x = torch.randn(2, 50, 4) * 10
    mean, logvar = (t.cpu() for t in run(backend, x, params))
    ref_mean, ref_logvar = ensemble_mlp(x, params, backend="reference")
    assert_close((mean, logvar), (ref_mean, ref_logvar), "fp32")
    # soft bounds: within softplus(min - max) ~ 3e-5 of [min, max]
    assert (logvar <= params.max_logvar + 1e-3).all() and (logvar >= params.min_logvar - 1e-3).all()


def test_shared_and_non_contiguous_inputs(backend):
    params = random_mlp_params(E=3, sizes=(6, 11, 4), gaussian=False)
    x2 = torch.randn(17, 6)
    ref = ensemble_mlp(x2, params, backend="reference")
    assert_close(run(backend, x2, params), ref, "fp32")
    xt = torch.randn(3, 6, 17).transpose(1, 2)  # non-contiguous [3, 17, 6]: copied
    assert not xt.is_contiguous()
    assert_close(ensemble_mlp(backend.to(xt), backend.to(params), backend=backend.name),
                 ensemble_mlp(xt.contiguous(), params, backend="reference"), "fp32")


def test_empty_batch(backend):
    params = random_mlp_params(E=2, sizes=(3, 5, 4))
    mean, logvar = run(backend, torch.zeros(2, 0, 3), params)
    assert mean.shape == (2, 0, 2) and logvar.shape == (2, 0, 2)


def test_bad_inputs():
    params = random_mlp_params(E=2, sizes=(3, 5, 4))
    with pytest.raises(ValueError, match="x must be"):
        ensemble_mlp(torch.zeros(2, 4, 3, 1), params)
    with pytest.raises(ValueError, match="x must be"):
        ensemble_mlp(torch.zeros(3, 4, 3), params)
    with pytest.raises(ValueError, match="x must be"):
        ensemble_mlp(torch.zeros(2, 4, 5), params)
    with pytest.raises(TypeError, match="float32"):
        ensemble_mlp(torch.zeros(2, 4, 3, dtype=torch.float64), params)
    bad = MLPParams(params.weights, params.biases, "gelu")
    with pytest.raises(ValueError, match="activation"):
        ensemble_mlp(torch.zeros(2, 4, 3), bad)
    with pytest.raises(ValueError, match="contiguous"):
        w0 = params.weights[0].transpose(1, 2).contiguous().transpose(1, 2)
        ensemble_mlp(torch.zeros(2, 4, 3), MLPParams((w0,) + params.weights[1:], params.biases))


def test_cpu_is_auto_choice_here():
    assert "cpu" in cpu_backends()
    params = random_mlp_params(E=1, sizes=(3, 4), gaussian=False)
    x = torch.randn(1, 5, 3)
    assert_close(ensemble_mlp(x, params), ensemble_mlp(x, params, backend="reference"), "fp32")
