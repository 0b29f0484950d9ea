"""mbrl-lib 0.2.0's PETS planner on the benchmark's ensemble (the published baseline).

Built the way mbrl-lib's PETS example builds it, minus the YAML files:
``GaussianMLP`` (ensemble, ``propagation_method="fixed_model"``, i.e. TS-inf with a
random permutation of the particles over the members) wrapped in
``OneDTransitionRewardModel`` (delta targets, input normalizer, no learned reward),
a ``ModelEnv`` with the task's reward, and ``create_trajectory_optim_agent_for_model``
with a ``TrajectoryOptimizerAgent`` + ``CEMOptimizer`` config. Under hydra 1.3 the
agent config needs ``"_recursive_": False`` (its ``optimizer_cfg`` must reach the
agent as a config, not an instantiated object).

The weights, normalizer and log-variance bounds are copied from the benchmark's
MLPParams, so mbrl-lib runs the same function as every other implementation.

One adaptation: mbrl-lib's reward functions see ``(action, next_obs)`` only, while
HalfCheetah's reward is ``(x' - x) / dt - 0.1 |a|^2``. ``_ObsRewardModelEnv`` keeps the
current observation of each ``step`` so the same reward can be applied; it changes
no work mbrl-lib does.

``device`` ("cpu" by default, or e.g. "cuda") is where mbrl-lib's model, normalizer,
random generator and CEM optimizer live, so the baseline can be timed on the same GPU
as the compiled planners.

``mbrl`` (and hydra) are imported lazily: :func:`unavailable_reason` says why the
baseline cannot run, and the benchmark reports null for it.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from mbrl_fast.benchmarks.configs import PlannerBenchConfig
from mbrl_fast.ops.ensemble_mlp import MLPParams, layer_weights_fp32
from mbrl_fast.ops.rewards import resolve

_ACTIVATION_TARGETS = {"silu": "torch.nn.SiLU", "relu": "torch.nn.ReLU", "tanh": "torch.nn.Tanh",
                       "elu": "torch.nn.ELU"}


def unavailable_reason() -> str | None:
    """None when mbrl-lib's planning stack imports, else why not."""
    try:
        import mbrl.models  # noqa: F401
        import mbrl.planning  # noqa: F401
    except Exception as exc:  # ImportError, or hydra's missing antlr4 runtime
        return f"{type(exc).__name__}: {exc}"
    return None


def _copy_weights(model, params: MLPParams) -> None:
    """Copy MLPParams (fp32) into a GaussianMLP's EnsembleLinearLayers in place."""
    weights = layer_weights_fp32(params)
    layers = [seq[0] for seq in model.hidden_layers] + [model.mean_and_logvar]
    if len(layers) != len(weights):
        raise ValueError(f"GaussianMLP has {len(layers)} layers, params {len(weights)}")
    with torch.no_grad():
        for layer, w, b in zip(layers, weights, params.biases, strict=True):
            layer.weight.copy_(w)  # [E, in, out]
            layer.bias.copy_(b.unsqueeze(1))  # [E, 1, out]
        model.max_logvar.copy_(params.max_logvar.unsqueeze(0))  # [1, D]
        model.min_logvar.copy_(params.min_logvar.unsqueeze(0))


def make_model_env(cfg: PlannerBenchConfig, params: MLPParams,
                   device: str | torch.device = "cpu"):
    """mbrl-lib's ModelEnv on ``device`` over a GaussianMLP ensemble holding ``params``."""
    import gymnasium as gym
    import mbrl.env.termination_fns as termination_fns
    import mbrl.models

    d, a = cfg.obs_dim, cfg.act_dim
    net = mbrl.models.GaussianMLP(
        in_size=d + a, out_size=d, device=device, num_layers=cfg.layers,
        ensemble_size=cfg.ensemble_size, hid_size=cfg.hidden,
        propagation_method="fixed_model",
        activation_fn_cfg={"_target_": _ACTIVATION_TARGETS[params.activation]},
    )
    _copy_weights(net, params)
    model = mbrl.models.OneDTransitionRewardModel(net, target_is_delta=True, normalize=True,
                                                  learned_rewards=False)
    model.input_normalizer.mean = params.in_mean.unsqueeze(0).to(device, copy=True)  # [1, D + A]
    model.input_normalizer.std = params.in_std.unsqueeze(0).to(device, copy=True)

    reward = resolve(cfg.reward).torch_fn
    spaces = SimpleNamespace(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (d,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (a,), np.float32),
    )
    model_env = _obs_reward_model_env(mbrl.models.ModelEnv)(
        spaces, model, termination_fns.no_termination,
        generator=torch.Generator(device=device).manual_seed(cfg.seed),
    )
    model_env.reward_fn = lambda act, next_obs: reward(model_env.current_obs, act,
                                                       next_obs).unsqueeze(-1)  # [B, 1]
    return model_env


def make_agent(cfg: PlannerBenchConfig, params: MLPParams, *, population: int | None = None,
               device: str | torch.device = "cpu"):
    """An mbrl-lib TrajectoryOptimizerAgent on ``device`` planning with ``params``.

    ``agent.act(obs [D] numpy) -> action [A] numpy`` (one environment per call).
    """
    import mbrl.planning
    import omegaconf

    population = cfg.population if population is None else population
    if (population * cfg.particles) % cfg.ensemble_size:
        raise ValueError(f"mbrl-lib's fixed_model propagation needs population * particles = "
                         f"{population * cfg.particles} to be a multiple of the ensemble size "
                         f"{cfg.ensemble_size}")
    a = cfg.act_dim
    agent_cfg = omegaconf.OmegaConf.create({
        "_target_": "mbrl.planning.TrajectoryOptimizerAgent",
        "_recursive_": False,
        "action_lb": [-1.0] * a,
        "action_ub": [1.0] * a,
        "planning_horizon": cfg.horizon,
        "replan_freq": 1,
        "verbose": False,
        "optimizer_cfg": {
            "_target_": "mbrl.planning.CEMOptimizer",
            "num_iterations": cfg.iterations,
            "elite_ratio": cfg.num_elites / population,
            "population_size": population,
            "alpha": cfg.alpha,
            "lower_bound": "???",
            "upper_bound": "???",
            "return_mean_elites": True,
            "device": str(device),
            "clipped_normal": False,
        },
    })
    agent = mbrl.planning.create_trajectory_optim_agent_for_model(
        make_model_env(cfg, params, device), agent_cfg, num_particles=cfg.particles)
    # elite_num = ceil(population * ratio) can round up past num_elites in floating point.
    agent.optimizer.optimizer.elite_num = cfg.num_elites
    return agent


def _obs_reward_model_env(base):
    class _ObsRewardModelEnv(base):
        """ModelEnv whose reward function can read the observation each step starts from."""

        current_obs: torch.Tensor | None = None

        def step(self, actions, model_state, sample=False):
            self.current_obs = model_state["obs"]  # [B, D]
            return super().step(actions, model_state, sample=sample)

    return _ObsRewardModelEnv
