"""Training forward / backward of small stacked MLPs (SAC's actor and twin critics).

``mlp_forward(x, weights, biases, activation)`` computes EnsembleMLP's function::

    h_0 = x                                   x [E, B, d_0], or [B, d_0] shared by members
    h_l = act(h_{l-1} @ W_l[e] + b_l[e])      W_l [E, d_{l-1}, d_l], b_l [E, d_l]
    y   = h_{L-1} @ W_L[e] + b_L[e]           y [E, B, d_L]

with autograd, by one of three paths that agree to fp32 rounding:

- ``"onednn"`` (CPU, float32, ReLU or identity): the large GEMMs of the forward and of
  the backward through oneDNN's fp32 inner product (``torch.ops.mkldnn._linear_pointwise``,
  the op Inductor lowers linear layers to), with the ReLU fused into the forward GEMM;
  small or narrow products (a 1-wide critic output) through torch. Why: torch's fp32
  ``mm``/``bmm`` call MKL, which on the project machine (AMD EPYC Zen 5, AVX-512, 1
  thread) ran a 256 x 256 x 256 GEMM at 96 GFLOP/s against 196 through oneDNN, in one
  run (MKL does not pick its AVX-512 kernels on this AMD CPU, it seems).
  The backward computes a gradient only for the inputs that need one (a detached weight
  costs no dW), and ``weight_grad_rows`` lets two batches share each GEMM.
- ``"torch"``: baddbmm + activation under ordinary autograd (any device, dtype and
  activation).
- ``"cpu"`` (CPU float32; SiLU, ReLU, tanh, ELU): the compiled kernels of
  ``mbrl_fast._C.mlp_train`` (csrc/cpu/mlp_train*), the imagination op's register-blocked
  GEMMs (AVX-512 / AVX512-BF16, or portable; ``MBRL_FAST_CPU_KERNELS``). The forward keeps
  each hidden layer's activations (and, for SiLU, their sigmoid); the backward runs the
  chain of input gradients per (member, 128-row tile), then every weight gradient as one
  GEMM over the training rows, each element written by one task (bit-identical for any
  thread count). Its bf16 rounds the products' operands (layer inputs, weights, output
  gradients) and keeps the bias, the pre-activations and the activations in fp32: within
  bf16 tolerance of the torch path's bf16, with fewer roundings. Where it does not apply
  it runs the torch path.

``precision="bf16"`` (either path) rounds each GEMM's operands to bfloat16 -- the layer's
input, weight and bias, in the forward and in the backward -- and accumulates in fp32;
the activations between layers are bf16, the output and every gradient fp32 again, and
the parameters (and so the optimizer) stay fp32: PyTorch's CPU autocast to bf16 does the
same for ``nn.Linear``. The torch path's bf16 (casts around baddbmm) is the specification
the oneDNN path is tested against. Why: on a CPU with AVX512-BF16 oneDNN's bf16 inner
product runs ~2x the fp32 rate (AMD EPYC Zen 4, one thread, 256 x 256 x 256: 191 against
97 GFLOP/s, measured 2026-12-04); without it oneDNN emulates bf16 and is slower than fp32,
so ``check_precision`` refuses bf16 where ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``
is False.

``backend="auto"`` picks the compiled kernels on an AMD Zen 4 running their AVX-512 path
(never their portable loops: 3.7-7x torch's time on that CPU, one thread,
``bench/results/mlp_train_paths_zen4_t1_portable.json``);
elsewhere oneDNN where it applies, passed a one-time self-check against the torch path and
the CPU has AVX-512; else torch. On a Zen 4 (``bench/results/sac_update_zen4_compiled.json``,
2026-12-05, interleaved, per-round medians) SAC's update ran 1.13x oneDNN's rate on one
thread and 1.15x torch's on two in fp32, 1.22x / 1.37x oneDNN's in bf16, with
keep_freed_memory as the agents run; under glibc's default malloc 1.14x / 1.05x (the
saved activations come from a pool, ``_POOL``, not fresh pages).
MBPO's model-ensemble step (7 x 4 x 200 SiLU, batch 256) is not faster than torch's
baddbmm through it: 1.02x / 1.13x torch's time in fp32 on one / two threads, 1.18x /
1.27x in bf16 (``bench/results/mlp_train_paths_zen4_t{1,2}.json``, where SAC's critics
alone take 0.77-0.85x): its products run faster than torch's (~96 against ~74 GFLOP/s
per core in fp32), but its activations, their derivatives and the operand packing are
separate passes that cost about the difference, so the models keep the torch path.
The rest of this paragraph is the rule between oneDNN and torch. On an AVX2-only CPU both
libraries run AVX2 code and oneDNN's larger per-call cost is not repaid: on an AMD EPYC
Zen 3 the SAC update (Hopper sizes) ran 3-7% faster on one thread and 11-30% faster on two
through torch, in one interleaved run (``bench/results/sac_update_zen3.json``). A Zen 4
runs AVX-512 on 256-bit units, where MKL's fp32 GEMM keeps up with oneDNN's (97-98 GFLOP/s
each on one thread): oneDNN's path was 4-9% faster on one thread there, but on two the
torch path was 6-20% faster in each of eight interleaved phases over two days
(``bench/results/sac_update_zen4_bf16.json``, ``sac_update_zen4_quiet.json``,
``sac_update_zen4_threads.json``). The rule is read when a network is built, so
``torch.set_num_threads`` comes first (the agents do that).
"""

