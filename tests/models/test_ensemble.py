"""Ensembles: forward == op reference, kernel views share storage, NLL training, elites."""

import numpy as np
import pytest
import torch

from mbrl_fast.models import (
    DeterministicEnsemble,
    EnsembleTrainer,
    ProbabilisticEnsemble,
    ReplayBuffer,
    default_weight_decay,
)
from mbrl_fast.nn.dense import bf16_supported
from mbrl_fast.ops.ensemble_mlp import check_params, ensemble_mlp, unpack_bf16


def _fill_normalizer(model, seed=0, n=64):
    g = np.random.default_rng(seed)
    obs = g.normal(3.0, 2.0, size=(n, model.obs_dim))
    act = g.uniform(-1, 1, size=(n, model.act_dim))
    model.normalizer.update(model.make_inputs(obs, act))
    return obs, act


@pytest.mark.parametrize("E,D,A,hidden,layers,reward_head",
                         [(1, 3, 1, 8, 1, False), (7, 5, 2, 16, 4, True), (3, 7, 3, 123, 2, False)])
@pytest.mark.parametrize("activation", ["silu", "relu", "tanh"])
def test_forward_matches_op_reference(E, D, A, hidden, layers, reward_head, activation):
    model = ProbabilisticEnsemble(D, A, ensemble_size=E, num_elites=1, hidden=hidden,
                                  layers=layers, activation=activation,
                                  reward_head=reward_head, seed=1)
    obs, act = _fill_normalizer(model)
    with torch.no_grad():  # move the logvar bounds off their init so the head is exercised
        model.max_logvar.add_(0.3)
    params = model.mlp_params()
    assert check_params(params) == (D + A,) + (hidden,) * layers + (2 * model.out_dim,)
    x = model.make_inputs(obs, act)
    ref_mean, ref_lv = ensemble_mlp(x, params, backend="reference")
    mean, lv = model(x.unsqueeze(0).expand(E, -1, -1))
    torch.testing.assert_close(mean, ref_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lv, ref_lv, rtol=1e-5, atol=1e-6)
    p_mean, p_lv = model.predict(obs, act, backend="reference")
    torch.testing.assert_close(p_mean, ref_mean)


def test_deterministic_forward_matches_op_reference():
    model = DeterministicEnsemble(4, 2, ensemble_size=3, num_elites=2, hidden=16, layers=2, seed=0)
    obs, act = _fill_normalizer(model)
    x = model.make_inputs(obs, act)
    ref = ensemble_mlp(x, model.mlp_params(), backend="reference")
    torch.testing.assert_close(model(x.unsqueeze(0).expand(3, -1, -1)), ref)
    assert not model.mlp_params().gaussian


def test_mlp_params_are_views_not_copies():
    model = ProbabilisticEnsemble(3, 1, ensemble_size=2, num_elites=1, hidden=8, layers=2)
    params = model.mlp_params()
    for w, layer in zip(params.weights, model.mlp.layers, strict=True):
        assert w.data_ptr() == layer.weight.data_ptr() and not w.requires_grad
    assert params.in_mean.data_ptr() == model.normalizer.mean32.data_ptr()
    with torch.no_grad():
        model.mlp.layers[0].weight.add_(1.0)
    assert torch.equal(params.weights[0], model.mlp.layers[0].weight.detach())


def test_bf16_params_cached_until_weights_change():
    model = ProbabilisticEnsemble(3, 2, ensemble_size=2, num_elites=1, hidden=8, layers=1)
    first = model.mlp_params_bf16()
    assert model.mlp_params_bf16() is first
    torch.testing.assert_close(unpack_bf16(first.weights[0], 5),
                               model.mlp.layers[0].weight.detach(), rtol=1e-2, atol=1e-2)
    with torch.no_grad():
        model.mlp.layers[1].bias.add_(1.0)
    second = model.mlp_params_bf16()
    assert second is not first
    torch.testing.assert_close(second.biases[1], model.mlp.layers[1].bias.detach())
    _fill_normalizer(model)
    assert model.mlp_params_bf16() is not second


