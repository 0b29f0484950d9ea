"""Stable-Baselines3: an MPC policy with SB3's ``predict``, and an SB3 actor inside our rollouts.

MPC policy. :class:`MPCPolicy` wraps any mbrl-fast planner with SB3's
``predict(observation, state, episode_start, deterministic) -> (actions, state)``, so
``stable_baselines3.common.evaluation.evaluate_policy`` and SB3 VecEnvs run it. All N envs
of a VecEnv are planned in ONE planner call per step (observation [N, D] -> actions
[N, A]); ``episode_start[i]`` forgets env i's warm start (a new episode). ``deterministic``
is accepted and ignored: a planner with a fixed seed is deterministic already.

SB3 actor in the loop. :func:`actor_mlp_params` turns a SAC actor (``model.actor``: a
flatten features extractor, the ``latent_pi`` MLP, the ``mu`` and ``log_std`` heads) into
a one-member MLPParams with a Gaussian head over A, which ``ops.propagate(..., policy=...)``
runs (actions ``tanh(mu + exp(logvar / 2) eps)``, SAC's squashed Gaussian)::

    head = Linear(h, 2 A) with rows [mu; 2 log_std]     (one copy of the actor's weights)
    logvar = 2 log_std, soft-bounded to [LOGVAR_MIN, LOGVAR_MAX] = [-56, 20]

SAC clamps log_std to [-20, 2] (logvar [-40, 4]); the soft bounds sit 16 further out so
that, inside SAC's range, logvar equals 2 log_std to ~1e-7 (e^-16) instead of being pulled
in by the bound; an actor whose log_std leaves [-20, 2] is not clamped the way SAC clamps
it. The actions are in SAC's scaled space [-1, 1] (``policy.scale_action``): a dynamics
model used with them must take actions in that space. gSDE actors are not supported.

Distilled policy into PPO. :func:`load_policy_into_ppo` copies a
:class:`mbrl_fast.nn.GaussianPolicy` (MB-MF's policy distilled from MPC) into the actor of
a user's own SB3 ``PPO`` (or A2C) ``MlpPolicy`` model, one call::

    model = PPO("MlpPolicy", env)                       # net_arch pi=[64, 64], tanh
    load_policy_into_ppo(model, policy)                 # mean net -> policy_net + action_net,
    model.learn(1_000_000)                              # log_std -> log_std

The actor's value network is left as it is. The layouts must match (the same hidden sizes
and activation, vector observations, no gSDE); a mismatch is an error naming both.

Or build the matching PPO and load the policy in one call:
``model = ppo_for_policy(env, policy, learning_rate=3e-4)``. MB-MF's fine-tuning runs it
with :class:`PPOConfig` (SB3's defaults as a config section) in resumable chunks
(:func:`learn_chunk`, checkpointed by :func:`ppo_state_dict`).

stable_baselines3 is imported only by the functions that need it (an MPCPolicy needs none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mbrl_fast.integrations.torch_modules import mlp_params_from_sequentials
from mbrl_fast.ops.ensemble_mlp import MLPParams
from mbrl_fast.planning.base import Planner, check_int

LOGVAR_MAX, LOGVAR_MIN = 20.0, -56.0  # SAC's [2, -20] log-std bounds x 2, 16 further out


def require_sb3(what: str, alternative: str = "") -> None:
    """ImportError naming the extra to install when Stable-Baselines3 is missing; ``what``
    needs it, ``alternative`` says how to go on without it."""
    try:
        import stable_baselines3  # noqa: F401
    except ImportError as exc:
        hint = f" ({alternative})" if alternative else ""
        raise ImportError(f'{what} needs Stable-Baselines3: pip install "mbrl-fast[sb3]"'
                          f"{hint}") from exc


class MPCPolicy:
    """SB3's ``predict`` around a planner: N observations -> N actions in one plan call.

    planner: any :class:`mbrl_fast.planning.Planner`; replan_every: execute that many actions
    of each plan open-loop (1: replan every step). ``plan_calls`` counts planner calls.
    observation_space / action_space: optional, for code that reads them off a policy.
    """

    def __init__(self, planner: Planner, replan_every: int = 1, *, observation_space=None,
                 action_space=None):
        if not isinstance(planner, Planner):
            raise TypeError(f"planner must be a mbrl_fast Planner, got {type(planner).__name__}")
        self.planner = planner
        self.replan_every = check_int("replan_every", replan_every)
        if replan_every > planner.horizon:
            raise ValueError(f"replan_every ({replan_every}) exceeds the planner's horizon "
                             f"({planner.horizon})")
        self.observation_space, self.action_space = observation_space, action_space
        self.plan_calls = 0
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Forget every env's plan and warm start (with ``seed``: restart the noise)."""
        self.planner.reset(seed)
        self._plan: torch.Tensor | None = None  # [N, H, A]
        self._step = 0

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        """observation [N, D] (or [D]) -> (actions [N, A] (or [A]) float32 numpy, None)."""
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.ndim == 1
        obs = obs.reshape(-1, obs.shape[-1])  # [N, D]
        n = obs.shape[0]
        starts = np.zeros(n, bool) if episode_start is None else \
            np.asarray(episode_start, bool).reshape(-1)
        if starts.shape[0] != n:
            raise ValueError(f"episode_start must hold one flag per observation ({n}), got "
                             f"{starts.shape[0]}")
        stale = self._plan is None or self._plan.shape[0] != n
        if stale and self._plan is not None:
            self.planner.reset()  # another number of envs: no warm start fits
        elif starts.any():
            self._forget(starts)
        if stale or starts.any() or self._step >= self.replan_every:
            shift = 1 if stale else max(self._step, 1)
            self._plan = self.planner.plan(torch.from_numpy(obs), shift=shift)  # [N, H, A]
            self.plan_calls += 1
            self._step = 0
        actions = self._plan[:, self._step].detach().cpu().numpy().copy()  # [N, A]
        self._step += 1
        return (actions[0] if single else actions), None

    def _forget(self, rows: np.ndarray) -> None:
        """Env ``rows`` start new episodes: their warm start becomes the planner's initial
        one (the midpoint of the bounds), the other envs keep theirs."""
        if rows.all():
            self.planner.reset()
            return
        p = self.planner
        idx = torch.from_numpy(np.flatnonzero(rows))
        if getattr(p, "_prev", None) is not None:
            p._prev[idx] = p.initial_mean(len(idx))
        elites = getattr(p, "_elites", None)  # iCEM's kept elites
        if elites is not None:
            elites[idx] = p.initial_mean(len(idx))[:, None]


