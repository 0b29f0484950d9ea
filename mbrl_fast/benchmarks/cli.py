"""``mbrl-fast bench planner | ops``: run a benchmark, print its table, write JSON (and PNG).

``mbrl_fast/cli.py`` attaches :func:`add_parser` as its ``bench`` subcommand;
``python -m mbrl_fast.benchmarks`` runs the same parser standalone.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from mbrl_fast.benchmarks import isa, ops, planner
from mbrl_fast.benchmarks.configs import CONFIGS, get_config
from mbrl_fast.benchmarks.harness import write_json


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``bench`` (with ``planner`` and ``ops``) to an argparse subparsers object."""
    bench = subparsers.add_parser("bench", help="throughput benchmarks (planner, ops)",
                                  description=__doc__)
    _add_arguments(bench)
    return bench


def _add_arguments(bench: argparse.ArgumentParser) -> None:
    kinds = bench.add_subparsers(dest="bench_kind", required=True, metavar="{planner,ops}")
    p = kinds.add_parser("planner", help="PETS planning step: mbrl-fast vs eager torch vs mbrl-lib")
    p.add_argument("--config", default="pets-halfcheetah", choices=sorted(CONFIGS))
    p.add_argument("--json", type=Path, help="write the result here")
    p.add_argument("--png", type=Path, help="write a bar chart here")
    p.add_argument("--repeats", type=_positive, default=5, help="timed calls (median)")
    p.add_argument("--warmup", type=_non_negative, default=1, help="untimed calls first")
    p.add_argument("--impl", nargs="+", choices=planner.IMPLEMENTATIONS,
                   help="implementations to run (default: all)")
    p.add_argument("--population", type=_positive, help="override the config's population")
    p.add_argument("--isa", type=_isa_list, default=(), metavar="PATHS",
                   help="also time the fp32 planner with MBRL_FAST_CPU_KERNELS forced to each "
                   "of these comma-separated kernel paths (avx512,avx2,portable); a path this "
                   "build or CPU cannot run is reported, not timed (default: the auto path "
                   "only)")
    p.add_argument("--quick", action="store_true",
                   help="a first look in about a minute: population 100 only, 2 repeats, no "
                   "batched planning, decision quality on 2 start states (the table and the "
                   "JSON say what was reduced)")
    p.set_defaults(bench_func=_run_planner)

    o = kinds.add_parser("ops", help="op x backend x size table")
    o.add_argument("--config", default="pets-halfcheetah", choices=sorted(CONFIGS))
    o.add_argument("--json", type=Path, help="write the result here")
    o.add_argument("--repeats", type=_positive, default=3)
    o.add_argument("--warmup", type=_non_negative, default=1)
    o.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    o.add_argument("--isa", type=_isa_list, default=("auto",), metavar="PATHS",
                   help="kernel paths to time the cpu backend on, comma-separated, among "
                   "auto,avx512,avx2,portable (default: auto)")
    o.set_defaults(bench_func=_run_ops)
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point for a parsed ``bench`` command line."""
    return args.bench_func(args)


def _run_planner(args) -> int:
    overrides = {} if args.population is None else {"population": args.population}
    cfg = get_config(args.config, **overrides)
    result = planner.run(cfg, repeats=args.repeats, warmup=args.warmup,
                         implementations=args.impl, isas=args.isa, quick=args.quick, log=_log)
    print()
    print(planner.summary_table(result))
    q = result["decision_quality"]
    if "bf16_relative_gap" in q:
        r = q["returns"]
        print(f"\ndecision quality (mean return over {q['start_states']} start states): "
              f"fp32 plan {r['mbrl_fast_fp32']:.3f}, bf16 plan {r['mbrl_fast_bf16']:.3f}, "
              f"zero plan {r['zero_plan']:.3f}; bf16 gap {100 * q['bf16_relative_gap']:.2f}% "
              f"(within {100 * q['tolerance']:.0f}%: {q['bf16_within_tolerance']})")
    _write(result, args.json)
    if args.png is not None:
        from mbrl_fast.benchmarks.plot import plot_planner

        print(f"wrote {plot_planner(result, args.png)}")
    return 0


def _run_ops(args) -> int:
    result = ops.run(get_config(args.config), repeats=args.repeats, warmup=args.warmup,
                     quick=args.quick, isas=args.isa, log=_log)
    print()
    print(ops.table(result))
    _write(result, args.json)
    return 0


def _write(result: dict, path: Path | None) -> None:
    if path is None:
        return
    write_json(path, _finite(result), indent=2)
    print(f"wrote {path}")


def _finite(obj):
    """JSON has no inf/NaN: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _isa_list(text: str) -> tuple[str, ...]:
    paths = tuple(p.strip() for p in text.split(",") if p.strip())
    allowed = ("auto",) + isa.PATHS
    bad = [p for p in paths if p not in allowed]
    if bad or not paths:
        raise argparse.ArgumentTypeError(f"must be comma-separated among {','.join(allowed)}, "
                                         f"got {text!r}")
    return paths


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m mbrl_fast.benchmarks {planner,ops} ...``"""
    parser = argparse.ArgumentParser(prog="python -m mbrl_fast.benchmarks", description=__doc__)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args)
