"""SAC: the tanh-Gaussian policy (log-prob, kernel layout, policy in the loop), the oneDNN
training MLP, the update's math (Polyak, alpha), exact resume, bad input, and learning."""

import ast
import copy
import dataclasses
import inspect
import io
import math

import numpy as np
import pytest
import torch
from helpers import random_mlp_params
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from mbrl_fast.agents.offpolicy import EPOCH_FIELDS, SACAgentConfig, train_sac
from mbrl_fast.agents.sac import SAC, SACBatch, SACConfig
from mbrl_fast.backends import cpu_module
from mbrl_fast.nn import TanhGaussianPolicy, dense
from mbrl_fast.nn.dense import (
    bf16_supported,
    check_precision,
    mlp_forward,
    onednn_available,
    resolve_backend,
)
from mbrl_fast.nn.policy import _TanhGaussianHead, squash
from mbrl_fast.ops import _cpu_imagine, ensemble_mlp, propagate
from mbrl_fast.ops.ensemble_mlp import soft_bound_logvar

BACKENDS = ["torch", "cpu"] + (["onednn"] if onednn_available() else [])


@pytest.fixture(autouse=True)
def one_thread():
    """Small networks on 2 busy shared cores: 2 OpenMP threads made a 32-wide update ~100x
    slower than 1 (SACAgentConfig.torch_threads = 1 for the same reason)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(d=5, a=2, b=32, seed=0) -> SACBatch:
    g = torch.Generator().manual_seed(seed)
    return SACBatch(torch.randn(b, d, generator=g), torch.rand(b, a, generator=g) * 2 - 1,
                    torch.randn(b, generator=g), torch.randn(b, d, generator=g),
                    (torch.rand(b, generator=g) < 0.2).float())


def _small(**kw) -> SACConfig:
    return SACConfig(hidden=32, **kw)


# ---- the policy ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_log_prob_matches_torch_distributions(backend):
    policy = TanhGaussianPolicy(6, 3, hidden=64, seed=1, backend=backend)
    obs = torch.randn(50, 6) * 3
    eps = torch.randn(50, 3)
    action, log_prob = policy.sample(obs, eps=eps)
    mean, logvar = policy(obs)
    u = mean + torch.exp(0.5 * logvar) * eps
    tanh = TanhTransform(cache_size=1)
    dist = TransformedDistribution(Normal(mean, torch.exp(0.5 * logvar)), [tanh])
    expected = dist.log_prob(tanh(u)).sum(-1)  # cached: log_prob reads u, not atanh(a)
    torch.testing.assert_close(action, torch.tanh(u))
    torch.testing.assert_close(log_prob, expected, rtol=1e-5, atol=1e-4)


def test_fused_head_gradients_match_autograd():
    g = torch.Generator().manual_seed(0)
    h = (torch.randn(9, 6, generator=g, dtype=torch.float64) * 4).requires_grad_()
    with torch.no_grad():
        h[0, 3:] = torch.tensor([-70.0, 20.0, 3.9])  # raw log-variances at both bounds
    eps = torch.randn(9, 3, generator=g, dtype=torch.float64)
    hi, lo = torch.full((3,), 4.0, dtype=torch.float64), torch.full((3,), -40.0,
                                                                    dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: _TanhGaussianHead.apply(x, eps, hi, lo), (h,))
    a, lp = _TanhGaussianHead.apply(h, eps, hi, lo)
    a_ref, lp_ref = squash(h[:, :3], soft_bound_logvar(h[:, 3:], hi, lo), eps)
    torch.testing.assert_close((a, lp), (a_ref, lp_ref))
    w = torch.randn(9, 3, generator=g, dtype=torch.float64)
    grads = [torch.autograd.grad((x * w).sum() + y.sum(), h)[0] for x, y in
             ((a, lp), (a_ref, lp_ref))]
    torch.testing.assert_close(grads[0], grads[1])


def test_log_prob_is_finite_for_saturated_actions():
    mean = torch.tensor([[30.0, -30.0, 0.0]])
    a, log_prob = squash(mean, torch.zeros(1, 3), torch.zeros(1, 3))
    assert torch.isfinite(log_prob).all() and a.abs().max() <= 1.0
    # log pi = log N(u) - sum log(1 - tanh(u)^2), and log(1 - tanh(u)^2) -> log 4 - 2|u|
    expected = -0.5 * 3 * math.log(2 * math.pi) - 2 * (math.log(4) - 2 * 30.0)
    assert float(log_prob) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op_backend", ["reference", "cpu"])
def test_mlp_params_reproduce_the_forward(backend, op_backend):
    from mbrl_fast import backends

    if op_backend == "cpu" and not backends.is_available("cpu"):
        pytest.skip("mbrl_fast._C not built")
    policy = TanhGaussianPolicy(7, 4, hidden=32, seed=0, backend=backend)
    with torch.no_grad():  # push some raw log-variances into both soft bounds
        policy.mlp.layers[-1].bias[0, 4:] = torch.tensor([-60.0, -10.0, 0.0, 10.0])
    obs = torch.randn(33, 7)
    mean, logvar = policy(obs)
    params = policy.mlp_params()
    assert params.num_members == 1 and params.gaussian and params.activation == "relu"
    assert params.weights[0].data_ptr() == policy.mlp.layers[0].weight.data_ptr()  # a view
    mu_k, lv_k = ensemble_mlp(obs, params, backend=op_backend)
    torch.testing.assert_close(mu_k[0], mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(lv_k[0], logvar, rtol=1e-4, atol=1e-5)
    assert logvar.max() <= 4.0 and logvar.min() >= -40.0  # log-std in [-20, 2]


def test_policy_in_the_loop_of_propagate():
    d, a, n, k = 5, 2, 4, 3
    policy = TanhGaussianPolicy(d, a, hidden=16, seed=0)
    with torch.no_grad():
        policy.mlp.layers[-1].weight.mul_(20)  # saturate: tanh must still bound the actions
    model = random_mlp_params(E=3, sizes=(d + a, 16, 2 * d), normalize=False, scale=0.3)
    result = propagate(model, torch.randn(n, d), None, policy=policy.mlp_params(), horizon=3,
                       particles=k, mode="ts1", seed=1, backend="reference")
    assert result.actions.shape == (n, 1, k, 3, a)
    assert result.actions.abs().max() <= 1.0 and result.actions.abs().max() > 0.99
    assert torch.isfinite(result.states).all()
    # the first action is the policy's tanh-Gaussian sample of the start state
    mean, logvar = policy(torch.zeros(1, d) + result.states[0, 0, 0, 0])
    u = torch.atanh(result.actions[0, 0, 0, 0].clamp(-1 + 1e-6, 1 - 1e-6))
    z = (u - mean[0]) / torch.exp(0.5 * logvar[0])
    assert torch.isfinite(z).all() and z.abs().max() < 6


def test_action_rescale_round_trip():
    policy = TanhGaussianPolicy(3, 2, action_low=[-2.0, 0.0], action_high=[2.0, 1.0])
    a = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])
    env = policy.to_env(a)
    torch.testing.assert_close(env, torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, 0.5]]))
    torch.testing.assert_close(policy.from_env(env), a)
    assert policy.act(torch.zeros(3)).abs().max() <= 1.0
    torch.testing.assert_close(policy.act(torch.zeros(3), deterministic=True),
                               torch.tanh(policy(torch.zeros(1, 3))[0]))


# ---- the training MLP ---------------------------------------------------------------------
@pytest.mark.skipif("onednn" not in BACKENDS, reason="oneDNN unavailable")
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("frozen", [False, True])
def test_onednn_mlp_matches_torch_with_gradients(shared, frozen):
    g = torch.Generator().manual_seed(0)
    sizes, e, b = (14, 256, 256, 1), 2, 37
    ws = [(torch.randn(e, i, o, generator=g) / i**0.5).requires_grad_(not frozen)
          for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    bs = [torch.randn(e, o, generator=g).requires_grad_(not frozen) for o in sizes[1:]]
    x = torch.randn(*((b,) if shared else (e, b)), sizes[0], generator=g, requires_grad=True)
    grads = []
    for backend in ("torch", "onednn"):
        y = mlp_forward(x, ws, bs, "relu", backend)
        assert y.shape == (e, b, 1)
        leaves = [x] + ([] if frozen else ws + bs)
        grads.append((y, *torch.autograd.grad((y * torch.arange(b).view(1, b, 1)).sum(),
                                              leaves)))
    for ref, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def _bf16_reference_mlp(x, ws, bs, weight_grad_rows):
    """The bf16 precision written out: every GEMM operand and every hidden activation
    rounded to bf16, products summed in float64; output and gradients float32."""
    def r(t):
        return t.bfloat16().double()
    n = weight_grad_rows
    outs = []
    for rows, live in ((slice(None, n), True), (slice(n, None), False)):
        h = r(x[..., rows, :])
        for l, (w, b) in enumerate(zip(ws, bs, strict=True)):
            w, b = (w, b) if live else (w.detach(), b.detach())
            h = (h.unsqueeze(0) if h.dim() == 2 else h) @ r(w) + r(b).unsqueeze(1)
            h = r(h.relu() if l < len(ws) - 1 else h)
        outs.append(h)
    return torch.cat(outs, dim=1).float()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shared", [True, False])
def test_bf16_mlp_rounds_the_gemm_operands(backend, shared):
    """precision='bf16' on either path against the rounding written out (odd sizes; the
    rows past weight_grad_rows give the weights no gradient): the same output and
    gradients to a few bf16 roundings, and measurably not the fp32 function."""
    if backend == "onednn" and not bf16_supported():
        pytest.skip("no native bf16 GEMMs on this CPU")
    if backend == "cpu":
        pytest.skip("the compiled path rounds only the products' operands (not the bias or "
                    "the pre-activations): tests/ops/test_mlp_train.py holds it to the torch "
                    "path at bf16 tolerance")
    g = torch.Generator().manual_seed(1)
    sizes, e, b, n_w = (13, 67, 45, 3), 2, 29, 17
    ws = [(torch.randn(e, i, o, generator=g) / i**0.5).requires_grad_()
          for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    bs = [(0.3 * torch.randn(e, o, generator=g)).requires_grad_() for o in sizes[1:]]
    x = torch.randn(*((b,) if shared else (e, b)), sizes[0], generator=g, requires_grad=True)
    weight = torch.randn(e, b, sizes[-1], generator=g)
    results = []
    for fn in (lambda: mlp_forward(x, ws, bs, "relu", backend, n_w, precision="bf16"),
               lambda: _bf16_reference_mlp(x, ws, bs, n_w),
               lambda: mlp_forward(x, ws, bs, "relu", backend, n_w)):
        y = fn()
        results.append((y, *torch.autograd.grad((y * weight).sum(), [x, *ws, *bs])))
    got, ref, fp32 = results
    for name, a, want, full in zip(["y", "x", "W1", "W2", "W3", "b1", "b2", "b3"], got, ref,
                                   fp32, strict=True):
        assert a.dtype == torch.float32, name
        scale = want.abs().max()
        assert (a - want).abs().max() <= 0.02 * scale, name
        if name in ("y", "W1"):  # the rounding is there: fp32 differs by far more
            assert (full - want).abs().max() > 50 * (a - want).abs().max() + 1e-4 * scale, name


def test_precision_is_checked_and_named(monkeypatch):
    with pytest.raises(ValueError, match="precision must be one of"):
        mlp_forward(torch.zeros(2, 3), [torch.zeros(1, 3, 4)], [torch.zeros(1, 4)], "relu",
                    precision="fp16")
    with pytest.raises(ValueError, match="config.precision must be one of"):
        SAC(5, 2, SACConfig(hidden=8, precision="half"))
    monkeypatch.setattr(dense, "bf16_supported", lambda: False)
    with pytest.raises(ValueError, match="config.precision='bf16' needs a CPU with native bf16"):
        SAC(5, 2, SACConfig(hidden=8, precision="bf16"))
    assert check_precision("fp32") == "fp32"


@pytest.mark.skipif(not (onednn_available() and bf16_supported()), reason="no bf16 GEMMs")
def test_bf16_sac_update_tracks_the_fp32_update():
    """One learner in each precision from the same weights and batches: the bf16 update
    is the fp32 one to bf16 rounding (the losses agree and the weights move in the same
    direction over 20 steps), and its weights, gradients and Adam state stay float32."""
    sacs = [SAC(5, 2, _small(precision=p, backend="onednn"), seed=0) for p in ("fp32", "bf16")]
    start = [p.detach().clone() for p in sacs[0].optimizer.param_groups[0]["params"]]
    for step in range(20):
        outs = [s.update(_batch(seed=step)) for s in sacs]
        assert abs(float(outs[1]["critic_loss"] - outs[0]["critic_loss"])) \
            <= 0.05 * abs(float(outs[0]["critic_loss"])) + 1e-3
    moves = []
    for sac in sacs:
        params = [p for group in sac.optimizer.param_groups for p in group["params"]]
        for p in params:
            assert p.dtype == p.grad.dtype == sac.optimizer.state[p]["exp_avg"].dtype \
                == torch.float32
        moves.append(torch.cat([(p.detach() - p0).flatten() for p, p0 in
                                zip(params[:len(start)], start, strict=True)]))
    cosine = float(torch.nn.functional.cosine_similarity(moves[0], moves[1], dim=0))
    assert cosine > 0.95 and not torch.equal(moves[0], moves[1]), cosine


@pytest.mark.parametrize("capability", ["AVX2", "AVX512", "DEFAULT"])
def test_auto_takes_onednn_only_on_avx512_cpus(monkeypatch, capability):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # on any AVX-512 CPU: below
    monkeypatch.setattr(dense, "cpuinfo", lambda: {})  # not a Zen 4 (see below)
    onednn = "onednn" in BACKENDS
    want = "onednn" if onednn and capability == "AVX512" else "torch"
    assert resolve_backend("auto", "relu") == want
    assert resolve_backend("auto", "tanh") == "torch"  # oneDNN's path fuses ReLU only
    assert resolve_backend("torch", "relu") == "torch"
    if onednn:  # asked for by name, it is used wherever it works
        assert resolve_backend("onednn", "relu") == "onednn"
    with pytest.raises(ValueError, match="backend must be"):
        resolve_backend("mkl", "relu")


ZEN4 = {"vendor_id": "AuthenticAMD", "cpu family": "25", "flags": "fma avx2 avx512f"}
ZEN3 = {"vendor_id": "AuthenticAMD", "cpu family": "25", "flags": "fma avx2"}
ZEN5 = {"vendor_id": "AuthenticAMD", "cpu family": "26", "flags": "fma avx2 avx512f"}
XEON = {"vendor_id": "GenuineIntel", "cpu family": "6", "flags": "fma avx2 avx512f"}


@pytest.mark.parametrize("cpu, threads, preferred", [
    (ZEN4, 1, True), (ZEN4, 2, False),  # on a Zen 4, oneDNN on one thread only
    (ZEN5, 1, True), (ZEN5, 2, True), (XEON, 2, True), ({}, 2, True)])
def test_auto_on_avx512_leaves_onednn_on_a_zen4_with_more_threads(monkeypatch, cpu, threads,
                                                                   preferred):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(dense, "cpuinfo", lambda: cpu)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    assert dense.is_zen4() is (cpu is ZEN4)
    assert dense.onednn_preferred() is preferred
    onednn = "onednn" in BACKENDS
    old_rule = "onednn" if onednn and preferred else "torch"
    compiled = cpu is ZEN4 and _cpu_imagine.kernel_name() == "avx512"
    assert resolve_backend("auto", "relu") == ("cpu" if compiled else old_rule)


@pytest.mark.parametrize("kernels", ["avx512", "avx2", "portable"])
def test_auto_takes_the_compiled_kernels_on_a_zen4_running_their_avx512_path(monkeypatch,
                                                                            kernels):
    monkeypatch.setattr(dense, "cpuinfo", lambda: ZEN4)
    monkeypatch.setenv("MBRL_FAST_CPU_KERNELS", kernels)
    avx512 = _cpu_imagine.kernel_name() == "avx512"  # False where this CPU lacks AVX-512
    assert avx512 is (kernels == "avx512" and bool(cpu_module().cpu_has_avx512()))
    assert dense.compiled_preferred("relu") is avx512
    assert dense.compiled_preferred("silu") is avx512
    assert not dense.compiled_preferred("leaky_relu")  # no such kernel activation
    assert (resolve_backend("auto", "relu") == "cpu") is avx512


def test_a_zen3_is_not_a_zen4(monkeypatch):
    monkeypatch.setattr(dense, "cpuinfo", lambda: ZEN3)
    assert not dense.is_zen4()


# ---- the update -----------------------------------------------------------------------------
def test_polyak_update_and_target_entropy():
    sac = SAC(5, 2, _small(tau=0.1), seed=0)
    assert sac.target_entropy == -2.0 and sac.alpha == pytest.approx(1.0)
    target_before = [p.clone() for p in sac.critic_target.parameters()]
    for p, q in zip(sac.critic.parameters(), target_before, strict=True):
        assert torch.equal(p, q)  # the target starts as a copy
    sac.update(_batch())
    for t, old, p in zip(sac.critic_target.parameters(), target_before, sac.critic.parameters(),
                         strict=True):
        torch.testing.assert_close(t, 0.9 * old + 0.1 * p, rtol=0, atol=1e-7)
        assert not torch.equal(p, old)
    sac2 = SAC(5, 2, _small(target_update_interval=2), seed=0)
    before = [p.clone() for p in sac2.critic_target.parameters()]
    sac2.update(_batch())
    assert all(torch.equal(a, b) for a, b in zip(before, sac2.critic_target.parameters(),
                                                 strict=True))


@pytest.mark.parametrize("target, direction", [(-50.0, -1), (50.0, 1)])
def test_alpha_moves_toward_the_target_entropy(target, direction):
    sac = SAC(5, 2, _small(target_entropy=target, alpha_lr=1e-2), seed=0)
    for i in range(5):
        sac.update(_batch(seed=i))
    # entropy above the target: alpha falls; below: alpha rises
    assert (sac.alpha - 1.0) * direction > 0.02
    fixed = SAC(5, 2, _small(auto_alpha=False, init_alpha=0.2), seed=0)
    fixed.update(_batch())
    assert fixed.alpha == pytest.approx(0.2)


def test_update_returns_metrics_and_learns_a_constant_reward():
    sac = SAC(3, 1, _small(gamma=0.0, critic_lr=3e-3), seed=0)
    batch = _batch(d=3, a=1, b=64)
    batch = batch._replace(reward=torch.full((64,), 2.0))
    for _ in range(300):
        m = sac.update(batch)
    assert set(m) == {"critic_loss", "actor_loss", "alpha_loss", "alpha", "q_mean", "entropy"}
    assert all(v.dim() == 0 for v in m.values())
    assert float(m["q_mean"]) == pytest.approx(2.0, abs=0.1)  # gamma 0: Q = r
    many = sac.update_many(lambda: batch, 3)
    assert set(many) == set(m) and all(isinstance(v, float) for v in many.values())


def test_done_stops_the_bootstrap():
    sac = SAC(3, 1, _small(), seed=0)
    batch = _batch(d=3, a=1, b=8)
    eps = torch.randn(2, 8, 1)
    loss = sac.losses(batch._replace(done=torch.ones(8)), eps)["critic_loss"]
    q = sac._q(torch.cat([batch.obs, batch.act], -1), *sac._live_wb()).detach()  # [2, B]
    expected = 0.5 * (q - batch.reward).square().mean(dim=1).sum()  # target = r alone
    torch.testing.assert_close(loss.detach(), expected)


def _textbook_losses(sac: SAC, batch: SACBatch, eps: torch.Tensor) -> torch.Tensor:
    """SAC's three losses as the paper writes them, one network pass per term (no shared
    GEMMs, no weight_grad_rows): the specification of SAC.losses."""
    alpha = sac.log_alpha.detach().exp()
    ws, bs = sac._live_wb()

    def q(obs, act, weights, biases):
        return mlp_forward(torch.cat([obs, act], -1), weights, biases, "relu").squeeze(-1)

    new_act, logp = sac.policy.sample(batch.obs, eps=eps[0])
    with torch.no_grad():
        next_act, next_logp = sac.policy.sample(batch.next_obs, eps=eps[1])
        q_next = q(batch.next_obs, next_act, *sac._target_wb()).min(dim=0).values
        y = batch.reward + sac.config.gamma * (1 - batch.done) * (q_next - alpha * next_logp)
    critic_loss = 0.5 * (q(batch.obs, batch.act, ws, bs) - y).square().mean(dim=1).sum()
    q_pi = q(batch.obs, new_act, [w.detach() for w in ws], [b.detach() for b in bs])
    actor_loss = (alpha * logp - q_pi.min(dim=0).values).mean()
    alpha_loss = -(sac.log_alpha * (logp.detach() + sac.target_entropy)).mean()
    return critic_loss + actor_loss + alpha_loss


@pytest.mark.parametrize("backend", BACKENDS)
def test_losses_give_the_textbook_gradients(backend):
    """The merged passes (policy on s and s', critics on (s, a) and (s, pi(s)) in one GEMM
    per layer) must give every parameter the gradient of the separate-pass losses; in
    particular the actor loss must not move the critics."""
    sac = SAC(5, 2, _small(backend=backend), seed=4)
    batch = _batch(b=40, seed=7)
    eps = torch.randn(2, 40, 2, generator=torch.Generator().manual_seed(1))
    params = [*sac.policy.parameters(), *sac.critic.parameters(), sac.log_alpha]
    out = sac.losses(batch, eps)
    got = torch.autograd.grad(out["critic_loss"] + out["actor_loss"] + out["alpha_loss"],
                              params)
    want = torch.autograd.grad(_textbook_losses(sac, batch, eps), params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    leak = torch.autograd.grad(sac.losses(batch, eps)["actor_loss"],
                               list(sac.critic.parameters()), allow_unused=True)
    assert all(g is None or not g.any() for g in leak)


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_dict_round_trip_gives_identical_updates(backend):
    sac = SAC(5, 2, _small(backend=backend), seed=3)
    for i in range(3):
        sac.update(_batch(seed=i))
    buf = io.BytesIO()
    torch.save(sac.state_dict(), buf)
    buf.seek(0)
    other = SAC(5, 2, _small(backend=backend), seed=99)
    params = other.policy_params()
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert other.policy_params().weights[0].data_ptr() == params.weights[0].data_ptr()
    for i in range(3, 6):
        m1, m2 = sac.update(_batch(seed=i)), other.update(_batch(seed=i))
        assert all(torch.equal(m1[k], m2[k]) for k in m1)
    for a, b in zip(sac.state_dict()["critic"].values(), other.state_dict()["critic"].values(),
                    strict=True):
        assert torch.equal(a, b)
    assert torch.equal(sac.act(torch.zeros(5)), other.act(torch.zeros(5)))


# ---- bad input ------------------------------------------------------------------------------
def test_bad_inputs_name_the_argument():
    gym = pytest.importorskip("gymnasium")
    sac = SAC(5, 2, _small())
    with pytest.raises(ValueError, match="obs must be"):
        sac.act(torch.zeros(4))
    with pytest.raises(ValueError, match="batch.obs"):
        sac.update(_batch(d=4))
    with pytest.raises(ValueError, match="batch.done"):
        sac.update(_batch()._replace(done=torch.zeros(31)))
    box = gym.spaces.Box(-1, 1, (5,))
    with pytest.raises(TypeError, match="action_space.*Box"):
        SAC.from_spaces(box, gym.spaces.Discrete(3))
    with pytest.raises(ValueError, match="action_space must be bounded"):
        SAC.from_spaces(box, gym.spaces.Box(-np.inf, np.inf, (2,)))
    with pytest.raises(TypeError, match="observation_space"):
        SAC.from_spaces(gym.spaces.Discrete(4), box)
    with pytest.raises(ValueError, match="config.tau"):
        SAC(5, 2, _small(tau=0.0))
    with pytest.raises(ValueError, match="backend"):
        SAC(5, 2, _small(backend="gpu"))


# ---- config -------------------------------------------------------------------------------
def test_config_fields_have_docstrings_and_published_defaults():
    tree = ast.parse(inspect.getsource(SACConfig))
    body = tree.body[0].body
    docs = {n.target.id for n, nxt in zip(body, body[1:], strict=False)
            if isinstance(n, ast.AnnAssign) and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant) and str(nxt.value.value).strip()}
    assert {f.name for f in dataclasses.fields(SACConfig)} <= docs
    c = SACConfig()
    assert (c.hidden, c.layers, c.activation, c.batch_size) == (256, 2, "relu", 256)
    assert (c.actor_lr, c.critic_lr, c.alpha_lr, c.gamma, c.tau) == (3e-4, 3e-4, 3e-4, 0.99, 5e-3)
    assert (c.init_alpha, c.auto_alpha, c.target_entropy) == (1.0, True, None)
    assert c.target_update_interval == 1 and SACAgentConfig().updates_per_step == 1
    sac = SAC(11, 3)
    assert [tuple(layer.weight.shape) for layer in sac.critic.layers] == [
        (2, 14, 256), (2, 256, 256), (2, 256, 1)]
    assert math.isclose(sac.target_entropy, -3.0)
    assert copy.deepcopy(c) == c


# ---- the environment loop ------------------------------------------------------------------
def test_train_sac_runs_and_reports_a_curve():
    pytest.importorskip("gymnasium")
    records = []
    curve = train_sac("Pendulum-v1", 300, seed=0,
                      config=SACAgentConfig(initial_random_steps=100, epoch_length=150,
                                            eval_episodes=1, sac=_small()),
                      callback=records.append)
    assert [s for s, _ in curve] == [150, 300]
    assert all(-2000 < r <= 0 for _, r in curve)
    assert records[-1]["env_steps"] == 300 and records[-1]["update_s"] > 0
    assert set(records[-1]) >= set(EPOCH_FIELDS)


@pytest.mark.slow
def test_sac_learns_pendulum():
    """Pendulum-v1, seed 0, published defaults: the mean return of 5 deterministic episodes
    reaches -300 within 8,000 env steps (evaluated every 1,000 from 5,000). Measured
    (2026-12-05, AMD EPYC Zen 4, evaluations every 1,000 steps to 10,000): at 5,000 / 6,000
    steps -196 / -124 on the compiled path (the default there), -195 / -256 on oneDNN's,
    -170 / -124 on torch's. Single evaluations are noisy (one to 7,000 steps read -455 on
    oneDNN's path), so the test asks for the level to be reached, not held at one step:
    evaluated once at 6,000 steps alone, the compiled path's run read -328, torch's -127
    (bench/results/sac_learning_pendulum.json)."""
    pytest.importorskip("gymnasium")
    curve = train_sac("Pendulum-v1", 8000, seed=0, config=SACAgentConfig(epoch_length=1000))
    assert max(r for steps, r in curve if steps >= 5000) >= -300, curve
