"""Normalizer (float64, zero-std guard), replay buffer, checkpoint round trips."""

import io

import numpy as np
import pytest
import torch

from mbrl_fast.models import EnsembleTrainer, Normalizer, ProbabilisticEnsemble, ReplayBuffer
from mbrl_fast.models.io import atomic_torch_save, atomic_write_bytes


def test_normalizer_running_stats_match_numpy_in_float64():
    g = np.random.default_rng(0)
    # Large offset, small spread: float32 sums would lose these digits.
    x = 1e6 + g.normal(size=(1000, 3)) * np.array([1e-2, 1.0, 5.0])
    norm = Normalizer(3)
    for chunk in np.array_split(x, 7):
        norm.update(chunk)
    assert norm.mean.dtype == torch.float64 and norm.count.item() == 1000
    np.testing.assert_allclose(norm.mean.numpy(), x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(norm.std.numpy(), x.std(0), rtol=1e-8)
    assert norm.mean32.dtype == torch.float32
    np.testing.assert_allclose(norm.std32.numpy(), x.std(0).astype(np.float32), rtol=1e-6)


def test_normalizer_zero_std_guard():
    norm = Normalizer(2)
    assert torch.equal(norm.std32, torch.ones(2))  # nothing seen yet: identity
    norm.update(np.array([[1.0, 5.0]]))  # a single row: std 0 in both dims
    assert torch.equal(norm.std, torch.ones(2, dtype=torch.float64))
    norm.update(np.array([[3.0, 5.0]]))  # dim 1 still constant
    assert norm.std[0].item() == pytest.approx(1.0) and norm.std[1].item() == 1.0
    out = norm.normalize(torch.tensor([[2.0, 5.0]]))
    assert torch.isfinite(out).all() and out[0, 1].item() == 0.0


def test_normalizer_rejects_bad_input():
    norm = Normalizer(2)
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        norm.update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        norm.update(np.array([[np.nan, 1.0]]))


def test_normalizer_state_dict_round_trip():
    a, b = Normalizer(3), Normalizer(3)
    a.update(np.random.default_rng(0).normal(size=(10, 3)))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.std32, b.std32) and torch.equal(a.mean, b.mean)


def _add(buf, n, start=0):
    obs = np.arange(start, start + n, dtype=np.float64)[:, None].repeat(buf.obs_dim, 1)
    buf.add_batch(obs, np.zeros((n, buf.act_dim)), obs + 1, obs[:, 0], np.zeros(n, bool))


def test_replay_buffer_ring_order_and_latest():
    buf = ReplayBuffer(2, 1, capacity=5)
    _add(buf, 3)
    buf.add(np.full(2, 3.0), np.zeros(1), np.full(2, 4.0), 3.0, True)
    assert len(buf) == 4 and buf.all().terminated.tolist() == [False, False, False, True]
    _add(buf, 4, start=4)  # wraps: keeps 3..7
    assert len(buf) == 5 and buf.total_added == 8
    assert buf.all().reward.tolist() == [3, 4, 5, 6, 7]
    assert buf.latest(2).reward.tolist() == [6, 7]
    assert buf.latest(100).reward.tolist() == [3, 4, 5, 6, 7]
    _add(buf, 12, start=8)  # a batch larger than capacity
    assert buf.all().reward.tolist() == [15, 16, 17, 18, 19]
    with pytest.raises(ValueError, match="act must have shape"):
        buf.add_batch(np.zeros((2, 2)), np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(2),
                      np.zeros(2, bool))


@pytest.mark.parametrize("total", [3, 5, 13])
def test_replay_buffer_save_load_round_trip(tmp_path, total):
    buf = ReplayBuffer(2, 1, capacity=5)
    _add(buf, total)
    buf.save(tmp_path / "buf.npz")
    back = ReplayBuffer.load(tmp_path / "buf.npz")
    assert back.total_added == total and len(back) == len(buf)
    assert back.all().reward.tolist() == buf.all().reward.tolist()
    _add(buf, 2, start=100)
    _add(back, 2, start=100)  # the ring continues identically
    assert back.all().reward.tolist() == buf.all().reward.tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["buf.npz"]  # no temp files left


def test_replay_buffer_state_mismatch_raises_and_leaves_buffer():
    buf = ReplayBuffer(2, 1, capacity=5)
    _add(buf, 2)
    with pytest.raises(ValueError, match="obs_dim mismatch"):
        buf.load_state_dict(ReplayBuffer(3, 1, capacity=5).state_dict())
    assert buf.total_added == 2


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def boom(obj, f):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        from mbrl_fast.models import io as mio
        mio.atomic_write(path, lambda f: (f.write(b"partial"), boom(None, f)))
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_model_trainer_checkpoint_round_trip(tmp_path):
    g = np.random.default_rng(0)
    buf = ReplayBuffer(3, 1, capacity=1000)
    buf.add_batch(g.normal(size=(300, 3)), g.uniform(-1, 1, (300, 1)), g.normal(size=(300, 3)),
                  np.zeros(300), np.zeros(300, bool))

    def make():
        model = ProbabilisticEnsemble(3, 1, ensemble_size=3, num_elites=2, hidden=16, layers=2)
        return model, EnsembleTrainer(model, epochs=2, batch_size=64, seed=5)

    model, trainer = make()
    trainer.train(buf)
    atomic_torch_save({"model": model.state_dict(), "trainer": trainer.state_dict(),
                       "buffer": buf.state_dict()}, tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    model2, trainer2 = make()
    model2.load_state_dict(state["model"])
    trainer2.load_state_dict(state["trainer"])
    buf2 = ReplayBuffer(3, 1, capacity=1000)
    buf2.load_state_dict(state["buffer"])
    assert model2.elite_members == model.elite_members
    assert torch.equal(model2.normalizer.std32, model.normalizer.std32)
    x = model.make_inputs(buf.all().obs[:7], buf.all().act[:7]).unsqueeze(0).expand(3, -1, -1)
    torch.testing.assert_close(model2(x), model(x), rtol=0, atol=0)
    # Training continues identically: same optimizer moments, same RNG stream, same data.
    r1, r2 = trainer.train(buf), trainer2.train(buf2)
    assert r1.train_loss == r2.train_loss and r1.elites == r2.elites
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)
    buf_io = io.BytesIO()
    torch.save(state, buf_io)  # the checkpoint holds only weights_only-loadable types