def actor_mlp_params(actor) -> MLPParams:
    """A Stable-Baselines3 SAC actor (``model.actor`` or ``model.policy``) -> a one-member
    MLPParams with a Gaussian head over A (see the module docstring), for
    ``ops.propagate(..., policy=...)``."""
    from stable_baselines3.common.torch_layers import FlattenExtractor

    actor = getattr(actor, "actor", actor)  # SACPolicy -> Actor
    for attr in ("latent_pi", "mu", "log_std", "features_extractor"):
        if not hasattr(actor, attr):
            raise TypeError(f"expected an SB3 SAC actor (latent_pi, mu, log_std), got "
                            f"{type(actor).__name__} without {attr!r}")
    if getattr(actor, "use_sde", False):
        raise ValueError("gSDE actors (use_sde=True) have no Gaussian head over A to convert")
    if not isinstance(actor.features_extractor, FlattenExtractor):
        raise TypeError(f"the actor's features extractor is "
                        f"{type(actor.features_extractor).__name__}; only FlattenExtractor "
                        "(vector observations) maps onto an MLP")
    mu, log_std = actor.mu, actor.log_std
    with torch.no_grad():
        head = nn.Linear(mu.in_features, 2 * mu.out_features)
        head.weight.copy_(torch.cat([mu.weight, 2.0 * log_std.weight]))
        head.bias.copy_(torch.cat([mu.bias, 2.0 * log_std.bias]))
    member = nn.Sequential(*actor.latent_pi, head)
    return mlp_params_from_sequentials([member], gaussian=True, max_logvar=LOGVAR_MAX,
                                       min_logvar=LOGVAR_MIN)


