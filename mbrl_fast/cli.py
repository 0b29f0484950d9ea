"""``mbrl-fast`` (also ``python -m mbrl_fast``): train, eval, bench.

    mbrl-fast train AGENT --env ENV --seed 0 [--trials N | --steps N] [--episode-steps N]
        [--run-dir DIR] [--preset NAME | --no-preset] [--set section.field=value ...]
        [--plan-budget-ms MS]
    mbrl-fast train AGENT --resume RUN_DIR [--trials N | --steps N]   continue a (killed) run
    mbrl-fast eval RUN_DIR --episodes 5 [--no-video]       mean / std return of the agent
    mbrl-fast eval RUN_DIR --kept [--json PATH]   every checkpoint `train --keep-every` kept
    mbrl-fast eval RUN_DIR --goals 20        goal reaching, for agents that have it (DADS)
    mbrl-fast bench {planner,ops} ...                      throughput (mbrl_fast.benchmarks)
    mbrl-fast sweep AGENT --env ENV --seeds 0 1 2 3 [--set k=v ...] [--grid k=v1,v2 ...]
        [--address ADDR] [--out DIR]      seeds x configs on Ray (mbrl_fast.integrations)

AGENT is any registered agent (``mbrl_fast.agents.list_agents()``). Exit status: 0
done; 2 bad arguments, unknown agent or task, or a run directory that cannot be
resumed (the message says why; the directory is left untouched).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

# Convenience flags for top-level config fields (any field can be set with --set).
FIELD_FLAGS = {"seed": "seed", "trials": "trials", "steps": "steps",
               "episode_steps": "episode_steps"}


def _parser() -> argparse.ArgumentParser:
    from mbrl_fast.agents import list_agents

    parser = argparse.ArgumentParser(prog="mbrl-fast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{train,eval,bench,sweep}")

    train = sub.add_parser("train", help="train an agent into a run directory")
    train.add_argument("algo", choices=list_agents(), metavar="AGENT",
                       help=f"one of: {', '.join(list_agents())}")
    train.add_argument("--env", help="task id, e.g. InvertedPendulum-v5 (required unless --resume)")
    train.add_argument("--seed", type=int, default=None, help="default 0")
    train.add_argument("--trials", type=int, default=None,
                       help="run length for agents that count trials (default: the preset)")
    train.add_argument("--steps", type=int, default=None,
                       help="run length for agents that count env steps (default: the preset)")
    train.add_argument("--episode-steps", type=int, default=None, help="steps per episode")
    train.add_argument("--run-dir", type=Path, help="default runs/<agent>-<env>-s<seed>-<time>")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run")
    train.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="config override, e.g. planner.population=200")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--tensorboard", action="store_true",
                       help="also write the metrics as TensorBoard scalars to "
                            "RUN_DIR/tensorboard (needs the tensorboard package); a resumed "
                            "run whose directory has them keeps writing them")
    train.add_argument("--keep-every", type=int, default=None, metavar="K",
                       help="also keep the checkpoint of every K-th iteration as "
                            "RUN_DIR/checkpoints/iter_NNNN.pt (for `eval --checkpoint`); "
                            "give it again when resuming to keep adding them")
    train.add_argument("--plan-budget-ms", type=float, default=None, metavar="MS",
                       help="size the planner (population, particles) so that one planned "
                            "step takes at most MS milliseconds on this machine")
    presets = train.add_mutually_exclusive_group()
    presets.add_argument("--preset", default="default",
                         help="the task preset to start from: 'default' (sized for this CPU), "
                              "or a named one such as 'published'")
    presets.add_argument("--no-preset", action="store_true",
                         help="start from the agent config's published defaults")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a run directory's agent")
    ev.add_argument("run_dir", type=Path)
    ev.add_argument("--episodes", type=int, default=5)
    ev.add_argument("--seed", type=int, default=10_000, help="first episode's reset seed")
    ev.add_argument("--no-video", action="store_true", help="do not try to record a video")
    ev.add_argument("--json", type=Path, default=None, metavar="PATH",
                    help="also write the returns, the run's step count and the machine to PATH")
    which = ev.add_mutually_exclusive_group()
    which.add_argument("--best", action="store_true",
                       help="evaluate best.pt (the iteration with the highest return) instead "
                            "of the last checkpoint")
    which.add_argument("--checkpoint", default=None, metavar="FILE",
                       help="evaluate this checkpoint of the run, relative to RUN_DIR, e.g. "
                            "checkpoints/iter_0080.pt (kept by `train --keep-every`)")
    which.add_argument("--kept", action="store_true",
                       help="evaluate every checkpoint kept by `train --keep-every`, one row "
                            "each (no video); with --json, PATH holds one record per "
                            "checkpoint, is rewritten after each, and a second call adds only "
                            "the checkpoints it lacks")
    ev.add_argument("--goals", type=int, default=None, metavar="N",
                    help="zero-shot navigation to N random goals (agents with an "
                         "evaluate_goals hook, e.g. dads); writes RUN_DIR/eval_goals.{json,png}")
    ev.set_defaults(func=cmd_eval)

    sweep = sub.add_parser("sweep", help="seeds x config overrides of an agent on Ray, each "
                           "trial a resumable run directory")
    sweep.add_argument("algo", choices=list_agents(), metavar="AGENT",
                       help=f"one of: {', '.join(list_agents())}")
    sweep.add_argument("--env", required=True, help="task id, e.g. InvertedPendulum-v5")
    sweep.add_argument("--seeds", type=int, nargs="+", required=True, metavar="S")
    sweep.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="config override for every trial")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="one axis of the grid of configs (repeat for a product)")
    sweep.add_argument("--address", default=None, help="an existing Ray cluster (HOST:6379, "
                       "ray://HOST:10001 or auto); default: a local Ray")
    sweep.add_argument("--out", type=Path, default=None,
                       help="default sweeps/<agent>-<env>; a rerun resumes the runs in it")
    sweep.add_argument("--num-cpus", type=int, default=None, help="local Ray's CPUs (default all)")
    sweep.add_argument("--cpus-per-trial", type=int, default=1)
    sweep.add_argument("--no-preset", action="store_true",
                       help="start from the agent config's published defaults")
    sweep.set_defaults(func=cmd_sweep)

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


def _field_flags(args, cls) -> dict:
    """The convenience flags given, as config fields; a flag the agent has no field for is
    an error that says what the agent counts instead."""
    fields = set(cls.Config.__dataclass_fields__)
    out = {}
    for attr, field in FIELD_FLAGS.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        if field not in fields:
            flag = "--" + attr.replace("_", "-")
            raise UsageError(f"{flag}: agent {cls.name!r} has no {field!r} field (it counts "
                             f"its run in {cls.budget}: use --{cls.budget.replace('_', '-')})")
        if field != "seed":
            _positive("--" + attr.replace("_", "-"), value)
        out[field] = value
    return out


def train_config(args):
    """The config of a fresh ``train`` call: the task preset (``--preset``, or with
    --no-preset the published defaults), then the field flags, then --set."""
    from mbrl_fast import config as cfg
    from mbrl_fast.agents import get_agent

    cls = get_agent(args.algo)
    top = _field_flags(args, cls)
    try:
        base = cls.make_config(args.env, preset=None if args.no_preset else args.preset, **top)
        return cfg.apply_overrides(base, args.overrides)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def cmd_train(args) -> int:
    from mbrl_fast import runs
    from mbrl_fast.agents import get_agent
    from mbrl_fast.config import config_to_dict

    cls = get_agent(args.algo)
    if args.keep_every is not None:
        _positive("--keep-every", args.keep_every)
    tensorboard = args.tensorboard or (args.resume is not None
                                       and runs.RunDir(args.resume).tensorboard_dir.is_dir())
    if tensorboard:
        try:  # before anything is written
            runs.tensorboard_writer_class()
        except ImportError as exc:
            raise UsageError(f"--tensorboard: {exc}") from None
    if args.resume is not None:
        settings = _resume_settings(args.overrides)
        given = [flag for flag, value in (("--env", args.env), ("--seed", args.seed),
                                          ("--episode-steps", args.episode_steps),
                                          ("--run-dir", args.run_dir),
                                          ("--no-preset", args.no_preset),
                                          ("--plan-budget-ms", args.plan_budget_ms),
                                          ("--preset", args.preset != "default")) if value]
        budget_flags = {"trials": args.trials, "steps": args.steps}
        given += [f"--{k}" for k, v in budget_flags.items() if v is not None and k != cls.budget]
        if given:
            raise UsageError(f"--resume takes the run's config.yaml as it is; only "
                             f"--{cls.budget} may be given with it (to extend the run), "
                             f"and --set for {', '.join(runs.RESUME_SETTINGS)}; "
                             f"got {', '.join(given)}")
        algo, _ = runs.RunDir(args.resume).read_config()
        if algo != args.algo:
            raise UsageError(f"{args.resume} is a {algo!r} run, not {args.algo!r}")
        extend = budget_flags.get(cls.budget)
        if extend is not None:
            _positive(f"--{cls.budget}", extend)
        try:
            algo, agent, run, attempt = runs.resume_run(args.resume, extend=extend,
                                                        settings=settings)
        except ValueError as exc:  # a setting this agent's config does not have
            raise UsageError(str(exc)) from None
        print(f"resuming {run.path} at {cls.unit} {agent.iterations_done}"
              + (f" (attempt {attempt}: the interrupted {cls.unit}'s records were kept)"
                 if attempt else ""), file=sys.stderr)
        if args.keep_every is None and run.snapshots():
            print(f"note: {run.snapshot_dir} holds kept checkpoints; this process keeps no "
                  "new ones (pass --keep-every K to go on keeping them)", file=sys.stderr)
    else:
        if not args.env:
            raise UsageError("--env is required (or --resume RUN_DIR)")
        _check_task(args.env)
        config = train_config(args)
        try:
            config, lines = cls.preflight(config, args.plan_budget_ms)
        except ValueError as exc:  # a budget below the smallest planner, an agent that
            raise UsageError(str(exc)) from None  # does not plan, ...
        for line in lines:
            print(line, file=sys.stderr)
        path = args.run_dir or Path("runs") / _default_name(args.algo, config)
        try:
            agent, run = runs.start_run(args.algo, config, path)
        except FileExistsError:
            raise UsageError(f"{path} already holds a run; use --resume {path} to continue "
                             "it") from None
        attempt = 0
        print(f"run directory: {run.path}", file=sys.stderr)
    config = config_to_dict(agent.config)
    try:
        history = runs.train_loop(agent, run, args.algo, config, attempt,
                                  progress=not args.no_progress, tensorboard=tensorboard,
                                  keep_every=args.keep_every)
    finally:
        agent.close()
    if history:
        last = history[-1]
        print(f"{cls.unit} {len(history) - 1}: return {last['return']:.2f} after "
              f"{last['env_steps']} env steps; metrics in {run.metrics_path}")
    return 0


def cmd_eval(args) -> int:
    from mbrl_fast import evaluation, runs

    episodes = _positive("--episodes", args.episodes)
    if args.goals is not None:
        if args.kept:
            raise UsageError("--goals evaluates one checkpoint (the last, --best or "
                             "--checkpoint FILE), not --kept")
        return _eval_goals(args)
    if args.kept:
        return _eval_kept(args, episodes)
    if not args.no_video:
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless offscreen rendering
    algo, agent, run = runs.load_run(args.run_dir, best=args.best, checkpoint=args.checkpoint)
    frames = []
    try:
        env = None
        if not args.no_video:
            env, why = _render_env(agent)
            if env is None:
                print(f"video skipped: {why}", file=sys.stderr)
        returns, seconds = evaluation.evaluate(
            agent, episodes, args.seed, env=env,
            on_frame=(lambda e: frames.append(e.render())) if env is not None else None)
        record = evaluation.checkpoint_record(agent, _checkpoint_name(args), returns, seconds)
    finally:
        if env is not None:
            env.close()
        agent.close()
    print(f"{agent.config.env_id}: return {record['mean']:.2f} +- {record['std']:.2f} over "
          f"{episodes} episodes ({algo}, {agent.iterations_done} {agent.unit}s trained, "
          f"{seconds:.1f} s)")
    print("returns: " + ", ".join(f"{r:.2f}" for r in returns))
    if args.json is not None:
        _write_eval_json(args, algo, agent, run, record)
    if frames:
        try:
            print(f"video: {_write_video(frames, run.path / 'eval')}")
        except Exception as exc:  # imageio missing or no writer for the format
            print(f"video skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 0


def _write_eval_json(args, algo, agent, run, record: dict) -> None:
    import json

    from mbrl_fast.benchmarks.harness import machine_info

    data = dict(what="mbrl-fast eval: deterministic evaluation episodes of a run's checkpoint",
                command=(f"mbrl-fast eval {run.path} --episodes {record['episodes']} --seed "
                         f"{args.seed}" + " --best" * args.best
                         + (f" --checkpoint {args.checkpoint}" if args.checkpoint else "")
                         + f" --json {args.json}"),
                run_dir=str(run.path), algo=algo, env_id=agent.config.env_id,
                seed=getattr(agent.config, "seed", None), first_reset_seed=args.seed,
                **record, machine=machine_info())
    args.json.write_text(json.dumps(data, indent=1) + "\n")
    print(f"written: {args.json}")


def _eval_kept(args, episodes: int) -> int:
    """``eval --kept``: every kept checkpoint, one table row each."""
    from mbrl_fast import evaluation
    from mbrl_fast.benchmarks.harness import machine_info

    try:
        records, new = evaluation.evaluate_kept(args.run_dir, episodes, args.seed, args.json,
                                                machine_info())
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"{len(records)} kept checkpoints, {episodes} episodes each from reset seed "
          f"{args.seed}; {new} evaluated now" + (f", written: {args.json}" if args.json and new
                                                 else ""))
    best = max(records, key=lambda r: r["mean"])
    print(f"highest mean: {best['checkpoint']} ({best['env_steps']} env steps): "
          f"{best['mean']:.2f} +- {best['std']:.2f}")
    return 0


def _checkpoint_name(args) -> str:
    """The evaluated checkpoint's file, relative to the run directory."""
    return "best.pt" if args.best else args.checkpoint or "checkpoint.pt"


