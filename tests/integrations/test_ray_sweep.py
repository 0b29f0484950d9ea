"""mbrl-fast sweep on a local Ray with 2 CPUs: trials complete into run directories, a
SIGKILLed trial resumes, a rerun resumes instead of overwriting, bad input says why."""

from __future__ import annotations

import csv
import os
import signal
import threading
import time

import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")

from mbrl_fast import runs  # noqa: E402
from mbrl_fast.integrations import ray_sweep  # noqa: E402
from mbrl_fast.integrations.ray_sweep import SweepError  # noqa: E402

ENV = "InvertedPendulum-v5"
TINY = ["trials=2", "episode_steps=20", "model.ensemble_size=3", "model.num_elites=2",
        "model.hidden=16", "model.layers=1", "train.epochs=2", "planner.population=16",
        "planner.num_elites=4", "planner.iterations=1", "planner.horizon=4",
        "planner.particles=2"]


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'mbrl-fast[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_completes_and_a_rerun_resumes(local_ray, tmp_path):
    out = tmp_path / "sweep"
    res = ray_sweep.run_sweep("pets", ENV, [0, 1], sets=TINY, grid=["planner.horizon=3,4"],
                              out=out, log=lambda _: None)
    rows = read_csv(res["csv"])
    trials = {(r["config"], r["seed"]) for r in rows}
    assert trials == {(f"planner.horizon={h}", str(s)) for h in (3, 4) for s in (0, 1)}
    assert len(rows) == 4 * 2 and res["png"].is_file()
    for t in res["trials"]:  # every trial is a normal run directory
        metrics = runs.RunDir(t.run_dir).read_metrics()
        assert [m["trial"] for m in metrics] == [0, 1]
    assert len({tuple(r["cores"]) for r in res["results"]}) >= 1
    before = runs.RunDir(res["trials"][0].run_dir).metrics_path.read_bytes()
    again = ray_sweep.run_sweep("pets", ENV, [0, 1], sets=TINY, grid=["planner.horizon=3,4"],
                                out=out, log=lambda _: None)
    assert all(r["resumed"] and r["resumed_at"] == 2 for r in again["results"])
    assert runs.RunDir(res["trials"][0].run_dir).metrics_path.read_bytes() == before
    assert len(read_csv(again["csv"])) == 8


def _pid_holding(path) -> int | None:
    """The process that has ``path`` open (the worker writing a journal), via /proc."""
    target = os.path.realpath(path)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return int(pid)
            except OSError:
                pass
    return None


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the worker through /proc")
def test_a_trial_killed_mid_run_resumes(local_ray, tmp_path):
    out = tmp_path / "sweep"
    sets = [s for s in TINY if not s.startswith(("trials", "planner.population"))]
    sets += ["trials=3", "planner.population=64"]  # MPC iterations long enough to be hit
    killed, finished = [], threading.Event()

    def kill_seed0_in_iteration_1():  # SIGKILL the worker process writing seed 0's journal
        rd = runs.RunDir(out / "default" / "seed0")
        while not finished.is_set():
            for it, attempt, path in rd.journals():
                pid = _pid_holding(path) if it >= 1 and attempt == 0 else None
                if pid is not None and pid != os.getpid():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(it)
                    return
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_seed0_in_iteration_1)
    watcher.start()
    try:
        res = ray_sweep.run_sweep("pets", ENV, [0, 1], sets=sets, out=out, log=lambda _: None)
    finally:
        finished.set()
        watcher.join()
    assert killed, "the trial finished before it could be killed"
    seed0 = next(r for r in res["results"] if r["trial"]["seed"] == 0)
    assert seed0["resumed"] and seed0["attempt"] >= 1  # Ray's retry resumed the run directory
    assert seed0["resumed_at"] == killed[0]
    rows = read_csv(res["csv"])
    assert sorted((r["seed"], r["iteration"]) for r in rows) == \
        [(s, str(i)) for s in ("0", "1") for i in range(3)]
    assert not list(runs.RunDir(out / "default" / "seed0").journal_dir.iterdir())


def test_unreachable_address_is_an_error_within_seconds(capsys):
    from mbrl_fast.cli import main

    t0 = time.monotonic()
    assert main(["sweep", "pets", "--env", ENV, "--seeds", "0", "--address", "127.0.0.1:1"]) == 2
    assert time.monotonic() - t0 < 15
    assert "cannot reach a Ray cluster at '127.0.0.1:1'" in capsys.readouterr().err


def test_bad_grid_and_conflicting_run_directory(tmp_path):
    with pytest.raises(SweepError, match="--grid 'planner.population' must look like"):
        ray_sweep.plan_trials("pets", ENV, [0], [], ["planner.population"], tmp_path)
    with pytest.raises(SweepError, match="unknown field 'planner.nope'"):
        ray_sweep.plan_trials("pets", ENV, [0], [], ["planner.nope=1,2"], tmp_path)
    from mbrl_fast.agents import get_agent

    trial = ray_sweep.plan_trials("pets", ENV, [0], TINY, [], tmp_path)[0]
    other = ray_sweep.trial_config("pets", ENV, ray_sweep.Trial("x", 0, (*TINY,
                                   "planner.horizon=7"), trial.run_dir))
    agent, _ = runs.start_run("pets", other, trial.run_dir)
    agent.close()
    with pytest.raises(SweepError, match=r"another config \(fields differ: \['planner'\]\)"):
        ray_sweep.run_trial(get_agent("pets"), ENV, trial, "default", 1)
