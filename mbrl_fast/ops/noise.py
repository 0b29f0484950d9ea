"""Counter-based random numbers: Philox-4x32-10, identical on every backend.

A stream is keyed by ``(seed, offset)`` (two unsigned 64-bit integers). Element
``i`` of a stream is component ``i % 4`` of the Philox-4x32-10 block computed on
counter ``(i // 4 low32, i // 4 high32, offset low32, offset high32)`` with key
``(seed low32, seed high32)``. From the uint32 ``x``:

* ``uniform``: ``((x >> 8) + 0.5) * 2**-24``, in (0, 1) and exact in float32;
* ``normal``: Box-Muller in float64 on the pairs of components (0, 1) and (2, 3)
  of a block, ``r = sqrt(-2 log u_a)``, ``theta = 2 pi u_b``; even components take
  ``r cos(theta)``, odd ones ``r sin(theta)``; rounded to float32 once;
* ``randint(high)``: ``(x * high) >> 32``, in [0, high).

The same (seed, offset) therefore gives the same samples on the reference, the
C++ CPU kernels (csrc/include/philox.h), Triton and CUDA: uint32 and uniform
streams bit for bit, normals to float rounding of libm's log/cos/sin in double.
Ops that consume noise document which offsets they use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mbrl_fast import backends
from mbrl_fast.ops import registry

_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK32 = 0xFFFFFFFF
_U64 = 1 << 64


def _check_key(seed: int, offset: int) -> None:
    for name, value in (("seed", seed), ("offset", offset)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if not 0 <= value < _U64:
            raise ValueError(f"{name} must be in [0, 2**64), got {value}")


def _numel(shape: Sequence[int]) -> int:
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must be non-negative, got {shape}")
    return math.prod(shape)


def philox4x32_10(counters: torch.Tensor, key: tuple[int, int]) -> torch.Tensor:
    """Philox-4x32-10 on int64 counters [n, 4] (values < 2**32) -> [n, 4] uint32 as int64."""
    return torch.stack(_philox_words(*counters.unbind(1), key), dim=1)


def _philox_words(c0, c1, c2, c3, key: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Philox-4x32-10 on the four counter words (int64 tensors [n], values < 2**32)."""
    k0, k1 = key
    for _ in range(10):
        # The 32 x 32 -> 64-bit products m c: int64 multiplication wraps modulo 2**64, so
        # its bits are the exact product's: hi = bits 32..63 (an arithmetic shift, masked),
        # lo = bits 0..31. c1 and c3 keep the whole product; only their low 32 bits are
        # ever read (the & after the ^, and the final mask): 10 tensor ops a round.
        p0, p1 = c0 * _M0, c2 * _M1
        c0, c2 = ((p1 >> 32) ^ c1 ^ k0) & _MASK32, ((p0 >> 32) ^ c3 ^ k1) & _MASK32
        c1, c3 = p1, p0
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return c0, c1 & _MASK32, c2, c3 & _MASK32


# Blocks per pass of the references: 65536 blocks (512 KiB per int64 column) keep the
# ~100 elementwise ops of a pass in the two cores' L2 and are large enough for torch to
# split each op over 2 threads (passes of 16384 blocks ran on one). The 1.08M normals of
# one propagate call at PETS population 100: 11 ms on 2 Zen 5 threads (15 ms with 16384,
# 20 ms on one thread; 78 ms for 16-bit-half products in one pass).
_CHUNK_BLOCKS = 65536


def _words(start: int, stop: int, seed: int, offset: int, device) -> tuple[torch.Tensor, ...]:
    """The four uint32 words (int64 [stop - start] each) of blocks start .. stop-1 of the
    stream (seed, offset): element 4 i + j of the stream is word j of block i."""
    block = torch.arange(start, stop, dtype=torch.int64, device=device)
    return _philox_words(block & _MASK32, block >> 32, torch.full_like(block, offset & _MASK32),
                         torch.full_like(block, offset >> 32), (seed & _MASK32, seed >> 32))


UNIFORM_SCALE = 2.0**-24  # 24-bit integer k -> (k + 0.5) * 2**-24 in (0, 1), exact in float32


