"""bench/gpu_planner.py's targets, computed from made-up act() rows (the measurements need
a GPU; this checks the bookkeeping that turns them into the issue's booleans)."""

from __future__ import annotations

import torch
from helpers import load_bench_script

gpu_planner = load_bench_script("gpu_planner")


def rows(cuda_s, triton_s, batch_ratio, speedup):
    def row(sec):
        return {"single": {"seconds": sec}, "batch64_over_single": batch_ratio,
                "speedup_vs_mbrl_lib": None if sec is None else speedup}
    return {"cuda_fp32": row(cuda_s), "triton_fp32": row(triton_s)}


def test_targets_follow_the_fastest_backend_and_the_thresholds(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    t = gpu_planner.issue_targets(rows(0.110, 0.012, 6.0, 35.0), True)
    assert t["backend"] == "triton" and t["valid"] and t["gpu"] == "NVIDIA H200"
    assert t["act_ms_fp32_le_15"] and t["speedup_vs_mbrl_lib_ge_30"] and t["batch64_le_8x"]
    assert t["by_backend"]["cuda"]["act_ms_fp32_le_15"] is False
    slow = gpu_planner.issue_targets(rows(0.110, None, 36.0, 1.8), True)
    assert slow["backend"] == "cuda" and slow["by_backend"]["triton"]["act_ms_fp32"] is None
    assert slow["act_ms_fp32_le_15"] is False and slow["speedup_vs_mbrl_lib_ge_30"] is False
    assert slow["batch64_le_8x"] is False


def test_the_batch_target_is_left_open_unless_64_envs_were_planned(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    t = gpu_planner.issue_targets(rows(0.110, None, 4.7, 1.8), False, envs=8)
    assert t["batch64_le_8x"] is None and t["by_backend"]["cuda"]["batch64_le_8x"] is None
    assert t["act_ms_fp32_le_15"] is False  # the one-env targets do not depend on the batch


def test_without_a_gpu_it_says_why_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "r.json"
    assert gpu_planner.main(["--quick", "--out", str(out)]) == 2
    assert "no CUDA device" in capsys.readouterr().err and not out.exists()
