"""Training an ensemble on real transitions (PETS / mbrl-lib recipe).

One training round (:meth:`EnsembleTrainer.train`):

1. fold the transitions added since the last round into the input normalizer
   (float64 running statistics; the normalizer's count is how many rows it has seen);
2. split the data at random into a holdout set (``holdout_ratio``, at most
   ``max_holdout`` rows) and a training set;
3. draw one bootstrap sample of the training set per member (N rows with
   replacement, Chua et al. 2018);
4. per epoch, shuffle each member's sample and step Adam on minibatches
   x [E, batch, F + A] (each member sees its own rows) of
   ``model.loss + model.decay_loss`` (per-layer L2);
5. after each epoch, score every member by holdout MSE of its mean prediction;
   a member that improved by more than ``improvement_threshold`` (relative)
   snapshots its weights; stop after ``patience`` epochs with no member improving
   (mbrl-lib ModelTrainer's rule), or after ``epochs``; but not before ``min_steps``
   gradient steps (with little data an epoch is a handful of steps: 1000 rows at
   batch 256 are 4, and 5 epochs of patience would stop after 20 steps);
6. restore each member's best snapshot and make the ``num_elites`` members with
   the lowest holdout MSE the elites.

Without a holdout set (too little data, or ``holdout_ratio=0``), all epochs run
and members are ranked by their MSE on the training set.

``precision="bf16"`` runs the gradient steps' products (forward and backward of the
MLP) on bf16 operands with fp32 accumulation (nn/dense.py); weights, Adam, the loss and
the holdout scoring (so the snapshots and the elites) stay fp32.

``compile=True`` runs step 4's loss (the minibatch gather, the MLP, the loss and the
decay) and its backward as one ``torch.compile`` graph: Inductor fuses the elementwise
work around the products (SiLU and its derivative, the bias adds, the Gaussian NLL) into
a few loops. The same math to float rounding; the first step of a process pays the
compilation (seconds), and a round's last, shorter minibatch one recompilation with a
dynamic batch size. Opt-in: per step on a Zen 4, MBPO's Hopper ensemble, 1.1-1.2x at
batch 256 and 1.3-1.5x at PETS's batch 32 (bench/model_train_compile.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from mbrl_fast.models.io import rng_state_from_tensors, rng_state_to_tensors
from mbrl_fast.models.replay_buffer import ReplayBuffer, Transitions
from mbrl_fast.nn.dense import check_precision
from mbrl_fast.nn.optim import fused_adam_step


@dataclass
class TrainResult:
    """What one training round did."""

    epochs: int  # epochs run
    train_loss: float  # mean loss (incl. decay) over the last epoch's minibatches
    holdout_mse: list[float]  # per member, of the restored (best) weights
    elites: list[int]  # best first
    num_train: int
    num_holdout: int


class EnsembleTrainer:
    """Adam on an ensemble's loss, with bootstrapping, holdout early stopping and elites."""

    def __init__(self, model, lr: float = 1e-3, batch_size: int = 256, epochs: int = 50,
                 patience: int = 5, holdout_ratio: float = 0.1, max_holdout: int = 5000,
                 improvement_threshold: float = 0.01, min_steps: int = 0, seed: int = 0,
                 precision: str = "fp32", compile: bool = False):
        if not isinstance(compile, bool):
            raise ValueError(f"compile must be a bool, got {compile!r}")
        if not 0.0 <= holdout_ratio < 1.0:
            raise ValueError(f"holdout_ratio must be in [0, 1), got {holdout_ratio}")
        for name, v in (("batch_size", batch_size), ("epochs", epochs), ("min_steps", min_steps)):
            if not isinstance(v, int) or v < (0 if name == "min_steps" else 1):
                raise ValueError(f"{name} must be an int >= {0 if name == 'min_steps' else 1}, "
                                 f"got {v!r}")
        self.model = model
        self.batch_size, self.epochs, self.patience = batch_size, epochs, patience
        self.holdout_ratio, self.max_holdout = holdout_ratio, max_holdout
        self.improvement_threshold = improvement_threshold
        self.min_steps = min_steps
        self.precision = check_precision(precision)
        # fused: one kernel for all parameters (the for-loop Adam was ~10% of a Hopper-sized
        # training step on one Zen 3 thread, torch profiler; 2-7% faster steps fused)
        self.optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                          lr=lr, fused=True)
        self.rng = np.random.default_rng(seed)
        self.compile = compile
        self._loss = torch.compile(self._batch_loss) if compile else self._batch_loss

    # ---- state --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(),
                "rng": rng_state_to_tensors(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict) -> None:
        # Optimizer.load_state_dict keeps the given moment tensors (no copy): copy them, or a
        # state_dict taken from a live trainer would be updated in place by both trainers.
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.rng.bit_generator.state = rng_state_from_tensors(state["rng"])

    # ---- training -----------------------------------------------------------------------
    def train(self, buffer: ReplayBuffer) -> TrainResult:
        """One round on everything in ``buffer`` (see module docstring)."""
        new = buffer.total_added - int(self.model.normalizer.count.item())
        if new > 0:
            recent = buffer.latest(new)
            inputs = self.model.make_inputs(recent.obs, recent.act, dtype=torch.float64)
            self.model.normalizer.update(inputs)
        return self.fit(buffer.all())

    def fit(self, data: Transitions) -> TrainResult:
        """Steps 2-6 on ``data`` (the normalizer is left as it is)."""
        model = self.model
        x, y, hold, train, boot = self.split(data)
        n_hold = len(hold)
        x_hold, y_hold = (x[hold], y[hold]) if n_hold else (x[train], y[train])

        best_mse = self._member_mse(x_hold, y_hold)  # [E]
        best = self._snapshot()
        since_improved, epochs_run, last_loss = 0, 0, float("nan")
        steps_per_epoch = -(-boot.shape[1] // self.batch_size)
        while epochs_run < max(self.epochs, -(-self.min_steps // steps_per_epoch)):
            last_loss = self._epoch(x, y, boot)
            epochs_run += 1
            if not n_hold:
                continue
            mse = self._member_mse(x_hold, y_hold)
            gain = (best_mse - mse) / best_mse.abs().clamp_min(1e-12)  # relative, per member
            improved = gain > self.improvement_threshold
            if improved.any():
                self._snapshot_members(best, improved)
                best_mse = torch.where(improved, mse, best_mse)
                since_improved = 0
            else:
                since_improved += 1
                enough = epochs_run * steps_per_epoch >= self.min_steps
                if self.patience and since_improved >= self.patience and enough:
                    break
        if n_hold:
            self._restore(best)
        mse = self._member_mse(x_hold, y_hold)
        elites = [int(i) for i in torch.argsort(mse)]
        model.set_elites(elites)
        return TrainResult(epochs_run, last_loss, mse.tolist(), elites[: model.num_elites],
                           len(train), n_hold)

    def split(self, data: Transitions):
        """Step 2-3 on ``data``: (x [N, F + A], y [N, D_out], holdout rows, training rows,
        bootstrap rows [E, N_train]), drawn from this trainer's generator."""
        if len(data) == 0:
            raise ValueError("no transitions to train on")
        x = self.model.make_inputs(data.obs, data.act)
        y = self.model.make_targets(data.obs, data.next_obs, data.reward)
        n = x.shape[0]
        perm = self.rng.permutation(n)
        n_hold = min(int(n * self.holdout_ratio), self.max_holdout)
        hold, train = perm[:n_hold], perm[n_hold:]
        e = self.model.ensemble_size
        boot = train[self.rng.integers(0, len(train), size=(e, len(train)))]
        return x, y, hold, train, boot

    def _epoch(self, x: torch.Tensor, y: torch.Tensor, boot: np.ndarray) -> float:
        model = self.model
        model.train()
        e, n = boot.shape
        order = np.take_along_axis(boot, self.rng.random((e, n)).argsort(axis=1), axis=1)
        losses = []
        for start in range(0, n, self.batch_size):
            idx = torch.from_numpy(order[:, start:start + self.batch_size])  # [E, b]
            loss = self._loss(x, y, idx)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            fused_adam_step(self.optimizer)  # optimizer.step(), less its Python
            losses.append(loss.item())
        model.eval()
        return float(np.mean(losses))

    def _batch_loss(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Step 4's loss on the minibatch rows idx [E, b] of x, y (each member its own)."""
        return self.model.loss(x[idx], y[idx], self.precision) + self.model.decay_loss()

    @torch.no_grad()
    def _member_mse(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """[E] mean squared error of each member's mean prediction on (x, y)."""
        e = self.model.ensemble_size
        total = torch.zeros(e, dtype=torch.float64)
        for start in range(0, x.shape[0], chunk):
            xb = x[start:start + chunk].unsqueeze(0).expand(e, -1, -1)
            err = self.model.predict_mean(xb) - y[start:start + chunk]
            total += (err.double() ** 2).sum(dim=(1, 2))
        return (total / (x.shape[0] * y.shape[1])).to(torch.float32)

    def _member_params(self):
        """Parameters with a leading member dimension (the stacked MLP's)."""
        return list(self.model.mlp.parameters())

    def _snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self._member_params()]

    def _snapshot_members(self, best: list[torch.Tensor], members: torch.Tensor) -> None:
        for b, p in zip(best, self._member_params(), strict=True):
            b[members] = p.detach()[members]

    @torch.no_grad()
    def _restore(self, best: list[torch.Tensor]) -> None:
        for b, p in zip(best, self._member_params(), strict=True):
            p.copy_(b)
