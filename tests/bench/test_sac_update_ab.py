"""bench/sac_update_ab.py: two builds of the compiled module in one process, SAC's update on
each in turn, and the module the rest of the process sees is the installed one again."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import load_bench_script

from mbrl_fast import backends

pytestmark = pytest.mark.skipif(not backends.is_available("cpu"),
                                reason="needs the compiled CPU module")


def test_runs_both_builds_and_restores_the_installed_one(tmp_path):
    bench = load_bench_script("sac_update_ab")
    installed = backends.cpu_module()
    base = tmp_path / "base_C.so"  # a copy: a second library, as another build would be
    shutil.copy(installed.__file__, base)
    out = tmp_path / "r.json"
    result = bench.main(["--base", str(base), "--rounds", "2", "--updates", "2",
                         "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert [len(v) for v in result["ms_per_round"].values()] == [2, 2]
    assert result["base_over_new"]["min"] > 0
    assert backends.cpu_module() is installed


def test_times_a_training_mlp_call_on_both_builds(tmp_path, monkeypatch):
    """--workload model runs bench/mlp_train_paths.py's ensemble call, and the base build's
    rounds go through the base build's mlp_train."""
    bench = load_bench_script("sac_update_ab")
    installed = backends.cpu_module()
    base = tmp_path / "base_C.so"
    shutil.copy(installed.__file__, base)
    calls = []
    load_base = bench.load_base

    class Counted:  # the base build, its mlp_train calls counted
        def __init__(self, module):
            self.module = module

        def __getattr__(self, name):
            return getattr(self.module, name)

        def mlp_train(self, *args):
            calls.append(1)
            return self.module.mlp_train(*args)

    monkeypatch.setattr(bench, "load_base", lambda path: Counted(load_base(path)))
    result = bench.main(["--base", str(base), "--workload", "model", "--rounds", "2",
                         "--updates", "1"])
    assert result["workload"] == "model" and set(result["ms_per_step"]) == {"base", "new"}
    assert [len(v) for v in result["ms_per_round"].values()] == [2, 2]
    # a forward and a backward per step: the warm-up's 20 steps and one per round
    assert len(calls) == 2 * (20 + 2)
    assert backends.cpu_module() is installed


def test_names_a_missing_base(tmp_path):
    bench = load_bench_script("sac_update_ab")
    with pytest.raises(SystemExit, match="--base"):
        bench.main(["--base", str(tmp_path / "nothing.so")])
