"""MLPParams from torch modules: per-member ``nn.Sequential`` (one copy) or stacked layers (views).

Per-member modules (:func:`mlp_params_from_sequentials`). E members, each an
``nn.Sequential`` of ``nn.Linear`` layers with one supported activation between them
(nested Sequentials are flattened)::

    member e:  Linear(d_0, d_1), act, Linear(d_1, d_2), act, ..., Linear(d_{L-1}, d_L)
    ->  weights[l] = stack_e(member_e.Linear_l.weight.T)     [E, d_l, d_{l+1}]
        biases[l]  = stack_e(member_e.Linear_l.bias)         [E, d_{l+1}]

``nn.Linear`` stores ``weight [out, in]`` per member, the kernels read ``[E, in, out]``
stacked, so this is ONE copy into the stacked layout, made when called: later training of
the modules is not seen. :class:`SequentialEnsemble` re-copies in place whenever a
parameter changed (tracked by the tensors' version counters), so a planner that reads
``model.mlp_params()`` at every plan follows training.

Stacked layers (:func:`mlp_params_from_stacked`): modules whose ``weight`` already is
``[E, in, out]`` and ``bias`` ``[E, out]`` or ``[E, 1, out]`` (``mbrl_fast.nn.EnsembleLinear``,
mbrl-lib's ``EnsembleLinearLayer``). The result holds views of those parameters (no copy;
the planner sees every optimizer step); a parameter that is not float32 and contiguous is
copied once instead.

Gaussian head (``gaussian=True``): the last layer's 2 D outputs are the mean (first D) and
the raw log-variance (last D), soft-bounded by ``max_logvar`` / ``min_logvar`` as in
``ops.ensemble_mlp``. Input normalization ``in_mean`` / ``in_std`` [d_0] is optional.

Errors name the member, the layer and both shapes on a mismatch, and an unsupported
module names itself and lists :data:`SUPPORTED_LAYERS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from mbrl_fast.ops.ensemble_mlp import MLPParams, check_params
from mbrl_fast.ops.features import ObsFeatures

SUPPORTED_LAYERS = ("nn.Linear (or a stacked ensemble layer, weight [E, in, out])", "nn.SiLU",
                    "nn.ReLU", "nn.Tanh", "nn.ELU (alpha=1)", "nn.LeakyReLU", "nn.Identity",
                    "nested nn.Sequential")


def _activation(module: nn.Module) -> tuple[str, float] | None:
    """(kernel activation name, leaky slope) of a supported activation module, else None."""
    if isinstance(module, nn.SiLU):
        return "silu", 0.01
    if isinstance(module, nn.ReLU):
        return "relu", 0.01
    if isinstance(module, nn.Tanh):
        return "tanh", 0.01
    if isinstance(module, nn.ELU) and module.alpha == 1.0:
        return "elu", 0.01
    if isinstance(module, nn.LeakyReLU):
        return "leaky_relu", float(module.negative_slope)
    return None


def _flatten(modules: Iterable[nn.Module]) -> list[nn.Module]:
    out = []
    for m in modules:
        if isinstance(m, (nn.Sequential, nn.ModuleList)):
            out.extend(_flatten(m))
        elif not isinstance(m, nn.Identity):
            out.append(m)
    return out


def _unsupported(where: str, index: int, module: nn.Module) -> TypeError:
    return TypeError(f"{where}: module {index} ({type(module).__name__}: {module}) is not "
                     f"supported; supported: {', '.join(SUPPORTED_LAYERS)}")


def _split_layers(modules: list[nn.Module], where: str, is_linear) -> tuple[list, str, float]:
    """[linear, act, linear, act, ..., linear] -> (linears, activation name, slope)."""
    linears, acts = [], []
    pending = None  # the activation seen since the last linear
    for i, m in enumerate(modules):
        if is_linear(m):
            if linears:
                acts.append(pending if pending is not None else ("identity", 0.01))
            linears.append(m)
            pending = None
            continue
        act = _activation(m)
        if act is None:
            raise _unsupported(where, i, m)
        if not linears or pending is not None:
            raise TypeError(f"{where}: module {i} ({type(m).__name__}) must follow a linear "
                            "layer (one activation between two linear layers)")
        pending = act
    if not linears:
        raise ValueError(f"{where}: no linear layer found")
    if pending is not None:
        raise TypeError(f"{where}: an activation ({type(modules[-1]).__name__}) after the last "
                        "linear layer is not supported: the last layer must be linear (a "
                        "policy's tanh is applied by the rollout)")
    kinds = sorted(set(acts))
    if len(kinds) > 1:
        raise ValueError(f"{where}: every hidden layer must use the same activation (the kernels "
                         f"fuse one), got {[k[0] for k in acts]}")
    name, slope = kinds[0] if kinds else ("identity", 0.01)
    return linears, name, slope


def _vector(name: str, value, size: int) -> torch.Tensor | None:
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float32)
    if t.dim() == 0:
        return torch.full((size,), float(t))
    t = t.detach().reshape(-1)
    if t.numel() != size:
        raise ValueError(f"{name} must be a float or [{size}], got {tuple(value.shape)}")
    return t.contiguous()


def _finish(weights, biases, activation, slope, *, gaussian, max_logvar, min_logvar, in_mean,
            in_std, obs_features) -> MLPParams:
    d_out = int(biases[-1].shape[-1])
    if gaussian:
        if max_logvar is None or min_logvar is None:
            raise ValueError("gaussian=True needs max_logvar and min_logvar (floats or [D]): the "
                             "soft bounds of the log-variance (PETS: 0.5 and -10)")
        if d_out % 2:
            raise ValueError(f"gaussian=True: the last layer must output 2 D values (mean, raw "
                             f"log-variance), got {d_out}")
        max_logvar = _vector("max_logvar", max_logvar, d_out // 2)
        min_logvar = _vector("min_logvar", min_logvar, d_out // 2)
    elif max_logvar is not None or min_logvar is not None:
        raise ValueError("max_logvar / min_logvar are given but gaussian=False")
    d_in = int(weights[0].shape[1])
    params = MLPParams(tuple(weights), tuple(biases), activation,
                       _vector("in_mean", in_mean, d_in), _vector("in_std", in_std, d_in),
                       max_logvar if gaussian else None, min_logvar if gaussian else None,
                       leaky_slope=slope, obs_features=obs_features)
    check_params(params)
    return params


# ---- per-member nn.Sequential: one copy ---------------------------------------------------

def _parse_members(members: Sequence[nn.Module]) -> tuple[list[list[nn.Linear]], str, float]:
    if isinstance(members, nn.Module) or len(members) < 1:
        raise TypeError("members must be a non-empty list of per-member nn.Sequential modules")
    parsed = []
    for e, member in enumerate(members):
        modules = _flatten([member])
        parsed.append(_split_layers(modules, f"member {e}", lambda m: isinstance(m, nn.Linear)))
    layers0, act0, slope0 = parsed[0]
    for e, (layers, act, slope) in enumerate(parsed[1:], start=1):
        if len(layers) != len(layers0):
            raise ValueError(f"member {e} has {len(layers)} Linear layers, member 0 has "
                             f"{len(layers0)}")
        if (act, slope) != (act0, slope0):
            raise ValueError(f"member {e} uses activation {act!r}, member 0 uses {act0!r}")
        for l, (lin, lin0) in enumerate(zip(layers, layers0, strict=True)):
            if lin.weight.shape != lin0.weight.shape:
                o, i = lin.weight.shape
                o0, i0 = lin0.weight.shape
                raise ValueError(f"layer {l} (Linear) of member {e} has weight [out={o}, in={i}], "
                                 f"member 0's layer {l} has [out={o0}, in={i0}]")
    for l in range(1, len(layers0)):
        prev, lin = layers0[l - 1], layers0[l]
        if lin.in_features != prev.out_features:
            raise ValueError(f"layer {l} (Linear) takes {lin.in_features} inputs, layer {l - 1} "
                             f"gives {prev.out_features} (weights [out={lin.out_features}, "
                             f"in={lin.in_features}] after [out={prev.out_features}, "
                             f"in={prev.in_features}])")
    return [p[0] for p in parsed], act0, slope0


@torch.no_grad()
def _copy_stacked(layers: list[list[nn.Linear]], weights=None, biases=None):
    """Stack the members' Linear weights as [E, in, out] (into ``weights`` / ``biases`` in place
    when given)."""
    n_layers = len(layers[0])
    out_w, out_b = [], []
    for l in range(n_layers):
        w = torch.stack([m[l].weight.detach().t() for m in layers]).to(torch.float32)
        b = torch.stack([m[l].bias.detach() if m[l].bias is not None
                         else m[l].weight.new_zeros(m[l].out_features) for m in layers])
        if weights is None:
            out_w.append(w.contiguous())
            out_b.append(b.to(torch.float32).contiguous())
        else:
            weights[l].copy_(w)
            biases[l].copy_(b)
    return out_w, out_b


def mlp_params_from_sequentials(members: Sequence[nn.Module], *, gaussian: bool = False,
                                max_logvar=None, min_logvar=None, in_mean=None, in_std=None,
                                obs_features: ObsFeatures | None = None) -> MLPParams:
    """E per-member ``nn.Sequential`` MLPs -> MLPParams (one copy into [E, in, out]).

    members: a list of E modules, each Linear / activation / ... / Linear with the same
    shapes; gaussian: the last layer outputs (mean, raw log-variance) over D each, with soft
    bounds ``max_logvar`` / ``min_logvar`` (floats or [D]); in_mean / in_std: optional input
    normalization [d_0]; obs_features: how ``ops.propagate`` maps a state to the input.
    """
    layers, act, slope = _parse_members(members)
    weights, biases = _copy_stacked(layers)
    return _finish(weights, biases, act, slope, gaussian=gaussian, max_logvar=max_logvar,
                   min_logvar=min_logvar, in_mean=in_mean, in_std=in_std,
                   obs_features=obs_features)


class SequentialEnsemble:
    """Per-member ``nn.Sequential`` MLPs as a planner model that follows their training.

    ``mlp_params()`` (read by the planners at every plan) copies the members' parameters
    into one stacked buffer per layer, again only when a parameter changed since the last
    call (the tensors' version counters). Same arguments as
    :func:`mlp_params_from_sequentials`; ``elite_members`` (list[int] | None) restricts the
    planner's propagation to those members.
    """

    def __init__(self, members: Sequence[nn.Module], *, elite_members=None, **kwargs):
        self.members = list(members)
        self.elite_members = None if elite_members is None else [int(i) for i in elite_members]
        self._layers, _, _ = _parse_members(self.members)
        self._params = mlp_params_from_sequentials(self.members, **kwargs)
        self._key = self._versions()

    def _versions(self) -> tuple[int, ...]:
        return tuple(p._version for m in self.members for p in m.parameters())

    def mlp_params(self) -> MLPParams:
        key = self._versions()
        if key != self._key:
            _copy_stacked(self._layers, self._params.weights, self._params.biases)
            self._key = key
        return self._params


# ---- stacked ensemble layers: views ------------------------------------------------------

def _is_stacked_linear(m: nn.Module) -> bool:
    w = getattr(m, "weight", None)
    return isinstance(w, torch.Tensor) and w.dim() == 3


def _view32(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A view of ``t`` as float32 ``shape``; a copy only when ``t`` is not float32 contiguous."""
    t = t.detach()
    if t.dtype == torch.float32 and t.is_contiguous():
        return t.view(shape)
    return t.to(torch.float32).reshape(shape).contiguous()


def mlp_params_from_stacked(layers: Iterable[nn.Module] | nn.Module, *, gaussian: bool = False,
                            max_logvar=None, min_logvar=None, in_mean=None, in_std=None,
                            obs_features: ObsFeatures | None = None) -> MLPParams:
    """Stacked ensemble layers (weight [E, in, out], bias [E, out] or [E, 1, out]) with
    activations between them -> MLPParams of views (no copy) of their parameters.

    A float32 contiguous parameter is viewed; any other (and a missing bias, as zeros) is
    copied once, when called. Other arguments as in
    :func:`mlp_params_from_sequentials`.
    """
    modules = _flatten([layers] if isinstance(layers, nn.Module) else list(layers))
    linears, act, slope = _split_layers(modules, "layers", _is_stacked_linear)
    weights, biases = [], []
    e = int(linears[0].weight.shape[0])
    for l, lin in enumerate(linears):
        w = lin.weight
        _, d_in, d_out = w.shape
        name = type(lin).__name__
        if w.shape[0] != e:
            raise ValueError(f"layer {l} ({name}) has weight {list(w.shape)} for "
                             f"{w.shape[0]} members, layer 0 has {e}")
        if l > 0 and d_in != weights[-1].shape[2]:
            raise ValueError(f"layer {l} ({name}) has weight [E, in={d_in}, out={d_out}], but "
                             f"layer {l - 1} gives {weights[-1].shape[2]} outputs (weight "
                             f"{list(weights[-1].shape)})")
        b = getattr(lin, "bias", None)
        if b is None:
            b = w.new_zeros(e, d_out)
        elif b.numel() != e * d_out:
            raise ValueError(f"layer {l} ({name}) has bias {list(b.shape)}, expected [E={e}, "
                             f"out={d_out}] or [{e}, 1, {d_out}] for weight {list(w.shape)}")
        weights.append(_view32(w, (e, d_in, d_out)))
        biases.append(_view32(b, (e, d_out)))
    return _finish(weights, biases, act, slope, gaussian=gaussian, max_logvar=max_logvar,
                   min_logvar=min_logvar, in_mean=in_mean, in_std=in_std,
                   obs_features=obs_features)
