"""What every benchmark here shares: the clock (wall, or the process's CPU time, which a
shared machine disturbs less), interleaved repeats after a discarded warm-up round,
and the median of the per-repeat ratios (one slow repeat of one side then moves the
answer less than a ratio of medians would)."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable


def add_clock_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clock", choices=("wall", "process"), default="wall",
                        help="wall time, or this process's CPU time (steadier on a shared "
                             "machine; counts every thread's work)")


def clock(name: str) -> Callable[[], float]:
    return time.perf_counter if name == "wall" else time.process_time


def interleaved(sides: dict[str, Callable[[], object]], repeats: int, clock_name: str = "wall",
                warmup: int = 1, report: Callable[[int, str, float, object], None] | None = None
                ) -> dict[str, list[float]]:
    """Run the sides in turn, ``warmup`` discarded rounds then ``repeats`` timed ones;
    ``report(repeat, side, seconds, output)`` sees every timed call."""
    now = clock(clock_name)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(warmup + repeats):
        for name, fn in sides.items():
            t0 = now()
            out = fn()
            dt = now() - t0
            if r >= warmup:
                times[name].append(dt)
                if report is not None:
                    report(r - warmup, name, dt, out)
    return times


def ratios(times: dict[str, list[float]], num: str, den: str) -> tuple[float, list[float]]:
    """The median of the per-repeat ratios num / den, and the ratios."""
    rs = [a / b for a, b in zip(times[num], times[den])]
    return statistics.median(rs), rs


def fmt_ratios(rs: list[float]) -> str:
    return ", ".join(f"{r:.2f}" for r in rs)
