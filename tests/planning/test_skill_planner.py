"""The latent-space skill planner (DADS Algorithm 2): it steers toward goals, agrees across
backends, takes the three reward forms, and rejects a goal reward of the wrong shape."""

from __future__ import annotations

import pytest
import torch
from helpers import cpu_backends

from mbrl_fast.models.skill_dynamics import SkillDynamics
from mbrl_fast.ops import MLPParams, compile_reward
from mbrl_fast.ops.features import ObsFeatures
from mbrl_fast.planning.skills import SkillPlanner, SkillPlannerConfig, goal_reward


class LinearSkills:
    """An exact skill model: the rollout state [x, y, 1] moves by 0.1 z per step."""

    skill_dim = 2

    def __init__(self, speed=0.1):
        w = torch.zeros(1, 3, 6)  # input [1, z1, z2] -> [dx, dy, d1, logvar x 3]
        w[0, 1, 0] = w[0, 2, 1] = speed
        self.params = MLPParams((w,), (torch.zeros(1, 6),), "identity",
                                max_logvar=torch.zeros(3), min_logvar=torch.full((3,), -10.0),
                                obs_features=ObsFeatures(3, drop=(0, 1)))  # reads the 1

    def mlp_params(self):
        return self.params

    def rollout_state(self, obs):
        obs = torch.as_tensor(obs, dtype=torch.float32)
        return torch.cat([obs[:, :2], torch.ones(len(obs), 1)], dim=1).contiguous()


def test_steers_to_batched_goals():
    goals = torch.tensor([[3.0, 0.0], [0.0, -3.0], [-2.0, 2.0], [0.3, 0.2]])
    planner = SkillPlanner(LinearSkills(), seed=0)
    z = planner.plan(torch.zeros(4, 2), goal_reward(goals))
    assert z.shape == (4, 2) and z.abs().max() <= 1
    assert z[0, 0] > 0.8 and abs(z[0, 1]) < 0.3
    assert z[1, 1] < -0.8 and abs(z[1, 0]) < 0.3
    assert z[2, 0] < -0.6 and z[2, 1] > 0.6
    near = torch.tensor([0.3, 0.2])  # 0.36 away: reached within the skill's 10 steps
    assert torch.cosine_similarity(z[3], near, dim=0) > 0.7 and 0.2 < z[3].norm() < 1.0


def test_closed_loop_reaches_a_goal():
    model, goal = LinearSkills(), torch.tensor([2.0, -1.5])
    planner = SkillPlanner(model, SkillPlannerConfig(init_mean="zero"), seed=1)
    s = torch.zeros(1, 2)
    for _ in range(6):
        z = planner.plan(s, goal_reward(goal))
        s = s + 0.1 * 10 * z  # the exact model is the world
    assert (s[0] - goal).norm() < 0.4  # of 2.5: the 10-step skills overshoot and come back


@pytest.mark.parametrize("backend", cpu_backends())
def test_backends_plan_the_same(backend):
    obs, goals = torch.randn(3, 2), torch.randn(3, 2) * 2
    plans = []
    for b in ("reference", backend):
        cfg = SkillPlannerConfig(plan_horizon=2, backend=b)
        planner = SkillPlanner(LinearSkills(), cfg, seed=4)
        plans.append(torch.stack([planner.plan(obs, goal_reward(goals)) for _ in range(2)]))
    torch.testing.assert_close(plans[0], plans[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["reference", *cpu_backends()])
def test_bf16_weights_plan_like_fp32(backend):
    """precision="bf16" rolls out q's bf16-packed weights: a trained-size SkillDynamics plans
    nearly what fp32 plans (same noise; only the weights' rounding differs)."""
    q = SkillDynamics(obs_dim=4, skill_dim=2, hidden=64, layers=2, seed=0)
    obs, goals = torch.randn(5, 4), torch.randn(5, 2)
    plans = {}
    for precision in ("fp32", "bf16"):
        planner = SkillPlanner(q, SkillPlannerConfig(backend=backend, precision=precision),
                               seed=3)
        plans[precision] = planner.plan(obs, goal_reward(goals))
    packed = q.mlp_params_bf16()
    assert packed.is_bf16 and q.mlp_params_bf16() is packed  # cached
    assert (plans["fp32"] - plans["bf16"]).abs().max() < 0.1
    assert not torch.equal(plans["fp32"], plans["bf16"])


def test_bf16_needs_a_packable_model():
    with pytest.raises(TypeError, match="mlp_params_bf16"):
        SkillPlanner(LinearSkills(), SkillPlannerConfig(precision="bf16"))
    with pytest.raises(ValueError, match="config.precision"):
        SkillPlanner(LinearSkills(), SkillPlannerConfig(precision="fp16"))


def test_numba_reward_is_fused_and_plans_like_torch():
    pytest.importorskip("numba")

    def to_goal(obs, act, next_obs):  # plain Python over one transition
        dx, dy = next_obs[0] - 1.5, next_obs[1] + 0.5
        return -(dx * dx + dy * dy) ** 0.5

    fused = compile_reward(to_goal, obs_dim=3, act_dim=2)
    assert fused.fused_on("cpu")
    z_numba = SkillPlanner(LinearSkills(), seed=2).plan(torch.zeros(2), fused)
    z_torch = SkillPlanner(LinearSkills(), seed=2).plan(torch.zeros(2),
                                                        goal_reward(torch.tensor([1.5, -0.5])))
    torch.testing.assert_close(z_numba, z_torch, rtol=1e-3, atol=1e-3)
    assert z_numba[0] > 0.5 and z_numba[1] < 0


def test_plan_horizon_warm_start_and_smoothing():
    planner = SkillPlanner(LinearSkills(), SkillPlannerConfig(plan_horizon=3), seed=0)
    reward = goal_reward(torch.tensor([5.0, 5.0]))
    first = planner.plan(torch.zeros(1, 2), reward)
    assert planner._means.shape == (1, 3, 2)
    second = planner.plan(torch.ones(1, 2), reward)
    assert first.shape == second.shape == (1, 2)
    assert (second > 0.5).all()
    planner.reset()
    assert planner._means is None


def test_goal_reward_of_the_wrong_shape_names_both_shapes():
    planner = SkillPlanner(LinearSkills(), SkillPlannerConfig(candidates=7, refine_steps=1))

    def summed(obs, act, next_obs):  # one value per sequence, not per predicted state
        return -next_obs[..., 0].sum(dim=-1)

    with pytest.raises(ValueError, match=r"expected shape \(2, 7, 1, 10\).*got \(2, 7, 1\)"):
        planner.plan(torch.zeros(2, 2), summed)


def test_bad_config():
    with pytest.raises(ValueError, match="candidates"):
        SkillPlanner(LinearSkills(), SkillPlannerConfig(candidates=0))
    with pytest.raises(ValueError, match="gamma"):
        SkillPlanner(LinearSkills(), SkillPlannerConfig(gamma=0.0))
    with pytest.raises(ValueError, match="init_mean"):
        SkillPlanner(LinearSkills(), SkillPlannerConfig(init_mean="uniform"))
    with pytest.raises(TypeError, match="a SkillDynamics"):
        SkillPlanner(object())
    with pytest.raises(ValueError, match=r"goal must be \[2\] or \[N, 2\]"):
        goal_reward(torch.zeros(3))