from __future__ import annotations

import functools
import math
import threading
import weakref

import torch

from mbrl_fast import backends
from mbrl_fast.backends import cpuinfo
from mbrl_fast.ops import _cpu_imagine, _launch
from mbrl_fast.ops.contract import IMAGINE_ACTIVATION_IDS as _ACT_IDS
from mbrl_fast.ops.ensemble_mlp import activation_fn

_ACTIVATIONS = ("relu", "identity")  # what the oneDNN path applies (ReLU fused in the GEMM)
_MIN_N = 4  # products with fewer rows or output columns go through torch (see _linear)
_MIN_MACS = 1 << 16  # so do products smaller than this
PRECISIONS = ("fp32", "bf16")
_MAX_LAYERS = 16  # csrc/cpu/mlp_train.h kMtMaxLayers


def _linear(x: torch.Tensor, w_t: torch.Tensor, b: torch.Tensor | None, relu: bool = False):
    """x [M, K] @ w_t.T (+ b) (-> relu) -> [M, N]; w_t [N, K] (may be a transposed view).

    oneDNN's fp32 inner product where it pays: it costs ~15 us per call against ~2 us
    for torch.mm, and is slower than MKL for a narrow output (N = 1: 17 us vs 5 us,
    measured on the project machine), so small or narrow products go through torch.
    """
    m, k = x.shape
    n = w_t.shape[0]
    if min(m, n) >= _MIN_N and m * k * n >= _MIN_MACS:
        return torch.ops.mkldnn._linear_pointwise(x, w_t, b, "relu" if relu else "none", [], "")
    y = x @ w_t.t() if b is None else torch.addmm(b, x, w_t.t())
    return y.relu_() if relu else y


