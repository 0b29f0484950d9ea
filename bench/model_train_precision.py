"""A dynamics-model training round in fp32 against bf16 (``TrainConfig.precision``), in one run.

    python bench/model_train_precision.py --json bench/results/model_train_precision_cpu.json

MBPO's Hopper ensemble (7 members, 4 x 200 SiLU, a learned reward, obs 11, act 3), Adam
lr 1e-3, batch 256, holdout 0.2, ``--epochs`` epochs per round with early stopping off,
on ``--rows`` synthetic transitions (a smooth random dynamics with noise, so that the
holdout MSE means something). Each repeat trains a fresh model from the same seed in each
precision, the order alternating; the figure is the median over repeats of the seconds
per round, the ratio the median of the per-repeat ratios, and the holdout MSE per member
(scored in fp32 in both cases) shows what bf16 costs in fit. Where the CPU has no native
bf16 GEMMs the bf16 side is refused (nn/dense.check_precision) and only fp32 runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

from mbrl_fast.benchmarks import harness
from mbrl_fast.models import EnsembleTrainer, ProbabilisticEnsemble, ReplayBuffer
from mbrl_fast.nn.dense import bf16_supported

OBS, ACT = 11, 3


def synthetic_buffer(rows: int, seed: int = 0) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((rows, OBS))
    act = rng.uniform(-1, 1, (rows, ACT))
    w = rng.standard_normal((OBS + ACT, OBS)) * 0.3
    nxt = obs + 0.1 * np.tanh(np.concatenate([obs, act], 1) @ w) \
        + 0.01 * rng.standard_normal((rows, OBS))
    buf = ReplayBuffer(OBS, ACT, rows)
    buf.add_batch(obs, act, nxt, np.sin(obs[:, 0]) + act[:, 0], np.zeros(rows, bool))
    return buf


def one_round(buf: ReplayBuffer, precision: str, epochs: int) -> dict:
    model = ProbabilisticEnsemble(OBS, ACT, reward_head=True, seed=0)
    trainer = EnsembleTrainer(model, batch_size=256, epochs=epochs, patience=0,
                              holdout_ratio=0.2, seed=0, precision=precision)
    tic = time.perf_counter()
    fit = trainer.train(buf)
    return dict(seconds=time.perf_counter() - tic, epochs=fit.epochs,
                holdout_mse=[round(x, 6) for x in fit.holdout_mse])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    buf = synthetic_buffer(args.rows)
    precisions = ["fp32", "bf16"] if bf16_supported() else ["fp32"]
    rounds = {pr: [] for pr in precisions}
    for rep in range(args.repeats):
        for pr in precisions[:: 1 if rep % 2 == 0 else -1]:
            rounds[pr].append(one_round(buf, pr, args.epochs))
            print(f"repeat {rep} {pr}: {rounds[pr][-1]}", flush=True)
    result = dict(
        what="one model training round (7 x 4 x 200 SiLU ensemble with a reward head, "
             "batch 256, early stopping off) in fp32 and in bf16",
        command="python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        rows=args.rows, epochs=args.epochs, repeats=args.repeats, threads=args.threads,
        seconds_median={pr: round(statistics.median(r["seconds"] for r in rr), 3)
                        for pr, rr in rounds.items()},
        rounds=rounds, machine=harness.machine_info())
    if "bf16" in rounds:
        ratios = [a["seconds"] / b["seconds"]
                  for a, b in zip(rounds["fp32"], rounds["bf16"], strict=True)]
        result["bf16_speedup_median"] = round(statistics.median(ratios), 3)
        result["bf16_speedup_per_repeat"] = [round(x, 3) for x in ratios]
    print(json.dumps({k: result[k] for k in result if k not in ("rounds", "machine")}))
    if args.json:
        harness.write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
