"""Wall-clock timing shared by the bench scripts: the median of timed calls after untimed warm-up calls."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], warmup: int, repeats: int,
                   sync: Callable[[], None] | None = None) -> float:
    """Median seconds of `repeats` calls of `fn` after `warmup` untimed ones.

    `sync` (e.g. torch.cuda.synchronize) runs before each clock read, so asynchronous GPU work is counted.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
