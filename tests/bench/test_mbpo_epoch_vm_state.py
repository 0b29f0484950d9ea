"""bench/mbpo_epoch.py: each repeat's VM state from its probes, and the speedups per state."""

from __future__ import annotations

import pytest
import torch
from helpers import load_bench_script

mbpo_epoch = load_bench_script("mbpo_epoch")


@pytest.mark.parametrize("speedups, state", [
    ([1.7, 1.6, 1.8, 1.31], "fast"),
    ([1.0, 1.2, 0.9, 1.29], "slow"),
    ([1.7, 1.2, 1.8, 1.6], "mixed"),
    ([mbpo_epoch.VM_FAST_SPEEDUP] * 4, "fast"),
])
def test_a_repeat_is_fast_only_if_every_probe_saw_both_vcpus(speedups, state):
    assert mbpo_epoch.vm_state(speedups) == state


def _round(total: float, probes: list[float] | None) -> dict:
    r = dict(total_s=total, sac_s=total / 2, model_s=total / 4, rollout_s=total / 8,
             env_loop_s=total / 8, model_epochs=5)
    if probes is not None:
        r["vm_speedups"] = probes
    return r


def test_summarize_groups_the_per_repeat_speedups_by_state():
    fast = [_round(1.0, [1.7, 1.6]), _round(2.0, [1.0, 1.1]), _round(1.0, [1.7, 1.1]),
            _round(1.0, [1.8, 1.7])]
    lib = [_round(3.0, [1.6, 1.7]), _round(5.0, [1.2, 1.0]), _round(2.0, [1.7, 1.7]),
           _round(4.0, [1.6, 1.5])]
    out = mbpo_epoch.summarize({"mbrl_fast": fast, "mbrl_lib": lib}, steps=50)
    assert out["vm_state_per_repeat"] == ["fast", "slow", "mixed", "fast"]
    per_rep = out["epoch_speedup_per_repeat"]
    assert per_rep == pytest.approx([3.0, 2.5, 2.0, 4.0], abs=0.01)
    by = out["epoch_speedup_by_vm_state"]
    assert by["fast"] == dict(repeats=2, median=3.5, min=per_rep[0], max=per_rep[3])
    assert by["slow"]["repeats"] == by["mixed"]["repeats"] == 1
    assert by["slow"]["median"] == pytest.approx(2.5, abs=0.01)


def test_without_probes_there_is_no_state():
    rounds = {"mbrl_fast": [_round(1.0, None)], "mbrl_lib": [_round(3.0, None)]}
    out = mbpo_epoch.summarize(rounds, steps=50)
    assert "vm_state_per_repeat" not in out and "epoch_speedup_by_vm_state" not in out
    assert out["epoch_speedup_per_repeat"] == pytest.approx([3.0], abs=0.01)


def test_the_probe_times_a_real_sac_step_on_one_then_two_threads():
    threads = torch.get_num_threads()
    try:
        probe = mbpo_epoch.VMProbe(threads=2, updates=2)
        step, seen = probe.step, []

        def counting_step(n):
            seen.append(torch.get_num_threads())
            return step(n)

        probe.step = counting_step
        speedup = probe()
    finally:
        torch.set_num_threads(threads)
    assert seen == [1] * 3 + [2] * 3  # one untimed step after each change of threads
    # the ratio itself depends on what else runs on the machine (another process's
    # spinning threads can make the two-thread step 30x slower): only its sign is checked
    assert isinstance(speedup, float) and speedup > 0