class _OneDNNMLP(torch.autograd.Function):
    """The oneDNN path; inputs (x, activation, L, weight_grad_rows, dtype, W_1..W_L,
    b_1..b_L): ``dtype`` the GEMMs' operand type (float32, or bfloat16 with the output and
    gradients cast back to float32)."""

    @staticmethod
    def forward(ctx, x, activation, n_layers, weight_grad_rows, dtype, *params):
        weights = [w.to(dtype) for w in params[:n_layers]]
        biases = [b.to(dtype) for b in params[n_layers:]]
        e_count = weights[0].shape[0]
        shared = x.dim() == 2
        relu = activation == "relu"
        last = n_layers - 1
        saved, outs = [], []
        x = x.to(dtype)
        for e in range(e_count):
            h = x if shared else x[e]
            for l in range(n_layers):
                saved.append(h)
                h = _linear(h, weights[l][e].t(), biases[l][e], relu and l < last)
            outs.append(h)
        ctx.save_for_backward(*saved, *weights)
        ctx.dims = (e_count, n_layers, shared, relu, weight_grad_rows)
        return torch.stack(outs).float()

    @staticmethod
    def backward(ctx, grad_out):
        e_count, n_layers, shared, relu, n_w = ctx.dims
        tensors = ctx.saved_tensors
        inputs, weights = tensors[: e_count * n_layers], tensors[e_count * n_layers:]
        need = ctx.needs_input_grad
        need_x, need_w, need_b = need[0], need[5:5 + n_layers], need[5 + n_layers:]
        grad_out = grad_out.to(weights[0].dtype)
        d_w = [[None] * e_count for _ in range(n_layers)]
        d_b = [[None] * e_count for _ in range(n_layers)]
        d_x = [None] * e_count
        # the lowest layer the gradient must reach (n_layers: none)
        lowest = 0 if need_x else next((l for l in range(n_layers) if need_w[l] or need_b[l]),
                                      n_layers)
        # rows past n_w only pass gradient on to x: without need_x they are skipped
        rows = slice(None) if need_x else slice(n_w)
        for e in range(e_count):
            g = grad_out[e][rows]
            for l in range(n_layers - 1, lowest - 1, -1):
                h_in = inputs[e * n_layers + l][rows]
                if need_w[l]:  # h_in^T g  [in, out]
                    d_w[l][e] = _linear(h_in[:n_w].t(), g[:n_w].t(), None).float()
                if need_b[l]:
                    d_b[l][e] = g[:n_w].sum(dim=0, dtype=torch.float32)
                if l > lowest or need_x:
                    g = _linear(g, weights[l][e], None)  # g W^T  [B, in]
                    if l > 0 and relu:
                        g = torch.ops.aten.threshold_backward(g, h_in, 0)
            d_x[e] = g
        grad_x = None
        if need_x:
            d_x = [d.float() for d in d_x]
            grad_x = functools.reduce(torch.add, d_x) if shared else torch.stack(d_x)
        grads_w = [torch.stack(d) if need_w[l] else None for l, d in enumerate(d_w)]
        grads_b = [torch.stack(d) if need_b[l] else None for l, d in enumerate(d_b)]
        return (grad_x, None, None, None, None, *grads_w, *grads_b)


# Buffers of the compiled path's saved activations and scratch, reused across calls: a fresh
# [E, B, d] buffer per layer and call is fresh pages under glibc's default malloc (page
# faults on first touch), which cost SAC's update ~10% on one Zen 4 thread. A forward's
# buffer returns when its autograd node is freed (at once under no_grad), the backward's
# scratch when the backward ends; the pool keeps a few.
_POOL: list[torch.Tensor] = []
_POOL_KEEP = 8
_POOL_LOCK = threading.Lock()


def _acquire(numel: int) -> torch.Tensor:
    """A float32 buffer of at least ``numel`` elements (its first ``numel``), from the pool
    (the smallest that fits) or new."""
    with _POOL_LOCK:
        fits = [i for i, b in enumerate(_POOL) if b.numel() >= numel]
        if fits:
            return _POOL.pop(min(fits, key=lambda i: _POOL[i].numel()))[:numel]
    return torch.empty(numel)


def _release(buf: torch.Tensor) -> None:
    with _POOL_LOCK:
        _POOL.append(buf._base if buf._base is not None else buf)
        if len(_POOL) > _POOL_KEEP:  # drop the smallest
            _POOL.pop(min(range(len(_POOL)), key=lambda i: _POOL[i].numel()))


def _views(buf: torch.Tensor, shapes) -> list[torch.Tensor]:
    """Consecutive views of ``buf`` with these shapes."""
    out, at = [], 0
    for shape in shapes:
        n = math.prod(shape)
        out.append(buf[at:at + n].view(shape))
        at += n
    return out


