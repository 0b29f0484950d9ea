"""mbrl-lib (0.2.x): its GaussianMLP ensemble as MLPParams, and a drop-in planning agent.

Model. mbrl-lib's ``GaussianMLP`` keeps every layer as an ``EnsembleLinearLayer`` with
``weight [E, in, out]`` and ``bias [E, 1, out]``: our stacked layout, so
:func:`gaussian_mlp_params` hands the kernels views of its parameters (no copy; the planner
sees every training step). What maps and what does not:

    hidden activation          SiLU, ReLU, Tanh, ELU(1), LeakyReLU -> the fused activation
    max_logvar, min_logvar     [1, D] -> views [D]; the same soft bounds as ours
    input normalizer           OneDTransitionRewardModel.input_normalizer, mean / std [1, in];
                               read at every plan (its update_stats replaces the tensors);
                               float32 stats are views, float64 ones
                               (normalize_double_precision) are cast to float32, a copy of
                               [in] floats per plan
    target_is_delta=True       our delta targets; learned_rewards -> reward="model"
    elite_models               -> the planner's ``members``
    propagation_method         fixed_model -> tsinf, random_model -> ts1, expectation
    not supported (error)      deterministic=True, target_is_delta=False, no_delta_list,
                               obs_process_fn unless you pass the same map as obs_features

mbrl-lib's TS-inf gives every member exactly 1/E of the particles (a random permutation);
ours draws each particle's member independently (Chua et al.'s definition).

Agent. :class:`TrajectoryOptimizerAgent` has mbrl-lib's constructor and verbs (``act``,
``plan``, ``reset``, ``set_trajectory_eval_fn``) and plans with ``CEMPlanner`` /
``ICEMPlanner`` from the same optimizer config (CEMOptimizer, ICEMOptimizer), over the
ModelEnv's model, reward and termination functions. So an mbrl-lib PETS script changes
ONE line, any of:

    agent: _target_: mbrl_fast.integrations.mbrl_lib.TrajectoryOptimizerAgent   (config)
    import mbrl_fast.integrations.mbrl_lib as planning   (instead of mbrl.planning; every
                                                          other name is mbrl.planning's)
    with mbrl_fast.integrations.mbrl_lib.use_mbrl_fast():  (around mbrl.algorithms.pets.train)

The planner's Philox seed is drawn from the ModelEnv's torch generator, so the script's
seeding decides it. mbrl-lib itself is imported only when used.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time

import numpy as np
import torch

from mbrl_fast.integrations.torch_modules import mlp_params_from_stacked
from mbrl_fast.ops.ensemble_mlp import MLPParams
from mbrl_fast.ops.features import ObsFeatures

PROPAGATION = {"fixed_model": "tsinf", "random_model": "ts1", "expectation": "expectation"}
OPTIMIZERS = ("mbrl.planning.CEMOptimizer", "mbrl.planning.ICEMOptimizer")


def unavailable_reason() -> str | None:
    """None when mbrl-lib's models and planning import, else why not."""
    try:
        import mbrl.models  # noqa: F401
        import mbrl.planning  # noqa: F401
    except Exception as exc:  # ImportError, or hydra's missing antlr4 runtime
        return f"{type(exc).__name__}: {exc}"
    return None


# ---- the model ------------------------------------------------------------------------------

def _split(model):
    """(GaussianMLP, OneDTransitionRewardModel or None) of either."""
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(model, "input_normalizer"):
        return inner, model
    return model, None


