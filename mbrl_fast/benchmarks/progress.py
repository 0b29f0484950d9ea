"""Progress of a benchmark run: what runs now, call i/n, elapsed time and the time left.

A run announces its timed calls up front (:meth:`Progress.expect`: implementation and
useful GFLOP per call). Every finished call sets its implementation's rate, seconds per
GFLOP of its latest call (warm-ups count: they are measured too). The time left is the
sum over the calls still expected of GFLOP x rate; an implementation not measured yet
is given the slowest rate measured so far, and before the first call ends there is no
estimate. Lines go to ``log`` (the CLI: stderr, flushed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

SLOW_CALL_S = 20.0  # announce a call before it starts when it is expected to take longer


def log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def format_seconds(seconds: float | None) -> str:
    """0:07, 2:41, 1:02:03; '?' for None."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class Progress:
    """Reports each timed call of a run and estimates what is left (module docstring)."""

    def __init__(self, log: Callable[[str], None] = log_stderr,
                 clock: Callable[[], float] = time.perf_counter, phase_width: int = 10):
        self.log, self.clock, self.phase_width = log, clock, phase_width
        self.started = clock()
        self.rate: dict[str, float] = {}  # name -> seconds per GFLOP of its latest call
        self.expected: list[tuple[str, float]] = []  # (name, GFLOP) of the calls to come

    def expect(self, name: str, gflop: float, calls: int = 1) -> None:
        self.expected.extend([(name, gflop)] * calls)

    def drop(self, name: str, gflop: float, calls: int = 1) -> None:
        """Forget ``calls`` expected calls that will not run."""
        for _ in range(calls):
            if (name, gflop) in self.expected:
                self.expected.remove((name, gflop))

    def estimate(self, name: str, gflop: float) -> float | None:
        """Seconds one call of ``name`` doing ``gflop`` should take (None: nothing measured)."""
        rate = self.rate.get(name, max(self.rate.values(), default=None))
        return None if rate is None else rate * gflop

    def left(self) -> float | None:
        if not self.rate:
            return None
        return sum(self.estimate(name, gflop) for name, gflop in self.expected)

    def elapsed(self) -> float:
        return self.clock() - self.started

    def note(self, msg: str) -> None:
        """A line with the elapsed time and the estimate of what is left."""
        self.log(f"{msg}  [elapsed {format_seconds(self.elapsed())}, "
                 f"left ~{format_seconds(self.left())}]")

    def call(self, phase: str, name: str, label: str, gflop: float, seconds: float | None):
        """Before a call (seconds None) and after it: log it and update the estimates."""
        what = f"  {phase:<{self.phase_width}} {name:<26} {label:<13}"
        if seconds is None:
            guess = self.estimate(name, gflop)
            if name not in self.rate:
                self.log(f"{what} running (its first call: time unknown) ...")
            elif guess is not None and guess > SLOW_CALL_S:
                self.log(f"{what} running (~{format_seconds(guess)}) ...")
            return
        if (name, gflop) in self.expected:
            self.expected.remove((name, gflop))
        self.rate[name] = seconds / gflop
        self.note(f"{what} {seconds:9.3f} s")

    def on_call(self, phase: str, gflop: float):
        """The ``on_call`` of :func:`harness.time_round_robin` for calls of ``gflop`` each."""
        return lambda name, label, seconds: self.call(phase, name, label, gflop, seconds)
