"""The compiled training MLP (``mlp_forward(..., backend="cpu")``, csrc/cpu/mlp_train*) against
its specification, the torch path of nn/dense.py: outputs and every gradient, on each CPU
kernel path (the ``cpu_backend`` fixture sets ``MBRL_FAST_CPU_KERNELS``)."""

from __future__ import annotations

import pytest
import torch

from mbrl_fast import backends
from mbrl_fast.nn.dense import bf16_supported, compiled_applies, mlp_forward


def make(e, b, sizes, shared=False, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*((b,) if shared else (e, b)), sizes[0], generator=g) * scale
    ws = [torch.randn(e, i, o, generator=g) / i ** 0.5 for i, o in
          zip(sizes[:-1], sizes[1:], strict=True)]
    bs = [torch.randn(e, o, generator=g) * 0.1 for o in sizes[1:]]
    return x, ws, bs


def run(backend, x, ws, bs, activation, n_w=None, precision="fp32", need=None):
    """y and the gradients of sum(y * fixed noise) for the tensors that require one."""
    need = need or {}
    x = x.clone().requires_grad_(need.get("x", True))
    ws = [w.clone().requires_grad_(need.get(("w", i), True)) for i, w in enumerate(ws)]
    bs = [b.clone().requires_grad_(need.get(("b", i), True)) for i, b in enumerate(bs)]
    y = mlp_forward(x, ws, bs, activation, backend, n_w, precision)
    noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(7))
    leaves = [t for t in (x, *ws, *bs) if t.requires_grad]
    grads = torch.autograd.grad((y * noise).sum(), leaves) if leaves else ()
    return [y, *grads]


def assert_matches(got, ref, rtol):
    assert len(got) == len(ref)
    for i, (a, b) in enumerate(zip(got, ref, strict=True)):
        assert a.shape == b.shape, i
        err = (a - b).abs().max().item()
        assert err <= rtol * max(b.abs().max().item(), 1e-3), (i, err, b.abs().max().item())


def skip_bf16(precision):
    if precision == "bf16" and not bf16_supported():
        pytest.skip("bf16 needs a CPU with native bf16 GEMMs (nn.dense.check_precision)")


@pytest.mark.parametrize("activation", ["silu", "relu", "tanh", "elu"])
@pytest.mark.parametrize("shared", [False, True])
def test_matches_the_torch_path(cpu_backend, activation, shared):
    x, ws, bs = make(3, 37, [5, 33, 50, 3], shared)
    ref = run("torch", x, ws, bs, activation, 20)
    assert_matches(run("cpu", x, ws, bs, activation, 20), ref, 2e-5)


@pytest.mark.parametrize("shared", [False, True])
def test_bf16_rounds_the_products_operands(cpu_backend, shared):
    skip_bf16("bf16")
    x, ws, bs = make(3, 45, [9, 70, 70, 4], shared, scale=3.0)
    fp32 = run("torch", x, ws, bs, "silu", 30)
    spec = run("torch", x, ws, bs, "silu", 30, "bf16")
    got = run("cpu", x, ws, bs, "silu", 30, "bf16")
    # within bf16 rounding of the specification, and not the fp32 function
    assert_matches(got, spec, 3e-2)
    assert max((a - b).abs().max().item() for a, b in zip(got, fp32, strict=True)) > 1e-4


@pytest.mark.parametrize("b, sizes, n_w", [
    (1, [3, 7], None),              # one row, one layer
    (1, [4, 1, 1, 2], 0),           # width-1 layers, no row trains the weights
    (130, [2, 97, 5], 130),         # tiles of 128 rows and a tail; two panels and a tail
    (64, [300, 49, 1], 17),         # wide input, 49 outputs (one column past a panel)
    (2, [1, 16, 16, 16, 16, 16, 16, 16, 1], 1),  # eight layers
])
@pytest.mark.parametrize("activation, precision", [
    ("silu", "fp32"), ("silu", "bf16"),
    ("relu", "fp32"),  # the GEMM's epilogue (bf16: test_relu_at_exactly_zero)
])
def test_edge_sizes(cpu_backend, b, sizes, n_w, precision, activation):
    skip_bf16(precision)
    x, ws, bs = make(2, b, sizes, seed=b)
    ref = run("torch", x, ws, bs, activation, n_w, precision)
    assert_matches(run("cpu", x, ws, bs, activation, n_w, precision), ref,
                   2e-5 if precision == "fp32" else 3e-2)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_relu_at_exactly_zero(cpu_backend, precision):
    """Units whose pre-activation is exactly 0 (zero weights and bias) output 0 and pass no
    gradient, as torch's relu: the fused epilogue's max and mask agree with it at the tie.

    In bf16 only the output is compared with the specification: a pre-activation near 0 can
    round to the other sign in one of two bf16 computations, which flips ReLU's derivative
    (a step), so their gradients differ by more than rounding wherever that happens."""
    skip_bf16(precision)
    x, ws, bs = make(2, 50, [6, 40, 40, 3], seed=3)
    for w, b in zip(ws[:2], bs[:2], strict=True):
        w[:, :, ::3] = 0.0
        b[:, ::3] = 0.0
    ref = run("torch", x, ws, bs, "relu", 30, precision)
    got = run("cpu", x, ws, bs, "relu", 30, precision)
    if precision == "fp32":
        assert_matches(got, ref, 2e-5)
    else:
        assert_matches(got[:1], ref[:1], 3e-2)
    # the zeroed units output 0, so their outgoing weights get no gradient (got: y, dx, dW_1,
    # dW_2, dW_3, ...; rows ::3 of dW_2 and dW_3)
    for dw in got[3:5]:
        assert torch.equal(dw[:, ::3], torch.zeros_like(dw[:, ::3]))


