"""Type stub for mbrl_fast._C, the compiled CPU kernels (private: use mbrl_fast.ops).

Every pointer argument is the integer address (``tensor.data_ptr()``) of a
contiguous host buffer that the Python launcher validated; 0 means absent.
Shapes are given in the launchers (mbrl_fast/ops/_cpu.py, ops/elite_update.py)
and in the headers under csrc/cpu/. Long calls release the GIL.
"""

# ---- runtime CPU features. `isa` arguments are kernel path ids, backends.CPU_ISAS:
# 0 portable, 1 avx2, 2 avx512; every entry point checks the id against the CPU and
# raises (RuntimeError naming the missing features) rather than run what the CPU lacks.
def cpu_has_avx2() -> bool: ...
def cpu_has_avx512() -> bool: ...
def cpu_has_avx512_bf16() -> bool: ...
def cpu_isa_missing(isa: int) -> str: ...
def set_portable_baseline_only(on: bool) -> None: ...

# ---- noise: element i of stream (seed, offset), see csrc/include/philox.h
def philox_uint32(out: int, n: int, seed: int, offset: int) -> None: ...
def philox_uniform(out: int, n: int, seed: int, offset: int) -> None: ...
def philox_normal(out: int, n: int, seed: int, offset: int, isa: int) -> None: ...

# ---- descriptors: one per network and one per propagate call (csrc/include/mlp_desc.h,
# csrc/cpu/propagate.h); MLPDesc has the fields of _C_cuda.MLPDesc, PropagateDesc those of
# _C_cuda.PropagateDesc that mean the same on the CPU, plus `callback`.
class MLPDesc:
    sizes: list[int]  # d_0 .. d_L
    weights: list[int]  # [L] fp32 [E, d_l, d_{l+1}] or bf16-packed (isa 2 with AVX512-BF16)
    biases: list[int]  # [L] fp32 [E, d_{l+1}]
    members: int  # E
    bf16: bool
    activation: int  # ops/ensemble_mlp.ACTIVATION_IDS
    slope: float  # leaky_relu slope
    in_mean: int
    in_std: int
    max_logvar: int
    min_logvar: int
    def __init__(self) -> None: ...

class PropagateDesc:
    n: int
    p: int
    k: int
    h: int
    d: int
    a: int
    d_out: int
    mode: int  # ops/propagate.MODE_IDS
    reward: int  # ops/contract.RewardKind: 0 none, 1 model head, 2 HalfCheetah, 3 C callback
    members: list[int]  # member slots (fixed: [member])
    feat_src: list[int]
    feat_kind: list[int]
    seed: int
    offset: int
    dt: float  # the HalfCheetah reward's control step (Reward.dt)
    callback: int
    obs: int  # [N, D]
    actions: int  # [N, P, H, A], 0 with a policy
    states: int  # [N P K, H + 1, D] or 0
    rewards: int  # [N P K, H] or 0
    row_returns: int  # [N P K] or 0
    taken: int  # [N P K, H, A] with a policy
    def __init__(self) -> None: ...

# ---- ensemble_mlp: x [E, B, d_0] -> out [E, B, d_L] (or mean / logvar [E, B, d_L / 2])
def ensemble_mlp(mlp: MLPDesc, x: int, batch: int, out: int, out_logvar: int, isa: int) -> None: ...

# ---- propagate: returns the first non-finite state (t, member, n, p, k); t = -1 if none
def propagate(
    model: MLPDesc, policy: MLPDesc | None, desc: PropagateDesc, isa: int,
) -> tuple[int, int, int, int, int]: ...

# ---- elite_update
def cem_update(
    samples: int, returns: int, mean: int, var: int, n: int, p: int, ha: int, k: int,
    alpha: float, epsilon: float, new_mean: int, new_var: int, elites: int, best: int,
    best_return: int, converged: int,
) -> None: ...
def mppi_update(
    samples: int, returns: int, n: int, p: int, ha: int, temperature: float, new_mean: int,
    new_var: int, weights: int,
) -> None: ...
def truncated_normal(
    mean: int, var: int, lower: int, upper: int, n: int, p: int, h: int, a: int, seed: int,
    offset: int, out: int,
) -> None: ...
def colored_noise(
    mean: int, var: int, lower: int, upper: int, n: int, p: int, h: int, a: int, scales: int,
    sigma: float, seed: int, offset: int, out: int,
) -> None: ...

# ---- skill_reward (DADS): log_q [M, L + 1] (column 0: the transition's skill), reward [M]
def skill_reward(
    mlp: MLPDesc, m: int, l: int, f: int, z: int, p: int, prior_shared: bool,
    include_skill: bool, x: int, target: int, skill: int, prior: int, log_q: int, reward: int,
    isa: int,
) -> None: ...
# ---- imagine: Dreamer's imagination rollout, forward / backward (csrc/cpu/imagine.h, launcher
# mbrl_fast/ops/_cpu_imagine.py). dims: B, H, D, S, A, Hi, C; consts: unimix, z_min_std,
# act_min_std, act_max_std, act_mean_scale; counts: prior, actor, each head, detached heads;
# io: start_h, start_z, eps, noise_z, h, z, action, mean, std, dh, dz, daction, dmean, dstd,
# d_start_h, d_start_z. Raises ValueError when `saved` holds fewer than imagine_saved_floats.
def imagine(
    backward: bool, dims: list[int], stoch_kind: int, activation: int, consts: list[float],
    bf16: bool, layer_in: list[int], layer_out: list[int], layer_w: list[int],
    layer_b: list[int], layer_dw: list[int], layer_db: list[int], counts: list[int],
    io: list[int], heads: list[int], dheads: list[int], saved: int, saved_floats: int, isa: int,
    tile_rows: int,
) -> None: ...
def imagine_saved_floats(
    dims: list[int], stoch_kind: int, activation: int, layer_in: list[int],
    layer_out: list[int], counts: list[int], tile_rows: int,
) -> int: ...
def imagine_resolve_isa(isa: int, bf16: bool) -> int: ...
# ---- mlp_train: training forward / backward of stacked MLPs (csrc/cpu/mlp_train.h, launcher
# mbrl_fast/nn/dense.py). dims: E, B, grad_rows; addresses 0 = none.
def mlp_train(
    backward: bool, dims: list[int], sizes: list[int], activation: int, bf16: bool,
    shared_x: bool, w: list[int], b: list[int], dw: list[int], db: list[int], pre: list[int],
    post: list[int], dpre: list[int], x: int, y: int, dy: int, dx: int, isa: int, threads: int,
) -> None: ...
# ---- sac_grads: one SAC update's gradients and metrics (csrc/cpu/sac_grads.h, launcher
# mbrl_fast/agents/sac.py). dims: B, D, A; data: obs, act, reward, next_obs, done, eps,
# max_logvar, min_logvar; scalars: log_alpha, gamma, target_entropy; out [7] float32.
def sac_grads(
    dims: list[int], pi_sizes: list[int], q_sizes: list[int], activation: int, bf16: bool,
    pi_w: list[int], pi_b: list[int], q_w: list[int], q_b: list[int], qt_w: list[int],
    qt_b: list[int], pi_dw: list[int], pi_db: list[int], q_dw: list[int], q_db: list[int],
    data: list[int], scalars: list[float], out: int, isa: int, threads: int,
) -> None: ...