def gaussian_mlp_params(model, *, obs_features: ObsFeatures | None = None) -> MLPParams:
    """An mbrl-lib ``GaussianMLP`` (or the ``OneDTransitionRewardModel`` around it) as
    MLPParams of views of its parameters. See the module docstring for what maps."""
    net, wrapper = _split(model)
    if not hasattr(net, "hidden_layers") or not hasattr(net, "mean_and_logvar"):
        raise TypeError(f"expected an mbrl-lib GaussianMLP or a OneDTransitionRewardModel "
                        f"around one, got {type(net).__name__}")
    if net.deterministic:
        raise ValueError("a deterministic GaussianMLP has no log-variance head; the planners "
                         "need a Gaussian one (or pass the model as a step callable)")
    in_mean = in_std = None
    if wrapper is not None:
        if not wrapper.target_is_delta or wrapper.no_delta_list:
            raise ValueError("the planners roll out delta-state models: target_is_delta=True "
                             "and no no_delta_list are required")
        if wrapper.obs_process_fn is not None and obs_features is None:
            raise ValueError(f"the model's obs_process_fn ({wrapper.obs_process_fn.__name__}) "
                             "has no automatic equivalent: pass obs_features=ObsFeatures(...) "
                             "computing the same map")
        norm = wrapper.input_normalizer
        if norm is not None:
            in_mean = norm.mean.detach().to(torch.float32).reshape(-1)
            in_std = norm.std.detach().to(torch.float32).reshape(-1)
    return mlp_params_from_stacked([net.hidden_layers, net.mean_and_logvar], gaussian=True,
                                   max_logvar=net.max_logvar.detach().reshape(-1),
                                   min_logvar=net.min_logvar.detach().reshape(-1),
                                   in_mean=in_mean, in_std=in_std, obs_features=obs_features)


class MbrlLibModel:
    """An mbrl-lib dynamics model as a planner model: ``mlp_params()`` re-reads it at every
    plan (normalizer and elites included), ``elite_members`` are its elite_models."""

    def __init__(self, model, *, obs_features: ObsFeatures | None = None):
        self.net, self.wrapper = _split(model)
        self.obs_features = obs_features
        gaussian_mlp_params(model, obs_features=obs_features)  # validate now
        self.model = model

    def mlp_params(self) -> MLPParams:
        return gaussian_mlp_params(self.model, obs_features=self.obs_features)

    @property
    def elite_members(self) -> list[int] | None:
        elites = getattr(self.net, "elite_models", None)
        return None if elites is None else [int(i) for i in elites]

    @property
    def propagation(self) -> str:
        method = getattr(self.net, "propagation_method", None) or "fixed_model"
        if method not in PROPAGATION:
            raise ValueError(f"propagation_method {method!r}: the planners support "
                             f"{sorted(PROPAGATION)}")
        return PROPAGATION[method]


def _flat(fn, dtype=None):
    """mbrl-lib fn(act [B, A], next_obs [B, D]) -> [B, 1] as fn(obs, act, next_obs) -> [...]."""
    def ours(obs, act, next_obs):
        out = fn(act.reshape(-1, act.shape[-1]), next_obs.reshape(-1, next_obs.shape[-1]))
        out = out.reshape(next_obs.shape[:-1])
        return out if dtype is None else out.to(dtype)
    ours.__name__ = getattr(fn, "__name__", "mbrl_lib_fn")
    return ours


# ---- the agent --------------------------------------------------------------------------------

