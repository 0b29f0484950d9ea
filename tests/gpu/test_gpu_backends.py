"""Every GPU backend (triton, cuda) against the pure-torch reference, on a CUDA device.

Run on a GPU machine (docs/gpu.md): ``pytest -q -m gpu tests/gpu``. Skipped without
CUDA. References run on the CPU (no TF32 anywhere), the backends on the GPU; the
same Philox streams make the comparison sample for sample.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers import assert_close, random_mlp_params

from mbrl_fast import backends
from mbrl_fast.ops import noise
from mbrl_fast.ops.ensemble_mlp import ACTIVATIONS, MLPParams, ensemble_mlp, ensemble_mlp_reference
from mbrl_fast.ops.features import ObsFeatures
from mbrl_fast.ops.propagate import MODES, propagate

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


# ---- noise -------------------------------------------------------------------------


@pytest.mark.parametrize("seed,offset", [(0, 0), (2**64 - 1, 2**63 + 7), (12345, 2**32 + 3)])
@pytest.mark.parametrize("n", [1, 7, 1_000_003])
def test_noise(backend, seed, offset, n):
    for fn in (noise.philox_uint32, noise.uniform):
        ref = fn((n,), seed, offset, backend="reference")
        got = fn((n,), seed, offset, device="cuda", backend=backend)
        assert torch.equal(got.cpu(), ref), f"{fn.__name__} not bit-exact"
    ref = noise.normal((n,), seed, offset, backend="reference")
    got = noise.normal((n,), seed, offset, device="cuda", backend=backend).cpu()
    # double-precision log/cos/sin differ from glibc by <= 2 ulp: at most 1 float ulp after rounding
    assert torch.allclose(got, ref, rtol=2.5e-7, atol=1e-7)


# ---- ensemble_mlp --------------------------------------------------------------------


@pytest.mark.parametrize("E", [1, 5])
@pytest.mark.parametrize("B", [1, 7, 123, 2048])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("sizes", [(7, 16, 33, 10), (24, 200, 200, 200, 200, 36)])
def test_ensemble_mlp(backend, E, B, dtype, sizes):
    p = random_mlp_params(E=E, sizes=sizes, bf16=dtype == "bf16", device="cuda")
    x = torch.randn(E, B, sizes[0])
    ref = ensemble_mlp_reference(x, cpu(p))
    got = ensemble_mlp(x.cuda(), p, backend=backend)
    assert_close(got[0], ref[0], dtype, "mean")
    assert_close(got[1], ref[1], dtype, "logvar")


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("gaussian", [True, False])
def test_ensemble_mlp_activations(backend, activation, gaussian):
    p = random_mlp_params(E=3, sizes=(9, 40, 17, 12), activation=activation, gaussian=gaussian,
                          device="cuda")
    x = torch.randn(77, 9)  # shared by all members
    ref = ensemble_mlp_reference(x.expand(3, -1, -1), cpu(p))
    got = ensemble_mlp(x.cuda(), p, backend=backend)
    for g, r in zip(got if gaussian else (got,), ref if gaussian else (ref,), strict=True):
        assert_close(g, r)


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


def compare(backend, params, obs, actions, dtype="fp32", **kw):
    ref = propagate(cpu(params), obs, actions, backend="reference", **kw)
    got = propagate(params, obs.cuda(), None if actions is None else actions.cuda(),
                    backend=backend, **kw)
    for field in ("states", "rewards", "returns", "actions"):
        assert_close(getattr(got, field), getattr(ref, field), dtype, field)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reward", [None, "model", "halfcheetah"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_propagate_modes(backend, mode, reward, dtype):
    params, obs, act = make_case(reward_head=reward == "model", bf16=dtype == "bf16")
    compare(backend, params, obs, act, dtype, particles=20, mode=mode, member=2, seed=11,
            offset=3, reward=reward)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 7, 5, 2), (1, 123, 20, 3)])
def test_propagate_shapes(backend, shape):
    n, p, k, h = shape
    params, obs, act = make_case(N=n, P=p, H=h, E=7)
    compare(backend, params, obs, act, particles=k, mode="tsinf", members=[0, 2, 3, 5, 6],
            reward="halfcheetah", seed=5)


def test_propagate_no_states_and_torch_reward(backend):
    params, obs, act = make_case()
    compare(backend, params, obs, act, particles=4, mode="ts1", reward="halfcheetah",
            return_states=False)
    compare(backend, params, obs, act, particles=4, mode="tsinf",
            reward=lambda s, a, s2: s2[..., 1] - 0.5 * (a * a).sum(-1))


def test_propagate_policy_in_the_loop(backend):
    model = random_mlp_params(E=5, sizes=(24, 200, 200, 2 * 19), device="cuda")
    policy = random_mlp_params(E=1, sizes=(18, 64, 64, 12), device="cuda", seed=4)
    compare(backend, model, torch.randn(8, 18), None, particles=3, mode="tsinf",
            reward="model", policy=policy, horizon=5, seed=2)


# F = 19 from D = 18 (odd; a drop and three angles): the model input is F + A = 25
FEATURES = ObsFeatures(18, drop=(0, 5), angles=(2, 7, 11))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reward", [None, "model", "halfcheetah"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_propagate_obs_features(backend, mode, reward, dtype):
    """The model reads concat(features(s_t), a_t) (ops/features.py) at every step."""
    params, obs, act = make_case(reward_head=reward == "model", bf16=dtype == "bf16",
                                 features=FEATURES)
    compare(backend, params, obs, act, dtype, particles=20, mode=mode, member=2, seed=11,
            offset=3, reward=reward)


@pytest.mark.parametrize("features", [ObsFeatures(4, angles=(1,)), ObsFeatures(4, drop=(0, 3)),
                                      ObsFeatures(18, drop=(0,), angles=(2,))],
                         ids=["angles-only", "drop-only", "halfcheetah"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 7, 5, 2)])
def test_propagate_obs_features_shapes(backend, features, shape):
    n, p, k, h = shape
    params, obs, act = make_case(D=features.obs_dim, N=n, P=p, H=h, E=7, features=features)
    compare(backend, params, obs, act, particles=k, mode="tsinf", members=[0, 2, 3, 5, 6],
            reward="halfcheetah", seed=5)
    compare(backend, params, obs, act, particles=k, mode="ts1", seed=6,
            reward=lambda s, a, s2: torch.cos(s2[..., 1]) - 0.5 * (a * a).sum(-1))


def test_propagate_obs_features_policy_in_the_loop(backend):
    """The policy reads the raw state [D]; only the model reads the features."""
    model = random_mlp_params(E=5, sizes=(FEATURES.width + 6, 200, 200, 2 * 19), device="cuda")
    model = replace(model, obs_features=FEATURES)
    policy = random_mlp_params(E=1, sizes=(18, 64, 64, 12), device="cuda", seed=4)
    for mode in ("ts1", "tsinf"):
        compare(backend, model, torch.randn(8, 18) * 3, None, particles=3, mode=mode,
                reward="model", policy=policy, horizon=5, seed=2)


def test_propagate_cuda_feature_table_limit():
    """F beyond the table the CUDA kernel carries in its parameters: a clear error."""
    if not backends.is_available("cuda"):
        pytest.fail(f"backend cuda unavailable on a CUDA machine: {backends.status('cuda')[1]}")
    features = ObsFeatures(520, drop=(0,), angles=(1,))  # F = 520
    params, obs, act = make_case(D=520, A=2, E=2, hidden=(16,), H=2, features=features)
    with pytest.raises(ValueError, match="at most 512 feature columns"):
        propagate(params, obs.cuda(), act.cuda(), particles=2, backend="cuda")


def test_propagate_non_finite_names_the_particle(backend):
    params, obs, act = make_case(E=2)
    params.biases[-1][1, 4] = float("inf")
    messages = []
    cases = (("reference", cpu(params), obs, act), (backend, params, obs.cuda(), act.cuda()))
    for b, p, o, a in cases:
        with pytest.raises(FloatingPointError) as info:
            propagate(p, o, a, particles=3, mode="ts1", seed=3, backend=b)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_auto_prefers_a_gpu_backend():
    params, obs, act = make_case(E=2, H=2)
    got = propagate(params, obs.cuda(), act.cuda(), particles=2, reward="halfcheetah")
    ref = propagate(cpu(params), obs, act, particles=2, reward="halfcheetah", backend="reference")
    assert_close(got.returns, ref.returns)
    assert backends.select("auto", torch.device("cuda"), ("cuda", "triton"), "x") in GPU_BACKENDS
