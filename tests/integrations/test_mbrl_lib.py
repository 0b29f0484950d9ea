"""mbrl-lib: GaussianMLP as MLPParams views; the drop-in agent inside mbrl-lib's own PETS loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mbrl_fast import ensemble_mlp
from mbrl_fast.integrations import mbrl_lib

pytestmark = pytest.mark.skipif(mbrl_lib.unavailable_reason() is not None,
                                reason=f"mbrl-lib unavailable: {mbrl_lib.unavailable_reason()}")

CEM = {"_target_": "mbrl.planning.CEMOptimizer", "num_iterations": 2, "elite_ratio": 0.25,
       "population_size": 16, "alpha": 0.1, "device": "cpu", "lower_bound": "???",
       "upper_bound": "???", "return_mean_elites": True, "clipped_normal": False}


def pets_cfg(agent_target: str, steps: int = 90):
    """mbrl-lib's pets_cartpole config (examples/conf), sized for a test (hydra 1.3 needs
    ``_recursive_: False`` where a config holds a config)."""
    import omegaconf

    return omegaconf.OmegaConf.create({
        "seed": 0, "device": "cpu", "debug_mode": False,
        "dynamics_model": {
            "_target_": "mbrl.models.GaussianMLP", "_recursive_": False, "device": "cpu",
            "num_layers": 2,
            "in_size": "???", "out_size": "???", "ensemble_size": 3, "hid_size": 32,
            "deterministic": False, "propagation_method": "fixed_model",
            "learn_logvar_bounds": False, "activation_fn_cfg": {"_target_": "torch.nn.SiLU"}},
        "algorithm": {
            "name": "pets", "normalize": True, "normalize_double_precision": True,
            "target_is_delta": True, "initial_exploration_steps": 30, "freq_train_model": 30,
            "learned_rewards": False, "num_particles": 3,
            "agent": {"_target_": agent_target, "_recursive_": False, "action_lb": "???",
                      "action_ub": "???", "planning_horizon": 5, "replan_freq": 1,
                      "verbose": False, "optimizer_cfg": CEM}},
        "overrides": {
            "env": "cartpole_continuous", "learned_rewards": False, "trial_length": 30,
            "num_steps": steps, "num_elites": 2, "model_lr": 7.5e-4, "model_wd": 3e-5,
            "model_batch_size": 32, "validation_ratio": 0.1, "freq_train_model": 30,
            "patience": 3, "num_epochs_train_model": 3, "planning_horizon": 5}})


def make_model():
    import mbrl.models

    net = mbrl.models.GaussianMLP(in_size=5, out_size=4, device="cpu", num_layers=2,
                                  ensemble_size=3, hid_size=16,
                                  activation_fn_cfg={"_target_": "torch.nn.SiLU"})
    model = mbrl.models.OneDTransitionRewardModel(net, normalize=True, learned_rewards=False)
    model.input_normalizer.update_stats(np.random.default_rng(0).normal(2, 3, (50, 5)))
    return net, model


def test_gaussian_mlp_is_viewed_and_computes_what_mbrl_lib_computes():
    net, model = make_model()
    params = mbrl_lib.gaussian_mlp_params(model)
    layers = [seq[0] for seq in net.hidden_layers] + [net.mean_and_logvar]
    for layer, w, b in zip(layers, params.weights, params.biases, strict=True):
        assert w.data_ptr() == layer.weight.data_ptr() and b.data_ptr() == layer.bias.data_ptr()
    assert params.max_logvar.data_ptr() == net.max_logvar.data_ptr()
    x = torch.randn(40, 5) * 3 + 2
    with torch.no_grad():
        mean_ref, logvar_ref = net(model.input_normalizer.normalize(x).float(),
                                   use_propagation=False)
    mean, logvar = ensemble_mlp(x, params)
    torch.testing.assert_close(mean, mean_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logvar, logvar_ref, rtol=1e-4, atol=1e-4)


def test_unsupported_models_say_why():
    import mbrl.models

    det = mbrl.models.GaussianMLP(in_size=5, out_size=4, device="cpu", deterministic=True)
    with pytest.raises(ValueError, match="deterministic"):
        mbrl_lib.gaussian_mlp_params(det)
    _, model = make_model()
    model.obs_process_fn = np.sin
    with pytest.raises(ValueError, match="obs_process_fn .*obs_features"):
        mbrl_lib.gaussian_mlp_params(model)
    with pytest.raises(ValueError, match="MPPIOptimizer"):
        mbrl_lib.TrajectoryOptimizerAgent({"_target_": "mbrl.planning.MPPIOptimizer"}, [-1], [1])


def test_module_forwards_mbrl_planning_names():
    import mbrl.planning

    assert mbrl_lib.RandomAgent is mbrl.planning.RandomAgent
    assert mbrl_lib.TrajectoryOptimizerAgent is not mbrl.planning.TrajectoryOptimizerAgent


@pytest.mark.parametrize("how", ["config_target", "context_manager"])
def test_mbrl_lib_pets_loop_runs_with_our_planner(how, tmp_path, monkeypatch):
    """mbrl-lib's own ``mbrl.algorithms.pets.train`` for 3 short trials, with ONE change."""
    import gymnasium as gym
    import mbrl.algorithms.pets as pets
    import mbrl.env.cartpole_continuous as cartpole_env
    import mbrl.env.reward_fns as reward_fns
    import mbrl.env.termination_fns as termination_fns

    calls = []
    original = mbrl_lib.TrajectoryOptimizerAgent.plan
    monkeypatch.setattr(mbrl_lib.TrajectoryOptimizerAgent, "plan",
                        lambda self, obs, **kw: calls.append(1) or original(self, obs, **kw))
    class Limit(gym.Wrapper):  # mbrl-lib's EnvHandler's TimeLimit, minus the reset options
        def reset(self, **kwargs):  # mbrl-lib's CartPoleEnv does not take
            self.t = 0
            return self.env.reset(**kwargs)

        def step(self, action):
            self.t += 1
            obs, r, term, trunc, info = self.env.step(action)
            return obs, r, term, trunc or self.t >= 30, info

    env = Limit(cartpole_env.CartPoleEnv())
    env.reset(seed=0)
    torch.manual_seed(0)
    if how == "config_target":  # the one line: the agent's _target_
        cfg = pets_cfg("mbrl_fast.integrations.mbrl_lib.TrajectoryOptimizerAgent")
        best = pets.train(env, termination_fns.cartpole, reward_fns.cartpole, cfg, silent=True,
                          work_dir=str(tmp_path))
    else:  # the one line: a with-block around mbrl-lib's unchanged config and call
        cfg = pets_cfg("mbrl.planning.TrajectoryOptimizerAgent")
        with mbrl_lib.use_mbrl_fast():
            best = pets.train(env, termination_fns.cartpole, reward_fns.cartpole, cfg,
                              silent=True, work_dir=str(tmp_path))
    assert np.isfinite(best) and best >= 1
    assert len(calls) > 0  # every MPC step of trials 1.. planned with mbrl-fast
