"""Philox noise: every compiled backend (tests/ops/conftest.py) against the reference, sample
for sample; the reference against Random123's known answer and Python integers."""

from __future__ import annotations

import pytest
import torch

from mbrl_fast.ops import noise

pytestmark = pytest.mark.op("noise")
SHAPES = [(0,), (1,), (7,), (3, 5), (2, 3, 123)]
KEYS = [(0, 0), (1234, 5), (2**64 - 1, 2**64 - 1), (2**40 + 7, 2**33 + 1)]


def test_reference_known_answer():
    # Philox4x32-10 on counter 0, key 0 (Random123 known-answer test vector).
    x = noise.philox_uint32((4,), seed=0, offset=0, backend="reference")
    assert x.tolist() == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


def test_known_answer(backend):
    x = noise.philox_uint32((4,), seed=0, offset=0, device=backend.device, backend=backend.name)
    assert x.device.type == backend.device.type
    assert x.tolist() == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed,offset", KEYS)
def test_uint32_and_uniform_bit_exact(backend, shape, seed, offset):
    for fn in (noise.philox_uint32, noise.uniform):
        ref = fn(shape, seed, offset, backend="reference")
        got = fn(shape, seed, offset, device=backend.device, backend=backend.name)
        assert got.shape == ref.shape and got.dtype == ref.dtype
        assert torch.equal(got.cpu(), ref)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed,offset", KEYS)
def test_normal_matches(backend, shape, seed, offset):
    ref = noise.normal(shape, seed, offset, backend="reference")
    got = noise.normal(shape, seed, offset, device=backend.device, backend=backend.name)
    assert got.shape == ref.shape and got.dtype == torch.float32
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed,offset", KEYS)
def test_normal_long_streams(backend, seed, offset):
    """The vectorized Box-Muller of each path (double-precision polynomials; the GPUs' log /
    sin / cos) gives the reference's floats: equal but for a rare last-bit difference at a
    rounding boundary."""
    n = 100_003  # crosses the 256-block chunks and the threading threshold, odd tail
    ref = noise.normal((n,), seed, offset, backend="reference")
    got = noise.normal((n,), seed, offset, device=backend.device, backend=backend.name).cpu()
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    assert (got != ref).float().mean() < 1e-4


def test_reference_streams_are_prefix_consistent_and_distinct():
    _check_prefix_consistent_and_distinct(backend="reference")


def test_streams_are_prefix_consistent_and_distinct(backend):
    _check_prefix_consistent_and_distinct(device=backend.device, backend=backend.name)


def _check_prefix_consistent_and_distinct(**kw):
    long = noise.philox_uint32((1001,), 3, 9, **kw)
    short = noise.philox_uint32((13,), 3, 9, **kw)
    assert torch.equal(long[:13], short)
    assert not torch.equal(noise.philox_uint32((8,), 3, 10, **kw), long[:8])
    assert not torch.equal(noise.philox_uint32((8,), 4, 9, **kw), long[:8])


def test_ranges(backend):
    kw = dict(device=backend.device, backend=backend.name)
    u = noise.uniform((4096,), 1, 2, **kw)
    assert (u > 0).all() and (u < 1).all()
    n = noise.normal((4096,), 1, 2, **kw)
    assert abs(float(n.mean())) < 0.1 and abs(float(n.std()) - 1) < 0.1
    r = noise.randint((4096,), 5, 1, 2, **kw)
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


def _philox_python(counter: list[int], key: list[int]) -> list[int]:
    """Philox4x32-10 on Python ints (no overflow anywhere): the reference's check."""
    c, (k0, k1) = list(counter), key
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c[3] ^ k1, p0 & 0xFFFFFFFF]
        k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return c


def test_reference_philox_matches_python_integers():
    # Products above 2**63 wrap in int64: the reference must still give the exact bits.
    g = torch.Generator().manual_seed(0)
    counters = torch.randint(0, 2**32, (64, 4), generator=g, dtype=torch.int64)
    counters[0] = torch.tensor([2**32 - 1] * 4)
    key = (0xFFFFFFFF, 0x12345678)
    got = noise.philox4x32_10(counters, key)
    for row, out in zip(counters.tolist(), got.tolist(), strict=True):
        assert out == _philox_python(row, list(key))


def test_reference_streams_span_passes():
    # The references run in passes of _CHUNK_BLOCKS blocks: every block keeps its counter.
    n = 4 * noise._CHUNK_BLOCKS + 6
    x = noise.philox_uint32((n,), 5, 6, backend="reference")
    for block in (0, noise._CHUNK_BLOCKS - 1, noise._CHUNK_BLOCKS, n // 4):
        want = _philox_python([block, 0, 6, 0], [5, 0])[: n - 4 * block]
        assert x[4 * block: 4 * block + 4].tolist() == want
    normal = noise.normal((n,), 5, 6, backend="reference")
    assert torch.equal(noise.normal((n - 7,), 5, 6, backend="reference"), normal[: n - 7])
