"""`mbrl-fast train | eval | bench`: run directories, resume (incl. SIGKILL), bad checkpoints."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import metrics_rows, train_pets_tiny

from mbrl_fast import runs
from mbrl_fast.cli import main
from mbrl_fast.config import config_to_dict
from mbrl_fast.models import ReplayBuffer

pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")

def _snapshot(path: Path) -> dict:
    return {p.relative_to(path): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}


def _checkpoint(run_dir):
    return torch.load(Path(run_dir) / "checkpoint.pt", weights_only=True)


def test_train_writes_a_complete_run_dir(tmp_path):
    run = tmp_path / "run"
    assert train_pets_tiny(run) == 0
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "metrics.csv", "learning_curve.png", "checkpoint.pt"} <= names
    rows = metrics_rows(run)
    assert [r["trial"] for r in rows] == ["0", "1"]
    assert list(rows[0]) == list(runs_fields())
    assert int(rows[1]["env_steps"]) > int(rows[0]["env_steps"]) == 30
    algo, config = runs.RunDir(run).read_config()
    assert algo == "pets" and config["planner"]["population"] == 20  # overrides recorded
    assert config["episode_steps"] == 30 and config["model"]["hidden"] == 16
    assert (run / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert not list((run / "journal").iterdir())  # completed trials leave no journal
    ckpt = _checkpoint(run)
    assert ckpt["agent"]["iterations_done"] == 2
    assert ckpt["agent"]["buffer"]["total_added"] == int(rows[1]["env_steps"])
    assert train_pets_tiny(run) == 2  # an existing run is not overwritten


def runs_fields():
    from mbrl_fast.agents.pets import TRIAL_FIELDS
    return TRIAL_FIELDS


def test_resume_at_trial_boundary_continues_bit_for_bit(tmp_path):
    assert train_pets_tiny(tmp_path / "full", trials=3) == 0
    assert train_pets_tiny(tmp_path / "part", trials=2) == 0
    assert main(["train", "pets", "--resume", str(tmp_path / "part"), "--trials", "3",
                 "--no-progress"]) == 0
    full, part = metrics_rows(tmp_path / "full"), metrics_rows(tmp_path / "part")
    for a, b in zip(full, part, strict=True):
        for key in ("trial", "return", "env_steps", "model_loss", "holdout_mse"):
            assert a[key] == b[key]
    fa, fb = _checkpoint(tmp_path / "full")["agent"], _checkpoint(tmp_path / "part")["agent"]
    for key, value in fa["model"].items():
        assert torch.equal(value, fb["model"][key]), key
    assert runs.RunDir(tmp_path / "part").read_config()[1]["trials"] == 3


def test_resume_recovers_journal_of_an_interrupted_trial(tmp_path):
    """Simulate a crash in trial 2: checkpoint of trial 1 + a half-written journal."""
    run = tmp_path / "run"
    assert train_pets_tiny(run, trials=2) == 0
    rd = runs.RunDir(run)
    g = np.random.default_rng(0)
    j = rd.open_journal(2, 0, ReplayBuffer(4, 1).record_dtype())
    lost = [dict(obs=g.normal(size=4), act=g.uniform(-3, 3, size=1), next_obs=g.normal(size=4),
                 reward=1.0, terminated=False, truncated=False) for _ in range(5)]
    for t in lost:
        j.append(**t)
    os.write(j.fd, b"\x00" * 20)  # a torn trailing record (never a whole transition)
    j.close()
    before = _checkpoint(run)["agent"]["buffer"]["total_added"]
    assert main(["train", "pets", "--resume", str(run), "--trials", "4", "--no-progress"]) == 0
    buf = _checkpoint(run)["agent"]["buffer"]
    obs = buf["obs"].numpy()
    np.testing.assert_array_equal(obs[before:before + 5], np.stack([t["obs"] for t in lost]))
    rows = metrics_rows(run)
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"]
    assert int(rows[2]["env_steps"]) == before + 5 + int(rows[2]["episode_steps"])
    assert not list((run / "journal").iterdir())


@pytest.mark.parametrize("cut", [0, 3, len(runs.JOURNAL_MAGIC) + 2, -1])
def test_journal_killed_before_its_header_was_complete_holds_no_record(tmp_path, cut):
    """A SIGKILL between creating the journal and writing its header leaves a prefix of
    the header: no record was written, so it reads as empty; anything else is corrupt."""
    dtype = ReplayBuffer(4, 1).record_dtype()
    whole = tmp_path / "whole.bin"
    runs.Journal(whole, dtype).close()
    header = whole.read_bytes()
    torn = tmp_path / "torn.bin"
    torn.write_bytes(header[:cut])
    out = runs.read_journal(torn, dtype)
    assert out.dtype == dtype and len(out) == 0
    torn.write_bytes(b"X" + header[1:cut])
    if cut:
        with pytest.raises(runs.CheckpointError, match="bad header"):
            runs.read_journal(torn, dtype)


def test_corrupt_checkpoint_is_a_clear_error_and_leaves_the_dir(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_pets_tiny(run) == 0
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    before = _snapshot(run)
    assert main(["train", "pets", "--resume", str(run), "--trials", "3", "--no-progress"]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert _snapshot(run) == before


def test_mismatched_checkpoint_is_a_clear_error_and_leaves_the_dir(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_pets_tiny(run) == 0
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("hidden: 16", "hidden: 32"))
    before = _snapshot(run)
    assert main(["train", "pets", "--resume", str(run), "--no-progress"]) == 2
    assert "does not match config.yaml" in capsys.readouterr().err
    assert _snapshot(run) == before
    assert main(["train", "pets", "--resume", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_eval_reports_mean_and_std(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_pets_tiny(run) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2", "--no-video"]) == 0
    out = capsys.readouterr().out
    assert "InvertedPendulum-v5: return" in out and "over 2 episodes" in out
    assert len(out.split("returns: ")[1].split(",")) == 2
    assert main(["eval", str(run), "--episodes", "3", "--no-video", "--seed", "7",
                 "--json", str(tmp_path / "e.json")]) == 0
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["episodes"] == 3 and len(data["returns"]) == 3
    assert data["mean"] == pytest.approx(np.mean(data["returns"]))
    assert data["std"] == pytest.approx(np.std(data["returns"]))
    assert data["env_steps"] == int(metrics_rows(run)[-1]["env_steps"])
    assert data["first_reset_seed"] == 7
    assert data["checkpoint"] == "checkpoint.pt" and "--seed 7" in data["command"]
    assert "cpu_model" in data["machine"]


def test_best_pt_holds_the_iteration_with_the_highest_return(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_pets_tiny(run, trials=3) == 0
    returns = [float(r["return"]) for r in metrics_rows(run)]
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["agent"]["iterations_done"] == int(np.argmax(returns)) + 1
    capsys.readouterr()
    assert main(["eval", str(run), "--best", "--episodes", "1", "--no-video"]) == 0
    assert f"{int(np.argmax(returns)) + 1} trials trained" in capsys.readouterr().out
    (run / "best.pt").unlink()
    assert main(["eval", str(run), "--best", "--episodes", "1", "--no-video"]) == 2
    assert "no best.pt yet" in capsys.readouterr().err


@pytest.mark.parametrize("returns, expected", [
    ([], False), ([1.0], True), ([1.0, 3.0], True), ([1.0, 3.0, 2.0], False),
    ([3.0, 3.0], False), ([float("nan"), 1.0], True), ([1.0, float("nan")], False)])
def test_last_is_best(returns, expected):
    assert runs.last_is_best([{"return": r} for r in returns]) is expected


class _ScriptedAgent:
    """The agent protocol's loop-facing part, with returns given in advance."""

    FIELDS = ("iteration", "return", "env_steps", "wall_clock_s")
    unit = "iteration"
    config = None

    def __init__(self, returns, done=0):
        self.returns, self.history, self.iterations_done = returns, [], 0
        for i in range(done):
            self.run_iteration(i, 0, record=None)

    def total_iterations(self, config):
        return len(self.returns)

    def journal_dtype(self):
        return np.dtype([("x", "<f8")])

    def run_iteration(self, index, attempt=0, record=None):
        row = {"iteration": index, "return": self.returns[index], "env_steps": 10 * (index + 1),
               "wall_clock_s": float(index)}
        self.history.append(row)
        self.iterations_done = index + 1
        return row

    def state_dict(self):
        return {"iterations_done": self.iterations_done}

    def postfix(self, row):
        return {}


