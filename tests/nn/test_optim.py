"""nn/optim.py: fused_adam_step against optimizer.step() (bit for bit), and the cases where
it hands over to optimizer.step()."""

from __future__ import annotations

import torch

from mbrl_fast.nn.optim import fused_adam_step


def _pair(**adam):
    """Two identical little models, each with its own Adam (two groups, lrs differing)."""
    out = []
    for _ in range(2):
        g = torch.Generator().manual_seed(0)
        w1, w2 = torch.randn(7, 5, generator=g), torch.randn(5, 3, generator=g)
        params = [torch.nn.Parameter(w) for w in (w1, w2, torch.zeros(3))]
        opt = torch.optim.Adam([dict(params=params[:2], lr=1e-2),
                                dict(params=params[2:], lr=3e-3)], **adam)
        out.append((params, opt))
    return out


def _loss(params, seed):
    x = torch.randn(11, 7, generator=torch.Generator().manual_seed(seed))
    return ((x @ params[0]).tanh() @ params[1] + params[2]).square().mean()


def _step(params, opt, seed, fn):
    opt.zero_grad(set_to_none=True)
    _loss(params, seed).backward()
    fn(opt)


def test_the_same_parameters_and_state_as_optimizer_step():
    (pa, a), (pb, b) = _pair(fused=True)
    for i in range(5):
        if i == 3:  # a changed learning rate is read from the group
            for opt in (a, b):
                opt.param_groups[0]["lr"] = 5e-3
        _step(pa, a, i, fused_adam_step)
        _step(pb, b, i, lambda opt: opt.step())
    for x, y in zip(pa, pb, strict=True):
        assert torch.equal(x, y)
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(a.state[x][k], b.state[y][k])
    assert float(a.state[pa[0]]["step"]) == 5


def test_hands_over_to_optimizer_step_where_it_does_not_apply(monkeypatch):
    calls = []
    for adam in (dict(fused=False), dict(fused=True, amsgrad=True)):
        (pa, a), (pb, b) = _pair(**adam)
        for i in range(3):
            _step(pa, a, i, fused_adam_step)
            _step(pb, b, i, lambda opt: opt.step())
        assert all(torch.equal(x, y) for x, y in zip(pa, pb, strict=True))
    (pa, a), _ = _pair(fused=True)
    monkeypatch.setattr(a, "step", lambda: calls.append("step"))
    fused_adam_step(a)  # no state yet: optimizer.step() creates it
    assert calls == ["step"]
    a.state.clear()
    _step(pa, a, 0, lambda opt: None)
    for p in pa:  # a parameter without a gradient: optimizer.step() skips it
        a.state[p] = dict(step=torch.tensor(1.0), exp_avg=torch.zeros_like(p),
                          exp_avg_sq=torch.zeros_like(p))
    pa[2].grad = None
    fused_adam_step(a)
    assert calls == ["step", "step"]
