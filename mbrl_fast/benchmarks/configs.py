"""Benchmark configurations and the random ensemble every implementation shares.

The headline config is the PETS HalfCheetah planning step (Chua et al. 2018, as
configured in mbrl-lib): HalfCheetah-v5 with the x position kept in the
observation (obs 18, act 6), an ensemble of 5 Gaussian MLPs with 4 hidden layers
of 200 SiLU units, TS-inf propagation with 20 particles, and CEM with a
population of 500, horizon 30, 5 iterations, 50 elites and momentum 0.1.

Timing does not depend on training, so the weights are a PyTorch-like uniform
random init, ``U(-1/sqrt(d_in), 1/sqrt(d_in))``, drawn from one seed: every
implementation (mbrl-fast fp32/bf16, eager torch, mbrl-lib) gets the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from mbrl_fast.ops.ensemble_mlp import MLPParams, pack_bf16

# Shifts the random model's log-variance from ~-0.5 (std ~0.8 per step) to ~-4 (std ~0.14),
# closer to a trained model: with the raw init the reward noise (std ~16 per step after
# the / dt of HalfCheetah's reward) swamps the differences between plans, and decision
# quality cannot be told apart (the measurement: docs/measurements.md).
LOGVAR_BIAS = -4.0


@dataclass(frozen=True)
class PlannerBenchConfig:
    """One planning problem: model size, CEM settings and the benchmark's own knobs. Fields
    shared with ``ModelConfig`` (models/config.py) and ``PlannerConfig`` (planning/config.py)
    carry their names."""

    name: str
    obs_dim: int = 18
    """Observation width D (HalfCheetah-v5, exclude_current_positions_from_observation=False)."""
    act_dim: int = 6
    """Action width A; actions live in [-1, 1]^A."""
    ensemble_size: int = 5
    """Ensemble members E."""
    layers: int = 4
    """Hidden layers of the MLP (``ModelConfig.layers``; mbrl-lib's ``num_layers``); one
    output layer follows."""
    hidden: int = 200
    """Width of every hidden layer (``ModelConfig.hidden``)."""
    activation: str = "silu"
    """Hidden activation."""
    population: int = 500
    """CEM population (action sequences per iteration)."""
    particles: int = 20
    """TS-inf particles per action sequence."""
    horizon: int = 30
    """Planning horizon H."""
    iterations: int = 5
    """CEM iterations per planning step."""
    num_elites: int = 50
    """Elites kept per CEM iteration."""
    alpha: float = 0.1
    """CEM momentum: new = alpha * old + (1 - alpha) * elite statistic."""
    reward: str = "halfcheetah"
    """Built-in reward of mbrl_fast.ops.rewards."""
    seed: int = 0
    """Seed of the weights, the start state and every planner's noise."""
    latency_population: int = 100
    """Population of the latency / batched-planning measurements."""
    batch_starts: int = 16
    """Start states planned in one batched call."""
    peak_n: int = 4096
    """Size of the n x n x n sgemm that measures the matmul peak."""
    quality_particles: int = 100
    """Particles used to score the fp32 and bf16 plans with the fp32 model."""
    quality_starts: int = 8
    """Start states the decision-quality returns are averaged over."""

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer widths (D + A, hidden..., 2 D): a Gaussian head over delta-states."""
        d_in = self.obs_dim + self.act_dim
        return (d_in,) + (self.hidden,) * self.layers + (2 * self.obs_dim,)

    def to_dict(self) -> dict:
        return asdict(self)


CONFIGS: dict[str, PlannerBenchConfig] = {
    "pets-halfcheetah": PlannerBenchConfig("pets-halfcheetah"),
    # Same model, every planner dimension shrunk: the harness and CLI tests run it in seconds.
    "tiny": PlannerBenchConfig(
        "tiny", hidden=32, layers=2, population=20, particles=4, horizon=5,
        iterations=2, num_elites=5, latency_population=10, batch_starts=3, peak_n=256,
        quality_particles=8, quality_starts=2,
    ),
}


def get_config(name: str, **overrides) -> PlannerBenchConfig:
    """A named config, optionally with fields replaced (``population=100``)."""
    if name not in CONFIGS:
        raise ValueError(f"config must be one of {sorted(CONFIGS)}, got {name!r}")
    return replace(CONFIGS[name], **overrides)


def make_params(cfg: PlannerBenchConfig) -> MLPParams:
    """The shared random ensemble in mbrl-fast's fp32 layout.

    weights[l] [E, d_l, d_{l+1}], biases[l] [E, d_{l+1}] ~ U(-1/sqrt(d_l), 1/sqrt(d_l)),
    plus ``LOGVAR_BIAS`` on the log-variance half of the last bias; identity input
    normalizer (mean 0, std 1: the work is done, the values unchanged); mbrl-lib's
    default log-variance bounds (max 0.5, min -10).
    """
    g = torch.Generator().manual_seed(cfg.seed)
    sizes = cfg.sizes
    weights, biases = [], []
    for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = 1.0 / d_in**0.5
        weights.append((torch.rand(cfg.ensemble_size, d_in, d_out, generator=g) * 2 - 1) * bound)
        biases.append((torch.rand(cfg.ensemble_size, d_out, generator=g) * 2 - 1) * bound)
    d_out = sizes[-1] // 2
    biases[-1][:, d_out:] += LOGVAR_BIAS
    return MLPParams(
        weights=tuple(w.contiguous() for w in weights),
        biases=tuple(b.contiguous() for b in biases),
        activation=cfg.activation,
        in_mean=torch.zeros(sizes[0]),
        in_std=torch.ones(sizes[0]),
        max_logvar=torch.full((d_out,), 0.5),
        min_logvar=torch.full((d_out,), -10.0),
    )


def to_bf16(params: MLPParams) -> MLPParams:
    """The same ensemble with bf16-packed weights (ops.pack_bf16); biases and head stay fp32."""
    return replace(params, weights=tuple(pack_bf16(w) for w in params.weights))


def start_states(cfg: PlannerBenchConfig, n: int = 1) -> torch.Tensor:
    """[n, D] start states near HalfCheetah's reset distribution (0.1 * N(0, 1))."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    return 0.1 * torch.randn(n, cfg.obs_dim, generator=g)


def matmul_gflop_per_act(cfg: PlannerBenchConfig, population: int | None = None,
                         starts: int = 1) -> float:
    """Useful matmul work of one planning step, in GFLOP.

    Every particle goes through its one TS-inf member at every step:
    2 * sum_l d_l d_{l+1} FLOP per row, rows = starts * population * particles,
    times horizon * iterations. Biases, activations, the head and the reward are
    not counted (they are < 1% of it at the headline size).
    """
    p = cfg.population if population is None else population
    sizes = cfg.sizes
    per_row = 2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    rows = starts * p * cfg.particles * cfg.horizon * cfg.iterations
    return per_row * rows / 1e9
