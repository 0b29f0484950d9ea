"""Throughput benchmarks: ``mbrl-fast bench planner | ops`` (or ``python -m mbrl_fast.benchmarks``).

Modules: :mod:`configs` (problem sizes, the shared random ensemble), :mod:`harness`
(warm-up + median timing, sgemm peak, machine info, tables), :mod:`progress` (what
runs, elapsed, time left), :mod:`isa` (mbrl-fast's CPU kernel path, forcing one),
:mod:`torch_eager` (the planner in plain eager PyTorch), :mod:`mbrl_lib_baseline`
(mbrl-lib 0.2.0's planner on the same weights), :mod:`planner` and :mod:`ops` (the two
benchmarks), :mod:`plot` (PNG) and :mod:`cli`. Importing this package imports no optional
dependency (mbrl-lib, matplotlib load when used).
"""

from mbrl_fast.benchmarks.cli import add_parser, main

__all__ = ["add_parser", "main"]
