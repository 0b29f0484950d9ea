"""MB-MF: model-based RL with model-free fine-tuning (Nagabandi et al. 2018, arXiv:1708.02596).

Three phases, one iteration of the agent protocol (:mod:`mbrl_fast.agents.base`) each step::

    model-based  iteration 0: ``random_rollouts`` episodes of uniform random actions -> D;
                 train the dynamics network f (deterministic, delta-state MSE) on D
                 iterations 1 .. aggregation_iters: ``mpc_rollouts`` MPC episodes, run as
                 that many envs in lockstep: every step, random shooting (``population``
                 uniform sequences of ``horizon`` steps, the best first action) plans all
                 of them in ONE compiled ``ops.propagate`` call; add them to D (data
                 aggregation); retrain f on D
    distillation ``dagger_iters`` DAgger iterations (Ross et al. 2011): fit the policy's mean
                 to the expert labels (the MPC episodes' own actions, then the labelled
                 learner states) by MSE; run the policy for ``dagger_rollouts`` episodes;
                 label every state it visited with the MPC controller's action (batched:
                 ``relabel_batch`` states per planner call) and aggregate
    model-free   PPO (Stable-Baselines3) started from the distilled policy
                 (``integrations.sb3.load_policy_into_ppo``), ``ppo_chunk_steps`` env steps
                 per iteration until ``steps`` PPO env steps; the SB3 model's state is
                 checkpointed at every iteration boundary

Every real transition is a journal record (obs, act, next_obs, reward, flags and the
phase that collected it): the dynamics data are the random and MPC records, the imitation
data the MPC records' (obs, act) and the DAgger records' (obs, MPC label). Labels are
computed after a DAgger rollout, so they are agent state, not journal records: a resumed
DAgger iteration labels the restored states again.

The policy is a :class:`mbrl_fast.nn.GaussianPolicy`, SB3's PPO ``MlpPolicy`` actor
layout (2 x 64 tanh, state-independent log-std, no tanh squashing: PPO's default actor
is an unsquashed Gaussian); it reads the task's observation without unbounded x
positions (``Task.obs_view``), which for the gymnasium MuJoCo tasks is the env's default
observation, so a user's ``PPO("MlpPolicy", gym.make(env_id))`` can take it.

Differences from the paper (its code: anagabandi/nn_dynamics): the network's outputs
(the state deltas) are not normalized, only its inputs; the model trainer draws one
bootstrap sample of D (E = 1) and keeps the epoch with the best holdout MSE instead of
sampling 90% new / 10% old data; no Gaussian noise is added to the training data or to
the MPC actions; PPO instead of TRPO for the fine-tuning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from mbrl_fast.agents.base import Agent, episode_seed, run_episode, step_active
from mbrl_fast.envs.wrappers import RecordTransitions
from mbrl_fast.integrations import sb3
from mbrl_fast.integrations.sb3 import PPOConfig, require_sb3
from mbrl_fast.models import ModelConfig, ReplayBuffer, TrainConfig, make_ensemble, make_trainer
from mbrl_fast.models.io import rng_state_from_tensors, rng_state_to_tensors
from mbrl_fast.models.records import RecordLog
from mbrl_fast.nn.policy import GaussianPolicy
from mbrl_fast.planning import PlannerConfig, make_planner

PHASES = ("random", "mpc", "dagger", "ppo")  # journal field ``phase`` is the index
RANDOM, MPC, DAGGER, PPO = range(4)
FIELDS = ("iteration", "phase", "return", "env_steps", "wall_clock_s", "model_loss",
          "holdout_mse", "dagger_loss", "labels", "ppo_policy_loss", "ppo_value_loss",
          "ppo_approx_kl", "ppo_clip_fraction", "ppo_entropy", "ppo_std", "planning_s",
          "training_s")


@dataclass
class MBMFConfig:
    """MB-MF; defaults are the paper's HalfCheetah settings (anagabandi/nn_dynamics:
    yaml_files/cheetah_forward.yaml, mbmf.py)."""

    env_id: str = "HalfCheetah-v5"
    """Task id (mbrl_fast.envs registry)."""
    seed: int = 0
    """Seeds the networks, the env resets, the planner noise and PPO."""
    steps: int = 1_000_000
    """PPO fine-tuning env steps (the budget, ``--steps``; 0: stop after distillation)."""
    episode_steps: int = 1000
    """Steps per random / MPC / DAgger episode (capped by the env's time limit)."""
    random_rollouts: int = 10
    """Episodes of uniform random actions that start D (paper: 10 of 1000 steps)."""
    aggregation_iters: int = 7
    """Data-aggregation iterations of MPC (paper: 7)."""
    mpc_rollouts: int = 10
    """MPC episodes per aggregation iteration, planned together (paper: 10)."""
    dagger_iters: int = 3
    """DAgger iterations of the distillation (paper: 3)."""
    dagger_rollouts: int = 2
    """Policy episodes labelled by MPC per DAgger iteration (paper: 2)."""
    dagger_epochs: int = 300
    """Epochs over the imitation data per fit (paper: 300 for HalfCheetah)."""
    dagger_batch: int = 512
    """Imitation minibatch size (paper: 512)."""
    dagger_lr: float = 1e-3
    """Adam learning rate of the imitation fit (paper: 1e-3)."""
    relabel_batch: int = 10
    """Learner states labelled per planner call (start states N of one propagate call). On
    the project CPU the rollouts cost the same per state batched or alone (1,000 x 20
    rollouts already fill the kernel's tiles); N = 100 saves the per-call sampling and
    Python, 6-9% (bench/results/mbmf_throughput_cpu_quiet.json)."""
    policy_hidden: int = 64
    """Policy hidden width (paper and SB3 PPO: 64)."""
    policy_layers: int = 2
    """Policy hidden layers (paper and SB3 PPO: 2)."""
    policy_activation: str = "tanh"
    """Policy activation (paper and SB3 PPO: tanh)."""
    policy_init_std: float = 0.5
    """The distilled policy's std, where PPO's exploration starts (paper: 0.5)."""
    ppo_chunk_steps: int = 20_480
    """PPO env steps per iteration (a checkpoint after each); a multiple of ppo.n_steps."""
    replay_capacity: int = 2_000_000
    """Records kept in D's buffer (random + MPC transitions)."""
    torch_threads: int = 1
    """torch.set_num_threads (0: leave torch's default)."""
    model: ModelConfig = field(default_factory=lambda: ModelConfig(
        ensemble_size=1, num_elites=1, hidden=500, layers=2, activation="relu",
        probabilistic=False))
    """The dynamics network: one deterministic 2 x 500 ReLU MLP on (obs, act) -> delta."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        lr=1e-3, batch_size=512, epochs=60, patience=0, holdout_ratio=0.1))
    """Dynamics training per round (paper: Adam 1e-3, batch 512, 60 epochs)."""
    planner: PlannerConfig = field(default_factory=lambda: PlannerConfig(
        name="random", population=1000, horizon=20, particles=1, propagation="expectation"))
    """Random shooting (paper HalfCheetah: 1000 sequences of 20 steps)."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """The model-free fine-tuning."""
    ppo_from_scratch: bool = False
    """The comparison run: no model-based phase and no distillation; PPO with the same
    ``ppo`` config and seed starts from Stable-Baselines3's own initialization (std 1) and
    runs ``steps`` env steps."""
    collect_terminates: bool = True
    """False: the random, MPC and DAgger episodes run their full ``episode_steps`` through
    unhealthy states (gymnasium's ``terminate_when_unhealthy=False``; Hopper, Walker2d,
    Ant), as the paper collected its data (its rllab envs did not stop while collecting).
    The planner still scores plans with the task's termination; PPO and ``evaluate`` always
    see the env's own terminations."""


# Per task. HalfCheetah is the paper's configuration (~10 GFLOP per planned step: on 2 CPU
# cores ~0.2-0.4 s, i.e. ~1 h per aggregation iteration of 10 x 1000 steps). The others are
# sized for a 2-core CPU; what is reduced is said per entry.
PRESETS: dict[str, dict] = {
    "HalfCheetah-v5": dict(),
    # Not in the paper: 200-step episodes, a 2 x 128 model (>= 300 gradient steps per
    # round: the data are a few hundred rows), 1000 sequences of 20 steps, 3 aggregation
    # iterations of 4 episodes, 3 DAgger iterations of 4. MPC reaches 200 of 200 by the
    # third aggregation iteration, the distilled policy too (tests/agents/test_mbmf.py).
    "InvertedPendulum-v5": dict(
        steps=20_480, episode_steps=200, random_rollouts=40, aggregation_iters=3,
        mpc_rollouts=4, dagger_iters=3, dagger_rollouts=4, dagger_epochs=100,
        ppo_chunk_steps=4096, model=dict(hidden=128),
        train=dict(batch_size=64, epochs=50, min_steps=300)),
    # Paper (hopper_forward.yaml, mbmf.py): a 1 x 500 model trained 40 epochs, 20 random
    # rollouts of 200 steps, 5 aggregation iterations of 11 MPC rollouts of 1000 steps,
    # 1000 sequences of 40 steps; DAgger 5 iterations of 5 rollouts, 200 epochs, policy std
    # 1 (scripts/hopper_mbmf.sh). Its data collection did not stop at falls
    # (collect_terminates=False). Random rollouts here are as long as the others
    # (episode_steps); PPO 245,760 steps: with the ~84k before them, 0.33 of 1M. (The first
    # preset, 300-step episodes that stopped at falls, collected 733 transitions before PPO:
    # learning_mbmf_vs_ppo_hopper_stopping.json; with policy std 0.5: ..._hopper_std05.)
    "Hopper-v5": dict(
        steps=245_760, random_rollouts=4, aggregation_iters=5, mpc_rollouts=11,
        dagger_iters=5, dagger_rollouts=5, dagger_epochs=200, policy_init_std=1.0,
        collect_terminates=False,
        model=dict(layers=1), train=dict(epochs=40),
        planner=dict(population=1000, horizon=40)),
    # Paper (swimmer_forward.yaml, mbmf.py): a 1 x 500 model trained 30 epochs, 25 random
    # rollouts, 6 aggregation iterations of 10 MPC rollouts, 5000 sequences of 20 steps;
    # DAgger 3 iterations of 5 rollouts, 70 epochs, policy std 1. Its rllab Swimmer steps
    # 0.15 s (333-step episodes); gymnasium's Swimmer-v5 steps 0.04 s, 1000-step episodes
    # here. PPO 204,800 steps: with the ~100k steps before it, 0.30 of 1M.
    "Swimmer-v5": dict(
        steps=204_800, random_rollouts=25, aggregation_iters=6, mpc_rollouts=10,
        dagger_iters=3, dagger_rollouts=5, dagger_epochs=70, policy_init_std=1.0,
        model=dict(layers=1), train=dict(epochs=30),
        planner=dict(population=5000, horizon=20)),
}


class MBMF(Agent):
    """Dynamics network + random-shooting MPC, DAgger distillation, PPO fine-tuning."""

    name = "mbmf"
    Config = MBMFConfig
    PRESETS = PRESETS
    FIELDS = FIELDS
    unit = "iteration"
    budget = "steps"

    def __init__(self, config: MBMFConfig, task=None):
        from mbrl_fast.envs import get_task

        super().__init__(config)
        c = config
        if c.steps > 0:
            require_sb3("PPO fine-tuning", "or set steps=0 to stop after the distillation")
        elif c.ppo_from_scratch:
            raise ValueError("ppo_from_scratch runs only PPO: steps must be > 0, got "
                             f"{c.steps}")
        if c.planner.name != "random":
            raise ValueError(f"MB-MF plans by random shooting: planner.name must be 'random', "
                             f"got {c.planner.name!r}")
        if c.ppo_chunk_steps < 1 or c.ppo_chunk_steps % c.ppo.n_steps:
            raise ValueError(f"ppo_chunk_steps ({c.ppo_chunk_steps}) must be a positive "
                             f"multiple of ppo.n_steps ({c.ppo.n_steps})")
        self.task = task if task is not None else get_task(c.env_id)
        self.view = self.task.obs_view()  # the policy's observation (no unbounded x)
        self.env = self.task.make_env()  # evaluation: the env as users run it
        self.collect_env = self._make_collect_env()  # random and DAgger episodes
        self.episode_steps = min(c.episode_steps, self.task.max_episode_steps)
        if c.torch_threads > 0:
            torch.set_num_threads(c.torch_threads)
        torch.manual_seed(c.seed)
        d, a = self.task.obs_dim, self.task.act_dim
        self.model = make_ensemble(c.model, self.task, c.seed)
        self.trainer = make_trainer(c.train, self.model, c.seed)
        if c.model.probabilistic:
            raise ValueError("MB-MF's dynamics model is deterministic: model.probabilistic "
                             "must be False")
        self.planner = make_planner(c.planner, self.model.gaussian_view(), self.task, c.seed)
        self.data = ReplayBuffer(d, a, c.replay_capacity)  # D: random + MPC transitions
        self.policy = GaussianPolicy(self.view.obs_dim, a, c.policy_hidden, c.policy_layers,
                                     c.policy_activation, math.log(c.policy_init_std), c.seed)
        self.policy_opt = torch.optim.Adam(self.policy.mlp.parameters(), lr=c.dagger_lr)
        self.rng = np.random.default_rng(c.seed)
        self.log = RecordLog(self.data.record_dtype().descr + [("phase", "i1")])
        self.labels = np.zeros((0, a))  # MPC labels of the DAgger records, in order
        self.distilled_rows = 0  # imitation rows of the last fit (-1: PPO owns the policy)
        self._record = None  # the journal's record() of the iteration in progress
        self.ppo = None  # the SB3 model, built at the first PPO iteration
        self._ppo_state = None  # its checkpointed state until then

    # ---- the schedule --------------------------------------------------------------------
    @classmethod
    def total_iterations(cls, config: MBMFConfig) -> int:
        ppo = -(-config.steps // config.ppo_chunk_steps)
        if config.ppo_from_scratch:
            return ppo
        return 1 + config.aggregation_iters + config.dagger_iters + ppo

    def phase_of(self, index: int) -> int:
        c = self.config
        if c.ppo_from_scratch:
            return PPO
        if index == 0:
            return RANDOM
        if index <= c.aggregation_iters:
            return MPC
        return DAGGER if index <= c.aggregation_iters + c.dagger_iters else PPO

    def run_iteration(self, index: int, attempt: int = 0,
                      record: Callable[..., None] | None = None) -> dict:
        start = time.perf_counter()
        phase = self.phase_of(index)
        self._record = record
        row = {f: float("nan") for f in FIELDS if f != "wall_clock_s"}
        row.update(iteration=index, phase=PHASES[phase], planning_s=0.0, training_s=0.0)
        if phase in (RANDOM, MPC):  # the model-based phase
            returns, row["planning_s"] = self.collect(index, attempt, phase)
            t0 = time.perf_counter()
            fit = self.trainer.train(self.data)
            row.update(training_s=time.perf_counter() - t0, model_loss=fit.train_loss,
                       holdout_mse=float(np.mean(fit.holdout_mse)))
        elif phase == DAGGER:  # distillation
            t0 = time.perf_counter()
            row["dagger_loss"] = self.distill()
            row["training_s"] = time.perf_counter() - t0
            returns = self.run_learner(index, attempt)
            row["planning_s"], row["labels"] = self.relabel(index, attempt)
        else:  # model-free fine-tuning
            t0 = time.perf_counter()
            returns, stats = self.fine_tune(index, attempt)
            row.update(stats, training_s=time.perf_counter() - t0)
        row.update({"return": float(np.mean(returns)) if returns else float("nan"),
                    "env_steps": len(self.log)})
        return self.finish_iteration(index, row, start)

    # ---- model-based phase -----------------------------------------------------------------
    def collect(self, index: int, attempt: int, phase: int) -> tuple[list[float], float]:
        """Random episodes (``random_rollouts``, one after another) or ``mpc_rollouts`` MPC
        episodes stepped in lockstep, every step planned in one call for all of them.
        Returns (episode returns, planning seconds)."""
        c = self.config
        if phase == RANDOM:
            low, high = np.asarray(self.task.action_low), np.asarray(self.task.action_high)
            returns = []
            for ep in range(c.random_rollouts):
                seed = episode_seed(c.seed, index, attempt, ep)
                rng = np.random.default_rng(seed)
                returns.append(run_episode(
                    self.collect_env, lambda obs, rng=rng: rng.uniform(low, high), seed=seed,
                    max_steps=self.episode_steps, on_step=self._on_step(RANDOM)).total_return)
            return returns, 0.0
        envs = self._mpc_envs(c.mpc_rollouts)
        obs = np.stack([e.reset(seed=episode_seed(c.seed, index, attempt, i))[0]
                        for i, e in enumerate(envs)]).astype(np.float64)
        self.planner.reset(episode_seed(c.seed, index, attempt, len(envs)))
        returns, active, planning_s = np.zeros(len(envs)), np.ones(len(envs), bool), 0.0
        actions = np.zeros((len(envs), self.task.act_dim))
        for t in range(self.episode_steps):
            t0 = time.perf_counter()
            actions[active] = self.planner.plan(obs[active])[:, 0].numpy()
            planning_s += time.perf_counter() - t0
            returns += step_active(envs, obs, actions, active, last=t + 1 == self.episode_steps,
                                   on_step=lambda _, *transition: self._add(MPC, *transition))
            if not active.any():
                break
        return returns.tolist(), planning_s

    def _make_collect_env(self):
        if self.config.collect_terminates:
            return self.task.make_env()
        try:
            return self.task.make_env(terminate_when_unhealthy=False)
        except TypeError as exc:
            raise ValueError(f"collect_terminates=False needs an env with a "
                             f"terminate_when_unhealthy option (Hopper, Walker2d, Ant); "
                             f"{self.task.env_id} has none ({exc})") from None

    def _mpc_envs(self, n: int) -> list:
        envs = getattr(self, "_envs", [])
        while len(envs) < n:
            envs.append(self._make_collect_env())
        self._envs = envs
        return envs[:n]

    # ---- distillation (DAgger) ----------------------------------------------------------
    def imitation_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(obs [M, D'], expert action [M, A]): the MPC records' own actions, then the labelled
        DAgger records' MPC labels."""
        rec = self.log.view()
        mpc = rec[rec["phase"] == MPC]
        dagger = rec[rec["phase"] == DAGGER][: len(self.labels)]
        obs = np.concatenate([mpc["obs"], dagger["obs"]])
        act = np.concatenate([mpc["act"], self.labels])
        return (torch.as_tensor(self.view(obs), dtype=torch.float32),
                torch.as_tensor(act, dtype=torch.float32))

    def distill(self) -> float:
        """Fit the policy's mean to the imitation data (``dagger_epochs`` epochs of MSE);
        returns the last epoch's mean loss."""
        c = self.config
        obs, target = self.imitation_data()
        self.policy.train()
        losses = []
        for _ in range(c.dagger_epochs):
            order = torch.from_numpy(self.rng.permutation(len(obs)))
            losses = []
            for start in range(0, len(obs), c.dagger_batch):
                idx = order[start:start + c.dagger_batch]
                loss = self.policy.imitation_loss(obs[idx], target[idx])
                self.policy_opt.zero_grad(set_to_none=True)
                loss.backward()
                self.policy_opt.step()
                losses.append(loss.item())
        self.distilled_rows = len(obs)
        return float(np.mean(losses))

    def run_learner(self, index: int, attempt: int) -> list[float]:
        """``dagger_rollouts`` episodes of the policy's mean action (the learner's states)."""
        act = lambda obs: self.policy.act(self.view(obs))[0].numpy()  # noqa: E731
        seed = self.config.seed
        return [run_episode(self.collect_env, act, seed=episode_seed(seed, index, attempt, ep),
                            max_steps=self.episode_steps,
                            on_step=self._on_step(DAGGER)).total_return
                for ep in range(self.config.dagger_rollouts)]

    def relabel(self, index: int, attempt: int) -> tuple[float, int]:
        """Label every unlabelled DAgger record with the MPC controller's first action,
        ``relabel_batch`` start states per planner call. Returns (seconds, labels added)."""
        rec = self.log.view()
        todo = rec[rec["phase"] == DAGGER]["obs"][len(self.labels):]  # [M, D]
        self.planner.reset(episode_seed(self.config.seed, index, attempt, 1 << 20))
        t0 = time.perf_counter()
        labels = [self.planner.plan(todo[i:i + self.config.relabel_batch])[:, 0].numpy()
                  for i in range(0, len(todo), self.config.relabel_batch)]
        if labels:
            self.labels = np.concatenate([self.labels, *labels]).astype(np.float64)
        return time.perf_counter() - t0, len(todo)

    # ---- model-free fine-tuning -------------------------------------------------------------
    def fine_tune(self, index: int, attempt: int) -> tuple[list[float], dict]:
        """``ppo_chunk_steps`` env steps of PPO from a fresh episode (reset seed and RNGs
        derived from (seed, index, attempt), so a resumed run repeats the chunk exactly).
        Returns (returns of the episodes completed in the chunk, PPO's last update stats)."""
        if self.ppo is None:
            rows = self.distilled_rows
            if not self.config.ppo_from_scratch and 0 <= rows < len(self.imitation_data()[0]):
                self.distill()  # the last DAgger iteration's labels
            self.ppo = self._make_ppo()
        self._episode_returns, self._episode_return = [], 0.0
        stats = sb3.learn_chunk(self.ppo, self.config.ppo_chunk_steps,
                                episode_seed(self.config.seed, index, attempt))
        return self._episode_returns, {f"ppo_{k}": v for k, v in stats.items()}

    def _make_ppo(self):
        from stable_baselines3.common.vec_env import DummyVecEnv

        c = self.config
        env = DummyVecEnv([lambda: RecordTransitions(self.task.make_env(), self.view,
                                                     self._record_ppo)])
        model = sb3.ppo_for_policy(env, None if c.ppo_from_scratch else self.policy,
                                   policy_kwargs=sb3.policy_kwargs_for(self.policy),
                                   **asdict(c.ppo), seed=c.seed, device="cpu",
                                   verbose=0)
        self.distilled_rows = -1  # from here on the policy is PPO's
        if self._ppo_state is not None:
            sb3.load_ppo_state_dict(model, self._ppo_state)
        return model

    def _ppo_state_dict(self) -> dict | None:
        return self._ppo_state if self.ppo is None else sb3.ppo_state_dict(self.ppo)

    # ---- records ---------------------------------------------------------------------------
    def _on_step(self, phase: int):
        def on_step(obs, act, next_obs, reward, terminated, truncated):
            self._add(phase, obs, act, next_obs, reward, terminated, truncated)
        return on_step

    def _record_ppo(self, obs, act, next_obs, reward, terminated, truncated) -> None:
        """A transition of PPO's env (full observations): a PPO-phase record, and the
        return of the episode it belongs to."""
        self._add(PPO, obs, act, next_obs, reward, terminated, truncated)
        self._episode_return += float(reward)
        if terminated or truncated:
            self._episode_returns.append(self._episode_return)
            self._episode_return = 0.0

    def _add(self, phase, obs, act, next_obs, reward, terminated, truncated) -> None:
        """One real transition: into the log (and D), and to the journal."""
        fields = dict(obs=obs, act=act, next_obs=next_obs, reward=float(reward),
                      terminated=bool(terminated), truncated=bool(truncated), phase=phase)
        self._feed_model_data(self.log.add(**fields))
        if self._record is not None:
            self._record(**fields)

    def _feed_model_data(self, recs: np.ndarray) -> None:
        """The random and MPC records among ``recs`` into D, the dynamics data."""
        model_rows = recs[recs["phase"] <= MPC]
        if len(model_rows):
            self.data.add_batch(*(model_rows[f] for f in self.data.record_dtype().names))

    def journal_dtype(self) -> np.dtype:
        return self.log.dtype

    def restore(self, records: np.ndarray) -> None:
        records = np.asarray(records, self.log.dtype)
        self.log.extend(records)
        self._feed_model_data(records)

    def records(self) -> np.ndarray:
        return self.log.records()

    # ---- evaluation and checkpoints ------------------------------------------------------
    def evaluate(self, episodes: int, seed: int = 10_000, env=None,
                 on_frame: Callable | None = None) -> list[float]:
        """Returns of the current controller: PPO's deterministic policy once fine-tuning
        has begun, else the distilled policy once distillation has, else MPC."""
        env = env if env is not None else self.env
        if self.ppo is not None or self._ppo_state is not None:
            if self.ppo is None:
                self.ppo = self._make_ppo()
            act = lambda obs: self.ppo.predict(self.view(obs), deterministic=True)[0]  # noqa
        elif self.iterations_done > 1 + self.config.aggregation_iters:
            act = lambda obs: self.policy.act(self.view(obs))[0].numpy()  # noqa: E731
        else:
            act = lambda obs: self.planner.plan(obs)[0].numpy()  # noqa: E731
        out = []
        for i in range(episodes):
            frame = (lambda *_: on_frame(env)) if on_frame is not None and i == 0 else None
            out.append(run_episode(env, act, seed=seed + i, max_steps=self.episode_steps,
                                   on_step=frame).total_return)
        return out

    def postfix(self, row: dict) -> dict[str, str]:
        return {"phase": row["phase"], "ret": f"{row['return']:.1f}",
                "steps": str(row["env_steps"])}

    def state_dict(self) -> dict:
        """Everything needed to continue after iteration ``iterations_done - 1``."""
        return {"mbmf": {
            "records": self.log.to_tensor(),
            "labels": torch.from_numpy(self.labels.copy()), "model": self.model.state_dict(),
            "trainer": self.trainer.state_dict(), "policy": self.policy.state_dict(),
            "policy_opt": self.policy_opt.state_dict(), "distilled_rows": self.distilled_rows,
            "rng": rng_state_to_tensors(self.rng.bit_generator.state),
            "ppo": self._ppo_state_dict()}, **self.progress_state()}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of state_dict; ValueError for another agent's state."""
        if "mbmf" not in state:
            raise ValueError(f"not an MB-MF agent state (keys: {sorted(state)[:8]})")
        s = state["mbmf"]
        log = RecordLog(self.log.dtype)
        log.load_tensor(s["records"], what=f"{self.task.env_id} records")
        self.model.load_state_dict(s["model"])
        self.trainer.load_state_dict(s["trainer"])
        self.policy.load_state_dict(s["policy"])
        import copy

        self.policy_opt.load_state_dict(copy.deepcopy(s["policy_opt"]))
        self.rng.bit_generator.state = rng_state_from_tensors(s["rng"])
        self.log = log
        self.data = ReplayBuffer(self.task.obs_dim, self.task.act_dim, self.config.replay_capacity)
        self._feed_model_data(log.view())
        self.labels = s["labels"].numpy().copy()
        self.distilled_rows = int(s["distilled_rows"])
        self._ppo_state, self.ppo = s["ppo"], None
        self.load_progress_state(state)

    def close(self) -> None:
        for env in [self.env, self.collect_env, *getattr(self, "_envs", [])]:
            env.close()
        if self.ppo is not None:
            self.ppo.env.close()


