"""Model-training steps eager against ``torch.compile`` (``TrainConfig.compile``), in one run.

    python bench/model_train_compile.py --threads 2 --json bench/results/model_train_compile.json

MBPO's Hopper ensemble (bench/model_train_split.py's: 7 members, 4 x 200 SiLU, a learned
reward, batch 256, or PETS's 32 with ``--batch 32``, Adam), trained by ``EnsembleTrainer``'s
own epoch (shuffle, gather, NLL + decay, backward, fused Adam) on ``--rows`` synthetic
transitions, glibc keeping freed memory as MBPO has it. Variants: ``fp32`` and
``fp32+compile`` (the published numerics), and where the CPU has native bf16 GEMMs
``bf16`` and ``bf16+compile``. Each variant has its own
trainer and weights; after each compiled trainer's warm-up epoch (which pays the
compilation, reported as ``warmup_s``) the variants take turns, one epoch each per round
(harness.time_round_robin), so a change of load hits them alike. Reported: ms per step
(median over rounds) and ``speedup`` = the eager variant's time over the compiled one's in
each round, median over rounds. ``--max-autotune`` adds ``PRECISION+compile+max-autotune``
(Inductor's autotuning among its C++ GEMM templates and aten's products; on a CPU without
AMX it keeps aten's, docs/mbpo.md, stop 46) with ``speedup_over_compile``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from torch._inductor.cpu_vec_isa import pick_vec_isa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_train_precision import ACT, OBS, synthetic_buffer  # noqa: E402
from model_train_split import BATCH, HOLDOUT_RATIO, MAX_HOLDOUT, training_data  # noqa: E402
from sac_update import git_commit  # noqa: E402

from mbrl_fast.benchmarks.harness import machine_info, time_round_robin, write_json  # noqa: E402
from mbrl_fast.models import EnsembleTrainer, ProbabilisticEnsemble  # noqa: E402
from mbrl_fast.nn.dense import bf16_supported, keep_freed_memory  # noqa: E402


def make_epoch(buf, precision: str, compile_: bool, batch: int = BATCH):
    """(one training epoch as a closure, its steps, the warm-up epoch's seconds)."""
    model = ProbabilisticEnsemble(OBS, ACT, reward_head=True, seed=0)
    trainer = EnsembleTrainer(model, batch_size=batch, patience=0, holdout_ratio=HOLDOUT_RATIO,
                              max_holdout=MAX_HOLDOUT, seed=0, precision=precision,
                              compile=compile_)
    x, y, boot, _ = training_data(trainer, buf)
    tic = time.perf_counter()
    trainer._epoch(x, y, boot)
    return (lambda: trainer._epoch(x, y, boot)), -(-boot.shape[1] // batch), \
        time.perf_counter() - tic


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=5, help="timed epochs per variant")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=BATCH, help="rows per member per step "
                   "(MBPO 256, PETS 32)")
    p.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=None,
                   help="default: fp32, and bf16 where the CPU has native bf16 GEMMs")
    p.add_argument("--max-autotune", action="store_true",
                   help="also a variant PRECISION+compile+max-autotune: Inductor's max_autotune "
                        "with its C++ GEMM templates as candidates (max_autotune_gemm_backends "
                        "CPP,ATEN), which fuse the products' epilogues where they win the "
                        "autotuning")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    buf = synthetic_buffer(args.rows)
    precisions = args.precisions or (["fp32", "bf16"] if bf16_supported() else ["fp32"])
    epochs, steps, warmup = {}, {}, {}
    for pr in precisions:
        for compile_ in (False, True):
            name = pr + ("+compile" if compile_ else "")
            epochs[name], steps[name], warmup[name] = make_epoch(buf, pr, compile_, args.batch)
    if args.max_autotune:
        import torch._inductor.config as inductor_config
        for pr in precisions:
            name = pr + "+compile+max-autotune"
            torch._dynamo.reset()  # else the same loss function's graph would be reused
            with inductor_config.patch(max_autotune=True, max_autotune_gemm_backends="CPP,ATEN"):
                epochs[name], steps[name], warmup[name] = make_epoch(buf, pr, True, args.batch)
    # one untimed epoch each after the resets: any recompilation falls outside the timing
    timings = time_round_robin(epochs, repeats=args.rounds, warmup=int(args.max_autotune))
    variants = {}
    for name, t in timings.items():
        variants[name] = dict(ms_per_step=round(1e3 * t.median / steps[name], 3),
                              ms_per_step_per_round=[round(1e3 * s / steps[name], 3)
                                                     for s in t.times],
                              warmup_s=round(warmup[name], 2))
    for pr in precisions:
        eager, comp = timings[pr].times, timings[pr + "+compile"].times
        variants[pr + "+compile"]["speedup"] = round(
            statistics.median(a / b for a, b in zip(eager, comp, strict=True)), 3)
        if args.max_autotune:  # over the default compiled variant's time
            tuned = timings[pr + "+compile+max-autotune"].times
            variants[pr + "+compile+max-autotune"]["speedup_over_compile"] = round(
                statistics.median(a / b for a, b in zip(comp, tuned, strict=True)), 3)
    result = dict(
        what="one training step of MBPO's Hopper ensemble (7 x 4 x 200 SiLU, reward head, "
             f"batch {args.batch}), eager against torch.compile (TrainConfig.compile)",
        command="python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        commit=git_commit(), rows=args.rows, threads=args.threads, batch=args.batch,
        steps_per_epoch=steps[precisions[0]], variants=variants, machine=machine_info(),
        inductor_vec_isa=str(pick_vec_isa()))
    for name, v in variants.items():
        print(name, v, flush=True)
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