def test_default_weight_decay_is_pets_for_four_hidden_layers():
    assert default_weight_decay(4) == (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
    assert len(default_weight_decay(2)) == 3
    with pytest.raises(ValueError, match="weight_decay"):
        ProbabilisticEnsemble(3, 1, layers=2, weight_decay=(1e-4,))


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="num_elites"):
        ProbabilisticEnsemble(3, 1, ensemble_size=3, num_elites=4)
    with pytest.raises(ValueError, match="obs_dim"):
        ProbabilisticEnsemble(0, 1)
    model = ProbabilisticEnsemble(3, 1, ensemble_size=2, num_elites=1, hidden=8, layers=1)
    with pytest.raises(ValueError, match="act must be"):
        model.make_inputs(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="elites"):
        model.set_elites([5])


def _synthetic_buffer(n=1500, seed=0):
    """s' = s + 0.1 sin(s) + 0.05 a + small noise: an easy smooth dynamics."""
    g = np.random.default_rng(seed)
    obs = g.normal(size=(n, 3))
    act = g.uniform(-1, 1, size=(n, 1))
    nxt = obs + 0.1 * np.sin(obs) + 0.05 * act + 0.01 * g.normal(size=obs.shape)
    buf = ReplayBuffer(3, 1, capacity=4 * n)
    buf.add_batch(obs, act, nxt, -np.abs(obs).sum(1), np.zeros(n, bool))
    return buf


@pytest.mark.parametrize("cls", [ProbabilisticEnsemble, DeterministicEnsemble])
def test_training_decreases_loss(cls):
    torch.manual_seed(0)
    buf = _synthetic_buffer()
    model = cls(3, 1, ensemble_size=3, num_elites=2, hidden=32, layers=2, seed=0)
    trainer = EnsembleTrainer(model, batch_size=64, epochs=8, patience=0, holdout_ratio=0.0)
    data = buf.all()
    x = model.make_inputs(data.obs, data.act).unsqueeze(0).expand(3, -1, -1)
    model.normalizer.update(x[0])
    y = model.make_targets(data.obs, data.next_obs).unsqueeze(0).expand(3, -1, -1)
    with torch.no_grad():
        before = model.loss(x, y).item()
    result = trainer.train(buf)
    with torch.no_grad():
        after = model.loss(x, y).item()
    assert result.epochs == 8 and result.num_holdout == 0
    assert after < before - 1.0 if cls is ProbabilisticEnsemble else after < 0.3 * before
    assert max(result.holdout_mse) < 0.01  # targets have variance ~5e-3 + 1e-4 noise


def test_normalizer_counts_each_transition_once():
    buf = _synthetic_buffer(200)
    model = ProbabilisticEnsemble(3, 1, ensemble_size=2, num_elites=1, hidden=8, layers=1)
    trainer = EnsembleTrainer(model, epochs=1, batch_size=64)
    trainer.train(buf)
    assert model.normalizer.count.item() == 200
    g = np.random.default_rng(1)
    buf.add_batch(g.normal(size=(50, 3)), g.uniform(-1, 1, (50, 1)), g.normal(size=(50, 3)),
                  np.zeros(50), np.zeros(50, bool))
    trainer.train(buf)
    assert model.normalizer.count.item() == 250
    data = buf.all()
    x = np.concatenate([data.obs, data.act], 1)
    np.testing.assert_allclose(model.normalizer.mean.numpy(), x.mean(0), rtol=1e-12, atol=1e-12)


