"""bench/model_train_precision.py: each round trains in the precision it is named for, and
the JSON holds both precisions' times, fits and their ratio."""

from __future__ import annotations

import json

import pytest
from helpers import load_bench_script

from mbrl_fast.nn.dense import bf16_supported


def test_rounds_train_in_the_named_precision(monkeypatch, tmp_path):
    bench = load_bench_script("model_train_precision")
    seen = []
    real = bench.EnsembleTrainer

    def recording(*a, **kw):
        trainer = real(*a, **kw)
        seen.append(trainer.precision)
        return trainer

    monkeypatch.setattr(bench, "EnsembleTrainer", recording)
    out = tmp_path / "r.json"
    result = bench.main(["--rows", "600", "--epochs", "1", "--repeats", "2", "--json", str(out)])
    want = ["fp32", "bf16"] if bf16_supported() else ["fp32"]
    assert seen == (want + want[::-1])  # the order alternates per repeat
    assert json.loads(out.read_text())["seconds_median"].keys() == set(want)
    for rounds in result["rounds"].values():
        assert all(r["epochs"] == 1 and len(r["holdout_mse"]) == 7 for r in rounds)
    if bf16_supported():
        assert len(result["bf16_speedup_per_repeat"]) == 2
    else:
        pytest.skip("no native bf16 GEMMs: only the fp32 side ran")
