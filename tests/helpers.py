"""Shared test helpers: random ensembles in the kernels' layout, backend lists.

Import as ``from helpers import ...`` (tests/ is on sys.path via its conftest.py)."""

from __future__ import annotations

import torch

from mbrl_fast import backends
from mbrl_fast.ops.ensemble_mlp import MLPParams, pack_bf16

# Tolerances (relative to the output's scale), per weight dtype.
TOL = {"fp32": dict(rtol=1e-4, atol=1e-5), "bf16": dict(rtol=2e-2, atol=2e-2)}
# an MBPO that trains its model, rolls out and updates SAC in seconds (MBPO.make_config kwargs)
MBPO_TINY = dict(steps=120, epoch_length=60, initial_random_steps=40, model_train_freq=30,
                 rollout_batch=300, updates_per_step=2, eval_episodes=1,
                 model=dict(hidden=32, layers=2), train=dict(epochs=2))


# `mbrl-fast train pets` on InvertedPendulum in a second: a 3 x 16 x 2 model, 20 x 2 plans
PETS_TINY_ARGS = ["--set", "planner.population=20", "--set", "planner.num_elites=4",
                  "--set", "planner.horizon=5", "--set", "planner.particles=2",
                  "--set", "planner.iterations=1", "--set", "model.ensemble_size=3",
                  "--set", "model.num_elites=2", "--set", "model.hidden=16",
                  "--set", "model.layers=2", "--set", "train.epochs=2"]


def train_pets_tiny(run_dir, *extra, trials: int = 2, steps: int = 30) -> int:
    """`mbrl-fast train pets` (PETS_TINY_ARGS) into run_dir; the CLI's exit code."""
    from mbrl_fast.cli import main

    return main(["train", "pets", "--env", "InvertedPendulum-v5", "--seed", "0",
                 "--trials", str(trials), "--episode-steps", str(steps),
                 "--run-dir", str(run_dir), "--no-progress", *PETS_TINY_ARGS, *extra])


def metrics_rows(run_dir) -> list[dict]:
    """metrics.csv of a run directory, as csv.DictReader rows (strings)."""
    import csv
    from pathlib import Path

    with open(Path(run_dir) / "metrics.csv") as f:
        return list(csv.DictReader(f))


def assert_close(got, ref, dtype: str = "fp32", what: str = "") -> None:
    """max |got - ref| <= rtol * max |ref| + atol (TOL[dtype]) for a tensor, a tuple of
    tensors, or None (then got must be None too); got may live on another device."""
    if ref is None:
        assert got is None, f"{what}: expected None"
        return
    if isinstance(ref, tuple):
        assert isinstance(got, tuple) and len(got) == len(ref), what
        for i, (g, r) in enumerate(zip(got, ref, strict=True)):
            assert_close(g, r, dtype, f"{what}[{i}]")
        return
    got = got.to(ref.device)
    assert got.shape == ref.shape and got.dtype == ref.dtype, \
        f"{what}: got {got.dtype} {tuple(got.shape)}, expected {ref.dtype} {tuple(ref.shape)}"
    if ref.numel() == 0:
        return
    tol = TOL[dtype]
    err = float((got.double() - ref.double()).abs().max())
    bound = tol["rtol"] * float(ref.abs().max()) + tol["atol"]
    assert err <= bound, f"{what}: max error {err:.3g} > {bound:.3g}"