def _eval_goals(args) -> int:
    """``eval --goals N``: the agent's own goal evaluation (an optional protocol hook,
    ``evaluate_goals(goals, seed, out) -> dict``), its summary printed as JSON."""
    import json

    from mbrl_fast import runs

    goals = _positive("--goals", args.goals)
    algo, agent, run = runs.load_run(args.run_dir, best=args.best, checkpoint=args.checkpoint)
    try:
        hook = getattr(agent, "evaluate_goals", None)
        if hook is None:
            raise UsageError(f"--goals: agent {algo!r} has no goal evaluation "
                             "(evaluate_goals); use --episodes")
        t0 = time.perf_counter()
        summary = hook(goals, seed=args.seed, out=run.path / "eval_goals")
        seconds = time.perf_counter() - t0
    finally:
        agent.close()
    print(json.dumps(summary, indent=1))
    print(f"{agent.config.env_id}: {goals} goals evaluated in {seconds:.1f} s ({algo}, "
          f"{agent.iterations_done} {agent.unit}s trained)", file=sys.stderr)
    return 0


def cmd_sweep(args) -> int:
    from mbrl_fast.integrations.ray_sweep import SweepError, run_sweep

    _check_task(args.env)
    try:
        run_sweep(args.algo, args.env, args.seeds, sets=args.overrides, grid=args.grid,
                  out=args.out, address=args.address, num_cpus=args.num_cpus,
                  cpus_per_trial=args.cpus_per_trial,
                  preset=None if args.no_preset else "default",
                  log=lambda line: print(line, file=sys.stderr))
    except SweepError as exc:
        raise UsageError(str(exc)) from None
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


def _resume_settings(overrides: list[str]) -> dict:
    """``--set`` items given with --resume: only runs.RESUME_SETTINGS, with the values each
    takes."""
    import yaml

    from mbrl_fast.runs import RESUME_SETTINGS, check_resume_setting

    settings = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if key not in RESUME_SETTINGS or not sep:
            raise UsageError(f"--resume takes the run's config.yaml as it is; --set may only "
                             f"change {', '.join(RESUME_SETTINGS)} (how the run computes), "
                             f"got --set {item}")
        try:
            settings[key] = check_resume_setting(key, yaml.safe_load(raw))
        except (ValueError, yaml.YAMLError):
            what = RESUME_SETTINGS[key].what
            raise UsageError(f"--set {key} must be {what}, got {raw!r}") from None
    return settings


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
