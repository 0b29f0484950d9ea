"""RSSM world model (shapes, loss terms, KL) and the episode replay it trains from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mbrl_fast.models.episode_replay import EpisodeReplay
from mbrl_fast.models.rssm import MLP, RSSM, WorldModelConfig, symexp, symlog
from mbrl_fast.ops.imagine import imagine

SMALL = dict(deter=12, stoch=8, hidden=10, units=16, layers=2, embed=9)


def _batch(T=6, B=3, obs_dim=5, A=2, pixels=False, g=None):
    g = g or torch.Generator().manual_seed(0)
    obs = (torch.randint(0, 256, (T, B, 64, 64, 3), generator=g, dtype=torch.uint8) if pixels
           else torch.randn(T, B, obs_dim, generator=g))
    is_first = torch.zeros(T, B, dtype=torch.bool)
    is_first[0] = True
    is_first[min(3, T - 1), B - 1] = True  # an episode boundary inside a sequence
    return dict(obs=obs, act=torch.rand(T, B, A, generator=g) * 2 - 1,
                reward=torch.randn(T, B, generator=g), is_first=is_first,
                is_terminal=torch.zeros(T, B, dtype=torch.bool))


@pytest.mark.parametrize("classes", [0, 4])
@pytest.mark.parametrize("cont", [False, True])
def test_loss_terms_shapes_and_gradients(classes, cont):
    torch.manual_seed(0)
    wm = RSSM((5,), 2, WorldModelConfig(**SMALL, classes=classes), continue_head=cont)
    total, terms, post = wm.loss(**_batch())
    expected = {"decoder", "reward", "kl_dyn", "kl_rep"} | ({"continue"} if cont else set())
    assert set(terms) == expected
    assert all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())
    assert post.h.shape == (6, 3, 12) and post.z.shape == (6, 3, 8)
    assert post.feat.shape == (6, 3, 20)
    stats = 8 if classes else 16
    assert post.prior.shape == post.post.shape == (6, 3, stats)
    total.backward()
    assert all(p.grad is not None for n, p in wm.named_parameters() if not n.startswith("cont")
               or cont)
    if classes:  # straight-through one-hot samples: each group of 4 sums to one
        groups = post.z.detach().reshape(6, 3, 2, 4)
        assert torch.allclose(groups.sum(-1), torch.ones(6, 3, 2))


def test_free_nats_and_kl_of_identical_stats():
    wm = RSSM((5,), 2, WorldModelConfig(**SMALL))
    stats = torch.randn(4, 16)
    assert torch.allclose(wm.kl(stats, stats), torch.zeros(4), atol=1e-6)
    assert (wm.kl(stats, stats + 1.0) > 0).all()
    _, terms, _ = wm.loss(**_batch())
    c = wm.config
    assert terms["kl_dyn"] >= c.kl_dyn_scale * c.free_nats - 1e-6
    assert terms["kl_rep"] >= c.kl_rep_scale * c.free_nats - 1e-6


def test_is_first_resets_the_state():
    """A sequence that starts an episode at step 3 gives the same posterior from there as a
    sequence that starts at step 3 (same noise)."""
    wm = RSSM((5,), 2, WorldModelConfig(**SMALL))
    b = _batch(B=1)
    b["is_first"][:] = False
    b["is_first"][0] = b["is_first"][3] = True
    embed = wm.encoder(b["obs"])
    torch.manual_seed(1)
    full = wm.observe(embed, b["act"], b["is_first"])
    torch.manual_seed(1)
    wm.observe(embed[:3], b["act"][:3], b["is_first"][:3])  # consume the same noise
    tail = wm.observe(embed[3:], b["act"][3:], b["is_first"][3:])
    torch.testing.assert_close(full.h[3:], tail.h)


def test_obs_features_feed_the_encoder_and_are_the_decoder_target():
    from mbrl_fast.ops.features import ObsFeatures

    feats = ObsFeatures(5, drop=(0,), angles=(2,))  # x dropped, 2 kept, the angle as sin, cos
    wm = RSSM((5,), 2, WorldModelConfig(**SMALL), obs_features=feats)
    assert wm.encoder.layers[0].weight.shape[0] == feats.width == 5
    b = _batch()
    x = wm.features(b["obs"])
    torch.testing.assert_close(x[..., -1], torch.cos(b["obs"][..., 2]))
    shifted = dict(b, obs=b["obs"] + torch.tensor([7.0, 0, 2 * torch.pi, 0, 0]))
    torch.testing.assert_close(wm.features(shifted["obs"]), x, atol=1e-5, rtol=0)  # x, 2 pi
    assert torch.isfinite(wm.loss(**b)[0])
    with pytest.raises(ValueError, match="do not fit"):
        RSSM((4,), 2, WorldModelConfig(**SMALL), obs_features=feats)


def test_pixel_encoder_decoder_shapes():
    wm = RSSM((64, 64, 3), 2, WorldModelConfig(**{**SMALL, "cnn_depth": 4}))
    total, terms, post = wm.loss(**_batch(T=2, B=2, pixels=True))
    assert torch.isfinite(total) and wm.decoder(post.feat).shape == (2, 2, 64, 64, 3)
    with pytest.raises(ValueError, match="64 x 64 x 3"):
        RSSM((32, 32, 3), 2, WorldModelConfig(**SMALL))


def test_imagine_params_drive_the_op():
    wm = RSSM((5,), 2, WorldModelConfig(**SMALL, classes=4))
    actor = MLP([20, 16, 4])
    critic = MLP([20, 16, 1])
    p = wm.imagine_params(actor, [wm.reward], critic, act_min_std=0.1, act_max_std=1.0,
                          act_mean_scale=5.0)
    assert p.detached_heads == 1 and p.stoch == "categorical" and p.classes == 4
    assert not any(t.requires_grad for t in (*p.gru, *p.img_in, *p.heads[0][0]))
    r = imagine(torch.zeros(3, 12), torch.zeros(3, 8), p, 4, seed=0, backend="reference")
    assert r.feat.shape == (5, 3, 20) and [x.shape for x in r.heads] == [(5, 3, 1)] * 2


def test_symlog_round_trip():
    x = torch.tensor([-1e3, -1.0, 0.0, 0.5, 1e4])
    torch.testing.assert_close(symexp(symlog(x)), x)


# ---- episode replay ---------------------------------------------------------------------

DTYPE = np.dtype([("x", np.float32), ("is_first", bool)])


def _episode(start, n):
    rec = np.zeros(n, DTYPE)
    rec["x"] = np.arange(start, start + n)
    rec["is_first"][0] = True
    return rec


def test_windows_lie_inside_one_episode():
    replay = EpisodeReplay(DTYPE)
    for start, n in ((0, 5), (100, 12), (200, 3), (300, 8)):
        replay.add_records(_episode(start, n))
    assert list(replay.episode_lengths()) == [5, 12, 3, 8] and replay.steps == 28 - 4
    out = replay.sample(500, 6, np.random.default_rng(0))
    assert out.shape == (500, 6)
    diffs = np.diff(out["x"], axis=1)
    assert (diffs == 1).all()  # contiguous, never across a boundary
    assert not out["is_first"][:, 1:].any()
    starts = set((out["x"][:, 0] // 100).astype(int))
    assert starts == {1, 3}  # only the episodes of >= 6 steps


def test_sequence_longer_than_every_episode_names_the_longest():
    replay = EpisodeReplay(DTYPE)
    replay.add_records(_episode(0, 7))
    replay.add_records(_episode(10, 30))
    with pytest.raises(ValueError, match="longer than every stored episode.*30 steps"):
        replay.sample(4, 50, np.random.default_rng(0))


def test_records_round_trip_and_restored_partial_episodes():
    replay = EpisodeReplay(DTYPE)
    replay.add_records(_episode(0, 4))
    partial = _episode(10, 6)
    replay.add_records(partial[:3])  # an interrupted episode, restored from a journal
    replay.add_records(_episode(20, 5))  # the re-run starts a new one
    assert list(replay.episode_lengths()) == [4, 3, 5]
    again = EpisodeReplay(DTYPE)
    again.load_state_dict(replay.state_dict())
    np.testing.assert_array_equal(again.records(), replay.records())
    assert list(again.episode_lengths()) == [4, 3, 5] and again.steps == replay.steps
    with pytest.raises(ValueError, match="dtype"):
        replay.add_records(np.zeros(2, np.dtype([("y", np.float32), ("is_first", bool)])))