def random_mlp_params(E=3, sizes=(7, 16, 16, 10), activation="silu", gaussian=True,
                      bf16=False, normalize=True, seed=0, device="cpu", scale=1.0) -> MLPParams:
    """An ensemble with PyTorch-like init; sizes = (d_0, ..., d_L)."""
    g = torch.Generator().manual_seed(seed)
    weights, biases = [], []
    for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = scale / d_in**0.5
        w = (torch.rand(E, d_in, d_out, generator=g) * 2 - 1) * bound
        b = (torch.rand(E, d_out, generator=g) * 2 - 1) * bound
        weights.append(pack_bf16(w) if bf16 else w)
        biases.append(b)
    in_mean = in_std = max_lv = min_lv = None
    if normalize:
        in_mean = torch.randn(sizes[0], generator=g) * 0.1
        in_std = torch.rand(sizes[0], generator=g) + 0.5
    if gaussian:
        max_lv = torch.full((sizes[-1] // 2,), 0.5) + torch.rand(sizes[-1] // 2, generator=g) * 0.1
        min_lv = torch.full((sizes[-1] // 2,), -10.0)
    to = lambda t: None if t is None else t.to(device).contiguous()  # noqa: E731
    return MLPParams(tuple(to(w) for w in weights), tuple(to(b) for b in biases), activation,
                     to(in_mean), to(in_std), to(max_lv), to(min_lv), in_dim=sizes[0])


def cpu_backends() -> list[str]:
    """Compiled backends that run on CPU tensors here (the interpreter only for triton)."""
    names = [n for n in ("cpu",) if backends.is_available(n)]
    if backends.triton_interpret() and backends.is_available("triton"):
        names.append("triton")
    return names


# ---- the SIGKILL resume check every agent passes (tests/agents, tests/cli) -------------------

def run_and_kill(cmd: list[str], run_dir, after: int, min_records: int = 2,
                 timeout: float = 240.0) -> None:
    """Start ``cmd`` (a ``python -m mbrl_fast train ...`` command), SIGKILL it once an
    iteration >= ``after`` has journaled ``min_records`` records."""
    import signal
    import subprocess
    import time

    import pytest

    from mbrl_fast import runs

    rd = runs.RunDir(run_dir)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"run ended before it could be killed: {proc.stderr.read()[-2000:]}")
            for it, _, path in rd.journals():
                if it >= after and _journal_records(path) >= min_records:
                    return
            time.sleep(0.01)
        pytest.fail("no journal appeared in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _journal_records(path) -> int:
    """Complete records in a journal being written (0 while its header is incomplete)."""
    from mbrl_fast import runs

    try:
        return len(runs.read_journal(path))
    except runs.CheckpointError:
        return 0


def recorded_so_far(run_dir):
    """(iterations checkpointed, every real record the run has: the checkpoint's, then the
    journaled ones of the iteration in progress)."""
    import numpy as np

    from mbrl_fast import runs

    _, agent, rd = runs.load_run(run_dir)
    try:
        held = agent.records()
        dtype = agent.journal_dtype()
        pending = [runs.read_journal(p, dtype) for it, _, p in rd.journals()
                   if it == agent.iterations_done]
        return agent.iterations_done, len(held), np.concatenate([held, *pending])
    finally:
        agent.close()


def check_sigkill_resume(run_dir, train_cmd: list[str], resume_cmd: list[str],
                         total_iterations: int, env_steps: int | None = None) -> None:
    """The resume guarantee of the agent protocol: a run SIGKILLed inside an iteration
    (at least once after its first checkpoint) and resumed loses no real record, in order,
    and completes every iteration with a clean journal directory. ``env_steps``: the
    budget of an agent that counts env steps, which the resumed run must end at exactly
    (the interrupted iteration continues after its kept records, it does not start over)."""
    import numpy as np

    from mbrl_fast import runs
    from mbrl_fast.cli import main

    run_and_kill(train_cmd, run_dir, after=1)
    for _ in range(3):  # a kill that lands between iterations (checkpoint just written): again
        done, held, recorded = recorded_so_far(run_dir)
        if len(recorded) > held:
            break
        run_and_kill(resume_cmd, run_dir, after=done)
    assert len(recorded) > held, "never killed inside an iteration"
    assert main(resume_cmd[3:]) == 0  # the rest of the run, in this process
    _, agent, rd = runs.load_run(run_dir)
    try:
        final = agent.records()
        np.testing.assert_array_equal(final[:len(recorded)], recorded)  # nothing lost, in order
        rows = rd.read_metrics()
        assert agent.iterations_done == len(rows) == total_iterations
        if env_steps is not None:
            assert rows[-1]["env_steps"] == env_steps
        assert not list(rd.journal_dir.iterdir())
    finally:
        agent.close()


def cpu_path_missing(path: str) -> str:
    """Why the cpu backend's kernel path ``path`` ("avx512", "avx2", "portable", or
    "portable-baseline": its x86-64 baseline build) cannot run here ('' when it can)."""
    if not backends.is_available("cpu"):
        return "mbrl_fast._C not built"
    missing = backends._cpu_missing(path.removesuffix("-baseline"))
    return f"this CPU lacks {missing}" if missing else ""


def load_bench_script(name: str):
    """bench/<name>.py as a module (bench/ is scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
