"""SAC: soft actor-critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications", arXiv:1812.05905), the one SAC that MBPO and DADS reuse.

One gradient step on a batch (obs, act, reward, next_obs, done), Algorithm 1 of the
paper with automatic entropy tuning (section 5)::

    a', log pi(a'|s')  ~ pi(. | s')                                      (no gradient)
    y      = r + gamma (1 - done) (min_i Qtarget_i(s', a') - alpha log pi(a'|s'))
    J_Q    = sum_i mean (Q_i(s, a) - y)^2 / 2                          (twin critics)
    a~, log pi(a~|s)   ~ pi(. | s)                                   (reparameterized)
    J_pi   = mean (alpha log pi(a~|s) - min_i Q_i(s, a~))
    J_alpha = -mean log_alpha (log pi(a~|s) + target_entropy)          (alpha = e^log_alpha)
    Adam step on all three; Qtarget <- (1 - tau) Qtarget + tau Q (every
        ``target_update_interval`` steps)

``done`` is ``terminated`` only: a time-limit truncation bootstraps. All three losses
are computed from the parameters before the step, as rlkit's SACTrainer does (SB3
steps the critic before it evaluates the actor loss: the difference is one step of
lag), so one backward pass and one fused Adam step serve all three.

On the compiled kernels (``backend="cpu"``, the default on a Zen 4) the three losses'
gradients come from one C++ call, :meth:`SAC.compiled_grads` (csrc/cpu/sac_grads.cpp: the
networks' passes on those kernels, the head and the losses between them, no autograd
graph): the same function as :meth:`SAC.losses` and its backward to float rounding,
1.15-1.44x the autograd update's rate on those kernels (Zen 4,
bench/results/sac_update_zen4_fused.json). Every update's Adam step runs torch's fused
kernel without ``Optimizer.step``'s Python (nn/optim.py).

The twin critics are one :class:`~mbrl_fast.nn.EnsembleMLP` with E = 2 (both in one
batched matmul per layer); the policy is :class:`~mbrl_fast.nn.TanhGaussianPolicy`,
whose :meth:`SAC.policy_params` the compiled rollout reads in place. With
``SACConfig.precision="bf16"`` every product of the update runs on bf16 operands with fp32
accumulation (nn/dense.py); the parameters and Adam stay fp32. Actions are in
policy units [-1, 1] everywhere here; the environment's bounds are applied by
``policy.to_env`` at the env boundary (nn/policy.py).

The environment loop (random steps, then updates after every env step, deterministic
evaluations) is :mod:`mbrl_fast.agents.offpolicy`: the learner knows nothing of envs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from mbrl_fast import backends
from mbrl_fast.models.replay_buffer import Transitions
from mbrl_fast.nn.dense import check_precision, compiled_applies, mlp_forward
from mbrl_fast.nn.ensemble import EnsembleMLP
from mbrl_fast.nn.optim import fused_adam_step
from mbrl_fast.nn.policy import TanhGaussianPolicy, check_box_space, torch_default_init_
from mbrl_fast.ops import _cpu_imagine
from mbrl_fast.ops.contract import IMAGINE_ACTIVATION_IDS
from mbrl_fast.ops.ensemble_mlp import MLPParams

METRICS = ("critic_loss", "actor_loss", "alpha_loss", "alpha", "q_mean", "entropy")


@dataclass
class SACConfig:
    """SAC's hyperparameters; defaults are Haarnoja et al. 2018's (arXiv:1812.05905,
    table 1) unless the field says otherwise."""

    hidden: int = 256
    """Width of each hidden layer of the actor and of each critic."""
    layers: int = 2
    """Hidden layers of the actor and of each critic (2 x 256)."""
    activation: str = "relu"
    """Hidden activation of the actor and critics."""
    actor_lr: float = 3e-4
    """Adam learning rate of the policy."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin critics."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log(alpha)."""
    batch_size: int = 256
    """Transitions per gradient step."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target critics: target <- (1 - tau) target + tau critic."""
    target_update_interval: int = 1
    """Gradient steps between target updates."""
    init_alpha: float = 1.0
    """Initial entropy temperature alpha (log_alpha = 0; softlearning and SB3 start at 1)."""
    auto_alpha: bool = True
    """Tune alpha to keep the policy's entropy at target_entropy (paper, section 5)."""
    target_entropy: float | None = None
    """Entropy target of the alpha tuning; None: -|A| (the paper's heuristic)."""
    backend: str = "auto"
    """Training GEMMs (nn/dense.py): 'onednn' (CPU fp32, AVX-512 on AMD too), 'torch'
    (baddbmm), 'cpu' (the compiled kernels, csrc/cpu/mlp_train*; the whole update's
    gradients in one call, SAC.compiled_grads) or 'auto' (the compiled kernels on an AMD
    Zen 4, else oneDNN where it applies on an AVX-512 CPU, else torch)."""
    precision: str = "fp32"
    """Operands of those GEMMs: 'fp32', or 'bf16' (mixed precision, as CPU autocast:
    bf16 inputs, weights and activations, fp32 accumulation, fp32 weights, gradients and
    Adam; only on a CPU with AVX512-BF16 or AMX: 1.3x more updates per second on one
    thread of an AMD EPYC Zen 4, bench/results/sac_update_zen4_bf16.json). Not the
    published numerics, so opt-in."""


