"""Ensemble layers whose parameters are stored in the kernels' layout.

An ensemble of E MLPs keeps each layer's weights stacked as one ``nn.Parameter``
[E, in, out] and biases as [E, out]: exactly ``mbrl_fast.ops.MLPParams``. So the
compiled planner reads the parameters the optimizer updates, in place, with no
copy or re-layout (``EnsembleMLP.weights()`` returns detached views).

The forward here is the torch (autograd) form of ``ops.ensemble_mlp``'s reference
math, used for training::

    h_0 = x                                   x [E, B, d_0]
    h_l = act(baddbmm(b_l, h_{l-1}, W_l))     l = 1 .. L-1      [E, B, d_l]
    y   = baddbmm(b_L, h_{L-1}, W_L)                            [E, B, d_L]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mbrl_fast.nn.dense import mlp_forward
from mbrl_fast.ops.ensemble_mlp import ACTIVATIONS, activation_fn


def truncated_normal_(weight: torch.Tensor, generator: torch.Generator | None = None) -> None:
    """PETS / mbrl-lib init: N(0, std^2) truncated at 2 std, std = 1 / (2 sqrt(fan_in)).

    weight: [E, in, out]; fan_in = in.
    """
    std = 1.0 / (2.0 * math.sqrt(weight.shape[1]))
    with torch.no_grad():
        sample = torch.empty_like(weight)
        sample.normal_(generator=generator)
        bad = sample.abs() > 2.0
        while bad.any():  # resample outside [-2, 2] (expected 4.6% of entries)
            redraw = torch.empty(int(bad.sum()), dtype=weight.dtype)
            sample[bad] = redraw.normal_(generator=generator)
            bad = sample.abs() > 2.0
        weight.copy_(sample * std)


class EnsembleLinear(nn.Module):
    """E independent affine maps: y[e] = x[e] @ weight[e] + bias[e].

    weight [E, in, out], bias [E, out]; x [E, B, in] -> y [E, B, out].
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int,
                 generator: torch.Generator | None = None):
        super().__init__()
        for name, v in (("ensemble_size", ensemble_size), ("in_features", in_features),
                        ("out_features", out_features)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, out_features))
        truncated_normal_(self.weight.data, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)

    def extra_repr(self) -> str:
        e, i, o = self.weight.shape
        return f"ensemble_size={e}, in_features={i}, out_features={o}"


class EnsembleMLP(nn.Module):
    """E MLPs d_0 -> hidden (x ``layers``) -> d_L, activation after every hidden layer.

    ``layers`` counts hidden layers, as mbrl-lib's ``num_layers``: ``layers=4,
    hidden=200`` is 5 affine layers in -> 200 -> 200 -> 200 -> 200 -> out (PETS's
    HalfCheetah network).
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int,
                 hidden: int = 200, layers: int = 4, activation: str = "silu",
                 seed: int | None = None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if not isinstance(layers, int) or layers < 0:
            raise ValueError(f"layers (hidden layers) must be an int >= 0, got {layers!r}")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        sizes = [in_features] + [hidden] * layers + [out_features]
        self.layers = nn.ModuleList(
            EnsembleLinear(ensemble_size, d_in, d_out, gen)
            for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True))
        self.activation = activation
        self.ensemble_size = ensemble_size
        self.sizes = tuple(sizes)
        self._act = activation_fn(activation)

    def forward(self, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        """x [E, B, d_0] (already normalized) -> y [E, B, d_L]; ``precision`` 'bf16': the
        products' operands rounded to bf16, fp32 accumulation (nn/dense.py), y float32."""
        if precision != "fp32":
            return mlp_forward(x, [layer.weight for layer in self.layers],
                               [layer.bias for layer in self.layers], self.activation,
                               precision=precision)
        last = len(self.layers) - 1
        for l, layer in enumerate(self.layers):
            x = layer(x)
            if l < last:
                x = self._act(x)
        return x

    def weights(self) -> tuple[torch.Tensor, ...]:
        """Detached views [E, in, out] of every layer's weight (shares storage, no copy)."""
        return tuple(layer.weight.detach() for layer in self.layers)

    def biases(self) -> tuple[torch.Tensor, ...]:
        """Detached views [E, out] of every layer's bias (shares storage, no copy)."""
        return tuple(layer.bias.detach() for layer in self.layers)

    def decay_loss(self, weight_decay: Sequence[float]) -> torch.Tensor:
        """sum_l wd_l * ||W_l||^2 / 2, summed over members (PETS's per-layer L2 penalty)."""
        if len(weight_decay) != len(self.layers):
            raise ValueError(f"weight_decay needs one value per layer ({len(self.layers)}), "
                             f"got {len(weight_decay)}")
        total = self.layers[0].weight.new_zeros(())
        for wd, layer in zip(weight_decay, self.layers, strict=True):
            if wd:
                total = total + 0.5 * wd * layer.weight.pow(2).sum()
        return total