def test_large_values(cpu_backend):
    x, ws, bs = make(2, 20, [6, 40, 3], scale=1e3)
    ref = run("torch", x, ws, bs, "silu")
    assert_matches(run("cpu", x, ws, bs, "silu"), ref, 2e-5)


@pytest.mark.parametrize("need", [
    {"x": False},
    {"x": False, ("w", 0): False, ("b", 0): False},
    {("w", 1): False, ("b", 2): False},
    {"x": False, ("w", 0): False, ("w", 1): False, ("w", 2): False, ("b", 0): False,
     ("b", 1): False, ("b", 2): False},
])
def test_only_requested_gradients(cpu_backend, need):
    x, ws, bs = make(2, 33, [7, 24, 24, 2])
    ref = run("torch", x, ws, bs, "relu", 11, need=need)
    assert_matches(run("cpu", x, ws, bs, "relu", 11, need=need), ref, 2e-5)


def test_weight_gradients_come_from_the_first_rows_only(cpu_backend):
    """weight_grad_rows n: rows past n reach x only (SAC's shared critic GEMMs)."""
    x, ws, bs = make(2, 40, [5, 30, 1])
    ws = [w.requires_grad_() for w in ws]
    grads = []
    for rows, n_w in ((x, 25), (x[:, :25], None)):
        y = mlp_forward(rows, ws, bs, "relu", "cpu", n_w)
        grads.append(torch.autograd.grad(y.square().sum(), ws))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_results_do_not_depend_on_the_thread_count(cpu_backend):
    x, ws, bs = make(7, 256, [14, 200, 200, 24])
    before = torch.get_num_threads()
    try:
        out = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out.append(run("cpu", x, ws, bs, "silu"))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*out, strict=True):
        assert torch.equal(a, b)


def test_reused_buffers_never_serve_two_live_graphs(cpu_backend):
    """The saved activations come from a pool (nn/dense.py): graphs alive at once, and a
    no-grad call in between (whose buffer returns at once), each keep their own."""
    x, ws, bs = make(2, 40, [6, 32, 32, 3])
    x2 = x.flip(1).contiguous()
    ws = [w.requires_grad_() for w in ws]
    got = []
    ys = [mlp_forward(v, ws, bs, "silu", "cpu") for v in (x, x2)]
    with torch.no_grad():
        mlp_forward(x * 3, ws, bs, "silu", "cpu")
    ys.append(mlp_forward(x2 * 2, ws, bs, "silu", "cpu"))
    for y in ys:
        got.append(torch.autograd.grad(y.square().sum(), ws))
    for v, g in zip((x, x2, x2 * 2), got, strict=True):
        want = torch.autograd.grad(mlp_forward(v, ws, bs, "silu", "torch").square().sum(), ws)
        for a, b in zip(g, want, strict=True):
            torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-5)


def test_a_failed_backward_returns_its_scratch_to_the_pool(cpu_backend, monkeypatch):
    """The backward's scratch (one buffer for every hidden layer's gradient) goes back to
    the pool also when the kernel raises."""
    from mbrl_fast.nn import dense

    x, ws, bs = make(2, 40, [6, 32, 32, 3])
    ws = [w.requires_grad_() for w in ws]
    y = mlp_forward(x, ws, bs, "silu", "cpu")
    real = backends.cpu_module()

    class Failing:
        def mlp_train(self, backward, *args):
            if backward:
                raise RuntimeError("kernel failed")
            return real.mlp_train(backward, *args)

        def __getattr__(self, name):  # the rest of the module as it is
            return getattr(real, name)

    monkeypatch.setattr(dense.backends, "cpu_module", Failing)
    monkeypatch.setattr(dense, "_POOL", [])
    with pytest.raises(RuntimeError, match="kernel failed"):
        torch.autograd.grad(y.square().sum(), ws)
    assert [b.numel() for b in dense._POOL] == [2 * 40 * 32 * 2]  # 2 hidden layers


def test_what_the_compiled_path_does_not_take_runs_torch():
    x, ws, bs = make(2, 9, [3, 8, 2])
    assert not compiled_applies(x, ws, "leaky_relu")  # no such kernel activation
    assert not compiled_applies(x.double(), [w.double() for w in ws], "relu")
    assert compiled_applies(x, ws[:1], "leaky_relu")  # one layer: no activation applied
    ref = run("torch", x, ws, bs, "leaky_relu")
    assert_matches(run("cpu", x, ws, bs, "leaky_relu"), ref, 0.0)


@pytest.mark.parametrize("dims, sizes, match", [
    ([2, 4, 5], [3, 4], "grad_rows"),
    ([0, 4, 4], [3, 4], "members"),
    ([2, 4], [3, 4], "dims"),
    ([2, 4, 4], [3], "layers"),
])
def test_bad_arguments_are_errors_not_crashes(dims, sizes, match):
    mod = backends.cpu_module()
    n = max(len(sizes) - 1, 0)
    x = torch.zeros(64)
    with pytest.raises(ValueError, match=match):
        mod.mlp_train(False, dims, sizes, 0, False, False, [x.data_ptr()] * n,
                      [x.data_ptr()] * n, [0] * n, [0] * n, [], [], [], x.data_ptr(),
                      x.data_ptr(), 0, 0, 0, 1)