def test_elites_are_members_with_lowest_holdout_mse():
    buf = _synthetic_buffer(600)
    model = ProbabilisticEnsemble(3, 1, ensemble_size=5, num_elites=2, hidden=16, layers=1, seed=3)
    trainer = EnsembleTrainer(model, epochs=3, batch_size=64, holdout_ratio=0.2, seed=0)
    with torch.no_grad():  # ruin members 0 and 1: they must not be elites
        for layer in model.mlp.layers:
            layer.weight[:2].mul_(50.0)
    trainer.epochs = 1
    trainer.patience = 0
    trainer.optimizer.param_groups[0]["lr"] = 0.0  # rank the members as they are
    result = trainer.train(buf)
    order = np.argsort(result.holdout_mse)
    assert model.elite_members == result.elites == [int(i) for i in order[:2]]
    assert not {0, 1} & set(model.elite_members)
    assert result.num_holdout == 120


def test_early_stopping_restores_best_weights_when_training_diverges():
    buf = _synthetic_buffer(400)
    model = ProbabilisticEnsemble(3, 1, ensemble_size=2, num_elites=1, hidden=16, layers=1, seed=0)
    trainer = EnsembleTrainer(model, epochs=40, batch_size=32, holdout_ratio=0.25, patience=3,
                              seed=0)
    trainer.optimizer.param_groups[0]["lr"] = 10.0  # every step makes the fit worse
    model.normalizer.update(model.make_inputs(buf.all().obs, buf.all().act))
    initial = [p.detach().clone() for p in model.mlp.parameters()]
    result = trainer.train(buf)
    assert result.epochs == 3  # patience epochs without improvement, then stop
    for before, after in zip(initial, model.mlp.parameters(), strict=True):
        assert torch.equal(before, after.detach())  # the untrained weights were the best


def test_min_steps_delays_early_stopping_and_the_epoch_cap():
    buf = _synthetic_buffer(400)  # 300 training rows at batch 32: 10 steps per epoch
    model = ProbabilisticEnsemble(3, 1, ensemble_size=2, num_elites=1, hidden=16, layers=1, seed=0)
    model.normalizer.update(model.make_inputs(buf.all().obs, buf.all().act))
    trainer = EnsembleTrainer(model, epochs=2, batch_size=32, holdout_ratio=0.25, patience=3,
                              min_steps=55, seed=0)
    trainer.optimizer.param_groups[0]["lr"] = 10.0  # no epoch improves: patience is spent at 3
    assert trainer.train(buf).epochs == 6  # ceil(55 / 10), past both the cap and the patience
    trainer.min_steps = 0
    assert trainer.train(buf).epochs == 2
    with pytest.raises(ValueError, match="min_steps"):
        EnsembleTrainer(model, min_steps=-1)


# ---- bf16 training ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [ProbabilisticEnsemble, DeterministicEnsemble])
def test_bf16_loss_rounds_the_products_and_keeps_fp32_gradients(cls):
    """loss(..., 'bf16') is the fp32 loss to bf16 rounding of the MLP's products: close in
    value and gradient direction, not equal, and every gradient float32 (the weights and
    the optimizer stay fp32)."""
    model = cls(5, 2, ensemble_size=3, num_elites=1, hidden=37, layers=3, reward_head=True,
                seed=0)
    obs, act = _fill_normalizer(model)
    x = model.make_inputs(obs, act).unsqueeze(0).expand(3, -1, -1)
    target = torch.randn(3, x.shape[1], model.out_dim, generator=torch.Generator().manual_seed(1))
    losses, grads = [], []
    for precision in ("fp32", "bf16"):
        model.zero_grad(set_to_none=True)
        loss = model.loss(x, target, precision)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.mlp.parameters()]))
        assert all(p.grad.dtype == torch.float32 for p in model.mlp.parameters())
    assert losses[0] != losses[1] and abs(losses[1] - losses[0]) <= 0.02 * abs(losses[0])
    cosine = float(torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0))
    assert 0.99 < cosine < 1.0, cosine
    with pytest.raises(ValueError, match="precision must be one of"):
        model.loss(x, target, "fp16")


