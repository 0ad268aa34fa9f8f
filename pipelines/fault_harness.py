"""Kill a command with SIGKILL at random moments, rerun it to the end, and say what it left behind.

The moments are seeded: a time after the start drawn from a window (`time` kills), or the N-th time the process
reaches one of runfs.atomic's fault points (`written`: a temporary complete, not yet renamed; `replace`: inside a
folder replace), where a kill does the most harm. Used by pipelines/fault_injection.py and its test.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from runfs.atomic import KILL_AT_ENV, POINT_LOG_ENV
from runfs.leftovers import find_leftovers


@dataclass
class KillLog:
    """What happened to one command: each attempt's kill and how the process ended."""

    attempts: list[str] = field(default_factory=list)  # e.g. "time 3.21 s: killed", "written:2: finished"
    killed: int = 0  # attempts that ended in SIGKILL
    seconds: float = 0.0

    def add(self, what: str, returncode: int) -> None:
        if returncode == -signal.SIGKILL:
            self.killed += 1
            self.attempts.append(f"{what}: killed")
        else:
            self.attempts.append(f"{what}: ended with exit code {returncode} before the kill")


def _start(command: list[str], env: dict[str, str], cwd: Path, log_file) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> int:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.wait()


def kill_and_rerun(command: list[str], *, cwd: Path, env: dict[str, str], kills: int, window: tuple[float, float],
                   visits: dict[str, int], rng: random.Random, log_path: Path, point_share: float = 0.5) -> KillLog:
    """Run `command` up to `kills` times, each killed at a random moment: a time in `window` seconds, or (with
    probability `point_share`) the n-th visit of a fault point (a point an uninterrupted run visited, n up to its
    `visits`); then once more to the end. RuntimeError (with the log's tail) when that last run fails. An attempt
    that ends by itself (the resumed run had fewer points or seconds left) stops the kills."""
    log = KillLog()
    started = time.perf_counter()
    points = sorted(point for point, count in visits.items() if count)  # each kind of point equally often
    with open(log_path, "ab") as out:
        for _ in range(kills):
            if points and rng.random() < point_share:
                point = rng.choice(points)
                spec = f"{point}:{rng.randint(1, visits[point])}"
                proc = _start(command, {**env, KILL_AT_ENV: spec}, cwd, out)
                log.add(spec, proc.wait())
            else:
                delay = rng.uniform(*window)
                proc = _start(command, env, cwd, out)
                try:
                    code = proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    code = _kill_group(proc)
                log.add(f"time {delay:.2f} s", code)
            if log.attempts[-1].endswith("before the kill"):
                break
        final = _start(command, env, cwd, out)
        code = final.wait()
    log.seconds = time.perf_counter() - started
    if code != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command)} failed after {log.killed} kills (exit code {code}):\n{tail}")
    return log


def run_once(command: list[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> tuple[float, dict[str, int]]:
    """Run `command` uninterrupted: (its seconds, how often it reached each fault point). RuntimeError with the log's
    tail when it fails."""
    started = time.perf_counter()
    point_log = log_path.with_suffix(".points")
    point_log.unlink(missing_ok=True)
    with open(log_path, "ab") as out:
        code = _start(command, {**env, POINT_LOG_ENV: str(point_log)}, cwd, out).wait()
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit code {code}):\n"
                           f"{log_path.read_text(errors='replace')[-3000:]}")
    names = point_log.read_text().split() if point_log.is_file() else []
    return time.perf_counter() - started, {name: names.count(name) for name in set(names)}


def leftovers(run_dir: Path) -> list[str]:
    """Temporaries and .old folders below `run_dir`, relative to it."""
    return [str(p.relative_to(run_dir)) for p in find_leftovers(run_dir)]
