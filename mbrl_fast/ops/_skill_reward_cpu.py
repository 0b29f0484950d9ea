"""Launcher of the compiled skill_reward kernel (``mbrl_fast._C.skill_reward``).

It allocates the outputs and passes addresses and sizes; the op (ops/skill_reward.py)
validated the inputs (contiguous float32 CPU tensors). q goes in as the ``MLPDesc`` every
CPU op takes (ops/_cpu.py), with the kernel path id.
"""

from __future__ import annotations

import torch

from mbrl_fast import backends
from mbrl_fast.ops._cpu import mlp_desc
from mbrl_fast.ops.ensemble_mlp import MLPParams
from mbrl_fast.ops.skill_reward import SkillReward, SkillRewardSpec


def skill_reward_cpu(params: MLPParams, x: torch.Tensor, target: torch.Tensor,
                     skill: torch.Tensor, prior: torch.Tensor,
                     spec: SkillRewardSpec) -> SkillReward:
    s = spec
    log_q = torch.empty(s.m, s.l + 1)
    reward = torch.empty(s.m)
    kernels = backends.cpu_kernels()
    mlp, _weights = mlp_desc(params, kernels)  # _weights: alive for the call
    backends.cpu_module().skill_reward(
        mlp, s.m, s.l, s.f, s.z, s.p, s.prior_shared,
        s.include_skill, x.data_ptr() if s.f else 0, target.data_ptr(), skill.data_ptr(),
        prior.data_ptr(), log_q.data_ptr(), reward.data_ptr(), kernels.isa_id)
    return SkillReward(reward, log_q[:, 0], log_q[:, 1:])