def _best_iterations(run_dir):
    return torch.load(Path(run_dir) / "best.pt", weights_only=True)["agent"]["iterations_done"]


def test_best_pt_follows_new_bests_and_keeps_the_earlier_of_a_tie(tmp_path):
    run = runs.RunDir(tmp_path)
    runs.train_loop(_ScriptedAgent([1.0, 5.0, 3.0, 7.0, 7.0, 2.0]), run, "scripted", {},
                    progress=False)
    assert _best_iterations(tmp_path) == 4  # the first 7.0


def test_a_kill_between_checkpoint_and_best_copy_is_mended_on_resume(tmp_path):
    run = runs.RunDir(tmp_path)
    agent = _ScriptedAgent([1.0, 5.0], done=2)  # the last completed iteration is the best
    run.save_checkpoint("scripted", {}, agent.state_dict())
    assert not run.best_path.exists()
    runs.train_loop(agent, run, "scripted", {}, progress=False)  # nothing left to run
    assert _best_iterations(tmp_path) == 2


def test_keep_every_keeps_every_kth_checkpoint_and_eval_reads_them(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_pets_tiny(run, "--keep-every", "2", trials=3) == 0
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["iter_0002.pt"]
    snap = torch.load(run / "checkpoints" / "iter_0002.pt", weights_only=True)
    assert snap["agent"]["iterations_done"] == 2
    capsys.readouterr()
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--checkpoint", "checkpoints/iter_0002.pt", "--episodes",
                 "1", "--no-video", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["iterations_trained"] == 2 and data["checkpoint"] == "checkpoints/iter_0002.pt"
    assert data["env_steps"] == int(metrics_rows(run)[1]["env_steps"])
    assert "--checkpoint checkpoints/iter_0002.pt" in data["command"]
    # a checkpoint the run does not have: named, with the ones it has
    assert main(["eval", str(run), "--checkpoint", "checkpoints/iter_0003.pt",
                 "--episodes", "1", "--no-video"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoints/iter_0003.pt" in err
    assert "(kept checkpoints: checkpoints/iter_0002.pt)" in err
    # resumed without --keep-every: says so, keeps none
    assert main(["train", "pets", "--resume", str(run), "--trials", "4", "--no-progress"]) == 0
    assert "pass --keep-every K" in capsys.readouterr().err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iter_0002.pt"]


def test_eval_kept_evaluates_every_kept_checkpoint_and_adds_only_new_ones(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_pets_tiny(run, "--keep-every", "1", trials=2) == 0
    capsys.readouterr()
    out = tmp_path / "kept.json"
    args = ["eval", str(run), "--kept", "--episodes", "2", "--seed", "5", "--json", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "2 kept checkpoints, 2 episodes each from reset seed 5; 2 evaluated now" in printed
    data = json.loads(out.read_text())
    rows = metrics_rows(run)
    assert [e["checkpoint"] for e in data["evaluations"]] == [
        "checkpoints/iter_0001.pt", "checkpoints/iter_0002.pt"]
    assert [e["env_steps"] for e in data["evaluations"]] == [int(r["env_steps"]) for r in rows]
    assert data["episodes"] == 2 and data["first_reset_seed"] == 5 and data["algo"] == "pets"
    best = max(data["evaluations"], key=lambda e: e["mean"])
    assert f"highest mean: {best['checkpoint']} ({best['env_steps']} env steps)" in printed
    # each record is what `eval --checkpoint` of that file measures (same reset seeds)
    one = tmp_path / "one.json"
    assert main(["eval", str(run), "--checkpoint", "checkpoints/iter_0001.pt", "--episodes",
                 "2", "--seed", "5", "--no-video", "--json", str(one)]) == 0
    assert json.loads(one.read_text())["returns"] == data["evaluations"][0]["returns"]
    # a third trial kept: a second call evaluates only it
    assert main(["train", "pets", "--resume", str(run), "--trials", "3", "--keep-every", "1",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("(already in the file)") == 2 and "1 evaluated now" in printed
    assert len(json.loads(out.read_text())["evaluations"]) == 3
    # other episodes or seed than the file holds: refused, the file untouched
    before = out.read_text()
    assert main(args[:-4] + ["--episodes", "3", "--json", str(out)]) == 2
    assert "holds evaluations with 2 episodes from reset seed 5" in capsys.readouterr().err
    assert out.read_text() == before
    other = tmp_path / "other.json"  # a single-checkpoint eval file is not a kept file
    assert main(args[:-1] + [str(one)]) == 2
    assert "is not an `eval --kept` file" in capsys.readouterr().err
    other.write_text(before.replace(str(run), str(tmp_path / "elsewhere")))
    assert main(args[:-1] + [str(other)]) == 2
    assert f"holds evaluations of {tmp_path / 'elsewhere'}, not of" in capsys.readouterr().err


def test_eval_kept_without_kept_checkpoints_or_with_goals_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_pets_tiny(run) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--kept"]) == 2
    assert "keeps no checkpoints (pass --keep-every K" in capsys.readouterr().err
    assert main(["eval", str(run), "--kept", "--goals", "3"]) == 2
    assert "not --kept" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", str(run), "--kept", "--best"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_keep_every_and_checkpoint_reject_bad_values(tmp_path, capsys):
    assert train_pets_tiny(tmp_path / "run", "--keep-every", "0") == 2
    assert "--keep-every must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(tmp_path), "--best", "--checkpoint", "best.pt"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_kept_checkpoints_every_k_and_a_kill_before_the_copy_is_mended(tmp_path):
    run = runs.RunDir(tmp_path)
    runs.train_loop(_ScriptedAgent([1.0] * 7), run, "scripted", {}, progress=False,
                    keep_every=3)
    assert [i for i, _ in run.snapshots()] == [3, 6]
    assert torch.load(run.snapshot_path(6), weights_only=True)["agent"]["iterations_done"] == 6
    run.snapshot_path(6).unlink()  # as if killed between checkpoint.pt and the copy
    agent = _ScriptedAgent([1.0] * 6, done=6)
    run.save_checkpoint("scripted", {}, agent.state_dict())
    runs.train_loop(agent, run, "scripted", {}, progress=False, keep_every=3)
    assert [i for i, _ in run.snapshots()] == [3, 6]
    with pytest.raises(ValueError, match="keep_every must be an int >= 1"):
        runs.train_loop(agent, run, "scripted", {}, progress=False, keep_every=0)


def test_unknown_env_and_bad_override(capsys):
    assert main(["train", "pets", "--env", "NoSuchEnv-v0", "--no-progress"]) == 2
    assert "supported tasks" in capsys.readouterr().err
    assert main(["train", "pets", "--env", "InvertedPendulum-v5", "--set", "planner.nope=1"]) == 2
    assert "unknown field" in capsys.readouterr().err
    assert main(["train", "pets", "--env", "InvertedPendulum-v5",
                 "--set", "planner.population=many"]) == 2
    assert "planner.population must be a int" in capsys.readouterr().err


def test_bench_subcommand_is_wired(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    assert "planner" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "mbrl_fast", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "train" in out.stdout and "eval" in out.stdout


def test_eval_video_is_written_or_skipped_gracefully(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_pets_tiny(run) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1"]) == 0
    captured = capsys.readouterr()
    if "video skipped" in captured.err:  # no offscreen GL here: said so, eval still ran
        assert "over 1 episodes" in captured.out
    else:
        path = Path(captured.out.split("video: ")[1].strip())
        assert path.parent == run and path.stat().st_size > 0


def test_bench_without_benchmarks_package(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mbrl_fast.benchmarks.cli", None)  # import -> ImportError
    assert main(["bench", "planner"]) == 2
    assert "benchmarks not installed" in capsys.readouterr().err


def test_learning_replay_command_reproduces_the_config():
    """bench/learning.py's reproduce command (--no-preset + the fields that differ from the
    published defaults) rebuilds the run's config, including fields a preset sets back to
    their defaults (HalfCheetah's published preset has lr 2.8e-4; this run used 1e-3)."""
    from helpers import load_bench_script

    from mbrl_fast.agents.pets import PETS
    from mbrl_fast.cli import _parser, train_config

    learning = load_bench_script("learning")
    config = PETS.make_config("HalfCheetah-v5", preset="published", trials=30, torch_threads=2,
                              train=dict(lr=1e-3, batch_size=256),
                              planner=dict(name="icem", propagation="expectation",
                                           precision="bf16"))
    args = learning._replay_args("pets", {"config": config_to_dict(config)},
                                 "HalfCheetah-v5")
    assert args[:2] == ["train", "pets"] and "--no-preset" in args
    rebuilt = train_config(_parser().parse_args(args))
    assert config_to_dict(rebuilt) == config_to_dict(config)


def test_plan_budget_sizes_the_planner_and_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_pets_tiny(run, "--plan-budget-ms", "1000", trials=1, steps=5) == 0
    err = capsys.readouterr().err
    assert "planner: cem population 20, 4 elites, 1 iteration, horizon 5" in err
    assert "ms per planned step on this machine" in err
    assert runs.RunDir(run).read_config()[1]["planner"]["population"] == 20  # it fit: unchanged


def test_plan_budget_too_small_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_pets_tiny(run, "--plan-budget-ms", "0.0001") == 2
    assert "the smallest budget that works is" in capsys.readouterr().err
    assert not run.exists()


def test_budget_flags_follow_the_agent(tmp_path, capsys):
    assert main(["train", "pets", "--env", "InvertedPendulum-v5", "--steps", "100",
                 "--run-dir", str(tmp_path / "r")]) == 2
    assert "counts its run in trials: use --trials" in capsys.readouterr().err
    assert train_pets_tiny(tmp_path / "ok") == 0
    assert main(["train", "pets", "--resume", str(tmp_path / "ok"), "--plan-budget-ms",
                 "50"]) == 2
    assert "only --trials may be given" in capsys.readouterr().err
    assert main(["train", "pets", "--env", "InvertedPendulum-v5", "--preset", "nope",
                 "--run-dir", str(tmp_path / "r2")]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_learning_results_keep_the_learners_diagnostics(tmp_path):
    """bench/learning.py's read_run keeps SAC's critic scale and alpha per epoch, null for
    the random epochs, so that the JSON stays strict JSON."""
    import json

    from helpers import load_bench_script

    run = tmp_path / "sac"
    assert main(["train", "sac", "--env", "Pendulum-v1", "--steps", "30", "--run-dir", str(run),
                 "--no-progress", "--set", "epoch_length=10", "--set", "initial_random_steps=20",
                 "--set", "eval_episodes=1"]) == 0
    out = load_bench_script("learning").read_run(run)
    rows = runs.RunDir(run).read_metrics()
    assert len(out["q_mean"]) == len(out["alpha"]) == len(rows) == 3
    assert out["q_mean"][0] is None and out["alpha"][0] is None  # random steps: no update
    assert out["q_mean"][2] == pytest.approx(float(rows[2]["q_mean"]), abs=1e-4)
    assert out["alpha"][2] > 0 and "holdout_mse" not in out  # SAC has no model
    json.dumps(out, allow_nan=False)


def test_a_resumed_run_may_change_its_thread_count_and_nothing_else(tmp_path, capsys):
    run = tmp_path / "r"
    assert train_pets_tiny(run, trials=2) == 0
    threads = torch.get_num_threads()
    try:
        assert main(["train", "pets", "--resume", str(run), "--trials", "3", "--set",
                     "torch_threads=2", "--no-progress"]) == 0
        assert torch.get_num_threads() == 2  # the resumed agent runs on the new setting
    finally:
        torch.set_num_threads(threads)
    _, config = runs.RunDir(run).read_config()
    assert config["torch_threads"] == 2 and config["trials"] == 3 and len(metrics_rows(run)) == 3
    before = _snapshot(run)
    for bad, message in ((["--set", "seed=1"], "--set may only change torch_threads"),
                         (["--set", "torch_threads=two"], "must be an integer >= 0"),
                         (["--set", "train.compile=maybe"], "must be true or false"),
                         (["--set", "train.lr=0.1"], "may only change torch_threads, "
                                                     "train.compile"),
                         (["--seed", "1"], "only --trials may be given")):
        assert main(["train", "pets", "--resume", str(run), *bad]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="may change only"):
        runs.resume_run(run, settings={"seed": 1})
    with pytest.raises(ValueError, match="torch_threads must be an integer >= 0"):
        runs.resume_run(run, settings={"torch_threads": True})
    assert _snapshot(run) == before  # refused: nothing written
