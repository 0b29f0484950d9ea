"""Forward pass of an ensemble of E MLPs, fused: normalization, bias, activation, Gaussian head.

Math, for member e and input row x (layer sizes d_0 -> d_1 -> ... -> d_L)::

    h_0 = (x - in_mean) / in_std                       (when in_mean/in_std are given)
    h_l = act(h_{l-1} @ W_l[e] + b_l[e])               l = 1 .. L-1
    y   = h_{L-1} @ W_L[e] + b_L[e]                    (no activation on the last layer)

Gaussian head (when ``max_logvar``/``min_logvar`` are given; PETS, Chua et al. 2018):
``y`` splits into ``mean = y[..., :d_L/2]`` and ``raw = y[..., d_L/2:]`` and the
log-variance is soft-bounded::

    logvar = max_logvar - softplus(max_logvar - raw)
    logvar = min_logvar + softplus(logvar - min_logvar)

Shapes: x [E, B, d_0] (or [B, d_0], shared by all members); W_l [E, d_{l-1}, d_l];
b_l [E, d_l]; in_mean, in_std [d_0]; max_logvar, min_logvar [d_L / 2].
Output: y [E, B, d_L], or (mean, logvar) each [E, B, d_L / 2].

Precision. fp32 weights: fp32 throughout. bf16 weights are stored in the
kernels' layout ``[E, ceil(d_{l-1}/2), d_l, 2]`` (pairs of consecutive inputs
interleaved per output, the operand order of AVX512-BF16 ``vdpbf16ps``); make
them once with :func:`pack_bf16`. With bf16 weights each layer's input is
rounded to bf16 (round to nearest even), products are accumulated in fp32, and
bias, activation and head are fp32.

Activations: ``silu``, ``relu``, ``tanh``, ``elu`` (alpha 1), ``leaky_relu``
(slope ``leaky_slope``), ``identity``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mbrl_fast import backends
from mbrl_fast.ops import registry
from mbrl_fast.ops.contract import (
    ACTIVATION_IDS,
    ACTIVATIONS,
    MLPParams,
    pack_bf16,
    unpack_bf16,
)
from mbrl_fast.ops.features import ObsFeatures

__all__ = ["ACTIVATIONS", "ACTIVATION_IDS", "MLPParams", "activation_fn", "check_params",
           "ensemble_mlp", "ensemble_mlp_reference", "layer_weights_fp32", "pack_bf16",
           "soft_bound_logvar", "unpack_bf16"]

def check_params(params: MLPParams, name: str = "params") -> tuple[int, ...]:
    """Validate an MLPParams once at the Python boundary; returns its layer sizes."""
    if not isinstance(params, MLPParams):
        raise TypeError(f"{name} must be an MLPParams, got {type(params).__name__}")
    if params.activation not in ACTIVATIONS:
        raise ValueError(f"{name}.activation must be one of {ACTIVATIONS}, "
                         f"got {params.activation!r}")
    if len(params.weights) == 0 or len(params.weights) != len(params.biases):
        raise ValueError(f"{name}: need one bias per weight and at least one layer, got "
                         f"{len(params.weights)} weights and {len(params.biases)} biases")
    e = params.num_members
    d_prev = params.in_features
    bf16 = params.is_bf16
    device = params.device
    for l, (w, b) in enumerate(zip(params.weights, params.biases, strict=True)):
        if w.device != device or b.device != device:
            raise ValueError(f"{name}: all tensors must be on one device, layer {l} is not")
        if bf16:
            if w.dtype != torch.bfloat16 or w.dim() != 4 or w.shape[3] != 2:
                raise ValueError(f"{name}.weights[{l}] must be bf16 packed [E, ceil(in/2), out, 2] "
                                 f"(see pack_bf16), got {w.dtype} {tuple(w.shape)}")
            if w.shape[0] != e or w.shape[1] != (d_prev + 1) // 2:
                raise ValueError(f"{name}.weights[{l}] must be [{e}, {(d_prev + 1) // 2}, out, 2], "
                                 f"got {tuple(w.shape)}")
            d_out = int(w.shape[2])
        else:
            if w.dtype != torch.float32 or w.dim() != 3:
                raise ValueError(f"{name}.weights[{l}] must be float32 [E, in, out] or bf16 "
                                 "packed, "
                                 f"got {w.dtype} {tuple(w.shape)}")
            if w.shape[0] != e or w.shape[1] != d_prev:
                raise ValueError(f"{name}.weights[{l}] must be [{e}, {d_prev}, out], "
                                 f"got {tuple(w.shape)}")
            d_out = int(w.shape[2])
        if b.dtype != torch.float32 or tuple(b.shape) != (e, d_out):
            raise ValueError(f"{name}.biases[{l}] must be float32 [{e}, {d_out}], got "
                             f"{b.dtype} {tuple(b.shape)}")
        if not (w.is_contiguous() and b.is_contiguous()):
            raise ValueError(f"{name}: layer {l} weight and bias must be contiguous (the kernels "
                             "read them in place); call .contiguous() once when building params")
        d_prev = d_out
    for field, size in (("in_mean", params.in_features), ("in_std", params.in_features)):
        t = getattr(params, field)
        if t is not None and (t.dtype != torch.float32 or tuple(t.shape) != (size,)):
            raise ValueError(f"{name}.{field} must be float32 [{size}], "
                             f"got {t.dtype} {tuple(t.shape)}")
    if (params.in_mean is None) != (params.in_std is None):
        raise ValueError(f"{name}: give both in_mean and in_std, or neither")
    if (params.max_logvar is None) != (params.min_logvar is None):
        raise ValueError(f"{name}: give both max_logvar and min_logvar, or neither")
    if params.obs_features is not None and not isinstance(params.obs_features, ObsFeatures):
        raise TypeError(f"{name}.obs_features must be an ObsFeatures or None, got "
                        f"{type(params.obs_features).__name__}")
    if params.gaussian:
        if d_prev % 2:
            raise ValueError(f"{name}: a Gaussian head needs an even output width, got {d_prev}")
        for field in ("max_logvar", "min_logvar"):
            t = getattr(params, field)
            if t.dtype != torch.float32 or tuple(t.shape) != (d_prev // 2,):
                raise ValueError(f"{name}.{field} must be float32 [{d_prev // 2}], got "
                                 f"{t.dtype} {tuple(t.shape)}")
    return params.sizes


def activation_fn(name: str, slope: float = 0.01):
    return {
        "silu": F.silu,
        "relu": F.relu,
        "tanh": torch.tanh,
        "elu": F.elu,
        "leaky_relu": lambda x: F.leaky_relu(x, slope),
        "identity": lambda x: x,
    }[name]


def soft_bound_logvar(raw: torch.Tensor, max_logvar: torch.Tensor, min_logvar: torch.Tensor):
    """PETS soft bounds: min + softplus(max - softplus(max - raw) - min)."""
    logvar = max_logvar - F.softplus(max_logvar - raw)
    return min_logvar + F.softplus(logvar - min_logvar)


def layer_weights_fp32(params: MLPParams) -> list[torch.Tensor]:
    """Every layer's weights as float32 [E, in, out] (unpacks bf16)."""
    sizes = params.sizes
    if not params.is_bf16:
        return list(params.weights)
    return [unpack_bf16(w, sizes[l]) for l, w in enumerate(params.weights)]


