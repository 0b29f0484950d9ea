"""Dreamer's imagination rollout, forward and backward: H steps of the RSSM prior and the actor
from B start states, with the heads (reward, value, continue, ...) on every imagined state.

Math. Start state s_0 = (h_0, z_0). For t = 0 .. H-1 (``act`` is the MLP activation)::

    f_t      = [h_t, z_t]                                        feature   [D + S]
    (m, s)   = split(actor(f_t))                                 actor MLP -> [2A]
    mean_t   = c tanh(m / c)                                     c = act_mean_scale
    std_t    = lo + (hi - lo) sigmoid(s + 2)                     lo, hi = act_min/max_std
    a_t      = tanh(mean_t + std_t eps_t)                        eps_t ~ N(0, 1)   [A]
    x        = act([z_t, a_t] @ W_in + b_in)                     [Hi]
    (r, c, u) = split([x, h_t] @ W_gru + b_gru)                  [3D]
    h_{t+1}  = sig(u - 1) tanh(sig(r) c) + (1 - sig(u - 1)) h_t  (DreamerV2/V3 GRU)
    stats    = prior(h_{t+1})                                    prior MLP
    z_{t+1}  = sample(stats)

``sample``: ``gaussian`` (Dreamer V1): stats = [mu, s] [2S], z = mu + (softplus(s) +
z_min_std) n, n ~ N(0, 1). ``categorical`` (V2/V3): stats = logits [G, C] (S = G C),
p = (1 - unimix) softmax(logits) + unimix / C per group, k = the class whose CDF bin holds a
uniform u (k = #{j : cdf_j <= u}, at most C - 1), z = onehot(k) with the straight-through
gradient of p (z = onehot + p - stopgrad(p)). Heads: every head MLP on every f_t, t = 0..H;
the last ``detached_heads`` of them read stopgrad(f_t) (a critic regressing imagined returns
trains its weights in the same call without pushing gradients into the rollout).
MLPs: ``y = act(... act(x @ W_1 + b_1) ...) @ W_L + b_L`` (no activation on the last layer).

Shapes (B start states, H steps; D deter, S stoch, A action, Hi GRU input width)::

    start_h [B, D], start_z [B, S]
    -> h [H+1, B, D], z [H+1, B, S]   (index 0: the start state)
       action, mean, std [H, B, A]    (the actor's tanh-Normal at f_0 .. f_{H-1})
       heads: one [H+1, B, out_k] per head

Noise comes from the project's Philox streams (:mod:`mbrl_fast.ops.noise`), so every
backend draws the same samples: eps = ``normal([H, B, A], seed, offset)``, the latent noise
``normal([H, B, S], seed, offset + 1)`` (gaussian) or ``uniform([H, B, G], seed, offset + 1)``
(categorical): OFFSETS_PER_CALL = 2 offsets per call.

Gradients flow to every input that requires them (start states, every weight and bias):
the actor loss backpropagates returns through the dynamics into the actor, while the world
model and the critic take part with detached weights (no weight gradients computed for
them). The compiled forward of a call that will be differentiated keeps every step's
activations, as autograd does (post-activations only, where the derivative can be read
from them: all but SiLU), and the backward reads them instead of recomputing the rollout
(a recomputed forward adds ~40% to the backward's matmuls with Dreamer V1's networks; the
buffer is ~700 MB at B = 2500, H = 15 and is reused from call to call).

Precision ``fp32``, or ``bf16``: every matmul rounds its two operands to bf16 (round to
nearest even) and accumulates in fp32, in the forward and in both backward products
(dX = dY W^T, dW = X^T dY); everything else is fp32. DreamerV3 trains in bf16 the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mbrl_fast import backends
from mbrl_fast.ops import noise, registry
from mbrl_fast.ops.contract import (
    IMAGINE_ACTIVATION_IDS,
    IMAGINE_ACTIVATIONS,
    IMAGINE_OFFSETS_PER_CALL,
    IMAGINE_PRECISIONS,
    IMAGINE_STOCH,
    ImagineParams,
    ImagineResult,
    Layer,
)

ACTIVATIONS, ACTIVATION_IDS = IMAGINE_ACTIVATIONS, IMAGINE_ACTIVATION_IDS
STOCH, PRECISIONS, OFFSETS_PER_CALL = IMAGINE_STOCH, IMAGINE_PRECISIONS, IMAGINE_OFFSETS_PER_CALL


# ---- the reference (the specification) --------------------------------------------------

def _act(name: str):
    return {"elu": F.elu, "silu": F.silu, "relu": F.relu, "tanh": torch.tanh}[name]


class _MatmulBF16(torch.autograd.Function):
    """x @ w with both operands rounded to bf16, fp32 accumulation, in forward and backward."""

    @staticmethod
    def forward(ctx, x, w):
        xr, wr = _round_bf16(x), _round_bf16(w)
        ctx.save_for_backward(xr, wr)
        return xr @ wr

    @staticmethod
    def backward(ctx, grad):
        xr, wr = ctx.saved_tensors
        g = _round_bf16(grad)
        dx = g @ wr.transpose(-1, -2) if ctx.needs_input_grad[0] else None
        dw = None
        if ctx.needs_input_grad[1]:
            dw = xr.reshape(-1, xr.shape[-1]).transpose(0, 1) @ g.reshape(-1, g.shape[-1])
        return dx, dw


def _round_bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(torch.float32)


def _dense(x, layer: Layer, precision: str):
    w, b = layer
    if precision == "bf16":
        return _MatmulBF16.apply(x, w) + b
    return F.linear(x, w.t(), b)


def _mlp(x, layers, act, precision):
    for i, layer in enumerate(layers):
        x = _dense(x, layer, precision)
        if i + 1 < len(layers):
            x = act(x)
    return x


def sample_latent(stats, noise_z, stoch: str, classes: int = 0, unimix: float = 0.01,
                  z_min_std: float = 0.1):
    """z from the prior / posterior ``stats`` [..., 2S or S] and its noise [..., S or G]."""
    if stoch == "gaussian":
        mu, s = stats.chunk(2, -1)
        return mu + (F.softplus(s) + z_min_std) * noise_z
    logits = stats.unflatten(-1, (-1, classes))
    probs = (1 - unimix) * torch.softmax(logits, -1) + unimix / classes
    cdf = torch.cumsum(probs, -1)
    k = (cdf <= noise_z.unsqueeze(-1)).sum(-1).clamp(max=classes - 1)
    onehot = F.one_hot(k, classes).to(probs.dtype)
    return (onehot + probs - probs.detach()).flatten(-2)


def gru_cell(gates, h):
    """DreamerV2/V3 GRU: gates [..., 3D] = (reset, candidate, update) -> h' [..., D]."""
    d = h.shape[-1]
    reset, cand, update = gates[..., :d], gates[..., d:2 * d], gates[..., 2 * d:]
    cand = torch.tanh(torch.sigmoid(reset) * cand)
    update = torch.sigmoid(update - 1.0)
    return update * cand + (1 - update) * h


