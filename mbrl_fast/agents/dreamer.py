"""Dreamer: learning behaviors by latent imagination (Hafner et al. 2020, arXiv:1912.01603).

The loop of the paper's Algorithm 1, with V2/V3 refinements where they help (marked)::

    iteration (an "epoch" of the agent protocol):
        collect ``train_every`` env steps: uniform random actions until ``prefill`` steps,
            then the actor on the world model's filtered state (plus exploration noise)
        ``train_steps`` updates, each on ``batch_size`` windows of ``seq_len`` steps:
            world model   RSSM loss (reconstruction, reward, continue, KL balancing with
                          free nats; models/rssm.py)
            imagination   from every posterior state, ``horizon`` steps of prior + actor
                          (the compiled op mbrl_fast.ops.imagine, forward and backward)
            actor         maximize the lambda-returns by backpropagating through the
                          dynamics, returns scaled by max(1, P95 - P5) (V3), plus an
                          entropy bonus (V3)
            critic        regress the lambda-returns (symlog space, V3), with a slow
                          critic (EMA, V3) giving the returns' bootstrap values
        evaluate ``eval_episodes`` episodes with the actor's mode: the row's ``return``

Records (the journal) are env steps of whole episodes: observation, the action that led to
it (normalized to [-1, 1]), the reward received on arriving, and the episode flags.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from mbrl_fast.agents.base import Agent, episode_seed, run_episode
from mbrl_fast.agents.returns import ReturnScale, lambda_returns
from mbrl_fast.models.episode_replay import EpisodeReplay
from mbrl_fast.models.rssm import MLP, RSSM, WorldModelConfig, symexp, symlog
from mbrl_fast.ops.imagine import OFFSETS_PER_CALL, draw_noise, imagine

EPOCH_FIELDS = ("iteration", "return", "env_steps", "wall_clock_s", "collect_s", "train_s",
                "eval_s", "train_return", "updates", "model_loss", "actor_loss", "critic_loss",
                "imagined_return")


@dataclass
class DreamerConfig:
    """Everything one Dreamer run needs; defaults are the paper's (V1) unless marked V3."""

    env_id: str = "Pendulum-v1"
    """Task id (mbrl_fast.envs registry)."""
    seed: int = 0
    """Seeds the networks, the env resets, the replay sampling and the imagination noise."""
    steps: int = 100_000
    """Env steps of the run (the budget); an iteration collects ``train_every`` of them."""
    train_every: int = 1000
    """Env steps collected per iteration (V1 collect interval)."""
    train_steps: int = 100
    """Updates (world model + actor + critic) per iteration (V1 100 per 1000 env steps)."""
    prefill: int = 5000
    """Env steps of uniform random actions before the actor acts (V1 5000)."""
    action_repeat: int = 2
    """Each action is applied this many env steps, rewards summed (V1 2 on DMC)."""
    obs: str = "vector"
    """'vector': the env's observations; 'pixels': 64 x 64 RGB frames of its renderer."""
    task_features: bool = True
    """Vector observations enter the world model through the task's ``obs_features`` (angles
    as sin / cos, unbounded coordinates dropped), as PETS's obs_preproc."""
    batch_size: int = 50
    """Sequences per update (V1 50)."""
    seq_len: int = 50
    """Steps per training sequence (V1 50); every stored episode shorter is never sampled."""
    horizon: int = 15
    """Imagination horizon H (V1 15)."""
    discount: float = 0.99
    """gamma of the lambda-returns (V1 0.99)."""
    lam: float = 0.95
    """lambda of the lambda-returns (V1 0.95)."""
    actor_layers: int = 4
    """Hidden layers of the actor (V1 4)."""
    actor_units: int = 400
    """Width of the actor's hidden layers (V1 400)."""
    critic_layers: int = 3
    """Hidden layers of the critic (V1 3)."""
    critic_units: int = 400
    """Width of the critic's hidden layers (V1 400)."""
    actor_lr: float = 8e-5
    """Adam learning rate of the actor (V1 8e-5)."""
    critic_lr: float = 8e-5
    """Adam learning rate of the critic (V1 8e-5)."""
    ac_grad_clip: float = 100.0
    """Global gradient-norm clip of actor and critic (V1 100)."""
    act_min_std: float = 0.1
    """Actor std lower bound (V3 0.1); std = lo + (hi - lo) sigmoid(raw + 2)."""
    act_max_std: float = 1.0
    """Actor std upper bound (V3 1.0)."""
    act_mean_scale: float = 5.0
    """Pre-tanh actor mean = c tanh(raw / c) (V1 5)."""
    actor_grad: str = "dynamics"
    """The actor's gradient: 'dynamics' (backpropagate the returns through the imagined
    dynamics, V1) or 'reinforce' (score function of the sampled actions with the critic as
    baseline, V3's choice for every action space)."""
    entropy_scale: float = 3e-4
    """Weight of the actor's entropy bonus (V3 3e-4, with normalized returns)."""
    return_norm_decay: float = 0.99
    """EMA decay of the returns' P95 - P5 range that scales the actor's objective (V3 0.99)."""
    slow_critic_rate: float = 0.02
    """The slow critic moves this fraction towards the critic after every update (V3 0.02)."""
    expl_noise: float = 0.3
    """Std of the Gaussian noise added to collected actions in [-1, 1] (V1 0.3)."""
    eval_episodes: int = 5
    """Episodes with the actor's mode after every iteration (the metrics' ``return``)."""
    precision: str = "fp32"
    """Imagination matmuls: 'fp32', or 'bf16' (operands rounded, fp32 accumulation; V3)."""
    backend: str = "auto"
    """Backend of the imagination op (auto, reference, cpu)."""
    torch_threads: int = 1
    """torch.set_num_threads, which the compiled op follows (0: leave torch's default). On
    the project's 2 shared, busy cores (load ~9) one update of a 200-wide Pendulum
    configuration took 1.7 s with 1 thread and 8-13 s with 2 (threads spin at barriers while
    their partner waits for a core)."""
    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    """The RSSM world model."""


