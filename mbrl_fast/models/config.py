"""Dynamics ensembles and their training as config data (shared by the model-based agents)."""

from __future__ import annotations

from dataclasses import dataclass

from mbrl_fast.models.ensemble import DeterministicEnsemble, ProbabilisticEnsemble
from mbrl_fast.models.trainer import EnsembleTrainer
from mbrl_fast.nn.dense import check_precision


@dataclass
class ModelConfig:
    """The dynamics ensemble (mbrl-lib ``gaussian_mlp_ensemble`` / PETS)."""

    ensemble_size: int = 7
    """Members E (PETS: 5; mbrl-lib and MBPO: 7)."""
    num_elites: int = 5
    """Members with the best holdout MSE that the planner or the rollouts sample from."""
    hidden: int = 200
    """Width of every hidden layer."""
    layers: int = 4
    """Hidden layers (mbrl-lib num_layers: 4 -> in-200-200-200-200-out)."""
    activation: str = "silu"
    """Hidden activation (PETS's swish = SiLU)."""
    probabilistic: bool = True
    """Gaussian head trained by NLL (PETS, MBPO); False: a deterministic MSE model (MB-MF)."""
    learn_logvar_bounds: bool = True
    """Train max/min logvar (init 0.5 / -10) as the original PETS code does."""
    reward_head: bool = False
    """Learn the reward as an extra output instead of using the task's reward function."""
    task_features: bool = True
    """Read the observation through the task's ``obs_features`` (angles as sin / cos, x
    positions dropped; PETS's obs_preproc); False: the raw observation."""


@dataclass
class TrainConfig:
    """Model training rounds (PETS: Adam, lr 1e-3, batch 32, 5 epochs)."""

    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 32
    """Minibatch rows per member."""
    epochs: int = 5
    """Maximum epochs per round (PETS trains 5 epochs after each trial)."""
    patience: int = 5
    """Stop after this many epochs with no member improving its holdout MSE by > 1%."""
    holdout_ratio: float = 0.1
    """Fraction of the data held out to rank members (elites) and stop early."""
    max_holdout: int = 5000
    """Cap on holdout rows (PETS's max_logging)."""
    min_steps: int = 0
    """Gradient steps per round before early stopping or the epoch cap may end training
    (for large batches on little data, where an epoch is a few steps)."""
    precision: str = "fp32"
    """Products of the gradient steps: 'fp32', or 'bf16' (bf16 operands, fp32 accumulation,
    weights, Adam and holdout scoring; only on a CPU with AVX512-BF16 or AMX). Not the
    published numerics, so opt-in."""
    compile: bool = False
    """Run each gradient step's loss and backward as one ``torch.compile`` graph (the same
    math to float rounding; seconds of compilation per process; per step on a Zen 4,
    MBPO's Hopper ensemble: 1.1-1.2x at batch 256, 1.3-1.5x at PETS's batch 32,
    bench/model_train_compile.py). Needs a C++ compiler at run time (Inductor's CPU code).
    A resumed run may turn it on or off (``--resume DIR --set train.compile=true``)."""


def make_ensemble(m: ModelConfig, task, seed: int):
    """The configured ensemble for ``task`` (its obs / act sizes and, with
    ``task_features``, its observation feature map)."""
    common = dict(ensemble_size=m.ensemble_size, num_elites=m.num_elites, hidden=m.hidden,
                  layers=m.layers, activation=m.activation, reward_head=m.reward_head, seed=seed,
                  obs_features=task.obs_features if m.task_features else None)
    if not m.probabilistic:
        return DeterministicEnsemble(task.obs_dim, task.act_dim, **common)
    return ProbabilisticEnsemble(task.obs_dim, task.act_dim,
                                 learn_logvar_bounds=m.learn_logvar_bounds, **common)


def make_trainer(t: TrainConfig, model, seed: int) -> EnsembleTrainer:
    return EnsembleTrainer(model, lr=t.lr, batch_size=t.batch_size, epochs=t.epochs,
                           patience=t.patience, holdout_ratio=t.holdout_ratio,
                           max_holdout=t.max_holdout, min_steps=t.min_steps, seed=seed,
                           precision=check_precision(t.precision, "train.precision"),
                           compile=t.compile)
