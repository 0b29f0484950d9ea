"""bench/sac_update.py: every phase runs in a fresh process of its own, with the malloc
setting and the thread count it is named for, and the JSON gathers them."""

from __future__ import annotations

import json

import pytest
from helpers import load_bench_script

pytest.importorskip("stable_baselines3")


def test_each_phase_runs_in_its_own_process(tmp_path):
    bench = load_bench_script("sac_update")
    out = tmp_path / "r.json"
    bench.main(["--updates", "2", "--rounds", "2", "--warmup", "1", "--threads", "1",
                "--json", str(out)])
    result = json.loads(out.read_text())
    phases = result["phases"]
    assert [(p["threads"], p["keep_freed_memory"]) for p in phases] == [(1, False), (1, True)]
    assert len({p["pid"] for p in phases}) == 2  # two fresh processes
    assert "keep_freed_memory_applied" in result and result["stable_baselines3"]
    for p in phases:
        assert {"mbrl-fast", "mbrl-fast-torch", "sb3"} <= set(p)
        assert len(p["mbrl-fast"]["per_round"]) == 2
        if "mbrl-fast-cpu" in p:  # the fused update beside the same kernels under autograd
            assert "mbrl-fast-cpu-autograd" in p
            assert len(p["mbrl-fast-cpu"]["vs_autograd_per_round"]) == 2
