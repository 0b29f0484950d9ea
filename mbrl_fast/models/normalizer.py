"""Input normalizer with float64 running statistics.

Running mean and variance over every row ever passed to :meth:`Normalizer.update`,
merged batch by batch (Chan et al. 1979, parallel Welford)::

    n   = n_a + n_b
    d   = mean_b - mean_a
    mean = mean_a + d * n_b / n
    M2   = M2_a + M2_b + d^2 * n_a * n_b / n        var = M2 / n   (population variance)

Statistics are kept in float64 (mbrl-lib's ``normalize_double_precision``: with
float32 sums the variance of large-offset inputs such as MuJoCo positions loses
digits). The float32 copies ``mean32`` / ``std32`` [d] are what the kernels read;
they are updated in place, so an ``MLPParams`` holding them stays in sync.

Zero-std guard: a dimension whose std is below ``eps`` (1e-8; a constant input,
or a single row) is given std 1 so normalization never divides by ~0.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Normalizer(nn.Module):
    """Running per-dimension mean / std over rows of width ``size`` (float64 inside)."""

    def __init__(self, size: int, eps: float = 1e-8):
        super().__init__()
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an int >= 1, got {size!r}")
        self.size = size
        self.eps = eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("mean32", torch.zeros(size, dtype=torch.float32))
        self.register_buffer("std32", torch.ones(size, dtype=torch.float32))

    @property
    def std(self) -> torch.Tensor:
        """float64 [d] standard deviation with the zero-std guard applied."""
        if self.count < 1:
            return torch.ones(self.size, dtype=torch.float64)
        std = torch.sqrt(self.m2 / self.count)
        return torch.where(std < self.eps, torch.ones_like(std), std)

    @torch.no_grad()
    def update(self, x) -> None:
        """Fold a batch x [B, d] (numpy or torch, any float dtype) into the statistics."""
        if not isinstance(x, torch.Tensor):
            x = torch.from_numpy(np.asarray(x, dtype=np.float64))
        x = x.detach().to(torch.float64)
        if x.dim() != 2 or x.shape[1] != self.size:
            raise ValueError(f"x must be [B, {self.size}], got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf; refusing to fold it into the normalizer")
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(dim=0)
        m2_b = ((x - mean_b) ** 2).sum(dim=0)
        n_a = self.count.item()
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * (n_b / n)
        self.m2 += m2_b + delta * delta * (n_a * n_b / n)
        self.count.fill_(n)
        self._sync()

    def _sync(self) -> None:
        self.mean32.copy_(self.mean.to(torch.float32))
        self.std32.copy_(self.std.to(torch.float32))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std in float32 with the same tensors the kernels read."""
        return (x - self.mean32) / self.std32

    def _load_from_state_dict(self, *args, **kwargs):  # keep float32 copies derived
        super()._load_from_state_dict(*args, **kwargs)
        with torch.no_grad():
            self._sync()