# Presets: networks and update budgets sized for a 2-core CPU (learning results in
# bench/results/learning_dreamer_*.json). Dreamer V1's networks (400-wide actor and critic,
# B = 2,500 imagination starts) take 2-7 s per update on one core; the small-task presets
# use 64-wide networks, one episode per iteration and twice V1's updates per env step
# (Pendulum-v1: 0.06 s per update; -1333 -> -567 in 4,800 env steps, the CI check in
# tests/agents/test_dreamer_learning.py).
_SMALL = dict(prefill=1000, train_every=200, train_steps=40, action_repeat=2, batch_size=16,
              seq_len=32, horizon=15, actor_layers=2, actor_units=64, critic_layers=2,
              critic_units=64, model=dict(deter=64, stoch=16, hidden=64, units=64, embed=64))
PRESETS: dict[str, dict] = {
    "Pendulum-v1": dict(steps=20_000, **_SMALL),
    # 64-wide networks returned 0-30 of 200 (learning_dreamer_cartpoleswingup_small.json):
    # the model needs PETS's 128 units and 50-step sequences. Action repeat 1: with 2 the
    # actor spun the pole (best 65, ..._cartpoleswingup.json); with 1 and V1's horizon 15 it
    # spun too (best 98, ..._ar1.json; categorical latents: 90, ..._disc.json). A 30-step
    # horizon (1.5 s) with 2x the updates and lr 2e-4 passes 100 by 13k steps (..._h30.json).
    "MBRLFast/CartpoleSwingup-v0": dict(
        steps=50_000, **{**_SMALL, "action_repeat": 1, "seq_len": 50, "horizon": 30,
                         "train_steps": 80, "actor_lr": 2e-4, "critic_lr": 2e-4,
                         "actor_units": 128, "critic_units": 128,
                         "model": dict(deter=128, stoch=32, hidden=128, units=128, embed=128)}),
    "HalfCheetah-v5": dict(
        steps=100_000, prefill=5000, train_every=1000, train_steps=100, action_repeat=2,
        batch_size=16, seq_len=50, actor_layers=2, actor_units=200, critic_layers=2,
        critic_units=200, model=dict(units=200, embed=200)),
}


