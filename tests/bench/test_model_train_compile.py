"""bench/model_train_compile.py: each precision timed eager and compiled in the same rounds,
the speedup computed from those rounds."""

from __future__ import annotations

import json
import statistics

from helpers import load_bench_script

from mbrl_fast.nn.dense import bf16_supported


def test_times_eager_and_compiled_steps_in_the_same_rounds(tmp_path):
    bench = load_bench_script("model_train_compile")
    out = tmp_path / "compile.json"
    # 1,600 rows: 320 held out, 1,280 = 5 full batches of 256 per member
    result = bench.main(["--rows", "1600", "--rounds", "2", "--threads", "1",
                         "--json", str(out)])
    precisions = ["fp32", "bf16"] if bf16_supported() else ["fp32"]
    assert list(result["variants"]) == [p + s for p in precisions for s in ("", "+compile")]
    assert result["steps_per_epoch"] == 5
    for p in precisions:
        eager, comp = result["variants"][p], result["variants"][p + "+compile"]
        assert len(eager["ms_per_step_per_round"]) == len(comp["ms_per_step_per_round"]) == 2
        ratios = [a / b for a, b in zip(eager["ms_per_step_per_round"],
                                        comp["ms_per_step_per_round"], strict=True)]
        assert abs(comp["speedup"] - statistics.median(ratios)) < 0.01
        assert comp["warmup_s"] > 0 and "speedup" not in eager
    assert json.loads(out.read_text())["variants"].keys() == result["variants"].keys()


def test_max_autotune_is_one_more_variant_timed_in_the_same_rounds(tmp_path):
    bench = load_bench_script("model_train_compile")
    result = bench.main(["--rows", "1600", "--rounds", "2", "--threads", "1",
                         "--precisions", "fp32", "--max-autotune"])
    assert list(result["variants"]) == ["fp32", "fp32+compile", "fp32+compile+max-autotune"]
    comp = result["variants"]["fp32+compile"]["ms_per_step_per_round"]
    tuned = result["variants"]["fp32+compile+max-autotune"]
    ratios = [a / b for a, b in zip(comp, tuned["ms_per_step_per_round"], strict=True)]
    assert abs(tuned["speedup_over_compile"] - statistics.median(ratios)) < 0.01