class SACBatch(NamedTuple):
    """Transitions: obs/next_obs [B, D], act [B, A] in [-1, 1], reward/done [B] float32."""

    obs: torch.Tensor
    act: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    done: torch.Tensor


class SAC:
    """The learner: policy, twin critics + targets, log_alpha, one Adam.

    obs_dim D, act_dim A; ``action_low``/``action_high`` [A] the env's bounds (only for
    ``policy.to_env``); ``seed`` seeds the initial weights and the sampling noise;
    ``device`` holds every tensor (the oneDNN GEMM path is CPU-only, nn/dense.py).
    """

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig | None = None, *,
                 action_low=None, action_high=None, seed: int = 0, device="cpu"):
        self.config = c = config if config is not None else SACConfig()
        for name in ("batch_size", "target_update_interval"):
            v = getattr(c, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"config.{name} must be an int >= 1, got {v!r}")
        if not 0.0 < c.tau <= 1.0:
            raise ValueError(f"config.tau must be in (0, 1], got {c.tau!r}")
        if not 0.0 <= c.gamma <= 1.0:
            raise ValueError(f"config.gamma must be in [0, 1], got {c.gamma!r}")
        if not c.init_alpha > 0:
            raise ValueError(f"config.init_alpha must be > 0, got {c.init_alpha!r}")
        self.device = torch.device(device)
        self.policy = TanhGaussianPolicy(obs_dim, act_dim, c.hidden, c.layers, c.activation,
                                         action_low, action_high, seed=seed,
                                         backend=c.backend,
                                         precision=check_precision(c.precision,
                                                                   "config.precision"),
                                         ).to(self.device)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.critic = EnsembleMLP(2, obs_dim + act_dim, 1, c.hidden, c.layers, c.activation,
                                  seed=seed + 1)
        torch_default_init_(self.critic, torch.Generator().manual_seed(seed + 1))
        self.critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.nn.Parameter(
            torch.tensor(math.log(c.init_alpha), device=self.device), requires_grad=c.auto_alpha)
        self.target_entropy = float(-act_dim if c.target_entropy is None else c.target_entropy)
        groups = [dict(params=list(self.policy.parameters()), lr=c.actor_lr),
                  dict(params=list(self.critic.parameters()), lr=c.critic_lr)]
        if c.auto_alpha:
            groups.append(dict(params=[self.log_alpha], lr=c.alpha_lr))
        # fused: one kernel for every parameter of the three groups
        self.optimizer = torch.optim.Adam(groups, fused=True)
        self.generator = torch.Generator(self.device).manual_seed(seed + 2)
        self.updates = 0
        self.backend = self.policy.backend
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        # the compiled kernels run the whole update's gradients in one call (_C.sac_grads)
        self.compiled_update = self.backend == "cpu" and compiled_applies(
            torch.empty(1, obs_dim, device=self.device), self.critic.weights(), c.activation)
        self._grads = None
        # _compiled_grads' caches (parameters are updated in place, as _critic_params assumes)
        self._grad_param_list = self._kernel_args = self._kernel_tensor_list = None

    @classmethod
    def from_spaces(cls, observation_space, action_space, config: SACConfig | None = None,
                    seed: int = 0) -> SAC:
        """A learner for gymnasium spaces: a 1-D Box observation, a bounded 1-D Box action."""
        obs_low, _ = check_box_space(observation_space, "observation_space")
        low, high = check_box_space(action_space, "action_space")
        return cls(obs_low.shape[0], low.shape[0], config, action_low=low, action_high=high,
                   seed=seed)

    # ---- acting ----------------------------------------------------------------------
    def act(self, obs, deterministic: bool = False) -> torch.Tensor:
        """obs [B, D] or [D] -> action [B, A] in policy units [-1, 1]."""
        return self.policy.act(obs, deterministic, self.generator)

    def policy_params(self) -> MLPParams:
        """The policy for ``ops.propagate(..., policy=...)``: views, no copy."""
        return self.policy.mlp_params()

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    # ---- learning --------------------------------------------------------------------
    def _check_batch(self, batch) -> SACBatch:
        if isinstance(batch, Mapping):
            batch = SACBatch(**{f: batch[f] for f in SACBatch._fields})
        elif not isinstance(batch, SACBatch):
            batch = SACBatch(*(getattr(batch, f) for f in SACBatch._fields))
        b = batch.obs.shape[0] if batch.obs.dim() == 2 else -1
        expect = dict(obs=(b, self.obs_dim), act=(b, self.act_dim), reward=(b,),
                      next_obs=(b, self.obs_dim), done=(b,))
        for name, t in zip(SACBatch._fields, batch, strict=True):
            if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 \
                    or tuple(t.shape) != expect[name] or b < 1:
                got = f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}"
                raise ValueError(f"batch.{name} must be a float32 tensor "
                                 f"{list(expect[name])} (B = batch rows), got {got}")
            here = self.device
            if t.device.type != here.type or here.index not in (None, t.device.index):
                raise ValueError(f"batch.{name} must be on the learner's device "
                                 f"{self.device}, got {t.device}")
        return batch

    def _q(self, x, weights, biases, weight_grad_rows=None) -> torch.Tensor:
        """Both critics on x = [obs, act] [B, D + A] -> [2, B]."""
        return mlp_forward(x, weights, biases, self.config.activation, self.backend,
                           weight_grad_rows, self.config.precision).squeeze(-1)

    def losses(self, batch: SACBatch, eps: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three losses (with graph) and the metrics; eps [2, B, A] standard normal
        (eps[0] for the actions at obs, eps[1] for those at next_obs)."""
        c = self.config
        b = batch.obs.shape[0]
        alpha = self.log_alpha.detach().exp()
        # the policy on obs and next_obs in one pass; only the obs rows train it
        act2, logp2 = self.policy.sample(torch.cat([batch.obs, batch.next_obs]),
                                         eps=eps.reshape(2 * b, self.act_dim),
                                         weight_grad_rows=b)
        new_act, logp = act2[:b], logp2[:b]
        with torch.no_grad():
            next_x = torch.cat([batch.next_obs, act2[b:]], dim=-1)
            q_next = self._q(next_x, *self._target_wb()).min(dim=0).values
            y = batch.reward + c.gamma * (1.0 - batch.done) * (q_next - alpha * logp2[b:])
        # the critics on (obs, act) and (obs, new_act) in one pass: the first rows train
        # the critics (J_Q), the second pass J_pi's gradient to new_act only
        x = torch.cat([torch.cat([batch.obs, batch.act], dim=-1),
                       torch.cat([batch.obs, new_act], dim=-1)])
        q_all = self._q(x, *self._live_wb(), weight_grad_rows=b)  # [2, 2B]
        q, q_pi = q_all[:, :b], q_all[:, b:].min(dim=0).values
        critic_loss = 0.5 * (q - y).square().mean(dim=1).sum()
        actor_loss = (alpha * logp - q_pi).mean()
        logp_d = logp.detach()
        alpha_loss = -(self.log_alpha * (logp_d + self.target_entropy)).mean()
        return dict(critic_loss=critic_loss, actor_loss=actor_loss, alpha_loss=alpha_loss,
                    alpha=alpha, q_mean=q.detach().mean(), entropy=-logp_d.mean())

    def _live_wb(self):
        return ([layer.weight for layer in self.critic.layers],
                [layer.bias for layer in self.critic.layers])

    def _target_wb(self):
        return ([layer.weight for layer in self.critic_target.layers],
                [layer.bias for layer in self.critic_target.layers])

    def compiled_grads(self, batch, eps: torch.Tensor) -> torch.Tensor:
        """The gradients of :meth:`losses` (critic + actor + alpha loss), written into the
        parameters' ``.grad`` by one call of the compiled kernels (``_C.sac_grads``,
        csrc/cpu/sac_grads.cpp: the networks' forward and backward on the kernels of
        ``backend="cpu"``, the head and the losses between them, no autograd graph).
        The same function as ``losses(batch, eps)`` and its backward, to float rounding
        (tests/agents/test_sac.py). ``eps`` [2, B, A] as for :meth:`losses`. Returns the
        metrics [7]: ``METRICS``, then d alpha_loss / d log_alpha. Only where
        ``compiled_update`` holds (backend 'cpu', CPU tensors, the module built)."""
        if not self.compiled_update:
            raise RuntimeError("compiled_grads needs the compiled kernels: "
                               f"SACConfig(backend='cpu') on the CPU (backend here: "
                               f"{self.backend!r}, device {self.device})")
        batch = self._check_batch(batch)
        b = batch.obs.shape[0]
        if not isinstance(eps, torch.Tensor) or eps.dtype != torch.float32 \
                or tuple(eps.shape) != (2, b, self.act_dim) or eps.device.type != "cpu":
            raise ValueError(f"eps must be a float32 CPU tensor [2, {b}, {self.act_dim}], got "
                             f"{getattr(eps, 'dtype', type(eps).__name__)} "
                             f"{tuple(getattr(eps, 'shape', ()))}")
        return self._compiled_grads(batch, eps)

    def _compiled_grads(self, batch: SACBatch, eps: torch.Tensor) -> torch.Tensor:
        if self._grads is None:  # kept: the kernel overwrites them every update
            self._grad_param_list = self._grad_params()
            self._grads = [torch.zeros_like(p) for p in self._grad_param_list]
        for p, g in zip(self._grad_param_list, self._grads, strict=True):
            if p.grad is not g:
                p.grad = g
        args = self._static_kernel_args()
        out = torch.empty(7)
        batch = [t.contiguous() for t in batch]
        c = self.config
        backends.cpu_module().sac_grads(
            [batch[0].shape[0], self.obs_dim, self.act_dim], *args,
            [*(t.data_ptr() for t in batch), eps.contiguous().data_ptr(),
             self.policy.max_logvar.data_ptr(), self.policy.min_logvar.data_ptr()],
            [float(self.log_alpha.detach()), c.gamma, self.target_entropy], out.data_ptr(),
            _cpu_imagine.requested_isa(), torch.get_num_threads())
        if c.auto_alpha:
            self.log_alpha.grad = out[6]
        return out

    def _static_kernel_args(self) -> tuple:
        """``_C.sac_grads``'s arguments that stay put from update to update: the sizes, the
        activation, and the addresses of the weights, biases and gradients, rebuilt when an
        address changes (gathering them per update was ~40 us of Python, ~1-2% of one)."""
        tensors = self._kernel_tensors
        key = tuple(t.data_ptr() for t in tensors)
        if self._kernel_args is None or self._kernel_args[0] != key:
            pi, q = self.policy.mlp.layers, self.critic.layers
            n_pi, n_q = len(pi), len(q)
            ptr = iter(key)
            take = lambda n: [next(ptr) for _ in range(n)]  # noqa: E731
            c = self.config
            args = ([self.obs_dim, *(layer.weight.shape[2] for layer in pi)],
                    [self.obs_dim + self.act_dim, *(layer.weight.shape[2] for layer in q)],
                    IMAGINE_ACTIVATION_IDS[c.activation], c.precision == "bf16",
                    take(n_pi), take(n_pi), take(n_q), take(n_q), take(n_q), take(n_q),
                    take(n_pi), take(n_pi), take(n_q), take(n_q))
            self._kernel_args = (key, args)
        return self._kernel_args[1]

    @property
    def _kernel_tensors(self) -> list[torch.Tensor]:
        """The tensors of :meth:`_static_kernel_args`, in the kernel's argument order."""
        if self._kernel_tensor_list is None:
            pi, q, qt = self.policy.mlp.layers, self.critic.layers, self.critic_target.layers
            grads, n_pi = self._grads, len(pi)
            self._kernel_tensor_list = [
                *(layer.weight for layer in pi), *(layer.bias for layer in pi),
                *(layer.weight for layer in q), *(layer.bias for layer in q),
                *(layer.weight for layer in qt), *(layer.bias for layer in qt),
                *grads[0:2 * n_pi:2], *grads[1:2 * n_pi:2],
                *grads[2 * n_pi::2], *grads[2 * n_pi + 1::2]]
        return self._kernel_tensor_list

    def _grad_params(self) -> list[torch.Tensor]:
        """The parameters :meth:`compiled_grads` writes gradients for, in its order: the
        policy's (weight, bias) per layer, then the critics'."""
        return [t for layer in (*self.policy.mlp.layers, *self.critic.layers)
                for t in (layer.weight, layer.bias)]

    def update(self, batch) -> dict[str, torch.Tensor]:
        """One gradient step on ``batch`` (SACBatch or a mapping of its fields).

        Returns the metrics ``METRICS`` as 0-dim tensors (no host sync; ``float()`` them
        when logging).
        """
        batch = self._check_batch(batch)
        eps = torch.randn((2, batch.obs.shape[0], self.act_dim), generator=self.generator,
                          device=self.device)
        if self.compiled_update:
            m = self._compiled_grads(batch, eps)  # batch checked above, eps made here
            out = dict(zip(METRICS, m.unbind(), strict=False))
        else:
            out = self.losses(batch, eps)
            loss = out["critic_loss"] + out["actor_loss"]
            if self.config.auto_alpha:
                loss = loss + out["alpha_loss"]
            self.optimizer.zero_grad(set_to_none=True)  # backward hands over fresh grads
            loss.backward()
        fused_adam_step(self.optimizer)  # optimizer.step(), less its Python (nn/optim.py)
        self.updates += 1
        if self.updates % self.config.target_update_interval == 0:
            with torch.no_grad():
                torch._foreach_lerp_(self._target_params, self._critic_params, self.config.tau)
        return {k: out[k].detach() for k in METRICS}

    def update_many(self, sample_fn: Callable[[], object], n: int) -> dict[str, float]:
        """n gradient steps, each on ``sample_fn()``; returns the mean of each metric."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        total = None
        for _ in range(n):
            m = torch.stack([v for v in self.update(sample_fn()).values()])
            total = m if total is None else total + m
        return dict(zip(METRICS, (total / n).tolist(), strict=True))

    # ---- persistence -----------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything for an exact resume: networks, targets, log_alpha, Adam, noise RNG."""
        return dict(policy=self.policy.state_dict(), critic=self.critic.state_dict(),
                    critic_target=self.critic_target.state_dict(),
                    log_alpha=self.log_alpha.detach().clone(),
                    optimizer=self.optimizer.state_dict(),
                    generator=self.generator.get_state(), updates=self.updates)

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict` in place (views from policy_params stay valid)."""
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.updates = int(state["updates"])


def batch_from(transitions: Transitions) -> SACBatch:
    """ReplayBuffer rows (float64 numpy) -> a float32 SACBatch; done = terminated only."""
    f = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return SACBatch(f(transitions.obs), f(transitions.act), f(transitions.reward),
                    f(transitions.next_obs), f(transitions.terminated))
