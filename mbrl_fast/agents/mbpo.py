"""MBPO: model-based policy optimization (Janner et al. 2019, arXiv:1906.08253).

SAC's loop (:mod:`mbrl_fast.agents.offpolicy`) with a learned ensemble in front of it,
as in the paper's Algorithm 2 and the authors' code (jannerm/mbpo)::

    every env step g (after initial_random_steps uniform random steps):
        every model_train_freq steps:
            train the ensemble on all real data (holdout early stopping, elites)
            k = rollout length of the current epoch (linear schedule)
            branched rollouts: rollout_batch start states from the real buffer, k steps
                each through the ensemble (TS1: a random elite per row per step) with the
                SAC policy sampled inside the compiled rollout, rows stopped by the task's
                termination function -> the model pool (last model_retain_epochs epochs)
        one real env step with the policy -> the real buffer
        updates_per_step SAC updates on batches of real_ratio real + the rest model data

The model predicts the state change and the reward (``model.reward_head``); the task
supplies the termination function. Everything is in policy units [-1, 1] (the model
reads the actions the policy emits inside the rollout). The model pool is not
checkpointed: a resumed run regenerates it at its next model round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from mbrl_fast.agents.offpolicy import OffPolicyAgent
from mbrl_fast.agents.sac import SACBatch, SACConfig, batch_from
from mbrl_fast.models import ModelConfig, TrainConfig, make_ensemble, make_trainer
from mbrl_fast.models.rollouts import FIELDS, TransitionPool, branched_rollout
from mbrl_fast.ops.propagate import OFFSETS_PER_CALL
from mbrl_fast.planning.base import PRECISIONS

# train_epochs: the model's training epochs summed over the epoch's model rounds
MODEL_FIELDS = ("model_loss", "holdout_mse", "rollout_length", "model_transitions",
                "model_s", "rollout_s", "train_epochs")


@dataclass
class MBPOConfig:
    """MBPO's hyperparameters; defaults are the paper's Hopper settings (jannerm/mbpo
    examples/config/hopper, mbrl-lib's mbpo_hopper)."""

    env_id: str = "Hopper-v5"
    """Task id (mbrl_fast.envs registry); it needs a termination function."""
    seed: int = 0
    """Seeds the networks, the noise, the env resets and the sampling."""
    steps: int = 125_000
    """Environment steps of the run, random ones included (the budget: ``--steps``)."""
    epoch_length: int = 1000
    """Env steps per iteration; an evaluation follows each."""
    initial_random_steps: int = 5000
    """Leading env steps with uniform random actions (mbpo: n_initial_exploration_steps)."""
    updates_per_step: int = 20
    """SAC gradient steps per env step (mbpo: n_train_repeat)."""
    replay_capacity: int = 1_000_000
    """Real transitions kept."""
    eval_episodes: int = 1
    """Deterministic evaluation episodes per epoch (mbpo: eval_n_episodes)."""
    torch_threads: int = 1
    """torch.set_num_threads for training (0: torch's default). One is fastest while another
    job has the other core; on an idle 2-core Zen 4 two made SAC's updates 1.1-1.5x
    faster (docs/mbpo.md): ``--set torch_threads=2`` there."""
    keep_freed_memory: bool = True
    """Call nn.dense.keep_freed_memory() (no page faults per SAC update)."""
    model_train_freq: int = 250
    """Env steps between model rounds (each: train, then roll out)."""
    rollout_batch: int = 100_000
    """Start states per model round (mbpo: rollout_batch_size)."""
    rollout_min_epoch: int = 20
    """Epoch (counted after the random steps) until which rollouts have rollout_min_length."""
    rollout_max_epoch: int = 100
    """Epoch from which rollouts have rollout_max_length; linear in between (the issue's
    20 -> 100; jannerm/mbpo's and mbrl-lib 0.2.0's Hopper configs use 20 -> 150)."""
    rollout_min_length: int = 1
    """Shortest rollout (steps)."""
    rollout_max_length: int = 15
    """Longest rollout (steps)."""
    model_retain_epochs: int = 1
    """Epochs of model rollouts kept in the model pool."""
    real_ratio: float = 0.05
    """Fraction of each SAC batch drawn from real data (the rest from the model pool)."""
    backend: str = "auto"
    """ops backend of the rollouts: auto, reference, cpu, triton, cuda."""
    rollout_precision: str = "fp32"
    """Weights the rollouts read: 'fp32', or 'bf16' (the elites' and the policy's weights
    rounded to bf16, fp32 activations and accumulation; 1.5-1.7x faster rollouts on a CPU
    with AVX512-BF16, bench/mbpo_rollouts.py). Training is fp32 either way."""
    model: ModelConfig = field(default_factory=lambda: ModelConfig(reward_head=True))
    """The ensemble (7 members, 5 elites, 4 x 200 SiLU, a learned reward head)."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        batch_size=256, epochs=25, patience=5, holdout_ratio=0.2, max_holdout=5000))
    """Model rounds (mbpo: batch 256, holdout 0.2, stop after 5 epochs without improvement;
    here also at most 25 epochs per round)."""
    sac: SACConfig = field(default_factory=SACConfig)
    """The policy learner (SAC's published defaults; per-task target entropy in PRESETS)."""


class MBPO(OffPolicyAgent):
    """SAC on branched rollouts of a learned ensemble."""

    name = "mbpo"
    Config = MBPOConfig
    FIELDS = OffPolicyAgent.FIELDS + MODEL_FIELDS
    # jannerm/mbpo's examples/config/<task>/0.py; steps: mbrl-lib 0.2.0's mbpo_<task>.yaml
    # num_steps (InvertedDoublePendulum: jannerm/mbpo's 80 epochs of 250).
    PRESETS = {
        # Hopper: target entropy -1 (the rest are MBPOConfig's defaults).
        "Hopper-v5": dict(sac=dict(target_entropy=-1.0)),
        # Walker2d: 1-step rollouts throughout, target entropy -3, 300,000 steps.
        "Walker2d-v5": dict(steps=300_000, rollout_max_length=1, sac=dict(target_entropy=-3.0)),
        # HalfCheetah: 40 updates per env step, 1-step rollouts, target entropy -3, 400,000
        # steps (it never terminates: the task needs no termination function).
        "HalfCheetah-v5": dict(steps=400_000, updates_per_step=40, rollout_max_length=1,
                               sac=dict(target_entropy=-3.0)),
        # InvertedDoublePendulum: 250-step epochs, 500 random steps, 1-step rollouts,
        # target entropy -0.5, 80 epochs (20,000 steps).
        "InvertedDoublePendulum-v5": dict(
            steps=20_000, epoch_length=250, initial_random_steps=500, rollout_max_length=1,
            sac=dict(target_entropy=-0.5)),
        # jannerm/mbpo's InvertedPendulum: 250-step epochs, 10 updates per step, 1-step
        # rollouts, 500 random steps, target entropy -0.05; 3 x 200 model here.
        "InvertedPendulum-v5": dict(
            steps=5000, epoch_length=250, initial_random_steps=500, updates_per_step=10,
            rollout_min_epoch=1, rollout_max_epoch=15, rollout_max_length=1,
            model=dict(layers=3), sac=dict(target_entropy=-0.05)),
    }

    def __init__(self, config: MBPOConfig, task=None):
        super().__init__(config, task)
        c = config
        if not 0.0 <= c.real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1], got {c.real_ratio!r}")
        if not c.model.reward_head:
            raise ValueError("MBPO's model predicts the reward: model.reward_head must be True")
        if c.rollout_precision not in PRECISIONS:
            raise ValueError(f"rollout_precision must be one of {PRECISIONS}, got "
                             f"{c.rollout_precision!r}")
        self.model = make_ensemble(c.model, self.view, c.seed)
        self.trainer = make_trainer(c.train, self.model, c.seed)
        self.pool = TransitionPool(self.view.obs_dim, self.task.act_dim, 1)
        self.rollout_offset = 0  # Philox offsets of the rollouts (checkpointed)
        self._sampler = torch.Generator().manual_seed(c.seed + 3)
        self._epoch_stats = _fresh_stats()

    # ---- the model round --------------------------------------------------------------
    def rollout_length(self, g: int) -> int:
        """k for real step g: min_length until rollout_min_epoch, then linear to max_length
        at rollout_max_epoch (epochs counted after the random steps, as mbpo does)."""
        c = self.config
        epoch = max(0, g - c.initial_random_steps) // c.epoch_length
        lo, hi = c.rollout_min_epoch, c.rollout_max_epoch
        frac = min(1.0, max(0.0, (epoch - lo) / max(1, hi - lo)))
        return int(c.rollout_min_length + frac * (c.rollout_max_length - c.rollout_min_length))

    def before_step(self, g: int) -> None:
        c = self.config
        if g < c.initial_random_steps or (g - c.initial_random_steps) % c.model_train_freq:
            return
        s = self._epoch_stats
        tic = time.perf_counter()
        fit = self.trainer.train(self.buffer)
        s["model_s"] += time.perf_counter() - tic
        s["model_loss"] = fit.train_loss
        s["train_epochs"] += fit.epochs
        s["holdout_mse"] = float(np.mean([fit.holdout_mse[i] for i in self.model.elite_members]))
        tic = time.perf_counter()
        k = self.rollout_length(g)
        rounds_kept = c.model_retain_epochs * max(1, c.epoch_length // c.model_train_freq)
        self.pool.resize(rounds_kept * c.rollout_batch * k)
        start = self.buffer.sample(c.rollout_batch, self.rng).obs
        with torch.no_grad():
            model, policy = self.model.mlp_params(), self.sac.policy_params()
            if c.rollout_precision == "bf16":  # the ensemble's pack is cached per version
                model, policy = self.model.mlp_params_bf16(), policy.to_bf16()
            batch = branched_rollout(
                model, policy,
                torch.as_tensor(start, dtype=torch.float32), k,
                members=self.model.elite_members, termination=self.view.termination,
                seed=c.seed, offset=self.rollout_offset, backend=c.backend)
        self.rollout_offset += OFFSETS_PER_CALL
        self.pool.add(batch)
        s["rollout_s"] += time.perf_counter() - tic
        s["rollout_length"], s["model_transitions"] = k, len(self.pool)

    def on_transition(self, obs, act, next_obs, reward, terminated, truncated) -> None:
        if terminated and self.view.termination is None:
            raise ValueError(
                f"{self.task.env_id} ended an episode (terminated) but its Task has no "
                "termination_fn, so MBPO's model rollouts would never stop: register the task "
                "with one, e.g. mbrl_fast.envs.register_task(Task.from_env(env_id, reward_fn, "
                "termination_fn=my_done), overwrite=True), my_done(obs, act, next_obs) -> bool")

    def sample_batch(self) -> SACBatch:
        c = self.config
        b = c.sac.batch_size
        n_real = b if len(self.pool) == 0 else int(round(c.real_ratio * b))
        real = self.buffer.sample(n_real, self.rng) if n_real else None
        if n_real == b:
            return batch_from(real)
        # the batch's rows in one tensor: the real ones first, then the pool's (one gather)
        rows = torch.empty(b, self.pool.width)
        self.pool.sample_rows(b - n_real, self._sampler, out=rows[n_real:])
        fields = self.pool.fields(rows)
        if real is not None:
            for column, f in zip(fields, FIELDS, strict=True):
                column[:n_real] = torch.from_numpy(getattr(real, f))  # float32, done = terminated
        return SACBatch(*fields)

    def extra_metrics(self) -> dict:
        row, self._epoch_stats = self._epoch_stats, _fresh_stats()
        return row

    def postfix(self, row: dict) -> dict[str, str]:
        return {**super().postfix(row), "k": str(row["rollout_length"]),
                "model": f"{row['model_s']:.0f}s", "rollout": f"{row['rollout_s']:.0f}s"}

    # ---- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**super().state_dict(), "model": self.model.state_dict(),
                "trainer": self.trainer.state_dict(), "rollout_offset": self.rollout_offset,
                "sampler": self._sampler.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.model.load_state_dict(state["model"])
        self.trainer.load_state_dict(state["trainer"])
        self.rollout_offset = int(state["rollout_offset"])
        self._sampler.set_state(state["sampler"])


def _fresh_stats() -> dict:
    return {"model_loss": float("nan"), "holdout_mse": float("nan"), "rollout_length": 0,
            "model_transitions": 0, "model_s": 0.0, "rollout_s": 0.0, "train_epochs": 0}
