"""``mbrl-fast`` (also ``python -m mbrl_fast``): train, eval, bench.

    mbrl-fast train pets --env InvertedPendulum-v5 --seed 0 --trials 10 \\
        [--run-dir DIR] [--episode-steps N] [--set planner.population=200 ...]
    mbrl-fast train pets --resume RUN_DIR [--trials N]     continue a (killed) run
    mbrl-fast eval RUN_DIR --episodes 5 [--no-video]       mean / std return of the model
    mbrl-fast bench {planner,ops} ...                      throughput (mbrl_fast.benchmarks)

Exit status: 0 done; 2 bad arguments, unknown task, or a run directory that cannot
be resumed (the message says why; the directory is left untouched).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
import time
from pathlib import Path

ALGOS = ("pets",)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mbrl-fast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,eval,bench}")

    train = sub.add_parser("train", help="train an agent into a run directory")
    train.add_argument("algo", choices=ALGOS)
    train.add_argument("--env", help="task id, e.g. InvertedPendulum-v5 (required unless --resume)")
    train.add_argument("--seed", type=int, default=None, help="default 0")
    train.add_argument("--trials", type=int, default=None, help="default: the task preset")
    train.add_argument("--episode-steps", type=int, default=None, help="steps per trial")
    train.add_argument("--run-dir", type=Path, help="default runs/<algo>-<env>-s<seed>-<time>")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run")
    train.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="config override, e.g. planner.population=200")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--no-preset", action="store_true",
                       help="start from PETSConfig's published defaults, not the task's preset")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a run directory's model with MPC")
    ev.add_argument("run_dir", type=Path)
    ev.add_argument("--episodes", type=int, default=5)
    ev.add_argument("--seed", type=int, default=10_000, help="first episode's reset seed")
    ev.add_argument("--no-video", action="store_true", help="do not try to record a video")
    ev.set_defaults(func=cmd_eval)

    try:
        from mbrl_fast.benchmarks.cli import add_parser
    except ImportError:
        bench = sub.add_parser("bench", help="throughput benchmarks (not installed)")
        bench.add_argument("rest", nargs=argparse.REMAINDER)
        bench.set_defaults(func=_no_benchmarks)
    else:
        add_parser(sub)
    return parser


class UsageError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _no_benchmarks(args) -> int:
    raise UsageError("benchmarks not installed (mbrl_fast.benchmarks is missing)")


def _check_task(env_id: str) -> None:
    from mbrl_fast.envs import get_task

    try:
        get_task(env_id)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def train_config(args):
    """The PETSConfig of a fresh ``train`` call: the task preset (or, with --no-preset,
    the published defaults), then --seed / --trials / --episode-steps, then --set."""
    from mbrl_fast import runs
    from mbrl_fast.agents.pets import PETSConfig, pets_config

    top = {k: v for k, v in (("seed", args.seed), ("trials", args.trials),
                             ("episode_steps", args.episode_steps)) if v is not None}
    try:
        base = (dataclasses.replace(PETSConfig(env_id=args.env), **top) if args.no_preset
                else pets_config(args.env, **top))
        return runs.apply_overrides(base, args.overrides)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def cmd_train(args) -> int:
    from mbrl_fast import runs
    from mbrl_fast.agents.pets import PETS, PETSConfig

    if args.resume is not None:
        if args.env or args.seed is not None or args.episode_steps or args.overrides \
                or args.run_dir or args.no_preset:
            raise UsageError("--resume takes the run's config.yaml as it is; only --trials may "
                             "be given with it (to extend the run)")
        run = runs.RunDir(args.resume)
        algo, data = run.read_config()
        if algo != args.algo:
            raise UsageError(f"{args.resume} is a {algo!r} run, not {args.algo!r}")
        try:
            config = runs.config_from_dict(PETSConfig, data)
        except ValueError as exc:
            raise runs.CheckpointError(f"{run.config_path}: {exc}") from None
        if args.trials is not None:
            config.trials = _positive("--trials", args.trials)
        agent = PETS(config)
        attempt = runs.prepare_resume(run, algo, runs.config_to_dict(config), agent)
        if args.trials is not None:
            run.write_config(algo, runs.config_to_dict(config))
        print(f"resuming {run.path} at trial {agent.trials_done}"
              + (f" (attempt {attempt}: the interrupted trial's transitions were kept)"
                 if attempt else ""), file=sys.stderr)
    else:
        if not args.env:
            raise UsageError("--env is required (or --resume RUN_DIR)")
        _check_task(args.env)
        config = train_config(args)
        path = args.run_dir or Path("runs") / _default_name(args.algo, config)
        run = runs.RunDir(path)
        if run.config_path.exists():
            raise UsageError(f"{path} already holds a run; use --resume {path} to continue it")
        agent = PETS(config)
        run.write_config(args.algo, runs.config_to_dict(config))
        attempt = 0
        print(f"run directory: {run.path}", file=sys.stderr)
    try:
        history = runs.train_loop(agent, run, args.algo, runs.config_to_dict(config),
                                  config.trials, attempt, progress=not args.no_progress)
    finally:
        agent.close()
    if history:
        last = history[-1]
        print(f"trial {last['trial']}: return {last['return']:.2f} after {last['env_steps']} env "
              f"steps; metrics in {run.metrics_path}")
    return 0


def cmd_eval(args) -> int:
    from mbrl_fast import runs
    from mbrl_fast.agents.pets import PETS, PETSConfig

    episodes = _positive("--episodes", args.episodes)
    run = runs.RunDir(args.run_dir)
    algo, data = run.read_config()
    config = runs.config_from_dict(PETSConfig, data)
    state = run.load_checkpoint(algo, runs.config_to_dict(config))
    if state is None:
        raise UsageError(f"{run.path} has no checkpoint yet (no trial has completed)")
    if not args.no_video:
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless offscreen rendering
    agent = PETS(config)
    try:
        agent.load_state_dict(state)
        env, frames = agent.env, []
        if not args.no_video:
            env, why = _render_env(agent)
            if env is None:
                print(f"video skipped: {why}", file=sys.stderr)
                env = agent.env
        t0 = time.perf_counter()
        returns = agent.evaluate(episodes, seed=args.seed, env=env,
                                 on_frame=(lambda e: frames.append(e.render()))
                                 if env is not agent.env else None)
        seconds = time.perf_counter() - t0
    finally:
        agent.close()
    mean = sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns))
    print(f"{config.env_id}: return {mean:.2f} +- {std:.2f} over {episodes} episodes "
          f"(trained {agent.trials_done} trials, {seconds:.1f} s)")
    print("returns: " + ", ".join(f"{r:.2f}" for r in returns))
    if frames:
        try:
            print(f"video: {_write_video(frames, run.path / 'eval')}")
        except Exception as exc:  # imageio missing or no writer for the format
            print(f"video skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 0


def _render_env(agent):
    """The task's env with offscreen rendering, or (None, why) where that does not work."""
    try:
        env = agent.task.make_env(render_mode="rgb_array")
        env.reset(seed=0)
        frame = env.render()
        if frame is None or getattr(frame, "ndim", 0) != 3:
            env.close()
            return None, "the env returned no RGB frame"
        return env, ""
    except Exception as exc:  # no GL context, no display, env without rgb_array
        return None, f"{type(exc).__name__}: {exc}"


def _write_video(frames, stem: Path) -> Path:
    """MP4 when imageio-ffmpeg is installed, else an animated GIF (Pillow)."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the MP4 writer)
    except ImportError:
        from PIL import Image

        path = stem.with_suffix(".gif")
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=33, loop=0)
        return path
    path = stem.with_suffix(".mp4")
    imageio.mimsave(path, frames, fps=30)
    return path


def _default_name(algo: str, config) -> str:
    env = re.sub(r"[^A-Za-z0-9.-]+", "_", config.env_id)
    return f"{algo}-{env}-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise UsageError(f"{name} must be >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    from mbrl_fast.runs import CheckpointError

    args = _parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, CheckpointError) as exc:
        print(f"mbrl-fast: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