@pytest.mark.skipif(not bf16_supported(), reason="no native bf16 GEMMs on this CPU")
def test_bf16_training_fits_as_well_as_fp32():
    """A round in each precision from the same weights and data: the bf16 round's mean
    holdout MSE (scored in fp32) within 10% of the fp32 round's, both below half the
    targets' variance."""
    mse = {}
    for precision in ("fp32", "bf16"):
        buf = _synthetic_buffer(600)
        model = ProbabilisticEnsemble(3, 1, ensemble_size=3, num_elites=2, hidden=32, layers=2,
                                      seed=0)
        trainer = EnsembleTrainer(model, epochs=20, batch_size=32, holdout_ratio=0.2, seed=0,
                                  precision=precision)
        mse[precision] = float(np.mean(trainer.train(buf).holdout_mse))
        data = buf.all()
        variance = float(model.make_targets(data.obs, data.next_obs, data.reward).var(0).mean())
        assert mse[precision] < 0.5 * variance, (precision, mse[precision], variance)
    assert abs(mse["bf16"] - mse["fp32"]) <= 0.1 * mse["fp32"], mse


def test_train_precision_is_checked_and_named(monkeypatch):
    from mbrl_fast.models.config import ModelConfig, TrainConfig, make_ensemble, make_trainer
    from mbrl_fast.nn import dense

    class Task:
        obs_dim, act_dim, obs_features = 3, 1, None

    model = make_ensemble(ModelConfig(ensemble_size=2, num_elites=1, hidden=8, layers=1),
                          Task, 0)
    with pytest.raises(ValueError, match="train.precision must be one of"):
        make_trainer(TrainConfig(precision="half"), model, 0)
    monkeypatch.setattr(dense, "bf16_supported", lambda: False)
    with pytest.raises(ValueError, match="train.precision='bf16' needs a CPU with native bf16"):
        make_trainer(TrainConfig(precision="bf16"), model, 0)


@pytest.mark.parametrize("cls,precision", [
    (ProbabilisticEnsemble, "fp32"), (DeterministicEnsemble, "fp32"),
    pytest.param(ProbabilisticEnsemble, "bf16", marks=pytest.mark.skipif(
        not bf16_supported(), reason="no native bf16 GEMMs on this CPU"))])
def test_compiled_training_step_matches_eager(cls, precision):
    """EnsembleTrainer(compile=True): the same round as eager (same shuffles, a shorter
    last minibatch each epoch) to float rounding, with the step run by torch.compile."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    runs = {}
    for compile_ in (False, True):
        buf = _synthetic_buffer(300)  # 240 training rows: 3 minibatches of 64 and one of 48
        model = cls(3, 1, ensemble_size=3, num_elites=2, hidden=16, layers=2, seed=0)
        trainer = EnsembleTrainer(model, epochs=3, batch_size=64, patience=0,
                                  holdout_ratio=0.2, seed=0, precision=precision,
                                  compile=compile_)
        result = trainer.train(buf)
        runs[compile_] = result, torch.cat([p.detach().flatten() for p in model.parameters()])
    (eager, w_eager), (compiled, w_compiled) = runs[False], runs[True]
    assert counters["stats"]["unique_graphs"] >= 1  # the step went through Dynamo
    assert compiled.epochs == eager.epochs == 3 and compiled.elites == eager.elites
    assert compiled.train_loss == pytest.approx(eager.train_loss, rel=1e-4, abs=1e-4)
    torch.testing.assert_close(w_compiled, w_eager, rtol=1e-4, atol=1e-5)
    initial = cls(3, 1, ensemble_size=3, num_elites=2, hidden=16, layers=2, seed=0)
    w_initial = torch.cat([p.detach().flatten() for p in initial.parameters()])
    assert (w_compiled - w_initial).abs().max() > 1e-2  # it trained
    with pytest.raises(ValueError, match="compile must be a bool"):
        EnsembleTrainer(model, compile="yes")
