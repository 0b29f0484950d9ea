"""What only a GPU can show: large grids, streams, the CUDA feature-table limit, and auto's
preference for a GPU backend. Skipped without CUDA.

Every op's correctness on triton and cuda is in its own test file (tests/ops/test_<op>.py:
the ``backend`` fixture's ``triton`` and ``cuda`` parameters, marked ``gpu``), so
``pytest -q -m gpu tests`` runs all of it on a GPU machine (docs/gpu.md).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers import assert_close, random_mlp_params

from mbrl_fast import backends
from mbrl_fast.ops import noise
from mbrl_fast.ops.ensemble_mlp import MLPParams, ensemble_mlp, ensemble_mlp_reference
from mbrl_fast.ops.features import ObsFeatures
from mbrl_fast.ops.propagate import propagate

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

GPU_BACKENDS = ["triton", "cuda"]


@pytest.fixture(params=GPU_BACKENDS)
def backend(request):
    ok, why = backends.status(request.param)
    if not ok:
        pytest.fail(f"backend {request.param} unavailable on a CUDA machine: {why}")
    return request.param


def cpu(params: MLPParams) -> MLPParams:
    """The same ensemble on the CPU (every other field, e.g. obs_features, kept)."""
    move = lambda t: None if t is None else t.cpu()  # noqa: E731
    return replace(params, weights=tuple(map(move, params.weights)),
                   biases=tuple(map(move, params.biases)), in_mean=move(params.in_mean),
                   in_std=move(params.in_std), max_logvar=move(params.max_logvar),
                   min_logvar=move(params.min_logvar))


@pytest.mark.parametrize("seed,offset", [(0, 0), (2**64 - 1, 2**63 + 7)])
def test_noise_over_many_blocks(backend, seed, offset):
    n = 1_000_003  # thousands of program instances / blocks, odd tail
    for fn in (noise.philox_uint32, noise.uniform):
        ref = fn((n,), seed, offset, backend="reference")
        got = fn((n,), seed, offset, device="cuda", backend=backend)
        assert torch.equal(got.cpu(), ref), f"{fn.__name__} not bit-exact"
    ref = noise.normal((n,), seed, offset, backend="reference")
    got = noise.normal((n,), seed, offset, device="cuda", backend=backend).cpu()
    # double-precision log/cos/sin differ from glibc by <= 2 ulp: at most 1 float ulp after rounding
    assert torch.allclose(got, ref, rtol=2.5e-7, atol=1e-7)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_ensemble_mlp_many_tiles(backend, dtype):
    """PETS's 4 x 200 model over a planner-sized batch: hundreds of tiles per member."""
    p = random_mlp_params(E=5, sizes=(24, 200, 200, 200, 200, 36), bf16=dtype == "bf16",
                          device="cuda")
    x = torch.randn(5, 20_000, 24)
    ref = ensemble_mlp_reference(x, cpu(p))
    assert_close(ensemble_mlp(x.cuda(), p, backend=backend), ref, dtype)


def test_ensemble_mlp_on_a_side_stream(backend):
    p = random_mlp_params(E=2, sizes=(7, 64, 10), device="cuda")
    x = torch.randn(2, 500, 7)
    ref = ensemble_mlp_reference(x, cpu(p))
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        xs = x.cuda(non_blocking=False)
        got = ensemble_mlp(xs, p, backend=backend)
    stream.synchronize()
    assert_close(got[0], ref[0])


# ---- propagate -----------------------------------------------------------------------


def make_case(D=18, A=6, E=5, hidden=(200, 200), reward_head=False, bf16=False, N=2, P=9, H=6,
              features: ObsFeatures | None = None):
    d_out = D + 1 if reward_head else D
    f = D if features is None else features.width
    params = random_mlp_params(E=E, sizes=(f + A, *hidden, 2 * d_out), bf16=bf16, device="cuda")
    params = replace(params, obs_features=features)
    g = torch.Generator().manual_seed(1)
    scale = 1.0 if features is None else 3.0  # with features: angles of a few turns (wrap)
    obs = torch.randn(N, D, generator=g) * scale
    return params, obs, torch.rand(N, P, H, A, generator=g) * 2 - 1


def test_propagate_cuda_feature_table_limit():
    """F beyond the table the CUDA kernel carries in its parameters: a clear error."""
    if not backends.is_available("cuda"):
        pytest.fail(f"backend cuda unavailable on a CUDA machine: {backends.status('cuda')[1]}")
    features = ObsFeatures(520, drop=(0,), angles=(1,))  # F = 520
    params, obs, act = make_case(D=520, A=2, E=2, hidden=(16,), H=2, features=features)
    with pytest.raises(ValueError, match="at most 512 feature columns"):
        propagate(params, obs.cuda(), act.cuda(), particles=2, backend="cuda")


def test_auto_prefers_a_gpu_backend():
    params, obs, act = make_case(E=2, H=2)
    got = propagate(params, obs.cuda(), act.cuda(), particles=2, reward="halfcheetah")
    ref = propagate(cpu(params), obs, act, particles=2, reward="halfcheetah", backend="reference")
    assert_close(got.returns, ref.returns)
    assert backends.select("auto", torch.device("cuda"), ("cuda", "triton"), "x") in GPU_BACKENDS
