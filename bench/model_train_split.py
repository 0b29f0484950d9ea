"""Where one model-training step's time goes: matrix products against everything else.

    python bench/model_train_split.py --json bench/results/model_train_split_cpu.json

bench/sac_update_split.py's question for MBPO's other half: in the Hopper run the model
phase (a training round every 250 env steps) took as long as the 20 SAC updates per step.
The model is MBPO's Hopper ensemble (bench/model_train_precision.py's: 7 members, 4 x 200
SiLU, a learned reward, obs 11, act 3), Adam lr 1e-3, batch 256, holdout 0.2 (at most
5,000 rows), trained on ``--rows`` synthetic transitions by ``EnsembleTrainer``'s own
epoch (shuffle each member's bootstrap sample, gather the minibatches, Gaussian NLL + L2
decay, backward, fused Adam), ``--threads`` threads, glibc keeping freed memory as MBPO
has it (``keep_freed_memory``). For each precision (``fp32``, and
``bf16`` where the CPU has native bf16 GEMMs):

- ``ms_per_step``: wall-clock of a training epoch over its steps (median of ``--rounds``
  epochs), and ``holdout_ms``: the holdout scoring that follows each epoch;
- ``profiled``: the torch profiler's split of one epoch (self CPU time per op) into
  matrix products and the rest, per step, with the ten costliest other ops (the profiler
  adds its own cost to every op: which ops, not how long);
- ``gemm_replay_ms``: one step's products (their recorded shapes, strides and dtypes)
  replayed back to back without the profiler; ``other_ms`` = ``ms_per_step`` - that;
- ``dense_gflops``: a 256 x 256 x 256 product of the same precision in this process, and
  ``fused_bound_speedup`` = ``ms_per_step`` / min(replay, the step's FLOPs at the dense
  rate): the most a training step compiled into one kernel could gain at these rates.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_train_precision import ACT, OBS, synthetic_buffer  # noqa: E402
from sac_update import git_commit  # noqa: E402
from sac_update_split import gemm_calls, split_profile, time_calls  # noqa: E402

from mbrl_fast.benchmarks.harness import (  # noqa: E402
    machine_info,
    matmul_peak_gflops,
    write_json,
)
from mbrl_fast.models import EnsembleTrainer, ProbabilisticEnsemble  # noqa: E402
from mbrl_fast.nn.dense import bf16_supported, keep_freed_memory  # noqa: E402

BATCH, HOLDOUT_RATIO, MAX_HOLDOUT = 256, 0.2, 5000


def training_data(trainer: EnsembleTrainer, buf):
    """(x, y, bootstrap rows [E, N_train], holdout rows) as ``EnsembleTrainer.train`` draws
    them: the normalizer fitted first (its step 1), then the trainer's own split."""
    model = trainer.model
    data = buf.all()
    model.normalizer.update(model.make_inputs(data.obs, data.act, dtype=torch.float64))
    x, y, hold, _, boot = trainer.split(data)
    return x, y, boot, hold


def measure_variant(precision: str, buf, rounds: int) -> dict:
    model = ProbabilisticEnsemble(OBS, ACT, reward_head=True, seed=0)
    trainer = EnsembleTrainer(model, batch_size=BATCH, patience=0,
                              holdout_ratio=HOLDOUT_RATIO, max_holdout=MAX_HOLDOUT, seed=0,
                              precision=precision)
    x, y, boot, hold = training_data(trainer, buf)
    steps = -(-boot.shape[1] // BATCH)
    trainer._epoch(x, y, boot)  # warm-up (the epoch MBPO's round runs, early stopping aside)
    wall = []
    for _ in range(rounds):
        tic = time.perf_counter()
        trainer._epoch(x, y, boot)
        wall.append(1e3 * (time.perf_counter() - tic) / steps)
    holdout = []
    for _ in range(5):
        tic = time.perf_counter()
        trainer._member_mse(x[hold], y[hold])
        holdout.append(1e3 * (time.perf_counter() - tic))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        trainer._epoch(x, y, boot)
    events = prof.events()
    out = dict(precision=precision, steps_per_epoch=steps,
               ms_per_step=round(statistics.median(wall), 3),
               ms_per_step_per_round=[round(v, 3) for v in wall],
               holdout_rows=len(hold), holdout_ms=round(statistics.median(holdout), 2))
    out["profiled"] = split_profile(events, steps)
    out["gemm_mflop_per_step"] = out["profiled"].pop("gemm_mflop_per_update")
    out["profiled"].pop("gemm_gflops")
    out["profiled"] = {k.replace("update", "step"): v for k, v in out["profiled"].items()}
    replay = time_calls(gemm_calls(events, steps))
    out.update(gemm_replay_ms=round(replay, 3),
               gemm_replay_gflops=round(out["gemm_mflop_per_step"] / replay, 1),
               other_ms=round(out["ms_per_step"] - replay, 3))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3, help="timed epochs per precision")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as MBPO does (MBPOConfig.keep_freed_memory): no page faults per step
    buf = synthetic_buffer(args.rows)
    precisions = ["fp32", "bf16"] if bf16_supported() else ["fp32"]
    result = dict(
        what="one training step of MBPO's Hopper ensemble (7 x 4 x 200 SiLU, reward head, "
             "batch 256): matrix products against the rest, and the bound on a fused step",
        command="python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        commit=git_commit(), rows=args.rows, threads=args.threads,
        load_avg_1min_before=round(os.getloadavg()[0], 2), variants={})
    rates = {pr: matmul_peak_gflops(256, repeats=500,
                                    dtype=torch.float32 if pr == "fp32" else torch.bfloat16)
             for pr in precisions}
    result["dense_gflops"] = {k: round(v, 1) for k, v in rates.items()}
    for pr in precisions:
        v = measure_variant(pr, buf, args.rounds)
        dense = v["gemm_mflop_per_step"] / rates[pr]  # MFLOP / GFLOP/s = ms
        v.update(fused_bound_dense_ms=round(dense, 3),
                 fused_bound_speedup=round(v["ms_per_step"] / min(dense, v["gemm_replay_ms"]),
                                           2))
        result["variants"][pr] = v
        print(pr, json.dumps(v), flush=True)
    result["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    result["machine"] = machine_info()
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
