"""PETS: probabilistic ensembles with trajectory sampling (Chua et al. 2018, arXiv:1805.12114).

The loop, as in the paper's Algorithm 1 and mbrl-lib's ``algorithms/pets.py``::

    trial 0 .. initial_random_trials - 1: act uniformly at random (episodes until
        ``episode_steps`` env steps, mbrl-lib's initial exploration), then train
    every later trial: one episode of MPC, replanning at every step with CEM over
        the ensemble (TS-inf particles, reward and termination of the task),
        adding each real transition to the replay buffer; then retrain the
        ensemble on everything collected so far.

Per trial it records: return, env steps, wall-clock, planning time, training time
and model loss (``TRIAL_FIELDS``). Run directories, checkpoints and resume live in
:mod:`mbrl_fast.runs`; this module is the algorithm only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from mbrl_fast.models import EnsembleTrainer, ProbabilisticEnsemble, ReplayBuffer
from mbrl_fast.planning import CEMPlanner, ICEMPlanner, MPCAgent, MPPIPlanner

TRIAL_FIELDS = ("trial", "return", "env_steps", "wall_clock_s", "planning_s", "training_s",
                "model_loss", "episode_steps", "holdout_mse", "train_epochs")


@dataclass
class ModelConfig:
    """The probabilistic ensemble (mbrl-lib ``gaussian_mlp_ensemble`` / PETS)."""

    ensemble_size: int = 7
    """Members E (PETS: 5; mbrl-lib: 7)."""
    num_elites: int = 5
    """Members with the best holdout MSE that the planner samples from."""
    hidden: int = 200
    """Width of every hidden layer."""
    layers: int = 4
    """Hidden layers (mbrl-lib num_layers: 4 -> in-200-200-200-200-out)."""
    activation: str = "silu"
    """Hidden activation (PETS's swish = SiLU)."""
    learn_logvar_bounds: bool = True
    """Train max/min logvar (init 0.5 / -10) as the original PETS code does."""
    reward_head: bool = False
    """Learn the reward as an extra output instead of using the task's reward function."""
    task_features: bool = True
    """Read the observation through the task's ``obs_features`` (angles as sin / cos, x
    positions dropped; PETS's obs_preproc); False: the raw observation."""


@dataclass
class TrainConfig:
    """Model training after every trial (PETS: Adam, lr 1e-3, batch 32, 5 epochs)."""

    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 32
    """Minibatch rows per member."""
    epochs: int = 5
    """Maximum epochs per trial (PETS trains 5 epochs after each trial)."""
    patience: int = 5
    """Stop after this many epochs with no member improving its holdout MSE by > 1%."""
    holdout_ratio: float = 0.1
    """Fraction of the data held out to rank members (elites) and stop early."""
    max_holdout: int = 5000
    """Cap on holdout rows (PETS's max_logging)."""
    min_steps: int = 0
    """Gradient steps per trial before early stopping or the epoch cap may end training
    (for large batches on little data, where an epoch is a few steps)."""


@dataclass
class PlannerConfig:
    """MPC planner (PETS: CEM, population 500, 50 elites, 5 iterations, alpha 0.1)."""

    name: str = "cem"
    """One of 'cem', 'icem', 'mppi'."""
    population: int = 500
    """Candidate action sequences per iteration."""
    num_elites: int = 50
    """Elite sequences refitting the CEM / iCEM distribution."""
    iterations: int = 5
    """Optimizer iterations per action."""
    alpha: float = 0.1
    """Momentum: new mean = alpha * old + (1 - alpha) * elite mean."""
    horizon: int = 30
    """Planning horizon H (steps)."""
    particles: int = 20
    """Particles per sequence for the expected return."""
    propagation: str = "tsinf"
    """Particle propagation: 'tsinf' (PETS TS-inf), 'ts1' or 'expectation'."""
    backend: str = "auto"
    """ops backend for propagate / elite updates: auto, reference, cpu, triton, cuda."""
    precision: str = "fp32"
    """Rollout weights: 'fp32', or 'bf16' (packed once per training round; 1.7x faster on
    AVX512-BF16 CPUs, README benchmark)."""
    beta: float = 2.5
    """iCEM only: colored-noise exponent (Pinneri et al. 2020: 0 white ... 2.5 smooth)."""
    keep_fraction: float = 0.3
    """iCEM only: fraction of the elites kept for the next iteration and the next step."""
    decay: float = 1.25
    """iCEM only: population decay per iteration."""
    shaping: bool = True
    """Add the task's planning-only shaping term (Task.shaping_fn) to the objective."""


@dataclass
class PETSConfig:
    """Everything one PETS run needs; defaults are the published ones (see module doc)."""

    env_id: str = "InvertedPendulum-v5"
    """Task id (mbrl_fast.envs registry)."""
    seed: int = 0
    """Seeds model init, training, the env resets and the planner noise."""
    trials: int = 100
    """Trials (episodes) including the random ones."""
    episode_steps: int = 1000
    """Steps per trial (PETS trial length; capped by the env's own time limit)."""
    initial_random_trials: int = 1
    """Leading trials with uniform random actions (each collects episode_steps steps)."""
    replay_capacity: int = 1_000_000
    """Replay buffer size (transitions)."""
    torch_threads: int = 1
    """torch.set_num_threads for model training (0: leave torch's default). Minibatches of
    7 x 32 rows gain little from threads, and on 2 busy shared cores 2 threads measured 15x
    slower than 1 (55 s vs 3.8 s for 35 epochs on 200 rows)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The dynamics ensemble."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Model training."""
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    """The MPC planner."""


# Presets sized to learn within a small CPU budget (2 cores). Planning cost per step scales
# with population x particles x horizon x iterations x the model's width^2: on 2 shared
# cores the InvertedPendulum planner below takes 0.21 s/step with 3 x 64 hidden units and
# 0.79 s/step with 3 x 200 (measured 2026-11-23), hence the narrow model there.
PRESETS: dict[str, dict] = {
    # Reaches 200 (the 200-step maximum) at trial 4 with 200-step episodes, seeds 0 and 1
    # (tests/agents/test_pets_learning.py).
    "InvertedPendulum-v5": dict(
        trials=8, episode_steps=1000,
        model=dict(layers=3, hidden=64),
        train=dict(epochs=50, batch_size=32, patience=10),
        planner=dict(population=300, num_elites=30, iterations=5, horizon=25, particles=10)),
    # PETS's cartpole planner (horizon 25, 5 iterations) with 200 samples, 5 particles and a
    # 3 x 128 model: ~8.6 GFLOP per action instead of 62 GFLOP for 300 x 10 particles on
    # 3 x 200 (~0.8 s/step, 160 s per 200-step trial, on 2 shared cores).
    "MBRLFast/CartpoleSwingup-v0": dict(
        trials=15, episode_steps=200,
        model=dict(layers=3, hidden=128),
        train=dict(epochs=25, batch_size=64, patience=25),
        planner=dict(population=200, num_elites=20, iterations=5, horizon=25, particles=5)),
    # mbrl-lib pets_reacher (horizon 15, lr 4e-4), a 3-layer model, 200 samples x 5 particles
    # (~13 GFLOP per action; 350 x 10 particles is 45 GFLOP, ~1 s/step on 2 shared cores).
    "Reacher-v5": dict(
        trials=30, episode_steps=50,
        model=dict(layers=3, hidden=200),
        train=dict(epochs=25, batch_size=32, patience=25, lr=4e-4),
        planner=dict(population=200, num_elites=20, iterations=5, horizon=15, particles=5)),
    # mbrl-lib pets_halfcheetah as published: ~330 GFLOP per action, a GPU-sized run.
    "HalfCheetah-v5": dict(
        trials=100, episode_steps=1000,
        train=dict(epochs=12, batch_size=32, patience=12, lr=2.8e-4),
        planner=dict(population=400, num_elites=64, iterations=5, alpha=0.12, horizon=30)),
}


def pets_config(env_id: str, **overrides) -> PETSConfig:
    """The preset for ``env_id`` (published defaults if none) with ``overrides`` applied.

    overrides: top-level fields, or ``model=dict(...)`` / ``train=...`` / ``planner=...``.
    """
    preset = PRESETS.get(env_id, {})
    merged = {**preset, **overrides}
    for key in ("model", "train", "planner"):
        merged[key] = {**preset.get(key, {}), **overrides.get(key, {})}
    config = PETSConfig(env_id=env_id)
    sub = {k: replace(getattr(config, k), **merged.pop(k)) for k in ("model", "train", "planner")}
    return replace(config, **merged, **sub)


def episode_seed(seed: int, trial: int, attempt: int, episode: int = 0) -> int:
    """A 32-bit seed for one episode, independent across (seed, trial, attempt, episode)."""
    return int(np.random.SeedSequence([seed, trial, attempt, episode]).generate_state(1)[0])


@dataclass
class EpisodeStats:
    returns: list[float]
    steps: int
    planning_s: float


class PETS:
    """The agent: task, ensemble, trainer, replay buffer and an MPC planner over the ensemble."""

    FIELDS = TRIAL_FIELDS

    def __init__(self, config: PETSConfig, task=None):
        from mbrl_fast.envs import get_task  # envs needs gymnasium: import only when used

        self.config = c = config
        self.task = task if task is not None else get_task(c.env_id)
        self.env = self.task.make_env()
        self.episode_steps = min(c.episode_steps, self.task.max_episode_steps)
        m = c.model
        if c.torch_threads > 0:
            torch.set_num_threads(c.torch_threads)
        torch.manual_seed(c.seed)
        self.model = ProbabilisticEnsemble(
            self.task.obs_dim, self.task.act_dim, ensemble_size=m.ensemble_size,
            num_elites=m.num_elites, hidden=m.hidden, layers=m.layers, activation=m.activation,
            reward_head=m.reward_head, learn_logvar_bounds=m.learn_logvar_bounds, seed=c.seed,
            obs_features=self.task.obs_features if m.task_features else None)
        t = c.train
        self.trainer = EnsembleTrainer(self.model, lr=t.lr, batch_size=t.batch_size,
                                       epochs=t.epochs, patience=t.patience,
                                       holdout_ratio=t.holdout_ratio, max_holdout=t.max_holdout,
                                       min_steps=t.min_steps, seed=c.seed)
        self.buffer = ReplayBuffer(self.task.obs_dim, self.task.act_dim, c.replay_capacity)
        self.mpc = MPCAgent(make_planner(c.planner, self.model, self.task, c.seed))
        self.trials_done = 0
        self.wall_clock_s = 0.0  # summed over completed trials
        self.history: list[dict] = []  # one TRIAL_FIELDS row per completed trial

    # ---- one trial ----------------------------------------------------------------------
    def run_trial(self, trial: int, attempt: int = 0,
                  on_transition: Callable[..., None] | None = None) -> dict:
        """Collect one trial's data, retrain the ensemble, return the trial's metrics row.

        ``on_transition(obs, act, next_obs, reward, terminated, truncated)`` sees every
        real transition as it is added to the buffer (the run directory journals it).
        ``attempt`` > 0 re-runs an interrupted trial with fresh env / planner seeds.
        """
        start = time.perf_counter()
        random = trial < self.config.initial_random_trials
        episode = self.collect(trial, attempt, random, on_transition)
        t0 = time.perf_counter()
        fit = self.trainer.train(self.buffer)
        training_s = time.perf_counter() - t0
        self.wall_clock_s += time.perf_counter() - start
        elites = self.model.elite_members
        row = {"trial": trial, "return": float(np.mean(episode.returns)),
               "env_steps": self.buffer.total_added, "wall_clock_s": self.wall_clock_s,
               "planning_s": episode.planning_s, "training_s": training_s,
               "model_loss": fit.train_loss, "episode_steps": episode.steps,
               "holdout_mse": float(np.mean([fit.holdout_mse[i] for i in elites])),
               "train_epochs": fit.epochs}
        self.history.append(row)
        self.trials_done = trial + 1
        return row

    def collect(self, trial: int, attempt: int, random: bool,
                on_transition: Callable[..., None] | None = None) -> EpisodeStats:
        """Run the env: one MPC episode, or random episodes until episode_steps steps."""
        low, high = np.asarray(self.task.action_low), np.asarray(self.task.action_high)
        returns, steps, planning_s, episode = [], 0, 0.0, 0
        while steps < self.episode_steps and (random or episode == 0):
            seed = episode_seed(self.config.seed, trial, attempt, episode)
            rng = np.random.default_rng(seed)
            obs, _ = self.env.reset(seed=seed)
            self.mpc.reset(seed)
            total, done = 0.0, False
            while not done and steps < self.episode_steps:
                t0 = time.perf_counter()
                act = rng.uniform(low, high) if random else self.mpc.act(obs)
                planning_s += time.perf_counter() - t0
                next_obs, reward, terminated, truncated, _ = self.env.step(act)
                self.buffer.add(obs, act, next_obs, reward, terminated, truncated)
                if on_transition is not None:
                    on_transition(obs, act, next_obs, reward, terminated, truncated)
                total += float(reward)
                steps += 1
                done = terminated or truncated
                obs = next_obs
            returns.append(total)
            episode += 1
        return EpisodeStats(returns, steps, planning_s)

    def evaluate(self, episodes: int, seed: int = 10_000, env=None,
                 on_frame: Callable | None = None) -> list[float]:
        """Returns of ``episodes`` MPC episodes with the current model (no data added)."""
        env = env if env is not None else self.env
        out = []
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            self.mpc.reset(seed + i)
            total, done, steps = 0.0, False, 0
            while not done and steps < self.episode_steps:
                obs, reward, terminated, truncated, _ = env.step(self.mpc.act(obs))
                if on_frame is not None and i == 0:
                    on_frame(env)
                total, steps, done = total + float(reward), steps + 1, terminated or truncated
            out.append(total)
        return out

    # ---- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue after trial ``trials_done - 1``."""
        return {"model": self.model.state_dict(), "trainer": self.trainer.state_dict(),
                "buffer": self.buffer.state_dict(), "trials_done": self.trials_done,
                "wall_clock_s": self.wall_clock_s, "history": [dict(r) for r in self.history],
                "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of state_dict; raises (KeyError, ValueError, RuntimeError) on a mismatch."""
        self.model.load_state_dict(state["model"])
        self.trainer.load_state_dict(state["trainer"])
        self.buffer.load_state_dict(state["buffer"])
        self.trials_done = int(state["trials_done"])
        self.wall_clock_s = float(state["wall_clock_s"])
        self.history = [dict(r) for r in state["history"]]
        torch.set_rng_state(state["torch_rng"])

    def close(self) -> None:
        self.env.close()


def make_planner(p: PlannerConfig, model, task, seed: int):
    """The configured planner over ``model`` with the task's reward and termination."""
    from mbrl_fast.envs import never_terminates

    if getattr(model, "reward_head", False):
        reward = "model"
    else:
        reward = task.planning_reward if p.shaping else task.reward
    # No termination for tasks that never terminate: the fused reward then needs no states.
    termination = None if task.termination_fn is never_terminates else task.termination_fn
    common = dict(reward=reward, horizon=p.horizon, particles=p.particles,
                  propagation=p.propagation, termination=termination, seed=seed,
                  backend=p.backend, precision=p.precision)
    low, high = task.action_low, task.action_high
    if p.name == "cem":
        return CEMPlanner(model, low, high, population=p.population, num_elites=p.num_elites,
                          iterations=p.iterations, alpha=p.alpha, **common)
    if p.name == "icem":
        return ICEMPlanner(model, low, high, population=p.population, num_elites=p.num_elites,
                           iterations=p.iterations, alpha=p.alpha, beta=p.beta,
                           keep_fraction=p.keep_fraction, decay=p.decay, **common)
    if p.name == "mppi":
        return MPPIPlanner(model, low, high, population=p.population, iterations=p.iterations,
                           **common)
    raise ValueError(f"planner.name must be one of 'cem', 'icem', 'mppi', got {p.name!r}")
