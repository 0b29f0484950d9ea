"""Any model: a plain torch callable as the planners' model, rolled out by a reference loop.

For models that are not MLPs in the stacked layout (an RNN, a physics prior, a model of
your own), a planner accepts ``step(state [R, D], action [R, A])`` returning either

    next_state [R, D]                      (deterministic), or
    (mean, logvar) [R, D] each             a Gaussian over the next state:
                                           next = mean + exp(logvar / 2) * eps

and rolls it out with the same planners, seeds and batching as the compiled path: one
``step`` call per horizon step for all R = N x P x K rows (N start states, P sequences,
K particles), eps from the planner's Philox key (``ops.noise.normal(seed, offset)``, shape
[N, P, K, H, D], the stream ``ops.propagate`` draws its eps from), so a one-member
Gaussian MLP given as a callable plans exactly what the compiled path plans with it.
``propagation="expectation"`` uses the mean (no sampling); "ts1" and "tsinf" sample
(there is no ensemble to draw members from). A deterministic step gives K identical
particles: use ``particles=1``.

The loop runs in eager torch, one call per step: slower than the fused kernels (ratio
measured in bench/results/dropin_step_model.json, see docs/integrations.md). Rewards are
batched torch functions (a built-in name or a ``Reward`` uses its ``torch_fn``);
``reward="model"`` needs an MLP with a reward head.
"""

from __future__ import annotations

import torch

from mbrl_fast.ops import noise, rewards
from mbrl_fast.ops.ensemble_mlp import MLPParams
from mbrl_fast.ops.propagate import PropagateResult


def is_step_model(model) -> bool:
    """True for a callable that is neither MLPParams nor has ``mlp_params()``."""
    if isinstance(model, StepModel):
        return True
    return (callable(model) and not isinstance(model, MLPParams)
            and not callable(getattr(model, "mlp_params", None)))


class StepModel:
    """``step(state [R, D], action [R, A]) -> next_state | (mean, logvar)`` as a planner model.

    device: where states live (default: the device of the callable's first parameter when
    it is an ``nn.Module``, else CPU).
    """

    def __init__(self, step, device=None):
        if isinstance(step, StepModel):
            step, device = step.step, step.device if device is None else device
        if not callable(step):
            raise TypeError(f"step must be callable, got {type(step).__name__}")
        self.step = step
        if device is None:
            first = next(iter(getattr(step, "parameters", lambda: iter(()))()), None)
            device = first.device if first is not None else "cpu"
        self.device = torch.device(device)

    @torch.no_grad()
    def rollout(self, obs: torch.Tensor, actions: torch.Tensor, *, particles: int, mode: str,
                seed: int, offset: int, reward, return_states: bool) -> PropagateResult:
        """obs [N, D], actions [N, P, H, A] -> PropagateResult like ``ops.propagate``'s."""
        if reward == "model":
            raise ValueError("reward='model' needs an MLP with a reward head; a step model "
                             "takes a batched torch reward fn(obs, act, next_obs) or a name")
        reward_fn = rewards.resolve(reward).torch_fn
        n, d = obs.shape
        _, p, h, a = actions.shape
        k = particles
        rows = n * p * k
        act = actions.unsqueeze(2).expand(-1, -1, k, -1, -1).reshape(rows, h, a)
        state = obs.unsqueeze(1).unsqueeze(1).expand(-1, p, k, -1).reshape(rows, d)
        eps = None  # [rows, H, D], drawn on the first Gaussian step
        states, step_rewards = [state], []
        for t in range(h):
            a_t = act[:, t]
            out = self.step(state, a_t)
            if isinstance(out, (tuple, list)):
                mean, logvar = (self._check(x, rows, d, name, t)
                                for x, name in zip(out, ("mean", "logvar"), strict=True))
                if mode == "expectation":
                    nxt = mean
                else:
                    if eps is None:
                        eps = noise.normal((n, p, k, h, d), seed, offset,
                                           device=obs.device).reshape(rows, h, d)
                    nxt = mean + torch.exp(0.5 * logvar) * eps[:, t]
            else:
                nxt = self._check(out, rows, d, "next_state", t)
            bad = ~torch.isfinite(nxt).all(dim=-1)
            if bad.any():
                r = int(bad.nonzero()[0, 0])
                raise FloatingPointError(
                    f"step model: non-finite next state at step {t} (start state {r // (p * k)}, "
                    f"sequence {(r // k) % p}, particle {r % k})")
            step_rewards.append(reward_fn(state, a_t, nxt))
            state = nxt
            states.append(state)
        out_rewards = torch.stack(step_rewards, dim=1).reshape(n, p, k, h)
        return PropagateResult(
            states=torch.stack(states, dim=1).reshape(n, p, k, h + 1, d) if return_states
            else None,
            rewards=out_rewards if return_states else None,
            returns=out_rewards.sum(dim=-1).mean(dim=-1))

    @staticmethod
    def _check(x, rows: int, d: int, name: str, t: int) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != (rows, d):
            raise ValueError(f"step model: {name} must be a tensor [R={rows}, D={d}] (one row per "
                             f"state and action), got {tuple(getattr(x, 'shape', ()))} at step {t}")
        return x.to(torch.float32)