def _optimizer_settings(cfg) -> tuple[str, dict]:
    """(planner name, kwargs) from an mbrl-lib optimizer config (or an instantiated one)."""
    target = cfg.get("_target_", "") if hasattr(cfg, "get") else \
        f"mbrl.planning.{type(cfg).__name__}"
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    if target.endswith("MPPIOptimizer"):
        raise ValueError("mbrl-lib's MPPIOptimizer (its smoothing beta and fixed sigma) has no "
                         f"drop-in here; supported: {', '.join(OPTIMIZERS)}")
    if target not in OPTIMIZERS:
        raise ValueError(f"optimizer {target!r} has no drop-in; supported: {', '.join(OPTIMIZERS)}")
    pop = int(get("population_size"))
    elites = int(get("elite_num", 0) or math.ceil(pop * float(get("elite_ratio"))))
    kw = dict(population=pop, num_elites=min(elites, pop), iterations=int(get("num_iterations")),
              alpha=float(get("alpha")), return_mean=bool(get("return_mean_elites", False)))
    if target.endswith("CEMOptimizer") and not target.endswith("ICEMOptimizer"):
        if get("clipped_normal", False) or get("_clipped_normal", False):
            raise ValueError("clipped_normal=True has no drop-in: the planners sample the "
                             "truncated normal of mbrl-lib's default (clipped_normal=False)")
        return "cem", dict(kw, epsilon=0.0)  # mbrl-lib's CEM has no early stop
    if get("population_size_module", None):
        raise ValueError("ICEMOptimizer's population_size_module has no drop-in")
    return "icem", dict(kw, decay=float(get("population_decay_factor")),
                        beta=float(get("colored_noise_exponent")),
                        keep_fraction=float(get("keep_elite_frac")))


class TrajectoryOptimizerAgent:
    """mbrl-lib's ``TrajectoryOptimizerAgent`` (same constructor and verbs), planning with
    mbrl-fast. Give it the model with :meth:`set_model_env` (or let mbrl-lib's
    ``create_trajectory_optim_agent_for_model`` call :meth:`set_trajectory_eval_fn`).

    Extra keyword arguments: ``seed`` (default: drawn from the ModelEnv's generator),
    ``backend``, ``precision`` ("fp32" / "bf16"), ``obs_features`` (see the module doc).
    """

    def __init__(self, optimizer_cfg, action_lb, action_ub, planning_horizon: int = 1,
                 replan_freq: int = 1, verbose: bool = False, keep_last_solution: bool = True,
                 *, seed: int | None = None, backend: str = "auto", precision: str = "fp32",
                 obs_features: ObsFeatures | None = None):
        self.planner_name, self.planner_kwargs = _optimizer_settings(optimizer_cfg)
        self.action_lb = np.asarray(action_lb, dtype=np.float32)
        self.action_ub = np.asarray(action_ub, dtype=np.float32)
        self.planning_horizon = int(planning_horizon)
        self.replan_freq = int(replan_freq)
        self.verbose = bool(verbose)
        self.keep_last_solution = bool(keep_last_solution)
        self.seed, self.backend, self.precision = seed, backend, precision
        self.obs_features = obs_features
        self.planner = None
        self.plan_calls = 0  # planner calls so far (one per replanning step)
        self._pending: list[np.ndarray] = []

    # ---- wiring ----------------------------------------------------------------------------
    def set_model_env(self, model_env, num_particles: int = 1) -> TrajectoryOptimizerAgent:
        """Plan over ``model_env``'s dynamics model, reward and termination functions."""
        import mbrl.env.termination_fns as termination_fns

        from mbrl_fast.planning import CEMPlanner, ICEMPlanner

        model = MbrlLibModel(model_env.dynamics_model, obs_features=self.obs_features)
        reward = "model" if model_env.reward_fn is None else _flat(model_env.reward_fn)
        term = model_env.termination_fn
        term = None if term in (None, termination_fns.no_termination) else _flat(term, torch.bool)
        seed = self.seed
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,), generator=model_env._rng,
                                     device=model_env._rng.device))
        cls = CEMPlanner if self.planner_name == "cem" else ICEMPlanner
        self.planner = cls(model, self.action_lb, self.action_ub, reward=reward,
                           termination=term, horizon=self.planning_horizon,
                           particles=int(num_particles), propagation=model.propagation,
                           seed=seed, backend=self.backend, precision=self.precision,
                           **self.planner_kwargs)
        self._pending = []
        return self

    def set_trajectory_eval_fn(self, trajectory_eval_fn) -> None:
        """What mbrl-lib's ``create_trajectory_optim_agent_for_model`` calls: its eval fn
        closes over the ModelEnv and the particle count, which is what this agent plans with."""
        free = inspect.getclosurevars(trajectory_eval_fn).nonlocals
        if "model_env" not in free:
            raise TypeError("this agent plans over a ModelEnv, not an arbitrary "
                            "trajectory_eval_fn: call set_model_env(model_env, num_particles) "
                            "(mbrl-lib's create_trajectory_optim_agent_for_model does this)")
        self.set_model_env(free["model_env"], int(free.get("num_particles", 1)))

    # ---- mbrl-lib's verbs -----------------------------------------------------------------------
    def reset(self, planning_horizon: int | None = None) -> None:
        """A new episode: forget the warm start (and, with ``planning_horizon``, change it)."""
        self._check()
        if planning_horizon:
            self.planning_horizon = int(planning_horizon)
            self.planner.horizon = self.planning_horizon
        self.planner.reset()
        self._pending = []

    def plan(self, obs, **_kwargs) -> np.ndarray:
        """obs [D] -> the planned action sequence [H, A] (numpy)."""
        self._check()
        if not self.keep_last_solution:
            self.planner.reset()
        start = time.perf_counter()
        plan = self.planner.plan(np.asarray(obs, dtype=np.float32), shift=self.replan_freq)
        self.plan_calls += 1
        if self.verbose:
            print(f"Planning time: {time.perf_counter() - start:.3f}")
        return plan.detach().cpu().numpy()

    def act(self, obs, **_kwargs) -> np.ndarray:
        """obs [D] -> action [A]; replans every ``replan_freq`` calls, as mbrl-lib does."""
        if not self._pending:
            self._pending = list(self.plan(obs)[: self.replan_freq])
        return self._pending.pop(0)

    def _check(self) -> None:
        if self.planner is None:
            raise RuntimeError("call set_model_env(model_env, num_particles) (or mbrl-lib's "
                               "create_trajectory_optim_agent_for_model) before planning")


