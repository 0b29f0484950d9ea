"""Type stub for mbrl_fast._C_cuda, the compiled CUDA kernels (private: use mbrl_fast.ops).

Pointers are device addresses (``tensor.data_ptr()``); ``stream`` is torch's
current CUDA stream as an integer (``torch.cuda.current_stream().cuda_stream``).
Launchers: mbrl_fast/ops/_cuda.py; declarations: csrc/cuda/ops_cuda.h.
"""

def device_count() -> int: ...

class MLPDesc:
    sizes: list[int]
    weights: list[int]
    biases: list[int]
    members: int  # E
    bf16: bool
    activation: int
    slope: float
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
    mode: int
    reward: int
    return_states: bool
    members: list[int]  # member slots (fixed: [member])
    feat_src: list[int]  # [F] model input features (ObsFeatures.table); [] for features(s) = s
    feat_kind: list[int]  # [F] 0 value, 1 sin, 2 cos
    num_members_all: int
    seed: int
    offset: int
    dt: float
    obs: int
    actions: int
    order: int
    states: int
    rewards: int
    row_returns: int
    taken: int
    bad: int
    def __init__(self) -> None: ...

def philox_uint32(out: int, n: int, seed: int, offset: int, stream: int) -> None: ...
def philox_uniform(out: int, n: int, seed: int, offset: int, stream: int) -> None: ...
def philox_normal(out: int, n: int, seed: int, offset: int, stream: int) -> None: ...
def ensemble_mlp(mlp: MLPDesc, x: int, batch: int, out: int, logvar: int, stream: int) -> None: ...
def propagate(model: MLPDesc, policy: MLPDesc | None, desc: PropagateDesc, stream: int) -> None: ...
def cem_update(
    samples: int, returns: int, mean: int, var: int, n: int, p: int, ha: int, num_elites: int,
    alpha: float, epsilon: float, new_mean: int, new_var: int, elites: int, best: int,
    best_return: int, converged: int, stream: int,
) -> None: ...
def mppi_update(
    samples: int, returns: int, n: int, p: int, ha: int, temperature: float, mean: int,
    var: int, weights: int, stream: int,
) -> None: ...
def truncated_normal(
    mean: int, var: int, lower: int, upper: int, n: int, p: int, h: int, a: int, seed: int,
    offset: int, out: int, stream: int,
) -> None: ...