_SB3_ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu", "SiLU": "silu", "ELU": "elu"}


def load_policy_into_ppo(model, policy) -> None:
    """Copy ``policy`` (a :class:`mbrl_fast.nn.GaussianPolicy`) into the actor of an SB3
    PPO / A2C model with an ``MlpPolicy`` (or into such an ActorCriticPolicy directly):
    hidden layers -> ``mlp_extractor.policy_net``, the mean head -> ``action_net``,
    ``log_std`` -> ``log_std``. The value network is unchanged.

    Raises ValueError naming both sides when the observation size, action size, hidden
    sizes or activation differ, TypeError for an actor this cannot hold (gSDE, a
    non-Gaussian action distribution, a features extractor other than Flatten).
    """
    from stable_baselines3.common.distributions import DiagGaussianDistribution
    from stable_baselines3.common.torch_layers import FlattenExtractor

    target = getattr(model, "policy", model)  # PPO -> ActorCriticPolicy
    for attr in ("mlp_extractor", "action_net", "log_std", "features_extractor"):
        if not hasattr(target, attr):
            raise TypeError(f"expected an SB3 PPO / A2C model with an MlpPolicy, got "
                            f"{type(target).__name__} without {attr!r}")
    if getattr(target, "use_sde", False) or \
            not isinstance(target.action_dist, DiagGaussianDistribution):
        raise TypeError(f"the model's action distribution is {type(target.action_dist).__name__}; "
                        "only a diagonal Gaussian with a state-independent log_std (use_sde=False, "
                        "a Box action space) holds a GaussianPolicy")
    extractors = [target.features_extractor, getattr(target, "pi_features_extractor", None)]
    if not all(e is None or isinstance(e, FlattenExtractor) for e in extractors):
        raise TypeError(f"the model's features extractor is "
                        f"{type(target.features_extractor).__name__}; only FlattenExtractor "
                        "(vector observations) maps onto an MLP")
    obs_shape = tuple(target.observation_space.shape)
    act_shape = tuple(target.action_space.shape)
    if obs_shape != (policy.obs_dim,) or act_shape != (policy.act_dim,):
        raise ValueError(f"the distilled policy maps observations ({policy.obs_dim},) to actions "
                         f"({policy.act_dim},); the PPO model's env has observations "
                         f"{obs_shape} and actions {act_shape}")
    hidden = [m for m in target.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
    acts = {type(m).__name__ for m in target.mlp_extractor.policy_net
            if not isinstance(m, nn.Linear)}
    ours = list(policy.mlp.layers)
    theirs_sizes = [layer.out_features for layer in hidden]
    ours_sizes = [layer.weight.shape[2] for layer in ours[:-1]]
    theirs_act = {_SB3_ACTIVATIONS.get(a, a) for a in acts}
    if theirs_sizes != ours_sizes or (theirs_act and theirs_act != {policy.mlp.activation}):
        raise ValueError(f"the PPO actor has hidden layers {theirs_sizes} with "
                         f"{sorted(theirs_act) or 'no activation'}; the distilled policy has "
                         f"{ours_sizes} with {policy.mlp.activation!r} (build the PPO model with "
                         f"policy_kwargs=dict(net_arch=dict(pi={ours_sizes}, vf=...), "
                         "activation_fn=...))")
    with torch.no_grad():
        for dst, src in zip([*hidden, target.action_net], ours, strict=True):
            # kernels' layout [1, in, out] -> nn.Linear's [out, in]
            dst.weight.copy_(src.weight[0].t())
            dst.bias.copy_(src.bias[0])
        target.log_std.copy_(policy.log_std.detach())


def policy_kwargs_for(policy, vf: tuple[int, ...] = (64, 64)) -> dict:
    """SB3 ``policy_kwargs`` whose actor has ``policy``'s hidden sizes and activation (the
    layout :func:`load_policy_into_ppo` needs); ``vf`` sizes the value network."""
    sizes = [layer.weight.shape[2] for layer in list(policy.mlp.layers)[:-1]]
    by_name = {ours: getattr(nn, theirs) for theirs, ours in _SB3_ACTIVATIONS.items()}
    return dict(net_arch=dict(pi=sizes, vf=list(vf)), activation_fn=by_name[policy.mlp.activation])


def ppo_for_policy(env, policy=None, *, vf: tuple[int, ...] = (64, 64), **ppo_kwargs):
    """An SB3 ``PPO("MlpPolicy", env, **ppo_kwargs)`` whose actor has ``policy``'s layout
    (unless ``policy_kwargs`` is given) with ``policy`` loaded into it; ``policy=None``
    keeps PPO's own initial actor (PPO from scratch)."""
    from stable_baselines3 import PPO

    if policy is not None:
        ppo_kwargs.setdefault("policy_kwargs", policy_kwargs_for(policy, vf))
    model = PPO("MlpPolicy", env, **ppo_kwargs)
    if policy is not None:
        load_policy_into_ppo(model, policy)
    return model


def ppo_state_dict(model) -> dict:
    """What a checkpoint needs to continue an SB3 PPO's training: actor-critic weights, its
    Adam state and the step / update counters (the rollout buffer is refilled anyway)."""
    import copy

    return {"policy": model.policy.state_dict(),
            "optimizer": copy.deepcopy(model.policy.optimizer.state_dict()),
            "num_timesteps": model.num_timesteps, "n_updates": model._n_updates}


def load_ppo_state_dict(model, state: dict) -> None:
    """Inverse of :func:`ppo_state_dict` on a PPO built with the same layout."""
    model.policy.load_state_dict(state["policy"])
    model.policy.optimizer.load_state_dict(state["optimizer"])
    model.num_timesteps, model._n_updates = int(state["num_timesteps"]), int(state["n_updates"])


@dataclass
class PPOConfig:
    """Stable-Baselines3 PPO's arguments, its defaults (``PPO(..., **asdict(config))``)."""

    learning_rate: float = 3e-4
    """Adam learning rate."""
    n_steps: int = 2048
    """Env steps per PPO rollout (update)."""
    batch_size: int = 64
    """Minibatch size."""
    n_epochs: int = 10
    """Passes over each rollout."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """Policy ratio clip."""
    ent_coef: float = 0.0
    """Entropy bonus."""


_PPO_STATS = (("policy_loss", "policy_gradient_loss"), ("value_loss", "value_loss"),
              ("approx_kl", "approx_kl"), ("clip_fraction", "clip_fraction"),
              ("entropy", "entropy_loss"), ("std", "std"))


def learn_chunk(model, steps: int, seed: int) -> dict[str, float]:
    """``steps`` more env steps of ``model.learn`` from a fresh episode, every random stream
    (python, numpy, torch, the env's next reset) seeded by ``seed``, so that a resumed run
    repeats a chunk exactly. Returns the last update's statistics that SB3 logged (keys of
    ``_PPO_STATS``: policy_loss, value_loss, approx_kl, clip_fraction, entropy, std)."""
    model.set_random_seed(seed)
    model._last_obs = None  # learn() resets the env: every chunk starts an episode
    model.learn(steps, reset_num_timesteps=False, log_interval=None)
    logged = model.logger.name_to_value
    return {ours: float(logged[f"train/{theirs}"]) for ours, theirs in _PPO_STATS
            if f"train/{theirs}" in logged}