def _round_bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(torch.float32)


def ensemble_mlp_reference(x: torch.Tensor, params: MLPParams):
    """The specification: x [E, B, d_0] -> y [E, B, d_L] or (mean, logvar)."""
    act = activation_fn(params.activation, params.leaky_slope)
    h = x.to(torch.float32)
    if params.in_mean is not None:
        h = (h - params.in_mean) / params.in_std
    weights = layer_weights_fp32(params)
    last = len(weights) - 1
    for l, (w, b) in enumerate(zip(weights, params.biases, strict=True)):
        if params.is_bf16:
            h = _round_bf16(h)
        h = torch.baddbmm(b.unsqueeze(1), h, w)
        if l < last:
            h = act(h)
    if not params.gaussian:
        return h
    d = h.shape[-1] // 2
    return h[..., :d], soft_bound_logvar(h[..., d:], params.max_logvar, params.min_logvar)


def _check_x(x: torch.Tensor, params: MLPParams, sizes) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.float32:
        raise TypeError(f"x must be float32, got {x.dtype}")
    if x.device != params.device:
        raise ValueError(f"x is on {x.device} but params are on {params.device}")
    e = params.num_members
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(e, -1, -1)
    if x.dim() != 3 or x.shape[0] != e or x.shape[2] != sizes[0]:
        raise ValueError(f"x must be [E={e}, B, {sizes[0]}] or [B, {sizes[0]}], "
                         f"got {tuple(x.shape)}")
    return x.contiguous()  # documented: non-contiguous inputs are copied


def ensemble_mlp(x: torch.Tensor, params: MLPParams, *, backend: str = "auto"):
    """Ensemble forward. x [E, B, d_0] or [B, d_0] -> y [E, B, d_L] or (mean, logvar).

    Non-contiguous ``x`` is copied; weights must already be contiguous.
    """
    sizes = check_params(params)
    x = _check_x(x, params, sizes)
    name = backends.select(backend, x.device, backends.supporting("ensemble_mlp"),
                           "ensemble_mlp",
                           {"members": x.shape[0], "batch": x.shape[1], "sizes": sizes})
    if name == "reference" or x.shape[1] == 0:
        return ensemble_mlp_reference(x, params)
    return registry.launcher("ensemble_mlp", name)(x, params, sizes)
