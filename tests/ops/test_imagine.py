"""imagine: the compiled rollout (forward and backward) on every compiled backend and kernel path
that has it (tests/ops/conftest.py) against the torch reference, the cpu backend's own saved-
activations buffer, and the reference against finite differences."""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest
import torch

from mbrl_fast.ops.imagine import ImagineParams, draw_noise, imagine, imagine_reference

OP = pytest.mark.op("imagine")
TOL = {"fp32": dict(rtol=1e-4, atol=1e-5), "bf16": dict(rtol=2e-2, atol=2e-3)}


def _layer(d_in, d_out, g, dtype=torch.float32):
    w = torch.randn(d_in, d_out, generator=g, dtype=dtype) / d_in**0.5
    b = 0.1 * torch.randn(d_out, generator=g, dtype=dtype)
    return w.requires_grad_(), b.requires_grad_()


def _mlp(sizes, g, dtype=torch.float32):
    return tuple(_layer(a, b, g, dtype) for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def make_params(stoch="gaussian", activation="elu", D=7, S=6, A=3, Hi=9, U=11, C=3,
                detached=1, dtype=torch.float32, seed=0) -> ImagineParams:
    """Odd sizes; heads: a 1-output head, a 2-layer 2-output head, a detached critic."""
    g = torch.Generator().manual_seed(seed)
    F = D + S
    stats = 2 * S if stoch == "gaussian" else S
    heads = (_mlp([F, U, 1], g, dtype), _mlp([F, U, U, 2], g, dtype), _mlp([F, U, 1], g, dtype))
    return ImagineParams(
        img_in=_layer(S + A, Hi, g, dtype), gru=_layer(Hi + D, 3 * D, g, dtype),
        prior=_mlp([D, Hi, stats], g, dtype), actor=_mlp([F, U, U, 2 * A], g, dtype),
        heads=heads[:3 if detached else 2], detached_heads=detached, stoch=stoch,
        classes=C if stoch == "categorical" else 0, activation=activation)


def _loss(r):
    """A loss that reads every output, with fixed random weights."""
    g = torch.Generator().manual_seed(1)
    w = lambda t: torch.randn(t.shape, generator=g, dtype=t.dtype).to(t.device)  # noqa: E731
    out = (r.h * w(r.h)).sum() + (r.z * w(r.z)).sum() + (r.action * w(r.action)).sum()
    out = out + (r.mean * w(r.mean)).sum() + (torch.log(r.std) * w(r.std)).sum()
    return out + sum((x * w(x)).sum() for x in r.heads)


def _run(backend, p, B=5, H=4, precision="fp32"):
    """imagine on ``backend`` (a conftest Backend, or "reference" on the CPU) from fixed start
    states -> (result, gradients of _loss with respect to h0, z0 and every tensor of p)."""
    g = torch.Generator().manual_seed(2)
    h0, z0 = torch.randn(B, p.deter, generator=g), torch.randn(B, p.stoch_dim, generator=g)
    name = backend if isinstance(backend, str) else backend.name
    if name != "reference":  # on the backend's device, as leaves
        p = p.with_tensors([backend.to(t).detach().requires_grad_(t.requires_grad)
                            for t in p.tensors()])
        h0, z0 = backend.to(h0), backend.to(z0)
    h0, z0 = h0.requires_grad_(), z0.requires_grad_()
    r = imagine(h0, z0, p, H, seed=7, offset=4, precision=precision, backend=name)
    inputs = [h0, z0, *p.tensors()]
    return r, torch.autograd.grad(_loss(r), inputs, allow_unused=True)


@functools.cache
def _reference(*args, B=5, H=4, precision="fp32", **params_kw):
    """_run("reference", make_params(*args, **params_kw), ...), once per argument list."""
    return _run("reference", make_params(*args, **params_kw), B=B, H=H, precision=precision)


def _assert_close(r_ref, g_ref, r, g, tol):
    """Values and gradients (r, g may live on another device)."""
    for name in ("h", "z", "action", "mean", "std"):
        torch.testing.assert_close(getattr(r, name).cpu(), getattr(r_ref, name), **tol, msg=name)
    for k, (x, y) in enumerate(zip(r.heads, r_ref.heads, strict=True)):
        torch.testing.assert_close(x.cpu(), y, **tol, msg=f"head {k}")
    for i, (x, y) in enumerate(zip(g, g_ref, strict=True)):
        x = None if x is None else x.cpu()
        if y is None:
            assert x is None or not x.abs().any(), f"input {i}: gradient where none is due"
            continue
        scale = y.abs().max().clamp(min=1e-3)  # gradients relative to their own scale
        torch.testing.assert_close(x / scale, y / scale, **tol, msg=f"gradient of input {i}")


@OP
@pytest.mark.parametrize("stoch", ["gaussian", "categorical"])
@pytest.mark.parametrize("activation", ["elu", "silu", "relu", "tanh"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_matches_reference_values_and_gradients(backend, stoch, activation, precision):
    r_ref, g_ref = _reference(stoch, activation, precision=precision)
    r, g = _run(backend, make_params(stoch, activation), precision=precision)
    _assert_close(r_ref, g_ref, r, g, TOL[precision])


@OP
@pytest.mark.parametrize("B,H", [(1, 1), (3, 2), (131, 3)])  # batch 1, odd, more than a tile
def test_matches_reference_edge_sizes(backend, B, H):
    sizes = dict(D=5, S=4, A=1, Hi=3, U=17, C=2)
    r_ref, g_ref = _reference("categorical", "silu", B=B, H=H, **sizes)
    r, g = _run(backend, make_params("categorical", "silu", **sizes), B=B, H=H)
    _assert_close(r_ref, g_ref, r, g, TOL["fp32"])


@OP
def test_wide_layers(backend):
    r_ref, g_ref = _reference("gaussian", "elu", B=9, U=50)  # wider than one 48-column panel
    r, g = _run(backend, make_params("gaussian", "elu", U=50), B=9)
    _assert_close(r_ref, g_ref, r, g, TOL["fp32"])


def test_kernel_choice_follows_the_environment(cpu_backend, monkeypatch):
    """No AVX2-specific kernels: avx2 (and the portable baseline) run the portable ones."""
    from mbrl_fast.ops import _cpu_imagine

    want = "avx512" if cpu_backend.param == "cpu-avx512" else "portable"
    assert _cpu_imagine.kernel_name() == want
    monkeypatch.setenv("MBRL_FAST_CPU_KERNELS", "sse9")
    with pytest.raises(ValueError, match="MBRL_FAST_CPU_KERNELS"):
        _run(cpu_backend, make_params())


@OP
def test_only_requested_gradients_and_detached_heads(backend):
    """The actor loss's call: world model and heads detached, the actor attached; the
    detached head trains its weights but sends nothing into the rollout."""
    full = make_params("gaussian", "elu")
    frozen = full.detach()
    actor, critic = full.actor, full.heads[-1]
    p = replace(frozen, actor=actor, heads=(*frozen.heads[:-1], critic))
    h0, z0 = torch.randn(4, p.deter), torch.randn(4, p.stoch_dim)

    def grads(p, h0, z0, name):
        r = imagine(h0, z0, p, 3, seed=1, backend=name)
        wa = [w for w, _ in p.actor]
        wc = [w for w, _ in p.heads[-1]]
        only_critic = torch.autograd.grad(r.heads[-1].sum(), wa + wc, allow_unused=True,
                                          retain_graph=True)
        assert all(g is None or not g.abs().any() for g in only_critic[:len(wa)])
        return [g.cpu() for g in torch.autograd.grad(_loss(r), wa + wc)]

    ref = grads(p, h0, z0, "reference")
    got = grads(backend.to(p), *backend.to((h0, z0)), backend.name)
    for x, y in zip(got, ref, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_saved_buffer_is_reused_only_after_its_graph_is_gone(cpu_backend):
    from mbrl_fast.ops import _cpu_imagine

    p = make_params("gaussian", "elu")
    h0, z0 = torch.randn(4, p.deter), torch.randn(4, p.stoch_dim)
    r1 = imagine(h0, z0, p, 3, seed=1, backend="cpu")
    first = torch.autograd.grad(_loss(r1), p.actor[0][0], retain_graph=True)[0]
    r2 = imagine(h0, z0, p, 3, seed=2, backend="cpu")  # r1's graph is alive: a new buffer
    torch.autograd.grad(_loss(r2), p.actor[0][0])
    again = torch.autograd.grad(_loss(r1), p.actor[0][0])[0]  # r1's activations are intact
    assert torch.equal(first, again)
    del r1, r2
    assert len(_cpu_imagine._POOL) == 1


def test_reference_gradients_match_finite_differences():
    """gradcheck (float64) of the specification itself, Gaussian latents (the categorical
    straight-through gradient is by design not the derivative of the sample)."""
    p = make_params("gaussian", "silu", D=3, S=2, A=2, Hi=3, U=4, detached=0,
                    dtype=torch.float64)
    B, H = 2, 2
    g = torch.Generator().manual_seed(3)
    h0 = torch.randn(B, 3, generator=g, dtype=torch.float64, requires_grad=True)
    z0 = torch.randn(B, 2, generator=g, dtype=torch.float64, requires_grad=True)
    eps, nz = draw_noise(p, B, H, 5, 0)
    eps, nz = eps.double(), nz.double()

    def f(h, z, *tensors):
        r = imagine_reference(h, z, p.with_tensors(tensors), H, eps, nz)
        return (r.h, r.z, r.action, r.mean, r.std, *r.heads)

    assert torch.autograd.gradcheck(f, (h0, z0, *p.tensors()), eps=1e-6, atol=1e-5)


@OP
def test_noise_is_the_philox_stream_and_calls_are_deterministic(backend):
    from mbrl_fast.ops import noise

    p = backend.to(make_params("gaussian", "elu"))
    h0, z0 = backend.to((torch.zeros(6, p.deter), torch.zeros(6, p.stoch_dim)))
    with torch.no_grad():
        a = imagine(h0, z0, p, 3, seed=11, offset=2, backend=backend.name)
        b = imagine(h0, z0, p, 3, seed=11, offset=2, backend=backend.name)
        c = imagine(h0, z0, p, 3, seed=11, offset=4, backend=backend.name)
    eps = noise.normal((3, 6, p.act_dim), 11, 2, backend="reference")
    assert torch.equal(a.action, b.action) and torch.equal(a.h, b.h)
    torch.testing.assert_close(a.action.cpu(), torch.tanh(a.mean.cpu() + a.std.cpu() * eps))
    assert not torch.equal(a.action, c.action)


@pytest.mark.parametrize("mutate,match", [
    (lambda p, h, z: (p, h[:, :-1], z), r"start_h must be \[B, 7\]"),
    (lambda p, h, z: (p, h, z[:2]), "same B"),
    (lambda p, h, z: (p, h.double(), z), "start_h must be a float32"),
    (lambda p, h, z: (replace(p, stoch="beta"), h, z), "stoch must be one of"),
    (lambda p, h, z: (replace(p, activation="gelu"), h, z), "activation must be one of"),
    (lambda p, h, z: (replace(p, detached_heads=5), h, z), "detached_heads"),
    (lambda p, h, z: (replace(p, gru=(p.gru[0][:, :-1], p.gru[1])), h, z),
     r"gru weight must be \[16, 21\]"),
    (lambda p, h, z: (replace(p, prior=p.prior[:1]), h, z), r"prior\[0\] weight"),
])
def test_bad_inputs_name_the_argument(mutate, match):
    p = make_params()
    h, z = torch.zeros(4, 7), torch.zeros(4, 6)
    p, h, z = mutate(p, h, z)
    with pytest.raises((ValueError, TypeError), match=match):
        imagine(h, z, p, 3, seed=0)


def test_bad_horizon_precision_offset():
    p = make_params()
    h, z = torch.zeros(4, 7), torch.zeros(4, 6)
    with pytest.raises(ValueError, match="horizon"):
        imagine(h, z, p, 0, seed=0)
    with pytest.raises(ValueError, match="precision"):
        imagine(h, z, p, 2, seed=0, precision="fp16")
    with pytest.raises(ValueError, match="offset"):
        imagine(h, z, p, 2, seed=0, offset=-1)


def test_a_too_small_saved_buffer_is_an_error_not_a_crash(cpu_backend):
    from mbrl_fast.ops import _cpu_imagine

    p = make_params().detach()
    h0, z0 = torch.zeros(4, 7), torch.zeros(4, 6)
    eps, nz = draw_noise(p, 4, 2, 0, 0)
    out = [torch.empty(3, 4, 7), torch.empty(3, 4, 6)] + [torch.empty(2, 4, 3)] * 3
    heads = [torch.empty(3, 4, w[-1][1].shape[0]) for w in p.heads]
    io = [h0, z0, eps, nz, *out] + [None] * 7
    with pytest.raises(ValueError, match="saved-activations buffer holds 10 floats"):
        _cpu_imagine._call(False, p, 4, 2, "fp32", 0, [None] * len(p.tensors()), io, heads,
                           [None] * len(heads), torch.empty(10))