def create_trajectory_optim_agent_for_model(model_env, agent_cfg, num_particles: int = 1,
                                            **kwargs) -> TrajectoryOptimizerAgent:
    """mbrl-lib's function of the same name, returning this module's agent (whatever the
    config's ``_target_``). ``kwargs``: the agent's extra keywords (seed, backend, ...)."""
    import mbrl.planning

    mbrl.planning.complete_agent_cfg(model_env, agent_cfg)
    c = agent_cfg
    agent = TrajectoryOptimizerAgent(
        c.optimizer_cfg, c.action_lb, c.action_ub, planning_horizon=c.get("planning_horizon", 1),
        replan_freq=c.get("replan_freq", 1), verbose=c.get("verbose", False),
        keep_last_solution=c.get("keep_last_solution", True), **kwargs)
    return agent.set_model_env(model_env, num_particles)


@contextlib.contextmanager
def use_mbrl_fast(**kwargs):
    """Within the block, ``mbrl.planning.create_trajectory_optim_agent_for_model`` (what
    ``mbrl.algorithms.pets.train`` calls) builds this module's agent."""
    import mbrl.planning

    original = mbrl.planning.create_trajectory_optim_agent_for_model
    mbrl.planning.create_trajectory_optim_agent_for_model = (
        lambda model_env, agent_cfg, num_particles=1: create_trajectory_optim_agent_for_model(
            model_env, agent_cfg, num_particles, **kwargs))
    try:
        yield
    finally:
        mbrl.planning.create_trajectory_optim_agent_for_model = original


def __getattr__(name: str):
    """Every other name is mbrl.planning's, so ``import mbrl_fast.integrations.mbrl_lib as
    planning`` replaces ``import mbrl.planning as planning`` in a script."""
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        import mbrl.planning
    except Exception as exc:  # mbrl-lib absent: a plain missing attribute for getattr probes
        raise AttributeError(f"{name!r} (mbrl-lib unavailable: {exc})") from None
    return getattr(mbrl.planning, name)
