"""One training forward + backward of MBPO's networks through each path of nn.dense.mlp_forward.

    python bench/mlp_train_paths.py --threads 2 --json bench/results/mlp_train_paths_cpu_t2.json

Two calls, each a forward and the backward of sum(y^2) for every weight and bias:

- ``model``: MBPO's Hopper ensemble, 7 members 14 -> 4 x 200 SiLU -> 24, batch 256 (no
  input gradient), the model-training step's products;
- ``critic``: SAC's twin critics, 2 members 14 -> 2 x 256 ReLU -> 1, on 512 rows of which
  the first 256 train the weights and all 512 pass a gradient to the input (SAC's
  ``weight_grad_rows``).

Paths: ``torch`` (baddbmm under autograd), ``onednn`` (ReLU networks only) and ``cpu``
(the compiled kernels, csrc/cpu/mlp_train*), each in fp32 and, where the CPU has native
bf16 GEMMs, bf16. One timed call = ``--steps`` steps; the paths take turns
(harness.time_round_robin), so a change of load slows them alike. Reported: ms per step
(median), and each path's time over the torch path's in the same precision.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sac_update import git_commit  # noqa: E402

from mbrl_fast.benchmarks.harness import machine_info, time_round_robin, write_json  # noqa: E402
from mbrl_fast.nn.dense import (  # noqa: E402
    bf16_supported,
    keep_freed_memory,
    mlp_forward,
    onednn_available,
)

CALLS = {  # members, rows, sizes, activation, weight_grad_rows, input gradient
    "model": (7, 256, [14, 200, 200, 200, 200, 24], "silu", None, False),
    "critic": (2, 512, [14, 256, 256, 1], "relu", 256, True),
}


def make_step(name: str, backend: str, precision: str, seed: int = 0):
    e, rows, sizes, act, n_w, x_grad = CALLS[name]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(e, rows, sizes[0], generator=g).requires_grad_(x_grad)
    ws = [(torch.randn(e, i, o, generator=g) / i ** 0.5).requires_grad_()
          for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    bs = [torch.zeros(e, o).requires_grad_() for o in sizes[1:]]
    leaves = ([x] if x_grad else []) + ws + bs

    def step():
        y = mlp_forward(x, ws, bs, act, backend, n_w, precision)
        return torch.autograd.grad(y.square().sum(), leaves)

    flops = 2 * e * sum(i * o for i, o in zip(sizes[:-1], sizes[1:], strict=True))
    # forward on all rows, dW on the training rows, dX on all rows down to the input (or to
    # the first layer's output)
    dx = sum(i * o for i, o in zip(sizes[:-1], sizes[1:], strict=True)
             if x_grad or i != sizes[0])
    mflop = (flops * rows + flops * (n_w or rows) + 2 * e * dx * rows) / 1e6
    return step, mflop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--steps", type=int, default=20, help="steps per timed call")
    ap.add_argument("--repeats", type=int, default=15, help="timed calls per path")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the agents do
    precisions = ["fp32"] + (["bf16"] if bf16_supported() else [])
    results = {}
    for name, (_, _, _, act, _, _) in CALLS.items():
        backends = ["torch", "cpu"] + (["onednn"] if act == "relu" and onednn_available() else [])
        fns, mflop = {}, 0.0
        for backend in backends:
            for precision in precisions:
                step, mflop = make_step(name, backend, precision)
                fns[f"{backend}/{precision}"] = (
                    lambda step=step: [step() for _ in range(args.steps)])
        timings = time_round_robin(fns, repeats=args.repeats, warmup=2)
        ms = {k: t.median / args.steps * 1e3 for k, t in timings.items()}
        results[name] = {
            "call": dict(zip(("members", "rows", "sizes", "activation", "weight_grad_rows",
                              "input_gradient"), CALLS[name], strict=True)),
            "mflop_per_step": round(mflop, 1),
            "ms_per_step": {k: round(v, 3) for k, v in ms.items()},
            "gflops": {k: round(mflop / v, 1) for k, v in ms.items()},
            "over_torch": {k: round(v / ms[f"torch/{k.split('/')[1]}"], 3) for k, v in ms.items()},
        }
        print(name, results[name]["ms_per_step"], results[name]["over_torch"], flush=True)
    out = {
        "what": "one training forward + backward of MBPO's ensemble and SAC's twin critics "
                "through each nn.dense.mlp_forward path (ms per step; over_torch < 1: faster)",
        "command": "python bench/mlp_train_paths.py " + " ".join(sys.argv[1:]),
        "commit": git_commit(),
        "threads": args.threads,
        "calls": results,
        "machine": machine_info(),
    }
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
