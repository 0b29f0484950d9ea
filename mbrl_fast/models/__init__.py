"""Learned models: dynamics ensembles, their input normalizer and trainer, the replay buffer."""

from mbrl_fast.models.config import ModelConfig, TrainConfig, make_ensemble, make_trainer
from mbrl_fast.models.ensemble import (
    DeterministicEnsemble,
    ProbabilisticEnsemble,
    default_weight_decay,
)
from mbrl_fast.models.normalizer import Normalizer
from mbrl_fast.models.replay_buffer import ReplayBuffer, Transitions
from mbrl_fast.models.trainer import EnsembleTrainer, TrainResult

__all__ = [
    "ModelConfig",
    "TrainConfig",
    "make_ensemble",
    "make_trainer",
    "DeterministicEnsemble",
    "ProbabilisticEnsemble",
    "default_weight_decay",
    "Normalizer",
    "ReplayBuffer",
    "Transitions",
    "EnsembleTrainer",
    "TrainResult",
]
