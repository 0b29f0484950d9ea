"""bench/model_train_split.py: the products it finds in a profiled training epoch are the
ensemble's forward and backward, FLOP for FLOP, in each precision it names."""

from __future__ import annotations

import json

import numpy as np
from helpers import load_bench_script

from mbrl_fast.nn.dense import bf16_supported


def test_counts_the_ensembles_forward_and_backward_products(tmp_path):
    bench = load_bench_script("model_train_split")
    out = tmp_path / "split.json"
    # 1,600 rows: 320 held out, 1,280 = 5 full batches of 256 per member
    result = bench.main(["--rows", "1600", "--rounds", "1", "--json", str(out)])
    sizes = [14, 200, 200, 200, 200, 24]  # obs 11 + act 3 -> 4 x 200 -> (11 + reward) x 2
    macs = [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    # forward and dW of every layer, dX of every layer but the first (x needs no gradient)
    flops = 2 * 7 * 256 * (2 * sum(macs) + sum(macs[1:]))
    want = ["fp32", "bf16"] if bf16_supported() else ["fp32"]
    assert list(result["variants"]) == want
    for v in result["variants"].values():
        assert v["steps_per_epoch"] == 5 and v["holdout_rows"] == 320
        assert abs(v["gemm_mflop_per_step"] - flops / 1e6) < 0.1
        assert abs(v["other_ms"] - (v["ms_per_step"] - v["gemm_replay_ms"])) < 2e-3
        assert v["fused_bound_speedup"] > 0
    assert json.loads(out.read_text())["variants"].keys() == set(want)


def test_draws_holdout_and_bootstrap_as_the_trainer_does():
    bench = load_bench_script("model_train_split")
    model = bench.ProbabilisticEnsemble(bench.OBS, bench.ACT, reward_head=True, seed=0)
    trainer = bench.EnsembleTrainer(model, holdout_ratio=0.2, max_holdout=5000)
    x, y, boot, hold = bench.training_data(trainer, bench.synthetic_buffer(1000))
    assert x.shape == (1000, 14) and y.shape == (1000, 12)
    assert boot.shape == (7, 800) and len(hold) == 200
    assert not np.isin(boot, hold).any()  # members train on rows the holdout never sees
    assert int(model.normalizer.count.item()) == 1000