def _uint32_to_uniform(x: torch.Tensor) -> torch.Tensor:
    return ((x >> 8).to(torch.float32) + 0.5) * UNIFORM_SCALE


def _box_muller(*words: torch.Tensor) -> torch.Tensor:
    """The four words of blocks [nb] each -> [nb, 4] float64 normals (module docstring):
    word pairs (0, 1) and (2, 3) each give (r cos theta, r sin theta)."""
    out = []
    for a, b in ((words[0], words[1]), (words[2], words[3])):
        r = torch.sqrt(-2.0 * torch.log(((a >> 8).to(torch.float64) + 0.5) * UNIFORM_SCALE))
        theta = 2.0 * math.pi * (((b >> 8).to(torch.float64) + 0.5) * UNIFORM_SCALE)
        out += [r * torch.cos(theta), r * torch.sin(theta)]
    return torch.stack(out, dim=1)


# ---- references --------------------------------------------------------------


def _stream_reference(n: int, seed: int, offset: int, device, transform, dtype) -> torch.Tensor:
    """The first n elements of transform(blocks of (seed, offset)), pass by pass."""
    nblocks = (n + 3) // 4
    out = torch.empty(nblocks, 4, dtype=dtype, device=device)
    for start in range(0, nblocks, _CHUNK_BLOCKS):
        stop = min(start + _CHUNK_BLOCKS, nblocks)
        out[start:stop] = transform(*_words(start, stop, seed, offset, device))
    return out.reshape(-1)[:n]


def _uint32_reference(n: int, seed: int, offset: int, device: torch.device) -> torch.Tensor:
    return _stream_reference(n, seed, offset, device, lambda *w: torch.stack(w, dim=1),
                             torch.int64)


def _uniform_reference(n: int, seed: int, offset: int, device: torch.device) -> torch.Tensor:
    return _stream_reference(n, seed, offset, device,
                             lambda *w: _uint32_to_uniform(torch.stack(w, dim=1)), torch.float32)


def _normal_reference(n: int, seed: int, offset: int, device: torch.device) -> torch.Tensor:
    return _stream_reference(n, seed, offset, device, _box_muller, torch.float32)


# ---- public ops ----------------------------------------------------------------


def _dispatch(kind: str, shape, seed, offset, device, backend) -> torch.Tensor:
    _check_key(seed, offset)
    n = _numel(shape)
    device = torch.device(device)
    name = backends.select(backend, device, backends.supporting("noise"), f"noise.{kind}")
    if name == "reference" or n == 0:
        fn = {"uint32": _uint32_reference, "uniform": _uniform_reference,
              "normal": _normal_reference}[kind]
        return fn(n, seed, offset, device).reshape(tuple(shape))
    return registry.launcher("noise", name)(kind, n, seed, offset, device).reshape(tuple(shape))


def philox_uint32(shape: Sequence[int], seed: int, offset: int = 0, *, device="cpu",
                  backend: str = "auto") -> torch.Tensor:
    """Raw uint32 values of stream (seed, offset) as int64 tensor of ``shape``."""
    return _dispatch("uint32", shape, seed, offset, device, backend)


def uniform(shape: Sequence[int], seed: int, offset: int = 0, *, device="cpu",
            backend: str = "auto") -> torch.Tensor:
    """float32 uniforms in (0, 1) of stream (seed, offset), ``shape``."""
    return _dispatch("uniform", shape, seed, offset, device, backend)


def normal(shape: Sequence[int], seed: int, offset: int = 0, *, device="cpu",
           backend: str = "auto") -> torch.Tensor:
    """float32 standard normals of stream (seed, offset), ``shape``."""
    return _dispatch("normal", shape, seed, offset, device, backend)


def randint(shape: Sequence[int], high: int, seed: int, offset: int = 0, *, device="cpu",
            backend: str = "auto") -> torch.Tensor:
    """int64 integers in [0, high) of stream (seed, offset): ``(x * high) >> 32``."""
    if not isinstance(high, int) or not 1 <= high <= 2**31:
        raise ValueError(f"high must be an int in [1, 2**31], got {high!r}")
    x = philox_uint32(shape, seed, offset, device=device, backend=backend)
    return (x * high) >> 32
