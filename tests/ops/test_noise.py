"""Philox noise: every compiled backend against the reference, sample for sample."""

from __future__ import annotations

import pytest
import torch
from helpers import cpu_backends

from mbrl_fast.ops import noise

BACKENDS = ["reference"] + cpu_backends()
SHAPES = [(0,), (1,), (7,), (3, 5), (2, 3, 123)]
KEYS = [(0, 0), (1234, 5), (2**64 - 1, 2**64 - 1), (2**40 + 7, 2**33 + 1)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_answer(backend):
    # Philox4x32-10 on counter 0, key 0 (Random123 known-answer test vector).
    x = noise.philox_uint32((4,), seed=0, offset=0, backend=backend)
    assert x.tolist() == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


@pytest.mark.parametrize("backend", cpu_backends())
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed,offset", KEYS)
def test_uint32_and_uniform_bit_exact(backend, shape, seed, offset):
    for fn in (noise.philox_uint32, noise.uniform):
        ref = fn(shape, seed, offset, backend="reference")
        got = fn(shape, seed, offset, backend=backend)
        assert got.shape == ref.shape and got.dtype == ref.dtype
        assert torch.equal(got, ref)


@pytest.mark.parametrize("backend", cpu_backends())
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed,offset", KEYS)
def test_normal_matches(backend, shape, seed, offset):
    ref = noise.normal(shape, seed, offset, backend="reference")
    got = noise.normal(shape, seed, offset, backend=backend)
    assert got.shape == ref.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif("cpu" not in cpu_backends(), reason="mbrl_fast._C not built")
@pytest.mark.parametrize("seed,offset", KEYS)
def test_normal_every_cpu_kernel_path(kernels, seed, offset):
    """The vectorized Box-Muller of each path (double-precision polynomials) gives the
    reference's floats: equal but for a rare last-bit difference at a rounding boundary."""
    n = 100_003  # crosses the 256-block chunks and the threading threshold, odd tail
    ref = noise.normal((n,), seed, offset, backend="reference")
    got = noise.normal((n,), seed, offset, backend="cpu")
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    assert (got != ref).float().mean() < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_streams_are_prefix_consistent_and_distinct(backend):
    long = noise.philox_uint32((1001,), 3, 9, backend=backend)
    short = noise.philox_uint32((13,), 3, 9, backend=backend)
    assert torch.equal(long[:13], short)
    assert not torch.equal(noise.philox_uint32((8,), 3, 10, backend=backend), long[:8])
    assert not torch.equal(noise.philox_uint32((8,), 4, 9, backend=backend), long[:8])


@pytest.mark.parametrize("backend", BACKENDS)
def test_ranges(backend):
    u = noise.uniform((4096,), 1, 2, backend=backend)
    assert (u > 0).all() and (u < 1).all()
    n = noise.normal((4096,), 1, 2, backend=backend)
    assert abs(float(n.mean())) < 0.1 and abs(float(n.std()) - 1) < 0.1
    r = noise.randint((4096,), 5, 1, 2, backend=backend)
    assert r.min() == 0 and r.max() == 4


def test_bad_keys():
    with pytest.raises(ValueError, match="seed"):
        noise.uniform((3,), -1)
    with pytest.raises(ValueError, match="offset"):
        noise.uniform((3,), 0, 2**64)
    with pytest.raises(TypeError, match="seed"):
        noise.uniform((3,), 1.5)
    with pytest.raises(ValueError, match="shape"):
        noise.uniform((-1,), 0)