def imagine_reference(start_h, start_z, params: ImagineParams, horizon: int, eps, noise_z,
                      precision: str = "fp32") -> ImagineResult:
    """The specification, in eager torch (also the throughput baseline).

    eps [H, B, A] and noise_z ([H, B, S] normals or [H, B, G] uniforms) are the samples.
    """
    p = params
    act = _act(p.activation)
    h, z = start_h, start_z
    hs, zs, acts, means, stds = [h], [z], [], [], []
    for t in range(horizon):
        m, s = _mlp(torch.cat([h, z], -1), p.actor, act, precision).chunk(2, -1)
        mean = p.act_mean_scale * torch.tanh(m / p.act_mean_scale)
        std = p.act_min_std + (p.act_max_std - p.act_min_std) * torch.sigmoid(s + 2.0)
        a = torch.tanh(mean + std * eps[t])
        x = act(_dense(torch.cat([z, a], -1), p.img_in, precision))
        h = gru_cell(_dense(torch.cat([x, h], -1), p.gru, precision), h)
        z = sample_latent(_mlp(h, p.prior, act, precision), noise_z[t], p.stoch, p.classes,
                          p.unimix, p.z_min_std)
        hs.append(h)
        zs.append(z)
        acts.append(a)
        means.append(mean)
        stds.append(std)
    h_all, z_all = torch.stack(hs), torch.stack(zs)
    feat = torch.cat([h_all, z_all], -1)
    first_detached = len(p.heads) - p.detached_heads
    heads = [_mlp(feat if k < first_detached else feat.detach(), head, act, precision)
             for k, head in enumerate(p.heads)]
    return ImagineResult(h_all, z_all, torch.stack(acts), torch.stack(means), torch.stack(stds),
                         heads)


# ---- validation ----------------------------------------------------------------------------

