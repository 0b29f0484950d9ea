"""SAC's update in one compiled call (``SAC.compiled_grads``, csrc/cpu/sac_grads.cpp) against
its specification, autograd through ``SAC.losses``: every gradient and metric on each CPU
kernel path, bf16, whole updates, and what it refuses."""

import pytest
import torch
from test_sac import _batch, _small, one_thread  # noqa: F401 (one_thread: autouse fixture)

from mbrl_fast.agents.sac import SAC, SACBatch, SACConfig
from mbrl_fast.nn.dense import bf16_supported
from mbrl_fast.ops import _cpu_imagine


def _grads_of_losses(sac: SAC, batch: SACBatch, eps: torch.Tensor):
    """The specification of SAC.compiled_grads: autograd through losses()."""
    params = [*sac.policy.parameters(), *sac.critic.parameters(), sac.log_alpha]
    out = sac.losses(batch, eps)
    loss = out["critic_loss"] + out["actor_loss"] + out["alpha_loss"]
    return torch.autograd.grad(loss, params), out


@pytest.mark.parametrize("kernels", ["avx512", "avx2", "portable"])
@pytest.mark.parametrize("b, d, a, hidden, layers, activation, scale", [
    (40, 5, 2, 32, 2, "relu", 1.0),
    (37, 7, 3, 33, 3, "silu", 1.0),
    (1, 3, 1, 8, 1, "tanh", 1.0),
    (130, 4, 2, 17, 2, "elu", 1.0),   # 260 critic rows: three 128-row tiles
    (33, 6, 4, 24, 2, "relu", 30.0),  # large inputs: saturated actions, large Q errors
])
def test_compiled_update_gives_the_gradients_of_the_losses(monkeypatch, kernels, b, d, a, hidden,
                                                            layers, activation, scale):
    """One _C.sac_grads call (backend="cpu") writes every parameter the gradient that
    autograd through losses() on the torch path gives, and the same metrics, on each
    kernel path."""
    monkeypatch.setenv(_cpu_imagine.KERNELS_ENV_VAR, kernels)
    cfg = dict(hidden=hidden, layers=layers, activation=activation)
    sac = SAC(d, a, SACConfig(backend="cpu", **cfg), seed=5)
    ref = SAC(d, a, SACConfig(backend="torch", **cfg), seed=5)
    assert sac.compiled_update and not ref.compiled_update
    with torch.no_grad():
        sac.log_alpha.fill_(-0.7), ref.log_alpha.fill_(-0.7)
    batch = _batch(d, a, b, seed=11)
    batch = batch._replace(obs=batch.obs * scale, next_obs=batch.next_obs * scale)
    eps = torch.randn(2, b, a, generator=torch.Generator().manual_seed(3))
    metrics = sac.compiled_grads(batch, eps)
    want, out = _grads_of_losses(ref, batch, eps)
    got = [p.grad for p in (*sac.policy.parameters(), *sac.critic.parameters(), sac.log_alpha)]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert torch.isfinite(g).all(), i
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * max(1.0, w.abs().max().item()))
    for i, k in enumerate(("critic_loss", "actor_loss", "alpha_loss", "alpha", "q_mean",
                           "entropy")):
        torch.testing.assert_close(metrics[i], out[k].detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_bf16_update_matches_the_autograd_path_on_the_same_kernels(seed):
    """In bf16 the compiled update rounds what the compiled MLP path rounds: the gradients of
    autograd through losses() on backend="cpu" (its products are those kernels too), to
    bf16 tolerance -- its head computes a~ with the kernels' exp / tanh polynomials (~1e-6
    relative), which can move a critic input across a bf16 rounding boundary."""
    if not bf16_supported():
        pytest.skip("bf16 needs a CPU with native bf16 GEMMs")
    sac = SAC(11, 3, SACConfig(backend="cpu", precision="bf16", hidden=64), seed=2)
    ref = SAC(11, 3, SACConfig(backend="cpu", precision="bf16", hidden=64), seed=2)
    batch = _batch(11, 3, 70, seed=4 + seed)
    eps = torch.randn(2, 70, 3, generator=torch.Generator().manual_seed(seed))
    sac.compiled_grads(batch, eps)
    want, _ = _grads_of_losses(ref, batch, eps)
    got = [p.grad for p in (*sac.policy.parameters(), *sac.critic.parameters(), sac.log_alpha)]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        err = (g - w).abs().max().item()
        assert err <= 1e-2 * max(w.abs().max().item(), 1e-3), (i, err)


def test_compiled_updates_follow_the_autograd_updates():
    """update() on backend="cpu" (compiled gradients, the direct fused Adam) against the torch
    path's update() (autograd, optimizer.step()): the same parameters after several steps,
    to float rounding; without auto_alpha log_alpha stays put."""
    for auto_alpha in (True, False):
        sac = SAC(5, 2, _small(backend="cpu", auto_alpha=auto_alpha), seed=1)
        ref = SAC(5, 2, _small(backend="torch", auto_alpha=auto_alpha), seed=1)
        for i in range(6):
            m, r = sac.update(_batch(seed=i)), ref.update(_batch(seed=i))
            assert set(m) == set(r)
        for p, q in zip([*sac.policy.parameters(), *sac.critic.parameters(), sac.log_alpha],
                        [*ref.policy.parameters(), *ref.critic.parameters(), ref.log_alpha],
                        strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
        assert (float(sac.log_alpha.detach()) == 0.0) == (not auto_alpha)
        torch.testing.assert_close(sac.critic_target.layers[0].weight,
                                   ref.critic_target.layers[0].weight)


def test_bad_input_is_named():
    compiled = SAC(5, 2, _small(backend="cpu"))  # its kernel reads CPU memory only
    with pytest.raises(ValueError, match="batch.reward must be on the learner's device cpu"):
        compiled.update(_batch()._replace(reward=torch.zeros(32, device="meta")))
    with pytest.raises(ValueError, match=r"eps must be a float32 CPU tensor \[2, 32, 2\]"):
        compiled.compiled_grads(_batch(), torch.zeros(2, 31, 2))
    with pytest.raises(ValueError, match="batch.obs"):
        compiled.compiled_grads(_batch(d=4), torch.zeros(2, 32, 2))
    with pytest.raises(RuntimeError, match="compiled_grads needs the compiled kernels"):
        SAC(5, 2, _small(backend="torch")).compiled_grads(_batch(), torch.zeros(2, 32, 2))


def test_compiled_update_follows_a_parameter_moved_to_new_storage():
    """The one call's addresses are cached between updates (SAC._static_kernel_args) and
    rebuilt when one changes: a weight given new storage (``.data = ...``, scaled) is the
    weight the next call reads, as autograd through losses() reads it."""
    sac = SAC(5, 2, SACConfig(backend="cpu", hidden=16), seed=1)
    ref = SAC(5, 2, SACConfig(backend="torch", hidden=16), seed=1)
    batch, eps = _batch(5, 2, 24, seed=4), torch.randn(2, 24, 2)
    sac.compiled_grads(batch, eps)  # fills the cache
    for net in (sac, ref):
        for layer in (net.critic.layers[0], net.policy.mlp.layers[1]):
            layer.weight.data = layer.weight.data * 1.5
    sac.compiled_grads(batch, eps)
    want, _ = _grads_of_losses(ref, batch, eps)
    got = [p.grad for p in (*sac.policy.parameters(), *sac.critic.parameters(), sac.log_alpha)]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * max(1.0, w.abs().max().item()))
