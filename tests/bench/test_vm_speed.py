"""bench/vm_speed.py: its samples time what they name, and bad arguments are refused."""

from __future__ import annotations

import json
import time

import pytest
import torch
from helpers import load_bench_script

vm_speed = load_bench_script("vm_speed")


def test_a_short_run_writes_samples_whose_speedup_is_their_ratio(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "speed.json"
    try:
        assert vm_speed.main(["--seconds", "0.01", "--threads", "2", "--updates", "3",
                              "--precision", "fp32", "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    data = json.loads(out.read_text())
    assert data["threads"] == 2 and data["precision"] == "fp32"
    assert len(data["samples"]) >= 1
    for s in data["samples"]:
        assert s["sac_ms_1"] > 0 and s["sac_ms_n"] > 0 and s["gemm_gflops"] > 0
        assert s["speedup"] == pytest.approx(s["sac_ms_1"] / s["sac_ms_n"], rel=1e-2)
    assert data["summary"]["speedup"]["median"] > 0
    assert data["samples_below_1_3x"] == sum(s["speedup"] < 1.3 for s in data["samples"])
    assert sum(r["samples"] for r in data["by_minute"]) == len(data["samples"])


def test_a_sample_times_the_step_on_one_thread_then_on_n():
    seen = []

    def step(n):
        seen.append(torch.get_num_threads())
        time.sleep(0.002 if torch.get_num_threads() == 1 else 0.001)

    threads = torch.get_num_threads()
    try:
        s = vm_speed.sample(step, 3, 2, torch.randn(8, 8))
    finally:
        torch.set_num_threads(threads)
    assert seen == [1] * 4 + [2] * 4  # one untimed step after each change of threads
    assert s["sac_ms_1"] > s["sac_ms_n"] >= 1.0
    assert s["speedup"] == pytest.approx(s["sac_ms_1"] / s["sac_ms_n"], rel=1e-2)


def test_updates_one_sets_the_one_thread_count_only():
    seen = []

    def step(n):
        seen.append(torch.get_num_threads())

    threads = torch.get_num_threads()
    try:
        vm_speed.sample(step, 5, 2, torch.randn(8, 8), updates_one=2)
    finally:
        torch.set_num_threads(threads)
    assert seen == [1] * 3 + [2] * 6


def test_by_minute_groups_samples_from_the_first_and_takes_medians():
    samples = [dict(t=100.0 + dt, sac_ms_n=n, sac_ms_1=4.0, speedup=4.0 / n)
               for dt, n in ((0, 2.0), (30, 3.0), (59.9, 4.0), (60, 5.0), (185, 6.0))]
    rows = vm_speed.by_minute(samples)
    assert [r["minute"] for r in rows] == [0, 1, 3]
    assert [r["samples"] for r in rows] == [3, 1, 1]
    assert rows[0]["sac_ms_n"] == 3.0 and rows[0]["speedup"] == pytest.approx(4.0 / 3.0, abs=1e-3)
    assert rows[2]["sac_ms_n"] == 6.0


@pytest.mark.parametrize("args, message", [
    (["--threads", "1"], "--threads must be >= 2"),
    (["--seconds", "0"], "--seconds must be > 0"),
    (["--updates", "0"], "--updates must be > 0"),
    (["--updates-one", "0"], "--updates-one must be > 0"),
])
def test_bad_arguments_are_named(args, message):
    with pytest.raises(SystemExit, match=message):
        vm_speed.main(args)