class _CompiledMLP(torch.autograd.Function):
    """The compiled path (``mbrl_fast._C.mlp_train``, csrc/cpu/mlp_train*.{h,cpp}): the
    forward keeps each hidden layer's activations and what their derivative needs (the
    pre-activations; for SiLU their sigmoid), the backward reads them; inputs (x,
    activation, L, weight_grad_rows, bf16, W_1..W_L, b_1..b_L)."""

    @staticmethod
    def forward(ctx, x, activation, n_layers, weight_grad_rows, bf16, *params):
        weights = [w.contiguous() for w in params[:n_layers]]
        biases = [b.contiguous() for b in params[n_layers:]]
        x = x.contiguous()
        e_count, rows = weights[0].shape[0], x.shape[-2]
        sizes = [x.shape[-1], *(w.shape[2] for w in weights)]
        shapes = [(e_count, rows, d) for d in sizes[1:-1]]
        saved = _acquire(2 * sum(math.prod(s) for s in shapes))
        weakref.finalize(ctx, _release, saved)
        hidden, post = _views(saved, shapes), _views(saved[saved.numel() // 2:], shapes)
        y = x.new_empty(e_count, rows, sizes[-1])
        none = [0] * n_layers
        backends.cpu_module().mlp_train(
            False, [e_count, rows, weight_grad_rows], sizes, _ACT_IDS.get(activation, 0), bf16,
            x.dim() == 2, [w.data_ptr() for w in weights], [b.data_ptr() for b in biases],
            none, none, [h.data_ptr() for h in hidden], [h.data_ptr() for h in post],
            none[1:], x.data_ptr(), y.data_ptr(), 0, 0, _cpu_imagine.requested_isa(),
            torch.get_num_threads())
        ctx.save_for_backward(x, *weights, *biases, *hidden, *post)
        ctx.dims = (activation, n_layers, weight_grad_rows, bf16, sizes)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        activation, n_layers, n_w, bf16, sizes = ctx.dims
        saved = ctx.saved_tensors
        x, weights = saved[0], saved[1:1 + n_layers]
        biases = saved[1 + n_layers:1 + 2 * n_layers]
        hidden, post = saved[1 + 2 * n_layers:n_layers * 3], saved[n_layers * 3:]
        need = ctx.needs_input_grad
        need_x, need_wb = need[0], [need[5 + l] or need[5 + n_layers + l] for l in range(n_layers)]
        e_count, rows = weights[0].shape[0], x.shape[-2]
        dy = grad_out.contiguous()
        dw = [torch.empty_like(w) if n else None for w, n in zip(weights, need_wb, strict=True)]
        db = [torch.empty_like(b) if n else None for b, n in zip(biases, need_wb, strict=True)]
        scratch = _acquire(sum(h.numel() for h in hidden))
        dpre = _views(scratch, [h.shape for h in hidden])
        dx = x.new_empty(e_count, rows, sizes[0]) if need_x else None
        addr = _launch.addr
        try:
            backends.cpu_module().mlp_train(
                True, [e_count, rows, n_w], sizes, _ACT_IDS.get(activation, 0), bf16,
                x.dim() == 2, [w.data_ptr() for w in weights], [b.data_ptr() for b in biases],
                [addr(t) for t in dw], [addr(t) for t in db], [h.data_ptr() for h in hidden],
                [h.data_ptr() for h in post], [h.data_ptr() for h in dpre], x.data_ptr(), 0,
                dy.data_ptr(), addr(dx), _cpu_imagine.requested_isa(), torch.get_num_threads())
        finally:  # back to the pool even if the kernel raised
            _release(scratch)
        if dx is not None and x.dim() == 2:
            dx = dx.sum(0)
        grads_w = [d if need[5 + l] else None for l, d in enumerate(dw)]
        grads_b = [d if need[5 + n_layers + l] else None for l, d in enumerate(db)]
        return (dx, None, None, None, None, *grads_w, *grads_b)


def _torch_mlp(x, weights, biases, activation, weight_grad_rows=None, precision="fp32"):
    rows = x.shape[-2]
    if weight_grad_rows is not None and weight_grad_rows < rows:
        n = weight_grad_rows
        head = _torch_mlp(x[..., :n, :], weights, biases, activation, precision=precision)
        tail = _torch_mlp(x[..., n:, :], [w.detach() for w in weights],
                          [b.detach() for b in biases], activation, precision=precision)
        return torch.cat([head, tail], dim=1)
    act = activation_fn(activation)
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(weights[0].shape[0], -1, -1)
    out_dtype = x.dtype
    if precision == "bf16":  # operands rounded, the casts' backward makes the grads fp32
        x = x.bfloat16()
        weights = [w.bfloat16() for w in weights]
        biases = [b.bfloat16() for b in biases]
    last = len(weights) - 1
    for l, (w, b) in enumerate(zip(weights, biases, strict=True)):
        x = torch.baddbmm(b.unsqueeze(1), x, w)
        if l < last:
            x = act(x)
    return x.to(out_dtype)


@functools.lru_cache(maxsize=1)
def onednn_available() -> bool:
    """oneDNN's fp32 inner product exists here and matches torch on a small MLP (checked once)."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        g = torch.Generator().manual_seed(0)
        # sizes that take oneDNN for every product but the narrow last one
        x = torch.randn(64, 32, generator=g, requires_grad=True)
        ws = [torch.randn(2, 32, 64, generator=g).div_(6).requires_grad_(),
              torch.randn(2, 64, 64, generator=g).div_(8).requires_grad_(),
              torch.randn(2, 64, 1, generator=g).div_(8).requires_grad_()]
        bs = [torch.randn(2, 64, generator=g, requires_grad=True),
              torch.randn(2, 64, generator=g, requires_grad=True),
              torch.randn(2, 1, generator=g, requires_grad=True)]
        outs = []
        for fn in (_torch_mlp, lambda *a: _OneDNNMLP.apply(a[0], a[3], 3, a[4], torch.float32,
                                                            *a[1], *a[2])):
            y = fn(x, ws, bs, "relu", 40)
            grads = torch.autograd.grad(y.square().sum(), [x, *ws, *bs])
            outs.append((y, *grads))
        return all(torch.allclose(a, b, rtol=1e-4, atol=1e-5)
                   for a, b in zip(*outs, strict=True))
    except (RuntimeError, AttributeError):
        return False


def onednn_preferred() -> bool:
    """Whether 'auto' takes oneDNN where it applies: torch's CPU capability is AVX-512,
    unless the CPU is a Zen 4 and torch runs more than one thread (module docstring)."""
    if "AVX512" not in torch.backends.cpu.get_cpu_capability():
        return False
    return torch.get_num_threads() == 1 or not is_zen4()


def compiled_preferred(activation: str) -> bool:
    """Whether 'auto' takes the compiled kernels: an AMD Zen 4 (where they were measured
    faster than torch and oneDNN for SAC's networks, module doc) running their AVX-512 path
    (not forced lower by ``MBRL_FAST_CPU_KERNELS``), for an activation they have."""
    return (activation in _ACT_IDS and is_zen4() and backends.is_available("cpu")
            and _cpu_imagine.kernel_name() == "avx512")


def is_zen4() -> bool:
    """An AMD CPU of family 25 (0x19, Zen 3 and Zen 4) with AVX-512, i.e. a Zen 4."""
    info = cpuinfo()
    return (info.get("vendor_id") == "AuthenticAMD" and info.get("cpu family") == "25"
            and "avx512f" in info.get("flags", "").split())


def resolve_backend(backend: str, activation: str) -> str:
    """'auto' -> 'cpu' (the compiled kernels) where they are preferred (a Zen 4 running
    their AVX-512 path), else 'onednn' where it applies (CPU, float32, ReLU / identity) and
    is preferred (an AVX-512 CPU), else 'torch' (module doc)."""
    if backend not in ("auto", "onednn", "torch", "cpu"):
        raise ValueError(f"backend must be 'auto', 'onednn', 'torch' or 'cpu', got {backend!r}")
    if backend in ("torch", "cpu"):  # 'cpu' (compiled) falls back to torch per call
        return backend
    if backend == "auto" and compiled_preferred(activation):
        return "cpu"
    ok = activation in _ACTIVATIONS and onednn_available()
    if backend == "onednn" and not ok:
        raise RuntimeError(f"the oneDNN MLP path is unavailable here (activation "
                           f"{activation!r}, oneDNN check passed: {onednn_available()}); "
                           "use backend='torch'")
    return "onednn" if ok and (backend == "onednn" or onednn_preferred()) else "torch"


def check_precision(precision: str, name: str = "precision") -> str:
    """``precision`` if it is 'fp32', or 'bf16' where oneDNN has a native bf16 GEMM here;
    ValueError naming ``name`` otherwise (module docstring: bf16 without AVX512-BF16
    would be emulated, slower than fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"{name} must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and not bf16_supported():
        raise ValueError(f"{name}='bf16' needs a CPU with native bf16 GEMMs (AVX512-BF16 or "
                         f"AMX; torch.ops.mkldnn._is_mkldnn_bf16_supported() is False here): "
                         f"use 'fp32'")
    return precision


@functools.lru_cache(maxsize=1)
def bf16_supported() -> bool:
    """oneDNN runs bf16 GEMMs natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (RuntimeError, AttributeError):
        return False


def mlp_forward(x: torch.Tensor, weights, biases, activation: str, backend: str = "torch",
                weight_grad_rows: int | None = None, precision: str = "fp32") -> torch.Tensor:
    """x [E, B, d_0] or [B, d_0] -> y [E, B, d_L] (see module doc); ``backend`` resolved.

    ``weight_grad_rows`` n: only rows [:n] give the weights and biases a gradient; the
    rows after them see the weights as detached constants (their gradient reaches x
    only). So two batches share one GEMM per layer when only the first trains the
    weights (SAC: the critic on (s, a) and on (s, pi(s)); the policy on s and s').
    ``precision`` 'bf16': bf16 GEMM operands, fp32 accumulation (module doc). The oneDNN
    path needs CPU float32 tensors; others run the torch path.
    """
    rows = x.shape[-2]
    n_w = rows if weight_grad_rows is None else int(weight_grad_rows)
    if not 0 <= n_w <= rows:
        raise ValueError(f"weight_grad_rows must be in [0, {rows}], got {weight_grad_rows}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if backend == "cpu" and compiled_applies(x, weights, activation):
        return _CompiledMLP.apply(x, activation, len(weights), n_w, precision == "bf16",
                                  *weights, *biases)
    if backend == "onednn" and x.device.type == "cpu" and x.dtype == torch.float32:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        return _OneDNNMLP.apply(x, activation, len(weights), n_w, dtype, *weights, *biases)
    return _torch_mlp(x, weights, biases, activation, n_w, precision)


def compiled_applies(x: torch.Tensor, weights, activation: str) -> bool:
    """The compiled path takes this call: CPU float32 tensors, an activation it has (or a
    single layer), at most 16 layers, and the module built."""
    return (x.device.type == "cpu" and x.dtype == torch.float32
            and all(w.device.type == "cpu" and w.dtype == torch.float32 for w in weights)
            and (activation in _ACT_IDS or len(weights) == 1) and len(weights) <= _MAX_LAYERS
            and backends.is_available("cpu"))


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse instead of returning them to the OS.

    By default glibc serves blocks above ~128 KiB-32 MiB with mmap and trims the heap on
    free, so every [256, 256] float32 activation or gradient of an update arrives as fresh
    pages: on the project machine ~600 page faults (1.7 ms of system time) per SAC update,
    ~0.7 after this call. Process-wide (it changes malloc for every library in the
    process) and only on glibc; returns whether it applied. Memory freed by the process is
    then kept (up to 1 GiB above the heap top) rather than returned.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)
                    and libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False