def check_params(p: ImagineParams, name: str = "params") -> None:
    """Shapes, dtypes and options of an ImagineParams; errors name the field."""
    if not isinstance(p, ImagineParams):
        raise TypeError(f"{name} must be an ImagineParams, got {type(p).__name__}")
    if p.activation not in ACTIVATIONS:
        raise ValueError(f"{name}.activation must be one of {ACTIVATIONS}, got {p.activation!r}")
    if p.stoch not in STOCH:
        raise ValueError(f"{name}.stoch must be one of {STOCH}, got {p.stoch!r}")
    if not p.prior or not p.actor:
        raise ValueError(f"{name}: prior and actor need at least one layer each")
    device = p.img_in[0].device

    def check(where, layer, d_in, d_out=None):
        w, b = layer
        for t, what in ((w, "weight"), (b, "bias")):
            if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
                raise TypeError(f"{name}.{where} {what} must be a float32 tensor")
            if t.device != device:
                raise ValueError(f"{name}.{where} {what} is on {t.device}, img_in on {device}")
        if w.dim() != 2 or w.shape[0] != d_in or (d_out is not None and w.shape[1] != d_out):
            want = f"[{d_in}, {d_out if d_out is not None else 'out'}]"
            raise ValueError(f"{name}.{where} weight must be {want}, got {tuple(w.shape)}")
        if tuple(b.shape) != (w.shape[1],):
            raise ValueError(f"{name}.{where} bias must be [{w.shape[1]}], got {tuple(b.shape)}")
        return int(w.shape[1])

    def check_mlp(where, layers, d_in, d_out=None):
        for i, layer in enumerate(layers):
            last = i + 1 == len(layers)
            d_in = check(f"{where}[{i}]", layer, d_in, d_out if last else None)
        return d_in

    a, d, hi = p.act_dim, p.deter, p.hidden
    if p.actor[-1][1].shape[0] % 2:
        raise ValueError(f"{name}.actor: the last layer must output 2A (mean, std)")
    s = p.stoch_dim
    if s < 1 or a < 1:
        raise ValueError(f"{name}: img_in weight [{p.img_in[0].shape[0]}, ...] must be [S + A, Hi] "
                         f"with S >= 1 and A = {a} from the actor")
    check("img_in", p.img_in, s + a, hi)
    check("gru", p.gru, hi + d, 3 * d)
    if p.stoch == "categorical":
        if p.classes < 2 or s % p.classes:
            raise ValueError(f"{name}.classes must be >= 2 and divide S = {s}, got {p.classes}")
        if not 0.0 <= p.unimix < 1.0:
            raise ValueError(f"{name}.unimix must be in [0, 1), got {p.unimix}")
    check_mlp("prior", p.prior, d, 2 * s if p.stoch == "gaussian" else s)
    check_mlp("actor", p.actor, d + s, 2 * a)
    if not 0 <= p.detached_heads <= len(p.heads):
        raise ValueError(f"{name}.detached_heads must be in [0, {len(p.heads)}], got "
                         f"{p.detached_heads}")
    for k, head in enumerate(p.heads):
        if not head:
            raise ValueError(f"{name}.heads[{k}] has no layers")
        check_mlp(f"heads[{k}]", head, d + s)
    if not 0.0 < p.act_min_std <= p.act_max_std:
        raise ValueError(f"{name}: need 0 < act_min_std <= act_max_std, got "
                         f"{p.act_min_std}, {p.act_max_std}")
    if p.act_mean_scale <= 0 or p.z_min_std < 0:
        raise ValueError(f"{name}: act_mean_scale must be > 0 and z_min_std >= 0")


def _check_inputs(start_h, start_z, p: ImagineParams, horizon, seed, offset, precision):
    check_params(p)
    for arg, t, width in (("start_h", start_h, p.deter), ("start_z", start_z, p.stoch_dim)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
            raise TypeError(f"{arg} must be a float32 tensor")
        if t.dim() != 2 or t.shape[1] != width:
            raise ValueError(f"{arg} must be [B, {width}], got {tuple(t.shape)}")
        if t.device != p.img_in[0].device:
            raise ValueError(f"{arg} is on {t.device}, params on {p.img_in[0].device}")
    if start_h.shape[0] != start_z.shape[0] or start_h.shape[0] < 1:
        raise ValueError(f"start_h and start_z must have the same B >= 1, got "
                         f"{start_h.shape[0]} and {start_z.shape[0]}")
    if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
        raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not isinstance(offset, int) or offset < 0 or offset + OFFSETS_PER_CALL > 2**64:
        raise ValueError(f"offset must be an int in [0, 2**64 - {OFFSETS_PER_CALL}], "
                         f"got {offset!r}")


def draw_noise(params: ImagineParams, batch: int, horizon: int, seed: int, offset: int,
               device="cpu", backend: str = "auto"):
    """(eps [H, B, A], noise_z [H, B, S] or [H, B, G]) of stream (seed, offset / offset + 1)."""
    nb = backend if backend in ("reference", "auto") else "auto"
    eps = noise.normal((horizon, batch, params.act_dim), seed, offset, device=device, backend=nb)
    if params.stoch == "gaussian":
        nz = noise.normal((horizon, batch, params.stoch_dim), seed, offset + 1, device=device,
                          backend=nb)
    else:
        nz = noise.uniform((horizon, batch, params.groups), seed, offset + 1, device=device,
                           backend=nb)
    return eps, nz


# ---- the op ---------------------------------------------------------------------------------

def imagine(start_h: torch.Tensor, start_z: torch.Tensor, params: ImagineParams, horizon: int,
            *, seed: int, offset: int = 0, precision: str = "fp32",
            backend: str = "auto") -> ImagineResult:
    """Imagine ``horizon`` steps from every start state; differentiable (see module doc).

    start_h [B, D], start_z [B, S] -> ImagineResult. Noise: Philox stream ``seed`` at
    offsets ``offset`` and ``offset + 1``.
    """
    _check_inputs(start_h, start_z, params, horizon, seed, offset, precision)
    supported = tuple(b for b in backends.supporting("imagine")
                      if registry.accepts("imagine", b, params))
    name = backends.select(backend, start_h.device, supported, "imagine")
    eps, noise_z = draw_noise(params, start_h.shape[0], horizon, seed, offset, start_h.device,
                              backend)
    if name == "reference":
        return imagine_reference(start_h, start_z, params, horizon, eps, noise_z, precision)
    return registry.launcher("imagine", name)(start_h, start_z, params, horizon, eps, noise_z,
                                              precision)