class Dreamer(Agent):
    """World model, actor, critic (and its slow copy), the episode replay, the env."""

    name = "dreamer"
    Config = DreamerConfig
    PRESETS = PRESETS
    FIELDS = EPOCH_FIELDS
    unit = "epoch"
    budget = "steps"

    def __init__(self, config: DreamerConfig, task=None):
        from mbrl_fast.envs import get_task, never_terminates
        from mbrl_fast.envs.wrappers import make_agent_env

        super().__init__(config)
        c = config
        _check_config(c)
        self.task = task if task is not None else get_task(c.env_id)
        if c.torch_threads > 0:
            torch.set_num_threads(c.torch_threads)
        torch.manual_seed(c.seed)
        self.env = make_agent_env(self.task, c.obs, c.action_repeat)
        obs_shape = self.env.observation_space.shape
        a = self.task.act_dim
        self.low, self.high = np.asarray(self.task.action_low), np.asarray(self.task.action_high)
        terminates = getattr(self.task, "termination_fn", never_terminates) is not never_terminates
        features = getattr(self.task, "obs_features", None) if c.task_features else None
        features = features if c.obs == "vector" else None
        self.wm = RSSM(obs_shape, a, c.model, continue_head=terminates, obs_features=features)
        feat, act = self.wm.feat_dim, c.model.activation
        self.actor = MLP([feat] + [c.actor_units] * c.actor_layers + [2 * a], act)
        self.critic = MLP([feat] + [c.critic_units] * c.critic_layers + [1], act, out_scale=0.0)
        self.slow_critic = MLP([feat] + [c.critic_units] * c.critic_layers + [1], act)
        self.slow_critic.load_state_dict(self.critic.state_dict())
        self.wm_opt = torch.optim.Adam(self.wm.parameters(), c.model.lr, eps=c.model.eps)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), c.actor_lr, eps=1e-5)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), c.critic_lr, eps=1e-5)
        self.return_scale = ReturnScale(c.return_norm_decay)
        self.generator = torch.Generator().manual_seed(c.seed)  # the posterior samples
        self.updates = 0
        self.replay = EpisodeReplay(self.journal_dtype())

    @classmethod
    def total_iterations(cls, config: DreamerConfig) -> int:
        return math.ceil(config.steps / config.train_every)

    # ---- one iteration -------------------------------------------------------------------
    def run_iteration(self, index: int, attempt: int = 0,
                      record: Callable[..., None] | None = None) -> dict:
        start = time.perf_counter()
        c = self.config
        random = self.env_steps < c.prefill
        returns = self.collect(index, attempt, random, record)
        t0 = time.perf_counter()
        losses = []
        if self.env_steps >= c.prefill:
            rng = np.random.default_rng(episode_seed(c.seed, index, attempt, 1 << 20))
            losses = [self.update(self._batch(rng)) for _ in range(c.train_steps)]
        t1 = time.perf_counter()
        evals = self.evaluate(c.eval_episodes, seed=episode_seed(c.seed, 1 << 30, 0))
        t2 = time.perf_counter()
        mean = {k: float(np.mean([x[k] for x in losses])) if losses else float("nan")
                for k in ("model_loss", "actor_loss", "critic_loss", "imagined_return")}
        return self.finish_iteration(index, {
            "iteration": index, "return": float(np.mean(evals)), "env_steps": self.env_steps,
            "collect_s": t0 - start, "train_s": t1 - t0, "eval_s": t2 - t1,
            "train_return": float(np.mean(returns)) if returns else float("nan"),
            "updates": self.updates, **mean}, start)

    @property
    def env_steps(self) -> int:
        """Env steps behind the held records: each non-first record is one action repeated
        ``action_repeat`` times (an episode that ends mid-repeat counts whole)."""
        return self.replay.steps * self.config.action_repeat

    # ---- acting ----------------------------------------------------------------------------
    def collect(self, index: int, attempt: int, random: bool,
                record: Callable[..., None] | None) -> list[float]:
        """Episodes until env step ``(index + 1) * train_every`` (or ``steps``, the run's
        end); every step goes to the replay and ``record``. A resumed iteration continues
        after the records its journal kept. Returns the episode returns."""
        c = self.config
        end = min((index + 1) * c.train_every, c.steps)
        budget = max(0, -(-(end - self.env_steps) // c.action_repeat))  # agent steps
        returns, steps, episode = [], 0, 0
        while steps < budget:
            seed = episode_seed(c.seed, index, attempt, episode)
            policy = _Policy(self, seed, random=random, explore=True)

            def on_step(obs, act, next_obs, reward, terminated, truncated, policy=policy):
                if policy.first_record:
                    self._store(record, obs, np.zeros(self.task.act_dim), 0.0, True, False, False)
                    policy.first_record = False
                self._store(record, next_obs, policy.last_action, reward, False,
                            terminated or truncated, terminated)

            ep = run_episode(self.env, policy.act, seed=seed, max_steps=budget - steps,
                             on_step=on_step, reset=policy.reset)
            returns.append(ep.total_return)
            steps += ep.steps
            episode += 1
        return returns

    def _store(self, record, obs, act, reward, is_first, is_last, is_terminal) -> None:
        fields = dict(obs=obs, act=act, reward=reward, is_first=is_first, is_last=is_last,
                      is_terminal=is_terminal)
        self.replay.add(**fields)
        if record is not None:
            record(**fields)

    def evaluate(self, episodes: int, seed: int = 10_000, env=None,
                 on_frame: Callable | None = None) -> list[float]:
        """Returns of ``episodes`` episodes with the actor's mode (no data added). A given
        ``env`` (e.g. one that renders a video) gets the agent's action repeat; a pixel agent
        keeps its own env (its observations are the frames)."""
        from mbrl_fast.envs.wrappers import ActionRepeat

        if env is None or self.config.obs == "pixels":
            env = self.env
        elif self.config.action_repeat > 1:
            env = ActionRepeat(env, self.config.action_repeat)
        out = []
        for i in range(episodes):
            policy = _Policy(self, seed + i, random=False, explore=False)
            frame = (lambda *_: on_frame(env)) if on_frame is not None and i == 0 else None
            out.append(run_episode(env, policy.act, seed=seed + i, on_step=frame,
                                   reset=policy.reset).total_return)
        return out

    # ---- one update ------------------------------------------------------------------------
    def _batch(self, rng: np.random.Generator) -> dict:
        """[T, B] tensors of ``batch_size`` windows; every window starts from a zero state."""
        c = self.config
        rec = self.replay.sample(c.batch_size, c.seq_len, rng).swapaxes(0, 1)  # [T, B]
        is_first = rec["is_first"].copy()
        is_first[0] = True
        obs = torch.from_numpy(np.ascontiguousarray(rec["obs"]))
        return dict(obs=obs if self.wm.pixels else obs.float(),
                    act=torch.from_numpy(np.ascontiguousarray(rec["act"])).float(),
                    reward=torch.from_numpy(np.ascontiguousarray(rec["reward"])).float(),
                    is_first=torch.from_numpy(is_first),
                    is_terminal=torch.from_numpy(np.ascontiguousarray(rec["is_terminal"])))

    def update(self, batch: dict) -> dict:
        """World model, then actor and critic on imagined trajectories from its posteriors."""
        c = self.config
        # world model
        wm_loss, terms, post = self.wm.loss(**batch, generator=self.generator)
        for name, value in terms.items():
            if not torch.isfinite(value):
                raise FloatingPointError(
                    f"Dreamer: world-model loss term {name!r} is {value.item()} at update "
                    f"{self.updates}; nothing was applied, the last checkpoint is intact")
        _step(self.wm_opt, wm_loss, self.wm.parameters(), c.model.grad_clip)

        # imagination from every posterior state (start states carry no gradient); the op
        # also evaluates the critic on the imagined states (on stop-gradient features)
        heads = [self.wm.reward, self.slow_critic] + ([self.wm.cont] if self.wm.cont else [])
        params = self.wm.imagine_params(self.actor, heads, self.critic,
                                        act_min_std=c.act_min_std, act_max_std=c.act_max_std,
                                        act_mean_scale=c.act_mean_scale)
        start_h = post.h.detach().flatten(0, 1)
        start_z = post.z.detach().flatten(0, 1)
        traj = imagine(start_h, start_z, params, c.horizon, seed=c.seed,
                       offset=OFFSETS_PER_CALL * self.updates, precision=c.precision,
                       backend=c.backend)
        reward = symexp(traj.heads[0][1:, :, 0])  # [H, B]: reward of the step into s_{t+1}
        value = symexp(traj.heads[1][:, :, 0])  # [H+1, B]: the slow critic
        if self.wm.cont is not None:
            cont = c.discount * torch.sigmoid(traj.heads[2][1:, :, 0])
        else:
            cont = torch.full_like(reward, c.discount)
        returns = lambda_returns(reward, value, cont, c.lam)  # [H, B]
        weight = torch.cumprod(torch.cat([torch.ones_like(cont[:1]), cont[:-1]]), 0).detach()

        # actor: ascend the returns (through the dynamics, or by REINFORCE), plus the entropy
        # of its tanh-Normal
        scale = self.return_scale.update(returns)
        pred = traj.heads[-1][:-1, :, 0]  # the critic, symlog
        if c.actor_grad == "dynamics":
            objective, std, action = returns / scale, traj.std, traj.action
        else:  # the score function only: no gradient through the imagined states
            logp, std = self._log_prob_of_imagined(traj, params, start_h.shape[0])
            objective = logp * ((returns - symexp(pred)) / scale).detach()
            action = traj.action.detach()
        entropy = (torch.log(std) + torch.log1p(-action**2 + 1e-6)).sum(-1)
        actor_loss = -(weight * (objective + c.entropy_scale * entropy)).mean()
        # critic: regress the returns (symlog) from the imagined states (stop-gradient)
        critic_loss = (weight * 0.5 * (pred - symlog(returns.detach())) ** 2).mean()
        # one backward: the actor's gradient does not reach the critic and vice versa
        self.actor_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        (actor_loss + critic_loss).backward()
        for opt, net in ((self.actor_opt, self.actor), (self.critic_opt, self.critic)):
            torch.nn.utils.clip_grad_norm_(list(net.parameters()), c.ac_grad_clip)
            opt.step()
        with torch.no_grad():
            for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters(),
                                  strict=True):
                slow.lerp_(fast, c.slow_critic_rate)
        self.updates += 1
        return {"model_loss": wm_loss.item(), "actor_loss": actor_loss.item(),
                "critic_loss": critic_loss.item(), "imagined_return": returns.mean().item()}

    def _log_prob_of_imagined(self, traj, params, batch: int):
        """(log pi(a_t | s_t) of the imagined actions [H, B], actor std [H, B, A]) with
        gradients to the actor's weights only: the actor re-run on the detached states, the
        pre-tanh actions rebuilt from the op's own noise (exact where tanh saturates)."""
        c = self.config
        eps, _ = draw_noise(params, batch, c.horizon, c.seed, OFFSETS_PER_CALL * self.updates,
                            backend=c.backend)
        u = (traj.mean + traj.std * eps).detach()
        m, s = self.actor(torch.cat([traj.h[:-1], traj.z[:-1]], -1).detach()).chunk(2, -1)
        mean = c.act_mean_scale * torch.tanh(m / c.act_mean_scale)
        std = c.act_min_std + (c.act_max_std - c.act_min_std) * torch.sigmoid(s + 2.0)
        logp = torch.distributions.Normal(mean, std).log_prob(u).sum(-1)
        return logp, std

    # ---- journal records and checkpoints ---------------------------------------------------
    def journal_dtype(self) -> np.dtype:
        shape = self.env.observation_space.shape
        obs = ("obs", np.uint8, shape) if self.config.obs == "pixels" else \
            ("obs", np.float32, shape)
        return np.dtype([obs, ("act", np.float32, (self.task.act_dim,)),
                         ("reward", np.float32), ("is_first", bool), ("is_last", bool),
                         ("is_terminal", bool)])

    def restore(self, records: np.ndarray) -> None:
        self.replay.add_records(records)

    def records(self) -> np.ndarray:
        return self.replay.records()

    def state_dict(self) -> dict:
        """Everything needed to continue after iteration ``iterations_done - 1``."""
        return {"wm": self.wm.state_dict(), "actor": self.actor.state_dict(),
                "critic": self.critic.state_dict(), "slow_critic": self.slow_critic.state_dict(),
                "wm_opt": self.wm_opt.state_dict(), "actor_opt": self.actor_opt.state_dict(),
                "critic_opt": self.critic_opt.state_dict(), "replay": self.replay.state_dict(),
                "return_range": self.return_scale.range, "updates": self.updates,
                "generator": self.generator.get_state(), **self.progress_state()}

    def load_state_dict(self, state: dict) -> None:
        for name in ("wm", "actor", "critic", "slow_critic", "wm_opt", "actor_opt",
                     "critic_opt", "replay"):
            getattr(self, name).load_state_dict(state[name])
        self.return_scale.range = state["return_range"]
        self.updates = int(state["updates"])
        self.generator.set_state(state["generator"])
        self.load_progress_state(state)

    def postfix(self, row: dict) -> dict[str, str]:
        return {"ret": f"{row['return']:.1f}", "steps": str(row["env_steps"]),
                "train": f"{row['train_s']:.0f}s"}

    def close(self) -> None:
        self.env.close()


# ---- acting: the world model's filter and the actor, one env step at a time ------------------

class _Policy:
    """obs -> action in env units. Filters the state with the world model's posterior; the
    action is the actor's sample (+ exploration noise) or its mode, or uniform random."""

    def __init__(self, agent: Dreamer, seed: int, *, random: bool, explore: bool):
        self.agent, self.random, self.explore = agent, random, explore
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.reset(seed)

    def reset(self, seed: int) -> None:
        a = self.agent
        self.h, self.z = a.wm.initial(1)
        self.last_action = np.zeros(a.task.act_dim, np.float32)
        self.first_record = True
        self.is_first = True

    @torch.no_grad()
    def act(self, obs) -> np.ndarray:
        a, c = self.agent, self.agent.config
        if self.random:
            action = self.rng.uniform(-1.0, 1.0, a.task.act_dim).astype(np.float32)
        else:
            obs_t = torch.as_tensor(np.asarray(obs))[None]
            embed = a.wm.embed(obs_t if a.wm.pixels else obs_t.float())
            prev = torch.from_numpy(self.last_action)[None]
            first = torch.tensor([self.is_first])
            self.h, self.z, _, _ = a.wm.obs_step(self.h, self.z, prev, embed, first,
                                                 self.generator)
            m, s = a.actor(torch.cat([self.h, self.z], -1)).chunk(2, -1)
            mean = c.act_mean_scale * torch.tanh(m / c.act_mean_scale)
            if self.explore:
                std = c.act_min_std + (c.act_max_std - c.act_min_std) * torch.sigmoid(s + 2.0)
                mean = mean + std * torch.randn(mean.shape, generator=self.generator)
            act_t = torch.tanh(mean)[0]
            if self.explore and c.expl_noise > 0:
                act_t = act_t + c.expl_noise * torch.randn(act_t.shape, generator=self.generator)
            action = act_t.clamp(-1.0, 1.0).numpy().astype(np.float32)
        self.is_first = False
        self.last_action = action
        return a.low + (action + 1.0) * 0.5 * (a.high - a.low)


def _check_config(c: DreamerConfig) -> None:
    if c.obs not in ("vector", "pixels"):
        raise ValueError(f"obs must be 'vector' or 'pixels', got {c.obs!r}")
    for name in ("steps", "train_every", "action_repeat", "batch_size", "seq_len", "horizon",
                 "eval_episodes"):
        if getattr(c, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(c, name)}")
    if c.actor_grad not in ("dynamics", "reinforce"):
        raise ValueError(f"actor_grad must be 'dynamics' or 'reinforce', got {c.actor_grad!r}")
    if c.train_every % c.action_repeat:
        raise ValueError(f"train_every ({c.train_every}) must be a multiple of action_repeat "
                         f"({c.action_repeat})")


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor, params, clip: float) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(params), clip)
    opt.step()
