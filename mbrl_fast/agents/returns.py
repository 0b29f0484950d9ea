"""Return estimates of actor-critic learning on imagined trajectories (Dreamer)."""

from __future__ import annotations

import torch


class ReturnScale:
    """max(1, EMA of P95 - P5 of the lambda-returns) (DreamerV3's return normalization)."""

    def __init__(self, decay: float):
        self.decay, self.range = decay, None

    def update(self, returns: torch.Tensor) -> float:
        flat = returns.detach().flatten()
        spread = float(torch.quantile(flat, 0.95) - torch.quantile(flat, 0.05))
        self.range = spread if self.range is None else \
            self.decay * self.range + (1 - self.decay) * spread
        return max(1.0, self.range)


def lambda_returns(reward, value, cont, lam: float) -> torch.Tensor:
    """R_t = r_{t+1} + c_{t+1} ((1 - lam) v_{t+1} + lam R_{t+1}), R_H = v_H.
    reward, cont [H, B] (of the step into s_{t+1}), value [H+1, B] -> [H, B]."""
    out, last = [], value[-1]
    for t in reversed(range(reward.shape[0])):
        last = reward[t] + cont[t] * ((1 - lam) * value[t + 1] + lam * last)
        out.append(last)
    return torch.stack(out[::-1])
